"""`validate(config)`: runs before anything heavy and turns the first mistake into one `ConfigError` that names
the field and the fix. Each block module owns its checks; this module only decides the order."""
from __future__ import annotations

import ml_collections

from rae_xla.config import (data, evaluation, flow, model, rae, runtime, sample, sampling, stage1, stats,
                            train)
from rae_xla.config.checks import Placement, check_no_placeholder, one_of
from rae_xla.config.jobs import JOBS
from rae_xla.config.ranges import check_ranges
from rae_xla.runtime.mesh import resolve_mesh

# Block name -> the range table of its numeric fields (every numeric field has one: tests/test_config_ranges.py).
RANGE_TABLES = {
    "runtime": runtime.RANGES,
    "data": data.RANGES,
    "rae": rae.RANGES,
    "flow": flow.RANGES,
    "sample": sample.RANGES,
    "model": model.RANGES,
    "guidance_model": model.RANGES,
    "train": train.RANGES,
    "sampling": sampling.RANGES,
    "stats": stats.RANGES,
    "eval": evaluation.RANGES,
    "stage1": stage1.RANGES,
}

# Block name -> its validator, in the order they run; each takes (config, placement) and may read other blocks.
VALIDATORS = {
    "runtime": runtime.validate_runtime,
    "train": train.validate_train,
    "stage1": stage1.validate_stage1,
    "model": model.validate_model,
    "flow": flow.validate_flow,
    "sample": sample.validate_sample,
    "sampling": sampling.validate_sampling,
    "rae": rae.validate_rae,
    "stats": stats.validate_stats,
    "eval": evaluation.validate_eval,
    "data": data.validate_data,  # Last: it may open the dataset.
}


def validate(config: ml_collections.ConfigDict, *, num_devices: int | None = None,
             process_count: int = 1) -> None:
    """Checks `config` before anything heavy runs; raises ConfigError naming the first problem.

    Args:
      config: the experiment config (any job; a block it does not have is not checked).
      num_devices: devices in the mesh (XLA) or processes (torchrun); None skips the device-count checks.
      process_count: hosts (XLA) / ranks; the global batch is split across them.
    """
    one_of(config.job, JOBS, "job")
    check_no_placeholder(config)
    for block, table in RANGE_TABLES.items():
        if block in config:
            check_ranges(config[block], block, table)
    placement = Placement(resolve_mesh(config.runtime.mesh, num_devices) if num_devices else None, process_count)
    for block, check in VALIDATORS.items():
        if block in config:
            check(config, placement)
