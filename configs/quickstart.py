"""The whole RAE pipeline on an embedded default: minutes on a laptop CPU, no downloads.

  make quickstart
  # = python -m rae_xla.main --config=configs/quickstart.py:part=all --workdir=runs/quickstart
  PJRT_DEVICE=CPU CPU_NUM_DEVICES=4 python -m rae_xla.main --config=configs/quickstart.py:part=all \
      --workdir=runs/quickstart_xla --config.runtime.backend=xla      # the SPMD path on 4 virtual devices

Data: a synthetic 10-class dataset of coloured shapes (built once into ~/.cache/rae_xla/tfds through the same
ArrayRecord builder and reader as ImageNet); encoder: a tiny DINOv2-with-registers with RANDOM weights
('random-tiny', 64 channels, patch 14); decoder: configs/decoder/tiny (64 px out).
Parts (`part=`):
  all (job `quickstart`, rae_xla/quickstart.py; size=demo): stage1 -> export (model.pt + config.json) -> latent
    statistics (the stats job) -> stage2 on the normalised latents with the trained decoder -> prints where the
    pictures are (stage1/reconstructions/*.png, stage2/samples/*.png), the reconstruction PSNR, whether the
    samples have their class's colour, and the CPU/wall minutes of each part (also in quickstart.json);
  stage2 (default; the tests and benchmarks use it; size=fast): a tiny DiT^DH trained by flow matching with the
    UNTRAINED decoder (its sample grids look like noise; the loss falls from ~1.5 to ~0.5 in 300 steps, ~1 min);
  stage1 (size=fast): the decoder trained with L1 alone, then + LPIPS (random-weight VGG16) and discriminator
    updates (tiny random DINO backbone) for the last 10 steps, + the GAN loss for the last 5: every phase runs.
Sizes (`size=`, default: demo for part=all, fast for one part):
  fast: 56-px encoder input -> 4x4x64 latents, decoder patch 16, DiT^DH widths (64, 128), depths (2, 1): seconds
    per hundred steps, for tests; the 4x4 random features are too coarse for the decoder to draw shapes (PSNR
    ~22 dB, 16-px blocks);
  demo: 112-px encoder input -> 8x8x64 latents, decoder patch 8 (PSNR ~25 dB), DiT^DH on 2x2 latent patches
    (16 tokens) with widths (128, 256), depths (4, 1), time shift 2, EMA 0.99, CFG 3: its samples draw each
    class's shape in its colour (see README).
Arguments: size, steps (stage 2), stage1_steps, batch (both stages); 0 = the size's default.
"""
import ml_collections

from rae_xla import config as config_lib

# size -> encoder input (px), decoder patch (px), DiT^DH patch, widths, depths, heads, stage-2 steps and batch,
# stage-1 steps and batch. Latent grid = encoder input / 14 (DINOv2 patch); decoder output = grid x patch = 64 px.
SIZES = {
    "fast": dict(encoder_input_size=56, decoder_patch_size=16, dit_patch=1, hidden=(64, 128), depth=(2, 1),
                 heads=(4, 4), steps=300, batch=16, stage1_steps=400, stage1_batch=16, stage1_crop="random"),
    "demo": dict(encoder_input_size=112, decoder_patch_size=8, dit_patch=2, hidden=(128, 256), depth=(4, 1),
                 heads=(4, 4), steps=2000, batch=32, stage1_steps=1500, stage1_batch=16, stage1_crop="center"),
}

def get_config(arg=None):
    a = config_lib.parse_arg(arg, part="stage2", size="", steps=0, batch=0, stage1_steps=0)
    if a.part not in ("stage1", "stage2", "all"):
        raise config_lib.ConfigError(f"part={a.part!r}: choose stage1, stage2 or all")
    size = a.size or ("demo" if a.part == "all" else "fast")
    if size not in SIZES:
        raise config_lib.ConfigError(f"size={size!r}: choose one of {sorted(SIZES)}")
    s = dict(SIZES[size])
    s.update({k: a[k] for k in ("steps", "batch", "stage1_steps") if a[k]})
    if a.batch:
        s["stage1_batch"] = a.batch
    if a.part == "stage2":
        return stage2_config(s)
    if a.part == "stage1":
        return stage1_config(s)
    config = ml_collections.ConfigDict()
    config.job = "quickstart"
    config.seed = 0
    config.runtime = config_lib.runtime_block()
    config.stage1_run = stage1_config(s)
    config.stage2_run = stage2_config(s, demo=True)
    return config


def _data(**overrides):
    return config_lib.data_block(source="synthetic", name="rae_synthetic", image_size=64, num_workers=2,
                                 synthetic_num_classes=10, synthetic_num_images=1000, **overrides)


def _rae(s: dict, **overrides):
    return config_lib.rae_block(encoder="dinov2", encoder_path="random-tiny", encoder_input_size=s["encoder_input_size"],
                                decoder_config="configs/decoder/tiny/config.json",
                                decoder_patch_size=s["decoder_patch_size"], **overrides)


def _constant_lr(lr: float) -> dict:
    return dict(type="constant", base_lr=lr, final_lr=lr, warmup_epochs=0.0, decay_end_epoch=0.0,
                warmup_from_zero=False, unit="step")


def stage1_config(s: dict):
    """The tiny decoder on the tiny random encoder: L1 alone (cheap: ~40 ms a step on one core), then LPIPS (random
    VGG) and discriminator updates (tiny random DINO backbone) for the last 10 steps, the GAN loss for the last 5
    (~1.5 s a step: VGG16 and the discriminator at 224 px), so all phases run."""
    steps = s["stage1_steps"]
    tail = min(10, steps // 10)  # Steps with LPIPS and discriminator updates; half of them with the GAN loss.
    config = ml_collections.ConfigDict()
    config.job = "train_stage1"
    config.seed = 0
    config.runtime = config_lib.runtime_block(activation_sharding=r"^decoder_layers\.\d+$")
    config.data = _data(random_flip=False, crop=s["stage1_crop"])
    config.rae = _rae(s, noise_tau=0.8)
    config.stage1 = config_lib.stage1_block(
        lpips_random_backbone=True, start_unit="step", lpips_start=float(steps - tail),
        disc_upd_start=float(steps - tail), disc_start=float(steps - tail // 2),
        disc_arch=dict(dino_ckpt_path="random", ks=9, key_depths=(0, 1), norm_type="bn", using_spec_norm=True,
                       norm_eps=1e-6, recipe="S_8"),
        # A 2-block, 48-wide DINO with 16-px patches: 196 tokens at 224 px (the released S_8 has 784).
        disc_recipe=dict(depth=2, embed_dim=48, num_heads=4, patch_size=16, mlp_ratio=4.0, in_chans=3),
        disc_lr_schedule=dict(_constant_lr(2e-4)))
    config.train = config_lib.train_block(
        global_batch_size=s["stage1_batch"], max_steps=steps, epochs=0.0, clip_grad=0.0, ema_decay=0.98,
        log_every=100, checkpoint_every=500, keep_checkpoints=2, sample_every=steps, num_sample_images=8,
        lr_schedule=_constant_lr(1e-3))
    return config


def stage2_config(s: dict, demo: bool = False):
    """The DiT^DH of size `s`; `demo` (part=all, trained decoder and latent statistics) adds what makes its samples
    pictures within a few CPU minutes: time shift 2 (more training and sampling at high noise, where the shape is
    decided), EMA decay 0.99 (half-life 69 steps; the default 0.9995's 1386 steps would leave a mostly untrained
    EMA after 3000 steps) and classifier-free guidance 3 in the previews."""
    config = ml_collections.ConfigDict()
    config.job = "train_stage2"
    config.seed = 0
    config.runtime = config_lib.runtime_block()
    config.data = _data()
    config.rae = _rae(s)
    grid = s["encoder_input_size"] // 14
    config.model = config_lib.model_block("DiTDH-S", input_size=grid, patch_size=s["dit_patch"], in_channels=64,
                                          hidden_size=list(s["hidden"]), depth=list(s["depth"]),
                                          num_heads=list(s["heads"]), num_classes=10)
    # 64x4x4 latents would give alpha = sqrt(1024/4096) = 0.5 < 1, which the official code forbids; 64x8x8: 1.
    config.flow = config_lib.flow_block(shift=2.0 if demo else 1.0)
    guidance = config_lib.guidance_block(method="cfg", scale=3.0) if demo else config_lib.guidance_block()
    config.sample = config_lib.sample_block(num_steps=50 if demo else 20, guidance=guidance)
    steps = s["steps"]
    config.train = config_lib.train_block(
        global_batch_size=s["batch"], max_steps=steps, epochs=0.0, log_every=100 if demo else 20,
        checkpoint_every=500 if demo else 100, keep_checkpoints=2, sample_every=1000 if demo else 150,
        num_sample_images=16 if demo else 8, ema_decay=0.99 if demo else 0.9995, lr_schedule=_constant_lr(1e-3))
    return config
