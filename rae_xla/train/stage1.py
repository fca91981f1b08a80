"""Stage 1: train the RAE decoder with L1 + LPIPS + GAN on a frozen encoder (docs/reference.md §5).

  python -m rae_xla.main --config=configs/decoder_xl.py --workdir=gs://bucket/runs/decoder_xl

Reads top to bottom as the algorithm: data (resize + random crop, no flip) -> frozen encoder -> decoder, its EMA
and the discriminator heads sharded by the runtime -> two AdamW optimisers with their cosine schedules -> resume
-> three compiled steps, one per phase, picked on the host from the step -> the shared loop (train/loop.py:
metrics, reconstruction previews, checkpoints, SIGTERM, NaN stop).

Deliberate differences from the official trainer (docs/reference.md §5.4, §5.7, §12):
- the discriminator's gradients are averaged over all data shards (official: each rank updates its own heads);
- the decoder's gradients are always reduced (official before PR #53: never) and, on torchrun, the adaptive
  weight uses the global batch's gradients, as it does under XLA SPMD (official: the rank's own);
- the EMA holds the decoder only (the encoder is frozen, so the official EMA of the whole RAE equals it);
- the noise augmentation is added to the (unnormalised) latents after encoding, which equals the official
  token-space noise because stage 1 has no latent statistics (the config refuses stats);
- fp16 is not offered (the official fp16 path raises NameError); bf16 autocast covers decoder, LPIPS and
  discriminator, the adaptive weight is computed outside autocast as in the official code;
- checkpoints are taken every `train.checkpoint_every` steps (official: at the start of each epoch).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from rae_xla import config as config_lib
from rae_xla import data
from rae_xla.eval import in_training
from rae_xla.losses.lpips import LPIPS
from rae_xla.models import flops
from rae_xla.models.discriminator import build_discriminator
from rae_xla.models.rae import RAE
from rae_xla import build
from rae_xla.train import ema as ema_lib
from rae_xla.train import loop, schedules
from rae_xla.train import optimizer as optimizer_lib
from rae_xla.train import stage1_step as step_lib
from rae_xla.train import step_state


def run(config, workdir: str, runtime) -> bool:
    """Trains the decoder until `config.train` says stop (or SIGTERM: returns True); all processes run it."""
    t = config.train
    steps_per_epoch, total_steps = loop.run_length(config)
    training = build_training(config, runtime, steps_per_epoch)
    checkpoints = loop.open_checkpoints(workdir, runtime, keep=t.keep_checkpoints, **loop.checkpoint_options(t))
    start_step = loop.resume(checkpoints, training.state)
    return loop.TrainLoop(config=config, workdir=workdir, runtime=runtime, task=Stage1Task(config, runtime, training),
                   checkpoints=checkpoints, steps_per_epoch=steps_per_epoch, total_steps=total_steps).run(start_step)


@dataclasses.dataclass
class Training:
    """Everything the loop (or a benchmark) needs, placed on the runtime's devices."""
    rae: RAE  # Frozen encoder + the decoder's geometry; `rae.decode(z, decoder=...)`.
    decoder: torch.nn.Module  # What the step calls (a DDP wrapper or an FSDP2 module on torchrun).
    ema_decoder: torch.nn.Module
    disc: torch.nn.Module
    optimizer: torch.optim.Optimizer
    disc_optimizer: torch.optim.Optimizer
    lr_at: Any  # step -> generator LR.
    disc_lr_at: Any  # step -> discriminator LR (its schedule starts at disc_upd_start).
    phase_starts: tuple[int, int, int]  # First step with (LPIPS, discriminator updates, the GAN loss).
    step_fns: dict  # (use_lpips, phase) -> compiled step; a run calls at most four of them.
    settings: step_lib.Stage1Settings
    flops_per_image: int

    @property
    def state(self) -> dict:
        """What a checkpoint holds (the heads' spectral-norm u, v are buffers of `disc`)."""
        return {"decoder": self.decoder, "ema": self.ema_decoder, "optim": (self.decoder, self.optimizer),
                "disc": self.disc, "disc_optim": (self.disc, self.disc_optimizer)}

    def phase(self, step: int) -> int:
        _, disc_upd, gan = self.phase_starts
        return step_lib.GAN if step >= gan else step_lib.DISC if step >= disc_upd else step_lib.RECON

    def step_fn(self, step: int):
        """The compiled step for `step` (chosen on the host: no recompile inside a phase)."""
        use_lpips = self.settings.perceptual_weight > 0 and step >= self.phase_starts[0]
        return self.step_fns[(use_lpips, self.phase(step))]


def build_training(config, runtime, steps_per_epoch: int, *, rae: RAE | None = None) -> Training:
    """Frozen encoder, decoder + EMA + discriminator heads placed by the runtime, AdamW x2, schedules, 3 steps.

    rae: a host RAE to train instead of `config.rae`'s (benchmarks pass one with an encoder stand-in).
    """
    t, g = config.train, config.stage1
    torch.manual_seed(config.seed)  # Same initial weights on every process.
    rae = (rae if rae is not None else build.build_rae(config.rae)).eval()
    decoder_module = rae.decoder.train(False)  # No dropout in the decoder: eval == train.
    decoder_module.requires_grad_(True)  # Official: the whole decoder, position table included (§5.2).
    ema_module = ema_lib.init_ema(decoder_module)
    disc_module = build_discriminator(dict(g.disc_arch), recipe=build.disc_recipe(g)).eval()
    lpips = _build_lpips(g) if g.perceptual_weight > 0 else None
    flops_per_image = training_flops_per_image(config, rae)

    rae.to(runtime.device)
    runtime.place_frozen(rae.encoder)
    decoder = runtime.shard_model(decoder_module)
    ema_decoder = runtime.place_frozen(ema_module, like_trainable=True)
    disc, average_disc_grads = _place_discriminator(runtime, disc_module)
    if lpips is not None:
        lpips = runtime.place_frozen(lpips)

    o = t.optimizer
    decoder_params = [p for p in runtime.unwrap(decoder).parameters() if p.requires_grad]
    disc_params = [p for p in disc_module.parameters() if p.requires_grad]
    # XLA: torch.optim.AdamW's arithmetic and state layout as a few multi-tensor calls (its per-tensor XLA path
    # traces ~10 ops per tensor on the host every step, issue 10); torch backends keep torch's (DTensor-aware) one.
    adamw = optimizer_lib.ForeachAdamW if runtime.kind == "xla" else torch.optim.AdamW
    optimizer = adamw(decoder_params, lr=t.lr_schedule.base_lr, betas=tuple(o.betas), eps=o.eps,
                      weight_decay=o.weight_decay)
    disc_optimizer = adamw(disc_params, lr=g.disc_lr_schedule.base_lr, betas=tuple(o.betas), eps=o.eps,
                           weight_decay=o.weight_decay)
    for opt in (optimizer, disc_optimizer):
        _init_adamw_state(opt, runtime)
    try:
        lr_at = schedules.make_schedule(t.lr_schedule, steps_per_epoch)
        disc_schedule = schedules.make_schedule(g.disc_lr_schedule, steps_per_epoch)
    except ValueError as e:
        raise config_lib.ConfigError(f"train.lr_schedule / stage1.disc_lr_schedule: {e}") from e
    phase_starts = tuple(_to_step(start, g.start_unit, steps_per_epoch)
                         for start in (g.lpips_start, g.disc_upd_start, g.disc_start))

    settings = step_lib.Stage1Settings(
        latent_shape=tuple(rae.latent_shape), noise_tau=float(config.rae.noise_tau),
        perceptual_weight=float(g.perceptual_weight), disc_weight=float(g.disc_weight),
        max_d_weight=float(g.max_d_weight), disc_loss=g.disc_loss, gen_loss=g.gen_loss,
        diffaug_prob=float(g.diffaug_prob), diffaug_cutout=float(g.diffaug_cutout), clip_grad=float(t.clip_grad),
        ema_decay=float(t.ema_decay), precision=config.runtime.precision, host_rng=config.runtime.rng == "host")
    common = dict(
        rae=rae, decoder=decoder, decoder_params=decoder_params,
        # Read at each call: under FSDP2 the module holds the all-gathered weight between forward and backward.
        last_layer=lambda: runtime.unwrap(decoder).decoder_pred.weight,
        ema_pairs=ema_lib.paired_parameters(ema_decoder, runtime.unwrap(decoder)), lpips=lpips, disc=disc,
        disc_params=disc_params, optimizer=optimizer, disc_optimizer=disc_optimizer,
        autocast=lambda: runtime.autocast(config.runtime.precision), reduce_grad=_grad_averager(runtime),
        average_disc_grads=average_disc_grads, settings=settings)
    # One function per (LPIPS on/off, phase); only those a run reaches are ever traced and compiled (at most 4,
    # each once: max_graphs=2 allows the compiler's separate first call when the optimizer state is still lazy).
    # XLA with runtime.capture_step: each is traced until two traces agree, then replayed without its Python
    # (runtime/xla_capture.py; the ViT-XL recipe's GAN step: 9.0 s -> 0.23 s of host time per call, docs/readme/
    # stage1.md). Everything the three steps touch is their `state` (one list: what a phase does not read is not
    # an input of its graph).
    state = functools.partial(step_state.step_state, tuple(m for m in (rae, ema_decoder, disc, lpips) if m is not None),
                              (optimizer, disc_optimizer))
    step_fns = {(use_lpips, phase): runtime.compile_step(
        step_lib.make_train_step(phase=phase, use_lpips=use_lpips, **common),
        name=f"stage1_{step_lib.PHASE_NAMES[phase]}{'_lpips' if use_lpips else ''}", max_graphs=2, state=state,
        prepare=optimizer_lib.prepare_hooks(runtime, (optimizer,) if phase == step_lib.RECON else
                               (optimizer, disc_optimizer)))
        for use_lpips in ((False, True) if lpips is not None else (False,))
        for phase in (step_lib.RECON, step_lib.DISC, step_lib.GAN)}
    return Training(rae=rae, decoder=decoder, ema_decoder=ema_decoder, disc=disc, optimizer=optimizer,
                    disc_optimizer=disc_optimizer, lr_at=lr_at,
                    disc_lr_at=lambda step: disc_schedule(max(step - phase_starts[1], 0)),
                    phase_starts=phase_starts, step_fns=step_fns, settings=settings, flops_per_image=flops_per_image)


# ---------------------------------------------------------------------------------------------------------------
# Building blocks of the setup.


def _init_adamw_state(optimizer: torch.optim.AdamW, runtime) -> None:
    """Creates AdamW's state as its first step would (step 0, zero moments): identical updates, and every
    checkpoint holds both optimizers' tensors, so a run saved before the discriminator's first update resumes
    (a checkpoint without them could not be loaded into a primed optimizer). The moments get their parameter's
    layout (sharded like it under XLA FSDP; a plain zeros_like would be replicated there)."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            optimizer.state[p] = {"step": torch.tensor(0.0), "exp_avg": runtime.zeros_like_param(p),
                                  "exp_avg_sq": runtime.zeros_like_param(p)}


def _to_step(start: float, unit: str, steps_per_epoch: int) -> int:
    return int(round(start)) if unit == "step" else int(round(start * steps_per_epoch))


def _build_lpips(g) -> LPIPS:
    if g.lpips_random_backbone:
        return LPIPS(backbone="random")
    return LPIPS(backbone=g.lpips_vgg_path or "imagenet")


def _distributed_torch(runtime) -> bool:
    return runtime.kind != "xla" and runtime.process_count > 1 and dist.is_initialized()


def _grad_averager(runtime):
    """grad -> its mean over processes (torchrun); None otherwise (XLA SPMD gradients are already global)."""
    if not _distributed_torch(runtime):
        return None

    def average(grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad / runtime.process_count
    return average


def _place_discriminator(runtime, disc: torch.nn.Module):
    """(disc on the device, average_disc_grads()).

    XLA: heads sharded by the runtime's FSDP rules, the batch over every device, so the gradients are the global
    batch's. torchrun: the heads are replicated (not wrapped: the D step calls them twice before one backward)
    and their gradients all-reduced after the backward, one flat buffer per step.
    """
    if runtime.kind == "xla":
        disc = runtime.shard_model(disc)
        runtime.pin_replicated(disc.spectral_norm_buffers().values())  # One layout for u, v: one graph per phase.
        return disc, lambda: None
    disc.to(runtime.device)
    if not _distributed_torch(runtime):
        return disc, lambda: None
    params = [p for p in disc.parameters() if p.requires_grad]

    def average_disc_grads() -> None:
        grads = [p.grad for p in params]
        flat = torch.cat([g_.reshape(-1) for g_ in grads])
        dist.all_reduce(flat)
        flat /= runtime.process_count
        offset = 0
        for grad in grads:
            grad.copy_(flat[offset:offset + grad.numel()].view_as(grad))
            offset += grad.numel()
    return disc, average_disc_grads


def training_flops_per_image(config, rae: RAE) -> int:
    """Decoder forward + backward (3x forward) plus one encoder forward, per image. The discriminator and LPIPS
    are not counted (MFU then under-reports in the GAN phases)."""
    decoder = 3 * flops.vit_decoder_module_flops(rae.decoder)
    if config.rae.encoder != "dinov2" or not hasattr(rae.encoder, "hf_model"):
        return decoder  # Encoder FLOPs are tabulated for DINOv2 only; MFU then slightly under-reports.
    hf = rae.encoder.hf_model.config
    return decoder + flops.dinov2_forward_flops(
        input_size=config.rae.encoder_input_size, hidden_size=hf.hidden_size, num_layers=hf.num_hidden_layers,
        mlp_ratio=hf.mlp_ratio, patch_size=hf.patch_size, num_register_tokens=hf.num_register_tokens)


# ---------------------------------------------------------------------------------------------------------------
# What the shared loop calls: host inputs, the step of the phase, metrics, reconstruction previews.


class Stage1Task:
    """Stage 1 as a `loop.Task`."""

    def __init__(self, config, runtime, training: Training):
        self.config, self.runtime, self.training = config, runtime, training
        self.state = training.state
        self.flops_per_image = training.flops_per_image
        self.preview_images = preview_images(config.data, config.train.num_sample_images)  # uint8 (N, S, S, 3)
        self.preview_device = torch.from_numpy(self.preview_images).to(runtime.device)  # Replicated.
        self.reconstruction_eval = in_training.ReconstructionEval(config, runtime) if config.train.eval_every else None

    def zero_sums(self) -> dict:
        return loop.zero_scalars(step_lib.SUM_KEYS, self.runtime.device)

    def host_batch(self, batch: dict, rows: slice) -> dict:
        out = {"image": batch["image"]}
        if self.training.settings.host_rng:
            out.update(step_lib.host_draws(self.config.seed, batch["step"], self.config.train.global_batch_size,
                                           self.training.settings.latent_shape, rows))
        return out

    def train_step(self, step: int, batch: dict, sums: dict) -> dict:
        tr = self.training
        loop.set_lr(tr.optimizer, tr.lr_at(step))
        loop.set_lr(tr.disc_optimizer, tr.disc_lr_at(step))
        if not tr.settings.host_rng:
            self.runtime.seed(self.config.seed * 1_000_003 + step)  # Randomness is a function of the step.
        return tr.step_fn(step)(batch, sums)

    def scalars(self, values: dict[str, float], steps: int) -> dict[str, float]:
        return step_lib.window_scalars(values, steps)

    def host_scalars(self, step: int) -> dict[str, float]:
        tr = self.training
        out = {"lr/generator": tr.lr_at(step - 1), "phase": float(tr.phase(step - 1))}
        if step - 1 >= tr.phase_starts[1]:
            out["lr/discriminator"] = tr.disc_lr_at(step - 1)
        return out

    def preview(self, step: int) -> dict:
        """EMA reconstructions of fixed images, each original next to its reconstruction."""
        del step
        recon = reconstruct(self.runtime, self.training.rae, self.training.ema_decoder, self.preview_device)
        return {"reconstructions": side_by_side(self.preview_images, recon)}

    def evaluate(self, step: int) -> dict:
        """rFID / PSNR / SSIM of EMA reconstructions of held-out images (rae_xla/eval/in_training.py)."""
        del step
        if self.reconstruction_eval is None:
            return {}
        tr = self.training
        return self.reconstruction_eval(lambda images: reconstruct_uint8(tr.rae, tr.ema_decoder, images))


@torch.no_grad()
def reconstruct(runtime, rae: RAE, decoder: torch.nn.Module, images: torch.Tensor) -> np.ndarray:
    """uint8 (N, S, S, 3) device images -> uint8 (N, S', S', 3) host reconstructions (clamped, truncated as in the
    official stage1_sample scripts). No noise: the RAE is in eval mode."""
    return runtime.to_host(reconstruct_uint8(rae, decoder, images)).numpy()  # sync point: previews only.


@torch.no_grad()
def reconstruct_uint8(rae: RAE, decoder: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, S, S, 3) -> uint8 (N, S', S', 3) reconstructions on the images' device."""
    x = images.permute(0, 3, 1, 2).float() / 255.0
    out = rae.decode(rae.encode(x), decoder=decoder).clamp(0, 1)
    return (out * 255).to(torch.uint8).permute(0, 2, 3, 1)


def preview_images(data_cfg, count: int) -> np.ndarray:
    """The first `count` images of the dataset, ADM center-cropped: the same on every process and every preview."""
    cfg = dict(data_cfg.to_dict(), num_workers=0)  # One batch: no worker processes.
    loader = data.make_eval_loader(cfg, batch_size=count, process_index=0, process_count=1)
    return next(iter(loader))["image"].numpy()


def side_by_side(originals: np.ndarray, recon: np.ndarray) -> np.ndarray:
    """(N, S, S, 3) pairs -> (N, S, 2S, 3): original left, reconstruction right (resized by nearest if needed)."""
    if recon.shape[1:3] != originals.shape[1:3]:
        step = recon.shape[1] / originals.shape[1]
        idx = (np.arange(recon.shape[1]) / step).astype(int)
        originals = originals[:, idx][:, :, idx]
    return np.concatenate([originals, recon], axis=2)
