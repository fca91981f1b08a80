"""Initial noise as a function of (seed, global sample index) only.

Each sample has its own stream: a torch CPU generator seeded from numpy's SeedSequence(seed, spawn_key=(index,))
(well-separated 64-bit seeds for neighbouring indices). The noise of sample i is therefore the same whatever the
device count, batch size, process or resume point, and two samples never share draws. Drawn on the host, each
process only for its own rows (~1 ms per 768x16x16 latent).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def sample_seed(seed: int, index: int) -> int:
    """The 63-bit torch seed of sample `index` (SeedSequence keeps nearby (seed, index) pairs unrelated)."""
    state = np.random.SeedSequence(entropy=seed, spawn_key=(int(index),)).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def sample_noise(seed: int, indices: Sequence[int], latent_shape: Sequence[int]) -> torch.Tensor:
    """float32 (len(indices), *latent_shape) standard normal noise, row k from sample `indices[k]`."""
    out = torch.empty((len(indices), *latent_shape), dtype=torch.float32)
    generator = torch.Generator()
    for row, index in enumerate(indices):
        generator.manual_seed(sample_seed(seed, index))
        out[row] = torch.randn(tuple(latent_shape), generator=generator)
    return out
