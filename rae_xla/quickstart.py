"""Job `quickstart`: the whole pipeline on the embedded synthetic data, in one process (configs/quickstart.py:part=all).

  stage 1 (decoder: L1 + LPIPS on a random VGG, then discriminator updates and the GAN loss)  -> <workdir>/stage1
  export the EMA decoder in the released format (model.pt + config.json)                    -> <workdir>/decoder
  latent statistics of the trained RAE's encoder (job `stats`)                               -> <workdir>/stats
  stage 2 (DiT^DH on the normalised latents) with sample grids decoded by the trained decoder -> <workdir>/stage2
Each part is the real job (same modules as on a pod), run with the sub-config of `config.stage1_run` /
`config.stage2_run`; every part writes its own config.json, metrics and checkpoints. At the end it prints where
the pictures are and the reconstruction PSNR of the trained decoder on the first images of the dataset.
"""
from __future__ import annotations

import contextlib
import json
import os
import resource
import time

import ml_collections
import numpy as np
import torch
from absl import logging
from etils import epath
from PIL import Image

from rae_xla import config as config_lib
from rae_xla import data, export_decoder
from rae_xla.eval import latent_stats, shape_classes
from rae_xla.eval import recon as recon_metrics
from rae_xla import build
from rae_xla.train import stage1, stage2

SUMMARY_FILE = "quickstart.json"


def run(config, workdir: str, runtime) -> None:
    root = epath.Path(workdir)
    if runtime.kind == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        # One intra-op thread unless the user says otherwise: these models are too small to split. Measured on
        # the shared 2-core box, a 16-image stage-1 step: 40 ms on one thread, 80 ms at best on two, and 1.7 s on
        # two while other jobs held the cores (the threads wait for each other), at 2-3x the CPU time.
        torch.set_num_threads(1)
    s1, s2 = _with_runtime(config.stage1_run, config), _with_runtime(config.stage2_run, config)
    clock = PartClock()

    # --- Stage 1: the decoder -------------------------------------------------------------------------------------
    with clock("stage1"):
        stopped = _run_part(stage1.run, s1, root / "stage1", runtime)
    if stopped:
        return  # SIGTERM: stop the pipeline too (rerunning resumes stage 1 from its checkpoint).

    # --- Export (what a user hands to stage 2 or to the official code) -----------------------------------------
    decoder_dir = root / "decoder"
    with clock("export"):
        if runtime.is_main:
            export_decoder.export(str(root / "stage1"), str(decoder_dir))
        runtime.barrier("quickstart-decoder-exported")
    trained_rae = dict(decoder_config=str(decoder_dir / "config.json"), decoder_weights=str(decoder_dir / "model.pt"))

    # --- Latent statistics of the encoder (stats job) ------------------------------------------------------------
    stats_cfg = ml_collections.ConfigDict()
    stats_cfg.job = "stats"
    stats_cfg.seed = config.seed
    stats_cfg.runtime = config.runtime
    stats_cfg.data = ml_collections.ConfigDict(dict(s2.data.to_dict(), num_workers=0))  # Stage 2's images.
    stats_cfg.rae = ml_collections.ConfigDict(dict(s1.rae.to_dict(), **trained_rae, stats="", noise_tau=0.0))
    stats_cfg.stats = config_lib.stats_block(global_batch_size=s2.train.global_batch_size, log_every=1000)
    with clock("stats"):
        _run_part(latent_stats.run, stats_cfg, root / "stats", runtime)

    # --- Stage 2 on the normalised latents, previews decoded by the trained decoder -----------------------------
    with s2.unlocked():
        s2.rae.update(dict(trained_rae, stats=str(root / "stats" / "stat.pt")))
    with clock("stage2"):
        stopped = _run_part(stage2.run, s2, root / "stage2", runtime)
    if stopped:
        return

    # --- Report ------------------------------------------------------------------------------------------------------
    last = lambda folder: str(sorted((root / folder).glob("*.png"))[-1])  # noqa: E731
    with clock("report"):
        summary = quality_report(s1, s2, runtime, samples_png=last("stage2/samples"))
    if runtime.is_main:
        summary.update(reconstructions=last("stage1/reconstructions"), samples=last("stage2/samples"),
                       decoder=str(decoder_dir / "model.pt"), parts=clock.parts)
        (root / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))
        print(format_summary(summary, root / SUMMARY_FILE), flush=True)


class PartClock:
    """Wall and CPU seconds per part. CPU = this process (all threads) + its finished children (the data loader
    workers end with each part), so it is the machine time a part cost, whatever else shares the cores."""

    def __init__(self):
        self.parts: dict[str, dict[str, float]] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        wall, cpu = time.perf_counter(), _cpu_seconds()
        try:
            yield
        finally:
            self.parts[name] = {"wall_s": round(time.perf_counter() - wall, 1), "cpu_s": round(_cpu_seconds() - cpu, 1)}


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def format_summary(summary: dict, path) -> str:
    parts = summary["parts"]
    times = ", ".join(f"{name} {p['cpu_s'] / 60:.1f}/{p['wall_s'] / 60:.1f}" for name, p in parts.items())
    total_cpu, total_wall = (sum(p[k] for p in parts.values()) / 60 for k in ("cpu_s", "wall_s"))
    return (f"\nQuickstart done.\n"
            f"  decoder reconstructions (original | EMA reconstruction): {summary['reconstructions']}\n"
            f"  stage-2 samples (classes 0, 1, ... in reading order) decoded by the trained decoder: {summary['samples']}\n"
            f"  exported decoder: {summary['decoder']}\n"
            f"  reconstruction PSNR on {summary['psnr_images']} validation images: {summary['psnr_db']:.2f} dB "
            f"(the mean training image scores {summary['mean_image_psnr_db']:.2f} dB)\n"
            f"  of {summary['num_samples']} samples, in their class's colour: {summary['class_colour_accuracy']:.0%}, "
            f"shape: {summary['class_shape_accuracy']:.0%} (decoded Gaussian latents: "
            f"{summary['noise_class_colour_accuracy']:.0%}, {summary['noise_class_shape_accuracy']:.0%})\n"
            f"  minutes CPU/wall: {times}; total {total_cpu:.1f}/{total_wall:.1f}\n"
            f"  all of this in {path}")


def _with_runtime(sub, config) -> ml_collections.ConfigDict:
    """A part's config with the top-level runtime block (the one the runtime was built from)."""
    out = ml_collections.ConfigDict(sub.to_dict())
    out.runtime = ml_collections.ConfigDict(config.runtime.to_dict())
    return out


def _run_part(run_fn, cfg, workdir: epath.Path, runtime) -> bool:
    """Runs one job; returns True when SIGTERM stopped it."""
    config_lib.validate(cfg, num_devices=runtime.num_devices, process_count=runtime.process_count)
    if runtime.is_main:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "config.json").write_text(config_lib.to_json(cfg))
    logging.info("quickstart: %s -> %s", cfg.job, workdir)
    return bool(run_fn(cfg, str(workdir), runtime))


# ---------------------------------------------------------------------------------------------------------------
# How good the pictures are, as numbers next to the PNGs (the test of the quickstart reads them too).


def quality_report(s1, s2, runtime, *, samples_png: str) -> dict:
    """Reconstruction PSNR of the exported decoder on validation images vs the mean-image baseline, and the share
    of stage-2 samples (the last preview grid) drawn in their class's colour and shape vs decoded Gaussian latents
    (what an untrained generator gives); eval/shape_classes.py judges colour and shape."""
    rae = build.build_rae(ml_collections.ConfigDict(dict(s2.rae.to_dict(), noise_tau=0.0))).to(runtime.device)
    count = 4 * s1.train.global_batch_size  # A multiple of the device count, as the global batch is.
    images, _, valid = _first_images(s1.data, "validation", count)
    recon = stage1.reconstruct(runtime, rae, rae.decoder, torch.from_numpy(images).to(runtime.device))
    train_images, train_labels, train_valid = _first_images(s2.data, "train", 256)
    mean_image = np.broadcast_to(train_images[train_valid].astype(np.float64).mean(0), images.shape)
    shape_judge = shape_classes.ShapeJudge(train_images[train_valid], train_labels[train_valid])

    num_classes = s2.model.num_classes
    samples = _grid_tiles(np.asarray(Image.open(samples_png)), s2.train.num_sample_images)
    labels = np.arange(len(samples)) % num_classes  # The preview labels (train/previews.py).
    torch.manual_seed(s2.seed)
    noise = torch.randn((len(samples), *rae.latent_shape)).to(runtime.device)
    decoded_noise = runtime.to_host((rae.decode(noise).clamp(0, 1) * 255).to(torch.uint8).permute(0, 2, 3, 1)).numpy()
    return dict(psnr_db=psnr(images[valid], recon[valid]), mean_image_psnr_db=psnr(images[valid], mean_image[valid]),
                psnr_images=int(valid.sum()), num_samples=len(samples),
                class_colour_accuracy=shape_classes.class_colour_accuracy(samples, labels, num_classes),
                noise_class_colour_accuracy=shape_classes.class_colour_accuracy(decoded_noise, labels, num_classes),
                class_shape_accuracy=shape_judge.accuracy(samples, labels),
                noise_class_shape_accuracy=shape_judge.accuracy(decoded_noise, labels))


def _first_images(data_cfg, split: str, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first `count` images of `split`, ADM center-cropped: uint8 (count, S, S, 3), labels (count,) and valid
    bool (count,) (rows past the end of a small split are zeros, valid False)."""
    cfg = dict(data_cfg.to_dict(), split=split, num_workers=0)
    batch = next(iter(data.make_eval_loader(cfg, batch_size=count, process_index=0, process_count=1)))
    return batch["image"].numpy(), batch["label"].numpy(), batch["valid"].numpy().astype(bool)


def psnr(images: np.ndarray, references: np.ndarray) -> float:
    """Mean over images of the PSNR (dB) between two (N, H, W, 3) arrays of 0..255 values (eval/recon.py's)."""
    as_unit = lambda x: recon_metrics.to_unit_float(torch.from_numpy(np.asarray(x, dtype=np.float64)))  # noqa: E731
    return float(recon_metrics.psnr(as_unit(images), as_unit(references)).double().mean())


def _grid_tiles(grid: np.ndarray, count: int) -> np.ndarray:
    """The `count` square tiles of a `metrics.grids.save_grid` PNG (ceil(sqrt(count)) columns) -> (count, S, S, 3)."""
    cols = int(np.ceil(np.sqrt(count)))
    size = grid.shape[1] // cols
    return np.stack([grid[r * size:(r + 1) * size, c * size:(c + 1) * size] for r, c in
                     (divmod(i, cols) for i in range(count))])
