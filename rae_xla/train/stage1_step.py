"""The stage-1 training step: frozen encoder -> noisy latents -> decoder -> L1 + LPIPS (+ GAN) -> AdamW -> EMA
(-> one discriminator update) (docs/reference.md §5.3, §5.4).

Three phases, each ONE function compiled once (XLA), chosen on the host from the step number:
  RECON (0)  generator step with L1 + perceptual_weight * LPIPS;
  DISC  (1)  + a discriminator update after the generator step (from `disc_upd_start`);
  GAN   (2)  + the GAN loss in the generator step with the adaptive weight (from `disc_start`).
LPIPS joins at `lpips_start` (official default: step 0), so a run has at most four distinct steps.
The adaptive weight's two gradients w.r.t. `decoder_pred.weight` are taken with autograd inside the graph.
Nothing is read on the host: metrics leave as running device sums, read by the loop at log intervals.

Randomness per step: the noise augmentation (u_b, eps) and three DiffAug draws (generator fake, discriminator
fake, discriminator real). In runtime.rng='host' mode they come in the batch (`host_draws`, a pure function of
(seed, step) for the whole global batch, so eager CPU, XLA and torchrun see identical numbers); otherwise they
are drawn on the device, seeded per step by the trainer.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable

import torch
from torch import nn

from rae_xla.losses import gan
from rae_xla.losses.diffaug import diffaug
from rae_xla.train import ema as ema_lib
from rae_xla.train import optimizer as optimizer_lib

RECON, DISC, GAN = 0, 1, 2
PHASE_NAMES = ("recon", "disc", "gan")
DIFFAUG_DRAWS = 7  # Per-sample uniforms of DiffAug: translation (2), colour (3), cutout (2).
AUG_STREAMS = ("gen", "fake", "real")  # generator fake, discriminator fake, discriminator real.
SUM_KEYS = ("total_sum", "recon_sum", "lpips_sum", "gan_sum", "disc_sum", "accuracy_sum", "weight_sum",
            "logits_real_sum", "logits_fake_sum", "lpips_steps", "gan_steps", "disc_steps", "nonfinite")


@dataclasses.dataclass(frozen=True)
class Stage1Settings:
    """What the step needs from the config, resolved to plain values.

    latent_shape: (C, h, w) of the RAE latents; noise_tau: tau of the noise augmentation (docs/reference.md §1.3).
    """
    latent_shape: tuple[int, int, int]
    noise_tau: float
    perceptual_weight: float
    disc_weight: float
    max_d_weight: float
    disc_loss: str
    gen_loss: str
    diffaug_prob: float
    diffaug_cutout: float
    clip_grad: float
    ema_decay: float
    precision: str
    host_rng: bool


def host_draws(seed: int, step: int, global_batch: int, latent_shape: tuple[int, int, int],
               rows: slice) -> dict[str, torch.Tensor]:
    """The step's random inputs for the WHOLE global batch, drawn on the host from (seed, step), sliced to `rows`.

    noise_u (b,) and noise_eps (b, C, h, w): the noise augmentation sigma_b = tau * u_b, z + sigma_b * eps.
    For each DiffAug stream s in AUG_STREAMS: {s}_rand3 (b, 3) (the three coins, the same in every row: every
    input is batch-sharded, so a per-call draw is repeated per row) and {s}_rand01 (b, 7) (per-sample draws).
    """
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    out = {"noise_u": torch.rand(global_batch, generator=g),
           "noise_eps": torch.randn((global_batch, *latent_shape), generator=g)}
    for stream in AUG_STREAMS:
        out[f"{stream}_rand3"] = torch.rand(3, generator=g).expand(global_batch, 3).contiguous()
        out[f"{stream}_rand01"] = torch.rand((global_batch, DIFFAUG_DRAWS), generator=g)
    return {k: v[rows] for k, v in out.items()}


def _draws(batch: dict, settings: Stage1Settings, b: int, device) -> dict[str, torch.Tensor]:
    """This step's random numbers: from the batch (rng='host') or drawn on the device."""
    if settings.host_rng:
        return batch
    out = {"noise_u": torch.rand(b, device=device), "noise_eps": torch.randn((b, *settings.latent_shape),
                                                                            device=device)}
    for stream in AUG_STREAMS:
        out[f"{stream}_rand3"] = torch.rand(3, device=device).expand(b, 3)
        out[f"{stream}_rand01"] = torch.rand((b, DIFFAUG_DRAWS), device=device)
    return out


def _augment(x: torch.Tensor, draws: dict, stream: str, settings: Stage1Settings) -> torch.Tensor:
    """DiffAug of x (B, 3, H, W) with the injected draws of `stream` (official shapes: (3,), (7, B, 1, 1))."""
    rand01 = draws[f"{stream}_rand01"].t().reshape(DIFFAUG_DRAWS, x.shape[0], 1, 1)
    return diffaug(x, prob=settings.diffaug_prob, cutout=settings.diffaug_cutout,
                   rand3=draws[f"{stream}_rand3"][0], rand01=rand01)


def quantize_8bit(x: torch.Tensor) -> torch.Tensor:
    """The discriminator's fakes: clamp to [-1, 1] and round to the 8-bit grid, as real images are (§5.4)."""
    return torch.round((x.clamp(-1, 1) + 1) * 127.5) / 127.5 - 1


def _adaptive_weight(recon_total: torch.Tensor, gan_loss: torch.Tensor, last_layer_weight: torch.Tensor,
                     max_d_weight: float, reduce_grad: Callable | None) -> torch.Tensor:
    """gan.adaptive_weight (the one formula); on torchrun (reduce_grad given) on the process-averaged gradients.

    last_layer_weight: `decoder_pred.weight` as this step's forward used it. Under FSDP2 that is the root's
    all-gathered (unsharded) parameter: its gradient is this process's full (out, in) gradient, which reduce_grad
    averages like DDP's. The sharded DTensor parameter is not in the autograd graph (FSDP2 all-gathers outside
    autograd and reduce-scatters in its own post-backward hook).
    """
    if hasattr(last_layer_weight, "full_tensor"):
        raise RuntimeError("stage 1: decoder_pred.weight is still a sharded DTensor after the decoder's forward, so "
                           "the adaptive weight cannot differentiate it; the FSDP2 root (runtime.shard_model) must "
                           "keep its parameters unsharded between forward and backward (reshard_after_forward=None).")
    return gan.adaptive_weight(recon_total, gan_loss, last_layer_weight, max_d_weight, reduce_grad=reduce_grad)


def make_train_step(*, phase: int, use_lpips: bool, rae: nn.Module, decoder: nn.Module,
                    decoder_params: list[torch.Tensor], last_layer: Callable[[], torch.Tensor],
                    ema_pairs: tuple[list, list], lpips: nn.Module | None,
                    disc: nn.Module, disc_params: list[torch.Tensor], optimizer: torch.optim.Optimizer,
                    disc_optimizer: torch.optim.Optimizer, autocast: Callable[[], contextlib.AbstractContextManager],
                    reduce_grad: Callable[[torch.Tensor], torch.Tensor] | None, average_disc_grads: Callable[[], None],
                    settings: Stage1Settings) -> Callable:
    """Returns `step(batch, sums) -> sums` for `phase` (RECON, DISC or GAN), with LPIPS if `use_lpips`.

    rae: the RAE on the device in eval mode (frozen encoder; `rae.decode(z, decoder=...)` decodes with the
      trainable, possibly wrapped `decoder`). lpips: LPIPS module on [-1, 1] inputs, or None when
      perceptual_weight is 0. last_layer: returns the decoder's `decoder_pred.weight` as the module holds it
      right after its forward (read inside the step: FSDP2 swaps the sharded parameter for the all-gathered one
      during forward). disc: the discriminator (heads trainable; eval mode: the generator step uses the
      stored spectral-norm vectors, the discriminator step forces one power iteration per call).
    reduce_grad: averages a gradient over processes (torchrun) so the adaptive weight sees the global batch's
      gradients as under XLA SPMD; None on one process and on XLA. average_disc_grads: the same for the
      discriminator heads' gradients (the official trainer never reduces them: each rank's heads drift apart).
    batch: {'image': uint8 (B, S, S, 3)} plus the draws of `host_draws` in rng='host' mode.
    sums: running device metrics (SUM_KEYS); the returned dict has this step added.
    """
    s = settings
    ema_params, live_params = ema_pairs
    d_loss_fn, g_loss_fn = gan.D_LOSSES[s.disc_loss], gan.G_LOSSES[s.gen_loss]

    def step(batch: dict[str, torch.Tensor], sums: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        images = batch["image"].permute(0, 3, 1, 2).float() / 255.0  # (B, 3, S, S) in [0, 1]
        b, device = images.shape[0], images.device
        draws = _draws(batch, s, b, device)
        real = images * 2 - 1
        with torch.no_grad(), autocast():
            clean = rae.encode(images).float()  # (B, C, h, w); stage 1 has no latent statistics.
        sigma = s.noise_tau * draws["noise_u"].view(b, 1, 1, 1)
        noisy = clean + sigma * draws["noise_eps"]  # Same as noise on the (B, N, C) tokens: a permutation of them.

        # --- Generator (decoder) update -------------------------------------------------------------------------
        with autocast():
            recon = rae.decode(noisy, decoder=decoder).float()  # (B, 3, S', S') roughly in [0, 1]
            recon_loss = (recon - images).abs().mean()
            lpips_loss = (lpips(real, recon * 2 - 1).mean().float() if use_lpips
                          else torch.zeros((), device=device))
        recon_total = recon_loss + s.perceptual_weight * lpips_loss
        zero = torch.zeros((), device=device)
        gan_loss, weight = zero, zero
        total = recon_total
        if phase >= GAN:
            with autocast():
                gan_loss = g_loss_fn(disc(_augment(recon * 2 - 1, draws, "gen", s)).float())
            weight = _adaptive_weight(recon_total, gan_loss, last_layer(), s.max_d_weight, reduce_grad)
            total = recon_total + s.disc_weight * weight * gan_loss
        total.backward()
        max_norm = s.clip_grad if s.clip_grad > 0 else float("inf")  # inf: no clipping (official clip_grad 0).
        optimizer_lib.clip_gradients_(decoder_params, max_norm)  # Multi-tensor; FSDP2: torch's DTensor norm.
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if phase >= GAN:
            disc_optimizer.zero_grad(set_to_none=True)  # The generator loss also reached the heads: not theirs.
        ema_lib.ema_update_(ema_params, live_params, s.ema_decay)

        # --- Discriminator update (with the just-updated decoder, clean latents, 8-bit fakes) -------------------
        d_loss, accuracy, logits_real_mean, logits_fake_mean = zero, zero, zero, zero
        if phase >= DISC:
            with torch.no_grad(), autocast():
                fake = quantize_8bit(rae.decode(clean, decoder=decoder).float() * 2 - 1)
            with autocast():
                logits_fake = disc(_augment(fake, draws, "fake", s), power_iteration=True).float()
                logits_real = disc(_augment(real, draws, "real", s), power_iteration=True).float()
            d_loss = d_loss_fn(logits_real, logits_fake)
            d_loss.backward()
            average_disc_grads()
            disc_optimizer.step()
            disc_optimizer.zero_grad(set_to_none=True)
            accuracy = gan.discriminator_accuracy(logits_real.detach(), logits_fake.detach())
            logits_real_mean, logits_fake_mean = logits_real.detach().mean(), logits_fake.detach().mean()

        total = total.detach()
        new = {"total_sum": total, "recon_sum": recon_loss.detach(), "lpips_sum": lpips_loss.detach(),
               "gan_sum": gan_loss.detach(), "disc_sum": d_loss.detach(), "accuracy_sum": accuracy,
               "weight_sum": weight, "logits_real_sum": logits_real_mean, "logits_fake_sum": logits_fake_mean,
               "lpips_steps": torch.full((), float(use_lpips), device=device),
               "gan_steps": torch.full((), float(phase >= GAN), device=device),
               "disc_steps": torch.full((), float(phase >= DISC), device=device),
               "nonfinite": (~torch.isfinite(total + d_loss.detach())).float()}
        return {k: sums[k] + new[k].float() for k in SUM_KEYS}

    return step


def window_scalars(values: dict[str, float], steps: int) -> dict[str, float]:
    """Metric scalars from the summed values over `steps` steps (LPIPS/GAN/discriminator terms averaged over the
    steps where they ran; absent before they start)."""
    out = {"loss/total": values["total_sum"] / steps, "loss/recon": values["recon_sum"] / steps}
    if values["lpips_steps"] > 0:
        out["loss/lpips"] = values["lpips_sum"] / values["lpips_steps"]
    if values["gan_steps"] > 0:
        n = values["gan_steps"]
        out.update({"loss/gan": values["gan_sum"] / n, "disc/weight": values["weight_sum"] / n})
    if values["disc_steps"] > 0:
        n = values["disc_steps"]
        out.update({"loss/disc": values["disc_sum"] / n, "disc/accuracy": values["accuracy_sum"] / n,
                    "disc/logits_real": values["logits_real_sum"] / n,
                    "disc/logits_fake": values["logits_fake_sum"] / n})
    return out
