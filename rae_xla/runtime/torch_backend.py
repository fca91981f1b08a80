"""Native PyTorch runtime: CUDA (NCCL) or CPU (gloo), one process per device under torchrun.

torch_xla 2.9 dropped CUDA (docs/xla_notes.md §0.2), so GPUs use plain torch: DDP for `param_sharding='replicate'`,
FSDP2 (`fully_shard`) for 'fsdp', optional `torch.compile`. Without torchrun this is a single eager process.
"""
from __future__ import annotations

import datetime
import os
from typing import Any, Callable, Iterable, Iterator, Mapping

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed import checkpoint as dcp
# The staging helpers of torch's own dcp.async_save: they understand FSDP2 DTensors (local shards only).
from torch.distributed._state_dict_utils import _copy_state_dict, _create_cpu_state_dict

from rae_xla.runtime import dcp_storage
from rae_xla.runtime.mesh import resolve_mesh
from rae_xla.runtime import state as state_lib
from rae_xla.runtime.base import Runtime, with_prepare
from rae_xla.runtime.remat import apply_remat


class TorchRuntime(Runtime):
    """`kind` is 'cuda' or 'cpu'; see `Runtime` for the contract of each method."""

    def __init__(self, cfg, kind: str):
        self.kind = kind
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if kind == "cuda" else "gloo", timeout=datetime.timedelta(minutes=30))
        self.process_index = dist.get_rank() if dist.is_initialized() else 0
        self.process_count = dist.get_world_size() if dist.is_initialized() else 1
        self.num_devices = self.process_count
        if kind == "cuda":
            local_rank = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local_rank)
            self.device = torch.device("cuda", local_rank)
            self.device_kind = torch.cuda.get_device_name(self.device)
            # The official trainer enables TF32 globally (docs/reference.md §6.1).
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        else:
            self.device = torch.device("cpu")
            self.device_kind = "cpu"
        self.mesh_shape = resolve_mesh(cfg.mesh, self.num_devices)
        self._cfg = cfg
        # Host-side agreement (SIGTERM, NaN, counters) over gloo on CPU tensors: on NCCL it would need a CUDA
        # tensor and an .item(), i.e. a device sync behind every queued kernel.
        self._host_group = None
        if self.distributed:
            self._host_group = dist.new_group(backend="gloo") if kind == "cuda" else dist.group.WORLD
        self._staging = None  # Host copy of the checkpoint state, allocated by the first save (of each layout).
        self._staging_layout = None

    @property
    def distributed(self) -> bool:
        return self.process_count > 1

    # --- Model placement -----------------------------------------------------------------------------------------

    def shard_model(self, model: nn.Module) -> nn.Module:
        if self._cfg.remat and any(p.requires_grad for p in model.parameters()):
            from torch.utils.checkpoint import checkpoint
            apply_remat(model, self._cfg.activation_sharding,
                        lambda fn, *args: checkpoint(fn, *args, use_reentrant=False))
        model.to(self.device)
        if not self.distributed:
            return model
        if self._cfg.param_sharding == "fsdp":
            return self._fully_shard(model)
        device_ids = [self.device.index] if self.kind == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=False)

    def place_frozen(self, model: nn.Module, *, like_trainable: bool = False) -> nn.Module:
        model.to(self.device)
        if like_trainable and self.distributed and self._cfg.param_sharding == "fsdp":
            return self._fully_shard(model)  # EMA shards match the model's DTensor shards.
        return model

    @staticmethod
    def _fully_shard(model: nn.Module) -> nn.Module:
        from torch.distributed.fsdp import fully_shard
        for child in model.modules():  # Shard each block first so that its all-gather overlaps the previous one.
            if isinstance(child, nn.ModuleList):
                for block in child:
                    fully_shard(block)
        return fully_shard(model)

    def gather_batch(self, tensor: torch.Tensor) -> torch.Tensor:
        if not self.distributed:
            return tensor.cpu()
        parts = [torch.empty_like(tensor) for _ in range(self.process_count)]
        dist.all_gather(parts, tensor.contiguous())  # Rank r holds rows [r*b, (r+1)*b) of the global batch.
        return torch.cat(parts).cpu()

    def unwrap(self, model: nn.Module) -> nn.Module:
        return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model

    def device_batches(self, host_batches: Iterable[Mapping[str, torch.Tensor]]) -> Iterator[dict]:
        pin = self.kind == "cuda"
        for batch in host_batches:
            yield {k: (v.pin_memory() if pin else v).to(self.device, non_blocking=pin) for k, v in batch.items()}

    # --- The step ------------------------------------------------------------------------------------------------

    def compile_step(self, fn: Callable, *, name: str, max_graphs: int | None = None, state=None,
                     prepare: tuple[Callable[[], None], ...] = ()) -> Callable:
        del state  # Eager (or torch.compile) steps run their Python every call: nothing to capture.
        step = torch.compile(fn, fullgraph=False, dynamic=False) if self._cfg.torch_compile else fn
        return with_prepare(step, prepare)

    def read_on_host(self, tensors: Mapping[str, torch.Tensor], callback: Callable[[dict], None]) -> None:
        # FSDP2's clip_grad_norm_ returns a replicated DTensor: take its (global) value.
        local = [t.full_tensor() if hasattr(t, "full_tensor") else t for t in tensors.values()]
        values = torch.stack([t.detach().float().reshape(()) for t in local])
        if self.distributed:
            dist.all_reduce(values)
            values /= self.process_count
        callback(dict(zip(tensors.keys(), values.tolist())))  # sync point: only at log intervals.

    # --- Synchronisation, randomness, diagnostics -------------------------------------------------------------------

    def barrier(self, tag: str) -> None:
        if self.distributed:
            dist.barrier()

    def wait(self) -> None:
        if self.kind == "cuda":
            torch.cuda.synchronize()

    def broadcast_int(self, value: int) -> int:
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.int64, device=self.device)
        dist.broadcast(t, src=0)
        return int(t.item())

    def sum_over_processes(self, values: list[int]) -> list[int]:
        if not self.distributed:
            return list(values)
        t = torch.tensor(values, dtype=torch.int64)
        dist.all_reduce(t, group=self._host_group)  # CPU tensor over gloo: no CUDA sync.
        return t.tolist()

    def seed(self, seed: int) -> None:
        seed = seed * self.process_count + self.process_index  # Distinct per rank, like the official trainer.
        if self.kind == "cuda":
            torch.cuda.manual_seed(seed)
        else:
            torch.manual_seed(seed)

    # --- Checkpoint storage ----------------------------------------------------------------------------------------

    def stage_state(self, state: dict[str, Any]) -> dict[str, Any]:
        live = state_lib.to_dcp(state, self.unwrap)
        # Host buffers (pinned on CUDA) are reused by every later save of the same layout; another job in the same
        # process (the quickstart runs stage 1, then stage 2) saves other tensors and gets its own.
        layout = _tensor_layout(live)
        if self._staging is None or layout != self._staging_layout:
            self._staging = _create_cpu_state_dict(live, pin_memory=self.kind == "cuda")
            self._staging_layout = layout
        staged = _copy_state_dict(live, self._staging, non_blocking=self.kind == "cuda")
        self.wait()  # The non-blocking copies must land before training changes the tensors.
        return staged

    def save_state(self, path: str, state: dict[str, Any], *, threads: int = 1, recorder=None,
                   process_group=None) -> None:
        dcp.save(state_lib.to_dcp(state, self.unwrap), process_group=process_group,
                 storage_writer=dcp_storage.writer_for(path, threads=threads, recorder=recorder))

    def load_state(self, path: str, state: dict[str, Any]) -> None:
        converted = state_lib.to_dcp(state, self.unwrap)
        dcp.load(converted, storage_reader=dcp_storage.reader_for(path))
        state_lib.from_dcp(state, converted, self.unwrap)

    def prime_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        prime_optimizer_with_zero_grads(optimizer)

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


def prime_optimizer_with_zero_grads(optimizer: torch.optim.Optimizer) -> None:
    """Runs one optimizer step on zero gradients so its state tensors exist (they are overwritten on load)."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.requires_grad and p.grad is None:
                p.grad = torch.zeros_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _tensor_layout(tree, path: tuple = ()) -> tuple:
    """(path, shape, dtype) of every tensor in a nested dict/list state, in order: equal layouts can share buffers."""
    if isinstance(tree, dict):
        return tuple(x for key, value in tree.items() for x in _tensor_layout(value, (*path, key)))
    if isinstance(tree, (list, tuple)):
        return tuple(x for i, value in enumerate(tree) for x in _tensor_layout(value, (*path, i)))
    if isinstance(tree, torch.Tensor):
        return ((path, tuple(tree.shape), tree.dtype),)
    return ()
