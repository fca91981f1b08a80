"""Metric writers (clu-shaped, without clu), progress/throughput and MFU.

Typical use in a trainer (only the main process writes; the others get a writer that does nothing):

    writer = metrics.create_default_writer(workdir, is_main=runtime.is_main, resume_step=start_step)
    progress = metrics.ReportProgress(total_steps=N, every_steps=100, images_per_step=1024, num_devices=D)
    ...  # in the step closure at log intervals, with host floats:
    report = progress(step)
    writer.write_scalars(step, {"loss": loss, "lr": lr, "grad_norm": gn, **(report.scalars() if report else {})})
    ...
    writer.close()
"""

import os

from etils import epath

from rae_xla.metrics.jsonl import JsonlWriter, read_jsonl
from rae_xla.metrics.progress import (PEAK_BF16_FLOPS, ProgressReport, ReportProgress, device_kind_key,
                                      format_duration, mfu, peak_bf16_flops)
from rae_xla.metrics.tb_writer import TensorBoardWriter
from rae_xla.metrics.writers import AsyncWriter, LoggingWriter, MetricWriter, MultiWriter, NoOpWriter

__all__ = [
    "AsyncWriter", "JsonlWriter", "LoggingWriter", "MetricWriter", "MultiWriter", "NoOpWriter",
    "TensorBoardWriter", "ReportProgress", "ProgressReport", "PEAK_BF16_FLOPS", "create_default_writer",
    "device_kind_key", "format_duration", "mfu", "peak_bf16_flops", "read_jsonl",
]

METRICS_FILE = "metrics.jsonl"


def create_default_writer(workdir: str | os.PathLike, *, is_main: bool, resume_step: int | None = None,
                          wandb=None, config=None) -> MetricWriter:
    """The writer a trainer uses: absl log lines + `workdir/metrics.jsonl` + TensorBoard events in `workdir`.

    The log line is written synchronously (it shows up in order with other logs); the file writers run on one
    background thread (AsyncWriter), so their errors surface on `flush()`/`close()`.

    Args:
      workdir: local directory or gs:// URL (created if missing).
      is_main: False on every process but one -> a NoOpWriter (non-main processes write nothing).
      resume_step: the step training restarts from; metrics.jsonl lines with a later step are dropped
        (None: append to the existing file unchanged).
      wandb: `config.train.wandb` (rae_xla.config.wandb_block); when enabled, a W&B writer joins the file writers
        and `config` (the whole experiment config) is logged as the run's config.
    """
    if not is_main:
        return NoOpWriter()
    workdir = epath.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    writers = [JsonlWriter(workdir / METRICS_FILE, resume_step=resume_step), TensorBoardWriter(workdir)]
    if wandb is not None and wandb.enabled:
        from rae_xla.metrics.wandb_writer import WandbWriter  # Deferred: wandb is an optional dependency.
        writers.append(WandbWriter(str(workdir), project=wandb.project, entity=wandb.entity, name=wandb.name,
                                   tags=tuple(wandb.tags), mode=wandb.mode,
                                   config=config.to_dict() if config is not None else None))
    files = MultiWriter(writers)
    return MultiWriter([LoggingWriter(), AsyncWriter(files)])
