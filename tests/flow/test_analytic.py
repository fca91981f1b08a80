"""Samplers and time maps on fields with known solutions (no network)."""
import math

import pytest
import torch

from rae_xla import flow


class ConstantField:
    def __init__(self, c):
        self.c = c

    def __call__(self, x, t, y):
        return self.c.expand_as(x)


class LinearField:
    """dx/dt = λ·x, solution x(t) = x(1)·exp(λ(t − 1))."""

    def __init__(self, lam):
        self.lam = lam

    def __call__(self, x, t, y):
        return self.lam * x


class GaussianDataField:
    """Exact velocity for data ~ N(0, s²·I) on the linear path: E[ε − x₀ | x_t] = x_t·(t − (1−t)s²)/var_t."""

    def __init__(self, s):
        self.s = s

    def marginal_var(self, t):
        return (1 - t) ** 2 * self.s ** 2 + t ** 2

    def __call__(self, x, t, y):
        t = t.view(-1, *([1] * (x.dim() - 1)))
        return x * (t - (1 - t) * self.s ** 2) / self.marginal_var(t)


def _labels(b):
    return torch.zeros(b, dtype=torch.long)


def test_euler_exact_on_constant_field():
    z = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    c = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    grid = flow.sampling_grid(7, 2.0)
    out = flow.sample(ConstantField(c), z, _labels(3), method="euler", num_steps=7, shift=2.0)
    # Times are float32 (as the official model input), so the per-step dt carry float32 rounding.
    torch.testing.assert_close(out, z + (grid[-1] - grid[0]) * c, rtol=1e-6, atol=1e-6)


def _final_error(method, num_steps, lam=1.5):
    z = torch.randn(4, 1, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = flow.sample(LinearField(lam), z, _labels(4), method=method, num_steps=num_steps, shift=1.0)
    t_end = flow.sampling_grid(num_steps, 1.0)[-1]
    exact = z * math.exp(lam * (t_end - 1.0))
    return (out - exact).abs().max().item()


@pytest.mark.parametrize("method,order", [("euler", 1), ("heun", 2), ("midpoint", 2)])
def test_convergence_order_on_linear_field(method, order):
    # shift 1 → a uniform grid; doubling the steps (11 → 21 points) divides the error by ~2^order.
    ratio = _final_error(method, 11) / _final_error(method, 21)
    assert 2 ** order * 0.85 < ratio < 2 ** order * 1.15, ratio


def test_sde_with_zero_diffusion_equals_euler():
    z = torch.randn(2, 3, 4, 4)
    field = GaussianDataField(0.7)
    ode = flow.sample(field, z, _labels(2), method="euler", num_steps=12, shift=3.0)
    sde = flow.sample(field, z, _labels(2), method="sde", num_steps=12, shift=3.0, diffusion_norm=0.0)
    torch.testing.assert_close(sde, ode, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("form", ["sigma", "constant"])
def test_sde_is_finite_and_matches_the_marginal(form):
    # The official SBDM form gives NaN here (negative diffusion); a correct diffusion keeps the path's
    # marginal: the final variance must equal var_t at the last grid point, not just be finite.
    s = 0.5
    field = GaussianDataField(s)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(20000, 1, 1, 1, dtype=torch.float64, generator=g)
    out = flow.sample(field, z, _labels(20000), method="sde", num_steps=200, shift=1.0, diffusion_form=form,
                      generator=g)
    assert torch.isfinite(out).all()
    t_end = flow.sampling_grid(200, 1.0)[-1]
    expected = field.marginal_var(t_end)
    assert abs(out.var().item() / expected - 1) < 0.05, (out.var().item(), expected)
    # And the noise really is injected: the result differs from the deterministic ODE.
    ode = flow.sample(field, z, _labels(20000), method="euler", num_steps=200, shift=1.0)
    assert (out - ode).abs().mean() > 1e-2


def test_diffusion_coefficients_are_non_negative():
    t = torch.linspace(0, 1, 11)
    for form in flow.samplers.DIFFUSION_FORMS:
        assert (flow.diffusion_coefficient(form, 1.0, t) >= 0).all()


def test_time_shift_alpha_and_training_times():
    assert flow.time_shift_alpha((768, 16, 16)) == pytest.approx(math.sqrt(48))
    assert flow.time_shift_alpha((768, 32, 32)) == pytest.approx(math.sqrt(192))
    g = torch.Generator().manual_seed(0)
    for dist in ("uniform", "logit_normal"):
        t = flow.sample_training_time(4096, dist=dist, mu=0.0, sigma=1.0, alpha=math.sqrt(48), device="cpu",
                                      generator=g)
        assert t.shape == (4096,) and t.dtype == torch.float32
        assert 0.0 <= t.min() and t.max() <= 1.0
    # logit-normal + shift at 256 px has median ≈ 0.874 (docs/reference.md §4.3).
    assert t.median().item() == pytest.approx(0.874, abs=0.02)
    u = torch.tensor([0.0, 0.5, 0.999])
    t = flow.training_time_from_uniform(u, dist="uniform", alpha=1.0)
    torch.testing.assert_close(t, u * 0.999)
    torch.testing.assert_close(flow.shift_time(t, 4.0), 4 * t / (1 + 3 * t))


def test_sampling_grid_endpoints():
    alpha = math.sqrt(48)
    grid = flow.sampling_grid(50, alpha)
    assert len(grid) == 50 and grid[0] == 1.0
    assert grid[-1] == pytest.approx(0.0068874, rel=1e-4)  # docs/reference.md §4.4
    assert grid[1] == pytest.approx(0.99701, rel=1e-5)
    assert all(a > b for a, b in zip(grid, grid[1:]))


@pytest.mark.parametrize("bad,match", [
    (dict(method="cfgg", scale=2.0, t_min=0.0, t_max=1.0), "not one of"),
    (dict(method="cfg", scale=2.0, t_min=0.8, t_max=0.2), "t_min < t_max"),
    (dict(method="cfg", scale=2.0), "missing keys"),
    (dict(method="autoguidance", scale=2.0, t_min=0.0, t_max=1.0), "weaker model"),
    (dict(method="cfg", scale=2.0, t_min=0.0, t_max=1.0, typo=1), "unknown keys"),
])
def test_bad_guidance_is_rejected(bad, match):
    with pytest.raises(ValueError, match=match):
        flow.sample(ConstantField(torch.zeros(1)), torch.zeros(1, 1, 1, 1), _labels(1), method="euler", num_steps=3,
                    shift=1.0, guidance=bad)


def test_bad_arguments_are_rejected():
    z = torch.zeros(2, 1, 1, 1)
    field = ConstantField(torch.zeros(1))
    with pytest.raises(ValueError, match="unknown sampling method"):
        flow.sample(field, z, _labels(2), method="heun2", num_steps=3, shift=1.0)
    with pytest.raises(ValueError, match="grid points"):
        flow.sample(field, z, _labels(2), method="euler", num_steps=1, shift=1.0)
    with pytest.raises(ValueError, match="α"):
        flow.sample(field, z, _labels(2), method="euler", num_steps=3, shift=0.5)
    with pytest.raises(ValueError, match="labels"):
        flow.sample(field, z, _labels(3), method="euler", num_steps=3, shift=1.0)
    with pytest.raises(ValueError, match="training mode"):
        flow.sample(torch.nn.Identity(), z, _labels(2), method="euler", num_steps=3, shift=1.0)
    with pytest.raises(ValueError, match="batch dimension"):
        flow.time_shift_alpha((8, 768, 16, 16))
    with pytest.raises(ValueError, match="mu and sigma"):
        flow.training_time_from_uniform(torch.rand(3), dist="logit_normal", alpha=1.0)
