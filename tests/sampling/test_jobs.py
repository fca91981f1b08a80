"""The sampling jobs end to end through `python -m rae_xla.main` on the quickstart's tiny models (random weights).

One reference `sample_fid` run (eager CPU, batch 8) serves every comparison: XLA on 1 device with batch 4 and on
4 devices with batch 8 give the same npz bit for bit (noise and labels are functions of (seed, index), and each
sample's arithmetic does not depend on its batch neighbours on CPU), and so does a run killed with SIGKILL and
restarted, and two torchrun processes. Run time ~9 min on 2 cores under load ~15 (9 subprocess runs; less on idle cores).
"""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from tests.conftest import REPO, run_python

N = 20
CONFIG = "configs/sample_tiny.py"


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """stage2_model.pt files of the tiny main and weak models (random weights, fixed seeds)."""
    from rae_xla import build
    import importlib.util
    spec = importlib.util.spec_from_file_location("sample_tiny", os.path.join(REPO, CONFIG))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(None)
    out = tmp_path_factory.mktemp("weights")
    torch.manual_seed(1)
    main = build.build_model(config.model, init_from="", train_fixed_embeddings=False)
    weak = build.build_model(config.guidance_model, init_from="", train_fixed_embeddings=False)
    torch.save(main.state_dict(), out / "main.pt")
    torch.save(weak.state_dict(), out / "weak.pt")
    return {"main": str(out / "main.pt"), "weak": str(out / "weak.pt"), "config": config, "module": main}


def fid_args(workdir, weights, *, batch, arg="", overrides=()):
    return ["-m", "rae_xla.main", f"--config={CONFIG}:num={N},batch={batch}{arg}", f"--workdir={workdir}",
            f"--config.sampling.checkpoint={weights['main']}", "--config.sampling.log_every=1", *overrides]


def load_npz(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, weights):
    workdir = tmp_path_factory.mktemp("fid_ref")
    run_python(fid_args(workdir, weights, batch=8))
    return load_npz(workdir / "samples.npz")


def test_reference_npz_is_adm_format_with_equal_labels(reference):
    images, labels = reference["arr_0"], reference["arr_1"]
    assert images.dtype == np.uint8 and images.shape == (N, 64, 64, 3)
    assert (np.bincount(labels, minlength=10) == N // 10).all()
    assert images.std() > 0 and len({images[i].tobytes() for i in range(N)}) == N


@pytest.mark.parametrize("devices,batch", [(1, 4), (4, 8)])
def test_xla_topologies_and_batch_sizes_give_the_same_npz(tmp_path, weights, reference, devices, batch):
    # strict: a host sync inside a compiled step or a recompile raises.
    run_python(fid_args(tmp_path, weights, batch=batch, overrides=(
        "--config.runtime.backend=xla", "--config.runtime.strict=True", f"--config.runtime.mesh.fsdp={devices}")),
        xla_devices=devices)
    got = load_npz(tmp_path / "samples.npz")
    np.testing.assert_array_equal(got["arr_1"], reference["arr_1"])
    np.testing.assert_array_equal(got["arr_0"], reference["arr_0"])  # Bitwise.
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    graphs = [r["compiled_graphs"] for r in rows]
    # The graph set (sampling step, decode, and on XLA the replicating gather of runtime.gather_batch) is complete
    # after the first batch and never grows afterwards: no recompiles across batches.
    assert len(rows) >= N // batch and graphs[-1] <= 3 and graphs[1:] == [graphs[-1]] * (len(graphs) - 1), graphs
    assert [r["step"] for r in rows][-2:] == [N, N] and rows[-1]["samples_done"] == N  # step = samples done


def test_two_torchrun_processes_give_the_same_npz(tmp_path, weights, reference):
    """Two hosts' worth of processes: each feeds its rows, the batch is gathered, process 0 writes the shards."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    run_python(fid_args(tmp_path, weights, batch=8, overrides=("--config.runtime.backend=cpu",))[2:],
               module_runner=torchrun + ["-m", "rae_xla.main"])
    got = load_npz(tmp_path / "samples.npz")
    np.testing.assert_array_equal(got["arr_1"], reference["arr_1"])
    np.testing.assert_array_equal(got["arr_0"], reference["arr_0"])


def test_resume_after_sigkill_gives_the_uninterrupted_file(tmp_path, weights, reference):
    shards = tmp_path / "samples_shards"
    command = [sys.executable] + fid_args(tmp_path, weights, batch=2)
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    while proc.poll() is None and len(list(shards.glob("0*.npz"))) < 2:  # Kill once 2 of 10 shards are written.
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = sorted(p.name for p in shards.glob("0*.npz"))
    assert 2 <= len(written) < N // 2 and not (tmp_path / "samples.npz").exists(), written
    (shards / "00000099_00000100.npz.tmp").write_bytes(b"partial")  # What a kill during a write leaves.
    run_python(fid_args(tmp_path, weights, batch=2))
    got = load_npz(tmp_path / "samples.npz")
    np.testing.assert_array_equal(got["arr_0"], reference["arr_0"])
    np.testing.assert_array_equal(got["arr_1"], reference["arr_1"])
    ends = [tuple(int(x) for x in p.stem.split("_")) for p in sorted(shards.glob("0*.npz"))]
    assert ends[0][0] == 0 and all(a[1] == b[0] for a, b in zip(ends, ends[1:])) and ends[-1][1] == N  # No overlap.
    assert not list(shards.glob("*.tmp"))


def test_sample_job_with_autoguidance_from_a_training_workdir(tmp_path, weights):
    """`sample` writes a grid and latents; EMA weights restored from a checkpoint equal the same weights as a .pt."""
    from rae_xla import config as config_lib
    from rae_xla.checkpoint.manager import CheckpointManager
    from rae_xla.runtime import make_runtime
    train_dir = tmp_path / "train"
    runtime = make_runtime(config_lib.runtime_block(backend="cpu"))
    from rae_xla import build
    live = build.build_model(weights["config"].model, init_from="", train_fixed_embeddings=False)  # Other weights.
    ema = weights["module"]
    optimizer = torch.optim.AdamW(live.parameters())
    CheckpointManager(str(train_dir / "checkpoints"), runtime, keep=1).save(
        3, {"model": live, "ema": ema, "optim": (live, optimizer)}, meta={})
    outputs = {}
    for name, source in (("file", weights["main"]), ("workdir", str(train_dir))):
        run_python(["-m", "rae_xla.main", f"--config={CONFIG}:job=sample,guidance=autoguidance",
                    f"--workdir={tmp_path / name}", f"--config.sampling.checkpoint={source}",
                    f"--config.sample.guidance.model_weights={weights['weak']}"])
        outputs[name] = load_npz(tmp_path / name / "samples" / "samples.npz")
    from PIL import Image
    assert Image.open(tmp_path / "file" / "samples" / "samples.png").size == (3 * 64, 3 * 64)  # 8 images, 3x3 grid.
    out = outputs["file"]
    assert out["latents"].shape == (8, 64, 4, 4) and out["arr_0"].shape == (8, 64, 64, 3)
    np.testing.assert_array_equal(out["labels"], np.arange(8))
    for key in ("latents", "arr_0"):
        np.testing.assert_array_equal(outputs["workdir"][key], out[key])


def test_reconstruct_writes_reconstructions_and_the_same_crops(tmp_path):
    from rae_xla import data
    data_dir = tmp_path / "tfds"
    run_python(["-m", "rae_xla.main", f"--config={CONFIG}:job=reconstruct", f"--workdir={tmp_path / 'run'}",
                f"--config.data.data_dir={data_dir}", "--config.data.synthetic_num_images=40",
                "--config.sampling.num_samples=12", "--config.sampling.global_batch_size=8",
                "--config.data.split=train"])
    recon = load_npz(tmp_path / "run" / "samples_recon.npz")
    ref = load_npz(tmp_path / "run" / "samples_reference.npz")
    assert recon["arr_0"].shape == ref["arr_0"].shape == (12, 64, 64, 3) and recon["arr_0"].dtype == np.uint8
    source = data.open_source(dict(source="synthetic", name="rae_synthetic", data_dir=str(data_dir), split="train",
                                   image_size=64, random_flip=False, num_workers=0, prefetch_factor=2,
                                   synthetic_num_classes=10, synthetic_num_images=40))
    from PIL import Image
    from rae_xla.data import transforms
    for i in range(12):  # The reference is the ADM-cropped, unflipped image i, with its label.
        image, label = source[i]
        np.testing.assert_array_equal(ref["arr_0"][i], transforms.center_crop_arr(Image.fromarray(image), 64))
        assert ref["arr_1"][i] == label
    assert not np.array_equal(recon["arr_0"], ref["arr_0"])


def test_missing_stage2_weights_is_one_clear_config_error(tmp_path, weights):
    from rae_xla import config as config_lib
    from rae_xla.runtime import make_runtime
    from rae_xla.sampling.models import load_stage2_weights
    runtime = make_runtime(config_lib.runtime_block(backend="cpu"))
    with pytest.raises(config_lib.ConfigError, match="no complete checkpoint in .*stage2_model.pt file"):
        load_stage2_weights(weights["module"], str(tmp_path), runtime, what="sampling.checkpoint")
    with pytest.raises(config_lib.ConfigError, match="sample.guidance.model_weights: .*does not match"):
        load_stage2_weights(weights["module"], weights["weak"], runtime, what="sample.guidance.model_weights")
