"""The devices a job will run on, found WITHOUT starting the accelerator runtime.

The preflight runs on one worker of a pod before the job starts on all of them; initialising PJRT there would
wait for the other hosts (multi-host TPU) or take the chips the job needs. So the device count comes from
what describes the machine: the TPU accelerator type (env or VM metadata, runtime/tpu_env.py) and the slice count
of a multi-slice job, `CPU_NUM_DEVICES` for XLA on a CPU, the torchrun world size or the visible GPUs. A user
sizing a pod they do not have yet names it: `--plan_for=v5p-64` (or `2xv5p-64`, `gpu:8`, `cpu:4`).
"""
from __future__ import annotations

import dataclasses
import os
import re

from rae_xla import errors
from rae_xla.runtime import detect_backend, on_tpu_vm, tpu_env

# TPU type suffixes count TensorCores on v4/v5p (2 per chip, one torch_xla device per chip: megacore) and chips
# on v5e/v6e. Chips per host: 4 on v4/v5p; v5e/v6e hosts hold up to 8 chips on single-host slices (-1, -4, -8)
# and 4 on multi-host ones.
_CORES_PER_CHIP = {"v4": 2, "v5p": 2, "v5e": 1, "v6e": 1}


@dataclasses.dataclass(frozen=True)
class DevicePlan:
    """backend: xla | cuda | cpu; num_devices over all slices; source: where the numbers came from."""
    backend: str
    accelerator: str  # 'v5p-64', 'cuda', 'cpu', 'xla-cpu'
    num_devices: int
    num_slices: int
    num_hosts: int
    source: str

    def describe(self) -> str:
        slices = f" in {self.num_slices} slices" if self.num_slices > 1 else ""
        return (f"{self.num_devices} x {self.accelerator} device(s){slices} on {self.num_hosts} host(s), backend "
                f"{self.backend} ({self.source})")


def tpu_chips_and_hosts(accelerator: str) -> tuple[int, int]:
    """'v5p-64' -> (32 chips, 8 hosts); 'v6e-8' -> (8, 1); 'v5litepod-16' -> (16, 4). Unknown -> InputPathError."""
    gen = tpu_env.generation(accelerator)
    match = re.search(r"-(\d+)$", accelerator.strip())
    if gen is None or match is None:
        raise errors.UserError(f"TPU type {accelerator!r} is not one of v4-N, v5p-N, v5litepod-N / v5e-N, v6e-N; "
                               "name the slice as gcloud does, e.g. --plan_for=v5p-64")
    chips = max(1, int(match.group(1)) // _CORES_PER_CHIP[gen])
    per_host = 4 if gen in ("v4", "v5p") or chips > 8 else chips
    return chips, max(1, chips // per_host)


def parse_plan_for(plan_for: str) -> DevicePlan:
    """`--plan_for`: 'v5p-64', '2xv5p-64' (2 slices), 'gpu:8' (torchrun, one GPU per process), 'cpu:4' (XLA on
    4 virtual CPU devices), 'cpu'."""
    text = plan_for.strip().lower()
    source = f"planned for --plan_for={plan_for}"
    match = re.fullmatch(r"(?:(\d+)x)?(v\w+-\d+)", text)
    if match:
        slices = int(match.group(1) or 1)
        chips, hosts = tpu_chips_and_hosts(match.group(2))
        return DevicePlan("xla", match.group(2), chips * slices, slices, hosts * slices, source)
    match = re.fullmatch(r"(gpu|cuda|cpu)(?::(\d+))?", text)
    if match:
        count = int(match.group(2) or 1)
        if match.group(1) == "cpu":
            return DevicePlan("xla" if match.group(2) else "cpu", "xla-cpu" if match.group(2) else "cpu", count, 1,
                              1, source)
        return DevicePlan("cuda", "cuda", count, 1, max(1, count // 8), source)
    raise errors.UserError(f"--plan_for={plan_for!r} is not a TPU slice (v5p-64, 2xv5p-64, v6e-256), gpu:N or cpu[:N]")


def detect(backend_setting: str) -> DevicePlan:
    """This machine's devices for `runtime.backend`, without initialising any runtime."""
    backend = detect_backend() if backend_setting == "auto" else backend_setting
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if backend == "xla" and on_tpu_vm():
        accelerator = tpu_env.accelerator_type()
        if not accelerator:
            return DevicePlan("xla", "tpu (type unknown)", 0, 1, 1, "this TPU VM; its type could not be read: pass "
                              "--plan_for=<type>")
        slices = int(os.environ.get("MEGASCALE_NUM_SLICES", "1"))
        chips, hosts = tpu_chips_and_hosts(accelerator)
        return DevicePlan("xla", accelerator, chips * slices, slices, hosts * slices, "this TPU VM's metadata")
    if backend == "xla":
        count = int(os.environ.get("CPU_NUM_DEVICES", "1"))
        return DevicePlan("xla", "xla-cpu", count, 1, 1, "CPU_NUM_DEVICES")
    if backend == "cuda":
        import torch
        count = world if "WORLD_SIZE" in os.environ else torch.cuda.device_count()
        return DevicePlan("cuda", "cuda", count, 1, int(os.environ.get("GROUP_WORLD_SIZE", "1")),
                          "WORLD_SIZE" if "WORLD_SIZE" in os.environ else "visible GPUs")
    return DevicePlan("cpu", "cpu", world, 1, 1, "WORLD_SIZE" if "WORLD_SIZE" in os.environ else "one process")
