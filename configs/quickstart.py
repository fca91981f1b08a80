"""The whole stage-2 pipeline on an embedded default: minutes on a laptop CPU, no downloads.

  make quickstart
  # = python -m rae_xla.main --config=configs/quickstart.py --workdir=runs/quickstart
  PJRT_DEVICE=CPU CPU_NUM_DEVICES=4 python -m rae_xla.main --config=configs/quickstart.py \
      --workdir=runs/quickstart_xla --config.runtime.backend=xla      # the SPMD path on 4 virtual devices

What runs: a synthetic 10-class dataset of coloured shapes (built once into ~/.cache/rae_xla/tfds through the
same ArrayRecord builder and reader as ImageNet), a tiny DINOv2-with-registers encoder with RANDOM weights
('random-tiny', 64 channels, 56-px input -> 4x4 latents), a tiny ViT decoder (configs/decoder/tiny, untrained:
the decoder trainer is a later job), and a tiny DiT^DH trained by flow matching. Writes metrics.jsonl,
TensorBoard events, checkpoints/ and samples/*.png (sampled latents through the untrained decoder: noise-like
pictures are expected; the loss curve is the thing to look at). Expected: the loss falls from ~1.5 (first 20
steps) to ~0.5 (last 20), ~1 minute on 2 CPU cores after the one-time dataset build.
"""
import ml_collections

from rae_xla import config as config_lib


def get_config(arg=None):
    a = config_lib.parse_arg(arg, steps=300, batch=16)
    config = ml_collections.ConfigDict()
    config.job = "train_stage2"
    config.seed = 0
    config.runtime = config_lib.runtime_block()
    config.data = config_lib.data_block(source="synthetic", name="rae_synthetic", image_size=64, num_workers=2,
                                        synthetic_num_classes=10, synthetic_num_images=1000)
    config.rae = config_lib.rae_block(encoder="dinov2", encoder_path="random-tiny", encoder_input_size=56,
                                      decoder_config="configs/decoder/tiny/config.json", decoder_patch_size=16)
    config.model = config_lib.model_block("DiTDH-S", input_size=4, in_channels=64, hidden_size=[64, 128],
                                          depth=[2, 1], num_heads=[4, 4], num_classes=10)
    # 64x4x4 latents would give alpha = sqrt(1024/4096) = 0.5 < 1, which the official code forbids: no shift.
    config.flow = config_lib.flow_block(shift=1.0)
    config.sample = config_lib.sample_block(num_steps=20)
    config.train = config_lib.train_block(
        global_batch_size=a.batch, max_steps=a.steps, epochs=0.0, log_every=20, checkpoint_every=100,
        keep_checkpoints=2, sample_every=150, num_sample_images=8,
        lr_schedule=dict(type="constant", base_lr=1e-3, final_lr=1e-3, warmup_epochs=0.0, decay_end_epoch=0.0,
                         warmup_from_zero=False, unit="step"))
    return config
