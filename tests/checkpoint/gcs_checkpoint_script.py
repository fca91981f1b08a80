"""Checkpoints on gs:// (run by test_gcs_checkpoints.py in a subprocess, with the emulator's env vars set).

usage: python gcs_checkpoint_script.py gs://bucket/dir
Saves steps 1, 2, 3 asynchronously with keep=2, then an interrupted save of step 4, then restores; prints
`RESULT {json}` with what the test checks.
"""
import json
import sys

import ml_collections
import torch
from etils import epath

from rae_xla import config as config_lib
from rae_xla.checkpoint import manager as manager_lib
from rae_xla.checkpoint.manager import COMMIT_MARKER, META_FILE, CheckpointManager
from rae_xla.runtime import make_runtime
from tests.checkpoint.test_manager import _FailingWrite, _state, _weights


def main(directory: str) -> None:
    runtime = make_runtime(ml_collections.ConfigDict(config_lib.runtime_block(backend="cpu")))
    saved = {}
    with CheckpointManager(directory, runtime, keep=2, async_save=True, write_threads=2) as manager:
        for step in (1, 2, 3):
            state = _state(step)
            manager.save(step, state, meta={})
            saved[step] = _weights(state)
    interrupted = CheckpointManager(directory, _FailingWrite(runtime), keep=2)
    try:
        interrupted.save(4, _state(4), meta={})
    except OSError:
        pass
    root = epath.Path(directory)
    manager_lib._forget_listings(root)  # pylint: disable=protected-access  DCP wrote through another gcsfs instance.
    listing = sorted(p.name for p in root.iterdir())
    step4_files = sorted(p.name for p in (root / "4").iterdir())
    state = _state(999)
    manager = CheckpointManager(directory, runtime, keep=2)
    meta = manager.restore_latest(state)
    restored = _weights(state)
    exact = all(torch.equal(restored[k], saved[3][k]) for k in restored)
    records = json.loads((root / "3" / META_FILE).read_text())["files"]
    print("RESULT " + json.dumps(dict(listing=listing, step4_files=step4_files, step4_committed=(
        root / "4" / COMMIT_MARKER).exists(), restored_step=meta["step"], exact=exact, verify3=manager.verify(3),
        record_names=sorted(records))))


if __name__ == "__main__":
    main(sys.argv[1])
