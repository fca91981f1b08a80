"""In-training evaluation through the shared loop (train.eval_every): stage 2 logs FID-N of the EMA model against a
reference file, stage 1 logs rFID / PSNR / SSIM of EMA reconstructions. Real Inception weights, tiny models."""
import json
import math

import numpy as np
import pytest

from tests.conftest import run_python


def _eval_rows(workdir):
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if any(k.startswith("eval/") for k in r)]


@pytest.fixture(name="data_dir", scope="module")
def data_dir_fixture(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def _common(data_dir, inception_weights):
    return [f"--config.data.data_dir={data_dir}", "--config.data.synthetic_num_images=64",
            "--config.data.num_workers=0", "--config.train.sample_every=0", "--config.train.eval_every=2",
            "--config.train.eval_num_images=4", "--config.train.eval_batch_size=4",
            f"--config.train.eval_inception_weights={inception_weights}"]


def test_stage2_logs_fid_of_the_ema_model(tmp_path, data_dir, inception_weights, real_images):
    reference = tmp_path / "reference.npz"
    np.savez(reference, arr_0=real_images)  # Images only: statistics computed from them.
    workdir = tmp_path / "run"
    run_python(["-m", "rae_xla.main", "--config=configs/quickstart.py:part=stage2,steps=2,batch=8",
                f"--workdir={workdir}", *_common(data_dir, inception_weights),
                f"--config.train.eval_reference={reference}"])
    rows = _eval_rows(workdir)
    assert [r["step"] for r in rows] == [2]
    assert math.isfinite(rows[0]["eval/fid_4"]) and rows[0]["eval/fid_4"] > 1.0  # Noise-like samples vs photos.


def test_stage1_logs_reconstruction_metrics(tmp_path, data_dir, inception_weights):
    workdir = tmp_path / "run"
    run_python(["-m", "rae_xla.main", "--config=configs/quickstart.py:part=stage1,stage1_steps=2,batch=8",
                f"--workdir={workdir}", *_common(data_dir, inception_weights), "--config.train.eval_split=train"])
    rows = _eval_rows(workdir)
    assert [r["step"] for r in rows] == [2]
    row = rows[0]
    assert row["eval/rfid"] > 0 and 0 < row["eval/psnr"] < 60 and -1 <= row["eval/ssim"] <= 1


def test_stage2_without_a_reference_is_a_config_error(tmp_path, data_dir, inception_weights):
    result = run_python(["-m", "rae_xla.main", "--config=configs/quickstart.py:part=stage2,steps=2,batch=8",
                         f"--workdir={tmp_path}", *_common(data_dir, inception_weights)], check=False)
    assert result.returncode == 2 and "train.eval_reference" in result.stderr
