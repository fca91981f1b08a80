"""LR schedules: the official boundaries (docs/reference.md §6.1, §5.7) and step-for-step agreement with a
LambdaLR."""

import math

import ml_collections
import pytest
import torch

from rae_xla.train import schedules

STAGE2_STEPS_PER_EPOCH = 1251  # ImageNet 1,281,167 images // global batch 1024
STAGE1_STEPS_PER_EPOCH = 2502  # global batch 512


def cfg(**overrides):
    base = dict(type="linear", base_lr=2e-4, final_lr=2e-5, warmup_epochs=40, decay_end_epoch=800,
                warmup_from_zero=False, unit="epoch")
    base.update(overrides)
    return ml_collections.ConfigDict(base)


def official_lambda(kind, warmup_steps, decay_end, final_ratio, warmup_from_zero):
    """The factor as docs/reference.md §6.1/§5.7 describe the official LambdaLR (written independently for the
    test)."""
    span = max(decay_end - warmup_steps, 1)

    def factor(step):
        if step < warmup_steps:
            return (step + 1) / warmup_steps if warmup_from_zero else 1.0
        if step >= decay_end:
            return final_ratio
        p = (step - warmup_steps) / span
        if kind == "linear":
            return 1.0 - (1.0 - final_ratio) * p
        return final_ratio + (1.0 - final_ratio) * 0.5 * (1.0 + math.cos(math.pi * p))
    return factor


def test_stage2_official_boundaries():
    lr = schedules.make_schedule(cfg(), STAGE2_STEPS_PER_EPOCH)
    # Constant 2e-4 for the 40 "warm-up" epochs = steps [0, 50040).
    assert lr(0) == 2e-4 and lr(50_039) == 2e-4
    # The decay starts at step 50,040 (factor exactly 1) and is strictly decreasing right after.
    assert lr(50_040) == 2e-4 and lr(50_041) < 2e-4
    # Half-way through [50040, 1000800): half-way between 2e-4 and 2e-5.
    assert lr((50_040 + 1_000_800) // 2) == pytest.approx(1.1e-4, rel=1e-12)
    assert lr(1_000_799) > 2e-5
    assert lr(1_000_800) == pytest.approx(2e-5, rel=1e-15)
    assert lr(1400 * STAGE2_STEPS_PER_EPOCH) == lr(1_000_800)  # constant until the end (epoch 1400)


def test_stage1_official_cosine_boundaries():
    lr = schedules.make_schedule(cfg(type="cosine", warmup_epochs=1, decay_end_epoch=16, warmup_from_zero=True),
                                 STAGE1_STEPS_PER_EPOCH)
    assert lr(0) == pytest.approx(2e-4 / 2502, rel=1e-12)  # warm-up from zero: (step + 1) / warmup_steps
    assert lr(2501) == pytest.approx(2e-4, rel=1e-12)
    assert lr(2502) == pytest.approx(2e-4, rel=1e-12)
    assert lr((2502 + 40_032) // 2) == pytest.approx(1.1e-4, rel=1e-12)
    assert lr(40_032) == pytest.approx(2e-5, rel=1e-15)
    assert lr(50_000) == lr(40_032)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("warmup_from_zero", [False, True])
def test_matches_lambdalr_every_step(kind, warmup_from_zero):
    """Same floats as the official LambdaLR stepped once per optimizer step (lr = base_lr * factor)."""
    spe, warm_ep, end_ep, base, final = 7, 2, 10, 3e-4, 1e-5
    lr = schedules.make_schedule(cfg(type=kind, warmup_epochs=warm_ep, decay_end_epoch=end_ep, base_lr=base,
                                     final_lr=final, warmup_from_zero=warmup_from_zero), spe)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, official_lambda(kind, warm_ep * spe, end_ep * spe, final / base, warmup_from_zero))
    for step in range(12 * spe):
        assert lr(step) == opt.param_groups[0]["lr"], step
        opt.step()
        sched.step()


def _probe_steps(warmup_steps, decay_end, last_step):
    """Every step around the start and the end of the decay, the first steps, the last one, and 2,000 evenly
    spaced steps in between."""
    around = lambda centre: range(max(centre - 300, 0), centre + 301)
    steps = set(range(0, 300)) | set(around(warmup_steps)) | set(around(decay_end)) | {last_step - 1, last_step}
    steps |= {round(i * last_step / 2000) for i in range(2001)}
    return sorted(steps)


@pytest.mark.parametrize("name,kind,spe,warm_ep,end_ep,total_ep,from_zero", [
    ("stage2 released (docs/reference.md §6.1)", "linear", STAGE2_STEPS_PER_EPOCH, 40, 800, 1400, False),
    ("stage1 released (docs/reference.md §5.7)", "cosine", STAGE1_STEPS_PER_EPOCH, 1, 16, 16, True),
    ("stage2 at 1252 steps/epoch (W = 1024)", "linear", 1252, 40, 800, 1400, False),
    ("cosine, held warm-up", "cosine", STAGE2_STEPS_PER_EPOCH, 40, 800, 1400, False),
])
def test_real_schedules_equal_the_official_factor_on_dense_points(name, kind, spe, warm_ep, end_ep, total_ep,
                                                                  from_zero):
    """lr(step) == base_lr * factor(step) float for float on ~3,800 steps of the full-length schedules, with the
    factor written from docs/reference.md §5.7/§6.1 (official_lambda above), including both decay boundaries."""
    base, final = 2e-4, 2e-5
    lr = schedules.make_schedule(cfg(type=kind, warmup_epochs=warm_ep, decay_end_epoch=end_ep, base_lr=base,
                                     final_lr=final, warmup_from_zero=from_zero), spe)
    warmup_steps, decay_end = warm_ep * spe, end_ep * spe
    factor = official_lambda(kind, warmup_steps, decay_end, final / base, from_zero)
    probes = _probe_steps(warmup_steps, decay_end, total_ep * spe)
    assert len(probes) > 3000, name
    mismatches = [(s, lr(s), base * factor(s)) for s in probes if lr(s) != base * factor(s)]
    assert mismatches == [], (name, mismatches[:5])
    # The boundaries themselves: the last held/warm-up step, the first decay step (factor exactly 1), the last
    # decay step (above final_lr), and the step where the decay ends (final_lr from there on).
    assert lr(warmup_steps - 1) == base and lr(warmup_steps) == base and lr(warmup_steps + 1) < base
    assert lr(decay_end - 1) > final and lr(decay_end) == base * (final / base)
    assert lr(total_ep * spe) == lr(decay_end)
    decaying = [lr(s) for s in probes if warmup_steps <= s <= decay_end]
    assert all(a > b for a, b in zip(decaying, decaying[1:]))  # Strictly decreasing through the decay.


def test_unit_step_reads_fields_as_steps():
    by_step = schedules.make_schedule(cfg(unit="step", warmup_epochs=100, decay_end_epoch=1000), steps_per_epoch=0)
    by_epoch = schedules.make_schedule(cfg(warmup_epochs=10, decay_end_epoch=100), steps_per_epoch=10)
    assert [by_step(s) for s in range(0, 1200, 7)] == [by_epoch(s) for s in range(0, 1200, 7)]


def test_linear_warmup_from_zero_then_monotone_decay():
    lr = schedules.make_schedule(cfg(warmup_epochs=2, decay_end_epoch=5, warmup_from_zero=True), 10)
    assert [lr(s) for s in range(20)] == pytest.approx([2e-4 * (s + 1) / 20 for s in range(20)], rel=1e-12)
    decay = [lr(s) for s in range(20, 60)]
    assert all(a >= b for a, b in zip(decay, decay[1:]))
    assert decay[-1] == pytest.approx(2e-5)


def test_constant_with_and_without_warmup():
    flat = schedules.make_schedule(cfg(type="constant", final_lr=2e-4, warmup_epochs=0), 10)
    assert {flat(s) for s in range(0, 1000, 37)} == {2e-4}
    warm = schedules.make_schedule(cfg(type="constant", final_lr=2e-4, warmup_epochs=1, warmup_from_zero=True), 4)
    assert [warm(s) for s in range(6)] == pytest.approx([5e-5, 1e-4, 1.5e-4, 2e-4, 2e-4, 2e-4])


@pytest.mark.parametrize("overrides, message", [
    (dict(type="exponential"), "Unknown LR schedule type"),
    (dict(unit="iterations"), "Unknown LR schedule unit"),
    (dict(warmup_epochs=50, decay_end_epoch=40), "decay must end at or after the warm-up"),
    (dict(type="constant"), "never reaches final_lr"),
    (dict(base_lr=0.0), "base_lr must be > 0"),
    (dict(unit="step", warmup_epochs=10.5), "whole number of steps"),
])
def test_bad_config_raises_clear_error(overrides, message):
    with pytest.raises(ValueError, match=message):
        schedules.make_schedule(cfg(**overrides), 1251)


def test_missing_field_is_an_error_not_a_default():
    c = cfg()
    del c["warmup_from_zero"]
    with pytest.raises(ValueError, match="missing \\['warmup_from_zero'\\]"):
        schedules.make_schedule(c, 1251)


def test_negative_step_rejected():
    with pytest.raises(ValueError, match="step must be >= 0"):
        schedules.make_schedule(cfg(), 1251)(-1)
