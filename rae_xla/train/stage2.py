"""Stage 2: train DiT^DH / LightningDiT by flow matching on frozen-RAE latents (docs/reference.md §6).

  python -m rae_xla.main --config=configs/ditdh_xl.py --workdir=gs://bucket/runs/ditdh_xl

Reads top to bottom as the algorithm: data -> frozen RAE encoder -> model sharded by the runtime -> AdamW and
the LR schedule -> EMA -> resume from the newest complete checkpoint -> one compiled step -> the loop (logging
through step closures, sample grids, checkpoints, SIGTERM). Differences from the official trainer, on
purpose: the EMA has its own forward (official previews used live weights), gradient accumulation keeps every
micro-batch's gradient (official: only the last one), LR/EMA/data position resume exactly.
"""
from __future__ import annotations

import contextlib
import functools
import dataclasses
from typing import Any

import torch

from rae_xla import config as config_lib
from rae_xla import flow
from rae_xla.eval import in_training
from rae_xla.models import flops
from rae_xla.models.rae import RAE
from rae_xla import build
from rae_xla.train import ema as ema_lib
from rae_xla.train import loop, previews, schedules
from rae_xla.train import optimizer as optimizer_lib
from rae_xla.train import step_state
from rae_xla.train.stage2_step import StepSettings, host_draws, make_train_step, zero_sums


def run(config, workdir: str, runtime) -> bool:
    """Trains until `config.train` says stop (or SIGTERM: returns True); every process runs this together."""
    t = config.train
    steps_per_epoch, total_steps = loop.run_length(config)

    # --- Frozen RAE encoder, model, EMA, optimizer, LR schedule, the compiled step ----------------------------
    training = build_training(config, runtime, steps_per_epoch)

    # --- Resume (model, EMA, optimizer; the schedule and data position follow from the step) -------------------
    checkpoints = loop.open_checkpoints(workdir, runtime, keep=t.keep_checkpoints,
                                        **loop.checkpoint_options(t))
    start_step = loop.resume(checkpoints, training.state, init_from=t.init_from)

    # --- The loop (shared with every trainer: rae_xla/train/loop.py) ------------------------------------------
    return loop.TrainLoop(config=config, workdir=workdir, runtime=runtime, task=_Stage2Task(config, runtime, training),
                   checkpoints=checkpoints, steps_per_epoch=steps_per_epoch, total_steps=total_steps).run(start_step)


@dataclasses.dataclass
class Training:
    """Everything the loop (or a benchmark) needs, placed on the runtime's devices."""
    rae: RAE
    model: torch.nn.Module  # What the step calls (possibly a DDP/FSDP wrapper).
    ema_model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    lr_at: Any  # step -> learning rate (a host float).
    step_fn: Any  # step_fn(batch, sums) -> sums, compiled by the runtime.
    settings: StepSettings
    flops_per_image: int

    @property
    def state(self) -> dict:
        """What a checkpoint holds."""
        return {"model": self.model, "ema": self.ema_model, "optim": (self.model, self.optimizer)}


def build_training(config, runtime, steps_per_epoch: int, *, encoder_stand_in=None) -> Training:
    """Frozen RAE, stage-2 model + EMA sharded by the runtime, AdamW, LR schedule and the compiled step.

    encoder_stand_in: replaces the RAE (an nn.Module with `latent_shape` and `encode`; benchmarks feed
      latents directly to time the model alone); the FLOP count then covers the model only.
    """
    t = config.train
    torch.manual_seed(config.seed)  # Same initial weights on every process.
    # The frozen RAE encoder runs inside the step; a latent/model mismatch fails here, before any compile.
    rae = encoder_stand_in if encoder_stand_in is not None else build.build_rae(config.rae)
    latent_shape = tuple(rae.latent_shape)
    build.check_model_matches_latents(config.model, latent_shape)
    alpha = build.shift_alpha(config.flow, latent_shape)
    flops_per_image = (training_flops_per_image(config, rae) if encoder_stand_in is None else
                       3 * flops.stage2_forward_flops(config.model.arch, **build.model_kwargs(config.model)))
    rae = runtime.place_frozen(rae.eval())

    module = build.build_model(config.model, init_from=t.init_from, train_fixed_embeddings=t.train_fixed_embeddings)
    ema_module = ema_lib.init_ema(module)
    model = runtime.shard_model(module)
    ema_model = runtime.place_frozen(ema_module, like_trainable=True)
    params = [p for p in runtime.unwrap(model).parameters() if p.requires_grad]
    o = t.optimizer
    # XLA: torch.optim.AdamW's kernels and state layout as a few multi-tensor calls (it cuts the host time that
    # torch's per-tensor XLA path costs, issue 10). torch backends keep torch's own (foreach/DTensor-aware) path.
    adamw = optimizer_lib.ForeachAdamW if runtime.kind == "xla" else torch.optim.AdamW
    optimizer = adamw(params, lr=t.lr_schedule.base_lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)

    settings = StepSettings(
        latent_shape=latent_shape, alpha=float(alpha), time_dist=config.flow.time_dist, mu=config.flow.mu,
        sigma=config.flow.sigma, null_label=config.model.num_classes,
        label_dropout=config.model.class_dropout_prob, grad_accum_steps=t.grad_accum_steps,
        clip_grad=t.clip_grad, ema_decay=t.ema_decay, precision=config.runtime.precision,
        host_rng=config.runtime.rng == "host")
    prepare = optimizer_lib.prepare_hooks(runtime, (optimizer,))  # XLA: AdamW's per-step numbers on the device.
    step_fn = runtime.compile_step(make_train_step(
        model=model, params=params, ema_pairs=ema_lib.paired_parameters(ema_model, runtime.unwrap(model)),
        encode=rae.encode, optimizer=optimizer, autocast=lambda: runtime.autocast(config.runtime.precision),
        no_sync=_no_sync(model), settings=settings), name="stage2_step", max_graphs=2,
        state=functools.partial(step_state.step_state, (runtime.unwrap(model), ema_model, rae), (optimizer,)),
        prepare=prepare)
    try:
        lr_at = schedules.make_schedule(t.lr_schedule, steps_per_epoch)
    except ValueError as e:
        raise config_lib.ConfigError(f"train.lr_schedule: {e}") from e
    return Training(rae=rae, model=model, ema_model=ema_model, optimizer=optimizer, lr_at=lr_at, step_fn=step_fn,
                    settings=settings, flops_per_image=flops_per_image)


# ---------------------------------------------------------------------------------------------------------------
# Building blocks of the setup.


def training_flops_per_image(config, rae: RAE) -> int:
    """Model forward + backward (3x forward, docs/xla_notes.md §3) plus one encoder forward, per image."""
    model = 3 * flops.stage2_forward_flops(config.model.arch, **build.model_kwargs(config.model))
    if config.rae.encoder != "dinov2":
        return model  # The encoder counts are only tabulated for DINOv2; MFU then slightly under-reports.
    hf = rae.encoder.hf_model.config
    return model + flops.dinov2_forward_flops(
        input_size=config.rae.encoder_input_size, hidden_size=hf.hidden_size, num_layers=hf.num_hidden_layers,
        mlp_ratio=hf.mlp_ratio, patch_size=hf.patch_size, num_register_tokens=hf.num_register_tokens)


def _no_sync(model: torch.nn.Module):
    """no_sync(last) -> context: DDP skips the gradient all-reduce on all but the last micro-batch."""
    def no_sync(last: bool):
        if last or not hasattr(model, "no_sync"):
            return contextlib.nullcontext()
        return model.no_sync()
    return no_sync


# ---------------------------------------------------------------------------------------------------------------
# What the shared loop calls: host inputs, the step, metrics, sample grids.


class _Stage2Task:
    """Stage 2 as a `loop.Task`."""

    def __init__(self, config, runtime, training: Training):
        self.config, self.runtime, self.training = config, runtime, training
        self.settings = training.settings
        self.state = training.state
        self.flops_per_image = training.flops_per_image
        self.preview_inputs = {k: v.to(runtime.device) for k, v in previews.preview_inputs(  # Replicated.
            config.seed, config.train.num_sample_images, self.settings.latent_shape,
            config.model.num_classes).items()}
        self.generation_eval = in_training.GenerationEval(
            config, runtime, latent_shape=self.settings.latent_shape, alpha=self.settings.alpha,
            decode=training.rae.decode) if config.train.eval_every else None

    def zero_sums(self) -> dict:
        return zero_sums(self.runtime.device)

    def host_batch(self, batch: dict, rows: slice) -> dict:
        """Images and labels (+ the step's host random draws in rng='host' mode)."""
        out = {"image": batch["image"], "label": batch["label"]}
        if self.settings.host_rng:
            out.update(host_draws(self.config.seed, batch["step"], self.config.train.global_batch_size,
                                  self.settings.latent_shape, rows, self.settings.label_dropout))
        return out

    def train_step(self, step: int, batch: dict, sums: dict) -> dict:
        loop.set_lr(self.training.optimizer, self.training.lr_at(step))
        if not self.settings.host_rng:
            self.runtime.seed(self.config.seed * 1_000_003 + step)  # Randomness is a function of the step.
        return self.training.step_fn(batch, sums)

    def scalars(self, values: dict[str, float], steps: int) -> dict[str, float]:
        return {"loss": values["loss_sum"] / steps, "grad_norm": values["grad_norm_sum"] / steps}

    def host_scalars(self, step: int) -> dict[str, float]:
        return {"lr": self.training.lr_at(step - 1)}

    def preview(self, step: int) -> dict:
        del step
        return {"samples": previews.sample_images(
            self.runtime, self.training.ema_model, self.training.rae.decode, self.preview_inputs,
            sample_cfg=self.config.sample, alpha=self.settings.alpha, num_classes=self.config.model.num_classes)}

    def evaluate(self, step: int) -> dict:
        """FID-N of the EMA model against train.eval_reference (rae_xla/eval/in_training.py)."""
        del step
        return self.generation_eval(self.training.ema_model) if self.generation_eval else {}
