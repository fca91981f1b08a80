"""`config.data`: where images come from (rae_xla/data): the block, its ranges, its checks."""
from __future__ import annotations

import os
from typing import Any

import ml_collections

from rae_xla.config.checks import PLACEHOLDER, Placement
from rae_xla.config.ranges import COUNT, at_least
from rae_xla.errors import ConfigError


def data_block(**overrides: Any) -> ml_collections.ConfigDict:
    """Where images come from (rae_xla/data). `source`: synthetic | tfds | folder."""
    block = dict(
        source="synthetic",
        name="rae_synthetic",  # tfds dataset name (e.g. 'imagenet2012'); for 'synthetic' the name it is built as.
        data_dir=os.path.join("~", ".cache", "rae_xla", "tfds"),  # tfds data_dir (local or gs://) / folder root.
        split="train",
        image_size=256,
        random_flip=True,
        num_workers=4,
        prefetch_factor=2,
        synthetic_num_classes=10,
        synthetic_num_images=1000,
        crop="center",  # center (ADM, stage 2) | random (stage 1: resize shorter side to 1.5 S or 384, random crop)
    )
    block.update(overrides)
    return ml_collections.ConfigDict(block)


def imagenet_data_block(data_dir: str = f"gs://{PLACEHOLDER}/tfds", **overrides: Any) -> ml_collections.ConfigDict:
    """ImageNet-1k prepared once as TFDS ArrayRecord (README: 'Preparing ImageNet'), read without TensorFlow."""
    block = dict(source="tfds", name="imagenet2012", data_dir=data_dir, split="train", image_size=256,
                 random_flip=True, num_workers=16, prefetch_factor=2)
    block.update(overrides)
    return data_block(**block)


RANGES = {
    "image_size": at_least(8),  # The smallest crop rae_xla/data's transforms accept.
    "num_workers": at_least(0, note="0 = load in the main process"),
    "prefetch_factor": COUNT,
    "synthetic_num_classes": COUNT,
    "synthetic_num_images": COUNT,
}


def validate_data(config: ml_collections.ConfigDict, placement: Placement) -> None:
    """The source, its folder or TFDS build and split (rae_xla/data/validation.py, which owns the choices)."""
    from rae_xla import data  # Deferred: tfds imports take ~2 s.
    try:
        data.validate_data_config(config.data)
    except ValueError as e:
        raise ConfigError(str(e)) from e
