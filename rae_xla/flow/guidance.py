"""Classifier-free guidance and autoguidance as a velocity field, without wasted network passes.

The official sampler (docs/reference.md §3.3, §4.6) doubles the batch for CFG at *every* step and applies the
guidance only where t_min ≤ t ≤ t_max; with autoguidance, `sample_ddp.py` still doubles the batch, so
both models run on 2B rows per evaluation. All samples share one t, so here the interval test is made
on the host from the known grid: the unconditional half exists only inside the interval, and
autoguidance runs the main and the weak model on the B real rows only.
"""
import dataclasses
import math
from typing import Callable, Optional

import numpy as np
import torch

GUIDANCE_METHODS = ("cfg", "autoguidance")
_GUIDANCE_KEYS = {"method", "scale", "t_min", "t_max", "model", "null_label"}


@dataclasses.dataclass(frozen=True)
class Guidance:
    """A validated guidance request. `model` is the weaker model (autoguidance only)."""

    method: str
    scale: float
    t_min: float
    t_max: float
    model: Optional[Callable] = None
    null_label: Optional[int] = None

    def active_at(self, t):
        """Host-side interval test for a Python float t (inclusive bounds, compared in float32 as the
        official per-sample tensor test does)."""
        t32 = np.float32(t)
        return bool(np.float32(self.t_min) <= t32 <= np.float32(self.t_max))


def guidance_from_config(guidance_cfg, *, null_label: int, weak_model=None) -> Optional[dict]:
    """`sample`'s guidance argument for a `config.sample.guidance` block (method, scale, t_min, t_max); None when
    off (method 'none', or scale <= 1: no guidance, as in the official scripts). The one reading of that block,
    for the sampling jobs, training previews and in-training evaluation.

    null_label: CFG's null class (num_classes). weak_model: autoguidance's second model; a caller without one
    (previews, in-training FID) gets a ValueError rather than silently unguided samples.
    """
    g = guidance_cfg
    if g.method == "none" or g.scale <= 1.0:
        return None
    out = dict(method=g.method, scale=g.scale, t_min=g.t_min, t_max=g.t_max)
    if g.method == "cfg":
        out["null_label"] = null_label
    elif weak_model is None:
        raise ValueError(f"sample.guidance.method={g.method!r} needs a second (weak) model, which this caller "
                         "does not have; use 'cfg' or 'none'")
    else:
        out["model"] = weak_model
    return out


def parse_guidance(guidance, model=None, *, need_weak_model=True):
    """Validates a `guidance` dict → `Guidance`, or None when no guidance applies.

    Keys: method ('cfg' | 'autoguidance'), scale, t_min, t_max (shifted flow times, inclusive), model
    (autoguidance: the weaker model, a callable like the main one), null_label (CFG, optional: defaults
    to the main model's `num_classes`, the official null class). As in every official script, a
    scale ≤ 1.0 means no guidance at all (no extra passes).
    """
    if guidance is None:
        return None
    if not isinstance(guidance, dict):
        raise TypeError(f"guidance must be None or a dict(method=..., scale=..., t_min=..., t_max=...), got {type(guidance).__name__}.")
    unknown = set(guidance) - _GUIDANCE_KEYS
    missing = {"method", "scale", "t_min", "t_max"} - set(guidance)
    if unknown or missing:
        raise ValueError(f"guidance dict: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}; "
                         f"allowed keys are {sorted(_GUIDANCE_KEYS)} (t_min=0.0, t_max=1.0 is the official full range).")
    method = guidance["method"]
    if method not in GUIDANCE_METHODS:
        raise ValueError(f"guidance method {method!r} is not one of {GUIDANCE_METHODS}.")
    scale, t_min, t_max = float(guidance["scale"]), float(guidance["t_min"]), float(guidance["t_max"])
    if not (math.isfinite(scale) and 0.0 <= t_min < t_max <= 1.0):
        raise ValueError(f"guidance needs a finite scale and 0 ≤ t_min < t_max ≤ 1, got scale={scale}, t_min={t_min}, t_max={t_max}.")
    weak = guidance.get("model")  # optional key by design: only autoguidance has a second model
    if method == "autoguidance" and weak is None and need_weak_model:
        raise ValueError("autoguidance needs guidance['model'] = the weaker model (e.g. the DiT^DH-S guidance model).")
    if method == "cfg" and weak is not None:
        raise ValueError("guidance['model'] is only used by autoguidance; remove it or set method='autoguidance'.")
    if scale <= 1.0:
        return None
    null_label = guidance.get("null_label")  # optional key: CFG falls back to the model's num_classes
    if method == "cfg" and null_label is None and model is not None:
        null_label = _num_classes(model)
    return Guidance(method, scale, t_min, t_max, weak, null_label)


def _num_classes(model):
    for owner in (model, getattr(model, "y_embedder", None)):
        n = getattr(owner, "num_classes", None)
        if isinstance(n, int):
            return n
    raise ValueError("CFG needs the null class: the model has no `num_classes`; pass guidance['null_label'].")


class GuidedVelocity:
    """v(x, t) of a velocity model with optional guidance; `guided` is decided by the caller on the host.

    x: (B, C, H, W); t: (B,) float32; labels: (B,) int64, fixed for the whole run.
    """

    def __init__(self, model: Callable, labels: torch.Tensor, guidance: Optional[Guidance]):
        self.model, self.labels, self.guidance = model, labels, guidance

    def needs_guidance(self, t):
        return self.guidance is not None and self.guidance.active_at(t)

    def __call__(self, x, t, guided):
        if not guided:
            return self.model(x, t, self.labels)
        g = self.guidance
        if g.method == "cfg":
            # One forward on [x; x] with labels [y; null] (as `forward_with_cfg`), built inside the step graph.
            null = torch.full_like(self.labels, g.null_label)
            out = self.model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([self.labels, null]))
            cond, uncond = out.chunk(2)
            return uncond + g.scale * (cond - uncond)
        main = self.model(x, t, self.labels)
        weak = g.model(x, t, self.labels)  # the weak model sees the real label too (docs/reference.md §4.6)
        return weak + g.scale * (main - weak)


def rows_per_evaluation(guidance: Optional[Guidance], guided, batch_size):
    """Batch rows through (main, weak) models for one evaluation of our field."""
    if not guided:
        return batch_size, 0
    if guidance.method == "cfg":
        return 2 * batch_size, 0
    return batch_size, batch_size


def official_rows_per_evaluation(guidance: Optional[Guidance], batch_size):
    """Rows the official code spends per evaluation: CFG doubles the batch at every step regardless of
    the interval; autoguidance in `sample_ddp.py` (main) runs both models on the doubled batch."""
    if guidance is None:
        return batch_size, 0
    if guidance.method == "cfg":
        return 2 * batch_size, 0
    return 2 * batch_size, 2 * batch_size


__all__ = ["Guidance", "GuidedVelocity", "parse_guidance", "rows_per_evaluation", "official_rows_per_evaluation"]
