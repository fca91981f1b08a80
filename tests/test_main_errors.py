"""Every bad input a new user can give `python -m rae_xla.main` ends in one line (issue 15).

Each case runs the quickstart config with one mistake, as a user would: exit code 2, exactly one
`FATAL <kind> error: ...` line naming the input, and no traceback. Cases: the issue's table (missing config file,
an argument the file does not take, a missing encoder folder, a file that is not a checkpoint, a workdir that is
a file) and every loader's wrong-file case (missing, not a torch file, truncated, another model's file, wrong
stats keys, a folder given for a file), plus an unknown override, a workdir under a file and a dataset without
the split. (Damaged training checkpoints: tests/checkpoint/test_damaged_resume.py.)
"""
import pytest
import torch

from rae_xla.data import synthetic
from tests.conftest import run_python

QUICKSTART = "--config=configs/quickstart.py:steps=1,batch=8"


def _files(tmp_path):
    """The wrong files the cases point at, all made here."""
    text = tmp_path / "hostname.txt"
    text.write_text("my-laptop\n")
    other_model = tmp_path / "other_model.pt"
    torch.save({"fc.weight": torch.zeros(3, 3), "fc.bias": torch.zeros(3)}, other_model)
    truncated = tmp_path / "truncated.pt"
    torch.save({"w": torch.zeros(1000)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:500])
    bad_stats = tmp_path / "stats.pt"
    torch.save({"std": torch.ones(64, 4, 4)}, bad_stats)
    other_stats = tmp_path / "other_stats.pt"  # Statistics of a 32-channel 8x8 encoder; the quickstart's is 64x4x4.
    torch.save({"var": torch.ones(32, 8, 8)}, other_stats)
    file = tmp_path / "afile"
    file.write_text("")
    return dict(text=text, other_model=other_model, truncated=truncated, bad_stats=bad_stats, file=file,
                folder=tmp_path, other_stats=other_stats)


# (name, arguments given f=files and w=a fresh workdir, kind, what the FATAL line must contain)
CASES = [
    ("missing config file", lambda f, w: ["--config=configs/nope.py", f"--workdir={w}"],
     "input", "config file 'configs/nope.py'"),
    ("config argument the file does not take", lambda f, w: ["--config=configs/quickstart.py:res=512",
                                                              f"--workdir={w}"],
     "config", "unknown config argument 'res'"),
    ("unknown override", lambda f, w: [QUICKSTART, f"--workdir={w}", "--config.train.keep_checkpoint=2"],
     "config", "config.train.keep_checkpoints"),
    ("missing encoder folder", lambda f, w: [QUICKSTART, f"--workdir={w}", "--config.rae.encoder_path=/nonexistent/dino"],
     "input", "'/nonexistent/dino' (rae.encoder_path) does not exist"),
    ("decoder weights: not a checkpoint", lambda f, w: [QUICKSTART, f"--workdir={w}",
                                                        f"--config.rae.decoder_weights={f['text']}"],
     "checkpoint", "hostname.txt' is not a readable torch checkpoint"),
    ("decoder weights: truncated", lambda f, w: [QUICKSTART, f"--workdir={w}",
                                                 f"--config.rae.decoder_weights={f['truncated']}"],
     "checkpoint", "truncated.pt' is not a readable torch checkpoint"),
    ("decoder weights: another model", lambda f, w: [QUICKSTART, f"--workdir={w}",
                                                     f"--config.rae.decoder_weights={f['other_model']}"],
     "checkpoint", "other_model.pt' does not match"),
    ("decoder weights: a folder", lambda f, w: [QUICKSTART, f"--workdir={w}",
                                                f"--config.rae.decoder_weights={f['folder']}"],
     "input", "is a folder; give the .pt file inside it"),
    ("decoder config missing", lambda f, w: [QUICKSTART, f"--workdir={w}",
                                             "--config.rae.decoder_config=/nonexistent/config.json"],
     "input", "decoder config '/nonexistent/config.json' (rae.decoder_config) not found"),
    ("stats with the wrong keys", lambda f, w: [QUICKSTART, f"--workdir={w}", f"--config.rae.stats={f['bad_stats']}"],
     "checkpoint", "stats.pt' must hold 'var'"),
    ("stats of another encoder", lambda f, w: [QUICKSTART, f"--workdir={w}", f"--config.rae.stats={f['other_stats']}"],
     "checkpoint", "does not broadcast to the latent shape (64, 4, 4)"),
    ("stage-2 init_from: not a checkpoint", lambda f, w: [QUICKSTART, f"--workdir={w}",
                                                          f"--config.train.init_from={f['text']}"],
     "config", "train.init_from: stage-2 checkpoint"),
    ("stage-2 init_from: another model", lambda f, w: [QUICKSTART, f"--workdir={w}",
                                                       f"--config.train.init_from={f['other_model']}"],
     "config", "other_model.pt' does not match"),
    ("workdir is an existing file", lambda f, w: [QUICKSTART, f"--workdir={f['file']}"],
     "workdir", "afile is an existing file"),
    ("workdir under a file", lambda f, w: [QUICKSTART, f"--workdir={f['file']}/run"],
     "workdir", "cannot create or write --workdir="),
]


@pytest.fixture(scope="module")
def synthetic_tfds(tmp_path_factory):
    """A built dataset with 'train' and 'validation' splits (about a second)."""
    data_dir = tmp_path_factory.mktemp("tfds")
    synthetic.ensure_built(str(data_dir), "rae_synthetic", num_classes=10, num_images=200, image_size=64)
    return data_dir


def _common(data_dir):
    return ["--config.data.num_workers=0", f"--config.data.data_dir={data_dir}",
            "--config.data.synthetic_num_images=200"]


def _check_one_fatal_line(result, kind, needle):
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    fatal = [line for line in result.stderr.splitlines() if line.startswith("FATAL")]
    assert len(fatal) == 1, result.stderr[-3000:]
    assert fatal[0].startswith(f"FATAL {kind} error: ") and needle in fatal[0], fatal[0]


@pytest.mark.parametrize("name,arguments,kind,needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_fatal_line(name, arguments, kind, needle, synthetic_tfds, tmp_path):
    del name
    argv = arguments(_files(tmp_path), tmp_path / "run") + _common(synthetic_tfds)
    _check_one_fatal_line(run_python(["-m", "rae_xla.main", *argv], check=False), kind, needle)


def test_dataset_without_the_split(synthetic_tfds, tmp_path):
    result = run_python(["-m", "rae_xla.main", QUICKSTART, f"--workdir={tmp_path / 'run'}", *_common(synthetic_tfds),
                         "--config.data.source=tfds", "--config.data.split=test"], check=False)
    _check_one_fatal_line(result, "config", "config.data.split='test' is not in")


def test_traceback_flag_shows_the_traceback_too(tmp_path):
    result = run_python(["-m", "rae_xla.main", "--config=configs/nope.py", f"--workdir={tmp_path}", "--traceback"],
                        check=False)
    assert result.returncode == 2 and "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("FATAL input error: config file 'configs/nope.py'")


def test_evaluate_with_a_missing_samples_npz(tmp_path):
    result = run_python(["-m", "rae_xla.main", "--config=configs/evaluate.py", f"--workdir={tmp_path / 'run'}",
                         f"--config.eval.samples={tmp_path / 'none.npz'}",
                         f"--config.eval.reference={tmp_path / 'none_either.npz'}"], check=False)
    _check_one_fatal_line(result, "input", f"eval.samples='{tmp_path / 'none.npz'}' does not exist")
