"""Host (trace + dispatch) time per step under torch_xla, with the real op graph at tiny widths.

torch_xla's LazyTensor mode re-runs the Python step on every call and hashes/dispatches the IR graph it
builds; the device waits meanwhile. Throughput is max(host time, device time), so on a TPU pod, where a
DiT^DH-XL step takes ~0.16 s of device time (configs/ditdh_xl.py docstring), the host time must be well
below that. This script keeps the op graph (depths, parameter count, token count) of the configured model
and shrinks the widths, so the device work is negligible and what is left is the host cost.

  PJRT_DEVICE=CPU CPU_NUM_DEVICES=4 python benchmarks/host_overhead.py --config=configs/ditdh_xl.py
  python benchmarks/host_overhead.py --config=configs/ditdh_xl.py --devices=1,4 --md_out=results.md
  ... --profile=stage2_train   # cProfile of the step calls, top functions by cumulative time

Reported per step kind (median over `--windows` windows of `--steps` steps each, after `--warmup`):
  call_s: the step call (trace + graph hash + dispatch), wait_s: the following `runtime.wait()`, per step;
  replays: calls of a captured step (runtime.capture_step, the default) that replayed its graph instead of
  tracing (runtime/xla_capture.py: a lazy call, 2-3 traces, then replays; keep --warmup >= 3), '—' when traced.
Steps are registered in STEP_BUILDERS (name -> builder(config, runtime) -> (step, state)). Stage-1 kinds need a
stage-1 config (add --config.runtime.capture_step=false for the re-traced numbers):
  PJRT_DEVICE=CPU CPU_NUM_DEVICES=4 python benchmarks/host_overhead.py --config=configs/decoder_xl.py \
      --step_kinds=stage1_train,stage1_recon
"""
from __future__ import annotations

import cProfile
import copy
import datetime
import functools
import io
import json
import os
import pstats
import shlex
import statistics
import subprocess
import sys
import time
from typing import Callable

import torch
from absl import app, flags
from ml_collections import config_flags

from rae_xla import config as config_lib
from rae_xla import flow
from rae_xla.models import encoders, vit_decoder
from rae_xla.models.rae import RAE
from rae_xla.runtime import make_runtime
from rae_xla.train import loop, stage1, stage1_step, stage2
from rae_xla.train.stage2_step import zero_sums

import provenance  # benchmarks/provenance.py (the script's folder is on sys.path)

_CONFIG = config_flags.DEFINE_config_file("config", "configs/ditdh_xl.py", "Experiment file in configs/.",
                                          lock_config=False)
_STEPS = flags.DEFINE_list("step_kinds", ["stage2_train", "stage2_sample"], "Which STEP_BUILDERS to time.")
_DEVICES = flags.DEFINE_list("devices", [], "Virtual XLA CPU device counts, each run in a child process "
                             "(empty: this process, with the PJRT_DEVICE/CPU_NUM_DEVICES already set).")
_TINY = flags.DEFINE_bool("tiny", True, "Shrink widths (hidden [32, 64], heads [2, 2], 8 latent channels, "
                          "global batch 8) keeping depths and token count: the op graph, not the FLOPs.")
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed steps (the first two compile the graphs).")
_WINDOWS = flags.DEFINE_integer("windows", 3, "Timing windows; the reported numbers are medians over them.")
_PER_WINDOW = flags.DEFINE_integer("steps", 3, "Steps per window.")
_PROFILE = flags.DEFINE_string("profile", "", "Step kind to run under cProfile after timing (prints the top).")
_FAST_COMPILE = flags.DEFINE_bool("fast_compile", False, "XLA backend optimisation level 0: compiles the graphs "
                                   "minutes faster on a busy CPU; the host time is unaffected, the wait is not.")
_JSON_OUT = flags.DEFINE_string("json_out", "", "Write the results (a list of dicts) as JSON here.")
_MD_OUT = flags.DEFINE_string("md_out", "", "Append a markdown section here.")
_LABEL = flags.DEFINE_string("label", "", "Title of the markdown section.")


def make_tiny(config) -> None:
    """The real depths and token grid with tiny widths (issue 10's setting): in place."""
    config.model.hidden_size = (32, 64) if isinstance(config.model.hidden_size, tuple) else 32
    config.model.num_heads = (2, 2) if isinstance(config.model.hidden_size, tuple) else 2
    config.model.in_channels = 8
    config.flow.shift = 6.93  # The 768-channel alpha: the encoder is replaced, so fix the shift explicitly.
    config.train.global_batch_size = 8
    config.train.grad_accum_steps = 1


_NOMINAL_STEPS_PER_EPOCH = 1251  # The LR schedule needs an epoch length (ImageNet at batch 1024); no effect on speed.


class LatentPassthrough(torch.nn.Module):
    """Stands in for the frozen RAE (as benchmarks/throughput.py --latents_input): 'images' are uint8 latents
    (B, h, w, C), which the step turns into (B, C, h, w) floats in [0, 1]; encode recentres them."""

    def __init__(self, latent_shape: tuple[int, int, int]):
        super().__init__()
        self.latent_shape = latent_shape

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return (images - 0.5) * 12.0 ** 0.5


def _latent_training(config, runtime):
    stand_in = LatentPassthrough((config.model.in_channels, config.model.input_size, config.model.input_size))
    return stage2.build_training(config, runtime, _NOMINAL_STEPS_PER_EPOCH, encoder_stand_in=stand_in)


# ---------------------------------------------------------------------------------------------------------------
# Step builders: name -> builder(config, runtime) -> (run_one(step_index), description). `run_one` calls the
# compiled step exactly as its trainer does (host work included) and returns nothing; the timer waits after it.


def build_stage2_train(config, runtime):
    """The stage-2 training step of `stage2.build_training` on random latents (encoder replaced)."""
    training = _latent_training(config, runtime)
    c, h, w = training.settings.latent_shape
    b = config.train.global_batch_size  # One process.
    g = torch.Generator().manual_seed(config.seed)
    host = [{"image": torch.randint(0, 256, (b, h, w, c), dtype=torch.uint8, generator=g),
             "label": torch.randint(0, config.model.num_classes, (b,), generator=g)} for _ in range(2)]
    batches = list(runtime.device_batches(host))
    state = {"sums": zero_sums(runtime.device)}

    def run_one(step: int) -> None:  # As the trainer's loop: host LR, per-step device seed, the step.
        for group in training.optimizer.param_groups:
            group["lr"] = training.lr_at(step)
        runtime.seed(config.seed * 1_000_003 + step)
        state["sums"] = training.step_fn(batches[step % 2], state["sums"])

    params = [p for p in runtime.unwrap(training.model).parameters() if p.requires_grad]
    return run_one, {"parameter_tensors": len(params), "step_fn": training.step_fn}


def build_stage2_sample(config, runtime):
    """One Euler step of the EMA model with CFG on the doubled batch (the training previews' sampler)."""
    training = _latent_training(config, runtime)
    batch = config.train.global_batch_size
    latent_shape = training.settings.latent_shape
    g = torch.Generator().manual_seed(config.seed)
    noise = torch.randn((batch, *latent_shape), generator=g).to(runtime.device)
    labels = (torch.arange(batch) % config.model.num_classes).to(runtime.device)
    guidance = flow.parse_guidance(dict(method="cfg", scale=1.5, t_min=0.0, t_max=1.0,
                                        null_label=config.model.num_classes), training.ema_model)
    field = flow.GuidedVelocity(training.ema_model, labels, guidance)
    step_fn = runtime.compile_step(functools.partial(flow.samplers.euler_step, field, (True,), False),
                                   name="sample_step")
    grid = flow.sampling_grid(50, training.settings.alpha)
    state = {"x": noise}

    def run_one(step: int) -> None:
        k = step % (len(grid) - 1)
        t_cur = torch.full((batch,), grid[k], dtype=torch.float32).to(runtime.device)
        t_next = torch.full((batch,), grid[k + 1], dtype=torch.float32).to(runtime.device)
        with torch.no_grad():
            state["x"] = step_fn(state["x"], t_cur, t_next)

    return run_one, {}


# --- Stage 1 (run with a stage-1 --config, e.g. configs/decoder_xl.py, and --step_kinds=stage1_train) -----------

_STAGE1_WIDTH = dict(hidden_size=32, num_heads=2, intermediate_size=64)  # Decoder widths under --tiny.
_B_ENCODER_DEPTH = 12  # DINOv2-B, SigLIP2-B and MAE-B, the stage-1 encoders, are all 12-block ViT-Bs.


def make_tiny_stage1(config) -> None:
    """Stage 1's depths and token grids with tiny widths and small images, in place (the decoder and encoder
    widths are applied when `_tiny_stage1_rae` builds them): random VGG16 for LPIPS (its own widths), the
    discriminator's DINO backbone at the released S_8 depth (12 blocks, 8-px patches: 784 tokens) and width 48
    unless the config already gives a small one (the quickstart's), decoder patches shrunk so that images are at
    most 64 px (16x16 latent tokens stay 16x16), global batch 8."""
    g = config.stage1
    g.lpips_random_backbone, g.lpips_vgg_path = True, ""
    g.disc_arch.dino_ckpt_path = "random"
    if g.disc_recipe.depth == 0:
        g.disc_recipe.update(depth=12, embed_dim=48, num_heads=2, patch_size=8)
    grid = config.rae.encoder_input_size // (14 if config.rae.encoder == "dinov2" else 16)
    config.rae.decoder_patch_size = max(1, min(config.rae.decoder_patch_size, 64 // grid))
    config.rae.decoder_weights = config.rae.stats = ""
    config.train.global_batch_size = 8


def _tiny_stage1_rae(config) -> RAE:
    """Random encoder of the configured kind (2 blocks of width 64, deepened to 12 copies of them unless the config
    names 'random-tiny') and the configured decoder's depth at `_STAGE1_WIDTH`."""
    r = config.rae
    encoder = encoders.load_encoder(r.encoder, encoders.RANDOM_TINY, r.encoder_input_size)
    if r.encoder_path != encoders.RANDOM_TINY:
        blocks = next(m for m in encoder.hf_model.modules() if isinstance(m, torch.nn.ModuleList))
        blocks.extend(copy.deepcopy(blocks[i % len(blocks)]) for i in range(len(blocks), _B_ENCODER_DEPTH))
        encoder.hf_model.config.num_hidden_layers = len(blocks)
        encoder.requires_grad_(False)
    geometry = (dict(vit_decoder.DECODER_PRESETS[r.decoder_config]) if r.decoder_config in vit_decoder.DECODER_PRESETS
                else vit_decoder.read_decoder_config(r.decoder_config))
    decoder = vit_decoder.ViTDecoder(**{**geometry, **_STAGE1_WIDTH}, in_channels=encoder.hidden_size,
                                     num_patches=encoder.grid ** 2, patch_size=r.decoder_patch_size)
    return RAE(encoder, decoder, noise_tau=r.noise_tau, latent_mean=None, latent_var=None,
               encoder_precision=r.encoder_precision)


def build_stage1(config, runtime, *, phase: int):
    """The stage-1 step of `phase` with LPIPS (`stage1.build_training`: frozen encoder, decoder, EMA,
    discriminator, both AdamW), called as `Stage1Task.train_step` does, on random uint8 images."""
    training = stage1.build_training(config, runtime, _NOMINAL_STEPS_PER_EPOCH,
                                     rae=_tiny_stage1_rae(config) if _TINY.value else None)
    b, size = config.train.global_batch_size, training.rae.decoder.patch_size * training.rae.encoder.grid
    g = torch.Generator().manual_seed(config.seed)
    host = []
    for step in range(2):
        batch = {"image": torch.randint(0, 256, (b, size, size, 3), dtype=torch.uint8, generator=g)}
        if training.settings.host_rng:
            batch.update(stage1_step.host_draws(config.seed, step, b, training.settings.latent_shape, slice(0, b)))
        host.append(batch)
    batches = list(runtime.device_batches(host))
    step_fn = training.step_fns[(training.settings.perceptual_weight > 0, phase)]
    state = {"sums": loop.zero_scalars(stage1_step.SUM_KEYS, runtime.device)}

    def run_one(step: int) -> None:  # As Stage1Task.train_step: both LRs on the host, per-step seed, the step.
        loop.set_lr(training.optimizer, training.lr_at(step))
        loop.set_lr(training.disc_optimizer, training.disc_lr_at(step))
        if not training.settings.host_rng:
            runtime.seed(config.seed * 1_000_003 + step)
        state["sums"] = step_fn(batches[step % 2], state["sums"])

    params = [p for m in (runtime.unwrap(training.decoder), training.disc) for p in m.parameters() if p.requires_grad]
    return run_one, {"parameter_tensors": len(params), "step_fn": step_fn}


STEP_BUILDERS: dict[str, Callable] = {
    "stage2_train": build_stage2_train,
    "stage2_sample": build_stage2_sample,
    # GAN phase (epochs 8-16 of the recipe): generator step with the adaptive weight + discriminator update.
    "stage1_train": functools.partial(build_stage1, phase=stage1_step.GAN),
    "stage1_recon": functools.partial(build_stage1, phase=stage1_step.RECON),  # L1 + LPIPS only (epochs 0-6).
}


# ---------------------------------------------------------------------------------------------------------------
# Timing.


def time_step(run_one, runtime, *, warmup: int, windows: int, per_window: int) -> dict:
    """Median per-step host time of the call and of the wait after it, over windows; compile counts."""
    started = time.perf_counter()
    for step in range(warmup):
        run_one(step)
        runtime.wait()
    warmup_s = time.perf_counter() - started
    graphs_warm = runtime.compile_stats().get("graphs")
    call_s, call_cpu_s, wait_s, step = [], [], [], warmup
    for _ in range(windows):
        calls, cpu, waits = [], [], []
        for _ in range(per_window):
            t0, c0 = time.perf_counter(), time.process_time()
            run_one(step)
            t1, c1 = time.perf_counter(), time.process_time()
            runtime.wait()
            calls.append(t1 - t0)
            cpu.append(c1 - c0)
            waits.append(time.perf_counter() - t1)
            step += 1
        call_s.append(statistics.fmean(calls))
        call_cpu_s.append(statistics.fmean(cpu))
        wait_s.append(statistics.fmean(waits))
    graphs = runtime.compile_stats().get("graphs")
    # call_cpu_s: CPU seconds of this process during the call. On a shared box the wall time grows with the
    # other jobs' load; the CPU time much less, so it is the better A/B measure there.
    return {"call_s": statistics.median(call_s), "call_cpu_s": statistics.median(call_cpu_s),
            "wait_s": statistics.median(wait_s),
            "window_call_s": call_s, "warmup_s": warmup_s, "graphs": graphs,
            "graphs_compiled_while_timing": None if graphs is None else graphs - graphs_warm}


def profile_step(run_one, runtime, first_step: int, steps: int = 3, top: int = 35) -> str:
    """cProfile of `steps` step calls (each followed by a wait outside the profile); the top by cumulative time."""
    profiler = cProfile.Profile()
    for step in range(first_step, first_step + steps):
        profiler.enable()
        run_one(step)
        profiler.disable()
        runtime.wait()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def measure(config, kinds, *, warmup, windows, per_window, profile) -> list[dict]:
    runtime = make_runtime(config.runtime)
    results = []
    try:
        for kind in kinds:
            run_one, info = STEP_BUILDERS[kind](config, runtime)
            step_fn = info.pop("step_fn", None)
            timing = time_step(run_one, runtime, warmup=warmup, windows=windows, per_window=per_window)
            timing["replays"] = getattr(step_fn, "replays", None)  # None: not a captured step.
            results.append({"step": kind, "num_devices": runtime.num_devices, "backend": runtime.kind, **info,
                            **timing})
            print(f"{kind}: {runtime.num_devices} device(s): call {timing['call_s']:.4f} s (CPU "
                  f"{timing['call_cpu_s']:.4f} s), wait "
                  f"{timing['wait_s']:.4f} s per step", flush=True)
            if profile == kind:
                print(profile_step(run_one, runtime, warmup + windows * per_window), flush=True)
    finally:
        runtime.close()
    return results


def run_children(device_counts, argv) -> list[dict]:
    """Re-runs this script once per device count (XLA's device count is fixed per process)."""
    results = []
    for count in device_counts:
        env = dict(os.environ, PJRT_DEVICE="CPU", CPU_NUM_DEVICES=str(count))
        # sys.argv, not absl's argv (which holds only the positional arguments left after flag parsing): the
        # child must see the same flags, or it measures the defaults (as the 1-device rows once did).
        args = [a for a in sys.argv[1:] if not a.startswith(("--devices", "--md_out", "--json_out", "--label"))]
        out = subprocess.run([sys.executable, argv[0], *args, "--devices="], env=env, capture_output=True,
                             text=True, check=False)
        print(out.stdout, end="", flush=True)
        lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT_JSON ")]
        if out.returncode or not lines:
            sys.exit(f"child run with {count} device(s) failed ({out.returncode}):\n{out.stderr[-4000:]}")
        results.extend(json.loads(lines[-1][len("RESULT_JSON "):]))
    return results


def table(results: list[dict]) -> str:
    lines = ["| step | devices | parameter tensors | call s/step (median) | call CPU s/step | wait s/step | graphs "
             "| replays |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        replays = r.get("replays")
        lines.append(f"| {r['step']} | {r['num_devices']} | {r.get('parameter_tensors', '—')} | {r['call_s']:.4f} "
                     f"| {r.get('call_cpu_s', float('nan')):.4f} | {r['wait_s']:.4f} | {r['graphs']} "
                     f"| {'—' if replays is None else replays} |")
    return "\n".join(lines)


def main(argv):
    config = _CONFIG.value
    if _TINY.value:
        (make_tiny_stage1 if config.job == "train_stage1" else make_tiny)(config)
    config.runtime.backend = "xla"
    if _FAST_COMPILE.value:  # Before torch_xla is imported (make_runtime imports it).
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()
    command = " ".join(["python", *map(shlex.quote, sys.argv)])  # sys.argv: absl's argv lost the flags.
    if _DEVICES.value:
        results = run_children([int(d) for d in _DEVICES.value], argv)
    else:
        results = measure(config, _STEPS.value, warmup=_WARMUP.value, windows=_WINDOWS.value,
                          per_window=_PER_WINDOW.value, profile=_PROFILE.value)
        print("RESULT_JSON " + json.dumps(results), flush=True)
    print(table(results))
    if _JSON_OUT.value:
        with open(_JSON_OUT.value, "w") as f:
            json.dump(results, f, indent=1)
    if _MD_OUT.value:
        header = "" if os.path.exists(_MD_OUT.value) else (
            f"# Host time per XLA step — {datetime.date.today().isoformat()}\n\n- Commit: {provenance.commit()}\n"
            f"- Machine: {provenance.machine()}, torch {torch.__version__}\n- Script: `benchmarks/host_overhead.py`\n")
        with open(_MD_OUT.value, "a") as f:
            f.write(f"{header}\n## {_LABEL.value or 'host overhead'}\n\n- Command: `{command}`\n- 1-min load "
                    f"average at the end: {os.getloadavg()[0]:.1f}\n\n{table(results)}\n")


if __name__ == "__main__":
    app.run(main)
