"""LightningDiT-XL (677M, single stream, no DDT head) on DINOv2-B RAE latents: the paper's DiT baseline.

  python -m rae_xla.main --config=configs/lightningdit_xl.py --workdir=gs://my-bucket/runs/dit_xl_256 \
      --config.data.data_dir=gs://my-bucket/tfds --config.rae.decoder_weights=... --config.rae.stats=...

No official training config exists for it (issue bytetriper/RAE#55); this uses the DiT^DH recipe. The maintainers
report FID 4.28 at 80 epochs without guidance (issue #64).
"""
import ml_collections

from rae_xla import config as config_lib


def get_config(arg=None):
    a = config_lib.parse_arg(arg, res=256, epochs=1400.0)
    config = ml_collections.ConfigDict()
    config.job = "train_stage2"
    config.seed = 42
    config.runtime = config_lib.runtime_block(precision="bf16")
    config.data = config_lib.imagenet_data_block(image_size=a.res)
    config.rae = config_lib.released_rae_block(a.res)
    config.model = config_lib.model_block("DiT-XL", input_size=16 if a.res == 256 else 32)
    config.flow = config_lib.flow_block(time_dist="logit_normal", mu=0.0, sigma=1.0, shift_base=4096)
    config.sample = config_lib.sample_block(method="euler", num_steps=50)
    config.train = config_lib.train_block(epochs=a.epochs, sample_every=10000, checkpoint_every=5000)
    return config
