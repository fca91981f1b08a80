"""Every file in configs/ builds and validates; overrides work; mistakes give one clear error."""
import glob
import importlib.util
import os
import sys

import ml_collections
import pytest
from absl import flags
from ml_collections import config_flags

from rae_xla import config as config_lib
from tests.conftest import REPO, run_python

CONFIG_FILES = sorted(glob.glob(os.path.join(REPO, "configs", "*.py")))
VARIANTS = {"ditdh_xl.py": ["", "res=512"], "ditdh_s.py": ["", "res=512,epochs=14"],
            "lightningdit_xl.py": ["", "res=512"], "quickstart.py": ["", "steps=10,batch=8", "part=stage1", "part=all"],
            "info.py": [""], "decoder_xl.py": ["", "res=512", "encoder=siglip2", "encoder=mae,decoder=ViT-L"],
            "stats.py": ["", "runlocal"],
            "sample_fid.py": ["", "res=512", "guidance=none", "guidance=cfg", "job=sample"],
            "reconstruct.py": ["", "res=512"],
            "sample_tiny.py": ["", "job=sample", "job=reconstruct", "guidance=cfg"],
            "sample_quickstart.py": ["", "job=sample", "job=reconstruct", "guidance=none"]}


def load(path, arg=""):
    spec = importlib.util.spec_from_file_location("cfg", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg or None)


def as_shipped(config, data_dir):
    """The config with only the placeholder bucket replaced (by the release environment's ImageNet stand-in):
    every released hf:// path stays as shipped (validate checks its form; the preflight test resolves it)."""
    config = ml_collections.ConfigDict(config.to_dict())
    for key in config_lib.all_keys(config):
        parent, _, leaf = key.rpartition(".")
        node = config_lib.get_field(config, parent) if parent else config
        if isinstance(node[leaf], str) and config_lib.PLACEHOLDER in node[leaf]:
            assert node[leaf] == f"gs://{config_lib.PLACEHOLDER}/tfds", f"a new placeholder field {key}: map it"
            node[leaf] = data_dir
    return config


def quickstart_run(tmp_path):
    """A folder laid out as `make quickstart` leaves runs/quickstart (files only touched: validate checks paths)."""
    for rel in ("decoder/config.json", "decoder/model.pt", "stats/stat.pt", "stage2/checkpoints/.keep"):
        (tmp_path / "run" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "run" / rel).write_text("")
    return str(tmp_path / "run")


# Evaluation and statistics configs (rae_xla/eval/).
VARIANTS.update({"evaluate.py": ["", "mode=reconstruction"], "reference_stats.py": ["", "res=512"],
                 "stats.py": ["", "runlocal", "res=512"]})


def test_every_config_file_has_variants_listed():
    assert {os.path.basename(p) for p in CONFIG_FILES} == set(VARIANTS)


@pytest.mark.parametrize("path,arg", [(p, a) for p in CONFIG_FILES for a in VARIANTS[os.path.basename(p)]])
def test_config_builds_and_validates(path, arg, tmp_path, release_env):
    if os.path.basename(path) == "sample_quickstart.py":  # Its `run=` argument names the quickstart's output.
        arg = ",".join(filter(None, [arg, f"run={quickstart_run(tmp_path)}"]))
    config = load(path, arg)
    assert config.job in config_lib.JOBS
    config_lib.validate(as_shipped(config, release_env["DATA_DIR"]), num_devices=8 if "train" not in config else
                        max(1, 8 if config.train.global_batch_size % 8 == 0 else 1))


def test_released_configs_refuse_the_placeholder_bucket():
    config = load(os.path.join(REPO, "configs", "ditdh_xl.py"))
    with pytest.raises(config_lib.ConfigError, match="placeholder bucket"):
        config_lib.validate(config)


def test_res_512_variant_uses_32x32_latents():
    config = load(os.path.join(REPO, "configs", "ditdh_xl.py"), "res=512")
    assert config.model.input_size == 32 and config.rae.encoder_input_size == 448
    assert "i512" in config.rae.decoder_weights and config.model.hidden_size == (1152, 2048)


def test_overrides_apply_and_are_typed():
    fv = flags.FlagValues()
    path = os.path.join(REPO, "configs", "quickstart.py")
    argv = ["prog", f"--config={path}:steps=7", "--config.train.global_batch_size=32",
            "--config.runtime.mesh.data=2", "--config.flow.shift=2.5", "--config.model.hidden_size=(32,64)"]
    holder = config_flags.DEFINE_config_file("config", None, flag_values=fv, lock_config=True, sys_argv=argv)
    fv(argv)
    config = holder.value
    assert config.train.max_steps == 7 and config.train.global_batch_size == 32
    assert config.runtime.mesh.data == 2 and config.flow.shift == 2.5 and config.model.hidden_size == (32, 64)


@pytest.mark.parametrize("override,message", [
    ("--config.train.global_batch_sise=8", "Nearest valid keys: config.train.global_batch_size"),
    ("--config.runtim.backend=cpu", "Nearest valid keys: config.runtime"),
    ("--config.runtime.backend=tpu", "use 'xla'"),
    ("--config.runtime.mesh.fsdp=3", "has 3 devices but 1 are available"),
    ("--config.train.global_batch_size=abc", "invalid literal"),
    ("--config.sample.guidance.method=cgf", "did you mean 'cfg'"),
])
def test_bad_overrides_give_one_clear_line(override, message, tmp_path):
    result = run_python(["-m", "rae_xla.main", "--config=configs/quickstart.py", f"--workdir={tmp_path}",
                         "--config.runtime.backend=cpu", override], check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_parse_arg_types_and_errors():
    a = config_lib.parse_arg("res=512,runlocal", res=256, runlocal=False, lr=0.1)
    assert a.res == 512 and a.runlocal is True and a.lr == 0.1
    with pytest.raises(config_lib.ConfigError, match="unknown config argument 'rez'"):
        config_lib.parse_arg("rez=512", res=256)
    with pytest.raises(config_lib.ConfigError, match="must be a int"):
        config_lib.parse_arg("res=big", res=256)


def test_validate_catches_batch_not_divisible_and_mesh_mismatch(tmp_path):
    config = load(os.path.join(REPO, "configs", "quickstart.py"))
    config.train.global_batch_size = 12
    with pytest.raises(config_lib.ConfigError, match="not divisible by the 8 batch shards"):
        config_lib.validate(config, num_devices=8)
    config.train.global_batch_size, config.train.grad_accum_steps = 16, 3
    with pytest.raises(config_lib.ConfigError, match="not divisible by train.grad_accum_steps"):
        config_lib.validate(config)
    assert config_lib.resolve_mesh({"data": 2, "fsdp": -1}, 8) == {"data": 2, "fsdp": 4}
    with pytest.raises(config_lib.ConfigError, match="not divisible"):
        config_lib.resolve_mesh({"data": 3, "fsdp": -1}, 8)


@pytest.mark.xla
def test_info_job_writes_the_resolved_config(tmp_path):
    result = run_python(["-m", "rae_xla.main", "--config=configs/info.py", f"--workdir={tmp_path}",
                         "--config.runtime.mesh.data=2"], xla_devices=4)
    assert "mesh           {'data': 2, 'fsdp': 2}" in result.stderr
    assert '"data": 2' in (tmp_path / "config.json").read_text()


def test_autoguidance_previews_are_refused_not_silently_unguided(tmp_path):
    from rae_xla.train import previews
    config = load(os.path.join(REPO, "configs", "quickstart.py"))
    config.sample.guidance.update(method="autoguidance", scale=1.5)
    with pytest.raises(config_lib.ConfigError, match="cannot be used for training previews.*needs a second"):
        config_lib.validate(config)
    with pytest.raises(ValueError, match="autoguidance"):  # The second line of defence, in the preview itself.
        previews.preview_guidance(config.sample, num_classes=10)
    config.train.sample_every = 0  # No previews: nothing samples, so the sample block is not in the way.
    config_lib.validate(config)
    config.sample.guidance.update(method="cfg", scale=1.5, t_min=0.2, t_max=0.8)
    assert previews.preview_guidance(config.sample, num_classes=10) == dict(
        method="cfg", scale=1.5, t_min=0.2, t_max=0.8, null_label=10)
    config.sample.guidance.scale = 1.0  # scale <= 1 means no guidance, as in the official scripts.
    assert previews.preview_guidance(config.sample, num_classes=10) is None
