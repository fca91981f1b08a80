"""Trace capture for `runtime.profile_steps`: the runtime's profiler writes into a local folder, which is
copied to the workdir (local or gs://) when the trace stops, so every host's trace lands in
`<workdir>/profile/host_<i>/` and opens in TensorBoard's profile plugin / Perfetto.

XLA: torch_xla's profiler (`xp.start_trace`/`stop_trace`: host Python and TPU ops; XProf format).
CUDA/CPU: `torch.profiler` (CPU ops, plus CUDA kernels on GPUs; Chrome trace JSON).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Callable

from etils import epath


class TraceWindow:
    """start(dest) begins a trace; stop() ends it and copies it to dest. `begin(local_dir)` / `end()` are the
    backend's own profiler calls."""

    def __init__(self, begin: Callable[[str], None], end: Callable[[], None]):
        self._begin, self._end = begin, end
        self._local: str | None = None
        self._dest: str | None = None

    @property
    def active(self) -> bool:
        return self._local is not None

    def start(self, dest: str) -> None:
        if self.active:
            raise RuntimeError("a profile trace is already running; stop it first")
        self._local = tempfile.mkdtemp(prefix="rae_xla_trace_")
        self._dest = dest
        self._begin(self._local)

    def stop(self) -> str:
        """Ends the trace and returns where it was copied to."""
        if not self.active:
            raise RuntimeError("no profile trace is running")
        self._end()
        local, dest = self._local, self._dest
        self._local = self._dest = None
        copy_tree(local, dest)
        shutil.rmtree(local, ignore_errors=True)
        return dest


def copy_tree(local: str, dest: str) -> None:
    """Copies every file under `local` to the same relative path under `dest` (a local dir or gs:// URL)."""
    for root, _, files in os.walk(local):
        for name in files:
            src = os.path.join(root, name)
            target = epath.Path(dest) / os.path.relpath(src, local)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(open(src, "rb").read())
