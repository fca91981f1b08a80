"""Reconstruction metrics as the official `eval/ref_iqa.py` computes them (docs/reference.md §7.7).

Pure tensor functions (they run on the host or inside a compiled device step): images are float (B, 3, H, W) in
[0, 1] (uint8 / 255), and each function returns one value per image (B,); the reported number is the mean over
images.
  psnr: 20·log10(1 / sqrt(MSE)), MSE over C·H·W per image, clamped at 1e-10.
  ssim: torchmetrics >= 1.4.2 `structural_similarity_index_measure(data_range=1.0)`: Gaussian window 11, σ 1.5,
        k1 0.01, k2 0.03, reflect padding of 5, the FULL map (H×W, no border crop) averaged per image.
LPIPS-VGG needs the VGG16 ImageNet backbone; see `lpips_vgg`.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

MSE_FLOOR = 1e-10  # ref_iqa.py: a perfect reconstruction gives PSNR 100 dB instead of infinity.
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def to_unit_float(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float32 (B, 3, H, W) in [0, 1]."""
    return images_uint8.permute(0, 3, 1, 2).float() / 255.0


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) x2 in [0, 1] -> (B,) PSNR in dB."""
    mse = (pred.float() - target.float()).pow(2).flatten(1).mean(dim=1).clamp_min(MSE_FLOOR)
    return 20 * torch.log10(1.0 / torch.sqrt(mse))


@functools.lru_cache(maxsize=4)
def _gaussian_window(sigma: float) -> np.ndarray:
    """torchmetrics' 1-D Gaussian: size int(3.5σ + 0.5)·2 + 1 (11 for σ = 1.5), taps at −5..5, normalised."""
    size = int(3.5 * sigma + 0.5) * 2 + 1
    taps = np.arange((1 - size) / 2, (1 + size) / 2, 1.0)
    window = np.exp(-((taps / sigma) ** 2) / 2)
    return window / window.sum()  # float64; cast to the compute dtype by the caller.


def ssim(pred: torch.Tensor, target: torch.Tensor, *, data_range: float = 1.0) -> torch.Tensor:
    """(B, C, H, W) x2 -> (B,) SSIM, torchmetrics >= 1.4.2 semantics (see the module docstring)."""
    # float32 as the official eval (torchmetrics computes in the input dtype); float64 inputs stay float64.
    dtype = pred.dtype if pred.dtype == torch.float64 else torch.float32
    pred, target = pred.to(dtype), target.to(dtype)
    channels = pred.shape[1]
    window = torch.from_numpy(_gaussian_window(SSIM_SIGMA)).to(device=pred.device, dtype=dtype)
    kernel = torch.outer(window, window).expand(channels, 1, len(window), len(window))
    pad = (len(window) - 1) // 2
    pred = F.pad(pred, (pad, pad, pad, pad), mode="reflect")
    target = F.pad(target, (pad, pad, pad, pad), mode="reflect")
    stacked = torch.cat([pred, target, pred * pred, target * target, pred * target])  # (5B, C, H+2p, W+2p)
    mu_p, mu_t, e_pp, e_tt, e_pt = F.conv2d(stacked, kernel, groups=channels).split(pred.shape[0])
    var_p = (e_pp - mu_p ** 2).clamp_min(0.0)
    var_t = (e_tt - mu_t ** 2).clamp_min(0.0)
    cov = e_pt - mu_p * mu_t
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    ssim_map = ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p ** 2 + mu_t ** 2 + c1) * (var_p + var_t + c2))
    return ssim_map.flatten(1).mean(dim=1)


def lpips_vgg(vgg16_weights: str) -> torch.nn.Module:
    """`lpips.LPIPS(net='vgg')` (linear heads shipped in the lpips wheel) with the VGG16 ImageNet backbone read
    from `vgg16_weights` (torchvision's `vgg16-397923af.pth`) instead of a download. Call it on images in
    [−1, 1]: `net(2 * x - 1, 2 * y - 1)` -> (B, 1, 1, 1)."""
    import lpips  # Deferred: imports scipy and torchvision, only needed when LPIPS is asked for.

    net = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False)
    state = torch.load(vgg16_weights, map_location="cpu", weights_only=True)
    # torchvision features.{i} -> lpips slice{s}.{i}: slices end after layers 3, 8, 15, 22, 29 (docs/ecosystem.md §6).
    bounds = (4, 9, 16, 23, 30)
    mapped = {}
    for key, value in state.items():
        if key.startswith("features."):
            index = int(key.split(".")[1])
            block = next(s for s, end in enumerate(bounds, start=1) if index < end)
            mapped[f"slice{block}.{index}.{key.split('.', 2)[2]}"] = value
    net.net.load_state_dict(mapped, strict=True)
    return net.eval().requires_grad_(False)
