"""Exponential moving average of model parameters.

ema <- decay * ema + (1 - decay) * param after every optimizer step, with no warm-up (docs/reference.md §6.1: decay
0.9995 in stage 2, half-life ln(0.5)/ln(0.9995) ~ 1386 steps; §5.7: 0.9978 in stage 1, ~315 steps). The official
`update_ema` runs `ema.mul_(decay).add_(param, alpha=1 - decay)` over `named_parameters()`, frozen ones included;
`ema_update_` does the same arithmetic (same rounding): as foreach calls on CUDA and XLA, as that loop on CPU.

Under torch_xla the update is traced into the step graph like any other op (no host sync, the EMA keeps the
parameters' sharding); on CUDA the foreach kernels launch a few multi-tensor kernels instead of two per tensor.

Difference from the official trainer (docs/reference.md §6.2 item 3): there, `model.forward` is replaced by its
`torch.compile` wrapper *before* `ema_model = deepcopy(model)`, so the EMA copy shares the compiled forward of the
live model and its "EMA" preview samples and `eval_ema/*` metrics were computed with the live weights (the EMA
weights themselves were updated and saved correctly). Here the EMA is a separate module with its own forward;
compile it separately if you need to.
"""

import copy

import torch
from torch import nn

from rae_xla.train import optimizer as optimizer_lib


@torch.no_grad()
def ema_update_(ema_params: list[torch.Tensor], params: list[torch.Tensor], decay: float) -> None:
    """In place: ema_params[i] <- decay * ema_params[i] + (1 - decay) * params[i].

    Args:
      ema_params: EMA tensors (any shape/float dtype), updated in place.
      params: live parameters, same length, shapes and devices as `ema_params`; not modified.
      decay: a Python float in [0, 1] (0.9995 for stage 2). A Python float keeps it a graph constant under XLA.
    """
    if len(ema_params) != len(params):
        raise ValueError(f"ema_update_ got {len(ema_params)} EMA tensors but {len(params)} parameters; "
                         "build both lists from the same module structure (see paired_parameters).")
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"EMA decay must be in [0, 1]; got {decay}.")
    if not ema_params:
        return
    device_type = ema_params[0].device.type
    if device_type == "cuda":
        # Two multi-tensor kernels instead of two launches per tensor (378 tensors in DiT^DH-XL).
        torch._foreach_mul_(ema_params, decay)
        torch._foreach_add_(ema_params, [p.detach() for p in params], alpha=1.0 - decay)
        return
    if device_type == "xla":
        # Same arithmetic, out of place plus one foreach copy: under XLA an in-place mul_/add_ runs a Python
        # meta function per tensor, ~0.1 s of host time per step over 376 tensors (issue 10).
        optimizer_lib.assign_(ema_params, torch._foreach_add(torch._foreach_mul(ema_params, decay), params,
                                                             alpha=1.0 - decay))
        return
    # CPU: the per-tensor loop is ~2x faster than foreach (each tensor is still in cache for the add;
    # benchmarks/results/2026-11-29_cpu-2core_ema_update.md).
    for e, p in zip(ema_params, params):
        e.mul_(decay).add_(p.detach(), alpha=1.0 - decay)


def init_ema(model: nn.Module) -> nn.Module:
    """A frozen eval-mode deep copy of `model` to hold the EMA weights (initialised to the current weights).

    The copy has its own forward: if `model.forward` was patched (e.g. by torch.compile), patch the copy
    separately rather than sharing the wrapper (the official trainer's bug, see the module docstring).
    """
    ema = copy.deepcopy(model)
    ema.requires_grad_(False)
    ema.eval()
    return ema


def paired_parameters(ema_model: nn.Module, model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(ema tensors, live tensors) matched by parameter name over all named_parameters (frozen ones too).

    Raises a ValueError naming the keys if the two modules do not have the same parameter names and shapes.
    """
    ema_named = dict(ema_model.named_parameters())
    live_named = dict(model.named_parameters())
    if ema_named.keys() != live_named.keys():
        only_ema = sorted(ema_named.keys() - live_named.keys())[:5]
        only_live = sorted(live_named.keys() - ema_named.keys())[:5]
        raise ValueError(f"EMA and model parameters differ: only in EMA {only_ema}, only in model {only_live}. "
                         "Build the EMA with init_ema(model) from the unwrapped model (not a DDP wrapper).")
    names = list(live_named)
    bad = [n for n in names if ema_named[n].shape != live_named[n].shape]
    if bad:
        raise ValueError(f"EMA and model parameter shapes differ for {bad[:5]}.")
    return [ema_named[n] for n in names], [live_named[n] for n in names]
