"""FID sampling (and sample grids) from the released DiT^DH-XL, with the guidance of the paper (REFERENCE §10).

  # 50,000 samples, DiT^DH-XL 256 px + autoguidance by DiT^DH-S (epoch 14), scale 1.42, 50-point Euler:
  python -m rae_xla.main --config=configs/sample_fid.py --workdir=gs://my-bucket/fid/ditdh_xl_256_ag \
      --config.sampling.checkpoint=gs://my-bucket/RAE-collections/DiTs/Dinov2/wReg_base/ImageNet256/DiTDH-XL/stage2_model.pt \
      --config.sample.guidance.model_weights=gs://my-bucket/RAE-collections/DiTs/Dinov2/wReg_base/ImageNet256/DiTDH-S_ep14/stage2_model.pt \
      --config.rae.decoder_weights=gs://my-bucket/RAE-collections/decoders/dinov2/wReg_base/ViTXL_n08/model.pt \
      --config.rae.stats=gs://my-bucket/RAE-collections/stats/dinov2/wReg_base/imagenet1k/stat.pt
  -> <workdir>/samples.npz (arr_0 uint8 50000x256x256x3, arr_1 labels), resumable after preemption.

Arguments (`:a=b,...`): res=256|512; guidance=autoguidance|none|cfg; job=sample_fid|sample (a grid of
sampling.class_labels instead); models=gs://.../RAE-collections (all paths of the HF repo layout under it, so one
override replaces the four above: `--config=configs/sample_fid.py:models=/data/RAE-collections`).
Paper targets (50k, ADM evaluator): 256 px with autoguidance FID 1.13 (IS 262.6, precision 0.78, recall 0.67);
without guidance FID 1.51 (800 epochs). 512 px: autoguidance by DiT^DH-S epoch 20 at scale 1.5; the XL model is
DiTDH-XL_ep400. `guidance=cfg` uses scale 1.5 on [0, 1] as a starting point (no released setting).
Cost: 49 steps x ~308 GFLOP (DiT^DH-XL forward, 256 px) + the weak model per image.
"""
import ml_collections

from rae_xla import config as config_lib

# (main model folder, weak model folder, autoguidance scale) of the released ImageNet models (REFERENCE §10).
RELEASED = {256: ("ImageNet256/DiTDH-XL", "ImageNet256/DiTDH-S_ep14", 1.42),
            512: ("ImageNet512/DiTDH-XL_ep400", "ImageNet512/DiTDH-S_ep20", 1.5)}


def get_config(arg=None):
    a = config_lib.parse_arg(arg, res=256, guidance="autoguidance", job="sample_fid",
                             models=f"gs://{config_lib.PLACEHOLDER}/RAE-collections")
    if a.res not in RELEASED:
        raise config_lib.ConfigError(f"res={a.res}: released models exist for {sorted(RELEASED)}")
    main, weak, ag_scale = RELEASED[a.res]
    dits = f"{a.models}/DiTs/Dinov2/wReg_base"
    config = ml_collections.ConfigDict()
    config.job = a.job
    config.seed = 0  # The official --global-seed default.
    config.runtime = config_lib.runtime_block(precision="fp32")  # As the paper's GPU sampling (bf16 is an option).
    config.rae = config_lib.released_rae_block(a.res, models_dir=a.models)
    config.model = config_lib.model_block("DiTDH-XL", input_size=a.res // 16)
    config.flow = config_lib.flow_block()
    guidance = {"none": config_lib.guidance_block(),
                "autoguidance": config_lib.guidance_block(method="autoguidance", scale=ag_scale, t_min=0.0, t_max=1.0,
                                                          model_preset="DiTDH-S",
                                                          model_weights=f"{dits}/{weak}/stage2_model.pt"),
                "cfg": config_lib.guidance_block(method="cfg", scale=1.5, t_min=0.0, t_max=1.0)}
    if a.guidance not in guidance:
        raise config_lib.ConfigError(f"guidance={a.guidance!r} is not one of {sorted(guidance)}")
    config.sample = config_lib.sample_block(method="euler", num_steps=50, guidance=guidance[a.guidance])
    config.sampling = config_lib.sampling_block(checkpoint=f"{dits}/{main}/stage2_model.pt", num_samples=50000,
                                                global_batch_size=256, labels="equal")
    return config
