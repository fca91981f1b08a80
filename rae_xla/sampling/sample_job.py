"""Job `sample`: a PNG grid (and the latents) for chosen class labels.

  python -m rae_xla.main --config=configs/sample_fid.py:job=sample --workdir=runs/sample_xl \
      --config.sampling.checkpoint=/path/to/stage2_model.pt --config.sampling.class_labels='(207, 360, 387, 974)'

Sample k gets label `sampling.class_labels[k]` and the noise of index k (`noise.sample_noise(seed, k)`, the same
noise `sample_fid` uses for its sample k). Writes `<workdir>/samples/<name>.png` (ceil(sqrt(K)) columns) and
`<workdir>/samples/<name>.npz` with `latents` float32 (K, C, h, w), `labels` int64 (K,) and `arr_0` uint8
(K, H, W, 3).
"""
from __future__ import annotations

import io

import numpy as np
import torch
from absl import logging
from etils import epath

from rae_xla import config as config_lib
from rae_xla.data.sampler import process_rows
from rae_xla.sampling.engine import SampleEngine
from rae_xla.sampling.models import load_sampling_models
from rae_xla.sampling.noise import sample_noise
from rae_xla.metrics.grids import save_grid


def run(config, workdir: str, runtime) -> None:
    s = config.sampling
    labels = np.asarray(s.class_labels, dtype=np.int64)
    models = load_sampling_models(config, workdir, runtime)
    if labels.size == 0 or labels.min() < 0 or labels.max() >= models.num_classes:
        raise config_lib.ConfigError(f"sampling.class_labels={tuple(s.class_labels)} must be a non-empty tuple of "
                                     f"classes in [0, {models.num_classes})")
    # One batch padded to a multiple of the batch shards (devices and processes); padding rows are dropped.
    shards = max(runtime.num_devices, runtime.process_count)
    batch = -(-labels.size // shards) * shards
    index = np.arange(batch)[process_rows(runtime.process_index, runtime.process_count, batch)]
    padded = np.concatenate([labels, np.zeros(batch - labels.size, np.int64)])
    host = {"noise": sample_noise(config.seed, index, models.latent_shape), "label": torch.from_numpy(padded[index])}
    inputs = next(iter(runtime.device_batches([host])))
    engine = SampleEngine(runtime, models, config.sample, config.runtime.precision)
    runtime.seed(config.seed)  # The SDE's per-step noise (device draws); the ODE methods draw nothing here.
    latents = engine.latents(inputs["noise"], inputs["label"])
    images = runtime.gather_batch(engine.images(latents)).numpy()[:labels.size]
    latents = runtime.gather_batch(latents).float().numpy()[:labels.size]
    if runtime.is_main:
        out = epath.Path(workdir) / "samples"
        save_grid(images, out / f"{s.name}.png")
        buffer = io.BytesIO()
        np.savez(buffer, latents=latents, labels=labels, arr_0=images)
        (out / f"{s.name}.npz").write_bytes(buffer.getvalue())
        logging.info("sample: wrote %s.png and %s.npz (%d images, labels %s).", out / s.name, out / s.name,
                     labels.size, labels.tolist())
