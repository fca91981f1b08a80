"""DiT^DH-XL (839M) on DINOv2-B RAE latents, class-conditional ImageNet: the paper's main model.

  python -m rae_xla.main --config=configs/ditdh_xl.py --workdir=gs://my-bucket/runs/ditdh_xl_256 \
      --config.data.data_dir=gs://my-bucket/tfds \
      --config.rae.decoder_weights=gs://my-bucket/RAE-collections/decoders/dinov2/wReg_base/ViTXL_n08/model.pt \
      --config.rae.stats=gs://my-bucket/RAE-collections/stats/dinov2/wReg_base/imagenet1k/stat.pt
  (launch on every TPU VM worker with launch/tpu_vm.sh run ...; on GPUs with launch/gpu.sh ...)
  Variants: configs/ditdh_xl.py:res=512 (32x32 latents from the 448-px encoder input; alpha = sqrt(192)).

Recipe (docs/reference.md §6.1, §8.2): global batch 1024, AdamW 2e-4 betas (0.9, 0.95) no weight decay, LR constant
for 40 epochs then linear to 2e-5 at epoch 800, grad clip 1.0, EMA 0.9995, label dropout 0.1, logit-normal(0, 1)
times shifted by alpha = sqrt(768*16*16/4096) = 6.93. 1251 steps/epoch. The paper reports gFID 2.16 at 80 epochs
without guidance and 1.13 with autoguidance after 800 epochs (50-point Euler sampling).
Cost: ~924 GFLOP per image per training step (docs/xla_notes.md §3); at 40% MFU a v5p-64 (32 chips) runs one 1024-image
step in ~0.16 s, i.e. 80 epochs in ~4.5 h and 800 epochs in ~45 h.
"""
import ml_collections

from rae_xla import config as config_lib


def get_config(arg=None):
    a = config_lib.parse_arg(arg, res=256, epochs=1400.0)
    latent = 16 if a.res == 256 else 32
    config = ml_collections.ConfigDict()
    config.job = "train_stage2"
    config.seed = 42  # The official global_seed.
    # bf16 autocast for the forward (fp32 master weights and AdamW state): the TPU default; the official GPU
    # runs were fp32, so pass --config.runtime.precision=fp32 on GPUs to match them exactly.
    config.runtime = config_lib.runtime_block(precision="bf16")
    config.data = config_lib.imagenet_data_block(image_size=a.res)
    config.rae = config_lib.released_rae_block(a.res)
    config.model = config_lib.model_block("DiTDH-XL", input_size=latent)
    config.flow = config_lib.flow_block(time_dist="logit_normal", mu=0.0, sigma=1.0, shift_base=4096)
    config.sample = config_lib.sample_block(method="euler", num_steps=50)
    config.train = config_lib.train_block(epochs=a.epochs, sample_every=10000, checkpoint_every=5000)
    return config
