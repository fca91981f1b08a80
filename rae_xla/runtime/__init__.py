"""All backend-specific code lives in this package; nothing else in rae_xla imports torch_xla.

`make_runtime(config.runtime)` picks the backend once:
  auto -> 'xla' if PJRT_DEVICE is set or libtpu is installed (a TPU VM), 'cuda' if a GPU is visible, else 'cpu'.
"""
from __future__ import annotations

import importlib.util
import os

import torch

from rae_xla.runtime import tpu_env
from rae_xla.runtime.base import Runtime


def detect_backend() -> str:
    """The backend 'auto' resolves to on this machine."""
    if os.environ.get("PJRT_DEVICE") or importlib.util.find_spec("libtpu") is not None:
        return "xla"
    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def on_tpu_vm(environ=None) -> bool:
    """PJRT_DEVICE=TPU, or unset on a machine with libtpu (torch_xla then picks the TPU)."""
    environ = os.environ if environ is None else environ
    device = environ.get("PJRT_DEVICE", "")
    return device == "TPU" or (not device and importlib.util.find_spec("libtpu") is not None)


def resolve_compile_cache_dir(setting: str, on_tpu: bool) -> str:
    """`runtime.compile_cache_dir`: 'auto' -> a local per-host dir on TPU ('' elsewhere: CPU PJRT writes entries
    it cannot load back, docs/xla_notes.md §6.1); '' -> off; a path -> that path (keep it local to each host)."""
    if setting != "auto":
        return os.path.expanduser(setting)
    if not on_tpu:
        return ""
    return os.path.join(os.path.expanduser("~"), ".cache", "rae_xla", "xla_cache")


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
        on_tpu = on_tpu_vm()
        if on_tpu:
            # Before the first `import torch_xla`: libtpu reads LIBTPU_INIT_ARGS once (runtime/tpu_env.py).
            tpu_env.apply_libtpu_flags(runtime_cfg.libtpu_flags)
        from rae_xla.runtime.xla import XlaRuntime  # Deferred: importing torch_xla initialises PJRT.
        return XlaRuntime(runtime_cfg, compile_cache_dir=resolve_compile_cache_dir(runtime_cfg.compile_cache_dir,
                                                                                   on_tpu))
    if backend == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("runtime.backend='cuda' but no CUDA device is visible; use --config.runtime.backend=cpu")
    from rae_xla.runtime.torch_backend import TorchRuntime
    return TorchRuntime(runtime_cfg, backend)


__all__ = ["Runtime", "detect_backend", "make_runtime", "on_tpu_vm", "resolve_compile_cache_dir"]
