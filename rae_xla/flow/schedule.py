"""Flow times: the dimension shift, training-time distributions and the official sampling grid.

Time convention (docs/reference.md §4.1): t = 0 is data, t = 1 is noise. Every time the model sees is a
*shifted* time t' = α·t / (1 + (α−1)·t), α = sqrt(C·H·W / base) (§4.3): for α > 1 the shift pushes times
toward the noise end (DINOv2-B latents 768×16×16 at 256 px: α = sqrt(48) ≈ 6.93).
"""
import math

import torch

# Training and ODE-sampling interval for Linear + velocity (docs/reference.md §4.3/§4.4): t0 = 0 and
# t1 = 1 − 1/1000; the official code forces train_eps = sample_eps = 0 for this path.
TRAIN_T0 = 0.0
TRAIN_T1 = 1.0 - 1.0 / 1000
DEFAULT_SHIFT_BASE = 4096
TRAINING_TIME_DISTRIBUTIONS = ("uniform", "logit_normal")


def time_shift_alpha(latent_shape, base=DEFAULT_SHIFT_BASE):
    """α = sqrt(C·H·W / base) for one latent of shape (C, H, W) (no batch dim); returns a Python float ≥ 1."""
    shape = tuple(int(d) for d in latent_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"time_shift_alpha wants one latent's (C, H, W), got {shape}; drop the batch dimension.")
    if base <= 0:
        raise ValueError(f"time_shift_alpha: base must be positive, got {base}.")
    alpha = math.sqrt(math.prod(shape) / base)
    if alpha < 1.0:
        # The official code asserts α ≥ 1 (a shift toward data is never used); keep the same contract.
        raise ValueError(f"time shift α = sqrt({math.prod(shape)}/{base}) = {alpha:.4f} < 1; lower `base` or pass α explicitly.")
    return alpha


def _check_alpha(alpha):
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha >= 1.0):
        raise ValueError(f"time shift α must be a finite float ≥ 1 (1 = no shift), got {alpha!r}.")


def shift_time(t, alpha):
    """t' = α·t / (1 + (α−1)·t), elementwise; t is a tensor (any shape) or a Python float in [0, 1]."""
    _check_alpha(alpha)
    return alpha * t / (1 + (alpha - 1) * t)


def training_time_from_uniform(u, *, dist, mu=None, sigma=None, alpha):
    """Maps uniform draws u ∈ [0, 1) (tensor, any shape) to shifted training times, same shape/dtype.

    `uniform`: t = t0 + u·(t1 − t0). `logit_normal`: the truncated logit-normal(μ, σ) on [t0, t1] by
    inverse CDF (u is rescaled into [Φ(a), Φ(b)], a,b = (logit(t0,t1) − μ)/σ), then the shift.
    Φ⁻¹ is written with erfinv, which XLA lowers (ndtri may fall back to the host).
    """
    if dist == "uniform":
        t = TRAIN_T0 + u * (TRAIN_T1 - TRAIN_T0)
    elif dist == "logit_normal":
        if mu is None or sigma is None or not sigma > 0:
            raise ValueError(f"logit_normal times need mu and sigma > 0, got mu={mu!r}, sigma={sigma!r}.")
        cdf_lo = _normal_cdf(_logit(TRAIN_T0), mu, sigma)
        cdf_hi = _normal_cdf(_logit(TRAIN_T1), mu, sigma)
        p = cdf_lo + u * (cdf_hi - cdf_lo)
        z = mu + sigma * math.sqrt(2.0) * torch.erfinv(2 * p - 1)
        t = torch.sigmoid(z).clamp(TRAIN_T0, TRAIN_T1)
    else:
        raise ValueError(f"unknown training time distribution {dist!r}; use one of {TRAINING_TIME_DISTRIBUTIONS}.")
    return shift_time(t, alpha)


def sample_training_time(batch_size, *, dist, mu=None, sigma=None, alpha, device, dtype=torch.float32, generator=None):
    """Draws (batch_size,) shifted training times on `device` (no host RNG round trip under XLA)."""
    u = torch.rand((batch_size,), device=device, dtype=dtype, generator=generator)
    return training_time_from_uniform(u, dist=dist, mu=mu, sigma=sigma, alpha=alpha)


def sampling_grid(num_steps, alpha):
    """The official ODE grid as Python floats: shift(1 − linspace(0, 0.999, num_steps)), 1.0 → shift(0.001).

    num_steps counts grid points (official configs: 50 → 49 solver steps). Computed in float32 exactly
    as the official code does, so the values equal the reference grid bit for bit.
    """
    if not isinstance(num_steps, int) or num_steps < 2:
        raise ValueError(f"num_steps counts grid points and must be an int ≥ 2 (2 = one step), got {num_steps!r}.")
    _check_alpha(alpha)
    t = 1 - torch.linspace(TRAIN_T0, TRAIN_T1, num_steps, dtype=torch.float32)
    return shift_time(t, alpha).tolist()


def _logit(p):
    return -math.inf if p <= 0 else (math.inf if p >= 1 else math.log(p / (1 - p)))


def _normal_cdf(x, mu, sigma):
    return 0.5 * (1 + math.erf((x - mu) / (sigma * math.sqrt(2.0))))
