"""PSNR and SSIM against numpy/scipy oracles, and SSIM against torchmetrics as a cross-check."""
import numpy as np
import pytest
import torch
from scipy import ndimage

from rae_xla.eval import recon


@pytest.fixture(name="pair", scope="module")
def pair_fixture():
    rng = np.random.default_rng(0)
    # Smooth structure + noise, so SSIM is far from both 0 and 1.
    base = ndimage.gaussian_filter(rng.uniform(size=(3, 3, 40, 36)), sigma=(0, 0, 3, 3))
    base = (base - base.min()) / (base.max() - base.min())
    noisy = np.clip(base + rng.normal(scale=0.08, size=base.shape), 0, 1)
    to_u8 = lambda x: np.floor(x * 255).astype(np.uint8)
    return to_u8(noisy), to_u8(base)  # (B, C, H, W) uint8


def _ssim_oracle(x, y):
    """float64 SSIM: the 11-tap Gaussian (σ 1.5) applied separably with mirror ('reflect') borders, full map."""
    taps = np.arange(-5, 6)
    w = np.exp(-(taps / 1.5) ** 2 / 2)
    w /= w.sum()

    def blur(a):
        return ndimage.correlate1d(ndimage.correlate1d(a, w, axis=-1, mode="mirror"), w, axis=-2, mode="mirror")
    mu_x, mu_y = blur(x), blur(y)
    var_x = np.maximum(blur(x * x) - mu_x ** 2, 0)
    var_y = np.maximum(blur(y * y) - mu_y ** 2, 0)
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    m = (2 * mu_x * mu_y + c1) * (2 * cov + c2) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return m.reshape(len(x), -1).mean(1)


def test_psnr_matches_numpy(pair):
    pred, target = (p.astype(np.float64) / 255 for p in pair)
    mse = np.maximum(((pred - target) ** 2).reshape(len(pred), -1).mean(1), 1e-10)
    expected = 20 * np.log10(1 / np.sqrt(mse))
    got = recon.psnr(torch.from_numpy(pair[0]) / 255.0, torch.from_numpy(pair[1]) / 255.0).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert 15 < expected.mean() < 30
    same = torch.from_numpy(pair[1]) / 255.0
    assert recon.psnr(same, same).tolist() == pytest.approx([100.0] * 3)  # The 1e-10 floor.


def test_ssim_matches_scipy_oracle_and_torchmetrics(pair):
    pred, target = (torch.from_numpy(p) / 255.0 for p in pair)
    expected = _ssim_oracle(pred.double().numpy(), target.double().numpy())
    np.testing.assert_allclose(recon.ssim(pred.double(), target.double()).numpy(), expected, rtol=0, atol=1e-12)
    got = recon.ssim(pred, target).numpy()  # float32 as the official eval: E[x²] − μ² cancellation ~1e-5.
    np.testing.assert_allclose(got, expected, atol=3e-5)
    assert 0.2 < expected.mean() < 0.95
    from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim
    tm = tm_ssim(preds=pred, target=target, data_range=1.0, reduction="none").numpy()
    np.testing.assert_allclose(got, tm, atol=1e-5)  # Both float32; kernels built in different precisions.
    assert recon.ssim(target, target).numpy() == pytest.approx(np.ones(3), abs=1e-6)


def test_to_unit_float_layout():
    images = np.arange(2 * 4 * 5 * 3, dtype=np.uint8).reshape(2, 4, 5, 3)
    out = recon.to_unit_float(torch.from_numpy(images))
    assert out.shape == (2, 3, 4, 5)
    assert out[1, 2, 3, 4].item() == pytest.approx(images[1, 3, 4, 2] / 255)
