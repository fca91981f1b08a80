"""Job `stats`: mean and variance (C, H, W) of the UNNORMALISED RAE latents over a dataset split -> `stat.pt`.

  python -m rae_xla.main --config=configs/stats.py --workdir=gs://bucket/stats/dinov2_b_256

Every example of the split is encoded once (and, by default, its mirror image too), sharded over every device and
host in fixed global batches. Per global batch the device computes the count, the mean and the centred sum of
squares M2 = Σ (z − mean_batch)² (in float64 where the backend has it); the host merges batches in float64 with
Chan's parallel formula:
    n = na + nb,  δ = mean_b − mean_a,  mean = mean_a + δ·nb/n,  M2 = M2a + M2b + δ²·na·nb/n,  var = M2 / n.
The result is the exact population mean/variance of the latents: it does not depend on the batch size, the
device count or the order (up to float rounding of the sums).

Deliberate difference from the official `calculate_stat.py` (docs/reference.md §7.1), which keeps BatchNorm-style
running averages (running ← 0.9·running + 0.1·batch, from mean 0 / var 1) per rank and then merges ranks: that estimate
depends on the batch size and data order (~0.008 L1 on the released variance) and weights the last batches most.
`estimator='official_ema'` reproduces that update over our global batches (one 'rank' with batch = the global
batch; the random order and flips of the official sampler are not reproduced) for comparison. Instead of the
official random horizontal flip, `flips=True` adds each image's mirror image: the flip-augmented distribution,
exactly, without randomness.
Output: `{'mean': float32 (C, H, W), 'var': float32 (C, H, W)}` — the released stat.pt format that
`rae.stats` reads.
"""
from __future__ import annotations

import dataclasses
import io

import numpy as np
import torch
from absl import logging
from etils import epath

from rae_xla import config as config_lib
from rae_xla import data
from rae_xla import build

EMA_MOMENTUM = 0.1  # Official LayerNormwStatistics / BatchNorm momentum.


@dataclasses.dataclass
class Moments:
    """Running float64 count, mean (C, H, W) and centred sum of squares M2 (C, H, W)."""
    count: float = 0.0
    mean: np.ndarray | float = 0.0
    m2: np.ndarray | float = 0.0

    def merge(self, count: float, mean: np.ndarray, m2: np.ndarray) -> None:
        """Chan et al.'s pairwise update with another set's (count, mean, M2); exact in exact arithmetic."""
        if count == 0:
            return
        total = self.count + count
        delta = mean - self.mean
        self.mean = self.mean + delta * (count / total)
        self.m2 = self.m2 + m2 + delta * delta * (self.count * count / total)
        self.count = total

    @property
    def var(self) -> np.ndarray:
        """Population variance (unbiased=False, as the official batch statistics)."""
        return self.m2 / self.count


class OfficialEMA:
    """The official running estimate, updated once per (global) batch from its mean and population variance."""

    def __init__(self, shape):
        self.mean, self.var = np.zeros(shape), np.ones(shape)

    def merge(self, count: float, mean: np.ndarray, m2: np.ndarray) -> None:
        if count == 0:
            return
        self.mean = (1 - EMA_MOMENTUM) * self.mean + EMA_MOMENTUM * mean
        self.var = (1 - EMA_MOMENTUM) * self.var + EMA_MOMENTUM * (m2 / count)


def batch_moments(latents: torch.Tensor, valid: torch.Tensor, dtype: torch.dtype):
    """latents (B, C, H, W), valid bool (B,) -> (count (), mean (C, H, W), M2 (C, H, W)) over the valid rows, in
    `dtype`. Inside the compiled step: masked sums, no data-dependent shapes."""
    z = latents.to(dtype)
    mask = valid.to(dtype).view(-1, *([1] * (z.ndim - 1)))
    count = mask.sum()
    mean = (z * mask).sum(dim=0) / count.clamp_min(1)
    m2 = (((z - mean) * mask) ** 2).sum(dim=0)
    return count, mean, m2


def compute_latent_stats(config, runtime, *, rae=None) -> dict[str, torch.Tensor]:
    """Latent statistics of `config.data` (its split) under `config.rae`, per `config.stats`.

    rae: an already built host RAE (e.g. a just-trained decoder's; only its encoder is used); default: built from
      `config.rae`, which must have no `stats` (else the NORMALISED latents would be measured).
    Returns {'mean': float32 (C, H, W), 'var': float32 (C, H, W)} on the host (every process gets the same).
    """
    s = config.stats
    if rae is None:
        if config.rae.stats:
            raise config_lib.ConfigError(
                f"rae.stats={config.rae.stats!r}: latent statistics are measured on unnormalised latents; set "
                f"--config.rae.stats=''")
        rae = build.build_rae(config.rae)
    elif rae.latent_mean is not None or rae.latent_var is not None:
        raise ValueError("compute_latent_stats needs an RAE without latent statistics (unnormalised latents)")
    rae = runtime.place_frozen(rae.eval())
    # TPUs have no native float64 (XLA emulates it slowly): sum_dtype='float32' keeps the per-batch sums in
    # float32 (centred, so still accurate); the host merge is float64 either way.
    dtype = torch.float64 if s.sum_dtype == "float64" else torch.float32

    @torch.no_grad()
    def step(batch):
        images = batch["image"].permute(0, 3, 1, 2).float() / 255.0
        valid = batch["valid"]
        if s.flips:  # The mirror images as extra rows: a static 2B batch.
            images = torch.cat([images, images.flip(-1)])
            valid = torch.cat([valid, valid])
        with runtime.autocast(config.runtime.precision):
            latents = rae.encode(images)
        return batch_moments(latents.float(), valid, dtype)

    compiled = runtime.compile_step(step, name="latent_stats", max_graphs=1)
    loader = data.make_eval_loader(config.data, batch_size=s.global_batch_size,
                                   process_index=runtime.process_index, process_count=runtime.process_count)
    host_batches = ({"image": b["image"], "valid": b["valid"]} for b in loader)
    total = len(loader.loader.dataset)
    estimate = Moments() if s.estimator == "exact" else OfficialEMA(tuple(rae.latent_shape))
    for i, batch in enumerate(runtime.device_batches(host_batches)):
        count, mean, m2 = compiled(batch)
        # sync point, once per batch: three (C, H, W) arrays (global sums over the sharded batch).
        estimate.merge(float(runtime.to_host(count)), runtime.to_host(mean).double().numpy(),
                       runtime.to_host(m2).double().numpy())
        if i % s.log_every == 0:
            logging.info("stats: batch %d/%d", i + 1, total)
    var = estimate.var
    return {"mean": torch.from_numpy(np.asarray(estimate.mean)).float(),
            "var": torch.from_numpy(np.maximum(np.asarray(var), 0)).float()}


def save_stats(stats: dict[str, torch.Tensor], path: str) -> None:
    """Writes the released stat.pt format ({'mean', 'var'} float32 (C, H, W)) to a local or gs:// path."""
    buffer = io.BytesIO()
    torch.save({"mean": stats["mean"].contiguous(), "var": stats["var"].contiguous()}, buffer)
    target = epath.Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(buffer.getvalue())


def run(config, workdir: str, runtime) -> None:
    """The `stats` job: computes the statistics and writes `config.stats.output` (default workdir/stat.pt)."""
    stats = compute_latent_stats(config, runtime)
    path = config.stats.output or str(epath.Path(workdir) / "stat.pt")
    if runtime.is_main:
        save_stats(stats, path)
        logging.info("stats: wrote %s (latent shape %s, mean |mean| %.4g, mean var %.4g)", path,
                     tuple(stats["mean"].shape), stats["mean"].abs().mean().item(), stats["var"].mean().item())
    runtime.barrier("latent_stats_written")
