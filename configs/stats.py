"""Latent statistics (stat.pt) of the released DINOv2-B RAE encoder over ImageNet train (job `stats`).

  python -m rae_xla.main --config=configs/stats.py --workdir=gs://bucket/stats/dinov2_b_256 \\
      --config.data.data_dir=gs://bucket/tfds
  python -m rae_xla.main --config=configs/stats.py:runlocal --workdir=/tmp/stats   # tiny, synthetic, CPU

Writes <workdir>/stat.pt = {'mean', 'var'} float32 (C, H, W) of the UNNORMALISED latents (rae.stats must be ''),
the file `rae.stats` reads. Exact moments (float64 Chan merge), independent of batch size and device count; see
rae_xla/eval/latent_stats.py for how this differs from the official EMA-style estimate. Each image is encoded
with its mirror image (stats.flips), ADM center crop, no random flip. Cost: 2 encoder forwards per image
(1.28M images: ~2.6M DINOv2-B forwards at 224 px). On TPU set --config.stats.sum_dtype=float32.
"""
import ml_collections

from rae_xla import config as config_lib


def get_config(arg=None):
    a = config_lib.parse_arg(arg, res=256, runlocal=False)
    config = ml_collections.ConfigDict()
    config.job = "stats"
    config.seed = 0
    config.runtime = config_lib.runtime_block()
    if a.runlocal:
        # Its own dataset name: the 64-image set never clashes with the quickstart's 1000-image cache.
        config.data = config_lib.data_block(source="synthetic", name="rae_synthetic_64", image_size=64, num_workers=0,
                                            random_flip=False, synthetic_num_classes=10, synthetic_num_images=64)
        config.rae = config_lib.rae_block(encoder="dinov2", encoder_path="random-tiny", encoder_input_size=56,
                                          decoder_config="configs/decoder/tiny/config.json", decoder_patch_size=16)
        config.stats = config_lib.stats_block(global_batch_size=16, log_every=1)
    else:
        config.data = config_lib.imagenet_data_block(split="train", image_size=a.res, random_flip=False)
        config.rae = config_lib.released_rae_block(a.res)
        config.rae.stats = ""  # Measure the unnormalised latents.
        config.rae.decoder_weights = ""  # Only the encoder runs; skip reading the decoder.
        config.stats = config_lib.stats_block(global_batch_size=1024)
    return config
