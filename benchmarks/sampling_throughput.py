"""Sampling throughput of the `sample_fid` engine: images/s per device for N-point Euler + decode.

  python benchmarks/sampling_throughput.py --config=configs/sample_tiny.py --batches 3
  PJRT_DEVICE=CPU CPU_NUM_DEVICES=4 python benchmarks/sampling_throughput.py \
      --config=configs/sample_tiny.py --config.runtime.backend=xla
  python benchmarks/sampling_throughput.py --config=configs/sample_fid.py --config.rae.decoder_weights= \
      --config.rae.stats= --config.sampling.checkpoint=unused   # TPU VM / GPU: DiT^DH-XL + ViT-XL decoder shapes

Models have random weights (speed does not depend on them); the noise and labels of each batch are placed on
the devices before timing, so this is the compiled sampling steps + decode graph alone, what `sample_fid` runs
per batch. For each guidance setting (none; CFG at the config's scale on [0, 1]; autoguidance with the config's
weak model): one warm-up batch (compiles), then `--batches` timed batches bracketed by `runtime.wait()`.
Reported per setting: images/s per device, seconds per batch, compiled graphs. `--config.sample.num_steps`
(default 50 here, the released setting) sets the grid points.
"""
from __future__ import annotations

import json
import time

import torch
from absl import app, flags
from ml_collections import config_flags

from rae_xla import config as config_lib
from rae_xla import flow
from rae_xla.runtime import make_runtime
from rae_xla.sampling.engine import SampleEngine
from rae_xla.sampling.models import SamplingModels, weak_model_block
from rae_xla.sampling.noise import sample_noise
from rae_xla import build

import provenance

_CONFIG = config_flags.DEFINE_config_file("config", "configs/sample_tiny.py", "A sampling config.",
                                          lock_config=False)
_BATCHES = flags.DEFINE_integer("batches", 3, "Timed batches per guidance setting.")
_STEPS = flags.DEFINE_integer("num_steps", 50, "Grid points (50 = 49 Euler steps, the released setting).")
_GUIDANCE = flags.DEFINE_list("guidance", ["none", "cfg", "autoguidance"], "Guidance settings to time.")
_THREADS = flags.DEFINE_integer("threads", 0, "torch intra-op threads on CPU (0: torch's default).")


def build_models(config, runtime) -> SamplingModels:
    torch.manual_seed(0)
    rae = build.build_rae(config.rae)
    latent_shape = tuple(rae.latent_shape)
    alpha = config.flow.shift if config.flow.shift is not None else flow.time_shift_alpha(
        latent_shape, config.flow.shift_base)
    main = build.build_model(config.model, init_from="", train_fixed_embeddings=False)
    weak = build.build_model(weak_model_block(config), init_from="", train_fixed_embeddings=False)
    return SamplingModels(rae=runtime.place_frozen(rae.eval()), model=runtime.place_frozen(main),
                          weak_model=runtime.place_frozen(weak), latent_shape=latent_shape, alpha=float(alpha),
                          num_classes=config.model.num_classes)


def time_setting(runtime, models, config, guidance: str) -> dict:
    g = config.sample.guidance
    scale = g.scale if g.scale > 1 else 1.5
    config.sample.guidance = config_lib.guidance_block(
        method=guidance, scale=1.0 if guidance == "none" else scale, t_min=0.0, t_max=1.0)
    engine = SampleEngine(runtime, models, config.sample, config.runtime.precision)
    batch = config.sampling.global_batch_size
    host = {"noise": sample_noise(0, range(batch), models.latent_shape),
            "label": torch.arange(batch, dtype=torch.int64) % models.num_classes}
    inputs = next(iter(runtime.device_batches([host])))
    start = time.perf_counter()
    engine.images(engine.latents(inputs["noise"], inputs["label"]))
    runtime.wait()
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(_BATCHES.value):
        engine.images(engine.latents(inputs["noise"], inputs["label"]))
    runtime.wait()
    seconds = (time.perf_counter() - start) / _BATCHES.value
    return {"guidance": guidance, "scale": config.sample.guidance.scale, "global_batch": batch,
            "num_steps": config.sample.num_steps, "first_batch_seconds": first, "batch_seconds": seconds,
            "images_per_sec_per_device": batch / seconds / runtime.num_devices,
            **runtime.compile_stats_scalars()}


def main(argv):
    del argv
    config = _CONFIG.value
    config.sample.num_steps = _STEPS.value
    if _THREADS.value:
        torch.set_num_threads(_THREADS.value)
    runtime = make_runtime(config.runtime)
    models = build_models(config, runtime)
    rows = [time_setting(runtime, models, config, g) for g in _GUIDANCE.value]
    print(f"machine: {provenance.machine()}; commit {provenance.commit()}; backend {runtime.kind}, "
          f"{runtime.num_devices} device(s) ({runtime.device_kind}); method {config.sample.method}; "
          f"precision {config.runtime.precision}")
    print("| guidance | global batch | grid points | s / batch | images/s/device | first batch s (compile) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['guidance']} ({r['scale']}) | {r['global_batch']} | {r['num_steps']} | {r['batch_seconds']:.3f} "
              f"| {r['images_per_sec_per_device']:.2f} | {r['first_batch_seconds']:.2f} |")
    print("RESULT_JSON " + json.dumps(rows))


if __name__ == "__main__":
    app.run(main)
