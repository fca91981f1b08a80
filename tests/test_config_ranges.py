"""Range checks of numeric config fields (issue 24 item 2): an out-of-range value is one ConfigError naming the
field and its valid range; every numeric field of every shipped config has a range-table entry."""
import glob
import importlib.util
import math
import os
import re

import ml_collections
import pytest

from rae_xla import config as config_lib
from rae_xla.config import ranges
from rae_xla.config.validation import RANGE_TABLES
from tests.conftest import REPO, run_python

# Numeric fields with no range because every value is valid and none is a quantity the user tunes.
EXEMPT = {
    "seed",  # Any integer seeds the run; there is nothing to bound.
}


def every_block():
    """A config with every block at its factory default (the job is irrelevant to the range checks)."""
    return ml_collections.ConfigDict(dict(
        job="train_stage1", seed=0, runtime=config_lib.runtime_block(), data=config_lib.data_block(),
        rae=config_lib.rae_block(), flow=config_lib.flow_block(), sample=config_lib.sample_block(),
        model=config_lib.model_block("DiTDH-S"), guidance_model=config_lib.model_block("DiTDH-S"),
        train=config_lib.train_block(), sampling=config_lib.sampling_block(), stats=config_lib.stats_block(),
        eval=config_lib.eval_block(), stage1=config_lib.stage1_block()))


def _set(config, dotted, value):
    *parents, leaf = dotted.split(".")
    node = config
    for part in parents:
        node = node[part]
    node[leaf] = value


# (field as set, bad value, the field as named in the message (tuple elements by index), the range it names)
CASES = [
    ("runtime.mesh.fsdp", 0, "runtime.mesh.fsdp=0", "must be >= 1 or -1 (-1 = the remaining devices)"),
    ("runtime.preemption_check_every", 0, "runtime.preemption_check_every=0", "must be >= 1"),
    ("data.image_size", 4, "data.image_size=4", "must be >= 8"),
    ("data.num_workers", -1, "data.num_workers=-1", "must be >= 0 (0 = load in the main process)"),
    ("rae.noise_tau", -0.5, "rae.noise_tau=-0.5", "must be >= 0"),
    ("flow.sigma", 0.0, "flow.sigma=0.0", "must be > 0"),
    ("flow.shift", -2.0, "flow.shift=-2.0", "must be > 0"),
    ("sample.num_steps", 1, "sample.num_steps=1", "must be >= 2 (grid points: 2 is one step)"),
    ("sample.guidance.scale", -1.0, "sample.guidance.scale=-1.0", "must be >= 0"),
    ("sample.guidance.t_max", 1.5, "sample.guidance.t_max=1.5", "must be in [0, 1]"),
    ("model.depth", (12, 0), "model.depth[1]=0", "must be >= 1"),
    ("model.class_dropout_prob", 1.5, "model.class_dropout_prob=1.5", "must be in [0, 1]"),
    ("guidance_model.mlp_ratio", 0.0, "guidance_model.mlp_ratio=0.0", "must be > 0"),
    ("train.lr_schedule.base_lr", -1e-4, "train.lr_schedule.base_lr=-0.0001", "must be > 0"),
    ("train.lr_schedule.warmup_epochs", -1.0, "train.lr_schedule.warmup_epochs=-1.0", "must be >= 0"),
    ("train.optimizer.betas", (0.9, 1.0), "train.optimizer.betas[1]=1.0", "must be in [0, 1)"),
    ("train.optimizer.eps", 0.0, "train.optimizer.eps=0.0", "must be > 0"),
    ("train.ema_decay", 1.5, "train.ema_decay=1.5", "must be in [0, 1]"),
    ("train.epochs", math.nan, "train.epochs=nan", "must be >= 0"),
    ("train.sample_every", -1, "train.sample_every=-1", "must be >= 0 (0 = no previews)"),
    ("train.checkpoint_every", 0, "train.checkpoint_every=0", "must be >= 1"),
    ("sampling.num_samples", -1, "sampling.num_samples=-1",
     "must be >= 0 (0 = the whole split, reconstruct only)"),
    ("sampling.class_labels", (3, -2), "sampling.class_labels[1]=-2", "must be >= 0"),
    ("stats.log_every", 0, "stats.log_every=0", "must be >= 1"),
    ("eval.reference_images", 0, "eval.reference_images=0", "must be >= 1 or -1 (-1 = the whole split)"),
    ("stage1.diffaug_prob", 1.5, "stage1.diffaug_prob=1.5", "must be in [0, 1]"),
    ("stage1.max_d_weight", 0.0, "stage1.max_d_weight=0.0", "must be > 0"),
    ("stage1.disc_arch.norm_eps", -1e-6, "stage1.disc_arch.norm_eps=-1e-06", "must be > 0"),
    ("stage1.disc_lr_schedule.base_lr", 0.0, "stage1.disc_lr_schedule.base_lr=0.0", "must be > 0"),
]


def test_cases_cover_every_block():
    assert {field.split(".")[0] for field, *_ in CASES} == set(RANGE_TABLES)


def test_every_block_at_its_defaults_passes_the_range_checks():
    config = every_block()
    del config["data"]  # Its check opens the dataset; its ranges are checked by the cases below.
    config.eval.reference_images = -1  # A special value outside the range that means "all".
    config.flow.shift = None  # Unset: alpha comes from the latent size.
    config_lib.validate(config, num_devices=1)


@pytest.mark.parametrize("field,value,named,accepted", CASES, ids=[c[0] for c in CASES])
def test_out_of_range_value_names_the_field_and_the_range(field, value, named, accepted):
    config = every_block()
    _set(config, field, value)
    with pytest.raises(config_lib.ConfigError) as raised:
        config_lib.validate(config)
    assert str(raised.value) == f"{named} {accepted}"


def test_range_bounds_and_special_values():
    assert ranges.between(0, 1, high_open=True).contains(0) and not ranges.between(0, 1, high_open=True).contains(1)
    assert not ranges.POSITIVE.contains(0) and ranges.NON_NEGATIVE.contains(0)
    mesh_axis = ranges.at_least(1, special=(-1,))
    assert mesh_axis.contains(-1) and not mesh_axis.contains(0) and not mesh_axis.contains(-2)
    assert not ranges.ANY_NUMBER.contains(math.inf) and ranges.ANY_NUMBER.contains(-3.5)
    assert ranges.between(0, 1).describe() == "in [0, 1]" and mesh_axis.describe() == ">= 1 or -1"


def _shipped_configs():
    paths = sorted(glob.glob(os.path.join(REPO, "configs", "*.py")))
    assert len(paths) >= 10  # The folder listing must see the shipped configs.
    for path in paths:
        spec = importlib.util.spec_from_file_location("shipped_config", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield os.path.basename(path), module.get_config(None)


def test_every_numeric_field_of_every_shipped_config_has_a_range():
    uncovered = set()
    for name, config in _shipped_configs():
        for leaf in ranges.numeric_leaves(config):
            block, _, field = leaf.partition(".")
            if leaf not in EXEMPT and field not in RANGE_TABLES.get(block, {}):
                uncovered.add(f"{name}: {leaf}")
    assert sorted(uncovered) == []


FACTORIES = {"runtime": config_lib.runtime_block, "data": config_lib.data_block, "rae": config_lib.rae_block,
             "flow": config_lib.flow_block, "sample": config_lib.sample_block,
             "model": lambda: config_lib.model_block("DiTDH-S"),
             "guidance_model": lambda: config_lib.model_block("DiTDH-S"), "train": config_lib.train_block,
             "sampling": config_lib.sampling_block, "stats": config_lib.stats_block, "eval": config_lib.eval_block,
             "stage1": config_lib.stage1_block}


@pytest.mark.parametrize("block", sorted(RANGE_TABLES))
def test_every_range_entry_names_a_field_of_its_block(block):
    """A misspelt table entry would check nothing; every entry must name a field the block's factory has."""
    fields = set(config_lib.all_keys(FACTORIES[block]()))
    assert sorted(set(RANGE_TABLES[block]) - fields) == []


def test_out_of_range_override_is_one_fatal_line(tmp_path):
    result = run_python(["-m", "rae_xla.main", "--config=configs/quickstart.py", f"--workdir={tmp_path}",
                         "--config.runtime.backend=cpu", "--config.train.lr_schedule.base_lr=-1e-4"], check=False)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    fatal = [line for line in result.stderr.splitlines() if line.startswith("FATAL")]
    assert fatal == ["FATAL config error: train.lr_schedule.base_lr=-0.0001 must be > 0"], result.stderr[-3000:]
    assert not re.search(r"config\.json", " ".join(os.listdir(tmp_path)))  # Refused before the workdir is written.
