"""FID sampling (and sample grids) from the released DiT^DH-XL, with the guidance of the paper (docs/reference.md §10).

  # 50,000 samples, DiT^DH-XL 256 px + autoguidance by DiT^DH-S (epoch 14), scale 1.42, 50-point Euler:
  python -m rae_xla.main --config=configs/sample_fid.py --workdir=gs://my-bucket/fid/ditdh_xl_256_ag
  -> <workdir>/samples.npz (arr_0 uint8 50000x256x256x3, arr_1 labels), resumable after preemption.
  Files (rae_xla/released.py: ditdh-xl-256 / ditdh-s-256-ep14 / dinov2-b) come from `models=` (default
  hf://nyu-visionx/RAE-collections, read through the HF cache; a gs:// or local copy of the repo works the same),
  or set each path: --config.sampling.checkpoint=... --config.sample.guidance.model_weights=...
  --config.rae.decoder_weights=... --config.rae.stats=...

Arguments (`:a=b,...`): res=256|512; guidance=autoguidance|none|cfg; job=sample_fid|sample (a grid of
sampling.class_labels instead); models=gs://.../RAE-collections (all paths of the HF repo layout under it, so one
override moves all four: `--config=configs/sample_fid.py:models=gs://my-bucket/RAE-collections`).
Paper targets (50k, ADM evaluator): 256 px with autoguidance FID 1.13 (IS 262.6, precision 0.78, recall 0.67);
without guidance FID 1.51 (800 epochs). 512 px: autoguidance by DiT^DH-S epoch 20 at scale 1.5; the XL model is
DiTDH-XL_ep400. `guidance=cfg` uses scale 1.5 on [0, 1] as a starting point (no released setting).
Cost: 49 steps x ~308 GFLOP (DiT^DH-XL forward, 256 px) + the weak model per image.
"""
import ml_collections

from rae_xla import config as config_lib
from rae_xla import released

# res -> (main model, weak model) names in rae_xla/released.py (docs/reference.md §10).
RELEASED = {256: ("ditdh-xl-256", "ditdh-s-256-ep14"), 512: ("ditdh-xl-512", "ditdh-s-512-ep20")}


def get_config(arg=None):
    a = config_lib.parse_arg(arg, res=256, guidance="autoguidance", job="sample_fid",
                             models="hf://nyu-visionx/RAE-collections")
    if a.res not in RELEASED:
        raise config_lib.ConfigError(f"res={a.res}: released models exist for {sorted(RELEASED)}")
    main, weak = released.stage2(RELEASED[a.res][0]), released.stage2(RELEASED[a.res][1])
    config = ml_collections.ConfigDict()
    config.job = a.job
    config.seed = 0  # The official --global-seed default.
    config.runtime = config_lib.runtime_block(precision="fp32")  # As the paper's GPU sampling (bf16 is an option).
    config.rae = config_lib.released_rae_block(a.res, models_dir=a.models)
    config.model = config_lib.model_block(main.preset, input_size=main.input_size)
    config.flow = config_lib.flow_block()
    guidance = {"none": config_lib.guidance_block(),
                "autoguidance": config_lib.guidance_block(
                    method="autoguidance", scale=main.guidance_scale, t_min=main.guidance_interval[0],
                    t_max=main.guidance_interval[1], model_preset=weak.preset,
                    model_weights=released.path(weak.weights, a.models)),
                "cfg": config_lib.guidance_block(method="cfg", scale=1.5, t_min=0.0, t_max=1.0)}
    if a.guidance not in guidance:
        raise config_lib.ConfigError(f"guidance={a.guidance!r} is not one of {sorted(guidance)}")
    config.sample = config_lib.sample_block(method=main.sampling_method, num_steps=main.sampling_steps,
                                            guidance=guidance[a.guidance])
    if a.guidance == "autoguidance":  # The weak model's architecture, written out (sampling/models.py reads it).
        config.guidance_model = config_lib.model_block(weak.preset, input_size=weak.input_size)
    config.sampling = config_lib.sampling_block(checkpoint=released.path(main.weights, a.models),
                                                num_samples=50000, global_batch_size=256, labels="equal")
    return config
