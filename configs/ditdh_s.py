"""DiT^DH-S (196M): the weak model that autoguides DiT^DH-XL (docs/reference.md §3.6, §8.2).

  python -m rae_xla.main --config=configs/ditdh_s.py --workdir=gs://my-bucket/runs/ditdh_s_256 \
      --config.data.data_dir=gs://my-bucket/tfds --config.rae.decoder_weights=... --config.rae.stats=...
  Variants: :res=512, :epochs=14 (the released 256-px guidance model is the epoch-14 snapshot; 512 px: epoch 20).

Same recipe as configs/ditdh_xl.py (the official DiTDH-S config differs only in sample_every 2500). Autoguidance
with it: scale 1.42 at 256 px, 1.5 at 512 px, on the full interval [0, 1].
"""
import ml_collections

from rae_xla import config as config_lib


def get_config(arg=None):
    a = config_lib.parse_arg(arg, res=256, epochs=1400.0)
    latent = 16 if a.res == 256 else 32
    config = ml_collections.ConfigDict()
    config.job = "train_stage2"
    config.seed = 42
    config.runtime = config_lib.runtime_block(precision="bf16")
    config.data = config_lib.imagenet_data_block(image_size=a.res)
    config.rae = config_lib.released_rae_block(a.res)
    config.model = config_lib.model_block("DiTDH-S", input_size=latent)
    config.flow = config_lib.flow_block(time_dist="logit_normal", mu=0.0, sigma=1.0, shift_base=4096)
    config.sample = config_lib.sample_block(method="euler", num_steps=50)
    config.train = config_lib.train_block(epochs=a.epochs, sample_every=2500, checkpoint_every=5000)
    return config
