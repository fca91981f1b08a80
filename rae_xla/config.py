"""Shared config blocks, argument parsing for `--config=file.py:arg`, and `validate(config)`.

Every experiment is one file in `configs/` whose `get_config(arg)` assembles these blocks and spells out
every field (the trainers never fall back to hidden defaults). `validate` runs before anything heavy and turns
each mistake into one `ConfigError` that names the field and the fix.
"""
from __future__ import annotations

import difflib
import json
import os
from typing import Any, Iterable

import ml_collections
from ml_collections import config_dict

from rae_xla.config_jobs import (eval_block, sampling_block, stage1_block, stats_block,  # noqa: F401 (re-exported)
                                wandb_block)
from rae_xla.errors import ConfigError  # noqa: F401 (re-exported: config_lib.ConfigError)
from rae_xla.runtime.mesh import MESH_AXES, resolve_mesh, resolve_slice_mesh  # noqa: F401 (re-exported)

# Job name -> module with `run(config, workdir, runtime)`. A literal dict a reader can grep (STYLE rule 11).
JOBS = {
    "info": "rae_xla.info",
    "train_stage2": "rae_xla.train.stage2",
    "sample": "rae_xla.sampling.sample_job",
    "sample_fid": "rae_xla.sampling.fid_job",
    "reconstruct": "rae_xla.sampling.recon_job",
    "stats": "rae_xla.eval.latent_stats",
    "evaluate": "rae_xla.eval.evaluate",
    "reference_stats": "rae_xla.eval.reference",
    "train_stage1": "rae_xla.train.stage1",
    "quickstart": "rae_xla.quickstart",
}
BACKENDS = ("auto", "xla", "cuda", "cpu")


# ---------------------------------------------------------------------------------------------------------------
# Argument parsing: `--config=configs/x.py:res=512,runlocal` -> typed options.


def parse_arg(arg: str | None, **spec: Any) -> ml_collections.ConfigDict:
    """Parses the string after ':' in `--config=file.py:ARG` into the typed fields of `spec`.

    `ARG` is a comma-separated list of `key=value`; a bare `key` means True. Values are converted to the type of
    the default in `spec` (bool accepts true/false/1/0). Unknown keys are an error listing the valid ones.
    Example: `parse_arg('res=512,runlocal', res=256, runlocal=False)` -> {res: 512, runlocal: True}.
    """
    out = ml_collections.ConfigDict(dict(spec))
    if not arg:
        return out
    for item in arg.split(","):
        key, has_value, raw = item.partition("=")
        key = key.strip()
        if key not in spec:
            raise ConfigError(f"unknown config argument {key!r} in ':{arg}'; valid arguments: {sorted(spec)}")
        default = spec[key]
        if not has_value:
            if not isinstance(default, bool):
                raise ConfigError(f"config argument {key!r} needs a value, e.g. ':{key}={default}'")
            out[key] = True
        elif isinstance(default, bool):
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ConfigError(f"config argument {key}={raw!r} must be true or false")
            out[key] = raw.lower() in ("true", "1")
        else:
            try:
                out[key] = type(default)(raw)
            except ValueError as e:
                raise ConfigError(f"config argument {key}={raw!r} must be a {type(default).__name__}") from e
    return out


# ---------------------------------------------------------------------------------------------------------------
# Shared blocks. Each returns a ConfigDict with every field present; config files change what differs.


def runtime_block(**overrides: Any) -> ml_collections.ConfigDict:
    """Backend, mesh and sharding (XLA_NOTES.md §5)."""
    block = dict(
        backend="auto",  # auto: TPU (libtpu or PJRT_DEVICE set) -> xla; CUDA -> cuda; else cpu.
        # Mesh ('data', 'fsdp'): -1 takes the remaining devices. On a pod slice keep data=1 (all chips on the fast
        # ICI axis 'fsdp'); with several slices, data = number of slices (the slow DCN axis).
        # Several slices (multi-slice over DCN): data and fsdp are the mesh inside ONE slice (ICI) and dcn_data
        # slices stack along 'data' (-1 = the slice count of the job), so the global mesh is
        # (dcn_data * data, fsdp) and only the gradient all-reduce crosses DCN. One slice: dcn_data is 1.
        mesh=dict(data=1, fsdp=-1, dcn_data=-1),
        # 'fsdp': every >=2-D weight has its largest dimension divisible by the fsdp size sharded on 'fsdp'
        # (params + grads + AdamW state ~20 B/param shrink by the fsdp size); 'replicate': plain data parallel.
        # On CUDA: 'fsdp' -> FSDP2 (fully_shard), 'replicate' -> DDP.
        param_sharding="fsdp",
        # ((name regex, partition spec), ...) tried first, e.g. ((r'blocks\.\d+\.attn\.qkv\.weight', ('fsdp', None)),).
        sharding_rules=(),
        # Modules whose outputs are pinned to the batch sharding, so XLA never re-lays activations out
        # (without it: 'Involuntary full rematerialization' warnings, XLA_NOTES §6.1).
        activation_sharding=r"^blocks\.\d+$",
        precision="fp32",  # fp32 | bf16 (autocast for the forward; master weights and optimizer state stay fp32).
        # 'device': random draws (noise, times, label drop) on the accelerator, seeded per step; 'host': drawn on
        # the CPU from (seed, step) and copied over — bitwise identical across backends (tests), slower.
        rng="device",
        strict=False,  # XLA: a recompile after warm-up or a host sync inside the step raises.
        # XLA: after a lazy first call, trace the stage-2 training step until two traces agree, then replay its
        # compiled graph without running its Python (the host cost per step drops from a full trace to a
        # launch, ~44x on DiT^DH-XL's graph; runtime/xla_capture.py, issue 10). False: trace every call.
        capture_step=True,
        torch_compile=False,  # cuda/cpu: wrap the step in torch.compile.
        # XLA on TPU: persistent compilation cache, a LOCAL dir on each host (a shared one still compiles per host,
        # pytorch/xla#7196); 'auto' = ~/.cache/rae_xla/xla_cache on TPU, off elsewhere (CPU cannot reload
        # entries, XLA_NOTES §6.1); '' = off. A restart after preemption on the same VM reuses it.
        compile_cache_dir="auto",
        # LIBTPU_INIT_ARGS added before torch_xla starts: 'auto' = collective/compute overlap flags for the TPU
        # generation (runtime/tpu_env.py), 'none', or the flags verbatim. Flags already in $LIBTPU_INIT_ARGS win.
        libtpu_flags="auto",
        # The frozen encoder's parameters: 'fsdp' (sharded like the model) or 'replicate' (no all-gathers in
        # its forward; DINOv2-B is 86M params, 0.35 GB in fp32).
        encoder_sharding="fsdp",
        remat=False,  # Recompute each block (activation_sharding's modules) in the backward: less HBM, ~1/3 more FLOPs.
        # (first_step, end_step): trace steps first_step..end_step-1 into <workdir>/profile (XLA profiler on TPU,
        # torch.profiler on CUDA/CPU); () = off.
        profile_steps=(),
        # Steps between the host collectives that agree on a SIGTERM (a spot VM gives ~30 s; a DiT^DH-XL step
        # is < 1 s, so 10 steps cost little grace time while keeping per-step host syncs off the hot loop).
        preemption_check_every=10,
    )
    block.update(overrides)
    return ml_collections.ConfigDict(block)


def data_block(**overrides: Any) -> ml_collections.ConfigDict:
    """Where images come from (rae_xla/data). `source`: synthetic | tfds | folder."""
    block = dict(
        source="synthetic",
        name="rae_synthetic",  # tfds dataset name (e.g. 'imagenet2012'); for 'synthetic' the name it is built as.
        data_dir=os.path.join("~", ".cache", "rae_xla", "tfds"),  # tfds data_dir (local or gs://) / folder root.
        split="train",
        image_size=256,
        random_flip=True,
        num_workers=4,
        prefetch_factor=2,
        synthetic_num_classes=10,
        synthetic_num_images=1000,
        crop="center",  # center (ADM, stage 2) | random (stage 1: resize shorter side to 1.5 S or 384, random crop)
    )
    block.update(overrides)
    return ml_collections.ConfigDict(block)


def rae_block(**overrides: Any) -> ml_collections.ConfigDict:
    """The frozen encoder + decoder + latent statistics (REFERENCE §1)."""
    block = dict(
        # A released RAE by name (rae_xla/released.py: dinov2-b, dinov2-b-512, siglip2-b, mae-b, ...): sets the
        # encoder, decoder and stats fields below, which must then stay at their defaults. '' = the fields below.
        name="",
        released_root="hf://nyu-visionx/RAE-collections",  # where `name` finds its files: hf://, gs:// or local.
        encoder="dinov2",  # dinov2 | siglip2 | mae
        encoder_path="facebook/dinov2-with-registers-base",  # local dir, gs:// or hf:// dir, hub id, 'random-tiny'.
        encoder_input_size=224,  # 224 for DINOv2-B at 256 px (16x16 latents), 448 at 512 px.
        decoder_config="ViT-XL",  # preset ViT-B|ViT-L|ViT-XL or a released config.json path.
        decoder_weights="",  # released model.pt (local, gs:// or hf://); '' = random init.
        decoder_patch_size=16,
        stats="",  # released stat.pt (local, gs:// or hf://); '' = no latent normalisation.
        noise_tau=0.0,  # 0 for stage 2 and inference; 0.8 for decoder training.
        # The frozen encoder (resize included) runs in fp32 even under bf16 autocast, as the official trainer;
        # 'bf16' runs it under bf16 autocast (faster, latents differ at ~1e-2).
        encoder_precision="fp32",
    )
    block.update(overrides)
    return ml_collections.ConfigDict(block)


# Where the released artefacts (HF repo nyu-visionx/RAE-collections) and ImageNet live. Users replace the
# placeholder bucket on the command line; validate() refuses to start while it is still there.
PLACEHOLDER = "YOUR_BUCKET"


def released_rae_block(res: int, models_dir: str = "hf://nyu-visionx/RAE-collections") -> ml_collections.ConfigDict:
    """The released DINOv2-B (registers) RAE: ViT-XL decoder trained with tau=0.8, ImageNet latent statistics.

    res 256: 224-px encoder input -> 768x16x16 latents; res 512: 448-px -> 768x32x32 (REFERENCE §8.2).
    `models_dir` mirrors the HF repo layout (decoders/..., stats/...): hf:// (default), gs:// or local.
    The fields are written out (not `name=`) so that config.json shows every file a run used.
    """
    from rae_xla import released
    if res not in (256, 512):
        raise ConfigError(f"res={res}: the released RAE exists for 256 and 512 px")
    spec = released.rae("dinov2-b" if res == 256 else "dinov2-b-512")
    return rae_block(
        encoder=spec.encoder, encoder_path=spec.encoder_path, encoder_input_size=spec.encoder_input_size,
        decoder_config=spec.decoder_config, decoder_weights=released.path(spec.decoder_weights, models_dir),
        stats=released.path(spec.stats, models_dir), released_root=models_dir, noise_tau=0.0)


def imagenet_data_block(data_dir: str = f"gs://{PLACEHOLDER}/tfds", **overrides: Any) -> ml_collections.ConfigDict:
    """ImageNet-1k prepared once as TFDS ArrayRecord (README: 'Preparing ImageNet'), read without TensorFlow."""
    block = dict(source="tfds", name="imagenet2012", data_dir=data_dir, split="train", image_size=256,
                 random_flip=True, num_workers=16, prefetch_factor=2)
    block.update(overrides)
    return data_block(**block)


def flow_block(**overrides: Any) -> ml_collections.ConfigDict:
    """Flow-matching time distribution (REFERENCE §4.3)."""
    block = dict(
        time_dist="logit_normal",  # logit_normal | uniform
        mu=0.0,
        sigma=1.0,
        shift_base=4096,  # alpha = sqrt(C*H*W / shift_base): sqrt(48) = 6.93 for 768x16x16.
        shift=config_dict.placeholder(float),  # set to override alpha.
    )
    block.update(overrides)
    return ml_collections.ConfigDict(block)


def guidance_block(**overrides: Any) -> ml_collections.ConfigDict:
    """CFG with an interval, or autoguidance with a weaker model (REFERENCE §3.3, §4.6)."""
    block = dict(
        method="none",  # none | cfg | autoguidance
        scale=1.0,
        t_min=0.0,
        t_max=1.0,
        # Autoguidance (sampling jobs; training previews refuse it): the weaker model's preset and its weights
        # (a stage2_model.pt, local / gs:// / hf://, or a training workdir).
        model_preset="DiTDH-S",
        model_weights="",
    )
    block.update(overrides)
    return ml_collections.ConfigDict(block)


def sample_block(**overrides: Any) -> ml_collections.ConfigDict:
    """How samples are drawn (training previews and sampling jobs)."""
    block = dict(
        method="euler",  # euler | heun | midpoint | sde | dopri5 (adaptive, eager backends only)
        num_steps=50,  # grid points as in the released configs: 50 -> 49 steps.
        guidance=guidance_block(),
    )
    block.update(overrides)
    return ml_collections.ConfigDict(block)


def model_block(preset: str, **overrides: Any) -> ml_collections.ConfigDict:
    """A stage-2 model: `arch` plus every official keyword argument, from a preset (rae_xla/models/presets.py).

    e.g. model_block('DiTDH-XL') or model_block('DiTDH-XL', input_size=32) for 512 px.
    """
    from rae_xla.models import stage2_preset  # Deferred: keeps `import rae_xla.config` light.
    spec = stage2_preset(preset, **overrides)
    return ml_collections.ConfigDict({k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()})


def train_block(**overrides: Any) -> ml_collections.ConfigDict:
    """Stage-2 optimisation, the paper's DiT^DH recipe (REFERENCE §6.1, §8.2) unless overridden."""
    block = dict(
        global_batch_size=1024,
        grad_accum_steps=1,  # k micro-batches of global_batch_size / k; the gradient is the mean over all k.
        epochs=1400.0,  # The released config; the paper reports 80 and 800 epochs of this schedule.
        max_steps=0,  # > 0: stop after this many optimizer steps instead of `epochs`.
        optimizer=dict(betas=(0.9, 0.95), weight_decay=0.0, eps=1e-8),
        # Official 'linear': base LR held for 40 epochs (warmup_from_zero=False), then linear to 2e-5 at epoch 800.
        lr_schedule=dict(type="linear", base_lr=2e-4, final_lr=2e-5, warmup_epochs=40.0, decay_end_epoch=800.0,
                         warmup_from_zero=False, unit="epoch"),
        clip_grad=1.0,  # <= 0: no clipping (the norm is still logged).
        ema_decay=0.9995,  # Half-life ~1386 steps.
        log_every=100,
        checkpoint_every=5000,
        keep_checkpoints=3,
        sample_every=10000,  # 0: no preview grids.
        num_sample_images=8,
        # In-training evaluation (rae_xla/eval/in_training.py) every eval_every steps (0 = off), logged as eval/*:
        # stage 2: FID of eval_num_images EMA samples (balanced labels) against eval_reference (an ADM npz, e.g.
        # VIRTUAL_imagenet256_labeled.npz); stage 1: rFID / PSNR / SSIM of EMA reconstructions of the first
        # eval_num_images images of data split eval_split.
        eval_every=0,
        eval_num_images=10000,
        eval_batch_size=256,  # Global batch of the evaluation (a multiple of the device count).
        eval_reference="",
        eval_split="validation",
        eval_inception_weights="",  # '' = torch-fidelity's download/cache.
        init_from="",  # A released stage2_model.pt (local or gs://) to warm-start from.
        # pos_embed and t_embedder.W: frozen as in the XLA trainer behind the released checkpoints; True = the
        # official main-branch trainer, which unfreezes them.
        train_fixed_embeddings=False,
        # A damaged newest checkpoint (failed size/checksum check): 'fallback' resumes from the newest intact one
        # with a loud warning, so an unattended pod job does not crash-loop; 'fail' stops with one clear line.
        on_damaged_checkpoint="fallback",
        # Saves stage the state in host memory (the blocking part) and write it in a background thread while
        # training continues; False writes in the step loop. SIGTERM and the end of a run wait for the write.
        checkpoint_async=True,
        checkpoint_write_threads=4,  # Files written in parallel per process (DCP writer threads).
        wandb=wandb_block(),
    )
    block.update(overrides)
    return ml_collections.ConfigDict(block)


# ---------------------------------------------------------------------------------------------------------------
# Validation.


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def _one_of(value: Any, choices: Iterable[Any], field: str) -> None:
    choices = tuple(choices)
    if value not in choices:
        near = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ConfigError(f"{field}={value!r} is not one of {list(choices)}{hint}")


def validate(config: ml_collections.ConfigDict, *, num_devices: int | None = None,
             process_count: int = 1) -> None:
    """Checks `config` before anything heavy runs; raises ConfigError naming the first problem.

    Args:
      config: the experiment config (any job).
      num_devices: devices in the mesh (XLA) or processes (torchrun); None skips the device-count checks.
      process_count: hosts (XLA) / ranks; the global batch is split across them.
    """
    _one_of(config.job, JOBS, "job")
    for key in all_keys(config):
        value = config[key] if "." not in key else _get(config, key)
        if isinstance(value, str) and PLACEHOLDER in value:
            raise ConfigError(f"{key}={value!r} still names the placeholder bucket; point it at your copy, e.g. "
                              f"--{_flag(key)}=gs://my-bucket/... (README: 'Data and released checkpoints')")
    _require(config.runtime.backend != "tpu", "runtime.backend='tpu': TPUs run through torch_xla, use 'xla' (or 'auto')")
    _one_of(config.runtime.backend, BACKENDS, "runtime.backend")
    _one_of(config.runtime.param_sharding, ("fsdp", "replicate"), "runtime.param_sharding")
    _one_of(config.runtime.precision, ("fp32", "bf16"), "runtime.precision")
    _one_of(config.runtime.rng, ("device", "host"), "runtime.rng")
    _one_of(config.runtime.encoder_sharding, ("fsdp", "replicate"), "runtime.encoder_sharding")
    profile = tuple(config.runtime.profile_steps)
    _require(not profile or (len(profile) == 2 and 0 <= profile[0] < profile[1]),
             f"runtime.profile_steps={profile} must be () or (first_step, end_step) with first_step < end_step, "
             f"e.g. --config.runtime.profile_steps='(100, 103)'")
    _require(config.runtime.preemption_check_every >= 1,
             f"runtime.preemption_check_every={config.runtime.preemption_check_every} must be >= 1")
    if "rae" in config:
        _one_of(config.rae.encoder_precision, ("fp32", "bf16"), "rae.encoder_precision")
    for rule in config.runtime.sharding_rules:
        _require(len(rule) == 2 and isinstance(rule[0], str),
                 f"runtime.sharding_rules entry {rule!r} must be (name_regex, partition_spec_tuple)")
    mesh = resolve_mesh(config.runtime.mesh, num_devices) if num_devices else None
    if "train" in config:
        batch = config.train.global_batch_size
        accum = config.train.grad_accum_steps
        _require(batch >= 1 and accum >= 1, "train.global_batch_size and train.grad_accum_steps must be >= 1")
        _require(batch % accum == 0,
                 f"train.global_batch_size={batch} is not divisible by train.grad_accum_steps={accum}")
        t = config.train
        _one_of(t.lr_schedule.type, ("constant", "linear", "cosine"), "train.lr_schedule.type")
        _one_of(t.lr_schedule.unit, ("epoch", "step"), "train.lr_schedule.unit")
        for field in ("log_every", "checkpoint_every", "keep_checkpoints", "num_sample_images"):
            _require(t[field] >= 1, f"train.{field}={t[field]} must be >= 1")
        _one_of(t.on_damaged_checkpoint, ("fallback", "fail"), "train.on_damaged_checkpoint")
        _require(t.checkpoint_write_threads >= 1,
                 f"train.checkpoint_write_threads={t.checkpoint_write_threads} must be >= 1")
        _require(t.sample_every >= 0, f"train.sample_every={t.sample_every} must be >= 0 (0 = no previews)")
        _require(t.eval_every >= 0, f"train.eval_every={t.eval_every} must be >= 0 (0 = no in-training evaluation)")
        if t.eval_every:
            _require(t.eval_num_images >= 2, "train.eval_num_images must be >= 2 (FID needs a covariance)")
            _check_eval_batch(t.eval_batch_size, "train.eval_batch_size", mesh, process_count)
            _require(config.job != "train_stage2" or bool(t.eval_reference),
                     "train.eval_every > 0 needs train.eval_reference (an ADM reference npz, e.g. "
                     "VIRTUAL_imagenet256_labeled.npz)")
        _require(t.max_steps > 0 or t.epochs > 0, "set train.epochs > 0 or train.max_steps > 0")
        _require(0.0 <= t.ema_decay <= 1.0, f"train.ema_decay={t.ema_decay} must be in [0, 1]")
        if "wandb" in t:
            _one_of(t.wandb.mode, ("online", "offline", "disabled"), "train.wandb.mode")
        _require(not t.init_from or _is_remote(t.init_from) or os.path.exists(os.path.expanduser(t.init_from)),
                 f"train.init_from={t.init_from!r} does not exist; give a local, gs:// or hf:// stage2_model.pt, or ''")
        micro = batch // accum
        shards = process_count if mesh is None else max(process_count, mesh["data"] * mesh["fsdp"])
        _require(micro % shards == 0,
                 f"the micro-batch {micro} (train.global_batch_size / grad_accum_steps) is not divisible by the "
                 f"{shards} batch shards (mesh data x fsdp, or processes); pick a multiple of {shards}")
    if "stage1" in config:
        g = config.stage1
        _one_of(g.start_unit, ("epoch", "step"), "stage1.start_unit")
        _one_of(g.disc_loss, ("hinge", "vanilla"), "stage1.disc_loss")
        _one_of(g.gen_loss, ("vanilla",), "stage1.gen_loss")
        _require(g.lpips_start >= 0, f"stage1.lpips_start={g.lpips_start} must be >= 0")
        _require(g.disc_start >= g.disc_upd_start, f"stage1.disc_start={g.disc_start} must be >= "
                 f"stage1.disc_upd_start={g.disc_upd_start} (the GAN loss needs a discriminator that is trained)")
        _require(g.perceptual_weight >= 0 and g.disc_weight >= 0, "stage1.perceptual_weight and disc_weight must be >= 0")
        _require(not config.rae.stats, "stage 1 trains on unnormalised latents: set --config.rae.stats='' (compute "
                 "the statistics afterwards with the stats job)")
    if "model" in config:
        _one_of(config.model.arch, ("ditdh", "lightningdit"), "model.arch")
    if "flow" in config:
        _one_of(config.flow.time_dist, ("logit_normal", "uniform"), "flow.time_dist")
        _require(config.flow.sigma > 0, f"flow.sigma={config.flow.sigma} must be > 0")
    if "sample" in config:
        _one_of(config.sample.method, ("euler", "heun", "midpoint", "sde", "dopri5"), "sample.method")
        _require(config.sample.num_steps >= 2, "sample.num_steps counts grid points and must be >= 2")
        g = config.sample.guidance
        _one_of(g.method, ("none", "cfg", "autoguidance"), "sample.guidance.method")
        _require(0.0 <= g.t_min < g.t_max <= 1.0,
                 f"sample.guidance needs 0 <= t_min < t_max <= 1, got [{g.t_min}, {g.t_max}]")
        # Training previews have one model; autoguidance needs a second, weaker one that no preview config names.
        _require(g.method != "autoguidance" or "train" not in config or config.train.sample_every == 0,
                 "sample.guidance.method='autoguidance' cannot be used for training previews: they sample the EMA "
                 "model alone and autoguidance needs a second (weak) model. Set --config.sample.guidance.method=cfg "
                 "(or none) for training, or --config.train.sample_every=0; sample with autoguidance in a sampling job")
    if "sampling" in config:
        s = config.sampling
        _one_of(s.labels, ("equal", "random", "official"), "sampling.labels")
        _require(s.num_samples >= (0 if config.job == "reconstruct" else 1),
                 f"sampling.num_samples={s.num_samples} must be >= 1 (reconstruct: 0 = the whole split)")
        _require(s.global_batch_size >= 1 and s.log_every >= 1, "sampling.global_batch_size and log_every must be >= 1")
        shards = process_count if mesh is None else max(process_count, mesh["data"] * mesh["fsdp"])
        _require(config.job == "sample" or s.global_batch_size % shards == 0,
                 f"sampling.global_batch_size={s.global_batch_size} is not divisible by the {shards} batch shards "
                 f"(devices or processes); pick a multiple of {shards}")
        for field, path in (("sampling.checkpoint", s.checkpoint),
                            ("sample.guidance.model_weights", config.sample.guidance.model_weights if "sample" in config else "")):
            _require(not path.endswith(".pt") or _is_remote(path) or os.path.exists(os.path.expanduser(path)),
                     f"{field}={path!r} does not exist; give a local, gs:// or hf:// stage2_model.pt or a training "
                     f"workdir")
        if "sample" in config and config.sample.guidance.method == "autoguidance" and config.sample.guidance.scale > 1:
            _require(bool(config.sample.guidance.model_weights),
                     "autoguidance needs sample.guidance.model_weights (the weak model's stage2_model.pt or workdir)")
    if "rae" in config:
        _one_of(config.rae.encoder, ("dinov2", "siglip2", "mae"), "rae.encoder")
        _check_released_rae_name(config.rae)
        for field in ("decoder_weights", "stats"):
            path = config.rae[field]
            _require(not path or _is_remote(path) or os.path.exists(os.path.expanduser(path)),
                     f"rae.{field}={path!r} does not exist; give a local, gs:// or hf:// path, or '' for none")
    if "stats" in config:
        _one_of(config.stats.estimator, ("exact", "official_ema"), "stats.estimator")
        _one_of(config.stats.sum_dtype, ("float64", "float32"), "stats.sum_dtype")
        _require(config.stats.log_every >= 1, "stats.log_every must be >= 1")
        _check_eval_batch(config.stats.global_batch_size, "stats.global_batch_size", mesh, process_count)
    if "eval" in config:
        _one_of(config.eval.mode, ("generation", "reconstruction"), "eval.mode")
        _check_eval_batch(config.eval.global_batch_size, "eval.global_batch_size", mesh, process_count)
        for field in ("inception_weights", "lpips_vgg_weights"):
            path = config.eval[field]
            _require(not path or _is_remote(path) or os.path.exists(os.path.expanduser(path)),
                     f"eval.{field}={path!r} does not exist; give a local, gs:// or hf:// file, or ''")
    if "data" in config:
        from rae_xla import data  # Deferred: tfds imports take ~2 s.
        try:
            data.validate_data_config(config.data)
        except ValueError as e:
            raise ConfigError(str(e)) from e


def _check_eval_batch(batch: int, field: str, mesh, process_count: int) -> None:
    shards = process_count if mesh is None else max(process_count, mesh["data"] * mesh["fsdp"])
    _require(batch >= 1 and batch % shards == 0,
             f"{field}={batch} must be a positive multiple of the {shards} batch shards (devices or processes)")


# ---------------------------------------------------------------------------------------------------------------
# Unknown overrides, and writing the resolved config.


def _is_remote(path: str) -> bool:
    """gs:// and hf:// paths are checked when loaded (a malformed hf:// URL is an error now)."""
    if path.startswith("hf://"):
        from rae_xla import hub
        try:
            hub.parse(path)
        except ValueError as e:
            raise ConfigError(str(e)) from e
        return True
    return path.startswith("gs://")


def _check_released_rae_name(rae: ml_collections.ConfigDict) -> None:
    """rae.name sets the encoder/decoder/stats fields; a field also set by hand to something else is a conflict."""
    if not rae.name:
        return
    from rae_xla import released
    _one_of(rae.name, released.RAES, "rae.name")
    spec, defaults = released.rae(rae.name), rae_block()
    named = dict(encoder=spec.encoder, encoder_path=spec.encoder_path, encoder_input_size=spec.encoder_input_size,
                 decoder_config=spec.decoder_config, decoder_patch_size=spec.decoder_patch_size,
                 decoder_weights=released.path(spec.decoder_weights, rae.released_root),
                 stats=released.path(spec.stats, rae.released_root))
    for field, value in named.items():
        _require(rae[field] in (defaults[field], value),
                 f"rae.name={rae.name!r} sets rae.{field}={value!r}, but rae.{field}={rae[field]!r} was given too; "
                 f"drop one of them")


def _get(config: ml_collections.ConfigDict, dotted: str) -> Any:
    node = config
    for part in dotted.split("."):
        node = node[part]
    return node


def _flag(dotted: str) -> str:
    return f"config.{dotted}"


def all_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    """Every dotted key of `config` (leaves and blocks), e.g. ['train', 'train.global_batch_size', ...]."""
    keys = []
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        keys.append(dotted)
        if isinstance(value, ml_collections.ConfigDict):
            keys.extend(all_keys(value, dotted + "."))
    return keys


def unknown_key_message(config: ml_collections.ConfigDict, dotted: str) -> str | None:
    """For `--config.<dotted>=...`: None if the key exists, else an error naming its nearest valid neighbours."""
    node: Any = config
    parts = dotted.split(".")
    for depth, part in enumerate(parts):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            prefix = ".".join(parts[:depth])
            siblings = list(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
            near = difflib.get_close_matches(part, siblings, n=3, cutoff=0.5)
            near_full = difflib.get_close_matches(dotted, all_keys(config), n=3, cutoff=0.6)
            suggestions = [f"{prefix}.{n}" if prefix else n for n in near] or near_full
            where = f"config.{prefix}" if prefix else "the config"
            msg = f"unknown config key 'config.{dotted}': {where} has no field {part!r}."
            if suggestions:
                msg += " Nearest valid keys: " + ", ".join(f"config.{s}" for s in suggestions) + "."
            return msg
        node = node[part]
    return None


def to_json(config: ml_collections.ConfigDict) -> str:
    """The resolved config as indented JSON (tuples become lists)."""
    return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str)
