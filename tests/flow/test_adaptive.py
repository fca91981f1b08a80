"""The adaptive dopri5 sampler: accuracy on a known solution, agreement with a fine fixed grid, guards."""
import math

import pytest
import torch

from rae_xla import flow
from rae_xla.models.ditdh import DiTDH


def test_dopri5_solves_a_linear_ode_to_its_tolerance():
    lam = torch.tensor(1.7, dtype=torch.float64)
    x0 = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for rtol in (1e-3, 1e-8):
        x, stats = flow.integrate_dopri5(lambda x, t: lam * x, x0, 1.0, 0.2, atol=rtol * 1e-3, rtol=rtol)
        exact = x0 * math.exp(float(lam) * (0.2 - 1.0))
        error = float((x - exact).abs().max() / exact.abs().max())
        assert error < 20 * rtol, (rtol, error)
        assert stats["accepted"] >= 1 and stats["evaluations"] == 2 + 6 * (stats["accepted"] + stats["rejected"])
    # Tighter tolerance -> more steps (the controller is doing its job).
    _, loose = flow.integrate_dopri5(lambda x, t: lam * math.sin(5 * t) * x, x0, 1.0, 0.0, atol=1e-4, rtol=1e-4)
    _, tight = flow.integrate_dopri5(lambda x, t: lam * math.sin(5 * t) * x, x0, 1.0, 0.0, atol=1e-9, rtol=1e-9)
    assert tight["accepted"] > loose["accepted"]


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    model = DiTDH(input_size=4, patch_size=1, in_channels=8, hidden_size=[32, 48], depth=[1, 1], num_heads=[2, 2],
                  num_classes=10)
    for p in model.parameters():  # DiT^DH zero-inits its outputs; give every layer weight so the field is not 0.
        torch.nn.init.normal_(p, std=0.3)
    return model.eval()


@pytest.mark.parametrize("guidance", [None, dict(method="cfg", scale=2.0, t_min=0.2, t_max=0.8)])
def test_dopri5_matches_a_fine_fixed_grid_on_a_dit(tiny_model, guidance):
    g = torch.Generator().manual_seed(1)
    noise, labels = torch.randn(2, 8, 4, 4, generator=g), torch.tensor([3, 7])
    adaptive = flow.sample(tiny_model, noise, labels, method="dopri5", num_steps=50, shift=2.0,
                           guidance=guidance, atol=1e-7, rtol=1e-6)
    fine = flow.sample(tiny_model, noise, labels, method="heun", num_steps=2000, shift=2.0, guidance=guidance)
    coarse = flow.sample(tiny_model, noise, labels, method="euler", num_steps=6, shift=2.0, guidance=guidance)
    # Same ODE, same end time (the grid's last point does not depend on num_steps).
    assert float((adaptive - fine).abs().max()) < 1e-3 * float(fine.abs().max())
    assert float((coarse - fine).abs().max()) > 10 * float((adaptive - fine).abs().max())


def test_dopri5_refuses_compiled_steps(tiny_model):
    with pytest.raises(ValueError, match="cannot run as fixed compiled step graphs"):
        flow.sample(tiny_model, torch.randn(1, 8, 4, 4), torch.tensor([0]), method="dopri5", num_steps=10,
                    shift=1.0, step_fn_wrapper=lambda fn: fn)
