"""Metric writers: jsonl round trip and resume truncation, TensorBoard read-back, async errors, fan-out."""

import json
import logging as std_logging
import threading

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rae_xla import metrics
from rae_xla.metrics import writers


def write_steps(path, steps, **kwargs):
    w = metrics.JsonlWriter(path, **kwargs)
    for s in steps:
        w.write_scalars(s, {"loss": 1.0 / (s + 1), "lr": 2e-4})
    w.close()


def test_jsonl_round_trip_step_first(tmp_path):
    path = tmp_path / "sub" / "metrics.jsonl"
    w = metrics.JsonlWriter(path)
    w.write_scalars(100, {"loss": np.float32(0.25), "lr": 2e-4, "grad_norm": 1.5, "images_per_sec": 3000.0,
                          "count": np.int64(7), "nan": float("nan")})
    w.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith('{"step": 100,')
    record = metrics.read_jsonl(path)[0]
    assert record["loss"] == 0.25 and record["count"] == 7 and isinstance(record["count"], int)
    assert np.isnan(record["nan"])


def test_jsonl_appends_across_writers(tmp_path):
    path = tmp_path / "metrics.jsonl"
    write_steps(path, [1, 2])
    write_steps(path, [3])
    assert [r["step"] for r in metrics.read_jsonl(path)] == [1, 2, 3]


def test_jsonl_resume_drops_later_steps_and_torn_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    write_steps(path, range(10, 110, 10))  # the killed run logged up to step 100 ...
    with open(path, "a") as f:
        f.write('{"step": 110, "loss": 0.')  # ... and died mid-line
    write_steps(path, [70, 80], resume_step=60)  # its last checkpoint was step 60
    steps = [r["step"] for r in metrics.read_jsonl(path)]
    assert steps == [10, 20, 30, 40, 50, 60, 70, 80]
    assert not (tmp_path / "metrics.jsonl.tmp").exists()


def test_jsonl_append_after_torn_line_starts_a_new_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2, "lo')
    write_steps(path, [3])
    lines = path.read_text().splitlines()
    assert json.loads(lines[-1])["step"] == 3 and len(lines) == 3


def test_jsonl_rejects_step_as_scalar_name(tmp_path):
    with pytest.raises(ValueError, match="'step' is reserved"):
        metrics.JsonlWriter(tmp_path / "m.jsonl").write_scalars(1, {"step": 3})


def test_tensorboard_scalars_images_texts_hparams_read_back(tmp_path):
    w = metrics.TensorBoardWriter(tmp_path)
    for step in (1, 2, 3):
        w.write_scalars(step, {"loss": 0.5 * step})
    w.write_images(3, {"samples": np.full((2, 8, 8, 3), 200, np.uint8)})
    w.write_texts(0, {"config": "lr: 2e-4"})
    w.write_hparams({"optimizer": {"lr": 2e-4, "betas": [0.9, 0.95]}, "model": "DiTDH-S"})
    w.close()
    acc = EventAccumulator(str(tmp_path), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("loss")] == [(1, 0.5), (2, 1.0), (3, 1.5)]
    assert acc.Tags()["images"] == ["samples"]
    assert len(list(tmp_path.iterdir())) == 1  # hparams went into the same event file, no extra run dir
    assert "_hparams_/experiment" in acc.summary_metadata


@pytest.mark.parametrize("image, message", [
    (np.zeros((2, 8, 8, 3), np.float32), "must be uint8"),
    (np.zeros((2, 3, 8, 8), np.uint8), "NHWC or HWC"),
])
def test_bad_images_raise_clear_errors(tmp_path, image, message):
    with pytest.raises(ValueError, match=message):
        metrics.TensorBoardWriter(tmp_path).write_images(0, {"x": image})


class Recorder(writers.MetricWriter):
    def __init__(self, fail_on_step=None):
        self.calls, self.fail_on_step, self.threads = [], fail_on_step, set()

    def write_scalars(self, step, scalars):
        self.threads.add(threading.current_thread().name)
        if step == self.fail_on_step:
            raise OSError(f"disk full at {step}")
        self.calls.append(("scalars", step, dict(scalars)))

    def write_images(self, step, images):
        self.calls.append(("images", step, sorted(images)))

    def write_texts(self, step, texts):
        self.calls.append(("texts", step, dict(texts)))

    def write_hparams(self, hparams):
        self.calls.append(("hparams", dict(hparams)))

    def flush(self):
        self.calls.append(("flush",))

    def close(self):
        self.calls.append(("close",))


def test_async_writer_keeps_order_copies_args_and_runs_off_thread():
    inner = Recorder()
    w = metrics.AsyncWriter(inner)
    scalars = {"loss": 1.0}
    for step in range(5):
        scalars["loss"] = float(step)
        w.write_scalars(step, scalars)  # the caller reuses its dict
    w.write_texts(5, {"t": "x"})
    w.flush()
    assert [c[1] for c in inner.calls if c[0] == "scalars"] == [0, 1, 2, 3, 4]
    assert [c[2]["loss"] for c in inner.calls if c[0] == "scalars"] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert inner.calls[-1] == ("flush",)
    assert inner.threads and threading.current_thread().name not in inner.threads
    w.close()
    assert inner.calls[-1] == ("close",)


def test_async_writer_error_surfaces_on_flush_and_close():
    w = metrics.AsyncWriter(Recorder(fail_on_step=2))
    for step in range(4):
        w.write_scalars(step, {"loss": 0.0})  # never raises on the training thread
    with pytest.raises(OSError, match="disk full at 2"):
        w.flush()
    w2 = metrics.AsyncWriter(Recorder(fail_on_step=0))
    w2.write_scalars(0, {"loss": 0.0})
    with pytest.raises(OSError, match="disk full at 0"):
        w2.close()


def test_multi_writer_forwards_and_flushes_all_before_raising():
    class FailingFlush(Recorder):
        def flush(self):
            raise RuntimeError("flush failed")
    a, b = FailingFlush(), Recorder()
    w = metrics.MultiWriter([a, b])
    w.write_scalars(1, {"x": 1.0})
    w.write_images(1, {"img": np.zeros((1, 2, 2, 3), np.uint8)})
    w.write_hparams({"h": 1})
    assert a.calls == b.calls == [("scalars", 1, {"x": 1.0}), ("images", 1, ["img"]), ("hparams", {"h": 1})]
    with pytest.raises(RuntimeError, match="flush failed"):
        w.flush()
    assert b.calls[-1] == ("flush",)


def test_logging_writer_one_line_per_step(caplog):
    caplog.set_level(std_logging.INFO)
    metrics.LoggingWriter().write_scalars(7, {"loss": 0.123456789, "step_count": 3})
    lines = [r.getMessage() for r in caplog.records if "[step 7]" in r.getMessage()]
    assert lines == ["[step 7] loss=0.123457, step_count=3"]


def test_create_default_writer_main_writes_jsonl_and_events(tmp_path):
    w = metrics.create_default_writer(tmp_path / "run", is_main=True)
    w.write_scalars(1, {"loss": 0.5})
    w.close()
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert names[0].startswith("events.out.tfevents") and names[1] == "metrics.jsonl"
    assert metrics.read_jsonl(tmp_path / "run" / "metrics.jsonl") == [{"step": 1, "loss": 0.5}]


def test_create_default_writer_resume_truncates(tmp_path):
    write_steps(tmp_path / "metrics.jsonl", [1, 2, 3])
    w = metrics.create_default_writer(tmp_path, is_main=True, resume_step=1)
    w.write_scalars(2, {"loss": 9.0})
    w.close()
    assert [(r["step"], r["loss"]) for r in metrics.read_jsonl(tmp_path / "metrics.jsonl")] == [(1, 0.5), (2, 9.0)]


def test_non_main_process_writes_nothing(tmp_path):
    w = metrics.create_default_writer(tmp_path / "run", is_main=False)
    w.write_scalars(1, {"loss": 0.5})
    w.write_images(1, {"x": np.zeros((1, 2, 2, 3), np.uint8)})
    w.close()
    assert not (tmp_path / "run").exists()


def test_hparams_flatten_nested_configdict():
    import ml_collections
    c = ml_collections.ConfigDict({"opt": {"lr": 1e-4, "betas": (0.9, 0.95)}, "name": "x"})
    assert writers.flatten_hparams(c) == {"opt.lr": 1e-4, "opt.betas": (0.9, 0.95), "name": "x"}
