"""benchmarks/host_overhead.py still runs and reports what it promises (no speed asserts: speed is not a test).

The quickstart model's op graph at tiny widths on 4 virtual XLA CPU devices, one timed step per kind.
"""
import json

from configs import quickstart
from rae_xla.train import build


def test_host_overhead_reports_both_step_kinds_with_fixed_graph_counts(run_python, tmp_path):
    out = tmp_path / "host.json"
    result = run_python(["benchmarks/host_overhead.py", "--config=configs/quickstart.py", "--warmup=2",
                         "--windows=1", "--steps=1", f"--json_out={out}"], xla_devices=4, timeout=900)
    report = json.loads(out.read_text())
    assert [r["step"] for r in report] == ["stage2_train", "stage2_sample"]
    train, sample = report
    config = quickstart.get_config()
    model = build.build_model(config.model, init_from="", train_fixed_embeddings=False)
    assert train["parameter_tensors"] == sum(1 for p in model.parameters() if p.requires_grad)
    # The train step compiles twice (AdamW state created at step 0); the sampling step adds its own graphs
    # during warm-up (2 measured: its first input is uploaded noise, later ones step outputs). Nothing
    # compiles while timing.
    assert train["graphs"] == 2 and sample["graphs"] > train["graphs"]
    assert train["graphs_compiled_while_timing"] == 0 and sample["graphs_compiled_while_timing"] == 0
    for r in report:
        assert r["num_devices"] == 4 and r["call_s"] > 0 and r["call_cpu_s"] > 0 and r["wait_s"] >= 0
    assert "| stage2_train | 4 |" in result.stdout
