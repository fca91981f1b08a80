"""A full (or read-only) disk while a checkpoint is written: one line, nothing partial left, the previous
checkpoint restores (issue 24).

End to end on a real 14 MB tmpfs (root can mount one; CI runs as root): the quickstart's stage 2 saves a 9 MB
checkpoint at step 2, which fits, and fails the one at step 4 in its background thread; the run stops at the
next step with exit 2 and one `FATAL workdir error` line (no thread traceback), the partial step-4 folder is
gone, and after the disk grows the same command resumes from step 2 and finishes. In process, the manager's
synchronous and asynchronous paths on an injected ENOSPC / EROFS, for machines where mounting is not allowed.
"""
import errno
import os
import subprocess

import ml_collections
import pytest
import torch

from rae_xla import config as config_lib
from rae_xla import errors
from rae_xla.checkpoint.manager import CheckpointManager
from rae_xla.runtime import make_runtime
from tests.conftest import run_python


@pytest.fixture(name="tiny_disk")
def tiny_disk_fixture(tmp_path):
    """A 14 MB tmpfs at tmp_path/disk (unmounted afterwards)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=14m", "tmpfs", str(disk)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        if os.geteuid() == 0:
            pytest.fail(f"root could not mount a tmpfs: {mounted.stderr.strip()}", pytrace=False)
        pytest.skip("mounting a tmpfs needs root; the injected-ENOSPC tests below cover the manager")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_disk_full_during_an_async_save_is_one_line_and_the_run_resumes(tiny_disk, tmp_path):
    command = ["-m", "rae_xla.main", "--config=configs/quickstart.py:steps=6,batch=8", f"--workdir={tiny_disk / 'run'}",
               "--config.train.checkpoint_every=2", "--config.train.keep_checkpoints=3", "--config.data.num_workers=0",
               f"--config.data.data_dir={tmp_path / 'tfds'}", "--config.runtime.backend=cpu"]
    full = run_python(command, check=False)
    fatal = [line for line in full.stderr.splitlines() if line.startswith("FATAL")]
    assert full.returncode == 2 and "Traceback" not in full.stderr, full.stderr[-4000:]
    assert len(fatal) == 1 and fatal[0].startswith("FATAL workdir error: writing checkpoint "), fatal
    assert "the disk is full" in fatal[0] and "newest intact checkpoint is step 2" in fatal[0], fatal[0]
    assert sorted(os.listdir(tiny_disk / "run" / "checkpoints")) == ["2"]  # The partial save is gone.
    subprocess.run(["mount", "-o", "remount,size=64m", str(tiny_disk)], check=True)
    resumed = run_python(command)
    assert "checkpoints/2 (step 2)" in resumed.stderr and "Training steps 2 -> 6" in resumed.stderr, \
        resumed.stderr[-3000:]
    assert "6" in os.listdir(tiny_disk / "run" / "checkpoints")


@pytest.fixture(scope="module")
def runtime():
    return make_runtime(ml_collections.ConfigDict(config_lib.runtime_block(backend="cpu")))


def _state(seed):
    torch.manual_seed(seed)
    model = torch.nn.Linear(64, 64)
    return {"model": model, "optim": (model, torch.optim.AdamW(model.parameters()))}


@pytest.mark.parametrize("async_save", [False, True])
@pytest.mark.parametrize("code,meaning", [(errno.ENOSPC, "the disk is full"), (errno.EROFS, "read-only")])
def test_a_refused_write_names_the_need_and_the_intact_checkpoint(tmp_path, runtime, monkeypatch, async_save, code,
                                                                   meaning):
    manager = CheckpointManager(str(tmp_path / "ckpt"), runtime, keep=3, async_save=async_save)
    manager.save(1, _state(1), meta={})
    manager.wait_until_finished()
    original = runtime.save_state

    def refuse(path, *args, **kwargs):
        open(os.path.join(path, "half-written"), "w").close()
        raise OSError(code, os.strerror(code), os.path.join(path, "__0_0.distcp"))

    monkeypatch.setattr(runtime, "save_state", refuse)
    with pytest.raises(errors.WorkdirError) as info:
        manager.save(2, _state(2), meta={})
        while async_save and not manager.save_failed():  # The loop's per-step check, until the thread ends.
            manager._thread.join()
        manager.raise_if_failed()
    monkeypatch.setattr(runtime, "save_state", original)
    message = str(info.value)
    assert meaning in message and "needs about 0.0" in message and "newest intact checkpoint is step 1" in message
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["1"]
    state = _state(3)
    CheckpointManager(str(tmp_path / "ckpt"), runtime, keep=3).restore_latest(state)
    torch.testing.assert_close(state["model"].weight, _state(1)["model"].weight, rtol=0, atol=0)
