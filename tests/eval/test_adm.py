"""ADM statistics against closed forms, a test-local transcription of ADM's code, and a float64 k-NN oracle."""
import warnings

import numpy as np
import pytest
from scipy import linalg
from scipy.spatial import cKDTree

from rae_xla.eval import adm


def _adm_frechet(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """guided-diffusion evaluations/evaluator.py FIDStatistics.frechet_distance, transcribed (sqrtm without the
    deprecated disp=False, whose only effect was to return an error estimate)."""
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError("Imaginary component")
        covmean = covmean.real
    return diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)


def test_feature_statistics_are_mean_and_unbiased_covariance():
    x = np.random.default_rng(0).normal(size=(50, 6)).astype(np.float32)
    mu, sigma = adm.feature_statistics(x)
    x64 = x.astype(np.float64)
    centred = x64 - x64.mean(0)
    np.testing.assert_allclose(mu, x64.mean(0), rtol=0, atol=1e-15)
    np.testing.assert_allclose(sigma, centred.T @ centred / 49, rtol=1e-12, atol=1e-14)
    assert mu.dtype == sigma.dtype == np.float64


def test_frechet_closed_form_for_commuting_covariances():
    rng = np.random.default_rng(1)
    d = 8
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))  # Shared eigenvectors: the covariances commute.
    l1, l2 = rng.uniform(0.1, 3, d), rng.uniform(0.1, 3, d)
    s1, s2 = q @ np.diag(l1) @ q.T, q @ np.diag(l2) @ q.T
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(l1) - np.sqrt(l2)) ** 2)
    assert adm.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-10)
    assert adm.frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0, abs=1e-10)


def test_frechet_equals_adm_transcription_on_general_statistics():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(200, 16)), rng.normal(size=(300, 16)) @ rng.normal(size=(16, 16)) * 0.5 + 0.3
    s1, s2 = adm.feature_statistics(a), adm.feature_statistics(b)
    value = adm.frechet_distance(*s1, *s2)
    assert value == pytest.approx(_adm_frechet(*s1, *s2), rel=1e-12)
    assert value > 1.0  # Different distributions: a distance clearly above 0.


def test_frechet_rank_deficient_n_below_d():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(10, 32)), rng.normal(size=(12, 32)) + 0.2  # N < D: singular covariances.
    s1, s2 = adm.feature_statistics(a), adm.feature_statistics(b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value, expected = adm.frechet_distance(*s1, *s2), _adm_frechet(*s1, *s2)
    # tr sqrt(S1 S2) = sum of sqrt of the (real, >= 0) eigenvalues of S1 S2: an independent route.
    eig = np.clip(np.linalg.eigvals(s1[1] @ s2[1]).real, 0, None)
    closed = np.sum((s1[0] - s2[0]) ** 2) + np.trace(s1[1]) + np.trace(s2[1]) - 2 * np.sqrt(eig).sum()
    assert np.isfinite(value)
    assert value == pytest.approx(expected, rel=1e-9)
    assert value == pytest.approx(closed, rel=1e-4)


def test_frechet_rejects_mismatched_statistics():
    with pytest.raises(ValueError, match="do not match"):
        adm.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_inception_score_identical_rows_is_one():
    logits = np.tile(np.random.default_rng(4).normal(size=(1, 1008)), (64, 1))
    assert adm.inception_score(logits) == pytest.approx(1.0, abs=1e-12)


def test_inception_score_balanced_confident_predictions_give_number_of_classes():
    # Each row puts probability ~1 on one class; 10 classes equally often: p(y) uniform, KL = log 10, IS = 10.
    n_classes, logits = 10, np.full((100, 1008), -1e4)
    logits[np.arange(100), np.arange(100) % n_classes] = 0.0
    assert adm.inception_score(logits) == pytest.approx(n_classes, rel=1e-9)
    # Closed form with soft predictions: p = (a, (1-a)/(K-1), ...) rotated over K classes, balanced.
    k, a = 4, 0.7
    probs = np.full((8, k), (1 - a) / (k - 1))
    probs[np.arange(8), np.arange(8) % k] = a
    kl = a * np.log(a * k) + (1 - a) * np.log((1 - a) / (k - 1) * k)
    assert adm.inception_score(np.log(probs)) == pytest.approx(np.exp(kl), rel=1e-12)


def test_inception_score_uses_ordered_splits():
    # First split all class 0, second split all class 1: each split has IS 1 (mean 1); a shuffled split would not.
    logits = np.full((20, 1008), -1e4)
    logits[:10, 0] = 0
    logits[10:, 1] = 0
    assert adm.inception_score(logits, split_size=10) == pytest.approx(1.0, abs=1e-9)
    assert adm.inception_score(logits, split_size=20) == pytest.approx(2.0, rel=1e-9)
    # A shorter last split counts as a split of its own (ADM's range(0, N, split_size)).
    scores = [adm.inception_score(logits[:7], 7), adm.inception_score(logits[7:14], 7), adm.inception_score(logits[14:], 7)]
    assert adm.inception_score(logits, split_size=7) == pytest.approx(np.mean(scores), rel=1e-12)


def _knn_oracle(real, fake, k=3):
    """float64 precision/recall with cKDTree (k+1 neighbours: each point is its own nearest)."""
    r_radii = cKDTree(real).query(real, k + 1)[0][:, k] ** 2
    f_radii = cKDTree(fake).query(fake, k + 1)[0][:, k] ** 2
    d = ((fake[:, None, :] - real[None, :, :]) ** 2).sum(-1)
    precision = (d <= r_radii[None, :]).any(1).mean()
    recall = (d.T <= f_radii[None, :]).any(1).mean()
    return precision, recall


@pytest.fixture(name="features", scope="module")
def features_fixture():
    rng = np.random.default_rng(5)
    real = rng.normal(size=(120, 12))
    fake = rng.normal(size=(90, 12)) * 0.9 + 0.6  # Overlapping but different: P and R strictly between 0 and 1.
    return real, fake


def test_precision_recall_fp32_matches_float64_knn_oracle(features):
    real, fake = features
    expected = _knn_oracle(real, fake)
    got = adm.precision_recall(real, fake, fp16=False)
    assert 0.05 < expected[0] < 0.95 and 0.05 < expected[1] < 0.95
    assert got == pytest.approx(expected, abs=1.5 / 90)  # At most one boundary point may flip between precisions.


def test_precision_recall_identical_and_far_sets():
    x = np.random.default_rng(6).normal(size=(40, 8))
    assert adm.precision_recall(x, x.copy()) == (1.0, 1.0)
    assert adm.precision_recall(x, x + 100.0, fp16=False) == (0.0, 0.0)
    assert adm.precision_recall(x, x + 100.0) == (0.0, 0.0)


@pytest.mark.parametrize("fp16", [True, False])
def test_precision_recall_independent_of_block_size(features, fp16):
    real, fake = features
    reference = adm.precision_recall(real, fake, fp16=fp16)
    for block in (1, 7, 64):
        assert adm.precision_recall(real, fake, fp16=fp16, block_size=block) == reference


def _adm_fp16_distances(u, v):
    """ADM's DistanceBlock in float16, element by element: tf.square and the formula round to float16."""
    u16, v16 = u.astype(np.float16), v.astype(np.float16)
    out = np.empty((len(u), len(v)), np.float16)
    for i in range(len(u)):
        nu = np.float16(sum(np.float32(np.float16(x * x)) for x in u16[i]))
        for j in range(len(v)):
            nv = np.float16(sum(np.float32(np.float16(y * y)) for y in v16[j]))
            dot = np.float16(np.dot(u16[i].astype(np.float32), v16[j].astype(np.float32)))
            out[i, j] = max(np.float16(np.float16(nu - np.float16(2 * dot)) + nv), np.float16(0))
    return out.astype(np.float32)


def _adm_manifold_pr(real, fake, k=3):
    """ADM's ManifoldEstimator with one block: radii from _numpy_partition of full rows, then less-thans."""
    def radii(x):
        d = _adm_fp16_distances(x, x)
        return np.partition(d, np.arange(k + 1), axis=1)[:, k]
    r_real, r_fake = radii(real), radii(fake)
    d = _adm_fp16_distances(real, fake)  # (N real, M fake)
    precision = (d <= r_real[:, None]).any(0).mean()
    recall = (d <= r_fake[None, :]).any(1).mean()
    return precision, recall


def test_precision_recall_fp16_matches_numpy_emulation_of_adm():
    rng = np.random.default_rng(7)
    real = rng.normal(size=(30, 6)) * 3  # Norms ~50: fp16 rounding (spacing 0.03) is visible in the distances.
    fake = rng.normal(size=(25, 6)) * 3 + 1
    np.testing.assert_array_equal(adm.pairwise_sq_distances(real, fake, fp16=True), _adm_fp16_distances(real, fake))
    assert adm.precision_recall(real, fake, fp16=True) == pytest.approx(_adm_manifold_pr(real, fake), abs=0)
    assert not np.array_equal(adm.pairwise_sq_distances(real, fake, True), adm.pairwise_sq_distances(real, fake, False))


def test_fp16_overflow_falls_back_to_fp32():
    big = np.full((3, 4), 300.0)  # Squared norms 360000 > 65504: float16 overflows.
    np.testing.assert_allclose(adm.pairwise_sq_distances(big, big + 1, fp16=True),
                               adm.pairwise_sq_distances(big, big + 1, fp16=False))


def test_reference_file_round_trip(tmp_path):
    rng = np.random.default_rng(8)
    stats = {"mu": rng.normal(size=4), "sigma": np.eye(4), "mu_s": rng.normal(size=3), "sigma_s": 2 * np.eye(3)}
    images = rng.integers(0, 256, size=(2, 8, 8, 3), dtype=np.uint8)
    adm.write_reference(tmp_path / "ref.npz", images=images, statistics=stats)
    back = adm.read_reference(str(tmp_path / "ref.npz"))
    assert sorted(back) == ["arr_0", "mu", "mu_s", "sigma", "sigma_s"]
    np.testing.assert_array_equal(back["arr_0"], images)
    np.testing.assert_array_equal(back["mu_s"], stats["mu_s"])
    assert "arr_0" not in adm.read_reference(str(tmp_path / "ref.npz"), with_images=False)
    with pytest.raises(ValueError, match="uint8"):
        adm.write_reference(tmp_path / "bad.npz", images=images.astype(np.float32), statistics=stats)
