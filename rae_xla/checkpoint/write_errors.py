"""A checkpoint write that the storage refused (disk full, quota, read-only, no permission): found in what DCP
raises, and described in one line that says what was needed and what is still intact.

torch.distributed.checkpoint does not chain the writers' exceptions: it collects them per rank in
`CheckpointException.failures` ({rank: exception or (exception, traceback)}), so the OSError is looked for there
as well as in the cause chain. A full local disk does not always surface as ENOSPC: torch.save's zip writer can
fail first with "RuntimeError: ... unexpected pos" (seen on a full tmpfs), so for local paths the free space is
compared with what the checkpoint needs as well.
"""
from __future__ import annotations

import errno
import os
import shutil
import threading
from typing import Any

import torch
from absl import logging

# errno -> what it means for the user, and the fix.
STORAGE_ERRNOS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}


def storage_os_error(error: BaseException) -> OSError | None:
    """The OSError with a STORAGE_ERRNOS errno inside `error` (its cause chain or DCP's per-rank failures)."""
    pending, seen = [error], set()
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in STORAGE_ERRNOS:
            return current
        for failure in (getattr(current, "failures", None) or {}).values():
            pending.append(failure[0] if isinstance(failure, tuple) else failure)
        pending += [current.__cause__, current.__context__]
    return None


def state_bytes(state: Any) -> int:
    """Bytes of every tensor in a trainer state (modules, optimizers, nested dicts/lists), as a checkpoint holds
    them: the global size of sharded tensors (the checkpoint needs all of it, split over the hosts)."""
    total, pending, seen = 0, [state], set()
    while pending:
        item = pending.pop()
        if isinstance(item, torch.Tensor):
            total += item.numel() * item.element_size()
        elif id(item) in seen:
            continue
        elif isinstance(item, dict):
            seen.add(id(item))
            pending += list(item.values())
        elif isinstance(item, (list, tuple)):
            seen.add(id(item))
            pending += list(item)
        elif hasattr(item, "state_dict"):
            seen.add(id(item))
            pending.append(item.state_dict())
    return total


def refusal(error: BaseException, path: str, needed_bytes: int) -> str | None:
    """What the storage refused (e.g. 'the disk is full (3.1 MB free)'), or None if `error` is something else."""
    refused = storage_os_error(error)
    if refused is not None:
        return f"{STORAGE_ERRNOS[refused.errno]} ({refused.strerror or refused})"
    if "://" in path or not isinstance(error, Exception) and type(error).__name__ != "CheckpointException":
        return None
    existing = os.path.abspath(path)
    while not os.path.exists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    free = shutil.disk_usage(existing).free
    return f"the disk is full ({free / 1e6:,.1f} MB free)" if free < needed_bytes else None


def quiet_writer_thread_failures() -> None:
    """Installs (once) a `threading.excepthook` that reports a refused write in DCP's file-writer threads
    (`_write_files_from_queue`) as one log line instead of a traceback per thread: the save fails as a whole and
    the job reports that in its one FATAL line. Every other thread exception goes to the previous hook."""
    global _PREVIOUS_HOOK
    if _PREVIOUS_HOOK is not None:
        return
    _PREVIOUS_HOOK = threading.excepthook

    def hook(args) -> None:
        name = getattr(args.thread, "name", "") or ""
        disk = args.exc_value is not None and (storage_os_error(args.exc_value) is not None or
                                               "unexpected pos" in str(args.exc_value))
        if "_write_files_from_queue" in name and disk:
            logging.warning("checkpoint writer thread %s: %s", name, args.exc_value)
            return
        _PREVIOUS_HOOK(args)

    threading.excepthook = hook


_PREVIOUS_HOOK = None
