"""Stage 1: the RAE decoder (ViT-XL) on a frozen DINOv2-B-with-registers encoder, ImageNet 256 px
(docs/reference.md §5).

  python -m rae_xla.main --config=configs/decoder_xl.py --workdir=gs://my-bucket/runs/decoder_xl \
      --config.data.data_dir=gs://my-bucket/tfds
  (the DINO discriminator backbone is the released hf://nyu-visionx/RAE-collections/discs/dino_vit_small_patch8_224.pth;
  LPIPS reads torchvision's vgg16-397923af.pth from $TORCH_HOME/hub/checkpoints, or --config.stage1.lpips_vgg_path)
  then: python -m rae_xla.export_decoder --workdir=gs://my-bucket/runs/decoder_xl --out=/tmp/decoder_xl
GPUs: the same flags through launch/gpu.sh (torchrun). runtime.param_sharding='fsdp' (the default) shards decoder,
EMA and AdamW state with FSDP2 (~20 B/param / GPUs; replicated the ViT-XL decoder's state is ~8 GB per GPU),
'replicate' runs DDP; the discriminator heads are replicated either way (docs/readme/stage1.md).
Variants (comma-separated): res=512 (448-px encoder input, 32x32 latents, 512-px output), encoder=siglip2|mae
(256-px input, 16x16 latents), decoder=ViT-B|ViT-L|ViT-XL, epochs=16.

Recipe (official main branch, configs/stage1/training/DINOv2-B_decXL.yaml, docs/reference.md §5.7): global batch 512,
16 epochs (2502 steps/epoch on ImageNet), AdamW 2e-4 betas (0.9, 0.95) for decoder and discriminator, cosine
to 2e-5 with a 1-epoch warm-up from zero, EMA 0.9978, noise tau 0.8, L1 + 1.0 LPIPS, discriminator updates from
epoch 6, GAN loss (weight 0.75, adaptive weight clamped to 1e4) from epoch 8; data: resize the shorter side
to 384 (1.5x at other sizes) + random crop, no flip. Cost: ViT-XL decoder ~0.66 TFLOP/image/step
(fwd+bwd, 2 FLOPs per multiply-add, the trainer's count) plus the frozen encoder, LPIPS and the discriminator.
"""
import ml_collections

from rae_xla import config as config_lib
from rae_xla import released

ENCODERS = {  # encoder kind -> (hub id, encoder input size at 256 px)
    "dinov2": ("facebook/dinov2-with-registers-base", 224),
    "siglip2": ("google/siglip2-base-patch16-256", 256),
    "mae": ("facebook/vit-mae-base", 256),
}


def get_config(arg=None):
    a = config_lib.parse_arg(arg, res=256, encoder="dinov2", decoder="ViT-XL", epochs=16.0)
    if a.encoder not in ENCODERS:
        raise config_lib.ConfigError(f"encoder={a.encoder!r}: choose one of {sorted(ENCODERS)}")
    if a.decoder not in ("ViT-B", "ViT-L", "ViT-XL"):
        raise config_lib.ConfigError(f"decoder={a.decoder!r}: choose ViT-B, ViT-L or ViT-XL")
    if a.res not in (256, 512):
        raise config_lib.ConfigError(f"res={a.res}: the recipe exists for 256 and 512 px")
    hub_id, input_256 = ENCODERS[a.encoder]
    config = ml_collections.ConfigDict()
    config.job = "train_stage1"
    config.seed = 0
    config.runtime = config_lib.runtime_block(precision="bf16", activation_sharding=r"^decoder_layers\.\d+$")
    config.data = config_lib.imagenet_data_block(image_size=a.res, random_flip=False, crop="random")
    config.rae = config_lib.rae_block(encoder=a.encoder, encoder_path=hub_id,
                                      encoder_input_size=input_256 * a.res // 256, decoder_config=a.decoder,
                                      decoder_weights="", stats="", noise_tau=0.8)
    config.stage1 = config_lib.stage1_block(
        disc_lr_schedule=dict(type="cosine", base_lr=2e-4, final_lr=2e-5, warmup_epochs=1.0,
                              decay_end_epoch=16.0, warmup_from_zero=True, unit="epoch"))
    config.stage1.disc_arch.dino_ckpt_path = released.path(released.DISCRIMINATOR_BACKBONE)
    config.train = config_lib.train_block(
        global_batch_size=512, epochs=a.epochs, clip_grad=0.0, ema_decay=0.9978, log_every=100,
        checkpoint_every=2500, sample_every=2500, num_sample_images=4,
        lr_schedule=dict(type="cosine", base_lr=2e-4, final_lr=2e-5, warmup_epochs=1.0, decay_end_epoch=16.0,
                         warmup_from_zero=True, unit="epoch"))
    return config
