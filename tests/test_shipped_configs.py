"""Every shipped config runs as shipped, on a machine laid out as a user of the released files has it (offline).

The release environment (tests/release_env.py, built once per run) holds tiny files at the RELEASED hf:// paths,
so the configs' own path strings and the hub resolution are exercised end to end; a config gets nothing but the
placeholder bucket replaced (and, for the jobs that run, sizes shrunk: widths and depths, batch, sample count).

1. Every file in configs/ (found by listing the folder): validate + the preflight (`--preflight`, the info job
   of any config) with only the placeholder replaced; the problems it lists are exactly the inputs the user must
   still provide (EXPECTED_PROBLEMS).
2. The release-path smoke runs: each shipped training/sampling/evaluation config runs its real job for 1-2 steps
   or batches in one subprocess (tests/release_smoke_script.py), chained where a job reads another's output
   (evaluate scores sample_fid's npz against reference_stats' npz).
3. The command line: the headline command's preflight (exit 0, the plan), a preflight with several problems
   (exit 2, one FATAL line each, no traceback), and an unreachable gs:// bucket in a real job (one line).
"""
import glob
import json
import os

import numpy as np
import pytest
import torch

from rae_xla import config as config_lib
from rae_xla import main as main_lib
from rae_xla import preflight
from tests import release_env as env_lib
from tests.conftest import REPO, run_python
from tests.test_configs import as_shipped, quickstart_run

CONFIG_FILES = sorted(os.path.basename(p) for p in glob.glob(os.path.join(REPO, "configs", "*.py")))
# What a user must still give each config before its job can start (the fields its preflight names); every
# other shipped config must pass its preflight as shipped.
EXPECTED_PROBLEMS = {"evaluate.py": ["eval.samples is empty", "eval.reference is empty"]}


@pytest.mark.parametrize("name", CONFIG_FILES)
def test_shipped_config_validates_and_passes_its_preflight(name, use_release_env, tmp_path):
    arg = f"run={quickstart_run(tmp_path)}" if name == "sample_quickstart.py" else ""
    config = as_shipped(main_lib.load_config_file(os.path.join(REPO, "configs", name) + (f":{arg}" if arg else "")),
                        use_release_env["DATA_DIR"])
    if name not in EXPECTED_PROBLEMS:
        config_lib.validate(config)
    plan, checks, problems = preflight.collect(config, str(tmp_path / "workdir"))
    lines = [str(p) for p in problems]
    expected = EXPECTED_PROBLEMS.get(name, [])
    assert len(lines) == len(expected) and all(e in line for e, line in zip(expected, lines)), lines
    labels = [label for label, _ in plan.lines]
    assert labels[:2] == ["devices", "mesh"], plan.lines
    assert "workdir" in checks.checked
    released = [f for f in ("rae.encoder_path", "rae.decoder_weights", "rae.stats", "sampling.checkpoint",
                            "stage1.disc_arch.dino_ckpt_path") if f in checks.checked]
    if "rae" in config and config.rae.encoder_path.startswith("facebook/"):  # The released encoder, from the cache.
        assert "rae.encoder_path" in released
    if config.job.startswith("train"):
        assert {"batch", "length", "model", "state per device", "checkpoints"} <= set(labels), plan.lines


def _smoke_specs(data_dir: str, root: str) -> list[dict]:
    """The shipped configs' jobs with sizes shrunk: widths/depths, batch, sample and step counts, and num_workers 0
    (16-24 images need no worker processes)."""
    small = {**env_lib.SMALL, "data.data_dir": data_dir, "data.num_workers": 0}
    ditdh = env_lib.ditdh()
    spec = lambda name, config, **overrides: dict(name=name, config=config, workdir=f"{root}/{name}",  # noqa: E731
                                                  overrides=overrides)
    return [
        spec("reference_stats", "configs/reference_stats.py", **{"data.data_dir": data_dir, "data.num_workers": 0,
                                                                 "eval.global_batch_size": 4}),
        spec("stats", "configs/stats.py", **small, **{"stats.global_batch_size": 8}),
        spec("ditdh_xl", "configs/ditdh_xl.py", **small, **ditdh, **{"train.global_batch_size": 4,
                                                                  "train.max_steps": 2}),
        spec("ditdh_s", "configs/ditdh_s.py", **small, **ditdh, **{"train.global_batch_size": 4, "train.max_steps": 1}),
        spec("lightningdit_xl", "configs/lightningdit_xl.py", **small, **{
            "model.hidden_size": 32, "model.depth": 1, "model.num_heads": 2, "model.in_channels": env_lib.LATENT[0],
            "train.global_batch_size": 4, "train.max_steps": 1}),
        spec("decoder_xl", "configs/decoder_xl.py", **small, **{f"stage1.disc_recipe.{k}": v for k, v in env_lib.DISC.items()},
             **{"stage1.disc_arch.key_depths": list(env_lib.DISC_KEY_DEPTHS), "train.global_batch_size": 2,
                "train.max_steps": 2}),
        # 4 grid points (3 autoguided Euler steps) instead of 50: the step is the same code, 16x cheaper.
        spec("sample_fid", "configs/sample_fid.py", **env_lib.SMALL, **ditdh, **env_lib.ditdh("guidance_model"),
             **{"sampling.num_samples": 8, "sampling.global_batch_size": 4, "sample.num_steps": 4}),
        spec("reconstruct", "configs/reconstruct.py", **small, **{"sampling.global_batch_size": 4}),
        spec("evaluate", "configs/evaluate.py", **{"eval.samples": f"{root}/sample_fid/samples.npz",
                                                   "eval.reference": f"{root}/reference_stats/reference.npz",
                                                   "eval.global_batch_size": 4}),
    ]


@pytest.fixture(name="smoke", scope="module")
def smoke_fixture(release_env, tmp_path_factory):
    """Runs every smoke spec once (one subprocess); returns (results by name, workdir root)."""
    root = tmp_path_factory.mktemp("release_smoke")
    specs = _smoke_specs(release_env["DATA_DIR"], str(root))
    (root / "spec.json").write_text(json.dumps(specs))
    env = {k: v for k, v in release_env.items() if k != "DATA_DIR"}
    run_python(["tests/release_smoke_script.py", str(root / "spec.json"), str(root / "result.json")],
               env=dict(env, PYTHONPATH=REPO), timeout=1800)
    return json.loads((root / "result.json").read_text()), root


def _npz(path) -> dict:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


SMOKE_OUTPUTS = {
    "reference_stats": lambda d: _npz(d / "reference.npz")["arr_0"].shape == (8, 256, 256, 3),
    "stats": lambda d: tuple(torch.load(d / "stat.pt")["var"].shape) == env_lib.LATENT,
    "ditdh_xl": lambda d: (d / "checkpoints").is_dir() and len(open(d / "metrics.jsonl").readlines()) >= 1,
    "ditdh_s": lambda d: (d / "checkpoints").is_dir(),
    "lightningdit_xl": lambda d: (d / "checkpoints").is_dir(),
    "decoder_xl": lambda d: (d / "checkpoints").is_dir(),
    "sample_fid": lambda d: _npz(d / "samples.npz")["arr_0"].shape == (8, 256, 256, 3),
    "reconstruct": lambda d: _npz(d / "val_recon.npz")["arr_0"].shape == _npz(d / "val_reference.npz")["arr_0"].shape
    == (8, 256, 256, 3),
    "evaluate": lambda d: {"fid", "sfid", "precision", "recall"} <= set(json.loads((d / "eval.json").read_text())),
}


@pytest.mark.parametrize("name", list(SMOKE_OUTPUTS))
def test_release_path_smoke_run(name, smoke):
    results, root = smoke
    assert results[name]["ok"], results[name]["error"]
    assert SMOKE_OUTPUTS[name](root / name), sorted(os.listdir(root / name))


def test_headline_command_preflight_prints_the_plan(release_env, tmp_path):
    env = {k: v for k, v in release_env.items() if k != "DATA_DIR"}
    result = run_python(["-m", "rae_xla.main", "--config=configs/ditdh_xl.py", f"--workdir={tmp_path / 'xl'}",
                         f"--config.data.data_dir={release_env['DATA_DIR']}", "--preflight", "--plan_for=v5p-64"],
                        env=env)
    out = result.stdout
    assert "32 x v5p-64 device(s) on 8 host(s)" in out and "('data', 'fsdp') = (1, 32)" in out, out
    assert "global 1024, 32 per device" in out and "838.4 M trainable parameters" in out, out
    assert "preflight OK" in out and "FATAL" not in result.stderr


def test_preflight_lists_every_problem_in_one_run(tmp_path):
    (tmp_path / "a_file").write_text("")
    result = run_python(["-m", "rae_xla.main", "--config=configs/ditdh_xl.py", f"--workdir={tmp_path / 'a_file'}",
                         f"--config.data.data_dir={tmp_path / 'no_data'}", "--preflight", "--plan_for=v5p-64",
                         f"--config.rae.decoder_weights={tmp_path / 'missing.pt'}",
                         "--config.train.global_batch_size=1000"], env={"HF_HUB_OFFLINE": "1",
                                                                       "HF_HUB_CACHE": str(tmp_path / "empty")},
                        check=False)
    fatal = [line for line in result.stderr.splitlines() if line.startswith("FATAL")]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    for needle in ("no TFDS dataset", "missing.pt", "not divisible by the 32 batch shards", "--workdir=",
                   "rae.encoder_path", "rae.stats"):
        assert sum(needle in line for line in fatal) == 1, (needle, fatal)


@pytest.mark.parametrize("config", ["configs/stats.py", "configs/reference_stats.py"])
def test_unreachable_gcs_bucket_is_one_line(config, tmp_path):
    result = run_python(["-m", "rae_xla.main", f"--config={config}", f"--workdir={tmp_path}",
                         "--config.data.data_dir=gs://my-bucket/tfds"],
                        env={"STORAGE_EMULATOR_HOST": "http://127.0.0.1:1"}, check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert lines[-1].startswith("FATAL") and "gs://my-bucket/tfds" in lines[-1] and "127.0.0.1:1" in lines[-1], lines


def test_released_file_neither_cached_nor_reachable_is_one_line(tmp_path):
    result = run_python(["-m", "rae_xla.main", "--config=configs/sample_fid.py", f"--workdir={tmp_path / 'w'}"],
                        env={"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty_cache")}, check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert lines[-1].startswith("FATAL") and "facebook/dinov2-with-registers-base" in lines[-1], lines[-1]
