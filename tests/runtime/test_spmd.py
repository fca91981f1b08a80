"""The XLA SPMD runtime on virtual CPU devices against eager CPU, with the toy model of runtime/selftest.py.

Each XLA run is a subprocess (PJRT_DEVICE=CPU CPU_NUM_DEVICES=n): the env vars and use_spmd() are per process.
"""
import json
import shutil

import ml_collections
import numpy as np
import pytest

from rae_xla import config as config_lib
from rae_xla import errors
from rae_xla.checkpoint.manager import COMMIT_MARKER, CheckpointManager
from rae_xla.runtime import make_runtime, selftest
from tests.conftest import run_python

STEPS = 6


def _selftest(tmp_path_factory, name, *args, xla_devices=None):
    out = tmp_path_factory.mktemp(name) / "result.json"
    run_python(["-m", "rae_xla.runtime.selftest", f"--steps={STEPS}", f"--out={out}", *args],
               xla_devices=xla_devices)
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def eager(tmp_path_factory):
    return _selftest(tmp_path_factory, "eager", "--backend=cpu")


@pytest.fixture(scope="module")
def xla_2x2(tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("ckpt_2x2")
    result = _selftest(tmp_path_factory, "xla22", "--backend=xla", "--mesh=2,2", "--strict", f"--save_to={ckpt}",
                       "--async_save", xla_devices=4)  # Async: the weights change while it writes.
    result["checkpoint_dir"] = str(ckpt)
    return result


@pytest.fixture(scope="module")
def xla_2x4(tmp_path_factory):
    return _selftest(tmp_path_factory, "xla24", "--backend=xla", "--mesh=2,4", xla_devices=8)


def _max_diff(a, b, prefix=""):
    keys = [k for k in a if k.startswith(prefix)]
    assert keys and set(keys) <= set(b)
    return max(float(np.max(np.abs(np.array(a[k]) - np.array(b[k])))) for k in keys)


@pytest.mark.xla
@pytest.mark.parametrize("run", ["xla_2x2", "xla_2x4"])
def test_spmd_training_matches_eager(run, eager, request):
    xla = request.getfixturevalue(run)
    assert xla["backend"] == "xla" and eager["backend"] == "cpu"
    assert len(xla["losses"]) == len(eager["losses"]) == STEPS
    np.testing.assert_allclose(xla["losses"], eager["losses"], atol=2e-6, rtol=0)
    np.testing.assert_allclose(xla["grad_norms"], eager["grad_norms"], rtol=1e-5)
    # Adam divides by sqrt(v): fp32 reduction-order noise in the gradients grows to ~1e-5 in the weights.
    assert _max_diff(xla["tensors"], eager["tensors"], "param/") < 2e-4
    assert _max_diff(xla["tensors"], eager["tensors"], "ema/") < 2e-4
    assert eager["losses"][-1] < eager["losses"][0]  # It trains.


@pytest.mark.xla
@pytest.mark.parametrize("run", ["xla_2x2", "xla_2x4"])
def test_no_recompiles_after_warmup_and_no_cpu_fallbacks(run, request):
    xla = request.getfixturevalue(run)
    graphs = xla["graphs_per_step"]
    # Step 0 compiles the graph that creates AdamW's state, step 1 the steady state; nothing after that.
    assert graphs[1] >= 1 and all(g == graphs[1] for g in graphs[1:]), graphs
    assert xla["compile"]["cpu_fallbacks"] == []


@pytest.mark.xla
def test_strict_step_rejects_a_host_sync():
    result = run_python(["-m", "rae_xla.runtime.selftest", "--backend=xla", "--mesh=1,-1", "--steps=1", "--strict",
                         "--strict_item"], xla_devices=4, check=False)
    assert result.returncode != 0
    assert "Unexpected execution happens inside the compiled function" in result.stderr


@pytest.mark.xla
def test_checkpoint_from_2x2_restores_exactly_onto_4x1_and_onto_cpu(xla_2x2, tmp_path):
    out = tmp_path / "restored.json"
    run_python(["-m", "rae_xla.runtime.selftest", "--backend=xla", "--mesh=4,1",
                f"--restore_from={xla_2x2['checkpoint_dir']}", f"--out={out}"], xla_devices=4)
    restored = json.loads(out.read_text())
    assert restored["meta"]["step"] == STEPS and restored["mesh"] == {"data": 4, "fsdp": 1}
    assert set(restored["tensors"]) == set(xla_2x2["tensors"])
    assert any(k.startswith("exp_avg/") for k in restored["tensors"])  # Optimizer state came back too.
    assert _max_diff(xla_2x2["tensors"], restored["tensors"]) == 0.0
    on_cpu = selftest.restore_selftest(_cpu_runtime(), xla_2x2["checkpoint_dir"])
    assert _max_diff(xla_2x2["tensors"], on_cpu["tensors"]) == 0.0


def _cpu_runtime():
    return make_runtime(ml_collections.ConfigDict(config_lib.runtime_block(backend="cpu")))


class _CrashAfterWriting:
    """A runtime whose save writes every shard and then dies before the manager commits (preemption)."""

    def __init__(self, runtime):
        self._runtime = runtime

    def __getattr__(self, name):
        return getattr(self._runtime, name)

    def save_state(self, path, state, **kwargs):
        self._runtime.save_state(path, state, **kwargs)
        raise KeyboardInterrupt("preempted")


@pytest.mark.xla
def test_an_interrupted_save_is_never_restored(xla_2x2, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(xla_2x2["checkpoint_dir"], ckpt)
    runtime = _cpu_runtime()
    good = selftest.restore_selftest(runtime, str(ckpt))
    later = selftest.run_selftest(runtime, steps=2, batch=8)  # Different weights, saved as a later step.
    state = {"meta": {}}
    with pytest.raises(KeyboardInterrupt):
        CheckpointManager(str(ckpt), _CrashAfterWriting(runtime), keep=2).save(STEPS + 10, state, meta={})
    assert (ckpt / str(STEPS + 10)).exists() and not (ckpt / str(STEPS + 10) / COMMIT_MARKER).exists()
    # A half-written directory with a truncated shard, as a kill during the write leaves it:
    (ckpt / str(STEPS + 20)).mkdir()
    (ckpt / str(STEPS + 20) / "__0_0.distcp").write_bytes(b"\x80\x02trunc")
    manager = CheckpointManager(str(ckpt), runtime, keep=2)
    assert manager.latest_step() == STEPS
    restored = selftest.restore_selftest(runtime, str(ckpt))
    assert restored["meta"]["step"] == STEPS
    assert _max_diff(good["tensors"], restored["tensors"]) == 0.0
    assert _max_diff(later["tensors"], restored["tensors"], "param/") > 0  # Not the later, uncommitted weights.
    with pytest.raises(errors.CheckpointFileError, match="incomplete"):
        manager.restore(STEPS + 20, {})
