"""Step-indexed, atomic, sharded checkpoints in `workdir/checkpoints/<step>/` (local or gs://).

Atomicity without a rename (gs:// has none): every process writes its shards with torch.distributed.checkpoint,
all processes meet at a barrier, then process 0 writes `meta.json` and finally the empty marker `COMMITTED`.
A directory without the marker is an interrupted save: it is never restored from and is deleted by the next
save. Only the newest `keep` complete checkpoints are kept.
"""
from __future__ import annotations

import json
import time
from typing import Any

from absl import logging
from etils import epath

from rae_xla.runtime.base import Runtime

COMMIT_MARKER = "COMMITTED"
META_FILE = "meta.json"


class CheckpointManager:
    """Saves and restores trainer state through `runtime.save_state/load_state`.

    Args:
      directory: e.g. 'runs/x/checkpoints' or 'gs://bucket/runs/x/checkpoints'.
      runtime: the backend; every process must call `save`/`restore_latest` together.
      keep: how many complete checkpoints to keep (>= 1).
    """

    def __init__(self, directory: str, runtime: Runtime, keep: int):
        if keep < 1:
            raise ValueError(f"checkpoint keep={keep} must be >= 1")
        self.directory = epath.Path(directory)
        self.runtime = runtime
        self.keep = keep

    def _step_dirs(self) -> dict[int, epath.Path]:
        if not self.directory.exists():
            return {}
        return {int(p.name): p for p in self.directory.iterdir() if p.name.isdigit()}

    def complete_steps(self) -> list[int]:
        """Steps whose save finished (marker present), oldest first."""
        return sorted(s for s, p in self._step_dirs().items() if (p / COMMIT_MARKER).exists())

    def latest_step(self) -> int | None:
        steps = self.complete_steps()
        return steps[-1] if steps else None

    def save(self, step: int, state: dict[str, Any], meta: dict[str, Any]) -> None:
        """Writes `state` for `step`; `meta` (JSON-serialisable) goes to meta.json next to the shards."""
        path = self.directory / str(step)
        if self.runtime.is_main:
            if path.exists():  # Left by an interrupted save of the same step: never mix old and new shards.
                path.rmtree()
            path.mkdir(parents=True, exist_ok=True)
        self.runtime.barrier(f"ckpt-{step}-dir")
        started = time.time()
        self.runtime.save_state(str(path), state)
        self.runtime.barrier(f"ckpt-{step}-written")
        if self.runtime.is_main:
            (path / META_FILE).write_text(json.dumps(dict(meta, step=step), indent=2, sort_keys=True, default=str))
            (path / COMMIT_MARKER).write_text("")
            self._prune(step)
        self.runtime.barrier(f"ckpt-{step}-committed")
        logging.info("Saved checkpoint %s in %.1f s.", path, time.time() - started)

    def _prune(self, newest: int) -> None:
        complete = self.complete_steps()
        for step in complete[:-self.keep]:
            (self.directory / str(step)).rmtree()
        for step, path in self._step_dirs().items():
            if step < newest and not (path / COMMIT_MARKER).exists():
                logging.warning("Deleting interrupted checkpoint %s (no %s marker).", path, COMMIT_MARKER)
                path.rmtree()

    def restore(self, step: int, state: dict[str, Any]) -> dict[str, Any]:
        """Loads checkpoint `step` into `state` in place (resharding to the current mesh); returns its meta."""
        path = self.directory / str(step)
        if not (path / COMMIT_MARKER).exists():
            raise FileNotFoundError(f"checkpoint {path} is incomplete (no {COMMIT_MARKER} marker); it cannot be restored")
        for value in state.values():
            if isinstance(value, tuple):  # (module, optimizer): its state tensors must exist before an in-place load.
                self.runtime.prime_optimizer(value[1])
        self.runtime.load_state(str(path), state)
        return json.loads((path / META_FILE).read_text())

    def restore_latest(self, state: dict[str, Any]) -> dict[str, Any] | None:
        """Restores the newest complete checkpoint, or returns None when there is none."""
        step = self.latest_step()
        if step is None:
            return None
        meta = self.restore(step, state)
        logging.info("Restored checkpoint %s (step %d).", self.directory / str(step), step)
        return meta
