"""Parameter sharding as data: (name regex -> partition spec) rules plus the default FSDP rule.

Pure Python over names and shapes, so it is testable without torch_xla; `xla.py` applies the specs with
`mark_sharding`. A partition spec has one entry per tensor dimension: a mesh axis name, a tuple of axis names,
or None (replicated along that dimension).
"""
from __future__ import annotations

import re
from typing import Iterable, Mapping, Sequence

STRATEGIES = ("fsdp", "replicate")  # config.runtime.param_sharding / encoder_sharding.

PartitionSpec = tuple  # e.g. ('fsdp', None)


def fsdp_spec(shape: Sequence[int], fsdp_size: int) -> PartitionSpec:
    """Default FSDP rule: shard the largest dimension that `fsdp_size` divides; replicate 0-D/1-D tensors.

    1-D tensors (biases, norm gains) are <0.1% of DiT^DH-XL's bytes, and sharding them only adds collectives.
    Uneven shards would make XLA pad every step, so a dimension must divide exactly; if none does, replicate.
    Example: (6144, 1152) with fsdp 4 -> ('fsdp', None); (2048, 768, 1, 1) -> ('fsdp', None, None, None).
    """
    spec: list = [None] * len(shape)
    if len(shape) < 2 or fsdp_size <= 1:
        return tuple(spec)
    for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):  # Largest first; ties keep the earlier dim.
        if shape[dim] % fsdp_size == 0:
            spec[dim] = "fsdp"
            break
    return tuple(spec)


def plan_param_sharding(named_shapes: Iterable[tuple[str, Sequence[int]]], *, strategy: str,
                        rules: Sequence[tuple[str, Sequence]], mesh_shape: Mapping[str, int]
                        ) -> dict[str, PartitionSpec]:
    """Partition spec for every named tensor: the first matching rule wins, then the strategy default.

    Args:
      named_shapes: (name, shape) pairs, e.g. from `model.named_parameters()`.
      strategy: 'fsdp' or 'replicate'.
      rules: ((regex, spec), ...) matched with `re.search` against the name.
      mesh_shape: axis -> size, e.g. {'data': 2, 'fsdp': 4}.
    Raises:
      ValueError: a rule's spec has the wrong rank or names an axis that is not in the mesh.
    """
    compiled = [(re.compile(pattern), tuple(spec)) for pattern, spec in rules]
    plan = {}
    for name, shape in named_shapes:
        shape = tuple(shape)
        for pattern, spec in compiled:
            if pattern.search(name):
                _check_spec(name, shape, spec, mesh_shape, pattern.pattern)
                plan[name] = spec
                break
        else:
            plan[name] = fsdp_spec(shape, mesh_shape.get("fsdp", 1)) if strategy == "fsdp" else (None,) * len(shape)
    return plan


def batch_spec(ndim: int) -> PartitionSpec:
    """The batch dimension is sharded over every mesh axis ('data' slowest), the rest replicated.

    Sharding the batch over all axes keeps MpDeviceLoader's `minibatch=True` legal on a 2-D mesh
    (pytorch/xla#8696) and gives each device batch/num_devices rows.
    """
    return (("data", "fsdp"),) + (None,) * (ndim - 1)


def _check_spec(name: str, shape: tuple, spec: tuple, mesh_shape: Mapping[str, int], pattern: str) -> None:
    if len(spec) != len(shape):
        raise ValueError(f"sharding rule {pattern!r} gives spec {spec} of rank {len(spec)} for {name} of shape "
                         f"{shape}; the spec needs one entry per dimension")
    for entry in spec:
        for axis in (entry if isinstance(entry, tuple) else (entry,)):
            if axis is not None and axis not in mesh_shape:
                raise ValueError(f"sharding rule {pattern!r} names mesh axis {axis!r}; the mesh has {sorted(mesh_shape)}")
