"""Job `reference_stats`: an ADM-format reference npz for any dataset split (TFDS or image folder).

  python -m rae_xla.main --config=configs/reference_stats.py --workdir=gs://bucket/refs/imagenet256_val \\
      --config.data.data_dir=gs://bucket/tfds --config.data.split=validation

Images: the split's every example once, ADM center crop to data.image_size, no flip (the data package's eval
loader). Writes mu, sigma (pool3) and mu_s, sigma_s (sFID) over ALL images, plus arr_0 = the first
`eval.reference_images` crops (ADM's evaluator computes its precision/recall reference from arr_0; -1 stores every
crop, which is also the reference image file for rFID/PSNR/SSIM of reconstructions). Works as `--ref_batch` of
ADM's evaluator and as `eval.reference` here.
"""
from __future__ import annotations

import io

import numpy as np
from absl import logging
from etils import epath

from rae_xla import data
from rae_xla.eval import adm, inception


def first_images(data_cfg, count: int) -> np.ndarray:
    """The first `count` (-1: all) center crops of the split, uint8 (n, S, S, 3), read on this process alone."""
    loader = data.make_eval_loader(data_cfg, batch_size=256, process_index=0, process_count=1)
    total = len(loader.loader.dataset.source)
    count = total if count < 0 else min(count, total)
    chunks, have = [], 0
    for batch in loader:
        if have >= count:
            break
        images = batch["image"].numpy()[batch["valid"].numpy()]
        chunks.append(images[:count - have])
        have += len(chunks[-1])
    return np.concatenate(chunks) if chunks else np.zeros((0, data_cfg.image_size, data_cfg.image_size, 3), np.uint8)


def compute_reference(config, runtime) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """(statistics {mu, sigma, mu_s, sigma_s}, arr_0 images or None) of `config.data`."""
    e = config.eval
    extractor = inception.FeatureExtractor(runtime, e.inception_weights)
    loader = data.make_eval_loader(config.data, batch_size=e.global_batch_size, process_index=runtime.process_index,
                                   process_count=runtime.process_count)
    features = extractor.features(({"image": b["image"], "valid": b["valid"]} for b in loader),
                                  total=len(loader.loader.dataset.source))
    mu, sigma = adm.feature_statistics(features["pool3"])
    mu_s, sigma_s = adm.feature_statistics(features["spatial"])
    statistics = {"mu": mu, "sigma": sigma, "mu_s": mu_s, "sigma_s": sigma_s}
    images = first_images(config.data, e.reference_images) if e.reference_images and runtime.is_main else None
    logging.info("reference_stats: %d images, arr_0 holds %s", len(features["pool3"]),
                 "none" if images is None else len(images))
    return statistics, images


def run(config, workdir: str, runtime) -> None:
    statistics, images = compute_reference(config, runtime)
    path = config.eval.reference_output or str(epath.Path(workdir) / "reference.npz")
    if runtime.is_main:
        buffer = io.BytesIO()
        adm.write_reference(buffer, images=images, statistics=statistics)
        target = epath.Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(buffer.getvalue())
        logging.info("reference_stats: wrote %s", path)
    runtime.barrier("reference_written")
