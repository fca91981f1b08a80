"""The stage-2 training step: encode -> times and noise -> flow-matching loss -> clip -> AdamW -> EMA.

Built once by `make_train_step` and compiled by the runtime into one graph (XLA) that holds the frozen
encoder, every micro-batch's forward and backward, clipping, the optimizer and the EMA update. It never
reads a value on the host: metrics leave as device tensors (running sums) that the trainer reads at log
intervals through `runtime.read_on_host`.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable

import torch
from torch import nn

from rae_xla import flow
from rae_xla.train import ema as ema_lib
from rae_xla.train import optimizer as optimizer_lib


@dataclasses.dataclass(frozen=True)
class StepSettings:
    """What the step needs from the config, resolved to plain values.

    latent_shape: (C, h, w) of the RAE latents. alpha: the time shift (docs/reference.md §4.3).
    null_label: the CFG null class (= num_classes); label_dropout: its probability (0.1 in every release).
    """
    latent_shape: tuple[int, int, int]
    alpha: float
    time_dist: str
    mu: float
    sigma: float
    null_label: int
    label_dropout: float
    grad_accum_steps: int
    clip_grad: float
    ema_decay: float
    precision: str
    host_rng: bool


def host_draws(seed: int, step: int, global_batch: int, latent_shape: tuple[int, int, int], rows: slice,
               label_dropout: float) -> dict[str, torch.Tensor]:
    """The step's random inputs drawn on the host for the WHOLE global batch, sliced to this process's `rows`.

    A pure function of (seed, step): bitwise identical on every backend and process count (runtime.rng='host').
    noise (b, C, h, w) float32, u (b,) float32 in [0, 1) (the uniform behind the training time), drop (b,) bool.
    """
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    noise = torch.randn((global_batch, *latent_shape), generator=g)
    u = torch.rand(global_batch, generator=g)
    drop = torch.rand(global_batch, generator=g) < label_dropout
    return {"noise": noise[rows], "u": u[rows], "drop": drop[rows]}


def _micro(t: torch.Tensor, index: int, count: int) -> torch.Tensor:
    """Micro-batch `index` of `count` as the strided rows index, index+count, ...

    Each device holds a contiguous block of the (sharded) batch; strided rows keep every micro-batch spread
    evenly over all devices, where a contiguous split would put each micro-batch on a fraction of the mesh.
    """
    if count == 1:
        return t
    return t.reshape(t.shape[0] // count, count, *t.shape[1:])[:, index]


def make_train_step(*, model: nn.Module, params: list[torch.Tensor], ema_pairs: tuple[list, list],
                    encode: Callable[[torch.Tensor], torch.Tensor], optimizer: torch.optim.Optimizer,
                    autocast: Callable[[], contextlib.AbstractContextManager], no_sync: Callable,
                    settings: StepSettings) -> Callable:
    """Returns `step(batch, sums) -> sums`.

    batch: {'image': uint8 (B, S, S, 3), 'label': int64 (B,)} plus {'noise', 'u', 'drop'} when
      settings.host_rng; otherwise those are drawn on the device (seeded per step by the trainer).
    sums: running device metrics {'loss_sum', 'grad_norm_sum', 'nonfinite'} (scalars); the returned dict has
      this step added. The model runs in eval mode: label dropout for CFG is applied here, with this step's
      other random draws, instead of inside the model (same distribution as the official train-mode forward).
    """
    s = settings
    accum = s.grad_accum_steps
    ema_params, live_params = ema_pairs

    def step(batch: dict[str, torch.Tensor], sums: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        labels = batch["label"]
        b = labels.shape[0]
        if s.host_rng:
            noise, u, drop = batch["noise"], batch["u"], batch["drop"]
        else:
            noise = torch.randn((b, *s.latent_shape), device=labels.device)
            u = torch.rand(b, device=labels.device)
            drop = torch.rand(b, device=labels.device) < s.label_dropout
        labels = torch.where(drop, torch.full_like(labels, s.null_label), labels)
        loss_total = torch.zeros((), device=labels.device)
        for i in range(accum):
            images = _micro(batch["image"], i, accum).permute(0, 3, 1, 2).float() / 255.0  # (b/k, 3, S, S)
            with torch.no_grad(), autocast():
                latents = encode(images).float()  # (b/k, C, h, w): frozen encoder, no gradients.
            t = flow.training_time_from_uniform(_micro(u, i, accum), dist=s.time_dist, mu=s.mu, sigma=s.sigma,
                                                alpha=s.alpha)
            with no_sync(last=i == accum - 1), autocast():
                loss = flow.flow_matching_loss(model, latents, _micro(labels, i, accum), t=t,
                                               noise=_micro(noise, i, accum)).mean()
                (loss / accum).backward()  # The mean over all k*b rows, as one batch of k*b would give.
            loss_total = loss_total + loss.detach().float()
        max_norm = s.clip_grad if s.clip_grad > 0 else float("inf")  # inf: measure the norm, scale by 1.
        grad_norm = optimizer_lib.clip_gradients_(params, max_norm)  # Multi-tensor; FSDP2: a full DTensor norm.
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ema_lib.ema_update_(ema_params, live_params, s.ema_decay)
        loss_mean = loss_total / accum
        return {
            "loss_sum": sums["loss_sum"] + loss_mean,
            "grad_norm_sum": sums["grad_norm_sum"] + grad_norm.float(),
            "nonfinite": sums["nonfinite"] + (~torch.isfinite(loss_mean)).float(),
        }

    return step


def zero_sums(device: torch.device) -> dict[str, torch.Tensor]:
    """Fresh running metric sums on `device`.

    Made on the host and copied over, so on XLA they are device data like the step's outputs: a lazy
    `torch.zeros(device=xla)` would be traced into the next step as a constant and compile a second graph.
    """
    return {k: torch.zeros(()).to(device) for k in ("loss_sum", "grad_norm_sum", "nonfinite")}
