"""`metrics.jsonl`: one JSON object per `write_scalars` call, `step` first (docs/design.md "Workdir contract").

    {"step": 100, "loss": 0.4123, "lr": 0.0002, "grad_norm": 1.7, "images_per_sec": 3251.2}

Resume: a run killed after its last checkpoint at step k has already logged steps > k; the resumed run logs
them again. `JsonlWriter(path, resume_step=k)` therefore first rewrites the file keeping only lines with
step <= k (atomically: a local temp file + rename; on gs:// one object upload, which GCS makes atomic), so the
file stays monotonic in `step`. A torn last line (the process died mid-write) is dropped the same way.

Local files are appended to and flushed per `flush()`. GCS objects cannot be appended to, so for `gs://` paths
the whole file is kept in memory and re-uploaded by `flush()` (about 2 MB for 10k logged steps; flush at log
intervals, not every step). Non-finite values are written as `NaN`/`Infinity`, which Python's json reads back.
"""

import json
import os
from typing import Any

from absl import logging
from etils import epath

from rae_xla.metrics.writers import MetricWriter, scalar_to_python


def _is_remote(path: epath.Path) -> bool:
    return "://" in os.fspath(path)


def _kept_lines(text: str, resume_step: int, path: epath.Path) -> list[str]:
    """Lines of `text` that parse as JSON objects with an int `step` <= resume_step, in file order."""
    kept, dropped_future, dropped_bad = [], 0, 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            step = record["step"]
        except (json.JSONDecodeError, KeyError, TypeError):
            dropped_bad += 1
            continue
        if step <= resume_step:
            kept.append(line)
        else:
            dropped_future += 1
    if dropped_future or dropped_bad:
        logging.info("metrics.jsonl %s: resuming at step %d, dropped %d lines with a later step and %d "
                     "unreadable lines.", path, resume_step, dropped_future, dropped_bad)
    return kept


class JsonlWriter(MetricWriter):
    """Appends scalars to a JSON-lines file (local path or gs://); images are ignored, texts/hparams too.

    Args:
      path: the file, e.g. `workdir / 'metrics.jsonl'`; parent directories are created.
      resume_step: None to append to whatever is there; an int k to first drop every line with step > k
        (0 for a fresh start that must not continue an old file's steps).
    """

    def __init__(self, path: str | os.PathLike, *, resume_step: int | None = None):
        self._path = epath.Path(path)
        self._remote = _is_remote(self._path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        existing = self._path.read_text() if self._path.exists() else ""
        if resume_step is not None and existing:
            lines = _kept_lines(existing, resume_step, self._path)
            existing = "".join(line + "\n" for line in lines)
            self._replace_contents(existing)
        elif existing and not existing.endswith("\n"):
            existing += "\n"  # a torn last line must not swallow the next record
            self._replace_contents(existing)
        self._buffer = existing if self._remote else ""
        self._file = None if self._remote else open(self._path, "a", encoding="utf-8")

    def _replace_contents(self, text: str) -> None:
        if self._remote:
            self._path.write_text(text)  # a GCS object upload replaces the object atomically
            return
        tmp = self._path.with_name(self._path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, self._path)

    def write_scalars(self, step: int, scalars) -> None:
        record: dict[str, Any] = {"step": int(step)}
        for key, value in scalars.items():
            if key == "step":
                raise ValueError("'step' is reserved in metrics.jsonl (it is the first key); rename the scalar.")
            record[key] = scalar_to_python(key, value)
        line = json.dumps(record, allow_nan=True) + "\n"
        if self._remote:
            self._buffer += line
        else:
            if self._file is None:
                raise RuntimeError(f"JsonlWriter for {self._path} is closed.")
            self._file.write(line)

    def write_images(self, step, images) -> None:
        pass

    def write_texts(self, step, texts) -> None:
        pass

    def write_hparams(self, hparams) -> None:
        pass

    def flush(self) -> None:
        if self._remote:
            self._path.write_text(self._buffer)
        elif self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of a metrics.jsonl file (for tests, notebooks and eval scripts)."""
    text = epath.Path(path).read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]

