"""Learning-rate schedules as pure functions of the optimizer step.

Each schedule maps `step` (the number of optimizer updates already applied: 0 for the first update) to a
Python float. The trainer sets `group['lr']` on the host before every update; under XLA a host float LR does not
recompile the step graph (docs/xla_notes.md §5.1 item 3), so no LambdaLR object or device tensor is needed.

The formulas are those of the official `build_scheduler` (docs/reference.md §6.1 and §5.7), which wraps a
`LambdaLR`: lr(step) = base_lr * factor(step), with
    warmup_steps = int(warmup_epochs * steps_per_epoch), decay_end = int(decay_end_epoch * steps_per_epoch)
    factor = (step + 1) / warmup_steps   if step < warmup_steps and warmup_from_zero
           = 1                           if step < warmup_steps otherwise
           = r                           if step >= decay_end, with r = final_lr / base_lr
           = linear:  1 - (1 - r) * p    with p = (step - warmup_steps) / (decay_end - warmup_steps)
           = cosine:  r + (1 - r) * (1 + cos(pi * p)) / 2
The official code computes the LR as base_lr * factor, so we do too (bit-equal floats, not just close).

Official stage 2 (linear, 40 warm-up epochs held constant, decay to 0.1x at epoch 800, 1251 steps/epoch):
constant 2e-4 for steps [0, 50040), linear decay over [50040, 1000800), constant 2e-5 from step 1000800.
Official stage 1 (cosine, 1 warm-up epoch from zero, 16 epochs, 2502 steps/epoch): warm-up over [0, 2502),
cosine to 2e-5 at step 40032.

One difference from the official code: it silently clamps decay_end up to warmup_steps; we raise instead.
"""

import math
from collections.abc import Callable

import ml_collections

from rae_xla.config.train import SCHEDULE_TYPES  # The types this module implements, declared with the config.
from rae_xla.config.train import SCHEDULE_UNITS as UNITS


def _warmup_factor(step: int, warmup_steps: int, warmup_from_zero: bool) -> float | None:
    """The factor inside the warm-up window, or None once step >= warmup_steps."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps if warmup_from_zero else 1.0
    return None


def _check_step(step: int) -> None:
    if step < 0:
        raise ValueError(f"LR schedule step must be >= 0 (number of optimizer updates done); got {step}.")


def _check_boundaries(base_lr: float, warmup_steps: int, decay_end_step: int) -> None:
    if base_lr <= 0:
        raise ValueError(f"base_lr must be > 0 (the schedule is base_lr * factor); got {base_lr}.")
    if warmup_steps < 0:
        raise ValueError(f"warm-up length must be >= 0 steps; got {warmup_steps}.")
    if decay_end_step < warmup_steps:
        raise ValueError(
            f"decay must end at or after the warm-up: decay_end step {decay_end_step} < warm-up steps "
            f"{warmup_steps}. Set decay_end_epoch >= warmup_epochs (the official code silently clamped this).")


def constant(step: int, *, base_lr: float, warmup_steps: int = 0, warmup_from_zero: bool = False) -> float:
    """base_lr after an optional warm-up (the official 'constant' always warmed up from zero; we follow the flag)."""
    _check_step(step)
    _check_boundaries(base_lr, warmup_steps, warmup_steps)
    factor = _warmup_factor(step, warmup_steps, warmup_from_zero)
    return base_lr * (1.0 if factor is None else factor)


def _warmup_then_decay(step: int, *, base_lr: float, final_lr: float, warmup_steps: int, decay_end_step: int,
                       warmup_from_zero: bool, decay_factor: Callable[[float, float], float]) -> float:
    """Warm-up, then base_lr * decay_factor(progress in [0, 1), final_lr / base_lr) until decay_end_step,
    then final_lr. Each schedule keeps the official factor expression exactly (tested float for float)."""
    _check_step(step)
    _check_boundaries(base_lr, warmup_steps, decay_end_step)
    factor = _warmup_factor(step, warmup_steps, warmup_from_zero)
    if factor is None:
        final_ratio = final_lr / base_lr
        if step >= decay_end_step:
            factor = final_ratio
        else:
            # decay_end_step > step >= warmup_steps here, so the span is >= 1 (the official max(span, 1)).
            progress = (step - warmup_steps) / (decay_end_step - warmup_steps)
            factor = decay_factor(progress, final_ratio)
    return base_lr * factor


def linear(step: int, *, base_lr: float, final_lr: float, warmup_steps: int, decay_end_step: int,
           warmup_from_zero: bool) -> float:
    """Warm-up, then linear decay from base_lr at warmup_steps to final_lr at decay_end_step, then final_lr."""
    return _warmup_then_decay(step, base_lr=base_lr, final_lr=final_lr, warmup_steps=warmup_steps,
                              decay_end_step=decay_end_step, warmup_from_zero=warmup_from_zero,
                              decay_factor=lambda progress, ratio: 1.0 - (1.0 - ratio) * progress)


def cosine(step: int, *, base_lr: float, final_lr: float, warmup_steps: int, decay_end_step: int,
           warmup_from_zero: bool) -> float:
    """Warm-up, then half-cosine from base_lr to final_lr over [warmup_steps, decay_end_step], then final_lr."""
    return _warmup_then_decay(
        step, base_lr=base_lr, final_lr=final_lr, warmup_steps=warmup_steps, decay_end_step=decay_end_step,
        warmup_from_zero=warmup_from_zero,
        decay_factor=lambda progress, ratio: ratio + (1.0 - ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def _to_steps(value: float, unit: str, steps_per_epoch: int, field: str) -> int:
    """Epochs -> steps exactly as the official code (int() truncation); 'step' values must be whole."""
    if unit == "epoch":
        return int(value * steps_per_epoch)
    if float(value) != int(value):
        raise ValueError(f"sched_cfg.{field}={value} must be a whole number of steps when unit='step'.")
    return int(value)


def make_schedule(sched_cfg: ml_collections.ConfigDict, steps_per_epoch: int) -> Callable[[int], float]:
    """Builds lr(step) from a config with every field explicit.

    Args:
      sched_cfg: fields `type` ('constant'|'linear'|'cosine'), `base_lr`, `final_lr`, `warmup_epochs`,
        `decay_end_epoch`, `warmup_from_zero`, `unit` ('epoch'|'step'; with 'step' the two *_epoch fields
        are read as optimizer steps). For 'constant', final_lr must equal base_lr and decay_end_epoch is unused.
      steps_per_epoch: optimizer steps per epoch (e.g. 1251 for ImageNet at global batch 1024).
    Returns:
      A function of the optimizer step (int >= 0) returning the LR as a Python float.
    """
    required = ("type", "base_lr", "final_lr", "warmup_epochs", "decay_end_epoch", "warmup_from_zero", "unit")
    missing = [k for k in required if k not in sched_cfg]
    if missing:
        raise ValueError(f"LR schedule config is missing {missing}; every field must be set explicitly "
                         f"(required: {list(required)}).")
    kind, unit = sched_cfg.type, sched_cfg.unit
    if kind not in SCHEDULE_TYPES:
        raise ValueError(f"Unknown LR schedule type {kind!r}; choose one of {SCHEDULE_TYPES}.")
    if unit not in UNITS:
        raise ValueError(f"Unknown LR schedule unit {unit!r}; choose one of {UNITS}.")
    if unit == "epoch" and (not isinstance(steps_per_epoch, int) or steps_per_epoch <= 0):
        raise ValueError(f"steps_per_epoch must be a positive int with unit='epoch'; got {steps_per_epoch!r}.")
    base_lr, final_lr = float(sched_cfg.base_lr), float(sched_cfg.final_lr)
    warmup_from_zero = bool(sched_cfg.warmup_from_zero)
    warmup_steps = _to_steps(sched_cfg.warmup_epochs, unit, steps_per_epoch, "warmup_epochs")
    decay_end_step = _to_steps(sched_cfg.decay_end_epoch, unit, steps_per_epoch, "decay_end_epoch")

    if kind == "constant":
        if final_lr != base_lr:
            raise ValueError(f"A 'constant' schedule never reaches final_lr={final_lr}; set final_lr = base_lr "
                             f"({base_lr}) or use type 'linear'/'cosine'.")
        _check_boundaries(base_lr, warmup_steps, warmup_steps)
        return lambda step: constant(step, base_lr=base_lr, warmup_steps=warmup_steps,
                                     warmup_from_zero=warmup_from_zero)
    _check_boundaries(base_lr, warmup_steps, decay_end_step)  # fail at build time, not at step 50,040
    fn = linear if kind == "linear" else cosine
    return lambda step: fn(step, base_lr=base_lr, final_lr=final_lr, warmup_steps=warmup_steps,
                           decay_end_step=decay_end_step, warmup_from_zero=warmup_from_zero)
