"""`config.stats`: latent statistics (job `stats`, rae_xla/eval/latent_stats.py): the block, its ranges, its checks.

ESTIMATORS and SUM_DTYPES are declared here, below the job that implements them (latent_stats.py imports the
config, so the config cannot import it).
"""
from __future__ import annotations

from typing import Any

import ml_collections

from rae_xla.config.checks import Placement, one_of
from rae_xla.config.ranges import COUNT

ESTIMATORS = ("exact", "official_ema")
SUM_DTYPES = ("float64", "float32")


def stats_block(**overrides: Any) -> ml_collections.ConfigDict:
    """Latent statistics (job `stats`, rae_xla/eval/latent_stats.py)."""
    block = dict(
        global_batch_size=256,  # Any multiple of the device count: the result does not depend on it.
        flips=True,  # Also encode each image's mirror (the official script draws random flips instead).
        estimator="exact",  # exact (float64 Chan merge) | official_ema (docs/reference.md §7.1, for comparison only)
        sum_dtype="float64",  # Per-batch device sums; 'float32' on TPU (no native float64).
        output="",  # stat.pt path (local or gs://); '' = <workdir>/stat.pt.
        log_every=50,
    )
    block.update(overrides)
    return ml_collections.ConfigDict(block)


RANGES = {"global_batch_size": COUNT, "log_every": COUNT}


def validate_stats(config: ml_collections.ConfigDict, placement: Placement) -> None:
    one_of(config.stats.estimator, ESTIMATORS, "stats.estimator")
    one_of(config.stats.sum_dtype, SUM_DTYPES, "stats.sum_dtype")
    placement.check_eval_batch(config.stats.global_batch_size, "stats.global_batch_size")
