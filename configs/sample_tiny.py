"""The sampling jobs on tiny random-weight models (the tests' and benchmarks' config; CPU seconds): the quickstart's
test size (configs/quickstart.py:size=fast: random-tiny encoder at 56 px -> 4x4x64 latents, the untrained tiny
decoder, a tiny DiT^DH and a tinier autoguidance model). To sample from what `make quickstart` trained, use
configs/sample_quickstart.py instead.
  python -m rae_xla.main --config=configs/quickstart.py --workdir=runs/quickstart_stage2   # part=stage2, size=fast
  python -m rae_xla.main --config=configs/sample_tiny.py:job=sample --workdir=runs/tiny_sample \
      --config.sampling.checkpoint=runs/quickstart_stage2   # samples/samples.png + .npz from the newest EMA
  python -m rae_xla.main --config=configs/sample_tiny.py --workdir=runs/tiny_fid \
      --config.sampling.checkpoint=runs/quickstart_stage2   # 1000 samples -> runs/tiny_fid/samples.npz
  python -m rae_xla.main --config=configs/sample_tiny.py:job=reconstruct --workdir=runs/tiny_recon
Arguments: job=sample_fid|sample|reconstruct, num=N, batch=B, guidance=none|cfg|autoguidance (autoguidance
takes `sample.guidance.model_weights`: a checkpoint of the `guidance_model` architecture).
The decoder is untrained, so the pictures are noise-like.
"""
import ml_collections

from rae_xla import config as config_lib


def get_config(arg=None):
    a = config_lib.parse_arg(arg, job="sample_fid", num=1000, batch=16, guidance="none")
    config = ml_collections.ConfigDict()
    config.job = a.job
    config.seed = 0
    config.runtime = config_lib.runtime_block()
    config.data = config_lib.data_block(source="synthetic", name="rae_synthetic", image_size=64, num_workers=0,
                                        split="train", random_flip=False, synthetic_num_classes=10,
                                        synthetic_num_images=1000)
    config.rae = config_lib.rae_block(encoder="dinov2", encoder_path="random-tiny", encoder_input_size=56,
                                      decoder_config="configs/decoder/tiny/config.json", decoder_patch_size=16)
    config.model = config_lib.model_block("DiTDH-S", input_size=4, in_channels=64, hidden_size=[64, 128],
                                          depth=[2, 1], num_heads=[4, 4], num_classes=10)
    config.guidance_model = config_lib.model_block("DiTDH-S", input_size=4, in_channels=64, hidden_size=[32, 64],
                                                   depth=[1, 1], num_heads=[2, 2], num_classes=10)
    config.flow = config_lib.flow_block(shift=1.0)  # As configs/quickstart.py (alpha would be < 1).
    guidance = config_lib.guidance_block(method=a.guidance, scale=1.0 if a.guidance == "none" else 1.5)
    config.sample = config_lib.sample_block(method="euler", num_steps=10, guidance=guidance)
    config.sampling = config_lib.sampling_block(num_samples=a.num, global_batch_size=a.batch, labels="equal",
                                                class_labels=(0, 1, 2, 3, 4, 5, 6, 7), log_every=5)
    return config
