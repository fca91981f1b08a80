"""Adaptive Dormand–Prince 5(4) ODE sampler (torchdiffeq's `dopri5`), for eager use.

The official configs offer `dopri5` with atol 1e-6, rtol 1e-3 (docs/reference.md §4.4): integrate from t = 1 to the
last grid time shift(0.001) with step sizes chosen from a local error estimate. Each accepted or rejected step
depends on that estimate, i.e. on the data, so the step count is not static: this sampler reads the error on
the host every step and does not belong under XLA (use euler / heun / midpoint there). The result agrees with
the official one to the solver tolerance, not bit for bit (torchdiffeq also interpolates through every output
grid point).
"""
import math

import torch

# Dormand–Prince 5(4) tableau: stage nodes c, stage weights a, 5th-order weights b and the embedded
# 4th-order weights b* (their difference estimates the local error). The last stage is evaluated at the new
# point with the b weights ("first same as last"): its slope starts the next step for free.
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_B_STAR = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
_ERR = tuple(b - bs for b, bs in zip(_B, _B_STAR))

SAFETY, MIN_FACTOR, MAX_FACTOR = 0.9, 0.2, 10.0  # torchdiffeq's step-size controller constants.


def _rms(x):
    return float(torch.sqrt(torch.mean(x.double() ** 2)))  # sync point: the adaptive step needs it on the host.


def _initial_step(f, x0, t0, direction, k0, atol, rtol):
    """Hairer, Nørsett & Wanner's starting step (as torchdiffeq's `_select_initial_step`), 4th-order method."""
    scale = atol + rtol * x0.abs()
    d0, d1 = _rms(x0 / scale), _rms(k0 / scale)
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    k1 = f(x0 + direction * h0 * k0, t0 + direction * h0)
    d2 = _rms((k1 - k0) / scale) / h0
    h1 = max(1e-6, h0 * 1e-3) if max(d1, d2) <= 1e-15 else (0.01 / max(d1, d2)) ** (1 / 5)
    return min(100 * h0, h1)


def integrate_dopri5(f, x0, t0: float, t1: float, *, atol: float = 1e-6, rtol: float = 1e-3,
                     max_steps: int = 10_000):
    """Solves dx/dt = f(x, t) from t0 to t1 (either direction); returns (x(t1), stats).

    f: (x, t as a Python float) -> dx/dt, same shape as x. stats: dict(evaluations, accepted, rejected).
    """
    direction = 1.0 if t1 >= t0 else -1.0
    stats = dict(evaluations=1, accepted=0, rejected=0)
    t, x = t0, x0
    k_first = f(x, t)
    h = _initial_step(f, x, t, direction, k_first, atol, rtol)
    stats["evaluations"] += 1
    while direction * (t1 - t) > 1e-12:
        if stats["accepted"] + stats["rejected"] >= max_steps:
            raise RuntimeError(f"dopri5 took {max_steps} steps without reaching t={t1}; loosen atol/rtol.")
        h = min(h, abs(t1 - t))
        dt = direction * h
        k = [k_first]
        for i in range(1, 7):
            x_stage = x + dt * sum(a * kj for a, kj in zip(_A[i], k) if a != 0.0)
            k.append(f(x_stage, t + _C[i] * dt))
        stats["evaluations"] += 6
        x_new = x_stage  # The 7th stage point is the 5th-order solution (FSAL).
        error = dt * sum(e * kj for e, kj in zip(_ERR, k) if e != 0.0)
        scale = atol + rtol * torch.maximum(x.abs(), x_new.abs())
        error_norm = _rms(error / scale)
        if error_norm <= 1.0:
            t, x, k_first = t + dt, x_new, k[6]
            stats["accepted"] += 1
        else:
            stats["rejected"] += 1
        factor = MAX_FACTOR if error_norm == 0 else SAFETY * error_norm ** (-1 / 5)
        h *= min(MAX_FACTOR, max(MIN_FACTOR, factor if math.isfinite(factor) else MIN_FACTOR))
    return x, stats
