"""Job `reconstruct`: stage-1 reconstructions of a dataset split, and the reference npz of the same crops.

  python -m rae_xla.main --config=configs/reconstruct.py --workdir=gs://bucket/rfid/vitxl_n08 \
      --config.data.data_dir=gs://bucket/tfds

The rFID protocol of the paper (docs/reference.md §7.4, issue #11): ADM center crop to `data.image_size`, no flip, in
dataset index order; encode -> decode -> clamp, x255, truncate (as stage1_sample_ddp.py). The reference file
holds the very same uint8 crops, so rFID compares reconstructions with their own inputs (not with the gFID
reference statistics). Outputs `<workdir>/<name>_recon.npz` and `<workdir>/<name>_reference.npz` (`arr_0`
uint8 (N, S, S, 3), `arr_1` int64 labels); resumable shards in `<workdir>/<name>_shards/`.
"""
from __future__ import annotations

import numpy as np
import torch
from absl import logging
from etils import epath

from rae_xla import data, metrics
from rae_xla.sampling.engine import to_uint8
from rae_xla.sampling.shards import ShardStore
from rae_xla import build


def run(config, workdir: str, runtime) -> None:
    s = config.sampling
    batch = s.global_batch_size
    num_images = len(data.open_source(config.data))
    n = min(s.num_samples, num_images) if s.num_samples > 0 else num_images
    settings = dict(rae=config.rae.to_dict(), data=config.data.to_dict(), num_samples=n,
                    precision=config.runtime.precision)
    store = ShardStore(epath.Path(workdir) / f"{s.name}_shards", n, settings, writer=runtime.is_main)
    store.covered = runtime.broadcast_int(store.covered)
    first_step, last_step = store.covered // batch, -(-n // batch)  # Eval batch j holds indices [j*B, (j+1)*B).
    torch.manual_seed(config.seed)  # A decoder without weights ('' in tests) is the same random one everywhere.
    rae = runtime.place_frozen(build.build_rae(config.rae).eval())

    def reconstruct(images: torch.Tensor) -> torch.Tensor:
        with runtime.autocast(config.runtime.precision):
            pixels = images.permute(0, 3, 1, 2).float() / 255.0
            return to_uint8(rae.decode(rae.encode(pixels)))

    step_fn = runtime.compile_step(reconstruct, name="reconstruct")
    loader = data.make_eval_loader(config.data, batch_size=batch, process_index=runtime.process_index,
                                   process_count=runtime.process_count, start_step=first_step)
    host = ({"image": b["image"], "label": b["label"]} for _, b in zip(range(first_step, last_step), loader))
    writer = metrics.create_default_writer(workdir, is_main=runtime.is_main)
    progress = metrics.ReportProgress(total_steps=max(last_step - first_step, 1), every_steps=s.log_every,
                                      images_per_step=batch, num_devices=runtime.num_devices)
    progress(0)
    try:
        device_batches = runtime.device_batches(host) if last_step > first_step else iter(())
        for done, (step, inputs) in enumerate(zip(range(first_step, last_step), device_batches), start=1):
            recon = step_fn(inputs["image"])
            store.write(step * batch, {"recon": runtime.gather_batch(recon).numpy(),
                                       "reference": runtime.gather_batch(inputs["image"]).numpy(),
                                       "labels": runtime.gather_batch(inputs["label"]).numpy()})
            report = progress(done)
            if report:
                logging.info("reconstruct: %s", report.line())
                writer.write_scalars(done, dict(report.scalars(), **runtime.compile_stats_scalars()))
        runtime.barrier("reconstruct-done")
        if runtime.is_main:
            store.covered = store.scan()
            out = epath.Path(workdir)
            store.assemble(out / f"{s.name}_recon.npz", {"arr_0": "recon", "arr_1": "labels"})
            store.assemble(out / f"{s.name}_reference.npz", {"arr_0": "reference", "arr_1": "labels"})
    finally:
        writer.close()
