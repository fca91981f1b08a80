"""Stage-1 (decoder) training-step throughput: the real compiled phase steps (`stage1.build_training`).

  python benchmarks/stage1_throughput.py --config=configs/decoder_xl.py --encoder_stand_in    # TPU VM / GPU
  python benchmarks/stage1_throughput.py --config=configs/quickstart.py:part=stage1 --config.runtime.backend=cpu
  PJRT_DEVICE=CPU CPU_NUM_DEVICES=4 python benchmarks/stage1_throughput.py --config=configs/decoder_xl.py \
      --encoder_stand_in --config.runtime.backend=xla --config.train.global_batch_size=4 --steps 1 --warmup 0

For each phase (recon; + discriminator update; + GAN loss with the adaptive weight) it runs one step (compile),
`--warmup` steps, then `--steps` timed steps bracketed by `runtime.wait()`, on random uint8 images placed on
the devices before timing (`--steps 0`: build and place only, report the sizes). Reported per phase: step
time, this process's CPU seconds per step (all its threads, XLA's CPU device included: on a shared machine a
steadier measure than the wall time), images/s/device, graphs compiled; overall: training FLOPs per image (decoder fwd+bwd + encoder), and the bytes per device of the trainable state (decoder and
discriminator heads, their AdamW moments, the EMA) vs a replicated copy, from each tensor's actual layout.

`--encoder_stand_in` replaces the frozen DINOv2-B by a 768-channel patch projection of the same token grid (no
download; its cost is not the point): the decoder, LPIPS (random VGG16 unless a VGG path is configured) and the
discriminator (random DINO backbone unless a checkpoint is configured) are the recipe's.
"""
from __future__ import annotations

import json
import sys
import time

import torch
from absl import app, flags

from rae_xla import build
from rae_xla import config as config_lib
from rae_xla.models.rae import RAE
from rae_xla.models.vit_decoder import ViTDecoder
from rae_xla.runtime import make_runtime
from rae_xla.train import loop, stage1
from rae_xla.train import stage1_step as step_lib

import provenance  # benchmarks/provenance.py (the script's folder is on sys.path)
# The stage-2 benchmark's flags (--config, --steps, --warmup, --json_out, --md_out) and its per-device byte count.
import throughput
from throughput import local_bytes

_STAND_IN = flags.DEFINE_bool("encoder_stand_in", False, "Replace the encoder by a 768-d patch projection.")
_PLAN = flags.DEFINE_list("plan_fsdp", [], "Only report the planned bytes per device of decoder + heads + AdamW + "
                          "EMA for these fsdp sizes (models built on the meta device: no memory, no devices).")

_NOMINAL_STEPS_PER_EPOCH = 2502  # ImageNet-1k at global batch 512; only the LR schedule reads it.


class PatchStandIn(torch.nn.Module):
    """A frozen encoder stand-in: (B, 3, S, S) -> (B, (S/14)^2, 768) tokens by a fixed random 14-px patch
    projection (DINOv2-B/14's token grid and width, a tiny fraction of its FLOPs)."""

    def __init__(self, input_size: int, hidden_size: int = 768, patch_size: int = 14):
        super().__init__()
        self.hidden_size, self.patch_size, self.input_size = hidden_size, patch_size, input_size
        self.grid = input_size // patch_size
        self.image_mean, self.image_std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
        self.proj = torch.nn.Conv2d(3, hidden_size, patch_size, stride=patch_size)
        self.requires_grad_(False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.proj(pixels).flatten(2).transpose(1, 2)


def stand_in_rae(config) -> RAE:
    enc = PatchStandIn(config.rae.encoder_input_size)
    dec = ViTDecoder.from_preset(config.rae.decoder_config, in_channels=enc.hidden_size, num_patches=enc.grid ** 2,
                                 patch_size=config.rae.decoder_patch_size)
    return RAE(enc, dec, noise_tau=config.rae.noise_tau, latent_mean=None, latent_var=None)


def state_bytes(training, runtime, *, ran: bool) -> dict:
    """Per-device vs replicated bytes of decoder + heads + their AdamW moments, and of the EMA.

    ran=False (no step ran): the AdamW moments have no layout yet; they are counted as two copies of their
    parameter with the parameter's layout (what the compiler gives them in the step).
    """
    trainable = [p for p in runtime.unwrap(training.decoder).parameters() if p.requires_grad]
    trainable += [p for p in training.disc.parameters() if p.requires_grad]
    opt = ([v for o in (training.optimizer, training.disc_optimizer) for s in o.state.values() for v in s.values()
            if isinstance(v, torch.Tensor) and v.ndim > 0] if ran else trainable + trainable)
    ema = list(training.ema_decoder.parameters())

    def total(tensors, per_device):
        return sum(local_bytes(t) if per_device else t.numel() * t.element_size() for t in tensors)

    return {"trainable_params": sum(p.numel() for p in trainable),
            "state_bytes_per_device": total(trainable, True) + total(opt, True),
            "state_replicated_bytes": total(trainable, False) + total(opt, False),
            "ema_bytes_per_device": total(ema, True), "ema_replicated_bytes": total(ema, False)}


def benchmark(config, *, steps: int, warmup: int, stand_in: bool) -> dict:
    for field in ("decoder_weights", "stats"):
        config.rae[field] = ""
    config.stage1.disc_arch.dino_ckpt_path = (config.stage1.disc_arch.dino_ckpt_path
                                              if config_lib.PLACEHOLDER not in config.stage1.disc_arch.dino_ckpt_path
                                              else "random")
    if not config.stage1.lpips_vgg_path:
        config.stage1.lpips_random_backbone = True
    runtime = make_runtime(config.runtime)
    try:
        training = stage1.build_training(config, runtime, _NOMINAL_STEPS_PER_EPOCH,
                                         rae=stand_in_rae(config) if stand_in else None)
        b = runtime.per_process_batch(config.train.global_batch_size)
        size = config.data.image_size
        g = torch.Generator().manual_seed(0)
        host = {"image": torch.randint(0, 256, (b, size, size, 3), dtype=torch.uint8, generator=g)}
        if training.settings.host_rng:
            host.update(step_lib.host_draws(0, 0, b, training.settings.latent_shape, slice(0, b)))
        batch = next(iter(runtime.device_batches([host])))
        sums = loop.zero_scalars(step_lib.SUM_KEYS, runtime.device)
        phases, step = {}, 0
        for phase, name in enumerate(step_lib.PHASE_NAMES if steps > 0 else ()):  # --steps 0: sizes only.
            fn = training.step_fns[(training.settings.perceptual_weight > 0, phase)]  # With LPIPS.
            before = runtime.compile_stats().get("graphs")
            started = time.perf_counter()
            for _ in range(1 + warmup):
                runtime.seed(step)
                sums = fn(batch, sums)
                step += 1
            runtime.wait()
            first = time.perf_counter() - started
            warm = runtime.compile_stats().get("graphs")
            started, cpu_started = time.perf_counter(), time.process_time()
            for _ in range(steps):
                runtime.seed(step)
                sums = fn(batch, sums)
                step += 1
            runtime.wait()
            step_s = (time.perf_counter() - started) / max(steps, 1)
            step_cpu_s = (time.process_time() - cpu_started) / max(steps, 1)
            after = runtime.compile_stats().get("graphs")
            phases[name] = {"first_and_warmup_seconds": first, "step_seconds": step_s, "step_cpu_seconds": step_cpu_s,
                            "images_per_sec_per_device": config.train.global_batch_size / step_s / runtime.num_devices,
                            "graphs_compiled": None if before is None else warm - before,
                            "graphs_compiled_while_timing": None if after is None else after - warm}
        loss = float(sums["total_sum"].cpu()) / step if step else None  # Sync point, after timing.
        return {"backend": runtime.kind, "device_kind": runtime.device_kind, "num_devices": runtime.num_devices,
                "mesh": runtime.mesh_shape, "param_sharding": config.runtime.param_sharding,
                "precision": config.runtime.precision, "global_batch_size": config.train.global_batch_size,
                "image_size": size, "decoder": config.rae.decoder_config, "encoder_stand_in": stand_in,
                "steps_timed_per_phase": steps, "warmup": warmup, "phases": phases,
                "compiled_graphs_total": runtime.compile_stats().get("graphs"),
                "flops_per_image": training.flops_per_image, "mean_total_loss": loss,
                **state_bytes(training, runtime, ran=step > 0)}
    finally:
        runtime.close()


def planned_bytes(config, fsdp_sizes: list[int]) -> dict:
    """Bytes per device of the trainable state under the runtime's sharding plan (runtime.sharding), per fsdp size.

    Trainable params + AdamW's two moments (same layout as their parameter) + the decoder's EMA, fp32; what
    `plan_param_sharding` shards on 'fsdp' is divided by the fsdp size, the rest is replicated.
    """
    from rae_xla.models.discriminator import build_discriminator
    from rae_xla.runtime import sharding
    g = config.stage1
    with torch.device("meta"):
        decoder = stand_in_rae(config).decoder if config.rae.encoder == "dinov2" else None
        arch = dict(g.disc_arch, dino_ckpt_path="random")
        disc = build_discriminator(arch, recipe=build.disc_recipe(g))
    tensors = [(f"decoder.{n}", p.shape) for n, p in decoder.named_parameters()]
    tensors += [(f"disc.{n}", p.shape) for n, p in disc.named_parameters() if p.requires_grad]
    out = {}
    for size in fsdp_sizes:
        plan = sharding.plan_param_sharding(tensors, strategy=config.runtime.param_sharding,
                                            rules=config.runtime.sharding_rules, mesh_shape={"data": 1, "fsdp": size})
        per_device = replicated = ema = 0
        for name, shape in tensors:
            n = 4 * int(torch.Size(shape).numel())
            local = n // size if any(axis is not None for axis in plan[name]) else n
            per_device += 3 * local  # Param + exp_avg + exp_avg_sq.
            replicated += 3 * n
            ema += local if name.startswith("decoder.") else 0
        out[size] = {"state_bytes_per_device": per_device, "state_replicated_bytes": replicated,
                     "ema_bytes_per_device": ema, "trainable_params": sum(int(torch.Size(s).numel()) for _, s in tensors)}
    return out


def markdown(result: dict, command: str) -> str:
    lines = [f"## stage 1, {result['decoder']}, {result['backend']} x{result['num_devices']} "
             f"(mesh {result['mesh']}, {result['param_sharding']}, {result['precision']})", "",
             f"`{command}`", "", f"- Commit: {provenance.commit()}; machine: {provenance.machine()}, torch "
             f"{torch.__version__}", "",
             "| phase | step s | process CPU s/step | images/s/device | graphs (first+warm-up) | graphs while timing |",
             "|---|---|---|---|---|---|"]
    for name, p in result["phases"].items():
        lines.append(f"| {name} | {p['step_seconds']:.3f} | {p['step_cpu_seconds']:.3f} | "
                     f"{p['images_per_sec_per_device']:.4f} | {p['graphs_compiled']} | "
                     f"{p['graphs_compiled_while_timing']} |")
    gib = 2 ** 30
    lines += ["", f"trainable params {result['trainable_params']:,}; state (params + AdamW) per device "
              f"{result['state_bytes_per_device'] / gib:.3f} GiB vs replicated "
              f"{result['state_replicated_bytes'] / gib:.3f} GiB; EMA per device {result['ema_bytes_per_device'] / gib:.3f} GiB; compiled graphs total "
              f"{result['compiled_graphs_total']}; training FLOPs/image {result['flops_per_image']:.3e}", ""]
    return "\n".join(lines)


def main(argv):
    del argv
    config = throughput._CONFIG.value
    if _PLAN.value:
        print(json.dumps(planned_bytes(config, [int(v) for v in _PLAN.value]), indent=2))
        return
    result = benchmark(config, steps=throughput._STEPS.value, warmup=throughput._WARMUP.value,
                       stand_in=_STAND_IN.value)
    print(json.dumps(result, indent=2))
    command = " ".join(["python", *sys.argv])
    if throughput._JSON_OUT.value:
        with open(throughput._JSON_OUT.value, "w") as f:
            json.dump(result, f, indent=2)
    if throughput._MD_OUT.value:
        with open(throughput._MD_OUT.value, "a") as f:
            f.write(markdown(result, command) + "\n")


if __name__ == "__main__":
    app.run(main)
