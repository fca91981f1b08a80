"""All backend-specific code lives in this package; nothing else in rae_xla imports torch_xla.

`make_runtime(config.runtime)` picks the backend once:
  auto -> 'xla' if PJRT_DEVICE is set or libtpu is installed (a TPU VM), 'cuda' if a GPU is visible, else 'cpu'.
"""
from __future__ import annotations

import importlib.util
import os

import torch

from rae_xla.runtime.base import Runtime


def detect_backend() -> str:
    """The backend 'auto' resolves to on this machine."""
    if os.environ.get("PJRT_DEVICE") or importlib.util.find_spec("libtpu") is not None:
        return "xla"
    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def make_runtime(runtime_cfg) -> Runtime:
    """Builds the Runtime for `runtime_cfg.backend` (see `rae_xla.config.runtime_block`)."""
    backend = detect_backend() if runtime_cfg.backend == "auto" else runtime_cfg.backend
    if backend == "xla":
        if importlib.util.find_spec("torch_xla") is None:
            raise RuntimeError("runtime.backend='xla' needs torch_xla: pip install -e '.[tpu]' (TPU VM) or "
                               "'torch_xla==2.9.0' (CPU); or set --config.runtime.backend=cpu")
        # torch_xla bakes the scalars 0 and 1 into graphs as special constants, so an LR that reaches exactly 0
        # (or AdamW's 1 - lr * wd reaching 1) would compile a new step graph; make every scalar a graph input.
        os.environ.setdefault("XLA_NO_SPECIAL_SCALARS", "1")
        from rae_xla.runtime.xla import XlaRuntime  # Deferred: importing torch_xla initialises PJRT.
        return XlaRuntime(runtime_cfg)
    if backend == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("runtime.backend='cuda' but no CUDA device is visible; use --config.runtime.backend=cpu")
    from rae_xla.runtime.torch_backend import TorchRuntime
    return TorchRuntime(runtime_cfg, backend)


__all__ = ["Runtime", "detect_backend", "make_runtime"]
