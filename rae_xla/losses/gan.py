"""GAN losses of the stage-1 trainer (official `disc/gan_loss.py`, `train_stage1.calculate_adaptive_weight`).

All are pure tensor functions, traceable under XLA: no `.item()`, no data-dependent Python branches. Logits are
any shape (the discriminator gives (B, heads*tokens)); `reduction` is 'mean' (the trainer's) or 'sum'.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

# Added to the GAN gradient norm in the adaptive weight (official constant).
ADAPTIVE_WEIGHT_EPS = 1e-6


def _reduce(x: torch.Tensor, reduction: str) -> torch.Tensor:
    # The official hinge/vanilla D losses sum for any string other than 'mean'; here only 'sum' is accepted.
    if reduction == "mean":
        return x.mean()
    if reduction == "sum":
        return x.sum()
    raise ValueError(f"reduction {reduction!r}: use 'mean' or 'sum'.")


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """0.5 * (R relu(1 - D(real)) + R relu(1 + D(fake))): the trainer's discriminator loss (scalar)."""
    return 0.5 * (_reduce(F.relu(1.0 - logits_real), reduction) + _reduce(F.relu(1.0 + logits_fake), reduction))


def vanilla_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """0.5 * (R softplus(-D(real)) + R softplus(D(fake))) (scalar)."""
    return 0.5 * (_reduce(F.softplus(-logits_real), reduction) + _reduce(F.softplus(logits_fake), reduction))


def vanilla_g_loss(logits_fake: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """-R D(fake): the trainer's generator loss (the official `gen_loss` accepts only 'vanilla')."""
    return -_reduce(logits_fake, reduction)


def discriminator_accuracy(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """mean(D(real) > D(fake)) over all logits, float32 scalar (the trainer's `disc/accuracy`)."""
    return (logits_real > logits_fake).float().mean()


D_LOSSES = {"hinge": hinge_d_loss, "vanilla": vanilla_d_loss}
G_LOSSES = {"vanilla": vanilla_g_loss}


def adaptive_weight(recon_loss: torch.Tensor, gan_loss: torch.Tensor, last_layer_weight: torch.Tensor,
                    max_d_weight: float, reduce_grad: Callable[[torch.Tensor], torch.Tensor] | None = None
                    ) -> torch.Tensor:
    """lambda = clamp(||dL_rec/dW|| / (||dL_G/dW|| + 1e-6), 0, max_d_weight), detached (scalar).

    recon_loss: L1 + perceptual_weight * LPIPS (scalar); gan_loss: the generator loss (scalar); both must depend on
    `last_layer_weight` (the decoder's `decoder_pred.weight`). Norms are Frobenius norms of the whole gradient.
    The two gradients are taken with `torch.autograd.grad(..., retain_graph=True)` inside the caller's graph
    (under XLA they are part of the compiled step); the caller's own backward of the total loss follows. Call it
    outside autocast, as the official trainer does (the norms are then computed in float32).
    reduce_grad: applied to both gradients before the norms (torchrun: the average over processes, so that every
    rank uses the global batch's gradients as XLA SPMD does; the official trainer uses each rank's own).
    """
    recon_grad, = torch.autograd.grad(recon_loss, last_layer_weight, retain_graph=True)
    gan_grad, = torch.autograd.grad(gan_loss, last_layer_weight, retain_graph=True)
    if reduce_grad is not None:
        recon_grad, gan_grad = reduce_grad(recon_grad), reduce_grad(gan_grad)
    weight = torch.linalg.vector_norm(recon_grad) / (torch.linalg.vector_norm(gan_grad) + ADAPTIVE_WEIGHT_EPS)
    return torch.clamp(weight, 0.0, max_d_weight).detach()
