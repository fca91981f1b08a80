"""Stage 2: train DiT^DH / LightningDiT by flow matching on frozen-RAE latents (REFERENCE §6).

  python -m rae_xla.main --config=configs/ditdh_xl.py --workdir=gs://bucket/runs/ditdh_xl

Reads top to bottom as the algorithm: data -> frozen RAE encoder -> model sharded by the runtime -> AdamW and
the LR schedule -> EMA -> resume from the newest complete checkpoint -> one compiled step -> the loop (logging
through step closures, sample grids, checkpoints, SIGTERM). Differences from the official trainer, on
purpose: the EMA has its own forward (official previews used live weights), gradient accumulation keeps every
micro-batch's gradient (official: only the last one), LR/EMA/data position resume exactly.
"""
from __future__ import annotations

import contextlib
import dataclasses
import threading
from typing import Any

import torch
from absl import logging
from etils import epath

from rae_xla import config as config_lib
from rae_xla import data, flow, metrics
from rae_xla.checkpoint.manager import CheckpointManager
from rae_xla.models import flops
from rae_xla.models.rae import RAE
from rae_xla.train import build
from rae_xla.train import ema as ema_lib
from rae_xla.train import optimizer as optimizer_lib
from rae_xla.train import previews, schedules
from rae_xla.train.preemption import PreemptionWatcher
from rae_xla.train.stage2_step import StepSettings, host_draws, make_train_step, zero_sums


def run(config, workdir: str, runtime) -> None:
    """Trains until `config.train` says stop (or SIGTERM); every process runs this together."""
    t = config.train

    # --- Data -----------------------------------------------------------------------------------------------------
    num_images = len(data.open_source(config.data))
    steps_per_epoch = num_images // t.global_batch_size
    if steps_per_epoch == 0:
        raise config_lib.ConfigError(f"the dataset has {num_images} images, fewer than one global batch "
                                     f"({t.global_batch_size}); lower train.global_batch_size")
    total_steps = t.max_steps if t.max_steps > 0 else round(t.epochs * steps_per_epoch)

    # --- Frozen RAE encoder, model, EMA, optimizer, LR schedule, the compiled step ----------------------------
    training = build_training(config, runtime, steps_per_epoch)

    # --- Resume (model, EMA, optimizer; the schedule and data position follow from the step) -------------------
    checkpoints = CheckpointManager(str(epath.Path(workdir) / "checkpoints"), runtime, keep=t.keep_checkpoints)
    meta = checkpoints.restore_latest(training.state)
    start_step = meta["step"] if meta else 0
    if meta and t.init_from:
        logging.info("Resuming from step %d; train.init_from=%s is only used for a fresh run.", start_step,
                     t.init_from)

    # --- The loop -------------------------------------------------------------------------------------------------
    _Loop(config=config, workdir=workdir, runtime=runtime, training=training, checkpoints=checkpoints,
          steps_per_epoch=steps_per_epoch, total_steps=total_steps).run(start_step)


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
    alpha = config.flow.shift if config.flow.shift is not None else flow.time_shift_alpha(
        latent_shape, config.flow.shift_base)
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
    step_fn = runtime.compile_step(make_train_step(
        model=model, params=params, ema_pairs=ema_lib.paired_parameters(ema_model, runtime.unwrap(model)),
        encode=rae.encode, optimizer=optimizer, autocast=lambda: runtime.autocast(config.runtime.precision),
        no_sync=_no_sync(model), settings=settings), name="stage2_step", max_graphs=2)
    try:
        lr_at = schedules.make_schedule(t.lr_schedule, steps_per_epoch)
    except ValueError as e:
        raise config_lib.ConfigError(f"train.lr_schedule: {e}") from e
    return Training(rae=rae, model=model, ema_model=ema_model, optimizer=optimizer, lr_at=lr_at, step_fn=step_fn,
                    settings=settings, flops_per_image=flops_per_image)


# ---------------------------------------------------------------------------------------------------------------
# Building blocks of the setup.


def training_flops_per_image(config, rae: RAE) -> int:
    """Model forward + backward (3x forward, XLA_NOTES §3) plus one encoder forward, per image."""
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
# The loop: batches in, step, then logging / previews / checkpoints at their intervals.


@dataclasses.dataclass
class _Loop:
    config: Any
    workdir: str
    runtime: Any
    training: Training
    checkpoints: CheckpointManager
    steps_per_epoch: int
    total_steps: int

    @property
    def settings(self) -> StepSettings:
        return self.training.settings

    def run(self, start_step: int) -> None:
        t, runtime = self.config.train, self.runtime
        self.writer = metrics.create_default_writer(self.workdir, is_main=runtime.is_main, resume_step=start_step)
        self.progress = metrics.ReportProgress(total_steps=self.total_steps, every_steps=t.log_every,
                                               images_per_step=t.global_batch_size, num_devices=runtime.num_devices)
        self.progress(start_step)
        self.lock = threading.Lock()  # Step closures may run on another thread (XLA run_async).
        self.nonfinite_window: tuple[int, int] | None = None
        self.replaced = 0
        self.peak = metrics.peak_bf16_flops(runtime.device_kind)
        self.preview_inputs = {k: v.to(runtime.device) for k, v in previews.preview_inputs(  # Replicated.
            self.config.seed, t.num_sample_images, self.settings.latent_shape, self.config.model.num_classes).items()}
        batches = runtime.device_batches(self._host_batches(start_step))
        watcher = PreemptionWatcher()
        sums = zero_sums(runtime.device)
        step = start_step
        logging.info("Training steps %d -> %d (%d steps/epoch, global batch %d, %d devices, mesh %s).",
                     start_step, self.total_steps, self.steps_per_epoch, t.global_batch_size, runtime.num_devices,
                     runtime.mesh_shape)
        try:
            while step < self.total_steps:
                batch = next(batches)
                for group in self.training.optimizer.param_groups:
                    group["lr"] = self.training.lr_at(step)  # A host float: no recompile under XLA.
                if not self.settings.host_rng:
                    runtime.seed(self.config.seed * 1_000_003 + step)  # Randomness is a function of the step.
                sums = self.training.step_fn(batch, sums)
                step += 1
                if step % t.log_every == 0 or step == self.total_steps:
                    self._log(step, sums, window=(step - 1) // t.log_every * t.log_every)
                    sums = dict(zero_sums(runtime.device), nonfinite=sums["nonfinite"])
                self._raise_if_nonfinite()
                stop = runtime.any_process(watcher.requested)
                if step % t.checkpoint_every == 0 or step == self.total_steps or stop:
                    self._save(step, sums)
                if t.sample_every and (step % t.sample_every == 0 or step == self.total_steps):
                    self._preview(step)
                if stop:
                    logging.warning("Stopped by SIGTERM after step %d (checkpoint saved).", step)
                    return
            runtime.wait()
            self._raise_if_nonfinite()
        finally:
            watcher.close()
            self.writer.close()

    def _host_batches(self, start_step: int):
        """This process's slice of each global batch (+ host random draws in rng='host' mode)."""
        runtime, t = self.runtime, self.config.train
        rows_per_process = runtime.per_process_batch(t.global_batch_size)
        rows = slice(runtime.process_index * rows_per_process, (runtime.process_index + 1) * rows_per_process)
        loader = data.make_train_loader(self.config.data, global_batch_size=t.global_batch_size,
                                        process_index=runtime.process_index, process_count=runtime.process_count,
                                        seed=self.config.seed, start_step=start_step)
        for batch in loader:
            self.replaced += int(batch["num_replaced"])
            out = {"image": batch["image"], "label": batch["label"]}
            if self.settings.host_rng:
                out.update(host_draws(self.config.seed, batch["step"], t.global_batch_size,
                                      self.settings.latent_shape, rows, self.settings.label_dropout))
            yield out

    def _log(self, step: int, sums: dict, window: int) -> None:
        """Queues a metrics line for `step`; the values are read after the step ran (no stall on XLA)."""
        report = self.progress(step)
        steps_in_window = step - window
        host = {"lr": self.training.lr_at(step - 1), "data_replaced_images": float(self.replaced),
                **self.runtime.compile_stats_scalars()}
        if report:
            host.update(report.scalars())
            mfu = metrics.mfu(self.training.flops_per_image, report.images_per_sec_per_device, self.peak)
            if mfu is not None:
                host["mfu"] = mfu
            logging.info("%s", report.line())

        def write(values: dict[str, float]) -> None:
            scalars = {"loss": values["loss_sum"] / steps_in_window,
                       "grad_norm": values["grad_norm_sum"] / steps_in_window, **host}
            with self.lock:
                if values["nonfinite"] > 0 and self.nonfinite_window is None:
                    self.nonfinite_window = (window, step)
                self.writer.write_scalars(step, scalars)

        self.runtime.read_on_host(sums, write)

    def _raise_if_nonfinite(self) -> None:
        with self.lock:
            window = self.nonfinite_window
        if window is not None:
            last = self.checkpoints.latest_step()
            kept = f"the last checkpoint (step {last}) is from before it" if last else "no checkpoint was written"
            raise FloatingPointError(
                f"the training loss became NaN/inf between steps {window[0]} and {window[1]}; nothing after that "
                f"was saved and {kept}. Lower the learning rate or check the data, then rerun: training "
                f"resumes from the last checkpoint.")

    def _save(self, step: int, sums: dict) -> None:
        nonfinite = float(sums["nonfinite"].cpu())  # sync point: once per checkpoint, never a bad state saved.
        if nonfinite > 0:
            with self.lock:
                self.nonfinite_window = self.nonfinite_window or (self.checkpoints.latest_step() or 0, step)
            self._raise_if_nonfinite()
        self.writer.flush()
        meta = dict(epoch=step / self.steps_per_epoch, backend=self.runtime.kind, mesh=self.runtime.mesh_shape,
                    config=self.config.to_dict())
        self.checkpoints.save(step, self.training.state, meta=meta)

    def _preview(self, step: int) -> None:
        images = previews.sample_images(self.runtime, self.training.ema_model, self.training.rae.decode,
                                        self.preview_inputs, sample_cfg=self.config.sample,
                                        alpha=self.settings.alpha,
                                        num_classes=self.config.model.num_classes)
        if self.runtime.is_main:
            previews.save_grid(images, epath.Path(self.workdir) / "samples" / f"step_{step:08d}.png")
            self.writer.write_images(step, {"samples": images})
