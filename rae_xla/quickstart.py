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

import ml_collections
import numpy as np
import torch
from absl import logging
from etils import epath

from rae_xla import config as config_lib
from rae_xla import export_decoder
from rae_xla.eval import latent_stats
from rae_xla.train import build, stage1, stage2


def run(config, workdir: str, runtime) -> None:
    root = epath.Path(workdir)
    s1, s2 = _with_runtime(config.stage1_run, config), _with_runtime(config.stage2_run, config)

    # --- Stage 1: the decoder -------------------------------------------------------------------------------------
    _run_part(stage1.run, s1, root / "stage1", runtime)

    # --- Export (what a user hands to stage 2 or to the official code) -----------------------------------------
    decoder_dir = root / "decoder"
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
    _run_part(latent_stats.run, stats_cfg, root / "stats", runtime)

    # --- Stage 2 on the normalised latents, previews decoded by the trained decoder -----------------------------
    with s2.unlocked():
        s2.rae.update(dict(trained_rae, stats=str(root / "stats" / "stat.pt")))
    _run_part(stage2.run, s2, root / "stage2", runtime)

    # --- Report ------------------------------------------------------------------------------------------------------
    psnr = reconstruction_psnr(s1, trained_rae, runtime, count=s1.train.global_batch_size)
    if runtime.is_main:
        last = lambda folder: sorted((root / folder).glob("*.png"))[-1]  # noqa: E731
        print(f"\nQuickstart done.\n  decoder reconstructions (original | EMA reconstruction): "
              f"{last('stage1/reconstructions')}\n  stage-2 samples decoded by the trained decoder: "
              f"{last('stage2/samples')}\n  exported decoder: {decoder_dir / 'model.pt'}\n"
              f"  reconstruction PSNR on {s1.train.global_batch_size} images: {psnr:.2f} dB", flush=True)


def _with_runtime(sub, config) -> ml_collections.ConfigDict:
    """A part's config with the top-level runtime block (the one the runtime was built from)."""
    out = ml_collections.ConfigDict(sub.to_dict())
    out.runtime = ml_collections.ConfigDict(config.runtime.to_dict())
    return out


def _run_part(run_fn, cfg, workdir: epath.Path, runtime) -> None:
    config_lib.validate(cfg, num_devices=runtime.num_devices, process_count=runtime.process_count)
    if runtime.is_main:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "config.json").write_text(config_lib.to_json(cfg))
    logging.info("quickstart: %s -> %s", cfg.job, workdir)
    run_fn(cfg, str(workdir), runtime)


def reconstruction_psnr(s1, trained_rae: dict, runtime, count: int) -> float:
    """Mean PSNR (dB, 8-bit) of the exported decoder's reconstructions of the first `count` dataset images."""
    rae_cfg = ml_collections.ConfigDict(dict(s1.rae.to_dict(), **trained_rae, noise_tau=0.0))
    rae = build.build_rae(rae_cfg).to(runtime.device)
    images = stage1.preview_images(s1.data, count)
    recon = stage1.reconstruct(runtime, rae, rae.decoder, torch.from_numpy(images).to(runtime.device))
    mse = ((images.astype(np.float64) - recon.astype(np.float64)) ** 2).mean(axis=(1, 2, 3))
    return float(np.mean(10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-10))))
