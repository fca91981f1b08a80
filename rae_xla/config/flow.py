"""`config.flow`: the flow-matching time distribution and its shift (docs/reference.md §4.3): the block, its
ranges, its checks."""
from __future__ import annotations

from typing import Any

import ml_collections
from ml_collections import config_dict

from rae_xla.config.checks import Placement, one_of
from rae_xla.config.ranges import ANY_NUMBER, POSITIVE
from rae_xla.flow.schedule import TRAINING_TIME_DISTRIBUTIONS


def flow_block(**overrides: Any) -> ml_collections.ConfigDict:
    """Flow-matching time distribution (docs/reference.md §4.3)."""
    block = dict(
        time_dist="logit_normal",  # logit_normal | uniform
        mu=0.0,
        sigma=1.0,
        shift_base=4096,  # alpha = sqrt(C*H*W / shift_base): sqrt(48) = 6.93 for 768x16x16.
        shift=config_dict.placeholder(float),  # set to override alpha.
    )
    block.update(overrides)
    return ml_collections.ConfigDict(block)


RANGES = {
    "mu": ANY_NUMBER,  # The logit-normal mean: negative values favour noisier times, positive cleaner ones.
    "sigma": POSITIVE,
    "shift_base": POSITIVE,
    "shift": POSITIVE,  # None (unset) = alpha from the latent size; the time shift divides by it.
}


def validate_flow(config: ml_collections.ConfigDict, placement: Placement) -> None:
    one_of(config.flow.time_dist, TRAINING_TIME_DISTRIBUTIONS, "flow.time_dist")
