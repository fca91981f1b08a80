"""What a job will do, from its config alone: mesh, batches, steps, parameters, FLOPs and bytes per device.

Models are built on the meta device (shapes, no memory, no weights), the dataset size comes from its metadata
(TFDS `dataset_info.json`, a folder listing, or the synthetic recipe), and the sharding plan is the runtime's
own (`runtime/sharding.plan_param_sharding`), so the bytes per device are the ones an FSDP run would hold.
Byte counts (fp32 master state, as the trainers keep it): parameters 4 B, EMA 4 B, AdamW's two moments 8 B
= 16 B per trainable parameter; gradients (4 B, transient, sharded like the parameters) are listed apart.
"""
from __future__ import annotations

import json
import math
import os

import torch

from rae_xla import config as config_lib
from rae_xla import errors, remote
from rae_xla.preflight.devices import DevicePlan
from rae_xla.runtime import sharding

GIB = 2 ** 30
# Widths of the encoders the shipped configs name (hub id -> hidden size, patch, layers, register tokens), so the
# plan needs no download; any other encoder is read from its config.json when that is on this machine.
KNOWN_ENCODERS = {
    "facebook/dinov2-with-registers-base": (768, 14, 12, 4),
    "google/siglip2-base-patch16-256": (768, 16, 12, 0),
    "facebook/vit-mae-base": (768, 16, 12, 0),
}


class Plan:
    """Ordered (label, value) lines plus the problems found while planning (each a UserError)."""

    def __init__(self):
        self.lines: list[tuple[str, str]] = []
        self.problems: list[errors.UserError] = []

    def add(self, label: str, value: str) -> None:
        self.lines.append((label, value))


# Split sizes of the TFDS datasets the shipped configs name, for planning where the data is not readable yet.
KNOWN_SPLITS = {("imagenet2012", "train"): 1_281_167, ("imagenet2012", "validation"): 50_000}


def split_size(data_cfg) -> tuple[int | None, str]:
    """(images in config.data's split, where the number comes from), from metadata only; (None, why) if unknown."""
    known = KNOWN_SPLITS.get((data_cfg.name.partition(":")[0], data_cfg.split))
    fallback = (known, f"{data_cfg.name}'s published size; the data is not readable from here") if known else \
        (None, "the data is not readable from here; see the input checks")
    if data_cfg.source != "synthetic" and (config_lib.PLACEHOLDER in data_cfg.data_dir or (
            data_cfg.data_dir.startswith("gs://") and remote.gcs_unreachable())):
        return fallback
    from rae_xla.data import sources, synthetic
    try:
        if data_cfg.source == "synthetic":
            sizes = synthetic.split_sizes(data_cfg.synthetic_num_images, data_cfg.synthetic_num_classes)
            return sizes[data_cfg.split], "the synthetic recipe"
        if data_cfg.source == "tfds":
            version_dir = sources.find_tfds_version_dir(data_cfg.data_dir, data_cfg.name)
            splits = json.loads((version_dir / "dataset_info.json").read_text())["splits"]
            count = sum(int(n) for s in splits if s["name"] == data_cfg.split for n in s["shardLengths"])
            return count, "dataset_info.json"
        root = sources.resolve_folder_root(os.path.expanduser(data_cfg.data_dir), data_cfg.split)
        return len(sources.FolderSource(root)), "the folder listing"
    except Exception:  # noqa: BLE001  Unreadable data is reported by the input checks; the plan falls back.
        return fallback


def encoder_shape(rae_cfg) -> tuple[int, int, int, int] | None:
    """(hidden size, patch, layers, register tokens) of rae.encoder_path, without loading weights."""
    path = rae_cfg.encoder_path
    if path in KNOWN_ENCODERS:
        return KNOWN_ENCODERS[path]
    if path == "random-tiny":
        from rae_xla.models import encoders
        return encoders.random_tiny_shape(rae_cfg.encoder)
    local = os.path.join(os.path.expanduser(path), "config.json")
    if not os.path.isfile(local):
        return None
    with open(local) as f:
        cfg = json.load(f)
    cfg = cfg.get("vision_config", cfg)
    return (cfg["hidden_size"], cfg["patch_size"], cfg["num_hidden_layers"], cfg.get("num_register_tokens", 0))


def gib(n_bytes: float) -> str:
    return f"{n_bytes / GIB:.2f} GiB"


def flops_text(value: float) -> str:
    return f"{value / 1e12:.3f} TFLOP" if value >= 1e11 else f"{value / 1e9:.3f} GFLOP"


def trainable_shapes(module: torch.nn.Module, prefix: str = "") -> list[tuple[str, tuple]]:
    return [(prefix + n, tuple(p.shape)) for n, p in module.named_parameters() if p.requires_grad]


def add_mesh(plan: Plan, config, devices: DevicePlan) -> dict[str, int] | None:
    """The ('data', 'fsdp') mesh these devices give; a mesh that does not fit is a problem."""
    plan.add("devices", devices.describe())
    if devices.num_devices < 1:
        plan.problems.append(errors.UserError("the number of devices is unknown; pass --plan_for=<TPU type>"))
        return None
    try:
        ici, dcn = config_lib.resolve_slice_mesh(config.runtime.mesh, devices.num_devices, devices.num_slices)
    except errors.UserError as e:
        plan.problems.append(e)
        return None
    mesh = {axis: ici[axis] * dcn[axis] for axis in ("data", "fsdp")}
    plan.add("mesh", f"('data', 'fsdp') = ({mesh['data']}, {mesh['fsdp']}): ICI ({ici['data']}, {ici['fsdp']}) per "
                     f"slice x DCN ({dcn['data']}, {dcn['fsdp']}); parameters {config.runtime.param_sharding}, "
                     f"precision {config.runtime.precision}")
    return mesh


def add_batches(plan: Plan, label: str, global_batch: int, num_devices: int, accum: int = 1) -> None:
    micro = global_batch // max(1, accum)
    per_device = micro / max(1, num_devices)
    accum_text = f", {accum} micro-batches of {micro}" if accum > 1 else ""
    plan.add(label, f"global {global_batch}{accum_text}, {per_device:g} per device")


def add_state_bytes(plan: Plan, config, mesh, tensors, *, ema_prefixes: tuple[str, ...]) -> float:
    """Params + AdamW (+ EMA for names under `ema_prefixes`) per device under the sharding rules; returns the
    checkpoint's bytes (all of that state, unsharded)."""
    try:
        specs = sharding.plan_param_sharding(tensors, strategy=config.runtime.param_sharding,
                                             rules=config.runtime.sharding_rules, mesh_shape=mesh)
    except ValueError as e:
        plan.problems.append(config_lib.ConfigError(f"runtime.sharding_rules: {e}"))
        return 0.0
    local = total = grads = 0.0
    for name, shape in tensors:
        n_bytes = 4.0 * math.prod(shape)
        shards = math.prod(mesh[a] for entry in specs[name] if entry for a in
                           (entry if isinstance(entry, tuple) else (entry,)))
        per_tensor = (16.0 if name.startswith(ema_prefixes) else 12.0)
        local += per_tensor / 4 * n_bytes / shards
        grads += n_bytes / shards
        total += per_tensor / 4 * n_bytes
    plan.add("state per device", f"{gib(local)} params + AdamW + EMA (fp32; {gib(total)} unsharded), "
                                 f"+ {gib(grads)} gradients")
    return total
