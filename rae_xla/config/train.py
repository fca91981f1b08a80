"""`config.train`: stage-2 optimisation, checkpoints, previews and in-training evaluation (docs/reference.md §6.1,
§8.2), plus its W&B sub-block: the blocks, their ranges, their checks.

The LR schedule vocabulary (SCHEDULE_TYPES, SCHEDULE_UNITS, LR_SCHEDULE_RANGES) is declared here, below the
trainers: rae_xla/train/schedules.py implements exactly these types, and stage 1's discriminator schedule reuses it.
"""
from __future__ import annotations

from typing import Any

import ml_collections

from rae_xla.config.checks import Placement, check_path, one_of, require
from rae_xla.config.ranges import COUNT, NON_NEGATIVE, POSITIVE, PROBABILITY, ANY_NUMBER, at_least, between, nested

SCHEDULE_TYPES = ("constant", "linear", "cosine")
SCHEDULE_UNITS = ("epoch", "step")  # What warmup_epochs and decay_end_epoch count.
WANDB_MODES = ("online", "offline", "disabled")  # wandb.init(mode=...)
LR_SCHEDULE_RANGES = {
    "base_lr": POSITIVE,  # The schedule is base_lr * factor.
    "final_lr": NON_NEGATIVE,
    "warmup_epochs": NON_NEGATIVE,
    "decay_end_epoch": NON_NEGATIVE,  # >= warmup_epochs, checked by the schedule with the steps per epoch.
}


def wandb_block(**overrides: Any) -> dict[str, Any]:
    """Weights & Biases logging (rae_xla/metrics/wandb_writer.py); off unless enabled, needs `.[wandb]`."""
    block = dict(
        enabled=False,
        project="rae_xla",
        entity="",  # '' = your default entity
        name="",  # '' = W&B picks one; a restarted run keeps its run id either way (workdir/wandb_run_id)
        tags=(),
        mode="online",  # online | offline (no network; `wandb sync` later) | disabled
    )
    block.update(overrides)
    return block


def train_block(**overrides: Any) -> ml_collections.ConfigDict:
    """Stage-2 optimisation, the paper's DiT^DH recipe (docs/reference.md §6.1, §8.2) unless overridden."""
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


RANGES = {
    "global_batch_size": COUNT,
    "grad_accum_steps": COUNT,
    "epochs": NON_NEGATIVE,  # One of epochs and max_steps must be > 0 (checked below).
    "max_steps": at_least(0, note="0 = run for train.epochs"),
    "optimizer.betas": between(0, 1, high_open=True),  # AdamW divides by 1 - beta**step.
    "optimizer.weight_decay": NON_NEGATIVE,
    "optimizer.eps": POSITIVE,
    **nested("lr_schedule", LR_SCHEDULE_RANGES),
    "clip_grad": ANY_NUMBER,  # <= 0 turns clipping off, so every value means something.
    "ema_decay": PROBABILITY,  # 1 = the EMA never moves, 0 = it is the model.
    "log_every": COUNT,
    "checkpoint_every": COUNT,
    "keep_checkpoints": COUNT,
    "sample_every": at_least(0, note="0 = no previews"),
    "num_sample_images": COUNT,
    "eval_every": at_least(0, note="0 = no in-training evaluation"),
    "eval_num_images": at_least(2, note="FID needs a covariance"),
    "eval_batch_size": COUNT,
    "checkpoint_write_threads": COUNT,
}


def validate_train(config: ml_collections.ConfigDict, placement: Placement) -> None:
    """The batch split, schedule choices, checkpoint policy, evaluation inputs and the warm-start file."""
    from rae_xla.checkpoint.manager import ON_DAMAGED  # Deferred: the checkpoint manager imports torch.distributed.
    train = config.train
    batch, accum = train.global_batch_size, train.grad_accum_steps
    require(batch % accum == 0, f"train.global_batch_size={batch} is not divisible by train.grad_accum_steps={accum}")
    one_of(train.lr_schedule.type, SCHEDULE_TYPES, "train.lr_schedule.type")
    one_of(train.lr_schedule.unit, SCHEDULE_UNITS, "train.lr_schedule.unit")
    one_of(train.on_damaged_checkpoint, ON_DAMAGED, "train.on_damaged_checkpoint")
    if train.eval_every:
        placement.check_eval_batch(train.eval_batch_size, "train.eval_batch_size")
        require(config.job != "train_stage2" or bool(train.eval_reference),
                "train.eval_every > 0 needs train.eval_reference (an ADM reference npz, e.g. "
                "VIRTUAL_imagenet256_labeled.npz)")
    require(train.max_steps > 0 or train.epochs > 0, "set train.epochs > 0 or train.max_steps > 0")
    if "wandb" in train:
        one_of(train.wandb.mode, WANDB_MODES, "train.wandb.mode")
    check_path("train.init_from", train.init_from, "stage2_model.pt, or ''")
    micro, shards = batch // accum, placement.batch_shards()
    require(micro % shards == 0,
            f"the micro-batch {micro} (train.global_batch_size / grad_accum_steps) is not divisible by the "
            f"{shards} batch shards (mesh data x fsdp, or processes); pick a multiple of {shards}")
