"""What kind of TPU this is, and the libtpu flags that suit it. Importable without torch_xla.

libtpu reads `LIBTPU_INIT_ARGS` once, and `import torch_xla` already adds its own defaults to it on a TPU VM
(torch_xla/__init__.py `_setup_libtpu_flags`, set only when missing), so `apply_libtpu_flags` must run before
the first `import torch_xla`. The generation therefore comes from the environment or the VM metadata server,
not from torch_xla.

The accelerator type ('v5p-64', 'v6e-8', 'v5litepod-16', 'v4-32') is looked up in order:
  1. `$TPU_ACCELERATOR_TYPE` (set by GKE and by queued-resource launches, not on plain TPU VMs);
  2. torch_xla's TPU env helper (`torch_xla._internal.tpu.get_tpu_env()['ACCELERATOR_TYPE']`, the `tpu-env`
     metadata every TPU VM has), passed in by the XLA runtime once torch_xla is imported;
  3. the VM metadata attribute `accelerator-type`, read directly (a 2 s timeout; '' off GCE).
"""
from __future__ import annotations

import os
import re
import urllib.request
from typing import Callable, Mapping

_METADATA_URL = "http://metadata.google.internal/computeMetadata/v1/instance/attributes/accelerator-type"

# Flags torchprime and MaxText set for FSDP training on v5p/v6e (docs/xla_notes.md §1.2): collectives run as async
# fusions that the scheduler overlaps with compute, FSDP all-gathers are fused and started early, and the
# data-parallel gradient all-reduce (DCN between slices) is pipelined with the backward pass.
OVERLAP_FLAGS = (
    "--xla_tpu_enable_async_collective_fusion=true",
    "--xla_tpu_enable_async_collective_fusion_fuse_all_gather=true",
    "--xla_tpu_enable_async_collective_fusion_multiple_steps=true",
    "--xla_tpu_overlap_compute_collective_tc=true",
    "--xla_enable_async_all_gather=true",
    "--xla_tpu_enable_data_parallel_all_reduce_opt=true",
    "--xla_tpu_data_parallel_opt_different_sized_ops=true",
)
# Scoped VMEM per TensorCore in KiB: torchprime's dense-model value (96 MiB) fits v5p and v6e (128 MiB VMEM per
# core). v4 (32 MiB) and v5e keep libtpu's default: a limit above the physical size fails to compile.
SCOPED_VMEM_KIB = {"v5p": 98304, "v6e": 98304}
GENERATIONS = ("v4", "v5e", "v5p", "v6e")


def accelerator_type(environ: Mapping[str, str] | None = None,
                     tpu_env: Callable[[], Mapping[str, str]] | None = None,
                     metadata: Callable[[], str] | None = None) -> str:
    """The slice's accelerator type, e.g. 'v5p-64'; '' when nothing names one (not a TPU VM).

    Args (stand-ins for tests; defaults are the real sources):
      environ: the process environment.
      tpu_env: returns the `tpu-env` metadata as a dict (torch_xla's helper); None skips that source.
      metadata: returns the `accelerator-type` metadata attribute; None reads the metadata server.
    """
    environ = os.environ if environ is None else environ
    if environ.get("TPU_ACCELERATOR_TYPE"):
        return environ["TPU_ACCELERATOR_TYPE"]
    if tpu_env is not None:
        try:
            value = tpu_env().get("ACCELERATOR_TYPE") or ""
        except Exception:  # noqa: BLE001  Any metadata failure (HTTP, parse) means: try the next source.
            value = ""
        if value:
            return str(value)
    try:
        return (metadata or _read_metadata)().strip()
    except Exception:  # noqa: BLE001  Off GCE the metadata host does not resolve.
        return ""


def _read_metadata() -> str:
    request = urllib.request.Request(_METADATA_URL, headers={"Metadata-Flavor": "Google"})
    with urllib.request.urlopen(request, timeout=2) as response:
        return response.read().decode()


def generation(accelerator: str) -> str | None:
    """'v5p-64' -> 'v5p', 'v5litepod-16' -> 'v5e', 'v6e-8' -> 'v6e', 'v4-32' -> 'v4'; None if unknown."""
    kind = accelerator.strip().lower()
    for pattern, gen in ((r"^(tpu)?v6e|v6 ?lite", "v6e"), (r"^(tpu)?v5e|v5 ?lite", "v5e"),
                         (r"^(tpu)?v5p", "v5p"), (r"^(tpu)?v4", "v4")):
        if re.search(pattern, kind):
            return gen
    return None


def default_libtpu_flags(gen: str | None) -> tuple[str, ...]:
    """The flags 'auto' means for a generation: the overlap flags on v4-v6e (+ scoped VMEM on v5p/v6e)."""
    if gen not in GENERATIONS:
        return ()
    vmem = SCOPED_VMEM_KIB.get(gen)
    return OVERLAP_FLAGS + ((f"--xla_tpu_scoped_vmem_limit_kib={vmem}",) if vmem else ())


def resolve_libtpu_flags(setting: str, gen: str | None) -> tuple[str, ...]:
    """`runtime.libtpu_flags`: 'auto' -> the generation's defaults; 'none' or '' -> nothing; else the
    space-separated flags as written."""
    if setting == "auto":
        return default_libtpu_flags(gen)
    if setting in ("", "none"):
        return ()
    return tuple(setting.split())


def merge_flags(existing: str, ours: tuple[str, ...]) -> str:
    """`existing` (the user's LIBTPU_INIT_ARGS) plus each of `ours` whose flag name it does not set already:
    a flag exported by hand always wins over the config."""
    present = {flag.split("=", 1)[0] for flag in existing.split()}
    added = [flag for flag in ours if flag.split("=", 1)[0] not in present]
    return " ".join(existing.split() + added)


def apply_libtpu_flags(setting: str, environ: dict | None = None, accelerator: str | None = None) -> str:
    """Sets `LIBTPU_INIT_ARGS` for `runtime.libtpu_flags=setting`; returns the value. Call before torch_xla."""
    environ = os.environ if environ is None else environ
    accel = accelerator_type(environ) if accelerator is None else accelerator
    merged = merge_flags(environ.get("LIBTPU_INIT_ARGS", ""), resolve_libtpu_flags(setting, generation(accel)))
    if merged:
        environ["LIBTPU_INIT_ARGS"] = merged
    return merged
