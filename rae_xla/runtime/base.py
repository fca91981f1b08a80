"""The `Runtime` interface: everything the trainers need from a backend, and nothing more.

Two implementations: `xla.XlaRuntime` (torch_xla SPMD, one process per TPU host driving all its chips) and
`torch_backend.TorchRuntime` (native PyTorch on CUDA with NCCL, or CPU with gloo; DDP or FSDP2 under torchrun).
Model code stays single-device; trainers call these methods at the few places where devices matter.
"""
from __future__ import annotations

import abc
import contextlib
import os
from typing import Any, Callable, Iterable, Iterator, Mapping

import torch
from torch import nn

# The values `config.runtime` may name (`rae_xla.config` validates against these).
BACKENDS = ("auto", "xla", "cuda", "cpu")  # 'auto': rae_xla.runtime.detect_backend picks one of the others.
PRECISIONS = ("fp32", "bf16")  # fp32, or bf16 autocast around the forward (master weights stay fp32).
RNG_SOURCES = ("device", "host")  # Where training draws noise, times and label drops.


class Runtime(abc.ABC):
    """One backend. Attributes are fixed after construction.

    Attributes:
      kind: 'xla' | 'cuda' | 'cpu'.
      device: where tensors live (`xla:0` under SPMD, `cuda:<local rank>`, `cpu`).
      process_index, process_count: this host (XLA) or rank (torchrun) and how many there are. Data loading
        splits each global batch over processes.
      num_devices: devices that share the global batch (the XLA mesh size, or the torchrun world size).
      mesh_shape: {'data': d, 'fsdp': f} with d*f == num_devices.
    """

    kind: str
    device: torch.device
    process_index: int
    process_count: int
    num_devices: int
    mesh_shape: dict[str, int]
    device_kind: str  # e.g. 'TPU v5p', 'NVIDIA H100 80GB HBM3', 'cpu': picks the peak FLOP/s for MFU.

    @property
    def is_main(self) -> bool:
        """Process 0 writes config, metrics and checkpoint markers."""
        return self.process_index == 0

    def per_process_batch(self, global_batch: int) -> int:
        """Rows of each global batch that this process loads."""
        if global_batch % self.process_count:
            raise ValueError(f"global batch {global_batch} is not divisible by {self.process_count} processes")
        return global_batch // self.process_count

    # --- Model placement -----------------------------------------------------------------------------------------

    @abc.abstractmethod
    def shard_model(self, model: nn.Module) -> nn.Module:
        """Moves `model` to the device and shards it (XLA: mark_sharding per rule; torch: DDP/FSDP2 when
        distributed). Returns the module the step should call (possibly a wrapper)."""

    @abc.abstractmethod
    def place_frozen(self, model: nn.Module, *, like_trainable: bool = False) -> nn.Module:
        """Moves a frozen module to the device without a gradient-synchronising wrapper. `like_trainable=True`
        (the EMA copy) lays its parameters out exactly like `shard_model` does, so element-wise updates between the
        two need no communication; otherwise (the encoder) the default layout of the backend is used."""

    def zeros_like_param(self, param: torch.Tensor) -> torch.Tensor:
        """Zeros shaped and laid out like the placed parameter `param` (optimizer state made before the first
        step). Here `torch.zeros_like`, which keeps an FSDP2 DTensor's placement; XLA overrides it."""
        return torch.zeros_like(param)

    def pin_replicated(self, tensors: Iterable[torch.Tensor]) -> None:
        """Keeps placed `tensors` whole on every device (XLA: an explicit replicated sharding; nothing elsewhere).
        For small state a step updates in place (spectral-norm u, v): unannotated under XLA, it comes back from the
        step's first graph with the layout the compiler propagated onto it, and the next call compiles another
        graph (tests/losses/stage1_xla_check.py)."""
        del tensors

    @abc.abstractmethod
    def device_batches(self, host_batches: Iterable[Mapping[str, torch.Tensor]]) -> Iterator[dict]:
        """Turns this process's slices of global batches (host tensors, batch dim first) into device batches,
        globally sharded over the mesh on XLA."""

    def to_host(self, tensor: torch.Tensor) -> torch.Tensor:
        """A full host copy of a device tensor (sync point). On a multi-host mesh the tensor is first
        replicated, since no host can read another host's shards."""
        return tensor.cpu()

    def gather_batch(self, tensor: torch.Tensor) -> torch.Tensor:
        """The whole global batch of a device tensor whose dim 0 is split over the processes (the rows each
        process fed through `device_batches`), on the host of every process, in global row order (sync point).
        SPMD tensors already span the global batch; torchrun ranks all-gather their rows."""
        return self.to_host(tensor)

    def unwrap(self, model: nn.Module) -> nn.Module:
        """The plain module inside a DDP wrapper (identity elsewhere): use it for state dicts and EMA."""
        return model

    # --- The step ------------------------------------------------------------------------------------------------

    @abc.abstractmethod
    def compile_step(self, fn: Callable, *, name: str, max_graphs: int | None = None,
                     state: Callable[[], list[torch.Tensor]] | None = None,
                     prepare: tuple[Callable[[], None], ...] = ()) -> Callable:
        """Wraps a step function: XLA traces it into one graph per input signature (strict mode raises on a host
        sync inside it, or on more than `max_graphs` graphs); torch optionally uses torch.compile.

        state: the tensors the step reads or updates besides its arguments. Given (and runtime.capture_step), XLA
          traces the step twice and then replays the compiled graph without Python (runtime/xla_capture.py).
        prepare: host callables run before every call (per-step scalars into device tensors of `state`).
        """

    def replace_data(self, target: torch.Tensor, value: torch.Tensor) -> None:
        """target's value becomes `value` outside any traced step (XLA: the device buffer is swapped, no graph)."""
        with torch.no_grad():
            target.copy_(value)

    @abc.abstractmethod
    def read_on_host(self, tensors: Mapping[str, torch.Tensor], callback: Callable[[dict], None]) -> None:
        """Calls `callback({name: float})` once `tensors` are computed, without stalling the step loop on XLA
        (a step closure). Values are already global means (SPMD) or averaged over ranks (torchrun)."""

    def autocast(self, precision: str):
        """Context for the forward pass: bf16 autocast when precision == 'bf16'."""
        if precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.autocast_device_type, dtype=torch.bfloat16)

    @property
    def autocast_device_type(self) -> str:
        return self.kind

    # --- Synchronisation, randomness, diagnostics -------------------------------------------------------------------

    @abc.abstractmethod
    def barrier(self, tag: str) -> None:
        """Blocks until every process reaches the same tag (a no-op with one process)."""

    @abc.abstractmethod
    def wait(self) -> None:
        """Blocks until queued device work is finished (use before timing)."""

    def broadcast_int(self, value: int) -> int:
        """Process 0's `value` on every process (single process: `value`)."""
        return value

    def any_process(self, flag: bool) -> bool:
        """True on every process if `flag` is True on any (a host collective; no device sync)."""
        return self.sum_over_processes([int(flag)])[0] > 0

    def sum_over_processes(self, values: list[int]) -> list[int]:
        """Element-wise sums of host integers over all processes, in one host collective (gloo; never a
        device tensor, so no device sync). Use it to agree on flags (SIGTERM, a NaN) and to total per-host
        counters in a single round trip."""
        return list(values)

    @abc.abstractmethod
    def seed(self, seed: int) -> None:
        """Seeds the device random generator for draws over this process's rows of the global batch
        (XLA: the one global program; torchrun: each rank gets its own stream, as the official
        `global_seed * world_size + rank`, so ranks never share noise)."""

    def compile_stats(self) -> dict[str, Any]:
        """Compile counters: XLA {'graphs', 'compile_seconds'}; empty elsewhere."""
        return {}

    def compile_stats_scalars(self) -> dict[str, float]:
        """The compile counters worth logging with the metrics (host counters, no device sync)."""
        stats = self.compile_stats()
        names = {"graphs": "compiled_graphs", "cache_hits": "compile_cache_hits", "cache_misses": "compile_cache_misses"}
        return {name: float(stats[key]) for key, name in names.items() if key in stats}

    def start_trace(self, dest: str) -> None:
        """Starts a profiler trace that `stop_trace` copies to `dest` (local dir or gs://); see profiling.py."""
        self._trace_window().start(dest)

    @property
    def trace_active(self) -> bool:
        """True between start_trace and stop_trace."""
        return getattr(self, "_trace", None) is not None and self._trace.active

    def stop_trace(self) -> str:
        """Waits for queued device work, ends the trace, copies it; returns where it went."""
        self.wait()
        return self._trace_window().stop()

    def _trace_window(self):
        if getattr(self, "_trace", None) is None:
            from rae_xla.runtime.profiling import TraceWindow
            self._trace = TraceWindow(*self._profiler_calls())
        return self._trace

    def _profiler_calls(self):
        """(begin(local_dir), end()) of torch.profiler; the XLA runtime uses torch_xla's profiler instead."""
        activities = [torch.profiler.ProfilerActivity.CPU]
        if self.kind == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        state = {}

        def begin(local_dir: str) -> None:
            state["dir"] = local_dir
            state["profiler"] = torch.profiler.profile(activities=activities, record_shapes=False)
            state["profiler"].start()

        def end() -> None:
            state["profiler"].stop()
            state["profiler"].export_chrome_trace(
                os.path.join(state["dir"], f"trace_process{self.process_index}.json"))

        return begin, end

    # --- Checkpoint storage (rae_xla/checkpoint/manager.py adds steps, atomicity and retention) ------------------

    @abc.abstractmethod
    def stage_state(self, state: dict[str, Any]) -> dict[str, Any]:
        """A host-memory copy of this process's shards of `state` (the blocking part of an asynchronous save);
        training may change `state` afterwards. Pass the result to `save_state` (from any thread)."""

    @abc.abstractmethod
    def save_state(self, path: str, state: dict[str, Any], *, threads: int = 1, recorder=None,
                   process_group=None) -> None:
        """Writes a (sharded) state dict, live or staged, with torch.distributed.checkpoint into directory `path`
        (local or gs://); every process writes its own shards into `threads` files in parallel. `recorder` (an
        integrity.FileRecorder) records each file's size and CRC-32; `process_group` (gloo) carries DCP's
        collectives, so that a save in a background thread never shares a group with the training loop."""

    @abc.abstractmethod
    def load_state(self, path: str, state: dict[str, Any]) -> None:
        """Loads `path` into `state` in place, resharding to the current mesh/world. Optimizer entries of `state`
        must already hold their tensors (see `prime_optimizer`)."""

    @abc.abstractmethod
    def prime_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Creates the optimizer's state tensors (zero) so that `load_state` can fill them in place."""

    def close(self) -> None:
        """Releases process groups."""


def with_prepare(step: Callable, prepare: tuple[Callable[[], None], ...]) -> Callable:
    """`step` with the host `prepare` hooks run before each call (see `Runtime.compile_step`)."""
    if not prepare:
        return step

    def call(*args):
        for hook in prepare:
            hook()
        return step(*args)
    return call
