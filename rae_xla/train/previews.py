"""Sample grids during training: EMA model, fixed noise and labels, the configured sampler, RAE decoder."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rae_xla import flow


def preview_guidance(sample_cfg, num_classes: int):
    """The `flow.sample` guidance dict for training previews (CFG only); None when off.

    Autoguidance needs a second (weak) model, which previews do not have: `config.validate` refuses it, and
    `flow.guidance_from_config` raises rather than silently sampling without guidance.
    """
    return flow.guidance_from_config(sample_cfg.guidance, null_label=num_classes)


def preview_inputs(seed: int, count: int, latent_shape, num_classes: int) -> dict[str, torch.Tensor]:
    """Fixed host noise (count, C, h, w) and labels 0, 1, ... (mod num_classes): the same at every preview and
    on every process (each process computes all previews; they are few)."""
    g = torch.Generator().manual_seed(seed + 7919)
    return {"noise": torch.randn((count, *latent_shape), generator=g),
            "label": torch.arange(count, dtype=torch.int64) % num_classes}


@torch.no_grad()
def sample_images(runtime, model: nn.Module, decode, inputs: dict[str, torch.Tensor], *, sample_cfg, alpha: float,
                  num_classes: int) -> np.ndarray:
    """Samples latents from `inputs` (device tensors) and decodes them; returns uint8 (N, H, W, 3) on the host.

    Pixels are clamped to [0, 1] and truncated to uint8 as the official sampling scripts do.
    """
    latents = flow.sample(model, inputs["noise"], inputs["label"], method=sample_cfg.method,
                          num_steps=sample_cfg.num_steps, shift=alpha,
                          guidance=preview_guidance(sample_cfg, num_classes),
                          # dopri5 picks its steps on the host: it runs uncompiled (slow under XLA).
                          step_fn_wrapper=None if sample_cfg.method in flow.ADAPTIVE_METHODS else
                          lambda fn: runtime.compile_step(fn, name="sample_step"))
    images = (decode(latents).clamp(0, 1) * 255).to(torch.uint8).permute(0, 2, 3, 1)
    return runtime.to_host(images).numpy()  # sync point: previews only, every sample_every steps.
