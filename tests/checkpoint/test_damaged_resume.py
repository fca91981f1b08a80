"""A damaged newest checkpoint never blocks a resume (issue 15), end to end through `python -m rae_xla.main`.

One quickstart run saves steps 2, 4, 6. The reference resumes to step 8 from step 4 directly (step 6 removed).
Each damage of step 6 (truncated shard, wrong checksum, missing shard) must resume from step 4 too, with the
same loss curve; with every checkpoint damaged, or with on_damaged_checkpoint='fail', the run stops with one
FATAL line.
"""
import os
import shutil

import pytest

from tests.checkpoint.test_manager import _flip_a_byte, _truncate
from tests.conftest import run_python
from tests.train.test_stage2 import args, losses

BASE = ("--config.train.checkpoint_every=2", "--config.train.keep_checkpoints=3")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    """A 6-step run with checkpoints 2, 4, 6."""
    workdir = tmp_path_factory.mktemp("base") / "run"
    run_python(args(workdir, data_dir, 6, *BASE))
    assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4", "6"]
    return workdir


@pytest.fixture(scope="module")
def resumed_from_4(tmp_path_factory, trained, data_dir):
    """Losses of steps 5..8 of a run resumed from step 4 directly."""
    workdir = tmp_path_factory.mktemp("reference") / "run"
    shutil.copytree(trained, workdir)
    shutil.rmtree(workdir / "checkpoints" / "6")
    run_python(args(workdir, data_dir, 8, *BASE))
    return {s: l for s, l in losses(workdir).items() if s > 4}


DAMAGE = {
    "truncated": lambda ckpt: _truncate(ckpt / "__0_0.distcp"),
    "wrong checksum": lambda ckpt: _flip_a_byte(ckpt / "__0_1.distcp"),
    "missing shard": lambda ckpt: os.remove(ckpt / "__0_2.distcp"),
}


def _copy(trained, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(trained, workdir)
    return workdir


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_newest_checkpoint_resumes_from_the_previous_one(damage, trained, resumed_from_4, data_dir,
                                                                 tmp_path):
    workdir = _copy(trained, tmp_path)
    DAMAGE[damage](workdir / "checkpoints" / "6")
    result = run_python(args(workdir, data_dir, 8, *BASE))
    assert "DAMAGED CHECKPOINT" in result.stderr and "RESUMED FROM STEP 4" in result.stderr, result.stderr[-3000:]
    after = {s: l for s, l in losses(workdir).items() if s > 4}
    assert sorted(after) == [5, 6, 7, 8]
    assert after == resumed_from_4  # Bitwise: the same state, data position and randomness as resuming at 4.
    assert any(n.startswith("6.damaged-") for n in os.listdir(workdir / "checkpoints"))  # Kept for inspection.


def _fatal_lines(result):
    return [line for line in result.stderr.splitlines() if line.startswith("FATAL")]


def test_only_damaged_checkpoints_stop_with_one_clear_line(trained, data_dir, tmp_path):
    workdir = _copy(trained, tmp_path)
    for step in ("2", "4", "6"):
        _truncate(workdir / "checkpoints" / step / "__0_0.distcp")
    result = run_python(args(workdir, data_dir, 8, *BASE), check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert len(_fatal_lines(result)) == 1
    assert _fatal_lines(result)[0].startswith("FATAL checkpoint error: no intact checkpoint in ")


def test_fail_policy_stops_at_the_damaged_checkpoint(trained, data_dir, tmp_path):
    workdir = _copy(trained, tmp_path)
    _flip_a_byte(workdir / "checkpoints" / "6" / "__0_0.distcp")
    result = run_python(args(workdir, data_dir, 8, *BASE, "--config.train.on_damaged_checkpoint=fail"), check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    (line,) = _fatal_lines(result)
    assert "checkpoints/6 is damaged: file __0_0.distcp has CRC-32" in line
    assert (workdir / "checkpoints" / "6").exists()
