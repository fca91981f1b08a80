"""DiffAug as the official stage-1 trainer uses it (StyleGAN-T `DiffAug(prob, cutout)`, docs/reference.md §5.5).

Ops, in this order, each applied iff its coin rand3[i] <= prob:
  0 translation: integer shifts t_h in [-dh, dh], t_w in [-dw, dw] per sample, dh = round(0.125*H) (Python
    round, half to even), t = floor(u*(2d+1)) - d; out[b,:,i,j] = x[b,:,i+t_h,j+t_w], 0 outside the image;
  1 colour: brightness x += u2 - 0.5; saturation (x - mean_c)*(2*u3) + mean_c; contrast (x - mean_chw)*(u4 + 0.5)
    + mean_chw (u per sample);
  2 cutout (only if prob > 0, the official `using_cutout`): a round(cutout*H) x round(cutout*W) rectangle centred
    at (floor(u5*(H + 1 - ch%2)), floor(u6*(W + 1 - cw%2))), clipped to the image, set to 0 (cutout 0: no-op).
Draws, in the official order: rand3 = rand(3) (the coins), then rand01 = rand(7, B, 1, 1) (u0..u6).

XLA: no data-dependent branch or shape. A coin selects with `torch.where` between the op's result and its
input instead of a Python `if`, the shift is a gather from a 1-px zero-padded copy, the cutout a mask. The price:
every op is computed even when its coin is false (with the trainer's prob = 1 every coin is true, and the
selection is skipped statically). Deliberate difference: without injected draws, rand01 is always drawn (the
official skips it when all three coins are false), so the random stream can differ from the official in that
case only; with injected draws the output equals the official exactly.
"""
import torch
import torch.nn.functional as F

TRANSLATION_RATIO = 0.125   # StyleGAN-T's translation range: 1/8 of the image size


def diffaug(x: torch.Tensor, *, prob: float, cutout: float, rand3: torch.Tensor | None = None,
            rand01: torch.Tensor | None = None) -> torch.Tensor:
    """x (B,C,H,W) -> augmented (B,C,H,W) float32, differentiable w.r.t. x.

    rand3 (3,) and rand01 (7,B,1,1) uniforms in [0,1): the draws; None draws them with torch's generator on
    x's device (rand3 first).
    """
    x = x.float()
    batch, _, height, width = x.shape
    using_cutout, prob = prob > 0, abs(prob)
    if rand3 is None:
        rand3 = torch.rand(3, device=x.device)
    if rand01 is None:
        rand01 = torch.rand(7, batch, 1, 1, device=x.device)
    if tuple(rand3.shape) != (3,) or tuple(rand01.shape) != (7, batch, 1, 1):
        raise ValueError(f"diffaug draws: rand3 must be (3,) and rand01 (7, {batch}, 1, 1); got "
                         f"{tuple(rand3.shape)} and {tuple(rand01.shape)}.")
    rand3, u = rand3.to(x.device), rand01.to(device=x.device, dtype=torch.float32)

    def apply(index: int, result: torch.Tensor, before: torch.Tensor) -> torch.Tensor:
        if prob >= 1.0:                      # rand() < 1 <= prob: the coin is always true
            return result
        return torch.where(rand3[index] <= prob, result, before)

    x = apply(0, _translate(x, u[0], u[1]), x)
    x = apply(1, _colour(x, u[2], u[3], u[4]), x)
    if using_cutout:
        x = apply(2, _cutout(x, u[5], u[6], cutout), x)
    return x


def _translate(x: torch.Tensor, u_h: torch.Tensor, u_w: torch.Tensor) -> torch.Tensor:
    batch, channels, height, width = x.shape
    dh, dw = round(TRANSLATION_RATIO * height), round(TRANSLATION_RATIO * width)
    shift_h = torch.floor(u_h.view(batch, 1) * (2 * dh + 1)).long() - dh           # (B,1)
    shift_w = torch.floor(u_w.view(batch, 1) * (2 * dw + 1)).long() - dw
    rows = torch.arange(height, device=x.device).view(1, height)
    cols = torch.arange(width, device=x.device).view(1, width)
    # Index into a copy padded by one zero pixel on each side: out-of-image reads land on the zero border.
    rows = torch.clamp(rows + shift_h + 1, 0, height + 1)                              # (B,H)
    cols = torch.clamp(cols + shift_w + 1, 0, width + 1)                               # (B,W)
    padded = F.pad(x, [1, 1, 1, 1])                                                    # (B,C,H+2,W+2)
    out = torch.gather(padded, 2, rows.view(batch, 1, height, 1).expand(batch, channels, height, width + 2))
    return torch.gather(out, 3, cols.view(batch, 1, 1, width).expand(batch, channels, height, width))


def _colour(x: torch.Tensor, u_bright: torch.Tensor, u_sat: torch.Tensor, u_contrast: torch.Tensor) -> torch.Tensor:
    x = x + (u_bright.unsqueeze(1) - 0.5)                                              # (B,1,1,1) per sample
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (u_sat.unsqueeze(1) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (u_contrast.unsqueeze(1) + 0.5) + mean


def _cutout(x: torch.Tensor, u_h: torch.Tensor, u_w: torch.Tensor, ratio: float) -> torch.Tensor:
    batch, _, height, width = x.shape
    size_h, size_w = round(ratio * height), round(ratio * width)
    centre_h = torch.floor(u_h.view(batch, 1) * (height + 1 - size_h % 2)).long()     # (B,1)
    centre_w = torch.floor(u_w.view(batch, 1) * (width + 1 - size_w % 2)).long()
    rows = torch.arange(height, device=x.device).view(1, height) - (centre_h - size_h // 2)
    cols = torch.arange(width, device=x.device).view(1, width) - (centre_w - size_w // 2)
    inside = ((rows >= 0) & (rows < size_h)).unsqueeze(2) & ((cols >= 0) & (cols < size_w)).unsqueeze(1)
    return x * (~inside).unsqueeze(1).to(x.dtype)                                      # (B,1,H,W) mask
