"""The clu-shaped `MetricWriter` interface and the writers that need no files: logging, fan-out, async, no-op.

"clu-compatible" means the same method names, arguments and semantics as `clu.metric_writers.MetricWriter`
(write_scalars / write_images / write_texts / write_hparams / flush / close), so code written against clu reads
the same here; clu itself is not a dependency (docs/ecosystem.md §5: it pulls jax, flax and TensorFlow).

Writers are host-side objects: feed them Python floats / numpy arrays from a step closure at log intervals
(docs/xla_notes.md §5.1 item 4), never device tensors from inside the hot loop.
"""

import abc
import concurrent.futures
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from absl import logging


class MetricWriter(abc.ABC):
    """Interface of every writer; `step` is the number of optimizer updates done when the values were taken."""

    @abc.abstractmethod
    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        """Scalars (Python/numpy numbers or 0-d CPU tensors) under their names."""

    @abc.abstractmethod
    def write_images(self, step: int, images: Mapping[str, Any]) -> None:
        """uint8 images, NHWC (a batch shown as a row) or HWC; C in {1, 3, 4}."""

    @abc.abstractmethod
    def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
        """Free text (e.g. the resolved config) under its name."""

    @abc.abstractmethod
    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        """Hyper-parameters; nested mappings are flattened with '.'."""

    def flush(self) -> None:
        """Makes everything written so far durable; raises any error a background write hit."""

    def close(self) -> None:
        """Flushes and releases resources; the writer must not be used afterwards."""
        self.flush()


def as_uint8_images(name: str, image: Any) -> np.ndarray:
    """Validates an image argument and returns it as a uint8 NHWC numpy array (HWC gets N=1)."""
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"Image {name!r} must be uint8 (0..255), got {array.dtype}; convert with "
                         "((x + 1) * 127.5).round().clip(0, 255).astype(np.uint8) for [-1, 1] images.")
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[-1] not in (1, 3, 4):
        raise ValueError(f"Image {name!r} must be NHWC or HWC with 1, 3 or 4 channels last; got shape "
                         f"{array.shape}. Convert NCHW with x.permute(0, 2, 3, 1).")
    return array


def flatten_hparams(hparams: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; ConfigDicts behave like mappings."""
    flat = {}
    for key, value in hparams.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) or hasattr(value, "items") and not isinstance(value, (str, bytes)):
            flat.update(flatten_hparams(dict(value.items()), prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


def scalar_to_python(name: str, value: Any) -> float | int:
    """ints stay ints (exact step counts), everything else becomes a Python float."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"Scalar {name!r} must be a number or a 0-d CPU tensor/array; got {type(value)}: "
                         f"{e}. Read device tensors on the host in a step closure first.") from None


def _format(value: float | int) -> str:
    return str(value) if isinstance(value, int) else f"{value:.6g}"


class LoggingWriter(MetricWriter):
    """absl logging, one INFO line per call: `[step 100] loss=0.123, lr=0.0002`."""

    def write_scalars(self, step, scalars):
        items = ", ".join(f"{k}={_format(scalar_to_python(k, v))}" for k, v in scalars.items())
        logging.info("[step %d] %s", step, items)

    def write_images(self, step, images):
        shapes = ", ".join(f"{k}={as_uint8_images(k, v).shape}" for k, v in images.items())
        logging.info("[step %d] images %s", step, shapes)

    def write_texts(self, step, texts):
        for key, text in texts.items():
            logging.info("[step %d] %s: %s", step, key, text)

    def write_hparams(self, hparams):
        for key, value in sorted(flatten_hparams(hparams).items()):
            logging.info("hparam %s = %r", key, value)


class NoOpWriter(MetricWriter):
    """Writes nothing: what non-main processes get, so that only one process writes per run."""

    def write_scalars(self, step, scalars):
        pass

    def write_images(self, step, images):
        pass

    def write_texts(self, step, texts):
        pass

    def write_hparams(self, hparams):
        pass


class MultiWriter(MetricWriter):
    """Forwards every call to each writer in order; flush/close try all writers, then raise the first error."""

    def __init__(self, writers: Sequence[MetricWriter]):
        self._writers = list(writers)

    def write_scalars(self, step, scalars):
        for w in self._writers:
            w.write_scalars(step, scalars)

    def write_images(self, step, images):
        for w in self._writers:
            w.write_images(step, images)

    def write_texts(self, step, texts):
        for w in self._writers:
            w.write_texts(step, texts)

    def write_hparams(self, hparams):
        for w in self._writers:
            w.write_hparams(hparams)

    def _each(self, method: str) -> None:
        errors = []
        for w in self._writers:
            try:
                getattr(w, method)()
            except Exception as e:  # noqa: BLE001 -- re-raised below after the others had their turn
                errors.append(e)
        if errors:
            raise errors[0]

    def flush(self):
        self._each("flush")

    def close(self):
        self._each("close")


class AsyncWriter(MetricWriter):
    """Runs the wrapped writer's calls on one background thread, in call order.

    The training loop never waits on file or network I/O (a gs:// TensorBoard write can take 100s of ms).
    Arguments are copied at call time, so the caller may reuse its dicts. An exception in a background write
    is re-raised by the next `flush()` or `close()` (the first one; later ones are logged); writes after an
    error are dropped because the wrapped writer may be in a broken state.
    """

    def __init__(self, writer: MetricWriter):
        self._writer = writer
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="metric_writer")
        self._pending: list[concurrent.futures.Future] = []
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._closed = False

    def _run(self, fn, *args) -> None:
        if self._error is not None:
            return
        try:
            fn(*args)
        except BaseException as e:  # noqa: BLE001 -- stored and re-raised on the caller's thread
            with self._lock:
                if self._error is None:
                    self._error = e
                else:
                    logging.error("AsyncWriter: another background write failed: %r", e)

    def _submit(self, fn, *args) -> None:
        if self._closed:
            raise RuntimeError("AsyncWriter is closed; create a new writer.")
        self._pending = [f for f in self._pending if not f.done()]
        self._pending.append(self._pool.submit(self._run, fn, *args))

    def write_scalars(self, step, scalars):
        self._submit(self._writer.write_scalars, int(step), dict(scalars))

    def write_images(self, step, images):
        self._submit(self._writer.write_images, int(step), {k: np.array(v) for k, v in images.items()})

    def write_texts(self, step, texts):
        self._submit(self._writer.write_texts, int(step), dict(texts))

    def write_hparams(self, hparams):
        self._submit(self._writer.write_hparams, dict(hparams))

    def _wait(self) -> None:
        concurrent.futures.wait(self._pending)
        self._pending = []
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def flush(self):
        if self._closed:
            return
        self._submit(self._writer.flush)
        self._wait()

    def close(self):
        if self._closed:
            return
        try:
            self._submit(self._writer.close)
            self._wait()
        finally:
            self._closed = True
            self._pool.shutdown(wait=True)
