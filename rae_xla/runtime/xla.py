"""torch_xla SPMD runtime: one process per host drives all of its chips as one program over a named mesh.

Initialisation order matters (XLA_NOTES §5): persistent cache -> `use_spmd()` (before any XLA tensor exists) ->
a gloo process group over `xla://` when there are several hosts (DCP needs it) -> the mesh.
"""
from __future__ import annotations

import itertools
import os
import re
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np
import torch
import torch.distributed as dist
import torch_xla
import torch_xla.core.xla_model as xm
import torch_xla.debug.metrics as met
import torch_xla.distributed.parallel_loader as pl
import torch_xla.distributed.spmd as xs
import torch_xla.distributed.xla_backend  # noqa: F401  Registers the xla:// process-group init method.
import torch_xla.runtime as xr
from torch import nn
from torch.distributed import checkpoint as dcp
from torch_xla.experimental import distributed_checkpoint as xc

from rae_xla.config import resolve_mesh
from rae_xla.runtime import dcp_storage, sharding
from rae_xla.runtime import state as state_lib
from rae_xla.runtime.base import Runtime
from rae_xla.runtime.xla_planner import DedupSPMDSavePlanner


class XlaRuntime(Runtime):
    """SPMD over `xs.Mesh(('data', 'fsdp'))`; see `Runtime` for the contract of each method."""

    kind = "xla"

    def __init__(self, cfg):
        if cfg.compile_cache_dir:
            xr.initialize_cache(cfg.compile_cache_dir, readonly=False)
        xr.use_spmd()
        self.device = torch_xla.device()
        # Under SPMD `xla:0` is a virtual device with no kind; TPU VMs name their slice in the environment
        # (e.g. 'v5p-64', 'v6e-8', 'v5litepod-16'), which is what the MFU peak table needs.
        accelerator = os.environ.get("TPU_ACCELERATOR_TYPE", "")
        self.device_kind = f"TPU {accelerator}" if accelerator else xr.device_type()
        self.num_devices = xr.global_runtime_device_count()
        self.process_index = xr.process_index()
        self.process_count = xr.process_count()
        self.mesh_shape = resolve_mesh(cfg.mesh, self.num_devices)
        self.mesh = xs.Mesh(np.arange(self.num_devices), (self.mesh_shape["data"], self.mesh_shape["fsdp"]),
                            ("data", "fsdp"))
        xs.set_global_mesh(self.mesh)
        if self.process_count > 1 and not dist.is_initialized():
            dist.init_process_group("gloo", init_method="xla://")
        self._cfg = cfg
        self._hooks = []

    # --- Model placement -----------------------------------------------------------------------------------------

    def shard_model(self, model: nn.Module) -> nn.Module:
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
        return self.shard_model(model)  # Under SPMD the frozen encoder is FSDP-sharded too: it only saves memory.

    def _pin_activations(self, model: nn.Module) -> None:
        """Constrains outputs of the modules matching `activation_sharding` to the batch sharding."""
        if not self._cfg.activation_sharding:
            return
        pattern = re.compile(self._cfg.activation_sharding)

        def hook(module, inputs, output):
            if isinstance(output, torch.Tensor) and output.ndim >= 1:
                # mark_sharding returns an XLAShardedTensor; a forward hook must return None so the module's own
                # output (now annotated in place) is kept (XLA_NOTES §6.1).
                xs.mark_sharding(output, self.mesh, sharding.batch_spec(output.ndim))

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

    def compile_step(self, fn: Callable, *, name: str, max_graphs: int | None = None) -> Callable:
        strict = self._cfg.strict
        return torch_xla.compile(fn, full_graph=True, name=name,
                                 max_different_graphs=max_graphs if strict else None)

    def read_on_host(self, tensors: Mapping[str, torch.Tensor], callback: Callable[[dict], None]) -> None:
        def closure(values):
            callback({k: float(v.detach().float().cpu()) for k, v in values.items()})  # After execution: no stall.

        xm.add_step_closure(closure, args=(dict(tensors),), run_async=True)

    @property
    def autocast_device_type(self) -> str:
        return "xla"

    # --- Synchronisation, randomness, diagnostics -------------------------------------------------------------------

    def barrier(self, tag: str) -> None:
        if self.process_count > 1:
            xm.rendezvous(tag)

    def wait(self) -> None:
        torch_xla.sync()
        xm.wait_device_ops()

    def broadcast_int(self, value: int) -> int:
        if self.process_count == 1:
            return value
        t = torch.tensor([value], dtype=torch.int64)
        dist.broadcast(t, src=0)  # gloo group over xla://, host tensors.
        return int(t.item())

    def any_process(self, flag: bool) -> bool:
        if self.process_count == 1:
            return flag
        t = torch.tensor([int(flag)], dtype=torch.int64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)  # gloo group over xla://, host tensors.
        return bool(t.item())

    def seed(self, seed: int) -> None:
        xm.set_rng_state(seed, device=self.device)

    def compile_stats(self) -> dict[str, Any]:
        compile_time = met.metric_data("CompileTime")
        return {
            "graphs": met.counter_value("UncachedCompile") or 0,
            "cached_graphs": met.counter_value("CachedCompile") or 0,
            "compile_seconds": (compile_time[1] / 1e9) if compile_time else 0.0,
            "cpu_fallbacks": list(met.executed_fallback_ops()),
        }

    # --- Checkpoint storage ----------------------------------------------------------------------------------------

    def save_state(self, path: str, state: dict[str, Any]) -> None:
        torch_xla.sync()
        dcp.save(state_lib.to_dcp(state, self.unwrap), storage_writer=dcp_storage.writer_for(path),
                 planner=DedupSPMDSavePlanner())

    def load_state(self, path: str, state: dict[str, Any]) -> None:
        converted = state_lib.to_dcp(state, self.unwrap)
        dcp.load(converted, storage_reader=dcp_storage.reader_for(path), planner=xc.SPMDLoadPlanner())
        state_lib.from_dcp(state, converted, self.unwrap)

    def prime_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        xc.prime_optimizer(optimizer)

    def close(self) -> None:
        for handle in self._hooks:
            handle.remove()
        if dist.is_initialized():
            dist.destroy_process_group()
