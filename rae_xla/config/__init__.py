"""Shared config blocks, argument parsing for `--config=file.py:arg`, and `validate(config)`.

Every experiment is one file in `configs/` whose `get_config(arg)` assembles these blocks and spells out
every field (the trainers never fall back to hidden defaults). `validate` runs before anything heavy and turns
each mistake into one `ConfigError` that names the field and the fix.

One module per block holds its factory, the range table of its numeric fields and its validator side by side:
runtime, data, rae, flow, sample (+ guidance), model, train (+ wandb), sampling, stats, evaluation (`eval`),
stage1. args.py parses `:arg`, keys.py explains unknown overrides, ranges.py and checks.py hold the shared checks,
validation.py runs them in order. Everything configs/, tests and the library use is importable from here.
"""
from __future__ import annotations

import ml_collections  # noqa: F401 (re-exported: config_lib.ml_collections.ConfigDict in eval/__main__.py)

from rae_xla.config.args import parse_arg
from rae_xla.config.checks import PLACEHOLDER
from rae_xla.config.data import data_block, imagenet_data_block
from rae_xla.config.evaluation import eval_block
from rae_xla.config.flow import flow_block
from rae_xla.config.jobs import JOBS
from rae_xla.config.keys import all_keys, get_field, to_json, unknown_key_message
from rae_xla.config.model import model_block
from rae_xla.config.rae import check_released_rae_name, rae_block, released_rae_block
from rae_xla.config.runtime import runtime_block
from rae_xla.config.sample import guidance_block, sample_block
from rae_xla.config.sampling import sampling_block
from rae_xla.config.stage1 import stage1_block
from rae_xla.config.stats import stats_block
from rae_xla.config.train import train_block, wandb_block
from rae_xla.config.validation import validate
from rae_xla.errors import ConfigError
from rae_xla.runtime.base import BACKENDS
from rae_xla.runtime.mesh import MESH_AXES, resolve_mesh, resolve_slice_mesh

__all__ = [
    "BACKENDS", "ConfigError", "JOBS", "MESH_AXES", "PLACEHOLDER", "all_keys", "check_released_rae_name",
    "data_block", "eval_block", "flow_block", "get_field", "guidance_block", "imagenet_data_block", "model_block",
    "parse_arg", "rae_block", "released_rae_block", "resolve_mesh", "resolve_slice_mesh", "runtime_block",
    "sample_block", "sampling_block", "stage1_block", "stats_block", "to_json", "train_block", "unknown_key_message",
    "validate", "wandb_block",
]
