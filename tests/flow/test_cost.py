"""The reported network cost equals what `sample` really runs, and never exceeds the official cost."""
import math

import pytest
import torch

from rae_xla import flow

ALPHA = math.sqrt(48)  # 256-px DINOv2-B latents


class CountingModel:
    """A velocity model that records the batch rows it is called with; label-dependent output."""

    num_classes = 10

    def __init__(self, gain):
        self.gain, self.rows = gain, 0

    def __call__(self, x, t, y):
        self.rows += x.shape[0]
        return self.gain * x * (1 + y.view(-1, 1, 1, 1).float() / 10) - t.view(-1, 1, 1, 1)


CASES = [
    ("euler", None),
    ("euler", dict(method="cfg", scale=4.0, t_min=0.0, t_max=1.0)),
    ("euler", dict(method="cfg", scale=4.0, t_min=0.2, t_max=0.8)),
    ("heun", dict(method="cfg", scale=2.0, t_min=0.5, t_max=0.9)),
    ("midpoint", dict(method="cfg", scale=2.0, t_min=0.3, t_max=1.0)),
    ("sde", dict(method="cfg", scale=2.0, t_min=0.0, t_max=0.6)),
    ("euler", dict(method="autoguidance", scale=1.5, t_min=0.0, t_max=1.0)),
    ("heun", dict(method="autoguidance", scale=1.5, t_min=0.1, t_max=0.7)),
    ("euler", dict(method="cfg", scale=1.0, t_min=0.0, t_max=1.0)),  # scale ≤ 1: no guidance, as official
]


@pytest.mark.parametrize("method,guidance", CASES)
def test_cost_matches_real_calls_and_never_exceeds_official(method, guidance):
    main, weak = CountingModel(-0.5), CountingModel(-0.3)
    if guidance is not None and guidance["method"] == "autoguidance":
        guidance = dict(guidance, model=weak)
    batch = 3
    flow.sample(main, torch.randn(batch, 2, 2, 2), torch.arange(batch), method=method, num_steps=50, shift=ALPHA,
                guidance=guidance)
    cost = flow.sampling_cost(method=method, num_steps=50, shift=ALPHA, batch_size=batch, guidance=guidance)
    assert (cost["ours"]["main"], cost["ours"]["weak"]) == (main.rows, weak.rows)
    ours, official = cost["ours"], cost["official"]
    assert ours["main"] <= official["main"] and ours["weak"] <= official["weak"]
    per_step = 2 if method in ("heun", "midpoint") else 1
    assert ours["evaluations"] == official["evaluations"] == 49 * per_step
    partial_interval = guidance is not None and (guidance["t_min"] > 0.0069 or guidance["t_max"] < 1.0)
    if guidance is not None and guidance["scale"] > 1 and (partial_interval or guidance["method"] == "autoguidance"):
        assert ours["main"] + ours["weak"] < official["main"] + official["weak"]


def test_cost_numbers_for_the_headline_cases():
    # 50-point Euler, B = 1: CFG on the whole grid costs the same as official (2 rows × 49 evaluations);
    # autoguidance halves both models' rows (official doubles the batch for both).
    full = flow.sampling_cost(method="euler", num_steps=50, shift=ALPHA, batch_size=1,
                              guidance=dict(method="cfg", scale=2.0, t_min=0.0, t_max=1.0))
    assert full["ours"] == full["official"] == dict(main=98, weak=0, evaluations=49)
    ag = flow.sampling_cost(method="euler", num_steps=50, shift=ALPHA, batch_size=1,
                            guidance=dict(method="autoguidance", scale=2.0, t_min=0.0, t_max=1.0))
    assert ag["ours"] == dict(main=49, weak=49, evaluations=49)
    assert ag["official"] == dict(main=98, weak=98, evaluations=49)
    # Interval [0.2, 0.8]: only the grid points inside it pay for the unconditional half.
    grid = flow.sampling_grid(50, ALPHA)
    inside = sum(0.2 <= t <= 0.8 for t in grid[:-1])
    part = flow.sampling_cost(method="euler", num_steps=50, shift=ALPHA, batch_size=1,
                              guidance=dict(method="cfg", scale=2.0, t_min=0.2, t_max=0.8))
    assert part["ours"]["main"] == 49 + inside and 0 < inside < 49


def test_guided_velocity_formulas():
    main, weak = CountingModel(-0.5), CountingModel(-0.3)
    x, t, y = torch.randn(2, 1, 2, 2), torch.full((2,), 0.5), torch.tensor([1, 2])
    cfg = flow.GuidedVelocity(main, y, flow.parse_guidance(dict(method="cfg", scale=3.0, t_min=0.0, t_max=1.0), main))
    cond, uncond = main(x, t, y), main(x, t, torch.full_like(y, 10))
    torch.testing.assert_close(cfg(x, t, True), uncond + 3.0 * (cond - uncond))
    torch.testing.assert_close(cfg(x, t, False), cond)
    ag = flow.GuidedVelocity(main, y, flow.parse_guidance(
        dict(method="autoguidance", scale=3.0, t_min=0.0, t_max=1.0, model=weak), main))
    torch.testing.assert_close(ag(x, t, True), weak(x, t, y) + 3.0 * (main(x, t, y) - weak(x, t, y)))
