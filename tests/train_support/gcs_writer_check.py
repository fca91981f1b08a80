"""Run in a subprocess with STORAGE_EMULATOR_HOST set: the default writer on a gs:// workdir."""

import sys

from etils import epath
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rae_xla import metrics

workdir = f"gs://{sys.argv[1]}/runs/x"
w = metrics.create_default_writer(workdir, is_main=True)
for step in (1, 2, 3):
    w.write_scalars(step, {"loss": float(step)})
w.flush()  # a flush mid-run re-uploads the object; later writes must still land
w.write_scalars(4, {"loss": 4.0})
w.close()
assert [r["step"] for r in metrics.read_jsonl(f"{workdir}/metrics.jsonl")] == [1, 2, 3, 4]
acc = EventAccumulator(workdir)
acc.Reload()
assert [(e.step, e.value) for e in acc.Scalars("loss")] == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0)]

w = metrics.create_default_writer(workdir, is_main=True, resume_step=2)  # resumed from the step-2 checkpoint
w.write_scalars(3, {"loss": 30.0})
w.close()
records = metrics.read_jsonl(f"{workdir}/metrics.jsonl")
assert [(r["step"], r["loss"]) for r in records] == [(1, 1.0), (2, 2.0), (3, 30.0)], records

# gcsfs caches directory listings per process; a TensorBoard reader is normally another process.
import fsspec  # noqa: E402
fsspec.filesystem("gs").invalidate_cache()
names = sorted(p.name for p in epath.Path(workdir).iterdir())
assert len(names) == 3 and names[-1] == "metrics.jsonl", names  # one event file per writer session
acc = EventAccumulator(workdir)
acc.Reload()
# Both sessions' events are there (TensorBoard's UI may purge the killed run's steps > 2 on display).
got = [(e.step, e.value) for e in acc.Scalars("loss")]
assert sorted(got) == [(1, 1.0), (2, 2.0), (3, 3.0), (3, 30.0), (4, 4.0)], got

# Rotation: past ROTATE_BYTES the staged file is closed after its upload and the next write starts a new one.
from rae_xla.metrics import tb_writer  # noqa: E402
tb_writer.ROTATE_BYTES = 1
w = metrics.TensorBoardWriter(workdir)
w.write_scalars(5, {"loss": 5.0})
w.flush()
w.write_scalars(6, {"loss": 6.0})
w.close()
fsspec.filesystem("gs").invalidate_cache()
assert len([p for p in epath.Path(workdir).iterdir() if p.name.startswith("events")]) == 4
acc = EventAccumulator(workdir)
acc.Reload()
assert sorted(e.step for e in acc.Scalars("loss"))[-2:] == [5, 6]
print("OK")
