"""ADM-format reference npz (mu, sigma, mu_s, sigma_s, arr_0) of a dataset split (job `reference_stats`).

  # ImageNet val at 256 px, every crop kept (the image reference for rFID/PSNR/SSIM of reconstructions):
  python -m rae_xla.main --config=configs/reference_stats.py --workdir=gs://bucket/refs/imagenet256_val \\
      --config.data.data_dir=gs://bucket/tfds --config.eval.reference_images=-1
  # An image folder (root/<class>/<image>), ADM-style 10,000-image arr_0:
  python -m rae_xla.main --config=configs/reference_stats.py:res=512 --workdir=refs/my_set \\
      --config.data.source=folder --config.data.data_dir=/data/my_set

Writes <workdir>/reference.npz (or eval.reference_output). ADM center crop to `res`, no flip.
"""
import ml_collections

from rae_xla import config as config_lib


def get_config(arg=None):
    a = config_lib.parse_arg(arg, res=256)
    config = ml_collections.ConfigDict()
    config.job = "reference_stats"
    config.seed = 0
    config.runtime = config_lib.runtime_block()
    config.data = config_lib.imagenet_data_block(split="validation", image_size=a.res, random_flip=False)
    config.eval = config_lib.eval_block()
    return config
