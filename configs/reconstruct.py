"""rFID inputs: reconstructions of the ImageNet validation split by the released RAE, and the same crops.

  python -m rae_xla.main --config=configs/reconstruct.py --workdir=gs://my-bucket/rfid/vitxl_n08 \
      --config.data.data_dir=gs://my-bucket/tfds      # the released RAE (dinov2-b) from hf:// by default
  -> <workdir>/val_recon.npz and <workdir>/val_reference.npz (arr_0 uint8 50000x256x256x3 each).

ADM center crop, no flip, dataset index order (docs/reference.md §7.4). Paper: rFID 0.57 (README reproduction 0.54),
PSNR ~18.9 for this decoder, measured against the reference file written here (not VIRTUAL_imagenet256).
Arguments: res=256|512.
"""
import ml_collections

from rae_xla import config as config_lib


def get_config(arg=None):
    a = config_lib.parse_arg(arg, res=256)
    config = ml_collections.ConfigDict()
    config.job = "reconstruct"
    config.seed = 0
    config.runtime = config_lib.runtime_block(precision="fp32")
    config.data = config_lib.imagenet_data_block(split="validation", image_size=a.res, random_flip=False)
    config.rae = config_lib.released_rae_block(a.res)
    config.sampling = config_lib.sampling_block(num_samples=0, global_batch_size=256, name="val")
    return config
