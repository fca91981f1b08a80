"""TensorBoard event files through `torch.utils.tensorboard` (no TensorFlow).

The logdir may be local or `gs://bucket/dir`: tensorboard's gfile stub writes through fsspec/gcsfs when
TensorFlow is absent (ECOSYSTEM §10, verified on the GCS emulator). Read back with
`tensorboard.backend.event_processing.event_accumulator.EventAccumulator(logdir).Reload()`.
"""

import os

from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary

from rae_xla.metrics.writers import MetricWriter, as_uint8_images, flatten_hparams, scalar_to_python

_HPARAM_TYPES = (int, float, str, bool)


class TensorBoardWriter(MetricWriter):
    """Scalars, image batches (one NHWC grid per tag), texts and hparams into one event file under `logdir`."""

    def __init__(self, logdir: str | os.PathLike):
        self._writer = SummaryWriter(log_dir=os.fspath(logdir))

    def write_scalars(self, step, scalars):
        for key, value in scalars.items():
            self._writer.add_scalar(key, scalar_to_python(key, value), global_step=step)

    def write_images(self, step, images):
        for key, image in images.items():
            # add_images takes the whole NHWC batch (clu's torch writer accepted only a single HWC image).
            self._writer.add_images(key, as_uint8_images(key, image), global_step=step, dataformats="NHWC")

    def write_texts(self, step, texts):
        for key, text in texts.items():
            self._writer.add_text(key, text, global_step=step)

    def write_hparams(self, hparams):
        # TensorBoard's hparams plugin takes int/float/str/bool; lists, None etc. are shown as their repr.
        flat = {k: v if isinstance(v, _HPARAM_TYPES) else repr(v) for k, v in flatten_hparams(hparams).items()}
        # Written into this run's own event file; SummaryWriter.add_hparams would open a second run subdir.
        file_writer = self._writer._get_file_writer()
        for summary in hparams_summary(flat, {}):
            file_writer.add_summary(summary)

    def flush(self):
        self._writer.flush()

    def close(self):
        self._writer.close()
