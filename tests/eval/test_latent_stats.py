"""Latent statistics: the float64 Chan merge is exact for any partition; the `stats` job gives the same stat.pt for
1 vs 4 XLA devices, batch 8 vs 32, eager CPU, and equals a numpy reference over the encoder's latents."""
import numpy as np
import pytest
import torch

from rae_xla.eval import latent_stats
from tests.conftest import run_python

NUM_IMAGES = 60  # Not a multiple of 8 or 32: the last batch is padded and the padding must not count.


def test_chan_merge_is_exact_for_any_partition():
    rng = np.random.default_rng(0)
    z = rng.normal(loc=3.0, scale=2.0, size=(101, 4, 2, 2))
    for cuts in ([101], [1, 100], [8] * 12 + [5], [50, 1, 1, 49]):
        moments, start = latent_stats.Moments(), 0
        for size in cuts:
            part = z[start:start + size]
            start += size
            mean = part.mean(0)
            moments.merge(len(part), mean, ((part - mean) ** 2).sum(0))
        np.testing.assert_allclose(moments.mean, z.mean(0), rtol=1e-14, atol=1e-14)
        np.testing.assert_allclose(moments.var, z.var(0), rtol=1e-13, atol=1e-14)


def test_batch_moments_ignore_padding_rows():
    z = torch.randn(6, 3, 2, 2, dtype=torch.float64)
    valid = torch.tensor([True, True, True, True, False, False])
    count, mean, m2 = latent_stats.batch_moments(z, valid, torch.float64)
    assert count.item() == 4
    torch.testing.assert_close(mean, z[:4].mean(0))
    torch.testing.assert_close(m2, ((z[:4] - z[:4].mean(0)) ** 2).sum(0))


def test_official_ema_estimator_is_the_running_average_update():
    rng = np.random.default_rng(1)
    batches = [rng.normal(size=(8, 2, 1, 1)) for _ in range(3)]
    ema = latent_stats.OfficialEMA((2, 1, 1))
    mean, var = np.zeros((2, 1, 1)), np.ones((2, 1, 1))
    for b in batches:
        ema.merge(len(b), b.mean(0), ((b - b.mean(0)) ** 2).sum(0))
        mean, var = 0.9 * mean + 0.1 * b.mean(0), 0.9 * var + 0.1 * b.var(0)
    np.testing.assert_allclose(ema.mean, mean, rtol=1e-14)
    np.testing.assert_allclose(ema.var, var, rtol=1e-14)


def _run_stats(workdir, data_dir, batch, *overrides, xla_devices=None):
    run_python(["-m", "rae_xla.main", "--config=configs/stats.py:runlocal", f"--workdir={workdir}",
                f"--config.data.data_dir={data_dir}", f"--config.data.synthetic_num_images={NUM_IMAGES}",
                f"--config.stats.global_batch_size={batch}", *overrides], xla_devices=xla_devices)
    stats = torch.load(workdir / "stat.pt", weights_only=True)
    assert sorted(stats) == ["mean", "var"] and stats["mean"].dtype == torch.float32
    return stats


@pytest.fixture(name="runs", scope="module")
def runs_fixture(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    root = tmp_path_factory.mktemp("stats")
    xla = ("--config.runtime.backend=xla",)
    return {
        "cpu_b8": _run_stats(root / "cpu_b8", data_dir, 8),
        "xla4_b8": _run_stats(root / "xla4_b8", data_dir, 8, *xla, xla_devices=4),
        "xla1_b32": _run_stats(root / "xla1_b32", data_dir, 32, *xla, xla_devices=1),
        "ema": _run_stats(root / "ema", data_dir, 8, "--config.stats.estimator=official_ema"),
        "data_dir": data_dir,
    }


def _numpy_reference(data_dir):
    """Every image and its mirror encoded one at a time, eagerly; float64 numpy mean/var."""
    from rae_xla import data
    from rae_xla import build
    from configs import stats as stats_config

    config = stats_config.get_config("runlocal")
    config.data.data_dir, config.data.synthetic_num_images = str(data_dir), NUM_IMAGES
    rae = build.build_rae(config.rae)
    latents = []
    for batch in data.make_eval_loader(config.data, batch_size=4, process_index=0, process_count=1):
        for image, valid in zip(batch["image"], batch["valid"]):
            if valid:
                x = image.permute(2, 0, 1)[None].float() / 255
                latents += [rae.encode(x)[0].double().numpy(), rae.encode(x.flip(-1))[0].double().numpy()]
    z = np.stack(latents)
    assert len(z) == 2 * NUM_IMAGES
    return z.mean(0), z.var(0)


def test_stats_job_matches_numpy_reference_for_any_topology_and_batch(runs):
    mean, var = _numpy_reference(runs["data_dir"])
    assert mean.shape == (64, 4, 4)
    for name in ("cpu_b8", "xla4_b8", "xla1_b32"):
        # Latents are float32 and matmul tiling differs with batch/devices: agreement to float32 rounding.
        np.testing.assert_allclose(runs[name]["mean"].numpy(), mean, rtol=1e-5, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(runs[name]["var"].numpy(), var, rtol=1e-5, atol=1e-6, err_msg=name)
    assert float(np.abs(var - 1).mean()) > 0.05  # Not trivially the initial value of an estimator.


def test_official_ema_estimator_differs_from_the_exact_one(runs):
    difference = (runs["ema"]["var"] - runs["cpu_b8"]["var"]).abs().mean().item()
    assert difference > 1e-3  # The EMA starts from var = 1 and weights late batches most.
