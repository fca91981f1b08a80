"""ReportProgress from an injected host clock, MFU arithmetic and the device-kind table."""

import pytest

from rae_xla import metrics


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_report_progress_rates_and_eta():
    clock = FakeClock()
    progress = metrics.ReportProgress(total_steps=1000, every_steps=100, images_per_step=256, num_devices=8,
                                      clock=clock)
    assert progress(0) is None  # starts the clock
    reports = []
    for step in range(1, 301):
        clock.now += 0.5 if step <= 100 else 0.25  # 2 steps/s, then 4 steps/s
        reports.append(progress(step))
    got = [r for r in reports if r is not None]
    assert [r.step for r in got] == [100, 200, 300]
    assert got[0].steps_per_sec == pytest.approx(2.0) and got[1].steps_per_sec == pytest.approx(4.0)
    assert got[1].images_per_sec == pytest.approx(1024.0)
    assert got[1].images_per_sec_per_device == pytest.approx(128.0)
    assert got[2].eta_seconds == pytest.approx(700 / 4.0)
    assert got[2].eta == "0:02:55"
    assert got[2].scalars() == {"steps_per_sec": 4.0, "images_per_sec": 1024.0, "images_per_sec_per_device": 128.0}
    assert got[2].line() == "step 300/1000 (30.0%) 4 steps/s 1024 img/s (128/dev) ETA 0:02:55"


def test_report_progress_after_resume_measures_from_restored_step():
    clock = FakeClock()
    progress = metrics.ReportProgress(total_steps=10_000, every_steps=100, images_per_step=1, num_devices=1,
                                      clock=clock)
    assert progress(5050) is None
    clock.now += 10.0
    report = progress(5100)  # 50 steps in 10 s since the restart
    assert report.steps_per_sec == pytest.approx(5.0)


def test_report_progress_rejects_nonpositive_arguments():
    with pytest.raises(ValueError, match="positive"):
        metrics.ReportProgress(total_steps=10, every_steps=0, images_per_step=1, num_devices=1)


def test_format_duration():
    assert metrics.format_duration(3725) == "1:02:05"
    assert metrics.format_duration(90061) == "1d 01:01:01"


def test_mfu_arithmetic_and_cpu_not_reported():
    # 1e12 training FLOPs per image at 100 img/s per chip on a 200 TFLOP/s chip -> 50 %.
    assert metrics.mfu(1e12, 100.0, 200e12) == pytest.approx(0.5)
    assert metrics.mfu(1e12, 100.0, metrics.peak_bf16_flops("cpu")) is None


@pytest.mark.parametrize("kind, key", [
    ("TPU v4", "tpu v4"), ("TPU v5 lite", "tpu v5e"), ("TPU v5e", "tpu v5e"), ("TPU v5p", "tpu v5p"),
    ("TPU v5", "tpu v5p"), ("TPU v6 lite", "tpu v6e"), ("TPU v6e", "tpu v6e"),
    ("NVIDIA A100-SXM4-80GB", "a100"), ("NVIDIA H100 80GB HBM3", "h100"), ("NVIDIA H200", "h200"),
    ("cpu", "cpu"), ("Some new accelerator", None),
])
def test_device_kind_lookup(kind, key):
    assert metrics.device_kind_key(kind) == key
    expected = None if key is None else metrics.PEAK_BF16_FLOPS[key]
    assert metrics.peak_bf16_flops(kind) == expected


def test_peak_table_values_from_the_spec_sheets():
    assert metrics.PEAK_BF16_FLOPS == {"tpu v4": 275e12, "tpu v5e": 197e12, "tpu v5p": 459e12, "tpu v6e": 918e12,
                                       "a100": 312e12, "h100": 989e12, "h200": 989e12, "cpu": None}
