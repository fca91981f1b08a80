"""benchmarks/host_overhead.py still runs and reports what it promises (no speed asserts: speed is not a test).

The quickstart model's op graph at tiny widths on 4 virtual XLA CPU devices, one timed step per kind.
"""
import json

from configs import quickstart
from rae_xla.models.discriminator import build_discriminator
from rae_xla import build


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


def test_host_overhead_stage1_gan_step_compiles_only_while_warming_up(run_python, tmp_path):
    """The stage-1 GAN-phase step (generator with the adaptive weight, discriminator update) of the quickstart's
    stage-1 config: its decoder depth at tiny width, its tiny discriminator, random VGG16 LPIPS; captured."""
    out = tmp_path / "host_stage1.json"
    result = run_python(["benchmarks/host_overhead.py", "--config=configs/quickstart.py:part=stage1",
                         "--step_kinds=stage1_train", "--warmup=4", "--windows=1", "--steps=1", f"--json_out={out}"],
                        xla_devices=4, timeout=1800)
    (report,) = json.loads(out.read_text())
    config = quickstart.get_config("part=stage1")
    g = config.stage1
    disc = build_discriminator(dict(g.disc_arch), recipe=dict(g.disc_recipe))
    decoder = build.build_rae(config.rae).decoder
    assert report["step"] == "stage1_train" and report["num_devices"] == 4
    assert report["parameter_tensors"] == (sum(1 for _ in decoder.parameters())
                                           + sum(1 for p in disc.parameters() if p.requires_grad))
    # Warm-up compiles the step's lazy first call and its traces (here 2 graphs: the first two traces have the same
    # graph text but different hashes, as the trainer's D-update step; 4 graphs in all, measured) plus one small
    # graph while building (0.2 s of compile); nothing compiles while timing, and the timed call is a replay
    # (runtime.capture_step is on by default: a lazy call and 2-3 traces in the 4 warm-up calls, then replays).
    assert report["graphs"] <= 4 and report["graphs_compiled_while_timing"] == 0
    assert report["replays"] == 1
    assert report["call_s"] > 0 and report["call_cpu_s"] > 0 and report["wait_s"] >= 0
    assert "| stage1_train | 4 |" in result.stdout
