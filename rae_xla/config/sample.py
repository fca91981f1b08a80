"""`config.sample`: how samples are drawn (sampler and guidance, docs/reference.md §3.3, §4.6), for training
previews and the sampling jobs: the blocks, their ranges, their checks."""
from __future__ import annotations

from typing import Any

import ml_collections

from rae_xla.config.checks import Placement, one_of, require
from rae_xla.config.ranges import NON_NEGATIVE, PROBABILITY, at_least
from rae_xla.flow.guidance import GUIDANCE_METHODS
from rae_xla.flow.samplers import ADAPTIVE_METHODS, METHODS


def guidance_block(**overrides: Any) -> ml_collections.ConfigDict:
    """CFG with an interval, or autoguidance with a weaker model (docs/reference.md §3.3, §4.6)."""
    block = dict(
        method="none",  # none | cfg | autoguidance
        scale=1.0,
        t_min=0.0,
        t_max=1.0,
        # Autoguidance (sampling jobs; training previews refuse it): the weaker model's preset and its weights
        # (a stage2_model.pt, local / gs:// / hf://, or a training workdir).
        model_preset="DiTDH-S",
        model_weights="",
    )
    block.update(overrides)
    return ml_collections.ConfigDict(block)


def sample_block(**overrides: Any) -> ml_collections.ConfigDict:
    """How samples are drawn (training previews and sampling jobs)."""
    block = dict(
        method="euler",  # euler | heun | midpoint | sde | dopri5 (adaptive, eager backends only)
        num_steps=50,  # grid points as in the released configs: 50 -> 49 steps.
        guidance=guidance_block(),
    )
    block.update(overrides)
    return ml_collections.ConfigDict(block)


RANGES = {
    "num_steps": at_least(2, note="grid points: 2 is one step"),
    "guidance.scale": NON_NEGATIVE,  # <= 1 means no guidance (as in the official scripts), so 0..1 are valid.
    "guidance.t_min": PROBABILITY,  # The guidance interval lies in the flow time [0, 1].
    "guidance.t_max": PROBABILITY,
}


def validate_sample(config: ml_collections.ConfigDict, placement: Placement) -> None:
    """The sampler, the guidance method and interval, and autoguidance only where a second model exists."""
    one_of(config.sample.method, METHODS + ADAPTIVE_METHODS, "sample.method")
    guidance = config.sample.guidance
    one_of(guidance.method, ("none",) + GUIDANCE_METHODS, "sample.guidance.method")
    require(guidance.t_min < guidance.t_max,
            f"sample.guidance needs 0 <= t_min < t_max <= 1, got [{guidance.t_min}, {guidance.t_max}]")
    # Training previews have one model; autoguidance needs a second, weaker one that no preview config names.
    require(guidance.method != "autoguidance" or "train" not in config or config.train.sample_every == 0,
            "sample.guidance.method='autoguidance' cannot be used for training previews: they sample the EMA "
            "model alone and autoguidance needs a second (weak) model. Set --config.sample.guidance.method=cfg "
            "(or none) for training, or --config.train.sample_every=0; sample with autoguidance in a sampling job")
