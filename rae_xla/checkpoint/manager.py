"""Step-indexed, atomic, verified, sharded checkpoints in `workdir/checkpoints/<step>/` (local or gs://).

Atomicity without a rename (gs:// has none): every process writes its shards with torch.distributed.checkpoint,
recording each file's size and CRC-32 as it goes (integrity.py); the records of all processes are gathered, and
only when every process has finished does process 0 write `meta.json` (with the records) and finally the empty
marker `COMMITTED`. A directory without the marker is an interrupted save: it is never restored from and is
deleted by the next save.

Asynchronous saves (`async_save=True`): `save` copies this process's shards to host memory (the blocking part,
seconds) and returns; a background thread writes them (`write_threads` files in parallel per process) and
commits, while training continues. At most one save is in flight: the next `save`, `wait_until_finished()` and
leaving the manager's `with` block wait for it, so a save in flight at SIGTERM completes before the process
exits. The background thread's collectives use a gloo group of their own, never the training loop's.

Restores verify before loading: each process re-reads its share of the files and compares sizes and checksums.
A damaged checkpoint (truncated, corrupted, a missing shard) gets a `DAMAGED` file naming the reason and is
moved to `<step>.damaged-<time>/` (kept for inspection, out of the way of the run that saves that step
again); with `on_damaged='fallback'` training resumes from the newest intact one after a loud warning; with
'fail' (or when no intact one is left) a `CheckpointFileError` says so in one line.
Keep-K pruning keeps the newest `keep` intact checkpoints, never deletes a damaged one, and deletes nothing
when the checkpoint just written fails its size check.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

import torch.distributed as dist
from absl import logging
from etils import epath
from etils.epath import backend as epath_backend
from torch.distributed.checkpoint.api import CheckpointException

from rae_xla import errors
from rae_xla.checkpoint import integrity, write_errors
from rae_xla.runtime.base import Runtime

COMMIT_MARKER = "COMMITTED"
META_FILE = "meta.json"
DAMAGED_MARKER = "DAMAGED"
FILES_KEY = "files"  # meta.json: {file name: {'bytes': n, 'crc32': c}} over every process's files.
BANNER = "!" * 100
ON_DAMAGED = ("fallback", "fail")  # What to do about a damaged newest checkpoint (config.train.on_damaged_checkpoint).


class CheckpointManager:
    """Saves and restores trainer state through `runtime.stage_state/save_state/load_state`.

    Args:
      directory: e.g. 'runs/x/checkpoints' or 'gs://bucket/runs/x/checkpoints'.
      runtime: the backend; every process must call `save`/`restore_latest` together.
      keep: how many intact checkpoints to keep (>= 1).
      on_damaged: 'fallback' (resume from the newest intact checkpoint, warning loudly) or 'fail'.
      async_save: write in a background thread after staging the state in host memory.
      write_threads: files written in parallel per process (also the reader threads of verification).
    Use it as a context manager (or call `wait_until_finished`) so that the last save completes.
    """

    def __init__(self, directory: str, runtime: Runtime | None, keep: int, *, on_damaged: str = "fallback",
                 async_save: bool = False, write_threads: int = 1):
        """runtime None: a read-only view for tools that only list checkpoints (e.g. export_decoder)."""
        if keep < 1:
            raise ValueError(f"checkpoint keep={keep} must be >= 1")
        if on_damaged not in ON_DAMAGED:
            raise ValueError(f"on_damaged={on_damaged!r} must be one of {ON_DAMAGED}")
        self.directory = epath.Path(directory)
        self.runtime = runtime
        self.keep = keep
        self.on_damaged = on_damaged
        self.async_save = async_save
        self.write_threads = max(1, write_threads)
        # Its own gloo group: DCP's collectives then never interleave with the loop's (possibly from two threads).
        self._group = (dist.new_group(backend="gloo")
                       if runtime is not None and runtime.process_count > 1 and dist.is_initialized() else None)
        self._thread: threading.Thread | None = None
        write_errors.quiet_writer_thread_failures()
        self._error: BaseException | None = None
        self.last_save_seconds: dict[str, float] = {}  # {'blocking', 'total'} of the newest finished save.

    def __enter__(self) -> "CheckpointManager":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.wait_until_finished()
            return
        try:  # Already failing: still finish the save in flight (it holds a good state), then let `exc` through.
            self.wait_until_finished()
        except Exception:  # pylint: disable=broad-except
            logging.exception("The checkpoint save in flight failed too.")

    def close(self) -> None:
        """Waits for the save in flight; call it in a `finally`: while an exception propagates, a failure of the
        save is logged instead of replacing that exception."""
        self.__exit__(*sys.exc_info())

    # --- Listing ---------------------------------------------------------------------------------------------------

    def _step_dirs(self) -> dict[int, epath.Path]:
        _forget_listings(self.directory)
        if not self.directory.exists():
            return {}
        return {int(p.name): p for p in self.directory.iterdir() if p.name.isdigit()}

    def complete_steps(self) -> list[int]:
        """Steps whose save finished (marker present) and that were not found damaged, oldest first."""
        return sorted(s for s, p in self._step_dirs().items()
                      if (p / COMMIT_MARKER).exists() and not (p / DAMAGED_MARKER).exists())

    def latest_step(self) -> int | None:
        steps = self.complete_steps()
        return steps[-1] if steps else None

    # --- Saving ----------------------------------------------------------------------------------------------------

    def save(self, step: int, state: dict[str, Any], meta: dict[str, Any]) -> None:
        """Writes `state` for `step`; `meta` (JSON-serialisable) goes to meta.json next to the shards.

        Asynchronous: returns once the state is in host memory; the write and the commit follow in the background.
        """
        self.wait_until_finished()  # One save in flight at most (and host memory for one staged copy).
        path = self.directory / str(step)
        if self.runtime.is_main:
            if path.exists():  # Left by an interrupted save of the same step: never mix old and new shards.
                path.rmtree()
            path.mkdir(parents=True, exist_ok=True)
        self.runtime.barrier(f"ckpt-{step}-dir")
        started = time.perf_counter()
        if self.async_save:
            staged = self.runtime.stage_state(state)
            blocking = time.perf_counter() - started
            self._thread = threading.Thread(target=self._write_in_background, name=f"checkpoint-{step}",
                                            args=(step, path, staged, meta, started, blocking))
            self._thread.start()
        else:
            self._write_and_commit(step, path, state, meta, started, blocking=None)

    def wait_until_finished(self) -> None:
        """Blocks until the save in flight (if any) is committed; re-raises its error."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def save_failed(self) -> bool:
        """Whether a background save has ended with an error (not yet raised); a host check, never waits."""
        return self._thread is not None and not self._thread.is_alive() and self._error is not None

    def raise_if_failed(self) -> None:
        """Re-raises the error of a background save that has already ended, without waiting for one in flight:
        the training loop calls it every step (a host check, no device sync), so a full disk stops the run at the
        next step with one line instead of at the next save."""
        if self.save_failed():
            self.wait_until_finished()

    def _write_in_background(self, *args) -> None:
        try:
            self._write_and_commit(*args)
        except BaseException as e:  # pylint: disable=broad-except  Re-raised by wait_until_finished.
            self._error = e

    def _write_and_commit(self, step: int, path: epath.Path, state: dict[str, Any], meta: dict[str, Any],
                          started: float, blocking: float | None) -> None:
        recorder = integrity.FileRecorder()
        try:
            self.runtime.save_state(str(path), state, threads=self.write_threads, recorder=recorder,
                                    process_group=self._group)
        # The storage refused the write: one line, the partial save removed. BaseException: DCP's
        # CheckpointException derives from it (KeyboardInterrupt and the like are no refusal and pass on).
        except BaseException as e:  # pylint: disable=broad-except
            need = write_errors.state_bytes(state)
            refused = write_errors.refusal(e, str(path), need)
            if refused is None:
                raise
            raise self._refused_write(step, path, need, refused) from e
        records = self._gather(recorder.records)  # Returns once every process has written all its files.
        total = time.perf_counter() - started
        seconds = {"blocking": total if blocking is None else blocking, "total": total}
        if self.runtime.is_main:
            (path / META_FILE).write_text(json.dumps(dict(meta, step=step, save_seconds=seconds, **{FILES_KEY: records}),
                                                     indent=2, sort_keys=True, default=str))
            (path / COMMIT_MARKER).write_text("")
            self._prune(step, records)
        self._group_barrier()  # Every process sees the checkpoint committed before it counts as saved.
        self.last_save_seconds = seconds
        logging.info("Saved checkpoint %s (%.1f MB): %.2f s blocking, %.2f s in all.", path,
                     sum(r["bytes"] for r in records.values()) / 1e6, seconds["blocking"], seconds["total"])

    def _gather(self, records: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
        if self._group is None:
            return dict(records)
        everyone: list = [None] * dist.get_world_size(self._group)
        dist.all_gather_object(everyone, records, group=self._group)
        return {name: record for part in everyone for name, record in part.items()}

    def _group_barrier(self) -> None:
        if self._group is not None:
            dist.barrier(group=self._group)

    def _prune(self, newest: int, records: dict[str, dict[str, int]]) -> None:
        _forget_listings(self.directory)
        problem = integrity.check_sizes(self.directory / str(newest), records)
        if problem:  # Storage lost what was just written: deleting older ones could leave nothing intact.
            logging.error("Checkpoint %s fails its size check right after the save (%s); keeping every older "
                          "checkpoint.", self.directory / str(newest), problem)
            return
        for step in self.complete_steps()[:-self.keep]:
            (self.directory / str(step)).rmtree()
        for step, path in self._step_dirs().items():
            if step < newest and not (path / COMMIT_MARKER).exists():
                logging.warning("Deleting interrupted checkpoint %s (no %s marker).", path, COMMIT_MARKER)
                path.rmtree()

    def _refused_write(self, step: int, path: epath.Path, need: int, refused: str) -> errors.WorkdirError:
        """The one-line error of a write the storage refused; the partial save (no COMMITTED marker, never
        restored) is deleted to give the space back. Every process gets it: DCP reports one rank's failure to all."""
        if self.runtime.is_main:
            try:
                path.rmtree()
            except OSError as e:  # Best effort (a read-only mount cannot delete either); it is never restored.
                logging.warning("Could not delete the partial checkpoint %s (%s).", path, e)
        intact = self.latest_step()
        newest = (f"the newest intact checkpoint is step {intact} ({self.directory / str(intact)}), which a rerun "
                  "resumes from" if intact is not None else "there is no intact checkpoint yet")
        return errors.WorkdirError(
            f"writing checkpoint {path} (step {step}) failed: {refused}; the checkpoint needs about "
            f"{need / 1e6:,.1f} MB; the partial save was removed and {newest}. Free space or give --workdir on "
            f"storage that has it, then run the same command.")

    # --- Verifying and restoring -----------------------------------------------------------------------------------

    def verify(self, step: int) -> str | None:
        """None if checkpoint `step` is intact, else the reason (the same answer on every process).

        Each process re-reads its share of the files; a checkpoint written before integrity records existed is
        accepted as it is.
        """
        path = self.directory / str(step)
        _forget_listings(path)
        problem, records = None, {}
        try:
            records = json.loads((path / META_FILE).read_text()).get(FILES_KEY)
        except (OSError, ValueError) as e:
            problem = f"{META_FILE} is missing or unreadable ({type(e).__name__})"
        if records is None:
            logging.info("Checkpoint %s has no integrity records (written by an older version): not verified.", path)
        elif not problem:
            names = sorted(records)[self.runtime.process_index::self.runtime.process_count]
            problem = integrity.verify_files(path, records, names, self.write_threads)
        if self.runtime.any_process(problem is not None) and problem is None:
            problem = "another process found a damaged file (see its log)"
        return problem

    def restore(self, step: int, state: dict[str, Any], *, verified: bool = False) -> dict[str, Any]:
        """Loads checkpoint `step` into `state` in place (resharding to the current mesh); returns its meta."""
        path = self.directory / str(step)
        if not (path / COMMIT_MARKER).exists():
            raise errors.CheckpointFileError(f"checkpoint {path} is incomplete (no {COMMIT_MARKER} marker); it "
                                             "cannot be restored")
        problem = None if verified else self.verify(step)
        if problem:
            raise errors.CheckpointFileError(f"checkpoint {path} is damaged: {problem}")
        for value in state.values():
            if isinstance(value, tuple):  # (module, optimizer): its state tensors must exist before an in-place load.
                self.runtime.prime_optimizer(value[1])
        try:
            self.runtime.load_state(str(path), state)
        except CheckpointException as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise errors.CheckpointFileError(
                f"checkpoint {path} does not fit the model/optimizer of this config ({first[:300]}); resume with "
                f"the config it was written with (its {META_FILE} holds it) or use a new --workdir") from e
        return json.loads((path / META_FILE).read_text())

    def restore_latest(self, state: dict[str, Any]) -> dict[str, Any] | None:
        """Restores the newest intact checkpoint (falling back past damaged ones), or returns None if there is none."""
        damaged: list[tuple[int, str]] = []
        for step in reversed(self.complete_steps()):
            problem = self.verify(step)
            if problem is None:
                meta = self.restore(step, state, verified=True)
                logging.info("Restored checkpoint %s (step %d).", self.directory / str(step), step)
                if damaged:
                    logging.warning("%s\nRESUMED FROM STEP %d: newer checkpoint(s) %s are damaged and were kept "
                                    "for inspection as %s/<step>.damaged-* (reasons in their %s file).\n%s",
                                    BANNER, step, [s for s, _ in damaged], self.directory, DAMAGED_MARKER, BANNER)
                return meta
            path = self.directory / str(step)
            if self.on_damaged == "fail":
                raise errors.CheckpointFileError(
                    f"checkpoint {path} is damaged: {problem}. It was kept for inspection; set "
                    "--config.train.on_damaged_checkpoint=fallback to resume from the newest intact checkpoint")
            kept = self._mark_damaged(path, problem)
            logging.error("%s\nDAMAGED CHECKPOINT %s: %s.\nKept on disk for inspection as %s (reason in its %s "
                          "file); trying the previous checkpoint.\n%s", BANNER, path, problem, kept, DAMAGED_MARKER,
                          BANNER)
            damaged.append((step, problem))
        if damaged:
            raise errors.CheckpointFileError(
                f"no intact checkpoint in {self.directory}: every committed one is damaged (step {damaged[0][0]}: "
                f"{damaged[0][1]}); restore an intact copy, or move the folder away to start from step 0")
        return None

    def _mark_damaged(self, path: epath.Path, problem: str) -> epath.Path:
        """Writes the reason into `path`/DAMAGED and moves it to `<step>.damaged-<unix time>`, out of the way of
        the run that re-saves this step; returns where it is kept."""
        if not self.runtime.is_main:
            return path
        try:
            (path / DAMAGED_MARKER).write_text(problem + "\n")
            kept = self.directory / f"{path.name}.damaged-{int(time.time())}"
            path.rename(kept)  # Local: atomic. gs://: a server-side copy, once per damaged checkpoint.
            return kept
        except Exception as e:  # pylint: disable=broad-except  Best effort (read-only copy, gcsfs errors).
            logging.warning("Could not mark or move the damaged checkpoint %s: %s", path, e)
            return path


def _forget_listings(path: epath.Path) -> None:
    """Drops cached directory listings of gs:// paths before reading them.

    gcsfs caches listings per filesystem instance; DCP writes the shards through its own instance, so the one
    behind epath would otherwise not see them (a missing file in a size check, a step missing from the list).
    """
    if "://" in str(path):
        epath_backend.fsspec_backend.fs(path).invalidate_cache()
