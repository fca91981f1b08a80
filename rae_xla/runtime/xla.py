"""torch_xla SPMD runtime: one process per host drives all of its chips as one program over a named mesh.

Initialisation order matters (docs/xla_notes.md §5): libtpu flags (set by `make_runtime` before torch_xla is imported)
-> persistent cache -> `use_spmd()` (before any XLA tensor exists) -> a gloo process group over `xla://` when
there are several hosts (DCP and host collectives need it) -> the mesh (HybridMesh across slices).
"""
from __future__ import annotations

import itertools
import os
import re
from typing import Any, Callable, Iterable, Iterator, Mapping

import torch
import torch.distributed as dist
import torch_xla
import torch_xla.core.xla_model as xm
import torch_xla.debug.metrics as met
import torch_xla.distributed.parallel_loader as pl
import torch_xla.distributed.spmd as xs
import torch_xla.distributed.xla_backend  # noqa: F401  Registers the xla:// process-group init method.
import torch_xla.runtime as xr
from absl import logging
from torch import nn
from torch.distributed import checkpoint as dcp
from torch_xla.experimental import distributed_checkpoint as xc
from torch_xla.experimental.distributed_checkpoint import _helpers as xc_helpers

from rae_xla.runtime import dcp_storage, sharding, tpu_env, xla_capture
from rae_xla.runtime import mesh as mesh_lib
from rae_xla.runtime.remat import apply_remat
from rae_xla.runtime import state as state_lib
from rae_xla.runtime.base import Runtime, with_prepare
from rae_xla.runtime.xla_planner import DedupSPMDSavePlanner


class XlaRuntime(Runtime):
    """SPMD over `xs.Mesh(('data', 'fsdp'))`; see `Runtime` for the contract of each method."""

    kind = "xla"

    def __init__(self, cfg, compile_cache_dir: str = ""):
        """compile_cache_dir: the resolved `runtime.compile_cache_dir` ('' = no persistent cache)."""
        self.compile_cache_dir = compile_cache_dir
        if compile_cache_dir:
            os.makedirs(compile_cache_dir, exist_ok=True)
            xr.initialize_cache(compile_cache_dir, readonly=False)  # Must precede the first compile.
        xr.use_spmd()
        self.device = torch_xla.device()
        # Under SPMD `xla:0` is a virtual device with no kind; the slice's accelerator type ('v5p-64', 'v6e-8',
        # 'v5litepod-16') picks the MFU peak. Plain TPU VMs do not set $TPU_ACCELERATOR_TYPE, so the TPU env
        # metadata (torch_xla's helper) is the second source.
        on_tpu = xr.device_type() == "TPU"
        accelerator = tpu_env.accelerator_type(tpu_env=_torch_xla_tpu_env) if on_tpu else ""
        self.device_kind = f"TPU {accelerator}" if accelerator else xr.device_type()
        self.num_devices = xr.global_runtime_device_count()
        self.process_index = xr.process_index()
        self.process_count = xr.process_count()
        self.num_slices = mesh_lib.slice_count(xr.global_runtime_device_attributes())
        ici, dcn = mesh_lib.resolve_slice_mesh(cfg.mesh, self.num_devices, self.num_slices)
        self.mesh_shape = {axis: ici[axis] * dcn[axis] for axis in ici}
        self.mesh = mesh_lib.build_mesh(ici, dcn)
        xs.set_global_mesh(self.mesh)
        if self.process_count > 1 and not dist.is_initialized():
            dist.init_process_group("gloo", init_method="xla://")
        self._cfg = cfg
        self._hooks = []
        logging.info("XLA SPMD: %d devices on %d host(s) in %d slice(s), mesh %s (ICI %s x DCN %s), %s, compile "
                     "cache %s, LIBTPU_INIT_ARGS=%r", self.num_devices, self.process_count, self.num_slices,
                     self.mesh_shape, ici, dcn, self.device_kind, compile_cache_dir or "off",
                     os.environ.get("LIBTPU_INIT_ARGS", ""))

    # --- Model placement -----------------------------------------------------------------------------------------

    def shard_model(self, model: nn.Module) -> nn.Module:
        if self._cfg.remat and any(p.requires_grad for p in model.parameters()):
            # torch_xla's checkpoint: re-entrant only (docs/xla_notes.md §6.1); it keeps the recompute out of CSE.
            from torch_xla.utils.checkpoint import checkpoint
            apply_remat(model, self._cfg.activation_sharding,
                        lambda fn, *args: checkpoint(fn, *args, use_reentrant=True))
        model.to(self.device)
        plan = sharding.plan_param_sharding(
            ((n, p.shape) for n, p in model.named_parameters()), strategy=self._cfg.param_sharding,
            rules=self._cfg.sharding_rules, mesh_shape=self.mesh_shape)
        for name, param in model.named_parameters():
            spec = plan[name]
            if any(axis is not None for axis in spec):
                xs.mark_sharding(param, self.mesh, spec)
        self._pin_activations(model)
        return model

    def place_frozen(self, model: nn.Module, *, like_trainable: bool = False) -> nn.Module:
        if like_trainable or self._cfg.encoder_sharding == "fsdp":
            return self.shard_model(model)  # FSDP-sharded like the model: saves memory, adds all-gathers.
        return model.to(self.device)  # 'replicate': a full copy on every chip, no collectives in its forward.

    def zeros_like_param(self, param: torch.Tensor) -> torch.Tensor:
        # A zeros_like made outside the step carries no sharding: the step's entry sync materialises it
        # replicated, and in-place updates keep it so (measured: AdamW moments of an fsdp=4-sharded weight held
        # whole on every device). Give it the parameter's sharding, as torch_xla's prime_optimizer does for grads.
        zeros = torch.zeros_like(param)
        spec = torch_xla._XLAC._get_xla_op_sharding(param)
        if spec:
            torch_xla._XLAC._xla_mark_sharding(zeros, spec)
        return zeros

    def pin_replicated(self, tensors: Iterable[torch.Tensor]) -> None:
        for tensor in tensors:
            xs.mark_sharding(tensor, self.mesh, (None,) * tensor.ndim)

    def _pin_activations(self, model: nn.Module) -> None:
        """Constrains outputs of the modules matching `activation_sharding` to the batch sharding."""
        if not self._cfg.activation_sharding:
            return
        pattern = re.compile(self._cfg.activation_sharding)

        def hook(module, inputs, output):
            if isinstance(output, torch.Tensor) and output.ndim >= 1:
                # The gradient of the block output gets the same batch sharding in the backward pass, so GSPMD
                # does not pick another layout there and insert extra collectives. It returns a plain tensor
                # (unlike mark_sharding's XLAShardedTensor, which must never replace a module output).
                return xs.mark_sharding_with_gradients(output, self.mesh, sharding.batch_spec(output.ndim))
            return None

        for name, module in model.named_modules():
            if name and pattern.search(name):
                self._hooks.append(module.register_forward_hook(hook))

    def device_batches(self, host_batches: Iterable[Mapping[str, torch.Tensor]]) -> Iterator[dict]:
        iterator = iter(host_batches)
        first = next(iterator)
        # minibatch=True: each host supplies only its rows; the batch is sharded over all mesh axes.
        specs = {k: xs.ShardingSpec(self.mesh, sharding.batch_spec(v.ndim), minibatch=True) for k, v in first.items()}
        return iter(pl.MpDeviceLoader(itertools.chain([first], iterator), self.device, input_sharding=specs))

    def to_host(self, tensor: torch.Tensor) -> torch.Tensor:
        xs.mark_sharding(tensor, self.mesh, (None,) * tensor.ndim)  # Replicated: every host holds all of it.
        return tensor.cpu()

    def gather_batch(self, tensor: torch.Tensor) -> torch.Tensor:
        # A batch-sharded tensor that holds device data (a loader batch, a compiled step's output) keeps its
        # sharding annotation, and re-annotating it as replicated fails ("Existing annotation must be cleared
        # first"); a trivial op makes a fresh IR tensor that can be replicated (one small cached graph per shape).
        fresh = tensor.to(torch.uint8) + 0 if tensor.dtype == torch.bool else tensor + 0
        return self.to_host(fresh).to(tensor.dtype)

    # --- The step ------------------------------------------------------------------------------------------------

    def compile_step(self, fn: Callable, *, name: str, max_graphs: int | None = None, state=None,
                     prepare: tuple[Callable[[], None], ...] = ()) -> Callable:
        strict = self._cfg.strict
        if state is not None and self._cfg.capture_step:
            # Traced twice, then replayed: no Python trace per step (issue 10; runtime/xla_capture.py).
            return xla_capture.CapturedStep(fn, state=state, name=name, prepare=prepare, device=self.device,
                                            strict=strict)
        compiled = torch_xla.compile(fn, full_graph=True, name=name,
                                     max_different_graphs=max_graphs if strict else None)
        return with_prepare(compiled, prepare)

    def replace_data(self, target: torch.Tensor, value: torch.Tensor) -> None:
        xla_capture.replace_data(target, value.to(self.device))

    def read_on_host(self, tensors: Mapping[str, torch.Tensor], callback: Callable[[dict], None]) -> None:
        def closure(values):
            callback({k: float(v.detach().float().cpu()) for k, v in values.items()})  # After execution: no stall.

        xm.add_step_closure(closure, args=(dict(tensors),), run_async=True)

    @property
    def autocast_device_type(self) -> str:
        return "xla"

    # --- Synchronisation, randomness, diagnostics -------------------------------------------------------------------

    def barrier(self, tag: str) -> None:
        # Not xm.rendezvous: under SPMD xr.world_size() is 1, so it returns at once on every host
        # (pytorch/xla#9479). The gloo group over xla:// spans the hosts.
        if self.process_count > 1:
            dist.barrier()

    def wait(self) -> None:
        torch_xla.sync()
        xm.wait_device_ops()

    def broadcast_int(self, value: int) -> int:
        if self.process_count == 1:
            return value
        t = torch.tensor([value], dtype=torch.int64)
        dist.broadcast(t, src=0)  # gloo group over xla://, host tensors.
        return int(t.item())

    def sum_over_processes(self, values: list[int]) -> list[int]:
        if self.process_count == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.int64)
        dist.all_reduce(t)  # gloo group over xla://, host tensors: no device sync.
        return t.tolist()

    def seed(self, seed: int) -> None:
        xm.set_rng_state(seed, device=self.device)

    def compile_stats(self) -> dict[str, Any]:
        compile_time = met.metric_data("CompileTime")
        return {
            "graphs": met.counter_value("UncachedCompile") or 0,
            "cached_graphs": met.counter_value("CachedCompile") or 0,
            # Persistent cache (runtime.compile_cache_dir): graphs loaded from disk vs compiled and written.
            "cache_hits": met.counter_value("PersistentCacheHit") or 0,
            "cache_misses": met.counter_value("PersistentCacheMiss") or 0,
            "compile_seconds": (compile_time[1] / 1e9) if compile_time else 0.0,
            "cpu_fallbacks": list(met.executed_fallback_ops()),
        }

    # --- Checkpoint storage ----------------------------------------------------------------------------------------

    def stage_state(self, state: dict[str, Any]) -> dict[str, Any]:
        torch_xla.sync()
        # Every local shard to host memory as `_CpuShards`, which the SPMD save planner writes like the device
        # shards (torch_xla's own CheckpointManager stages the same way).
        return xc_helpers._sharded_cpu_state_dict(state_lib.to_dcp(state, self.unwrap))

    def save_state(self, path: str, state: dict[str, Any], *, threads: int = 1, recorder=None,
                   process_group=None) -> None:
        if any(isinstance(v, torch.nn.Module) for v in state.values()):  # Live state: pending updates first.
            torch_xla.sync()
        dcp.save(state_lib.to_dcp(state, self.unwrap), process_group=process_group,
                 storage_writer=dcp_storage.writer_for(path, threads=threads, recorder=recorder),
                 planner=DedupSPMDSavePlanner())

    def load_state(self, path: str, state: dict[str, Any]) -> None:
        converted = state_lib.to_dcp(state, self.unwrap)
        dcp.load(converted, storage_reader=dcp_storage.reader_for(path), planner=xc.SPMDLoadPlanner())
        state_lib.from_dcp(state, converted, self.unwrap)

    def prime_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        xc.prime_optimizer(optimizer)

    def _profiler_calls(self):
        import torch_xla.debug.profiler as xp
        return xp.start_trace, xp.stop_trace

    def close(self) -> None:
        for handle in self._hooks:
            handle.remove()
        if dist.is_initialized():
            dist.destroy_process_group()


def _torch_xla_tpu_env() -> dict:
    """The `tpu-env` metadata of this TPU VM (ACCELERATOR_TYPE, WORKER_ID, ...), via torch_xla's helper."""
    from torch_xla._internal import tpu
    return tpu.get_tpu_env()
