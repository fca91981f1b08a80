"""The linear flow-matching path and the stage-2 objective (docs/reference.md §4.1–§4.2).

t = 0 is data, t = 1 is noise: x_t = (1 − t)·x_data + t·ε, and the velocity target is
u_t = dx_t/dt = ε − x_data (constant along a path). The model predicts u_t; the loss is the plain
squared error averaged over every non-batch dim (no time weighting), one value per sample.
"""
import torch


def _broadcast_time(t, like):
    """(B,) time → (B, 1, …, 1) so it broadcasts against `like` (B, …)."""
    if t.dim() != 1 or t.shape[0] != like.shape[0]:
        raise ValueError(f"t must have shape (B,) = ({like.shape[0]},), got {tuple(t.shape)}.")
    return t.view(-1, *([1] * (like.dim() - 1)))


def interpolate(data, noise, t):
    """Point on the linear path and its velocity target.

    data, noise: (B, C, H, W) float (noise ~ N(0, I)); t: (B,) in [0, 1], same dtype/device.
    Returns (x_t, u_t), both (B, C, H, W): x_t = (1 − t)·data + t·noise, u_t = noise − data.
    """
    if data.shape != noise.shape:
        raise ValueError(f"data {tuple(data.shape)} and noise {tuple(noise.shape)} must have the same shape.")
    tb = _broadcast_time(t, data)
    x_t = (1 - tb) * data + tb * noise
    u_t = noise - data
    return x_t, u_t


def flow_matching_loss(model, data, labels, *, t, noise):
    """Per-sample velocity loss mean((model(x_t, t, y) − u_t)²) over all non-batch dims.

    model: callable (x (B,C,H,W), t (B,), y (B,) int64) → (B,C,H,W); data/noise (B,C,H,W);
    labels (B,) int64; t (B,) shifted times (see `sample_training_time`). Returns (B,) float.
    The trainer takes `.mean()` over the batch, as the official script does.
    """
    x_t, u_t = interpolate(data, noise, t)
    v = model(x_t, t, labels)
    if v.shape != u_t.shape:
        raise ValueError(f"model returned {tuple(v.shape)}, expected the latent shape {tuple(u_t.shape)}.")
    return (v - u_t).pow(2).flatten(1).mean(dim=1)
