"""Child process for tests/runtime/test_xla_capture.py (PJRT_DEVICE=CPU CPU_NUM_DEVICES=4): writes JSON to argv[1].

A toy training step (Linear layers with FSDP-sharded weights, device random draws, ForeachAdamW with a
changing learning rate, an EMA) run 6 steps three ways from the same start: torch_xla.compile (lazy, re-traced
every call), CapturedStep (traced, then replayed), and CapturedStep without the optimizer's prepare hook. Then
the two misuse cases the capture must refuse: a step that updates a tensor missing from its state, and a step
that bakes in a Python number that changes per call.
"""
import json
import sys

import numpy as np
import torch
import torch_xla
import torch_xla.core.xla_model as xm
import torch_xla.distributed.spmd as xs
import torch_xla.runtime as xr

from rae_xla.runtime.xla_capture import CaptureError, CapturedStep, replace_data
from rae_xla.train import ema as ema_lib
from rae_xla.train.optimizer import ForeachAdamW

xr.use_spmd()
MESH = xs.Mesh(np.arange(4), (4, 1), ("fsdp", "data"))
DEVICE = torch_xla.device()
STEPS = 6


def build():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 4)).to(DEVICE)
    for layer in (model[0], model[2]):
        xs.mark_sharding(layer.weight, MESH, ("fsdp", None))
    ema = [p.detach().clone() for p in model.parameters()]  # Shares the buffers until the first update.
    optimizer = ForeachAdamW(list(model.parameters()), lr=1e-2, weight_decay=0.05)

    def step(batch, sums):
        noise = torch.randn(batch["x"].shape, device=DEVICE)  # Device draw: the seed is a graph input.
        loss = (model(batch["x"] + 0.1 * noise) - batch["y"]).square().mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ema_lib.ema_update_(ema, list(model.parameters()), 0.9)
        return {"loss": sums["loss"] + loss.detach()}

    def state():
        tensors = list(model.parameters()) + ema
        tensors += [v for p in model.parameters() for v in optimizer.state.get(p, {}).values()
                    if v.device.type != "cpu"]
        return tensors + optimizer.step_scalar_tensors()
    return model, ema, optimizer, step, state


def batches():
    g = torch.Generator().manual_seed(1)
    host = [{"x": torch.randn(8, 8, generator=g), "y": torch.randn(8, 4, generator=g)} for _ in range(2)]
    out = []
    for b in host:
        placed = {k: v.to(DEVICE) for k, v in b.items()}
        for v in placed.values():
            xs.mark_sharding(v, MESH, ("fsdp", None))
        out.append(placed)
    return out


def train(mode: str) -> dict:
    model, ema, optimizer, step, state = build()
    if mode == "lazy":  # As the trainer with runtime.capture_step=False: the same prepare hook, then the trace.
        compiled = torch_xla.compile(step, full_graph=True)

        def call(b, s):
            optimizer.prepare_step(replace_data)
            return compiled(b, s)
    else:
        call = CapturedStep(step, state=state, name="toy",
                           prepare=(lambda: optimizer.prepare_step(replace_data),))
    data = batches()
    sums = {"loss": torch.zeros(()).to(DEVICE)}
    losses = []
    for i in range(STEPS):
        for group in optimizer.param_groups:
            group["lr"] = 1e-2 * (i + 1) / STEPS  # A warm-up: a different number at every step.
        xm.set_rng_state(1000 + i, str(DEVICE))
        sums = call(data[i % 2], sums)
        losses.append(float(sums["loss"].cpu()))
    return {"losses": losses,
            "params": [p.detach().cpu().tolist() for p in model.parameters()],
            "ema": [p.cpu().tolist() for p in ema],
            "exp_avg_sq": [optimizer.state[p]["exp_avg_sq"].cpu().tolist() for p in model.parameters()],
            "optimizer_step": float(optimizer.state[model[0].weight]["step"]),
            "replays": getattr(call, "replays", 0)}


def refused(step, state) -> str:
    captured = CapturedStep(step, state=state, name="bad")
    x = torch.ones(4).to(DEVICE)
    try:
        for _ in range(4):
            captured(x)
    except CaptureError as e:
        return str(e)
    return ""


out = {"lazy": train("lazy"), "captured": train("captured")}

hidden = torch.zeros(4).to(DEVICE)
listed = torch.zeros(4).to(DEVICE)


def updates_hidden(x):
    listed.add_(x)
    hidden.add_(x)  # Not in state(): its update would be lost by a replay.
    return {"s": listed.sum()}


scale = {"value": 1.0}


def bakes_python_number(x):
    scale["value"] += 1.0  # A per-call Python number inside the graph: frozen by a replay.
    listed.mul_(scale["value"]).add_(x)
    return {"s": listed.sum()}


out["hidden_update"] = refused(updates_hidden, lambda: [listed])
out["python_number"] = refused(bakes_python_number, lambda: [listed])

with open(sys.argv[1], "w") as f:
    json.dump(out, f)
