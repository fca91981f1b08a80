"""The `reference_stats` and `evaluate` jobs end to end with the real Inception weights on photographs: each
number equals the ADM statistic of independently computed features; the sharded XLA path (4 devices) gives the
same eval.json as eager CPU."""
import json
import re
import os

import numpy as np
import pytest
import torch
from PIL import Image

from rae_xla import config as config_lib
from rae_xla.eval import adm, evaluate, inception, recon, reference
from rae_xla.runtime import make_runtime
from tests.conftest import run_python


@pytest.fixture(name="files", scope="module")
def files_fixture(tmp_path_factory, real_images, inception_weights):
    """An image folder of the 4 photographs, sample npzs, and the photographs' and their mirrors' features."""
    root = tmp_path_factory.mktemp("evaluate")
    for i, image in enumerate(real_images):  # root/<class>/<image>: the folder source, center crop 128 = identity.
        os.makedirs(root / "photos" / f"class{i}")
        Image.fromarray(image).save(root / "photos" / f"class{i}" / "image.png")
    samples = np.concatenate([real_images, real_images[:, :, ::-1]])  # 8 images: photographs and mirrors.
    np.savez(root / "samples.npz", arr_0=samples)
    noisy = np.clip(real_images.astype(int) + np.random.default_rng(0).integers(-20, 21, real_images.shape), 0, 255)
    np.savez(root / "recon.npz", arr_0=noisy.astype(np.uint8))
    with torch.no_grad():
        features = inception.build_inception(inception_weights)(torch.from_numpy(samples).permute(0, 3, 1, 2))
    return {"root": root, "samples": samples, "noisy": noisy.astype(np.uint8),
            "features": {k: v.numpy() for k, v in features.items()}}


def _config(files, inception_weights, **eval_fields):
    config = config_lib.ml_collections.ConfigDict(dict(
        job="reference_stats", seed=0, runtime=config_lib.runtime_block(backend="cpu"),
        data=config_lib.data_block(source="folder", data_dir=str(files["root"] / "photos"), image_size=128,
                                   random_flip=False, num_workers=0),
        eval=config_lib.eval_block(inception_weights=inception_weights, global_batch_size=3, reference_images=-1,
                                   **eval_fields)))
    config_lib.validate(config, num_devices=1)
    return config


@pytest.fixture(name="reference_file", scope="module")
def reference_file_fixture(files, inception_weights):
    config = _config(files, inception_weights)
    runtime = make_runtime(config.runtime)
    reference.run(config, str(files["root"] / "ref_job"), runtime)
    return str(files["root"] / "ref_job" / "reference.npz")


def test_reference_file_has_adm_keys_and_the_statistics_of_the_images(reference_file, files, real_images):
    ref = adm.read_reference(reference_file)
    assert sorted(ref) == ["arr_0", "mu", "mu_s", "sigma", "sigma_s"]
    np.testing.assert_array_equal(ref["arr_0"], real_images)  # The folder order (sorted classes), uncropped.
    mu, sigma = adm.feature_statistics(files["features"]["pool3"][:4])
    np.testing.assert_allclose(ref["mu"], mu, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ref["sigma"], sigma, rtol=1e-3, atol=1e-5)
    assert ref["mu_s"].shape == (2023,) and ref["sigma_s"].shape == (2023, 2023)


def _evaluate(files, inception_weights, samples, ref, mode="generation"):
    config = _config(files, inception_weights, samples=samples, reference=ref, mode=mode)
    return evaluate.evaluate(config.eval, make_runtime(config.runtime))


@pytest.fixture(name="generation", scope="module")
def generation_fixture(files, inception_weights, reference_file):
    return _evaluate(files, inception_weights, str(files["root"] / "samples.npz"), reference_file)


def test_generation_metrics_are_adm_statistics_of_the_features(files, reference_file, generation):
    result = generation
    f, ref = files["features"], adm.read_reference(reference_file)
    fid = adm.frechet_distance(*adm.feature_statistics(f["pool3"]), ref["mu"], ref["sigma"])
    sfid = adm.frechet_distance(*adm.feature_statistics(f["spatial"]), ref["mu_s"], ref["sigma_s"])
    assert result["fid"] == pytest.approx(fid, rel=1e-3) and fid > 1.0
    assert result["sfid"] == pytest.approx(sfid, rel=1e-3) and sfid > 1.0
    assert result["inception_score"] == pytest.approx(1.0)  # The test weights have a zero fc layer: uniform p(y|x).
    assert (result["precision"], result["recall"]) == adm.precision_recall(f["pool3"][:4], f["pool3"])
    assert result["num_samples"] == 8 and result["num_reference_images"] == 4


def test_reconstruction_metrics(files, inception_weights, reference_file):
    result = _evaluate(files, inception_weights, str(files["root"] / "recon.npz"), reference_file, "reconstruction")
    pred, target = (recon.to_unit_float(torch.from_numpy(x)) for x in (files["noisy"], files["samples"][:4]))
    assert result["psnr"] == pytest.approx(recon.psnr(pred, target).double().mean().item(), rel=1e-6)
    assert result["ssim"] == pytest.approx(recon.ssim(pred, target).double().mean().item(), rel=1e-6)
    assert 20 < result["psnr"] < 35 and 0.3 < result["ssim"] < 0.99
    assert result["rfid"] > 0


def test_evaluate_cli_on_4_xla_devices_matches_cpu(files, inception_weights, reference_file, generation):
    out = files["root"] / "xla_eval.json"
    run_python(["-m", "rae_xla.eval", f"--samples={files['root'] / 'samples.npz'}", f"--reference={reference_file}",
                f"--inception_weights={inception_weights}", "--batch_size=4", "--backend=xla", f"--out={out}"],
               xla_devices=4)
    xla = json.loads(out.read_text())
    cpu = generation
    for key in ("fid", "sfid", "inception_score"):
        assert xla[key] == pytest.approx(cpu[key], rel=1e-3), key
    assert (xla["precision"], xla["recall"]) == (cpu["precision"], cpu["recall"])


def test_wrong_npz_inputs_are_input_errors_naming_the_field(tmp_path):
    from rae_xla import errors
    from rae_xla.eval import evaluate as evaluate_lib
    np.savez(tmp_path / "floats.npz", arr_0=np.zeros((2, 8, 8, 3), np.float32))
    np.savez(tmp_path / "stats.npz", mu=np.zeros(10), sigma=np.zeros((10, 10)), mu_s=np.zeros(10),
             sigma_s=np.zeros((10, 10)))
    (tmp_path / "text.npz").write_text("not a zip")
    cases = [(evaluate_lib.load_images, "floats.npz", "arr_0 must be uint8 (N, H, W, 3)"),
             (evaluate_lib.load_images, "text.npz", "is not a readable .npz"),
             (evaluate_lib.load_images, "missing.npz", "does not exist"),
             (evaluate_lib.load_reference, "stats.npz", "ADM statistics must be"),
             (evaluate_lib.load_reference, "text.npz", "is not a readable .npz")]
    for load, name, needle in cases:
        with pytest.raises(errors.InputPathError, match=re.escape(needle)) as info:
            load(str(tmp_path / name))
        assert str(info.value).startswith(("eval.samples=", "eval.reference=")), info.value
