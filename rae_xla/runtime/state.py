"""Checkpointable state <-> torch.distributed.checkpoint state dicts, the same on every backend.

A trainer describes its state as `{'model': module, 'ema': module, 'optim': (module, optimizer), 'meta': {...}}`.
Modules and optimizers go through torch's `get_/set_model_state_dict` and `get_/set_optimizer_state_dict`, which
key optimizer state by parameter name (not by integer id) and understand DDP, FSDP2 DTensors and XLA tensors
alike, so a checkpoint written on a TPU mesh loads on one CPU and vice versa.

Of an optimizer only the per-parameter `state` (AdamW's step, exp_avg, exp_avg_sq) is stored: its
`param_groups` (lr, betas, ...) come from the config at every start. They are also the one part that the
XLA and default DCP planners flatten differently, which broke CPU -> XLA restores.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn
from torch.distributed.checkpoint import state_dict as dcp_state_dict


def _is_optimizer_entry(value: Any) -> bool:
    return isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], torch.optim.Optimizer)


def to_dcp(state: dict[str, Any], unwrap: Callable[[nn.Module], nn.Module]) -> dict[str, Any]:
    """Modules and (module, optimizer) pairs become state dicts whose tensors alias the live ones."""
    out = {}
    for key, value in state.items():
        if isinstance(value, nn.Module):
            out[key] = dcp_state_dict.get_model_state_dict(unwrap(value))
        elif _is_optimizer_entry(value):
            out[key] = {"state": dcp_state_dict.get_optimizer_state_dict(unwrap(value[0]), value[1])["state"]}
        else:
            out[key] = value
    return out


def from_dcp(state: dict[str, Any], loaded: dict[str, Any], unwrap: Callable[[nn.Module], nn.Module]) -> None:
    """Copies `loaded` (filled by dcp.load) into the live modules/optimizers; plain entries are replaced."""
    for key, value in state.items():
        if isinstance(value, nn.Module):
            dcp_state_dict.set_model_state_dict(unwrap(value), loaded[key])
        elif _is_optimizer_entry(value):
            current = dcp_state_dict.get_optimizer_state_dict(unwrap(value[0]), value[1])
            current["state"] = loaded[key]["state"]  # Hyperparameters stay those of the current config.
            dcp_state_dict.set_optimizer_state_dict(unwrap(value[0]), value[1], current)
        else:
            state[key] = loaded[key]
