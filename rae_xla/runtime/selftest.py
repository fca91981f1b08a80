"""End-to-end check of a backend with a tiny transformer: train steps, compile counts, checkpoint round trip.

Used by the runtime tests, by `benchmarks/runtime_toy.py`, and by users on a new machine:

  python -m rae_xla.runtime.selftest --backend=cpu
  PJRT_DEVICE=CPU CPU_NUM_DEVICES=4 python -m rae_xla.runtime.selftest --backend=xla --mesh=2,2
  PJRT_DEVICE=TPU python -m rae_xla.runtime.selftest --backend=xla      # on a TPU VM
  torchrun --nproc_per_node=2 -m rae_xla.runtime.selftest --backend=cpu

The step (forward, MSE loss, backward, grad-norm clipping, AdamW with a per-step LR, EMA) is the shape of the
real trainers' step, so a backend that passes here runs them the same way.
"""
from __future__ import annotations

import json
import math
import sys
import time

import ml_collections
import torch
import torch.nn.functional as F
from absl import app, flags
from torch import nn

from rae_xla import config as config_lib
from rae_xla.checkpoint.manager import CheckpointManager
from rae_xla.runtime import make_runtime


class _Block(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.fc1, self.fc2 = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

    def forward(self, x):  # (B, T, D)
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        x = x + self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class TinyTransformer(nn.Module):
    """(B, T, in_dim) -> (B, T, in_dim); module names `blocks.<i>` as in the real models."""

    def __init__(self, in_dim: int = 16, width: int = 32, depth: int = 2, heads: int = 4):
        super().__init__()
        self.embed = nn.Linear(in_dim, width)
        self.blocks = nn.ModuleList(_Block(width, heads) for _ in range(depth))
        self.head = nn.Linear(width, in_dim)

    def forward(self, x):
        x = self.embed(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def toy_batch(step: int, batch: int, rows: slice, tokens: int = 8, dim: int = 16) -> dict[str, torch.Tensor]:
    """Rows `rows` of the global batch for `step`: a pure function of (step, row), whatever the process count."""
    g = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(batch, tokens, dim, generator=g)
    return {"x": x[rows], "y": torch.roll(x, 1, dims=1)[rows] * 0.5}


def toy_lr(step: int) -> float:
    return 1e-3 * (0.5 + 0.5 * math.cos(step / 10))  # Changes every step: must not recompile.


def run_selftest(runtime, *, steps: int, batch: int, checkpoint_dir: str = "", clip: float = 1.0,
                 ema_decay: float = 0.9, strict_item: bool = False, async_save: bool = False) -> dict:
    """Trains TinyTransformer for `steps` steps; returns losses, grad norms, compile stats and final tensors.

    async_save: the checkpoint is written in the background while the live weights are overwritten, so a
      restore equal to the returned tensors shows the save holds the state of its step.
    """
    torch.manual_seed(0)
    module = TinyTransformer()
    ema = TinyTransformer()
    ema.load_state_dict(module.state_dict())
    ema.requires_grad_(False)
    model = runtime.shard_model(module)
    ema = runtime.place_frozen(ema, like_trainable=True)
    params = [p for p in runtime.unwrap(model).parameters()]
    ema_params = list(ema.parameters())
    opt = torch.optim.AdamW(params, lr=toy_lr(0), weight_decay=0.01, foreach=False)

    def step_fn(x, y):
        opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(model(x), y)
        if strict_item:
            loss.item()  # A host sync: the strict XLA step must refuse it.
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, [p.detach() for p in params], 1.0 - ema_decay)
        return loss, grad_norm

    step = runtime.compile_step(step_fn, name="toy_step", max_graphs=2)
    rows = slice(runtime.process_index * runtime.per_process_batch(batch),
                 (runtime.process_index + 1) * runtime.per_process_batch(batch))
    host_batches = (toy_batch(s, batch, rows) for s in range(steps))
    losses, grad_norms, graphs_per_step, step_seconds = [], [], [], []
    for s, device_batch in enumerate(runtime.device_batches(host_batches)):
        for group in opt.param_groups:
            group["lr"] = toy_lr(s)
        started = time.perf_counter()
        loss, grad_norm = step(device_batch["x"], device_batch["y"])
        runtime.read_on_host({"loss": loss, "grad_norm": grad_norm},
                             lambda v: (losses.append(v["loss"]), grad_norms.append(v["grad_norm"])))
        runtime.wait()
        step_seconds.append(time.perf_counter() - started)
        graphs_per_step.append(runtime.compile_stats().get("graphs", 0))
    result = dict(losses=losses, grad_norms=grad_norms, graphs_per_step=graphs_per_step,
                  step_seconds=step_seconds, compile=runtime.compile_stats())
    state = {"model": model, "ema": ema, "optim": (model, opt), "meta": {"step": steps}}
    result["tensors"] = snapshot(runtime, model, ema, opt)
    if checkpoint_dir:
        with CheckpointManager(checkpoint_dir, runtime, keep=2, async_save=async_save, write_threads=2) as manager:
            manager.save(steps, state, meta={"kind": "selftest"})
            if async_save:  # Training goes on while the write is in flight: it must not reach the checkpoint.
                with torch.no_grad():
                    for p in list(params) + ema_params:
                        p.add_(1.0)
                runtime.wait()
    return result


def restore_selftest(runtime, checkpoint_dir: str) -> dict:
    """Builds a differently initialised model on this runtime and restores the latest selftest checkpoint."""
    torch.manual_seed(123)
    model = runtime.shard_model(TinyTransformer())
    ema = runtime.place_frozen(TinyTransformer().requires_grad_(False), like_trainable=True)
    opt = torch.optim.AdamW(list(runtime.unwrap(model).parameters()), lr=1.0, weight_decay=0.01, foreach=False)
    meta = CheckpointManager(checkpoint_dir, runtime, keep=2).restore_latest(
        {"model": model, "ema": ema, "optim": (model, opt)})
    return dict(meta=meta, tensors=snapshot(runtime, model, ema, opt))


def snapshot(runtime, model, ema, opt) -> dict[str, list]:
    """Host copies of parameters, EMA and AdamW moments, keyed by name (sync point: test/diagnostic only)."""
    runtime.wait()
    named = dict(runtime.unwrap(model).named_parameters())
    def host(t):  # FSDP2 DTensors are gathered; XLA and plain tensors are copied.
        t = t.full_tensor() if hasattr(t, "full_tensor") else t
        return t.detach().cpu().flatten().tolist()

    out = {f"param/{n}": host(p) for n, p in named.items()}
    out.update({f"ema/{n}": host(p) for n, p in ema.named_parameters()})
    by_id = {id(p): n for n, p in named.items()}
    for p, st in opt.state.items():
        if "exp_avg" in st:
            out[f"exp_avg/{by_id[id(p)]}"] = host(st["exp_avg"])
    return out


def _define_flags() -> None:
    """Flags exist only when this file runs as a program (importing it defines none)."""
    flags.DEFINE_enum("backend", "cpu", ["xla", "cuda", "cpu"], "Backend to check.")
    flags.DEFINE_string("mesh", "1,-1", "data,fsdp mesh shape (-1 = the remaining devices).")
    flags.DEFINE_enum("param_sharding", "fsdp", ["fsdp", "replicate"], "Parameter sharding strategy.")
    flags.DEFINE_integer("steps", 6, "Training steps.")
    flags.DEFINE_integer("batch", 8, "Global batch size.")
    flags.DEFINE_bool("strict", False, "XLA strict mode: recompiles/host syncs in the step raise.")
    flags.DEFINE_bool("strict_item", False, "Put a .item() in the step (to check strict mode catches it).")
    flags.DEFINE_string("save_to", "", "Checkpoint directory to save the final state to.")
    flags.DEFINE_bool("async_save", False, "Save asynchronously (and change the weights while it writes).")
    flags.DEFINE_string("restore_from", "", "Restore the latest checkpoint from here instead of training.")
    flags.DEFINE_string("out", "", "Write the result JSON here (default: print a summary).")


def main(argv):
    del argv
    FLAGS = flags.FLAGS
    data, fsdp = (int(v) for v in FLAGS.mesh.split(","))
    cfg = config_lib.runtime_block(backend=FLAGS.backend, mesh=dict(data=data, fsdp=fsdp),
                                   param_sharding=FLAGS.param_sharding, strict=FLAGS.strict)
    runtime = make_runtime(ml_collections.ConfigDict(cfg))
    try:
        if FLAGS.restore_from:
            result = restore_selftest(runtime, FLAGS.restore_from)
        else:
            result = run_selftest(runtime, steps=FLAGS.steps, batch=FLAGS.batch, checkpoint_dir=FLAGS.save_to,
                                  strict_item=FLAGS.strict_item, async_save=FLAGS.async_save)
        result.update(backend=runtime.kind, mesh=runtime.mesh_shape, process_index=runtime.process_index)
    finally:
        runtime.close()
    if FLAGS.out and result["process_index"] == 0:
        with open(FLAGS.out, "w") as f:
            json.dump(result, f)
    elif not FLAGS.out:
        summary = {k: v for k, v in result.items() if k != "tensors"}
        print(json.dumps(summary, indent=1), file=sys.stdout)


if __name__ == "__main__":
    _define_flags()
    app.run(main)
