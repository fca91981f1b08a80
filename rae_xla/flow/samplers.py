"""Fixed-grid samplers for velocity models: Euler, Heun (torchdiffeq `heun2`), midpoint, Euler–Maruyama.

Integration runs from t = 1 (noise) down the official shifted grid (`sampling_grid`), num_steps points
= num_steps − 1 steps, and returns the state at the last grid point (docs/reference.md §4.4).

Static shapes for XLA (docs/xla_notes.md §4, pytorch/xla#6614): the loop stays in Python, but each step is
one function of (x, t_cur, t_next) whose graph depends only on which of its evaluations are guided
(decided on the host from the grid). The per-step times are fresh (B,) host tensors moved to the
state's device, i.e. graph inputs, never constants, so every step reuses the same few graphs:
1 (no guidance), ≤ 2 for one-stage methods and ≤ 4 for two-stage ones with an interval. The optional
`step_fn_wrapper` (e.g. `runtime.compile_step`) turns each step function into a compiled graph.
"""
import functools
from typing import Callable, Optional

import torch

from rae_xla.flow.adaptive import integrate_dopri5
from rae_xla.flow.guidance import GuidedVelocity, parse_guidance
from rae_xla.flow.schedule import sampling_grid

METHODS = ("euler", "heun", "midpoint", "sde")  # Fixed grid: static shapes, compiled steps.
ADAPTIVE_METHODS = ("dopri5",)  # Eager only (adaptive.py).
DIFFUSION_FORMS = ("sigma", "constant")


def _col(t, x):
    """(B,) → (B, 1, …, 1) for broadcasting against x."""
    return t.view(-1, *([1] * (x.dim() - 1)))


def stage_times(method, t_cur, t_next):
    """Host floats at which one step evaluates the velocity field (decides guidance per evaluation)."""
    if method in ("euler", "sde"):
        return (t_cur,)
    if method == "heun":
        return (t_cur, t_next)
    if method == "midpoint":
        return (t_cur, t_cur + 0.5 * (t_next - t_cur))
    raise ValueError(f"unknown sampling method {method!r}; use one of {METHODS}.")


def plan_steps(method, grid, needs_guidance):
    """[(k, guided flags per evaluation, is_last)] for the num_steps − 1 steps of `grid` (host only)."""
    last = len(grid) - 2
    return [(k, tuple(needs_guidance(s) for s in stage_times(method, grid[k], grid[k + 1])), k == last)
            for k in range(len(grid) - 1)]


def euler_step(field, flags, is_last, x, t_cur, t_next):
    """x + (t_next − t_cur)·v(x, t_cur)."""
    return x + _col(t_next - t_cur, x) * field(x, t_cur, flags[0])


def heun_step(field, flags, is_last, x, t_cur, t_next):
    """torchdiffeq `heun2`: predictor Euler, then the trapezoid of the two slopes (2 evaluations)."""
    dt = _col(t_next - t_cur, x)
    k1 = field(x, t_cur, flags[0])
    k2 = field(x + dt * k1, t_next, flags[1])
    return x + dt * (0.5 * k1 + 0.5 * k2)


def midpoint_step(field, flags, is_last, x, t_cur, t_next):
    """Explicit midpoint: slope at (t_cur + dt/2, x + dt/2·k1) (2 evaluations)."""
    half_dt = 0.5 * (t_next - t_cur)
    k1 = field(x, t_cur, flags[0])
    x_mid = x + _col(half_dt, x) * k1
    return x + _col(2 * half_dt, x) * field(x_mid, t_cur + half_dt, flags[1])


def diffusion_coefficient(form, norm, t):
    """w(t) ≥ 0 of the marginal-preserving SDE family dx = [v − w·s] dt + sqrt(2w) dW̄ (t decreasing).

    Any w ≥ 0 keeps the path's marginals. The official `SBDM` form α̇/α·σ² − σσ̇ was derived for the SiT
    time direction; with t = 1 as noise it equals −t/(1 − t) < 0, hence sqrt of a negative → NaN
    (docs/reference.md §4.5). Its sign-corrected version t/(1 − t) is infinite at t = 1 where the grid starts,
    so it is not offered. `sigma`: w = norm·σ_t = norm·t (SiT's `sigma`); `constant`: w = norm.
    """
    if form == "sigma":
        return norm * t
    if form == "constant":
        return torch.full_like(t, norm)
    raise ValueError(f"unknown SDE diffusion form {form!r}; use one of {DIFFUSION_FORMS}.")


def sde_step(field, flags, is_last, x, t_cur, t_next, *, diffusion_form, diffusion_norm, generator):
    """Euler–Maruyama step of the reverse-time SDE; the last step adds no noise (the mean)."""
    v = field(x, t_cur, flags[0])
    t = _col(t_cur, x)
    dt = _col(t_next - t_cur, x)  # negative
    score = (-(1 - t) * v - x) / t  # s(x,t) = −ε̂/t for the linear path (t > 0 on the whole grid)
    w = _col(diffusion_coefficient(diffusion_form, diffusion_norm, t_cur), x)
    x_mean = x + dt * (v - w * score)
    if is_last:
        return x_mean
    xi = torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)
    return x_mean + torch.sqrt(2 * w * (-dt)) * xi


_STEPS = {"euler": euler_step, "heun": heun_step, "midpoint": midpoint_step}


def sample(model, noise, labels, *, method, num_steps, shift, guidance=None,
           step_fn_wrapper: Optional[Callable[[Callable], Callable]] = None,
           diffusion_form="sigma", diffusion_norm=1.0, generator=None, atol=1e-6, rtol=1e-3):
    """Integrates from `noise` (t = 1) along the official grid and returns the final latent.

    model: callable (x (B,C,H,W), t (B,) float32, y (B,) int64) → velocity (B,C,H,W), in eval mode.
    noise: (B,C,H,W) on the sampling device; labels: (B,) int64 on the same device.
    method: 'euler' | 'heun' (torchdiffeq heun2) | 'midpoint' | 'sde' (Euler–Maruyama).
    num_steps: grid points (50 → 49 steps, as in the official configs); shift: α ≥ 1 (`time_shift_alpha`).
    guidance: None or dict(method='cfg'|'autoguidance', scale, t_min, t_max[, model][, null_label]).
    step_fn_wrapper: given fn(x, t_cur, t_next) → x_next, returns the function to call (e.g. a
        compiled XLA graph); identity when None. Called once per distinct step graph.
    diffusion_form / diffusion_norm / generator: SDE only (`diffusion_coefficient`; noise RNG).
    atol / rtol: 'dopri5' only (the official configs' 1e-6 / 1e-3); it integrates adaptively from 1 to the
        last grid time, reading its error estimate on the host every step (eager only, no step_fn_wrapper).
    """
    if method not in METHODS + ADAPTIVE_METHODS:
        raise ValueError(f"unknown sampling method {method!r}; use one of {METHODS + ADAPTIVE_METHODS}.")
    if method in ADAPTIVE_METHODS and step_fn_wrapper is not None:
        raise ValueError("dopri5 chooses its steps from the data, so it cannot run as fixed compiled step graphs; "
                         "use euler/heun/midpoint under XLA, or call it without step_fn_wrapper (eager).")
    if noise.dim() < 2 or labels.shape != (noise.shape[0],):
        raise ValueError(f"labels must be (B,) = ({noise.shape[0]},) for noise {tuple(noise.shape)}, got {tuple(labels.shape)}.")
    if method == "sde" and diffusion_norm < 0:
        raise ValueError(f"diffusion_norm must be ≥ 0 (0 gives the Euler ODE), got {diffusion_norm}.")
    grid = sampling_grid(num_steps, shift)
    spec = parse_guidance(guidance, model)
    for name, net in (("model", model), ("guidance['model']", spec.model if spec is not None else None)):
        if getattr(net, "training", False):
            # DiT label dropout (p = 0.1) is active in train mode and would silently drop classes.
            raise ValueError(f"{name} is in training mode; call .eval() on it before sampling.")
    field = GuidedVelocity(model, labels, spec)
    if method == "dopri5":
        return _sample_dopri5(field, noise, grid[-1], atol=atol, rtol=rtol)
    wrap = step_fn_wrapper or (lambda fn: fn)
    if method == "sde":
        step = functools.partial(sde_step, diffusion_form=diffusion_form, diffusion_norm=float(diffusion_norm), generator=generator)
    else:
        step = _STEPS[method]

    batch = noise.shape[0]
    # Host copy of every step's time, one (B,) row each; each row moves to the device as graph input.
    t_host = torch.tensor(grid, dtype=torch.float32).unsqueeze(1).repeat(1, batch)
    compiled = {}
    x = noise
    with torch.no_grad():
        for k, flags, is_last in plan_steps(method, grid, field.needs_guidance):
            key = (flags, is_last and method == "sde")  # only the SDE's last step differs in graph
            if key not in compiled:
                compiled[key] = wrap(functools.partial(step, field, flags, key[1]))
            x = compiled[key](x, t_host[k].to(noise.device), t_host[k + 1].to(noise.device))
    return x


def _sample_dopri5(field, noise, t_end, *, atol, rtol):
    """Adaptive integration of the (guided) field from t = 1 to `t_end`; guidance decided per evaluation time."""
    batch = noise.shape[0]

    def velocity(x, t):
        t_vec = torch.full((batch,), t, dtype=torch.float32, device=noise.device)
        return field(x, t_vec, field.needs_guidance(t))

    with torch.no_grad():
        x, _ = integrate_dopri5(velocity, noise, 1.0, t_end, atol=atol, rtol=rtol)
    return x
