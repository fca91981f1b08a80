"""`config.model` (and the autoguidance `config.guidance_model`): a stage-2 network from a preset
(rae_xla/models/presets.py): the block, its ranges, its checks."""
from __future__ import annotations

from typing import Any

import ml_collections

from rae_xla.config.checks import Placement, one_of
from rae_xla.config.ranges import COUNT, POSITIVE, PROBABILITY
from rae_xla.models import ARCHS, stage2_preset


def model_block(preset: str, **overrides: Any) -> ml_collections.ConfigDict:
    """A stage-2 model: `arch` plus every official keyword argument, from a preset (rae_xla/models/presets.py).

    e.g. model_block('DiTDH-XL') or model_block('DiTDH-XL', input_size=32) for 512 px.
    """
    spec = stage2_preset(preset, **overrides)
    return ml_collections.ConfigDict({k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()})


# DiT^DH's (trunk, head) tuples have each element checked.
RANGES = {
    "input_size": COUNT,  # latent height = width
    "patch_size": COUNT,
    "in_channels": COUNT,
    "hidden_size": COUNT,
    "depth": COUNT,
    "num_heads": COUNT,
    "mlp_ratio": POSITIVE,
    "class_dropout_prob": PROBABILITY,  # the label drop that trains the unconditional model for CFG
    "num_classes": COUNT,
}


def validate_model(config: ml_collections.ConfigDict, placement: Placement) -> None:
    for block in ("model", "guidance_model"):
        if block in config:
            one_of(config[block].arch, ARCHS, f"{block}.arch")
