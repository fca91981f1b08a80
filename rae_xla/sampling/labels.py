"""Class labels of an N-sample FID set, on the host, as a pure function of (mode, seed, N).

- `equal`: the official balanced pool (each class N / num_classes times, `torch.randperm` with a CPU generator
  seeded by `seed`, docs/reference.md §7.3) in sample-index order. When num_classes does not divide N the remainder
  N mod num_classes goes to distinct classes drawn from the same generator, so counts differ by at most one.
  Exact class balance for ANY device count and batch size, unlike the official script (exact only when
  batch x world size divides N).
- `random`: i.i.d. uniform classes from the generator seeded by `seed` (the official draws per batch on the
  device, which no other topology can reproduce).
- `official`: the label of every sample index exactly as the official `sample_ddp.py --label-sampling equal` run
  with `official_world_size` ranks x `official_batch` images per rank assigns it: rank r takes the contiguous
  slice r of the (padded) pool while its image r of step s, row l is saved as PNG number s*n*W + l*W + r.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from rae_xla.config.sampling import LABEL_MODES


def class_labels(mode: str, *, seed: int, num_samples: int, num_classes: int, official_world_size: int = 1,
                 official_batch: int = 1) -> np.ndarray:
    """int64 (num_samples,) labels in sample-index order (see the module docstring for each mode)."""
    if num_samples < 1 or num_classes < 1:
        raise ValueError(f"need num_samples >= 1 and num_classes >= 1, got {num_samples}, {num_classes}")
    generator = torch.Generator().manual_seed(seed)
    if mode == "random":
        return torch.randint(0, num_classes, (num_samples,), generator=generator).numpy()
    if mode == "equal":
        per_class, remainder = divmod(num_samples, num_classes)
        pool = torch.arange(num_classes, dtype=torch.int64).repeat_interleave(per_class)
        pool = pool[torch.randperm(pool.numel(), generator=generator)]
        extra = torch.randperm(num_classes, generator=generator)[:remainder]  # distinct classes: counts differ by <= 1
        return torch.cat([pool, extra]).numpy()
    if mode == "official":
        return _official_labels(seed, num_samples, num_classes, official_world_size, official_batch)
    raise ValueError(f"unknown label mode {mode!r}; use one of {LABEL_MODES}")


def _official_labels(seed: int, num_samples: int, num_classes: int, world: int, batch: int) -> np.ndarray:
    if num_samples % num_classes:
        raise ValueError(f"official 'equal' labels need num_samples ({num_samples}) divisible by num_classes "
                         f"({num_classes}), as sample_ddp.py does")
    if world < 1 or batch < 1:
        raise ValueError(f"official_world_size={world} and official_batch={batch} must be >= 1")
    generator = torch.Generator().manual_seed(seed)
    pool = torch.arange(num_classes, dtype=torch.int64).repeat_interleave(num_samples // num_classes)
    pool = pool[torch.randperm(pool.numel(), generator=generator)]
    global_batch = world * batch
    total = math.ceil(num_samples / global_batch) * global_batch
    if total > num_samples:  # The official tail pads with uniform labels drawn from the same generator.
        pool = torch.cat([pool, torch.randint(0, num_classes, (total - num_samples,), generator=generator)])
    per_rank = total // world
    index = np.arange(num_samples)
    step, within = np.divmod(index, global_batch)
    row, rank = np.divmod(within, world)
    return pool.numpy()[rank * per_rank + step * batch + row]
