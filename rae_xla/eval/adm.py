"""The ADM evaluator's statistics (openai/guided-diffusion `evaluations/evaluator.py`), in numpy, no TensorFlow.

Numpy in, Python float out. Everything runs on the host; moments and the Fréchet distance in float64.
  feature_statistics(features (N, D))            -> mu (D,), sigma (D, D)   (np.cov, rowvar=False: N-1 divisor)
  frechet_distance(mu1, sigma1, mu2, sigma2)     -> FID / sFID
  inception_score(unbiased_logits (N, 1008))     -> IS (ordered splits of 5000, mean of split scores)
  precision_recall(real (N, D), fake (M, D))     -> (precision, recall), k = 3, ADM's fp16 distances by default
Reference files: `read_reference` / `write_reference` use ADM's npz keys (mu, sigma, mu_s, sigma_s, arr_0).

Deliberate difference: ADM computes the IS softmax in TF float32; we compute it in float64 from the same float32
logits (differences ~1e-6 relative, far below the split-to-split spread).
"""
from __future__ import annotations

import io
import warnings
from typing import Mapping

import numpy as np
from scipy import linalg

SPLIT_SIZE = 5000  # ADM's compute_inception_score(split_size=5000).
BLOCK_SIZE = 10000  # ADM's ManifoldEstimator row_batch_size = col_batch_size = 10000.
NEIGHBOURHOOD = 3  # ADM's nhood_sizes=(3,).


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """features (N, D) -> (mu (D,), sigma (D, D)), float64, sigma with the unbiased N-1 divisor (as ADM)."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"feature_statistics needs (N >= 2, D) features, got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """‖mu1 − mu2‖² + tr(Σ1) + tr(Σ2) − 2·tr(sqrtm(Σ1 Σ2)), as ADM's FIDStatistics.frechet_distance.

    If sqrtm is not finite (singular product, e.g. N < D), it is retried with eps on both diagonals; a complex
    result whose diagonal has an imaginary part above 1e-3 is an error (ADM's check), otherwise the real part is
    used. The result is not clipped at 0 (ADM does not clip).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (len(mu1), len(mu1)):
        raise ValueError(f"statistics do not match: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs "
                         f"{sigma2.shape} (a 2048-d pool3 reference against 2023-d sFID features?)")
    diff = mu1 - mu2
    # scipy 1.17 deprecates sqrtm(..., disp=False) (removed in 1.18): check finiteness ourselves.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        warnings.warn(f"frechet_distance: sqrtm is not finite (singular covariance product); adding {eps} to the "
                      f"diagonals as ADM does")
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"frechet_distance: imaginary component {np.max(np.abs(covmean.imag))} in sqrtm")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row softmax in float64, max-subtracted for stability."""
    logits = np.asarray(logits, np.float64)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def inception_score(unbiased_logits: np.ndarray, split_size: int = SPLIT_SIZE) -> float:
    """IS from pool3·W logits WITHOUT the bias (torch-fidelity 'logits_unbiased'), as ADM: softmax, then ordered
    consecutive splits of `split_size` (the last one may be shorter), exp(mean KL(p(y|x) ‖ p(y))) per split,
    and the mean over splits. unbiased_logits: (N, 1008)."""
    preds = softmax(unbiased_logits)
    scores = []
    for start in range(0, len(preds), split_size):
        part = preds[start:start + split_size]
        # ADM: part * (log(part) - log(mean)); a probability that underflows to 0 contributes 0, not NaN.
        with np.errstate(divide="ignore", invalid="ignore"):
            kl = part * (np.log(part) - np.log(part.mean(axis=0, keepdims=True)))
        kl = np.where(part > 0, kl, 0.0)
        scores.append(np.exp(kl.sum(axis=1).mean()))
    return float(np.mean(scores))


# ---------------------------------------------------------------------------------------------------------------
# Improved precision / recall (Kynkäänniemi et al. 2019) as ADM's ManifoldEstimator with k = 3.


def pairwise_sq_distances(u: np.ndarray, v: np.ndarray, fp16: bool = True) -> np.ndarray:
    """(n, D), (m, D) -> (n, m) float32 squared distances max(‖u‖² − 2 u·vᵀ + ‖v‖², 0), ADM's DistanceBlock.

    fp16=True emulates ADM's default: features cast to float16, squares and the distance formula rounded to
    float16 (sums and the matrix product accumulated in float32 and rounded, as GPU half kernels do); if any
    entry is not finite (overflow past 65504) the block falls back to float32, as ADM's tf.cond does.
    """
    if fp16:
        with np.errstate(over="ignore", invalid="ignore"):  # Overflow is detected below and handled as ADM does.
            u16, v16 = u.astype(np.float16), v.astype(np.float16)
            norm_u = np.square(u16).sum(axis=1, dtype=np.float32).astype(np.float16)[:, None]
            norm_v = np.square(v16).sum(axis=1, dtype=np.float32).astype(np.float16)[None, :]
            dot = (u16.astype(np.float32) @ v16.astype(np.float32).T).astype(np.float16)
            d16 = np.maximum(norm_u - np.float16(2) * dot + norm_v, np.float16(0))
        if np.isfinite(d16).all():
            return d16.astype(np.float32)
    u32, v32 = u.astype(np.float32), v.astype(np.float32)
    norm_u = np.square(u32).sum(axis=1)[:, None]
    norm_v = np.square(v32).sum(axis=1)[None, :]
    return np.maximum(norm_u - 2 * (u32 @ v32.T) + norm_v, 0).astype(np.float32)


def manifold_radii(features: np.ndarray, *, k: int = NEIGHBOURHOOD, block_size: int = BLOCK_SIZE,
                   fp16: bool = True) -> np.ndarray:
    """(N, D) -> (N,) float32: each point's k-th smallest squared distance over ALL points, itself included (index
    k of the sorted row, as ADM's `_numpy_partition(...)[:, nhood_sizes]`), i.e. its k-th nearest neighbour.

    Keeps only the k+1 smallest distances per row while sweeping column blocks, so memory is O(block · N) at
    most and the result does not depend on `block_size` (ADM keeps a whole (block, N) row of distances).
    """
    n = len(features)
    if n <= k:
        raise ValueError(f"precision/recall needs more than k={k} points per set, got {n}")
    radii = np.empty(n, np.float32)
    for r0 in range(0, n, block_size):
        rows = features[r0:r0 + block_size]
        best = np.full((len(rows), 0), np.inf, np.float32)
        for c0 in range(0, n, block_size):
            merged = np.concatenate([best, pairwise_sq_distances(rows, features[c0:c0 + block_size], fp16)], axis=1)
            keep = min(k + 1, merged.shape[1])
            best = np.partition(merged, keep - 1, axis=1)[:, :keep]
        radii[r0:r0 + block_size] = np.partition(best, k, axis=1)[:, k]
    return radii


def _inside_other_manifold(points: np.ndarray, others: np.ndarray, other_radii: np.ndarray, *, block_size: int,
                           fp16: bool) -> np.ndarray:
    """(N,) bool: is point i within the radius of any point of `others` (distance <= radius, as ADM)."""
    inside = np.zeros(len(points), bool)
    for r0 in range(0, len(points), block_size):
        for c0 in range(0, len(others), block_size):
            d = pairwise_sq_distances(points[r0:r0 + block_size], others[c0:c0 + block_size], fp16)
            inside[r0:r0 + block_size] |= (d <= other_radii[None, c0:c0 + block_size]).any(axis=1)
    return inside


def precision_recall(real_features: np.ndarray, fake_features: np.ndarray, *, k: int = NEIGHBOURHOOD,
                     fp16: bool = True, block_size: int = BLOCK_SIZE) -> tuple[float, float]:
    """ADM's improved precision and recall on pool3 features (real (N, D), fake (M, D)).

    precision: share of fake points inside the real manifold (union of balls of each real point's k-NN radius);
    recall: share of real points inside the fake manifold. fp16=True is ADM's default distance precision.
    """
    real, fake = np.asarray(real_features, np.float32), np.asarray(fake_features, np.float32)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"precision_recall needs (N, D) and (M, D) features, got {real.shape} and {fake.shape}")
    real_radii = manifold_radii(real, k=k, block_size=block_size, fp16=fp16)
    fake_radii = manifold_radii(fake, k=k, block_size=block_size, fp16=fp16)
    precision = _inside_other_manifold(fake, real, real_radii, block_size=block_size, fp16=fp16).mean()
    recall = _inside_other_manifold(real, fake, fake_radii, block_size=block_size, fp16=fp16).mean()
    return float(precision), float(recall)


# ---------------------------------------------------------------------------------------------------------------
# ADM-format npz files.

REFERENCE_KEYS = ("mu", "sigma", "mu_s", "sigma_s")


def read_reference(path_or_bytes, *, with_images: bool = True) -> dict[str, np.ndarray]:
    """Reads an ADM reference npz (e.g. VIRTUAL_imagenet256_labeled.npz) or one of ours.

    Returns the keys present among mu (2048,), sigma (2048, 2048), mu_s (2023,), sigma_s (2023, 2023) and, when
    `with_images`, arr_0 (uint8 (N, H, W, 3); ADM uses these images for precision/recall). npz members load lazily,
    so `with_images=False` never reads the images.
    """
    source = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    with np.load(source) as npz:
        keys = [k for k in REFERENCE_KEYS + (("arr_0",) if with_images else ()) if k in npz.files]
        out = {k: npz[k] for k in keys}
    if not out:
        raise ValueError(f"{path_or_bytes if isinstance(path_or_bytes, str) else 'npz'} has none of "
                         f"{REFERENCE_KEYS + ('arr_0',)}; is it an ADM reference or sample file?")
    return out


def write_reference(file, *, images: np.ndarray | None = None, statistics: Mapping[str, np.ndarray]) -> None:
    """Writes an ADM-format reference npz to `file` (path or binary file object).

    statistics: mu, sigma (pool3) and mu_s, sigma_s (sFID). images: uint8 (N, H, W, 3) stored as arr_0 — ADM's
    evaluator computes its precision/recall reference activations from them, so include them for a file that
    works in ADM's evaluator (VIRTUAL_imagenet256_labeled.npz has 10,000).
    """
    missing = [k for k in REFERENCE_KEYS if k not in statistics]
    if missing:
        raise ValueError(f"write_reference needs {REFERENCE_KEYS}; missing {missing}")
    arrays = {k: np.asarray(statistics[k], np.float64) for k in REFERENCE_KEYS}
    if images is not None:
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"arr_0 must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
        arrays["arr_0"] = images
    np.savez(file, **arrays)
