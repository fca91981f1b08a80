"""The state a captured training step reads or updates (runtime/xla_capture.py), shared by both trainers."""
from __future__ import annotations

import itertools

import torch

from rae_xla.train.optimizer import ForeachAdamW


def step_state(modules: tuple[torch.nn.Module, ...], optimizers: tuple[torch.optim.Optimizer, ...]
               ) -> list[torch.Tensor]:
    """Every tensor a training step reads or updates besides its arguments, in a fixed order, each once (a
    captured step's `state`, runtime/xla_capture.py): the modules' parameters and buffers (trainable, EMA, frozen
    encoder / LPIPS / discriminator backbone), the optimizers' device state and the per-step scalars
    `ForeachAdamW.prepare_step` uploads. Read at traces only: the per-tensor Python here never runs per step.
    A tensor reachable twice (a module inside another one, as the RAE holds the stage-1 decoder) is listed once:
    a replay then writes each updated tensor once."""
    tensors, seen = [], set()

    def add(t: torch.Tensor) -> None:
        if id(t) not in seen:
            seen.add(id(t))
            tensors.append(t)

    for module in modules:
        for t in itertools.chain(module.parameters(), module.buffers()):
            add(t)
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            for p in group["params"]:
                for v in optimizer.state.get(p, {}).values():
                    if isinstance(v, torch.Tensor) and v.device.type != "cpu":
                        add(v)
        if isinstance(optimizer, ForeachAdamW):
            for t in optimizer.step_scalar_tensors():
                add(t)
    return tensors
