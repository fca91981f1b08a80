"""benchmarks/stage1_throughput.py still runs and reports what it promises (no speed asserts): the quickstart's
stage-1 config, eager CPU, one timed step per phase; sizes checked against counts made here."""
import json
import math

from configs import quickstart
from rae_xla.models.discriminator import build_discriminator
from rae_xla import build


def test_stage1_throughput_reports_every_phase_and_the_state_sizes(run_python, tmp_path):
    out = tmp_path / "stage1.json"
    run_python(["benchmarks/stage1_throughput.py", "--config=configs/quickstart.py:part=stage1",
                "--config.runtime.backend=cpu", "--steps", "1", "--warmup", "0", f"--json_out={out}"], timeout=900)
    report = json.loads(out.read_text())
    assert list(report["phases"]) == ["recon", "disc", "gan"]
    for name, phase in report["phases"].items():
        assert phase["step_seconds"] > 0 and phase["step_cpu_seconds"] > 0, name
        assert math.isclose(phase["images_per_sec_per_device"], report["global_batch_size"] / phase["step_seconds"])
    assert math.isfinite(report["mean_total_loss"])

    config = quickstart.get_config("part=stage1")
    decoder = sum(p.numel() for p in build.build_rae(config.rae).decoder.parameters())
    heads = sum(p.numel() for p in build_discriminator(dict(config.stage1.disc_arch),
                                                       recipe=dict(config.stage1.disc_recipe)).parameters()
                if p.requires_grad)
    assert report["trainable_params"] == decoder + heads
    # fp32 parameters + AdamW's two moments; one process holds all of it. The EMA copies the decoder.
    assert report["state_replicated_bytes"] == report["state_bytes_per_device"] == 3 * 4 * (decoder + heads)
    assert report["ema_replicated_bytes"] == report["ema_bytes_per_device"] == 4 * decoder
