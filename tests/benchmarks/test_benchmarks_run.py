"""The throughput benchmark still runs and reports what it promises (no speed asserts: speed is not a test).

Runs `benchmarks/throughput.py` on the quickstart config for a few steps, eager CPU and XLA SPMD on 4 virtual
CPU devices, and checks the reported fields against counts made here from the same config; and runs
`benchmarks/runtime_toy.py` on eager CPU.
"""
import json
import math

import pytest

from configs import quickstart
from rae_xla.models import flops
from rae_xla import build

_POSITIVE = ("images_per_sec_per_device", "images_per_sec", "step_seconds", "first_step_seconds",
             "flops_per_image", "achieved_flops_per_sec_per_device", "bytes_per_device", "replicated_bytes",
             "ema_bytes_per_device", "host_max_rss_bytes", "param_count")


def _run(run_python, tmp_path, backend, xla_devices=None, extra=()):
    out = tmp_path / f"{backend}.json"
    result = run_python(["benchmarks/throughput.py", "--config=configs/quickstart.py",
                         f"--config.runtime.backend={backend}", "--steps", "3", "--warmup", "1",
                         f"--json_out={out}", *extra], xla_devices=xla_devices, timeout=300)
    report = json.loads(out.read_text())
    printed = [line for line in result.stdout.splitlines() if line.startswith("RESULT_JSON ")]
    assert printed and json.loads(printed[-1][len("RESULT_JSON "):]) == report
    return report


def _expected_counts():
    """Trainable and total parameter counts and the training FLOPs of the quickstart DiT (encoder excluded)."""
    config = quickstart.get_config()
    model = build.build_model(config.model, init_from="", train_fixed_embeddings=False)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    all_params = sum(p.numel() for p in model.parameters())
    model_flops = 3 * flops.stage2_forward_flops(config.model.arch, **build.model_kwargs(config.model))
    return params, all_params, model_flops


def _check_common(report):
    for field in _POSITIVE:
        assert isinstance(report[field], (int, float)) and report[field] > 0, (field, report[field])
    params, all_params, model_flops = _expected_counts()
    assert all_params > params  # pos_embed and the Fourier frequencies are frozen (train_fixed_embeddings=False).
    assert report["param_count"] == params
    # Replicated: fp32 trainable parameters + AdamW exp_avg + exp_avg_sq; the EMA copies every parameter.
    assert report["replicated_bytes"] == 3 * 4 * params
    assert report["ema_replicated_bytes"] == 4 * all_params
    # The trainer's count adds the frozen DINOv2 forward to 3x the DiT forward.
    assert report["flops_per_image"] > model_flops
    assert math.isclose(report["images_per_sec"], report["global_batch_size"] / report["step_seconds"])
    assert math.isclose(report["achieved_flops_per_sec_per_device"],
                        report["flops_per_image"] * report["images_per_sec_per_device"])
    assert len(report["window_step_seconds"]) == 3 and min(report["window_step_seconds"]) > 0
    assert math.isfinite(report["mean_loss"])


def test_throughput_eager_cpu(run_python, tmp_path):
    report = _run(run_python, tmp_path, "cpu")
    _check_common(report)
    assert report["backend"] == "cpu" and report["num_devices"] == 1
    assert report["bytes_per_device"] == report["replicated_bytes"]  # One device holds everything.
    assert report["mfu"] is None and report["peak_bf16_flops_per_device"] is None  # No CPU peak in the table.
    assert report["peak_memory_bytes"] == report["host_max_rss_bytes"]
    assert report["compiled_graphs"] is None


@pytest.mark.xla
def test_throughput_xla_fsdp_bytes_per_device(run_python, tmp_path):
    mesh_fsdp = 4
    report = _run(run_python, tmp_path, "xla", xla_devices=4, extra=(f"--config.runtime.mesh.fsdp={mesh_fsdp}",))
    _check_common(report)
    assert report["mesh"] == {"data": 1, "fsdp": mesh_fsdp}
    assert report["images_per_sec_per_device"] * mesh_fsdp == pytest.approx(report["images_per_sec"])
    # Every weight matrix is split 4 ways; the compiler also splits the small 1-D tensors, so ~1/4 overall.
    assert 1 / mesh_fsdp <= report["bytes_ratio"] < 1.1 / mesh_fsdp
    assert report["ema_bytes_per_device"] < 1.1 * report["ema_replicated_bytes"] / mesh_fsdp
    # Step 1 (no AdamW state yet) and step 2 onwards: two graphs, none while timing after one warm-up step.
    assert report["graphs_after_first_step"] == 1 and report["compiled_graphs"] == 2
    assert report["graphs_compiled_while_timing"] == 0
    assert report["compile_seconds"] > 0 and report["peak_memory_bytes"] is None


def test_runtime_toy_eager_cpu(run_python):
    result = run_python(["benchmarks/runtime_toy.py", "--backends=cpu", "--warmup=1", "--windows=2",
                         "--window_steps=2", "--threads=1"], timeout=120)
    printed = [line for line in result.stdout.splitlines() if line.startswith("RESULT_JSON ")]
    (row,) = json.loads(printed[-1][len("RESULT_JSON "):])
    assert "error" not in row, row
    assert row["backend"] == "cpu" and row["num_devices"] == 1 and row["torch_threads"] == 1
    assert row["first_step_seconds"] > 0 and len(row["window_step_seconds"]) == 2
    assert row["median_step_seconds"] == pytest.approx(sum(row["window_step_seconds"]) / 2)
    assert math.isfinite(row["final_loss"]) and row["graphs"] is None
