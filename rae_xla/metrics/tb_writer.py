"""TensorBoard event files through `torch.utils.tensorboard` (no TensorFlow).

The logdir may be local or `gs://bucket/dir`. Read back with
`tensorboard.backend.event_processing.event_accumulator.EventAccumulator(logdir).Reload()`.

gs:// trap (reproduced on the GCS emulator): a SummaryWriter pointed at gs:// writes through fsspec/gcsfs, which
cannot append ("Append mode 'a' is not supported in GCS. Using overwrite mode instead."), so every flush
*replaces* the event file with only the events since the previous flush: after flush, write, close only the
last events survive. We therefore write events to a local staging directory and upload the whole event file on
each `flush()` (a GCS upload replaces the object atomically). Once the staged file passes ROTATE_BYTES it is
closed and a new event file is started, so one flush never uploads more than about that much.
"""

import os
import shutil
import tempfile

from etils import epath
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary

from rae_xla.metrics.writers import MetricWriter, as_uint8_images, flatten_hparams, scalar_to_python

_HPARAM_TYPES = (int, float, str, bool)
ROTATE_BYTES = 8 * 2**20  # 8 MiB: ~80k scalar events; a few 256-px sample grids


class TensorBoardWriter(MetricWriter):
    """Scalars, image batches (one NHWC grid per tag), texts and hparams as event files under `logdir`."""

    def __init__(self, logdir: str | os.PathLike):
        self._logdir = epath.Path(logdir)
        self._remote = "://" in os.fspath(logdir)
        self._staging = tempfile.mkdtemp(prefix="rae_xla_tb_") if self._remote else None
        self._writer: SummaryWriter | None = None

    def _get(self) -> SummaryWriter:
        if self._writer is None:
            # File names are unique per writer: events.out.tfevents.<time>.<host>.<pid>.<process-wide counter>.
            target = self._staging if self._remote else os.fspath(self._logdir)
            self._writer = SummaryWriter(log_dir=target)
        return self._writer

    def write_scalars(self, step, scalars):
        writer = self._get()
        for key, value in scalars.items():
            writer.add_scalar(key, scalar_to_python(key, value), global_step=step)

    def write_images(self, step, images):
        writer = self._get()
        for key, image in images.items():
            # add_images takes the whole NHWC batch (clu's torch writer accepted only a single HWC image).
            writer.add_images(key, as_uint8_images(key, image), global_step=step, dataformats="NHWC")

    def write_texts(self, step, texts):
        writer = self._get()
        for key, text in texts.items():
            writer.add_text(key, text, global_step=step)

    def write_hparams(self, hparams):
        # TensorBoard's hparams plugin takes int/float/str/bool; lists, None etc. are shown as their repr.
        flat = {k: v if isinstance(v, _HPARAM_TYPES) else repr(v) for k, v in flatten_hparams(hparams).items()}
        # Written into this run's own event file; SummaryWriter.add_hparams would open a second run subdir.
        file_writer = self._get()._get_file_writer()
        for summary in hparams_summary(flat, {}):
            file_writer.add_summary(summary)

    def _upload_staged(self) -> int:
        """Copies every staged event file to the logdir (whole-object replace); returns the largest size."""
        largest = 0
        for name in sorted(os.listdir(self._staging)):
            local = os.path.join(self._staging, name)
            (self._logdir / name).write_bytes(epath.Path(local).read_bytes())
            largest = max(largest, os.path.getsize(local))
        return largest

    def flush(self):
        if self._writer is None:
            return
        self._writer.flush()
        if not self._remote:
            return
        self._logdir.mkdir(parents=True, exist_ok=True)
        if self._upload_staged() > ROTATE_BYTES:
            self._writer.close()
            self._writer = None
            for name in os.listdir(self._staging):  # uploaded in full above; never touched again
                os.remove(os.path.join(self._staging, name))

    def close(self):
        if self._writer is not None:
            self._writer.close()
            if self._remote:
                self._logdir.mkdir(parents=True, exist_ok=True)
                self._upload_staged()
            self._writer = None
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
