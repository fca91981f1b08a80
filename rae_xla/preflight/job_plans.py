"""The plan of each job kind: training (stage 1, stage 2), sampling, and the data passes (stats, reconstruct,
reference_stats, evaluate). Each adds its lines to a `plan.Plan` from the config alone (see plan.py)."""
from __future__ import annotations

import math

import torch

from rae_xla import build
from rae_xla.models import build_stage2_model, flops
from rae_xla.preflight import plan as plan_lib
from rae_xla.preflight.devices import DevicePlan

Plan = plan_lib.Plan


def _encoder_flops(rae_cfg) -> int | None:
    """One encoder forward per image (DINOv2 only, as the trainers count it); None when not tabulated."""
    shape = plan_lib.encoder_shape(rae_cfg)
    if shape is None or rae_cfg.encoder != "dinov2":
        return None
    hidden, patch, layers, registers = shape
    return flops.dinov2_forward_flops(input_size=rae_cfg.encoder_input_size, hidden_size=hidden, num_layers=layers,
                                      patch_size=patch, num_register_tokens=registers)


def _steps(plan: Plan, config, global_batch: int) -> None:
    t = config.train
    images, source = plan_lib.split_size(config.data)
    if images is None:
        per_epoch = None
        plan.add("dataset", f"{config.data.source} {config.data.name!r} split {config.data.split!r}: size unknown "
                            f"({source})")
    else:
        per_epoch = images // global_batch
        plan.add("dataset", f"{images:,} images in {config.data.name!r} split {config.data.split!r} ({source}): "
                            f"{per_epoch:,} steps per epoch")
    if t.max_steps > 0:
        epochs = f" = {t.max_steps / per_epoch:.2f} epochs" if per_epoch else ""
        plan.add("length", f"{t.max_steps:,} steps (train.max_steps){epochs}")
    elif per_epoch:
        plan.add("length", f"{t.epochs:g} epochs = {round(t.epochs * per_epoch):,} steps")
    else:
        plan.add("length", f"{t.epochs:g} epochs (steps depend on the dataset size)")


def _checkpoints(plan: Plan, config, state_bytes: float) -> None:
    t = config.train
    plan.add("checkpoints", f"every {t.checkpoint_every:,} steps, keep {t.keep_checkpoints}, ~{plan_lib.gib(state_bytes)} "
                            f"each ({plan_lib.gib(state_bytes * t.keep_checkpoints)} on disk); "
                            f"{'async' if t.checkpoint_async else 'blocking'} writes")


def train_stage2(plan: Plan, config, devices: DevicePlan, mesh) -> None:
    t = config.train
    plan_lib.add_batches(plan, "batch", t.global_batch_size, devices.num_devices, t.grad_accum_steps)
    _steps(plan, config, t.global_batch_size)
    with torch.device("meta"):
        model = build_stage2_model(config.model.arch, **build.model_kwargs(config.model))
    tensors = plan_lib.trainable_shapes(model)
    plan.add("model", f"{config.model.arch} {sum(math.prod(s) for _, s in tensors) / 1e6:,.1f} M trainable parameters")
    model_flops = 3 * flops.stage2_forward_flops(config.model.arch, **build.model_kwargs(config.model))
    encoder = _encoder_flops(config.rae)
    per_image = model_flops + (encoder or 0)
    plan.add("FLOPs", f"{plan_lib.flops_text(per_image)} per image (3 x model forward"
                      f"{' + encoder forward' if encoder else '; encoder not counted'}), "
                      f"{plan_lib.flops_text(per_image * t.global_batch_size)} per step")
    if mesh:
        _checkpoints(plan, config, plan_lib.add_state_bytes(plan, config, mesh, tensors, ema_prefixes=("",)))


def train_stage1(plan: Plan, config, devices: DevicePlan, mesh) -> None:
    from rae_xla.models.discriminator import build_discriminator
    from rae_xla.models.vit_decoder import ViTDecoder
    t, r = config.train, config.rae
    plan_lib.add_batches(plan, "batch", t.global_batch_size, devices.num_devices, t.grad_accum_steps)
    _steps(plan, config, t.global_batch_size)
    shape = plan_lib.encoder_shape(r)
    if shape is None:
        plan.add("model", f"encoder {r.encoder_path!r} is not on this machine: decoder size not planned")
        return
    hidden, patch = shape[0], shape[1]
    grid = r.encoder_input_size // patch
    with torch.device("meta"):
        decoder = ViTDecoder.from_preset(r.decoder_config, in_channels=hidden, num_patches=grid ** 2,
                                         patch_size=r.decoder_patch_size)
        disc = build_discriminator(dict(config.stage1.disc_arch, dino_ckpt_path="random"),
                                   recipe=build.disc_recipe(config.stage1))
    tensors = plan_lib.trainable_shapes(decoder, "decoder.") + plan_lib.trainable_shapes(disc, "disc.")
    count = lambda prefix: sum(math.prod(s) for n, s in tensors if n.startswith(prefix)) / 1e6  # noqa: E731
    plan.add("model", f"decoder {r.decoder_config} {count('decoder.'):,.1f} M + discriminator heads "
                      f"{count('disc.'):,.1f} M trainable parameters; {grid}x{grid}x{hidden} latents")
    decoder_flops = flops.vit_decoder_module_flops(decoder)
    if decoder_flops:
        plan.add("FLOPs", f"{plan_lib.flops_text(3 * decoder_flops)} per image for the decoder (3 x forward; encoder, "
                          "LPIPS and discriminator extra)")
    if mesh:
        _checkpoints(plan, config, plan_lib.add_state_bytes(plan, config, mesh, tensors, ema_prefixes=("decoder.",)))


def sampling(plan: Plan, config, devices: DevicePlan, mesh) -> None:
    s, sample = config.sampling, config.sample
    g = sample.guidance
    count = len(s.class_labels) if config.job == "sample" else s.num_samples
    plan.add("samples", f"{count:,} ({config.job}), {sample.method} with {sample.num_steps} grid points, guidance "
                        f"{g.method}" + (f" {g.scale} on [{g.t_min}, {g.t_max}]" if g.method != "none" else ""))
    plan_lib.add_batches(plan, "batch", s.global_batch_size, devices.num_devices)
    if config.job != "sample":
        plan.add("batches", f"{math.ceil(count / s.global_batch_size):,}")
    with torch.device("meta"):
        model = build_stage2_model(config.model.arch, **build.model_kwargs(config.model))
    params = sum(p.numel() for p in model.parameters()) / 1e6
    forward = flops.stage2_forward_flops(config.model.arch, **build.model_kwargs(config.model))
    steps = sample.num_steps - 1
    per_step = forward * (2 if g.method == "cfg" else 1)
    plan.add("model", f"{config.model.arch} {params:,.1f} M parameters; ~{plan_lib.flops_text(steps * per_step)} per "
                      f"image over {steps} steps (model only{', the weak model extra' if g.method == 'autoguidance' else ''})")


def data_pass(plan: Plan, config, devices: DevicePlan, mesh) -> None:
    """stats, reconstruct, reference_stats: one pass over a split."""
    images, source = plan_lib.split_size(config.data)
    limit = {"reconstruct": lambda: config.sampling.num_samples,
             "reference_stats": lambda: config.eval.reference_images}.get(config.job, lambda: 0)()
    batch = {"stats": lambda: config.stats.global_batch_size, "reconstruct": lambda: config.sampling.global_batch_size,
             "reference_stats": lambda: config.eval.global_batch_size}[config.job]()
    size = f"unknown size ({source})" if images is None else f"{images:,} images ({source})"
    used = f", {limit:,} used" if limit and limit > 0 else ""
    plan.add("dataset", f"{config.data.source} {config.data.name!r} split {config.data.split!r}: {size}{used}")
    plan_lib.add_batches(plan, "batch", batch, devices.num_devices)


def evaluate(plan: Plan, config, devices: DevicePlan, mesh) -> None:
    plan.add("evaluate", f"mode {config.eval.mode}: {config.eval.samples or '(eval.samples unset)'} against "
                         f"{config.eval.reference or '(eval.reference unset)'}")
    plan_lib.add_batches(plan, "batch", config.eval.global_batch_size, devices.num_devices)


BY_JOB = {"train_stage2": train_stage2, "train_stage1": train_stage1, "sample": sampling, "sample_fid": sampling,
          "stats": data_pass, "reconstruct": data_pass, "reference_stats": data_pass, "evaluate": evaluate}
