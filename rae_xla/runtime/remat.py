"""Per-block activation checkpointing (`runtime.remat`): each matching block keeps only its inputs in the
forward and recomputes its activations in the backward. For small-HBM chips (v5e: 16 GB): DiT^DH-XL's
activations at batch 32/chip outweigh its sharded weights; the price is one more forward per block
(~1/3 more FLOPs per step).

The backends differ only in the checkpoint function: torch_xla's (re-entrant only, and it needs an input
that requires grad, docs/xla_notes.md §6.1; block inputs do, being computed from trainable embedders) and torch's
non-re-entrant one on CUDA/CPU.
"""
from __future__ import annotations

import re
from typing import Callable

import torch
from torch import nn


def apply_remat(model: nn.Module, pattern: str, checkpoint: Callable) -> list[str]:
    """Wraps `forward` of every submodule whose name matches `pattern` (re.search); returns their names.

    `checkpoint(fn, *args)` runs fn with recomputation. Without grad (EMA previews, sampling) the block runs
    plainly: there is no backward to recompute for.
    """
    regex = re.compile(pattern)
    wrapped = []
    for name, module in model.named_modules():
        if name and regex.search(name):
            module.forward = _rematerialized(module.forward, checkpoint)
            wrapped.append(name)
    if not wrapped:
        raise ValueError(f"runtime.remat: no module name matches runtime.activation_sharding={pattern!r}; "
                         f"set it to the block names (e.g. r'^blocks\\.\\d+$')")
    return wrapped


def _rematerialized(forward: Callable, checkpoint: Callable) -> Callable:
    def run(*args, **kwargs):
        if not torch.is_grad_enabled():
            return forward(*args, **kwargs)
        if kwargs:
            return checkpoint(lambda *a: forward(*a, **kwargs), *args)
        return checkpoint(forward, *args)
    return run
