"""The whole RAE pipeline on an embedded default: minutes on a laptop CPU, no downloads.

  make quickstart
  # = python -m rae_xla.main --config=configs/quickstart.py:part=all --workdir=runs/quickstart
  PJRT_DEVICE=CPU CPU_NUM_DEVICES=4 python -m rae_xla.main --config=configs/quickstart.py:part=all \
      --workdir=runs/quickstart_xla --config.runtime.backend=xla      # the SPMD path on 4 virtual devices

Data: a synthetic 10-class dataset of coloured shapes (built once into ~/.cache/rae_xla/tfds through the same
ArrayRecord builder and reader as ImageNet); encoder: a tiny DINOv2-with-registers with RANDOM weights
('random-tiny', 64 channels, 56-px input -> 4x4 latents); decoder: configs/decoder/tiny (64 px out).
Parts (`part=`):
  stage2 (default; the tests and benchmarks use it): a tiny DiT^DH trained by flow matching with the UNTRAINED
    decoder (its sample grids look like noise; the loss falls from ~1.5 to ~0.5 in 300 steps, ~1 min);
  stage1: the decoder trained with L1 alone for 90 % of the steps, then + LPIPS (random-weight VGG16) and
    discriminator updates (tiny random DINO backbone), + the GAN loss for the last 5 %: every phase runs;
  all (job `quickstart`, rae_xla/quickstart.py): stage1 -> export (model.pt + config.json) -> latent statistics
    (the stats job) -> stage2 on the normalised latents with the trained decoder -> prints where the pictures
    are (stage1/reconstructions/*.png, stage2/samples/*.png) and the reconstruction PSNR.
Arguments: steps (stage 2), stage1_steps, batch (both).
"""
import ml_collections

from rae_xla import config as config_lib


def get_config(arg=None):
    a = config_lib.parse_arg(arg, part="stage2", steps=300, batch=16, stage1_steps=400)
    if a.part == "stage2":
        return stage2_config(a.steps, a.batch)
    if a.part == "stage1":
        return stage1_config(a.stage1_steps, a.batch)
    if a.part != "all":
        raise config_lib.ConfigError(f"part={a.part!r}: choose stage1, stage2 or all")
    config = ml_collections.ConfigDict()
    config.job = "quickstart"
    config.seed = 0
    config.runtime = config_lib.runtime_block()
    config.stage1_run = stage1_config(a.stage1_steps, a.batch)
    config.stage2_run = stage2_config(a.steps, a.batch)
    config.stats_num_images = 256  # Images the latent statistics are computed over.
    return config


def _data(**overrides):
    return config_lib.data_block(source="synthetic", name="rae_synthetic", image_size=64, num_workers=2,
                                 synthetic_num_classes=10, synthetic_num_images=1000, **overrides)


def _rae(**overrides):
    return config_lib.rae_block(encoder="dinov2", encoder_path="random-tiny", encoder_input_size=56,
                                decoder_config="configs/decoder/tiny/config.json", decoder_patch_size=16, **overrides)


def stage1_config(steps: int, batch: int):
    """The tiny decoder on the tiny random encoder: L1 alone for 90 % of the steps (cheap), then LPIPS (random VGG)
    and discriminator updates (tiny random DINO backbone), the GAN loss for the last 5 %: all phases run."""
    config = ml_collections.ConfigDict()
    config.job = "train_stage1"
    config.seed = 0
    config.runtime = config_lib.runtime_block(activation_sharding=r"^decoder_layers\.\d+$")
    config.data = _data(random_flip=False, crop="random")
    config.rae = _rae(noise_tau=0.8)
    config.stage1 = config_lib.stage1_block(
        lpips_random_backbone=True, start_unit="step", lpips_start=float(int(0.9 * steps)),
        disc_upd_start=float(int(0.9 * steps)), disc_start=float(int(0.95 * steps)),
        disc_arch=dict(dino_ckpt_path="random", ks=9, key_depths=(0, 1), norm_type="bn", using_spec_norm=True,
                       norm_eps=1e-6, recipe="S_8"),
        # A 2-block, 48-wide DINO with 16-px patches: 196 tokens at 224 px (the released S_8 has 784).
        disc_recipe=dict(depth=2, embed_dim=48, num_heads=4, patch_size=16, mlp_ratio=4.0, in_chans=3),
        disc_lr_schedule=dict(type="constant", base_lr=2e-4, final_lr=2e-4, warmup_epochs=0.0,
                              decay_end_epoch=0.0, warmup_from_zero=False, unit="step"))
    config.train = config_lib.train_block(
        global_batch_size=batch, max_steps=steps, epochs=0.0, clip_grad=0.0, ema_decay=0.98, log_every=20,
        checkpoint_every=100, keep_checkpoints=2, sample_every=steps, num_sample_images=8,
        lr_schedule=dict(type="constant", base_lr=1e-3, final_lr=1e-3, warmup_epochs=0.0, decay_end_epoch=0.0,
                         warmup_from_zero=False, unit="step"))
    return config


def stage2_config(steps: int, batch: int):
    config = ml_collections.ConfigDict()
    config.job = "train_stage2"
    config.seed = 0
    config.runtime = config_lib.runtime_block()
    config.data = _data()
    config.rae = _rae()
    config.model = config_lib.model_block("DiTDH-S", input_size=4, in_channels=64, hidden_size=[64, 128],
                                          depth=[2, 1], num_heads=[4, 4], num_classes=10)
    # 64x4x4 latents would give alpha = sqrt(1024/4096) = 0.5 < 1, which the official code forbids: no shift.
    config.flow = config_lib.flow_block(shift=1.0)
    config.sample = config_lib.sample_block(num_steps=20)
    config.train = config_lib.train_block(
        global_batch_size=batch, max_steps=steps, epochs=0.0, log_every=20, checkpoint_every=100,
        keep_checkpoints=2, sample_every=150, num_sample_images=8,
        lr_schedule=dict(type="constant", base_lr=1e-3, final_lr=1e-3, warmup_epochs=0.0, decay_end_epoch=0.0,
                         warmup_from_zero=False, unit="step"))
    return config
