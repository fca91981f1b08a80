"""The training loop every trainer shares: batches in, one step, then metrics / previews / checkpoints.

A job describes itself as a `Task` (its checkpoint state, its step, how its metric sums become scalars, its
preview images); `TrainLoop` owns what is the same for every job:
  - the length of the run (`run_length`) and resume from the newest complete checkpoint (`open_checkpoints`,
    `resume`);
  - the data loader slice of this process (with the count of replaced undecodable images);
  - metrics: the task's device sums are read after the step ran through `runtime.read_on_host` (a step
    closure on XLA: no stall), plus progress (images/s/device, ETA), MFU and compile statistics;
  - the NaN stop: a non-finite loss raises FloatingPointError naming the window, never saves a bad state;
  - SIGTERM: finish the step, checkpoint (waiting for an asynchronous save to complete), exit 0;
  - agreement between hosts: every `runtime.preemption_check_every` steps and at log steps, ONE host collective
    (gloo, no device sync) sums [SIGTERM seen, NaN seen, replaced images] over processes, so all hosts stop at
    the same step (none exits while the others wait in a collective) and per-host counters are logged as totals;
  - `runtime.profile_steps`: a profiler trace of those steps in `workdir/profile/host_<i>/`;
  - previews: `task.preview(step)` images saved as `workdir/<name>/step_XXXXXXXX.png` and sent to the writer.
Stage 1, stage 2 and the sampling/statistics jobs use these pieces; nothing here knows about a model.
"""
from __future__ import annotations

import threading
from typing import Iterator, Protocol

import numpy as np
import torch
from absl import logging
from etils import epath

from rae_xla import config as config_lib
from rae_xla import data, metrics
from rae_xla.checkpoint.manager import CheckpointManager
from rae_xla.metrics import grids
from rae_xla.train.preemption import PreemptionWatcher


class Task(Protocol):
    """What a job gives `TrainLoop`.

    state: what a checkpoint holds ({'name': module or (module, optimizer)}).
    flops_per_image: training FLOPs per image (forward + backward), for MFU.
    """
    state: dict
    flops_per_image: float

    def zero_sums(self) -> dict[str, torch.Tensor]:
        """Fresh device metric sums; must hold 'nonfinite' (count of steps with a non-finite loss)."""

    def host_batch(self, batch: dict, rows: slice) -> dict:
        """The step's host inputs from one loader batch ({'image', 'label', 'step', ...}); `rows` is this
        process's slice of the global batch (for host random draws)."""

    def train_step(self, step: int, batch: dict, sums: dict) -> dict:
        """Runs step `step` (0-based) on a device batch: sets LRs, picks the graph, returns the new sums."""

    def scalars(self, values: dict[str, float], steps: int) -> dict[str, float]:
        """Metric scalars from the host values of the sums accumulated over `steps` steps."""

    def host_scalars(self, step: int) -> dict[str, float]:
        """Scalars known on the host after `step` steps (learning rates, phase)."""

    def preview(self, step: int) -> dict[str, np.ndarray]:
        """{name: uint8 (N, H, W, 3)} on the host, every `train.sample_every` steps ({} for none)."""

    def evaluate(self, step: int) -> dict[str, float]:
        """Evaluation scalars (e.g. {'eval/fid_10k': ...}) every `train.eval_every` steps (rae_xla/eval/in_training)."""


def run_length(config) -> tuple[int, int]:
    """(steps per epoch, total steps) from the dataset size and `config.train` (max_steps or epochs)."""
    t = config.train
    num_images = len(data.open_source(config.data))
    steps_per_epoch = num_images // t.global_batch_size
    if steps_per_epoch == 0:
        raise config_lib.ConfigError(f"the dataset has {num_images} images, fewer than one global batch "
                                     f"({t.global_batch_size}); lower train.global_batch_size")
    total_steps = t.max_steps if t.max_steps > 0 else round(t.epochs * steps_per_epoch)
    return steps_per_epoch, total_steps


def open_checkpoints(workdir: str, runtime, keep: int, **options) -> CheckpointManager:
    """options: `checkpoint_options(config.train)` (damaged-checkpoint policy, async save, writer threads)."""
    return CheckpointManager(str(epath.Path(workdir) / "checkpoints"), runtime, keep=keep, **options)


def checkpoint_options(train_cfg) -> dict:
    """CheckpointManager keyword arguments from the train block's checkpoint fields (config.train_block)."""
    return dict(on_damaged=train_cfg.on_damaged_checkpoint, async_save=train_cfg.checkpoint_async,
                write_threads=train_cfg.checkpoint_write_threads)


def resume(checkpoints: CheckpointManager, state: dict, *, init_from: str = "") -> int:
    """Restores the newest complete checkpoint into `state` in place; returns the step to start from (0: fresh)."""
    meta = checkpoints.restore_latest(state)
    start_step = meta["step"] if meta else 0
    if meta and init_from:
        logging.info("Resuming from step %d; init_from=%s is only used for a fresh run.", start_step, init_from)
    return start_step


class TrainLoop:
    """Runs `task` from `start_step` to `total_steps`; every process runs it together."""

    def __init__(self, *, config, workdir: str, runtime, task: Task, checkpoints: CheckpointManager,
                 steps_per_epoch: int, total_steps: int):
        self.config, self.workdir, self.runtime, self.task = config, workdir, runtime, task
        self.checkpoints, self.steps_per_epoch, self.total_steps = checkpoints, steps_per_epoch, total_steps

    def run(self, start_step: int) -> bool:
        """Returns True when SIGTERM stopped the run (a checkpoint was saved), False when it finished."""
        t, runtime = self.config.train, self.runtime
        self.writer = metrics.create_default_writer(self.workdir, is_main=runtime.is_main, resume_step=start_step,
                                                    wandb=t.get("wandb"), config=self.config)
        self.progress = metrics.ReportProgress(total_steps=self.total_steps, every_steps=t.log_every,
                                               images_per_step=t.global_batch_size, num_devices=runtime.num_devices)
        self.progress(start_step)
        self.lock = threading.Lock()  # Step closures may run on another thread (XLA run_async).
        self.nonfinite_window: tuple[int, int] | None = None
        self.replaced = 0
        self.peak = metrics.peak_bf16_flops(runtime.device_kind)
        self.replaced_total = 0
        batches = runtime.device_batches(self._host_batches(start_step))
        watcher = PreemptionWatcher()
        sums = self.task.zero_sums()
        step = start_step
        check_every = self.config.runtime.preemption_check_every
        profile = tuple(self.config.runtime.profile_steps)
        logging.info("Training steps %d -> %d (%d steps/epoch, global batch %d, %d devices, mesh %s).",
                     start_step, self.total_steps, self.steps_per_epoch, t.global_batch_size, runtime.num_devices,
                     runtime.mesh_shape)
        try:
            while step < self.total_steps:
                if profile and step == profile[0]:
                    runtime.start_trace(str(epath.Path(self.workdir) / "profile" / f"host_{runtime.process_index}"))
                sums = self.task.train_step(step, next(batches), sums)
                step += 1
                if runtime.process_count == 1:  # A failed background save stops the run now (a host check);
                    self.checkpoints.raise_if_failed()  # several hosts agree on it in _agree, in lockstep.
                if profile and step == min(profile[1], self.total_steps) and runtime.trace_active:
                    logging.info("Profile of steps %d..%d written to %s.", profile[0], step - 1, runtime.stop_trace())
                log_now = step % t.log_every == 0 or step == self.total_steps
                stop = False
                if log_now or step % check_every == 0:
                    stop = self._agree(watcher.requested, step)
                if log_now:
                    self._log(step, sums, window=(step - 1) // t.log_every * t.log_every)
                    sums = dict(self.task.zero_sums(), nonfinite=sums["nonfinite"])
                if step % t.checkpoint_every == 0 or step == self.total_steps or stop:
                    self._save(step, sums)
                if t.sample_every and (step % t.sample_every == 0 or step == self.total_steps):
                    self._preview(step)
                if t.eval_every and (step % t.eval_every == 0 or step == self.total_steps):
                    self._evaluate(step)
                if stop:
                    logging.warning("Stopped by SIGTERM after step %d (checkpoint saved).", step)
                    return True
            runtime.wait()
            self._raise_if_nonfinite()
            return False
        finally:
            if runtime.trace_active:
                runtime.stop_trace()
            self.checkpoints.close()  # A save in flight (async) completes before exit, SIGTERM included.
            watcher.close()
            self.writer.close()

    def _agree(self, sigterm: bool, step: int) -> bool:
        """One host collective: True if any process got SIGTERM; raises on every process if any saw a NaN or a
        failed background checkpoint save; updates the all-host total of replaced images. A host sees a NaN when its step closure has run, which
        may be steps apart between hosts: raising only on the agreed sum keeps them in lockstep."""
        with self.lock:
            nonfinite_here = self.nonfinite_window is not None
        sigterms, nonfinites, self.replaced_total, failed_saves = self.runtime.sum_over_processes(
            [int(sigterm), int(nonfinite_here), self.replaced, int(self.checkpoints.save_failed())])
        if failed_saves:  # Every host's save fails together (DCP reports a failure to all ranks): each raises it.
            self.checkpoints.wait_until_finished()
        if nonfinites:
            self.runtime.wait()  # Runs this host's pending step closures, which record the window.
            with self.lock:
                self.nonfinite_window = self.nonfinite_window or (self.checkpoints.latest_step() or 0, step)
            self._raise_if_nonfinite()
        return sigterms > 0

    def _host_batches(self, start_step: int) -> Iterator[dict]:
        """This process's slice of each global batch, turned into step inputs by the task."""
        runtime, t = self.runtime, self.config.train
        rows_per_process = runtime.per_process_batch(t.global_batch_size)
        rows = slice(runtime.process_index * rows_per_process, (runtime.process_index + 1) * rows_per_process)
        loader = data.make_train_loader(self.config.data, global_batch_size=t.global_batch_size,
                                        process_index=runtime.process_index, process_count=runtime.process_count,
                                        seed=self.config.seed, start_step=start_step)
        for batch in loader:
            self.replaced += int(batch["num_replaced"])
            yield self.task.host_batch(batch, rows)

    def _log(self, step: int, sums: dict, window: int) -> None:
        """Queues a metrics line for `step`; the values are read after the step ran (no stall on XLA)."""
        report = self.progress(step)
        steps_in_window = step - window
        # Summed over hosts by `_agree`, which runs at every log step before this.
        host = {**self.task.host_scalars(step), "data_replaced_images": float(self.replaced_total),
                **self.runtime.compile_stats_scalars()}
        if report:
            host.update(report.scalars())
            mfu = metrics.mfu(self.task.flops_per_image, report.images_per_sec_per_device, self.peak)
            if mfu is not None:
                host["mfu"] = mfu
            logging.info("%s", report.line())

        def write(values: dict[str, float]) -> None:
            scalars = {**self.task.scalars(values, steps_in_window), **host}
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
        self.checkpoints.save(step, self.task.state, meta=meta)

    def _preview(self, step: int) -> None:
        previews = self.task.preview(step)
        if self.runtime.is_main and previews:
            for name, images in previews.items():
                grids.save_grid(images, epath.Path(self.workdir) / name / f"step_{step:08d}.png")
            self.writer.write_images(step, previews)

    def _evaluate(self, step: int) -> None:
        scalars = self.task.evaluate(step)  # Every process runs it (the work is sharded); process 0 writes.
        if self.runtime.is_main and scalars:
            logging.info("eval at step %d: %s", step, ", ".join(f"{k} {v:.4f}" for k, v in scalars.items()))
            self.writer.write_scalars(step, scalars)


def zero_scalars(names, device: torch.device) -> dict[str, torch.Tensor]:
    """Fresh running metric sums `names` on `device`.

    Made on the host and copied over, so on XLA they are device data like the step's outputs: a lazy
    `torch.zeros(device=xla)` would be traced into the next step as a constant and compile a second graph.
    """
    return {k: torch.zeros(()).to(device) for k in names}


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Sets every group's LR to a host float (under XLA a changing float is a graph input: no recompile)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
