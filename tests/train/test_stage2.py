"""The stage-2 trainer end to end on the quickstart setup (tiny random encoder, tiny DiT^DH, synthetic data).

Runs go through `python -m rae_xla.main` in subprocesses, as users run them. 'host' RNG mode draws the
step's noise/times/label drops on the host from (seed, step), so eager CPU and XLA see identical inputs.
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
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

from rae_xla.checkpoint.manager import COMMIT_MARKER
from tests.conftest import REPO, run_python


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def args(workdir, data_dir, steps, *overrides, batch=8):
    return ["-m", "rae_xla.main", f"--config=configs/quickstart.py:steps={steps},batch={batch}", f"--workdir={workdir}",
            f"--config.data.data_dir={data_dir}", "--config.data.synthetic_num_images=200",
            "--config.data.num_workers=0", "--config.train.log_every=1", "--config.train.sample_every=0",
            *overrides]


def metrics(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def losses(workdir):
    return {m["step"]: m["loss"] for m in metrics(workdir)}


def checkpoint_tensors(workdir, step, tmp_path):
    out = tmp_path / f"ckpt_{os.path.basename(workdir)}_{step}.pt"
    dcp_to_torch_save(os.path.join(workdir, "checkpoints", str(step)), str(out))
    return torch.load(out, weights_only=False)


def test_quickstart_run_learns_and_fills_the_workdir(tmp_path, data_dir):
    workdir = tmp_path / "run"
    run_python(args(workdir, data_dir, 60, "--config.data.num_workers=2", "--config.train.log_every=10",
                    "--config.train.sample_every=60", batch=16))
    rows = metrics(workdir)
    assert [r["step"] for r in rows] == [10, 20, 30, 40, 50, 60]
    for key in ("loss", "lr", "grad_norm", "images_per_sec"):
        assert all(np.isfinite(r[key]) for r in rows[1:]), key
    assert rows[-1]["loss"] < 0.8 * rows[0]["loss"]  # It learns.
    assert json.loads((workdir / "config.json").read_text())["train"]["max_steps"] == 60
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(workdir))
    assert (workdir / "checkpoints" / "60" / COMMIT_MARKER).exists()
    from PIL import Image
    grid = Image.open(workdir / "samples" / "step_00000060.png")
    assert grid.size == (3 * 64, 3 * 64)  # 8 samples of 64 px in a 3x3 grid.


@pytest.mark.xla
def test_xla_fsdp_on_4_devices_matches_eager(tmp_path, data_dir):
    eager, xla = tmp_path / "eager", tmp_path / "xla"
    run_python(args(eager, data_dir, 6, "--config.runtime.rng=host"))
    # strict: a host sync inside the step, or a third graph, raises (zero host syncs per step).
    run_python(args(xla, data_dir, 6, "--config.runtime.rng=host", "--config.runtime.backend=xla",
                    "--config.runtime.mesh.fsdp=4", "--config.runtime.strict=True"), xla_devices=4)
    a, b = losses(eager), losses(xla)
    assert sorted(a) == sorted(b) == list(range(1, 7))
    np.testing.assert_allclose([b[s] for s in a], [a[s] for s in a], rtol=2e-4)
    graphs = [m["compiled_graphs"] for m in metrics(xla)]
    assert graphs[1] >= 1 and all(g == graphs[1] for g in graphs[1:]), graphs  # No recompiles after step 2.


@pytest.mark.parametrize("strategy,accum", [("replicate", 2), ("fsdp", 1)])  # DDP (with no_sync) and FSDP2.
def test_torchrun_two_processes_match_one(strategy, accum, tmp_path, data_dir):
    single, multi = tmp_path / "single", tmp_path / "multi"
    common = ("--config.runtime.rng=host", f"--config.train.grad_accum_steps={accum}",
              "--config.train.sample_every=3", "--config.train.checkpoint_every=3")
    run_python(args(single, data_dir, 6, *common))
    run_python(args(multi, data_dir, 6, *common, f"--config.runtime.param_sharding={strategy}"),
               module_runner=[sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"])
    a, b = losses(single), losses(multi)
    assert sorted(b) == list(range(1, 7))
    np.testing.assert_allclose([b[s] for s in a], [a[s] for s in a], rtol=1e-5)
    assert (multi / "samples" / "step_00000006.png").exists() and (multi / "checkpoints" / "6" / COMMIT_MARKER).exists()


def _wait_for_step(workdir, step, process):
    """Polls metrics.jsonl until `step` is logged; fails if the run ends first (no wall-clock limit)."""
    while process.poll() is None:
        try:
            if any(m["step"] >= step for m in metrics(workdir)):
                return
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"the run ended (rc {process.returncode}) before step {step}: "
                         f"{process.stderr.read()[-3000:]}")


def _start(arguments):
    return subprocess.Popen([sys.executable, *arguments], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def test_sigkill_then_resume_reproduces_the_uninterrupted_run(tmp_path, data_dir):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    common = ("--config.train.checkpoint_every=10",)
    run_python(args(straight, data_dir, 200, *common))
    process = _start(args(killed, data_dir, 200, *common))
    _wait_for_step(killed, 25, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = [m["step"] for m in metrics(killed)]
    assert max(done) < 200, "the run finished before it could be killed"
    run_python(args(killed, data_dir, 200, *common))  # Resumes from the newest complete checkpoint.
    a, b = losses(straight), losses(killed)
    assert sorted(b) == list(range(1, 201))  # One line per step: lines after the checkpoint were dropped.
    assert [b[s] for s in sorted(a)] == [a[s] for s in sorted(a)]  # Bitwise: data, RNG, LR, EMA all resumed.


def test_sigterm_saves_a_checkpoint_and_exits_zero(tmp_path, data_dir):
    workdir = tmp_path / "run"
    process = _start(args(workdir, data_dir, 100000, "--config.train.checkpoint_every=100000"))
    _wait_for_step(workdir, 5, process)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=300) == 0, process.stderr.read()[-3000:]
    saved = [int(d) for d in os.listdir(workdir / "checkpoints") if (workdir / "checkpoints" / d / COMMIT_MARKER).exists()]
    assert len(saved) == 1 and saved[0] >= 5
    assert saved[0] == max(m["step"] for m in metrics(workdir))  # The step it stopped at.


@pytest.mark.xla
@pytest.mark.parametrize("first,second", [("xla", "cpu"), ("cpu", "xla")])
def test_checkpoint_moves_between_4_xla_devices_and_1_cpu(first, second, tmp_path, data_dir):
    reference, moved = tmp_path / "reference", tmp_path / "moved"
    host = ("--config.runtime.rng=host", "--config.train.checkpoint_every=4")
    backend = {"xla": dict(overrides=("--config.runtime.backend=xla", "--config.runtime.mesh.fsdp=4"), xla_devices=4),
               "cpu": dict(overrides=("--config.runtime.backend=cpu",), xla_devices=None)}
    run_python(args(reference, data_dir, 8, *host))
    run_python(args(moved, data_dir, 4, *host, *backend[first]["overrides"]), xla_devices=backend[first]["xla_devices"])
    run_python(args(moved, data_dir, 8, *host, *backend[second]["overrides"]), xla_devices=backend[second]["xla_devices"])
    a, b = losses(reference), losses(moved)
    assert sorted(b) == list(range(1, 9))
    np.testing.assert_allclose([b[s] for s in range(5, 9)], [a[s] for s in range(5, 9)], rtol=2e-4)


def test_gradient_accumulation_equals_one_big_batch(tmp_path, data_dir):
    one, two = tmp_path / "one", tmp_path / "two"
    run_python(args(one, data_dir, 3, "--config.runtime.rng=host", "--config.train.checkpoint_every=3"))
    run_python(args(two, data_dir, 3, "--config.runtime.rng=host", "--config.train.checkpoint_every=3",
                    "--config.train.grad_accum_steps=2"))
    a, b = metrics(one), metrics(two)
    np.testing.assert_allclose([m["loss"] for m in b], [m["loss"] for m in a], rtol=1e-5)
    np.testing.assert_allclose([m["grad_norm"] for m in b], [m["grad_norm"] for m in a], rtol=1e-4)
    sa, sb = checkpoint_tensors(one, 3, tmp_path), checkpoint_tensors(two, 3, tmp_path)
    for name, value in sa["model"].items():
        torch.testing.assert_close(sb["model"][name], value, rtol=1e-4, atol=1e-6)


def test_ema_is_decay_times_old_plus_rest_times_new(tmp_path, data_dir):
    sys.path.insert(0, REPO)
    from configs import quickstart
    from rae_xla import build
    workdir = tmp_path / "run"
    run_python(args(workdir, data_dir, 1, "--config.train.ema_decay=0.25", "--config.train.checkpoint_every=1"))
    config = quickstart.get_config("steps=1,batch=8")
    torch.manual_seed(config.seed)  # The initial weights, built in the trainer's order.
    build.build_rae(config.rae)
    initial = build.build_model(config.model, init_from="", train_fixed_embeddings=False).state_dict()
    saved = checkpoint_tensors(workdir, 1, tmp_path)
    changed = 0
    for name, value in saved["ema"].items():
        expected = 0.25 * initial[name] + 0.75 * saved["model"][name]
        torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-7, msg=name)
        changed += int(not torch.equal(saved["model"][name], initial[name]))
    # DiT^DH starts with zeroed adaLN and output layers, so one step moves only the output layer; it did move,
    # so the check above is not trivially true.
    assert changed >= 2
    assert not torch.equal(saved["ema"]["final_layer.linear.weight"], saved["model"]["final_layer.linear.weight"])


def test_warm_start_from_a_released_format_checkpoint(tmp_path, data_dir):
    sys.path.insert(0, REPO)
    from configs import quickstart
    from rae_xla import build
    config = quickstart.get_config("steps=1,batch=8")
    torch.manual_seed(1234)  # Weights the trainer would never draw itself.
    released = build.build_model(config.model, init_from="", train_fixed_embeddings=False).state_dict()
    torch.save({"ema": released}, tmp_path / "stage2_model.pt")  # The released file format.
    workdir = tmp_path / "run"
    run_python(args(workdir, data_dir, 1, f"--config.train.init_from={tmp_path / 'stage2_model.pt'}",
                    "--config.train.lr_schedule.base_lr=1e-30", "--config.train.lr_schedule.final_lr=1e-30",
                    "--config.train.checkpoint_every=1"))
    saved = checkpoint_tensors(workdir, 1, tmp_path)
    for name, value in released.items():  # LR 1e-30: one step moves the warm-start weights by < 1e-29.
        torch.testing.assert_close(saved["model"][name], value, rtol=0, atol=1e-25, msg=name)
    wrong = {k: v for k, v in released.items() if not k.startswith("final_layer")}
    torch.save(wrong, tmp_path / "truncated.pt")
    result = run_python(args(tmp_path / "run2", data_dir, 1, f"--config.train.init_from={tmp_path / 'truncated.pt'}"),
                        check=False)
    assert result.returncode == 2 and "train.init_from" in result.stderr and "final_layer" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("overrides,xla_devices,message", [
    pytest.param(("--config.runtime.backend=xla", "--config.train.global_batch_size=6"), 4,
                 "is not divisible by the 4 batch shards", marks=pytest.mark.xla),
    (("--config.data.source=tfds", "--config.data.data_dir=/nonexistent/tfds"), None, "no TFDS dataset"),
    (("--config.model.in_channels=32",), None, "model expects 32x4x4 latents but the RAE encoder produces 64x4x4"),
])
def test_bad_configs_fail_with_one_clear_line_before_compiling(overrides, xla_devices, message, tmp_path, data_dir):
    result = run_python(args(tmp_path / "run", data_dir, 2, *overrides), xla_devices=xla_devices, check=False)
    assert result.returncode == 2, result.stderr[-3000:]
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_nonfinite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path, data_dir):
    workdir = tmp_path / "run"
    result = run_python(args(workdir, data_dir, 40, "--config.train.lr_schedule.base_lr=1e12",
                             "--config.train.lr_schedule.final_lr=1e12",
                             "--config.train.clip_grad=0.0", "--config.train.checkpoint_every=1000"), check=False)
    assert result.returncode != 0
    assert "the training loss became NaN/inf between steps" in result.stderr, result.stderr[-3000:]
    assert not os.path.exists(workdir / "checkpoints") or not any(
        (workdir / "checkpoints" / d / COMMIT_MARKER).exists() for d in os.listdir(workdir / "checkpoints"))
