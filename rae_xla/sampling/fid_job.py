"""Job `sample_fid`: N samples for FID, sharded over every device and host, written as resumable shards and
assembled into one ADM-format npz.

  python -m rae_xla.main --config=configs/sample_fid.py --workdir=gs://bucket/fid/ditdh_xl_ag

Sample i (0 <= i < N) is a function of (seed, i) only: its label comes from `labels.class_labels` (a host
function of (seed, N)) and its noise from `noise.sample_noise` (a per-index stream), so the set does not depend
on the device count, the batch size or where a preempted run resumed. Each global batch covers indices
[b0, b0 + B); process p feeds rows p*B/P..(p+1)*B/P of it; the last batch is padded and the padding dropped.
Output: `<workdir>/<name>.npz` with `arr_0` uint8 (N, H, W, 3) and `arr_1` int64 (N,) labels (ADM's
`image_sample.py` layout), shards in `<workdir>/<name>_shards/`.
"""
from __future__ import annotations

import numpy as np
import torch
from absl import logging
from etils import epath

from rae_xla import metrics
from rae_xla.data.sampler import process_rows
from rae_xla.sampling import labels as labels_lib
from rae_xla.sampling.engine import SampleEngine
from rae_xla.sampling.models import load_sampling_models
from rae_xla.sampling.noise import sample_noise
from rae_xla.sampling.shards import ShardStore


def sample_settings(config) -> dict:
    """What the samples are a function of (compared when a run resumes)."""
    keys = ("seed", "sample", "model", "rae", "flow")
    settings = {k: config[k].to_dict() if hasattr(config[k], "to_dict") else config[k] for k in keys}
    s = config.sampling
    settings["sampling"] = dict(checkpoint=s.checkpoint, labels=s.labels, num_samples=s.num_samples,
                                official_world_size=s.official_world_size, official_batch=s.official_batch)
    settings["precision"] = config.runtime.precision
    return settings


def run(config, workdir: str, runtime) -> None:
    s = config.sampling
    n, batch = s.num_samples, s.global_batch_size
    models = load_sampling_models(config, workdir, runtime)
    labels = labels_lib.class_labels(s.labels, seed=config.seed, num_samples=n, num_classes=models.num_classes,
                                     official_world_size=s.official_world_size, official_batch=s.official_batch)
    store = ShardStore(epath.Path(workdir) / f"{s.name}_shards", n, sample_settings(config), writer=runtime.is_main)
    store.covered = runtime.broadcast_int(store.covered)  # Every process starts at process 0's resume point.
    starts = list(range(store.covered, n, batch))
    if store.covered:
        logging.info("sample_fid: resuming at sample %d of %d.", store.covered, n)
    engine = SampleEngine(runtime, models, config.sample, config.runtime.precision)
    rows = process_rows(runtime.process_index, runtime.process_count, batch)
    padded = np.concatenate([labels, np.zeros(batch, labels.dtype)])  # Padding rows of the last batch: class 0.

    def host_batches():
        for b0 in starts:
            index = np.arange(b0, b0 + batch)[rows]
            yield {"noise": sample_noise(config.seed, index, models.latent_shape),
                   "label": torch.from_numpy(padded[index].astype(np.int64))}

    # metrics.jsonl 'step' = samples done, so it is monotone across resumes (rows past the resume point dropped).
    writer = metrics.create_default_writer(workdir, is_main=runtime.is_main, resume_step=store.covered)
    progress = metrics.ReportProgress(total_steps=max(len(starts), 1), every_steps=s.log_every,
                                      images_per_step=batch, num_devices=runtime.num_devices)
    progress(0)
    pending = None  # (b0, device images): read back after the next batch is dispatched, so the device never idles.

    def finish(b0, images) -> None:
        store.write(b0, {"images": runtime.gather_batch(images).numpy(), "labels": padded[b0:b0 + batch]})

    try:
        device_batches = runtime.device_batches(host_batches()) if starts else iter(())
        for done, (b0, inputs) in enumerate(zip(starts, device_batches), start=1):
            # Only the SDE draws on the device (its per-step noise): seeded per batch, so it is reproducible for a
            # fixed device count and batch size (not across them, unlike the initial noise and the labels).
            runtime.seed(config.seed * 1_000_003 + b0)
            images = engine.images(engine.latents(inputs["noise"], inputs["label"]))
            if pending is not None:
                finish(*pending)
            pending = (b0, images)
            report = progress(done)
            if report:
                scalars = dict(report.scalars(), samples_done=float(min(b0 + batch, n)),
                               **runtime.compile_stats_scalars())
                logging.info("sample_fid: %s", report.line())
                writer.write_scalars(min(b0 + batch, n), scalars)
        if pending is not None:
            finish(*pending)
        runtime.barrier("sample_fid-done")
        if runtime.is_main:
            store.covered = store.scan()
            if not store.done:
                raise RuntimeError(f"sample_fid ended with {store.covered} of {n} samples in {store.directory}")
            store.assemble(epath.Path(workdir) / f"{s.name}.npz", {"arr_0": "images", "arr_1": "labels"})
            writer.write_scalars(n, {"samples_done": float(n), **runtime.compile_stats_scalars()})
    finally:
        writer.close()

