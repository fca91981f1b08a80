"""Stage-2 training-step throughput: the real compiled step (`build_training`) on synthetic on-device batches.

  python benchmarks/throughput.py --config=configs/ditdh_xl.py                          # TPU VM / GPU
  python benchmarks/throughput.py --config=configs/quickstart.py --config.runtime.backend=cpu --steps 20
  PJRT_DEVICE=CPU CPU_NUM_DEVICES=4 python benchmarks/throughput.py --config=configs/quickstart.py \
      --config.runtime.backend=xla                                                    # SPMD FSDP, mesh 1x4

The batches are random uint8 images of `data.image_size` and random labels, made once and placed on the devices
before timing (no data loader, no host-to-device copy in the loop), so this measures the step alone: frozen
encoder, flow loss, backward, clipping, AdamW and EMA. `--latents_input` replaces the encoder by a pass-through
and feeds random latents of the model's input shape (the model step without the encoder; used for settings
whose encoder would need a download, e.g. 768-channel DINOv2-B latents).

Reported: first-step time (includes the XLA compile), compile seconds and graph count (XLA), steady-state
step time (median over `--windows` windows bracketed by `runtime.wait()`, never from single steps), images/s
per device, training FLOPs per image and MFU against the bf16 peak of the device kind (None on CPU: then the
achieved FLOP/s), peak memory, and the bytes per device of parameters + AdamW state (and EMA) vs a replicated
copy, taken from the actual layout of each tensor after the steps ran.
"""
from __future__ import annotations

import datetime
import json
import math
import os
import resource
import shlex
import statistics
import sys
import time

import ml_collections
import torch
from absl import app, flags, logging
from ml_collections import config_flags

from rae_xla import config as config_lib
from rae_xla import metrics
from rae_xla.runtime import make_runtime
from rae_xla.train import stage2
from rae_xla.train.stage2_step import host_draws, zero_sums

import provenance  # benchmarks/provenance.py (the script's folder is on sys.path)

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment file in configs/, optionally ':arg'.",
                                          lock_config=True)
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps, split evenly into --windows runtime.wait() windows.")
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed steps after the first (compiling) step.")
_WINDOWS = flags.DEFINE_integer("windows", 3, "Timing windows; the reported step time is their median.")
_LATENTS = flags.DEFINE_bool("latents_input", False, "Feed random latents of the model's input shape and skip "
                             "the encoder (the model step alone).")
_THREADS = flags.DEFINE_integer("threads", 0, "torch intra-op threads for eager CPU (0: torch's default). On a "
                                "shared box 1 thread can beat 2 for tiny models (no OpenMP spin contention).")
_JSON_OUT = flags.DEFINE_string("json_out", "", "Also write the result as JSON here.")
_MD_OUT = flags.DEFINE_string("md_out", "", "Append a markdown section here (a dated header when the file is new).")
_LABEL = flags.DEFINE_string("label", "", "Title of the markdown section (default: config file + backend).")
flags.mark_flags_as_required(["config"])

# The LR schedule needs an epoch length; ImageNet-1k at batch 1024 has 1251 steps. It does not affect speed.
_NOMINAL_STEPS_PER_EPOCH = 1251


class LatentPassthrough(torch.nn.Module):
    """Stands in for the frozen RAE under --latents_input: 'images' are uint8 latents (B, h, w, C).

    The step turns them into (B, C, h, w) floats in [0, 1]; `encode` maps that to roughly zero mean and unit
    variance (a uniform [0, 1] has std 1/sqrt(12)), like normalised RAE latents. No parameters, no FLOPs.
    """

    def __init__(self, latent_shape: tuple[int, int, int]):
        super().__init__()
        self.latent_shape = latent_shape

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return (images - 0.5) * math.sqrt(12.0)


def synthetic_batches(config, runtime, settings, count: int, latents_input: bool) -> list[dict]:
    """`count` distinct device batches of this process's rows (the step cycles through them).

    'image': uint8 (b, S, S, 3) with S = data.image_size, or (b, h, w, C) latents under --latents_input;
    'label': int64 (b,); plus 'noise', 'u', 'drop' when runtime.rng == 'host'.
    """
    global_batch = config.train.global_batch_size
    rows_here = runtime.per_process_batch(global_batch)
    rows = slice(runtime.process_index * rows_here, (runtime.process_index + 1) * rows_here)
    c, h, w = settings.latent_shape
    size = config.data.image_size
    image_shape = (rows_here, h, w, c) if latents_input else (rows_here, size, size, 3)
    g = torch.Generator().manual_seed(config.seed)
    host = []
    for step in range(count):
        batch = {"image": torch.randint(0, 256, image_shape, dtype=torch.uint8, generator=g),
                 "label": torch.randint(0, config.model.num_classes, (rows_here,), generator=g)}
        if settings.host_rng:
            batch.update(host_draws(config.seed, step, global_batch, settings.latent_shape, rows,
                                    settings.label_dropout))
        host.append(batch)
    return list(runtime.device_batches(host))


def run_steps(training, runtime, batches, config, *, first: int, count: int, sums: dict) -> dict:
    """Runs `count` steps numbered from `first` exactly as the trainer's loop does (LR, per-step seed)."""
    for step in range(first, first + count):
        for group in training.optimizer.param_groups:
            group["lr"] = training.lr_at(step)
        if not training.settings.host_rng:
            runtime.seed(config.seed * 1_000_003 + step)
        sums = training.step_fn(batches[step % len(batches)], sums)
    return sums


def local_bytes(t: torch.Tensor) -> int:
    """Bytes of `t` held by one device: its shard under XLA SPMD or FSDP2, the whole tensor otherwise.

    XLA: the tensor's current layout (after the steps ran, so optimizer state has the sharding the compiler
    gave it), as the slices of each local device (`_get_local_shard_replica_and_indices`; no data moves).
    """
    if hasattr(t, "to_local"):  # FSDP2 DTensor.
        t = t.to_local()
        return t.numel() * t.element_size()
    if t.device.type != "xla":
        return t.numel() * t.element_size()
    import torch_xla  # Only reached on the XLA backend (benchmarks may import torch_xla; the library may not).
    if not torch_xla._XLAC._get_xla_sharding_spec(t):
        return t.numel() * t.element_size()  # No sharding annotation: one full copy per device.
    largest = 0
    for _, index in torch_xla._XLAC._get_local_shard_replica_and_indices([t])[0]:
        if index is Ellipsis:  # Replicated.
            return t.numel() * t.element_size()
        largest = max(largest, math.prod(len(range(t.shape[d])[s]) for d, s in enumerate(index)))
    return largest * t.element_size()


def state_bytes(training, runtime) -> dict:
    """Per-device vs replicated bytes of the trainable parameters + AdamW state, and of the EMA copy."""
    params = [p for p in runtime.unwrap(training.model).parameters() if p.requires_grad]
    opt_state = [v for p in params for v in training.optimizer.state.get(p, {}).values()
                 if isinstance(v, torch.Tensor) and v.ndim > 0]  # 0-d 'step' counters live on the host.
    ema = list(training.ema_model.parameters())

    def total(tensors, per_device):
        return sum(local_bytes(t) if per_device else t.numel() * t.element_size() for t in tensors)

    per_device = total(params, True) + total(opt_state, True)
    replicated = total(params, False) + total(opt_state, False)
    return {"param_count": sum(p.numel() for p in params), "bytes_per_device": per_device,
            "replicated_bytes": replicated, "bytes_ratio": per_device / replicated,
            "ema_bytes_per_device": total(ema, True), "ema_replicated_bytes": total(ema, False)}


def peak_memory(runtime) -> dict:
    """Peak device memory where the backend can tell, and the process's peak host RSS."""
    host_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB.
    if runtime.kind == "cuda":
        return {"peak_memory_bytes": torch.cuda.max_memory_allocated(runtime.device),
                "peak_memory_source": "torch.cuda.max_memory_allocated", "host_max_rss_bytes": host_rss}
    if runtime.kind == "cpu":
        return {"peak_memory_bytes": host_rss, "peak_memory_source": "process max RSS (getrusage)",
                "host_max_rss_bytes": host_rss}
    return {"peak_memory_bytes": None, "host_max_rss_bytes": host_rss,
            "peak_memory_source": "not available: xm.get_memory_info is unsupported on the SPMD virtual device "
                                  "(on TPU read it from tpu-info or a profile); host RSS includes XLA-CPU "
                                  "device buffers and the compiler"}


def prepare_config(config) -> ml_collections.ConfigDict:
    """Drops what the timed step never reads, so a release config runs without its data and bucket paths.

    Returns a copy for `validate` without the data block (batches are synthetic; only data.image_size is used).
    Edits `config` in place: released decoder weights / latent stats still naming the placeholder bucket are
    cleared (the step never decodes; the stats are a per-channel affine of negligible cost), with a log line.
    """
    for field in ("decoder_weights", "stats"):
        if config_lib.PLACEHOLDER in config.rae[field]:
            logging.info("rae.%s=%s is a placeholder: benchmarking without it.", field, config.rae[field])
            config.rae[field] = ""
    checked = ml_collections.ConfigDict(config.to_dict())
    del checked["data"]
    return checked


def benchmark(config, *, steps: int, warmup: int, windows: int, latents_input: bool) -> dict:
    """Builds the runtime and the real training step, times it, returns every reported number."""
    checked = prepare_config(config)
    config_lib.validate(checked)
    runtime = make_runtime(config.runtime)
    try:
        config_lib.validate(checked, num_devices=runtime.num_devices, process_count=runtime.process_count)
        stand_in = None
        if latents_input:
            stand_in = LatentPassthrough((config.model.in_channels, config.model.input_size, config.model.input_size))
        training = stage2.build_training(config, runtime, _NOMINAL_STEPS_PER_EPOCH, encoder_stand_in=stand_in)
        batches = synthetic_batches(config, runtime, training.settings, 2, latents_input)
        sums = zero_sums(runtime.device)
        runtime.wait()

        started = time.perf_counter()
        sums = run_steps(training, runtime, batches, config, first=0, count=1, sums=sums)
        runtime.wait()
        first_step_s = time.perf_counter() - started
        graphs_first = runtime.compile_stats().get("graphs")
        # XLA compiles a second graph at step 2: AdamW creates its state tensors during step 1, so from step 2
        # on they are inputs. Warm-up steps absorb that compile; graphs added during timing are reported.
        started = time.perf_counter()
        sums = run_steps(training, runtime, batches, config, first=1, count=warmup, sums=sums)
        runtime.wait()
        warmup_s = time.perf_counter() - started
        graphs_warm = runtime.compile_stats().get("graphs")

        windows = max(1, min(windows, steps))
        sizes = [steps // windows + (i < steps % windows) for i in range(windows)]
        window_step_s, step = [], 1 + warmup
        for size in sizes:
            started = time.perf_counter()
            sums = run_steps(training, runtime, batches, config, first=step, count=size, sums=sums)
            runtime.wait()
            window_step_s.append((time.perf_counter() - started) / size)
            step += size
        mean_loss = float(sums["loss_sum"].detach().float().cpu()) / step  # Sync point, after timing.

        step_s = statistics.median(window_step_s)
        per_device = config.train.global_batch_size / step_s / runtime.num_devices
        peak = metrics.peak_bf16_flops(runtime.device_kind)
        compile_stats = runtime.compile_stats()
        return {
            "backend": runtime.kind, "device_kind": runtime.device_kind, "num_devices": runtime.num_devices,
            "mesh": runtime.mesh_shape, "param_sharding": config.runtime.param_sharding,
            "precision": config.runtime.precision, "torch_threads": torch.get_num_threads(),
            "global_batch_size": config.train.global_batch_size,
            "latent_shape": list(training.settings.latent_shape), "latents_input": latents_input,
            "steps_timed": steps, "warmup": warmup, "first_step_seconds": first_step_s,
            "window_step_seconds": window_step_s, "step_seconds": step_s,
            "images_per_sec": config.train.global_batch_size / step_s, "images_per_sec_per_device": per_device,
            "flops_per_image": training.flops_per_image,
            "achieved_flops_per_sec_per_device": training.flops_per_image * per_device,
            "peak_bf16_flops_per_device": peak, "mfu": metrics.mfu(training.flops_per_image, per_device, peak),
            "compile_seconds": compile_stats.get("compile_seconds"), "compiled_graphs": compile_stats.get("graphs"),
            "graphs_after_first_step": graphs_first, "warmup_seconds": warmup_s,
            "graphs_compiled_while_timing": None if graphs_warm is None else compile_stats["graphs"] - graphs_warm,
            "mean_loss": mean_loss,
            **state_bytes(training, runtime), **peak_memory(runtime),
        }
    finally:
        runtime.close()


# ---------------------------------------------------------------------------------------------------------------
# Reporting.


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "—" if value is None else str(value)


def table(result: dict) -> str:
    """The result as a two-column markdown table (byte counts also in MiB)."""
    lines = ["| metric | value |", "|---|---|"]
    for key, value in result.items():
        shown = _fmt(value) if not isinstance(value, list) else ", ".join(_fmt(v) for v in value)
        if key.endswith("bytes") or key.endswith("bytes_per_device"):
            shown += f" ({value / 2**20:.2f} MiB)" if isinstance(value, int) else ""
        lines.append(f"| {key} | {shown} |")
    return "\n".join(lines)


def write_markdown(path: str, title: str, command: str, result: dict) -> None:
    """Appends one section; a new file starts with the date, commit and machine."""
    header = "" if os.path.exists(path) else (
        f"# Stage-2 step throughput — {datetime.date.today().isoformat()}\n\n- Commit: {provenance.commit()}\n"
        f"- Machine: {provenance.machine()}, torch {torch.__version__}\n- Script: `benchmarks/throughput.py`\n")
    with open(path, "a") as f:
        f.write(f"{header}\n## {title}\n\n- Command: `{command}`\n- 1-min load average at the end: "
                f"{os.getloadavg()[0]:.1f}\n\n{table(result)}\n")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _STEPS.value < 1 or _WARMUP.value < 0:
        raise app.UsageError(f"--steps must be >= 1 and --warmup >= 0; got {_STEPS.value}, {_WARMUP.value}")
    if _THREADS.value > 0:
        torch.set_num_threads(_THREADS.value)
    try:
        result = benchmark(_CONFIG.value, steps=_STEPS.value, warmup=_WARMUP.value, windows=_WINDOWS.value,
                           latents_input=_LATENTS.value)
    except config_lib.ConfigError as e:
        sys.exit(f"FATAL config error: {e}")
    env = " ".join(f"{k}={os.environ[k]}" for k in ("PJRT_DEVICE", "CPU_NUM_DEVICES") if k in os.environ)
    command = " ".join(filter(None, [env, "python", *map(shlex.quote, sys.argv)]))
    print(table(result))
    if result["graphs_compiled_while_timing"]:
        print(f"WARNING: {result['graphs_compiled_while_timing']} graph(s) compiled inside the timed windows; the "
              f"step time includes compiles (raise --warmup, or look for a recompiling step).", file=sys.stderr)
    print("RESULT_JSON " + json.dumps(result))
    if int(os.environ.get("RANK", "0")) != 0:
        return  # Under torchrun every rank has the same (all-reduced) result; rank 0 writes the files.
    if _JSON_OUT.value:
        with open(_JSON_OUT.value, "w") as f:
            json.dump(result, f, indent=1)
    if _MD_OUT.value:
        config_file = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--config=")), "config")
        title = _LABEL.value or f"{os.path.basename(config_file)} — {result['backend']}, {result['num_devices']} device(s)"
        write_markdown(_MD_OUT.value, title, command, result)


if __name__ == "__main__":
    app.run(main)
