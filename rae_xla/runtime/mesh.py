"""The ('data', 'fsdp') device mesh: its shape from the config (`resolve_mesh`, `resolve_slice_mesh`: pure
arithmetic that `validate()` also runs before any backend starts), and the torch_xla mesh itself: one slice ->
`xs.Mesh` over all devices in id order (as before); several slices -> `xs.HybridMesh`, with the slices on the
outer 'data' axis (DCN) and each slice's chips arranged along its ICI torus for 'fsdp' (and any in-slice 'data').

FSDP's all-gathers and reduce-scatters run every layer, so they must stay on the fast ICI links inside a
slice; only the data-parallel gradient all-reduce crosses the slower DCN between slices once per step.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from rae_xla.errors import ConfigError

MESH_AXES = ("data", "fsdp")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def resolve_mesh(mesh: Mapping[str, int], num_devices: int, num_slices: int = 1) -> dict[str, int]:
    """The global ('data', 'fsdp') shape: `resolve_slice_mesh`'s ICI mesh with the slices stacked on 'data'."""
    ici, dcn = resolve_slice_mesh(mesh, num_devices, num_slices)
    return {axis: ici[axis] * dcn[axis] for axis in MESH_AXES}


def resolve_slice_mesh(mesh: Mapping[str, int], num_devices: int, num_slices: int = 1
                       ) -> tuple[dict[str, int], dict[str, int]]:
    """(ICI mesh inside one slice, DCN mesh of slices), each {'data', 'fsdp'}; ConfigError if they do not fit.

    `mesh.data`/`mesh.fsdp` (one may be -1: the remaining devices) describe one slice of
    num_devices / num_slices devices; `mesh.dcn_data` (-1 or absent: num_slices) slices stack on 'data'.
    Example: 2 slices of v5p-64 (32 chips each), mesh (data=1, fsdp=-1) -> ICI (1, 32), DCN (2, 1).
    """
    dcn_data = int(mesh.get("dcn_data", -1))
    dcn_data = num_slices if dcn_data == -1 else dcn_data
    _require(dcn_data == num_slices,
             f"runtime.mesh.dcn_data={dcn_data} but the job has {num_slices} slice(s); every slice must be one "
             f"'data' row: set --config.runtime.mesh.dcn_data=-1 (= the slice count)")
    _require(num_devices % num_slices == 0, f"{num_devices} devices do not split into {num_slices} equal slices")
    per_slice = num_devices // num_slices
    shape = {axis: int(mesh[axis]) for axis in MESH_AXES}
    free = [a for a, n in shape.items() if n == -1]
    _require(len(free) <= 1, f"runtime.mesh={shape}: at most one axis may be -1 (take the remaining devices)")
    fixed = 1
    for axis, n in shape.items():
        _require(n == -1 or n >= 1, f"runtime.mesh.{axis}={n} must be >= 1 or -1")
        fixed *= 1 if n == -1 else n
    where = f"{per_slice} devices per slice" if num_slices > 1 else f"{num_devices} devices"
    if free:
        _require(per_slice % fixed == 0,
                 f"runtime.mesh={shape} cannot use {where}: {per_slice} is not divisible by {fixed}")
        shape[free[0]] = per_slice // fixed
    product = 1
    for n in shape.values():
        product *= n
    available = f"{per_slice} are available per slice" if num_slices > 1 else f"{num_devices} are available"
    _require(product == per_slice,
             f"runtime.mesh={shape} has {product} devices but {available}; "
             f"set one axis to -1, e.g. --config.runtime.mesh.fsdp=-1")
    return shape, {"data": num_slices, "fsdp": 1}


def slice_count(device_attributes: Sequence[Mapping]) -> int:
    """Slices in the job: distinct `slice_index` values (absent on single-slice TPUs and on CPU -> 1)."""
    slices = {attrs["slice_index"] for attrs in device_attributes if "slice_index" in attrs}
    return max(1, len(slices))


def build_mesh(ici: Mapping[str, int], dcn: Mapping[str, int]) -> xs.Mesh:
    """The mesh for `resolve_slice_mesh`'s (ici, dcn) shapes; its shape is ici * dcn per axis."""
    # Deferred: importing torch_xla initialises PJRT, and `rae_xla.config` imports this module for the arithmetic.
    import torch_xla.distributed.spmd as xs
    ici_shape = tuple(ici[a] for a in MESH_AXES)
    dcn_shape = tuple(dcn[a] for a in MESH_AXES)
    if int(np.prod(dcn_shape)) == 1:
        # HybridMesh needs TPU coordinates (it asserts a TPU device) and torchprime avoids it on one slice
        # (pytorch/xla#8683); the id-ordered mesh is what every single-slice run so far used.
        num_devices = int(np.prod(ici_shape))
        return xs.Mesh(np.arange(num_devices), ici_shape, MESH_AXES)
    return xs.HybridMesh(ici_mesh_shape=ici_shape, dcn_mesh_shape=dcn_shape, axis_names=MESH_AXES)


def slice_of_each_device(mesh: xs.Mesh, device_attributes: Sequence[Mapping]) -> np.ndarray:
    """Array of the mesh's shape holding each position's slice index (for logs and tests)."""
    ids = np.asarray(mesh.device_ids).reshape(mesh.mesh_shape)
    by_id = {i: attrs.get("slice_index", 0) for i, attrs in enumerate(_sorted_by_id(device_attributes))}
    return np.vectorize(by_id.__getitem__)(ids)


def _sorted_by_id(device_attributes: Sequence[Mapping]) -> list[Mapping]:
    """Device attributes ordered by the runtime id in their name ('TPU:5' -> 5), as HybridMesh orders them."""
    return sorted(device_attributes, key=lambda attrs: int(str(attrs["name"]).rsplit(":", 1)[-1]))
