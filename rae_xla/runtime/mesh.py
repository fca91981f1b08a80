"""The ('data', 'fsdp') device mesh: one slice -> `xs.Mesh` over all devices in id order (as before);
several slices -> `xs.HybridMesh`, with the slices on the outer 'data' axis (DCN) and each slice's chips
arranged along its ICI torus for 'fsdp' (and any in-slice 'data').

FSDP's all-gathers and reduce-scatters run every layer, so they must stay on the fast ICI links inside a
slice; only the data-parallel gradient all-reduce crosses the slower DCN between slices once per step.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch_xla.distributed.spmd as xs

from rae_xla.config import MESH_AXES


def slice_count(device_attributes: Sequence[Mapping]) -> int:
    """Slices in the job: distinct `slice_index` values (absent on single-slice TPUs and on CPU -> 1)."""
    slices = {attrs["slice_index"] for attrs in device_attributes if "slice_index" in attrs}
    return max(1, len(slices))


def build_mesh(ici: Mapping[str, int], dcn: Mapping[str, int]) -> xs.Mesh:
    """The mesh for `config.resolve_slice_mesh`'s (ici, dcn) shapes; its shape is ici * dcn per axis."""
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
