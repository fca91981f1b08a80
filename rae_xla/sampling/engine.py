"""Noise + labels on the devices -> latents (any `flow.sample` method and guidance) -> uint8 images.

Compiled once per run: the solver's step graphs (1 without guidance, <= 2 with a guidance interval for Euler,
docs/readme/flow.md) and one decode graph. Every batch has the same shape (the last one is padded), and the
per-step times are graph inputs, so batch 2 onwards compiles nothing.
"""
from __future__ import annotations

import torch

from rae_xla import flow
from rae_xla.sampling.models import SamplingModels


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) decoder output -> uint8 (B, H, W, 3) the official way: clamp to [0, 1], x255, truncate.

    In fp32 (a bf16 decoder output is cast first; the official code multiplies in bf16 under autocast, which
    moves a few values across an integer boundary)."""
    return (images.float().clamp(0, 1) * 255).to(torch.uint8).permute(0, 2, 3, 1)


class SampleEngine:
    """Samples and decodes device batches. `precision`: 'fp32' | 'bf16' (autocast, as sample_ddp.py's option)."""

    def __init__(self, runtime, models: SamplingModels, sample_cfg, precision: str):
        self.runtime, self.models, self.cfg, self.precision = runtime, models, sample_cfg, precision
        self.guidance = flow.guidance_from_config(sample_cfg.guidance, null_label=models.num_classes,
                                                  weak_model=models.weak_model)
        self._decode = runtime.compile_step(self._decode_to_uint8, name="decode")

    def _decode_to_uint8(self, latents: torch.Tensor) -> torch.Tensor:
        with self.runtime.autocast(self.precision):
            return to_uint8(self.models.rae.decode(latents))

    @torch.no_grad()
    def latents(self, noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """noise (B, C, h, w) float32, labels (B,) int64 on the device -> final latents (B, C, h, w)."""
        adaptive = self.cfg.method in flow.ADAPTIVE_METHODS  # dopri5 picks steps on the host: eager only.
        with self.runtime.autocast(self.precision):
            return flow.sample(self.models.model, noise, labels, method=self.cfg.method,
                               num_steps=self.cfg.num_steps, shift=self.models.alpha, guidance=self.guidance,
                               step_fn_wrapper=None if adaptive else
                               lambda fn: self.runtime.compile_step(fn, name="sample_step"))

    @torch.no_grad()
    def images(self, latents: torch.Tensor) -> torch.Tensor:
        """latents (B, C, h, w) -> uint8 (B, H, W, 3) on the device."""
        return self._decode(latents)
