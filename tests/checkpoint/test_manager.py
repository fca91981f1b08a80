"""CheckpointManager in-process on the CPU runtime with a tiny model: integrity records, verification, fallback
past damaged checkpoints, keep-K pruning, asynchronous saves. (The end-to-end resume of a damaged run is in
test_damaged_resume.py; XLA and gs:// in test_gcs_checkpoints.py and tests/runtime/test_spmd.py.)
"""
import json
import os
import zlib

import ml_collections
import pytest
import torch

from rae_xla import config as config_lib
from rae_xla import errors
from rae_xla.checkpoint import integrity
from rae_xla.checkpoint.manager import COMMIT_MARKER, DAMAGED_MARKER, META_FILE, CheckpointManager
from rae_xla.runtime import make_runtime


@pytest.fixture(scope="module")
def runtime():
    return make_runtime(ml_collections.ConfigDict(config_lib.runtime_block(backend="cpu")))


def _state(seed):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Linear(32, 8))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randn(4, 16)).square().mean().backward()
    opt.step()
    return {"model": model, "optim": (model, opt)}


def _weights(state):
    return {k: v.clone() for k, v in state["model"].state_dict().items()}


def _save_steps(directory, runtime, steps, **kwargs):
    """Saves a different state at each of `steps`; returns {step: weights}."""
    saved = {}
    with CheckpointManager(str(directory), runtime, keep=10, write_threads=3, **kwargs) as manager:
        for step in steps:
            state = _state(step)
            manager.save(step, state, meta={})
            saved[step] = _weights(state)
    return saved


def _restore(directory, runtime, **kwargs):
    state = _state(999)
    meta = CheckpointManager(str(directory), runtime, keep=10, **kwargs).restore_latest(state)
    return meta, _weights(state)


def _assert_equal(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_records_are_the_sizes_and_crc32_of_the_written_files(tmp_path, runtime):
    _save_steps(tmp_path, runtime, [5])
    meta = json.loads((tmp_path / "5" / META_FILE).read_text())
    files = meta["files"]
    on_disk = sorted(n for n in os.listdir(tmp_path / "5") if n not in (META_FILE, COMMIT_MARKER))
    assert sorted(files) == on_disk and ".metadata" in files
    assert sum(n.endswith(".distcp") for n in files) == 3  # write_threads=3: three shard files written in parallel.
    for name, record in files.items():
        data = (tmp_path / "5" / name).read_bytes()
        assert record == {"bytes": len(data), "crc32": zlib.crc32(data)}, name
    assert 0 < meta["save_seconds"]["blocking"] <= meta["save_seconds"]["total"]


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # Same size, different content: only the checksum sees it.
    path.write_bytes(bytes(data))


DAMAGE = {
    "truncated shard": (lambda d: _truncate(d / "__0_1.distcp"), "__0_1.distcp has"),
    "wrong checksum": (lambda d: _flip_a_byte(d / "__0_0.distcp"), "CRC-32"),
    "missing shard": (lambda d: os.remove(d / "__0_2.distcp"), "__0_2.distcp is missing"),
    "truncated .metadata": (lambda d: _truncate(d / ".metadata"), ".metadata has"),
    "unreadable meta.json": (lambda d: (d / META_FILE).write_text("{"), "meta.json is missing or unreadable"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(damage, tmp_path, runtime):
    saved = _save_steps(tmp_path, runtime, [10, 20])
    spoil, reason = DAMAGE[damage]
    spoil(tmp_path / "20")
    manager = CheckpointManager(str(tmp_path), runtime, keep=10)
    assert reason in manager.verify(20) and manager.verify(10) is None
    meta, weights = _restore(tmp_path, runtime)
    assert meta["step"] == 10
    _assert_equal(weights, saved[10])
    kept = [n for n in os.listdir(tmp_path) if n.startswith("20.damaged-")]
    assert len(kept) == 1 and not (tmp_path / "20").exists()  # Moved aside, not deleted.
    assert reason in (tmp_path / kept[0] / DAMAGED_MARKER).read_text()
    assert manager.complete_steps() == [10]


def test_fail_policy_stops_with_one_clear_error_and_keeps_the_checkpoint(tmp_path, runtime):
    _save_steps(tmp_path, runtime, [10, 20])
    _truncate(tmp_path / "20" / "__0_0.distcp")
    with pytest.raises(errors.CheckpointFileError, match=r"checkpoint .*20 is damaged: file __0_0.distcp has .*"
                                                           r"on_damaged_checkpoint=fallback"):
        _restore(tmp_path, runtime, on_damaged="fail")
    assert (tmp_path / "20" / COMMIT_MARKER).exists()


def test_only_damaged_checkpoints_is_a_clear_error(tmp_path, runtime):
    _save_steps(tmp_path, runtime, [10, 20])
    _flip_a_byte(tmp_path / "10" / "__0_0.distcp")
    os.remove(tmp_path / "20" / "__0_1.distcp")
    with pytest.raises(errors.CheckpointFileError, match="no intact checkpoint in .*every committed one is damaged"):
        _restore(tmp_path, runtime)


def test_no_checkpoint_is_a_fresh_start(tmp_path, runtime):
    assert _restore(tmp_path / "none", runtime)[0] is None


def test_checkpoint_without_records_still_restores(tmp_path, runtime):
    saved = _save_steps(tmp_path, runtime, [7])
    meta = json.loads((tmp_path / "7" / META_FILE).read_text())
    del meta["files"]  # As written before integrity records existed.
    (tmp_path / "7" / META_FILE).write_text(json.dumps(meta))
    _assert_equal(_restore(tmp_path, runtime)[1], saved[7])


def test_keep_k_prunes_old_and_interrupted_but_never_damaged_ones(tmp_path, runtime):
    _save_steps(tmp_path, runtime, [1, 2])
    _truncate(tmp_path / "2" / "__0_0.distcp")
    _restore(tmp_path, runtime)  # Falls back to 1; 2 is moved aside.
    (tmp_path / "3").mkdir()  # An interrupted save.
    with CheckpointManager(str(tmp_path), runtime, keep=1) as manager:
        manager.save(4, _state(4), meta={})
        manager.save(5, _state(5), meta={})
    names = sorted(os.listdir(tmp_path))
    assert len(names) == 2 and names[0].startswith("2.damaged-") and names[1] == "5", names


def test_nothing_is_pruned_when_the_new_checkpoint_fails_its_size_check(tmp_path, runtime, monkeypatch):
    _save_steps(tmp_path, runtime, [1, 2])
    monkeypatch.setattr(integrity, "check_sizes", lambda directory, records: "file x is missing")
    with CheckpointManager(str(tmp_path), runtime, keep=1) as manager:
        manager.save(3, _state(3), meta={})
    assert sorted(os.listdir(tmp_path)) == ["1", "2", "3"]


def test_async_save_holds_the_state_of_its_step(tmp_path, runtime):
    state = _state(1)
    expected = _weights(state)
    with CheckpointManager(str(tmp_path), runtime, keep=2, async_save=True, write_threads=2) as manager:
        manager.save(1, state, meta={})
        with torch.no_grad():  # Training goes on while the save is in flight.
            for p in state["model"].parameters():
                p.add_(1.0)
    assert (tmp_path / "1" / COMMIT_MARKER).exists()
    _assert_equal(_restore(tmp_path, runtime)[1], expected)


class _FailingWrite:
    """A runtime whose write dies after the shards are written (preemption in the background thread)."""

    def __init__(self, runtime):
        self._runtime = runtime

    def __getattr__(self, name):
        return getattr(self._runtime, name)

    def save_state(self, path, state, **kwargs):
        self._runtime.save_state(path, state, **kwargs)
        raise OSError("disk full")


def test_a_failed_async_save_surfaces_and_is_never_restored(tmp_path, runtime):
    saved = _save_steps(tmp_path, runtime, [1])
    manager = CheckpointManager(str(tmp_path), _FailingWrite(runtime), keep=2, async_save=True)
    manager.save(2, _state(2), meta={})
    with pytest.raises(OSError, match="disk full"):
        manager.wait_until_finished()
    assert not (tmp_path / "2" / COMMIT_MARKER).exists()
    _assert_equal(_restore(tmp_path, runtime)[1], saved[1])


def test_a_failing_run_still_completes_the_save_in_flight(tmp_path, runtime):
    """TrainLoop's `finally` calls close(): the async save of a good state commits before the error leaves."""
    manager = CheckpointManager(str(tmp_path), runtime, keep=2, async_save=True, write_threads=2)
    with pytest.raises(FloatingPointError, match="diverged"):
        try:
            manager.save(1, _state(1), meta={})
            raise FloatingPointError("diverged")
        finally:
            manager.close()
    assert (tmp_path / "1" / COMMIT_MARKER).exists() and manager.verify(1) is None



def test_one_runtime_saves_states_of_different_layouts(tmp_path, runtime):
    """The quickstart saves stage 1's, then stage 2's state from one process: each layout gets its own staging."""
    def state(seed, widths):
        torch.manual_seed(seed)
        model = torch.nn.Sequential(*[torch.nn.Linear(a, b) for a, b in zip(widths, widths[1:])])
        return {"model": model, "optim": (model, torch.optim.AdamW(model.parameters()))}

    for name, widths in (("a", (16, 32, 8)), ("b", (8, 4)), ("c", (16, 32, 8))):
        saved = state(1, widths)
        with CheckpointManager(str(tmp_path / name), runtime, keep=2, async_save=True) as manager:
            manager.save(1, saved, meta={})
        restored = state(2, widths)
        CheckpointManager(str(tmp_path / name), runtime, keep=2).restore_latest(restored)
        _assert_equal(_weights(restored), _weights(saved))
