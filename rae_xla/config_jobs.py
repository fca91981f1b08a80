"""Config blocks of the jobs beyond stage-2 training: sampling, W&B logging, latent statistics, evaluation, and
stage-1 decoder training. Each returns the block with every field explicit and a comment on its meaning;
`rae_xla.config` re-exports them (configs use `config_lib.<name>_block`) and validates them.
"""
from __future__ import annotations

from typing import Any

import ml_collections


def sampling_block(**overrides: Any) -> ml_collections.ConfigDict:
    """The sampling jobs `sample`, `sample_fid`, `reconstruct` (docs/readme/sampling.md)."""
    block = dict(
        # Stage-2 weights: a stage2_model.pt (local or gs://), a training workdir (EMA of its newest checkpoint),
        # or '' = this job's workdir.
        checkpoint="",
        num_samples=50000,  # sample_fid: N; reconstruct: images of the split (0 = all).
        global_batch_size=256,  # Images per batch over all devices; a multiple of the device count.
        labels="equal",  # equal (exactly N/num_classes each) | random | official (sample_ddp.py's order)
        official_world_size=8,  # labels='official': the official run's GPUs ...
        official_batch=125,  # ... and --per-proc-batch-size.
        class_labels=(207, 360, 387, 974, 88, 979, 417, 279),  # `sample`: one image per entry.
        name="samples",  # Output file stem in the workdir.
        log_every=10,  # Batches between progress lines.
    )
    block.update(overrides)
    return ml_collections.ConfigDict(block)


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


def stats_block(**overrides: Any) -> ml_collections.ConfigDict:
    """Latent statistics (job `stats`, rae_xla/eval/latent_stats.py)."""
    block = dict(
        global_batch_size=256,  # Any multiple of the device count: the result does not depend on it.
        flips=True,  # Also encode each image's mirror (the official script draws random flips instead).
        estimator="exact",  # exact (float64 Chan merge) | official_ema (REFERENCE §7.1, for comparison only)
        sum_dtype="float64",  # Per-batch device sums; 'float32' on TPU (no native float64).
        output="",  # stat.pt path (local or gs://); '' = <workdir>/stat.pt.
        log_every=50,
    )
    block.update(overrides)
    return ml_collections.ConfigDict(block)


def eval_block(**overrides: Any) -> ml_collections.ConfigDict:
    """FID / sFID / IS / precision / recall and reconstruction metrics (jobs `evaluate`, `reference_stats`)."""
    block = dict(
        samples="",  # npz with arr_0 uint8 (N, H, W, 3): generated samples or reconstructions (local or gs://).
        # ADM reference npz (mu, sigma, mu_s, sigma_s, arr_0; e.g. VIRTUAL_imagenet256_labeled.npz) or an npz of
        # images (arr_0 only: statistics computed here).
        reference="",
        # generation: FID, sFID, IS, precision, recall. reconstruction: rFID against the reference images plus
        # PSNR, SSIM (and LPIPS) of samples[i] vs reference arr_0[i] (the same val crops in the same order).
        mode="generation",
        inception_weights="",  # torch-fidelity weights file; '' = its download (cached in $TORCH_HOME).
        global_batch_size=200,  # Inception batch over all devices (a multiple of the device count).
        precision_recall_fp16=True,  # ADM's default fp16 distances; False = fp32.
        lpips_vgg_weights="",  # torchvision vgg16-397923af.pth: adds LPIPS to reconstruction metrics.
        output="",  # eval.json path; '' = <workdir>/eval.json.
        # reference_stats job: images of the split stored as arr_0 (ADM's reference has 10,000; -1 = all, which
        # is also the image npz for rFID/PSNR/SSIM), and the output npz ('' = <workdir>/reference.npz).
        reference_images=10000,
        reference_output="",
    )
    block.update(overrides)
    return ml_collections.ConfigDict(block)


def stage1_block(**overrides: Any) -> ml_collections.ConfigDict:
    """Decoder training losses, discriminator and phases: the official main-branch recipe (REFERENCE §5.3-§5.7).

    Phase starts are in epochs (or steps with start_unit='step'); disc_start >= disc_upd_start.
    """
    block = dict(
        perceptual_weight=1.0,  # LPIPS weight; 0 = no LPIPS (the network is then not built).
        lpips_vgg_path="",  # torchvision vgg16 ImageNet weights (.pth); '' = torchvision's cache.
        lpips_random_backbone=False,  # True: a seeded random VGG16 (quickstart/tests only, no downloads).
        lpips_start=0.0,  # LPIPS joins the loss from here (official: epoch 0).
        disc_weight=0.75,
        max_d_weight=1e4,  # Clamp of the adaptive weight.
        disc_upd_start=6.0,  # Discriminator updates from here ...
        disc_start=8.0,  # ... and the GAN loss in the generator step from here.
        start_unit="epoch",  # epoch | step
        disc_loss="hinge",  # hinge | vanilla
        gen_loss="vanilla",
        diffaug_prob=1.0,
        diffaug_cutout=0.0,
        # The official gan.disc.arch; dino_ckpt_path = the released discs/dino_vit_small_patch8_224.pth or 'random'.
        disc_arch=dict(dino_ckpt_path="", ks=9, key_depths=(2, 5, 8, 11), norm_type="bn", using_spec_norm=True,
                       norm_eps=1e-6, recipe="S_8"),
        # Backbone sizes replacing disc_arch.recipe (tests, quickstart); depth 0 = use disc_arch.recipe.
        disc_recipe=dict(depth=0, embed_dim=0, num_heads=0, patch_size=8, mlp_ratio=4.0, in_chans=3),
        # The discriminator's LR schedule; it starts counting at disc_upd_start (stepped only when it updates).
        disc_lr_schedule=dict(type="cosine", base_lr=2e-4, final_lr=2e-5, warmup_epochs=1.0, decay_end_epoch=16.0,
                              warmup_from_zero=True, unit="epoch"),
    )
    block.update(overrides)
    return ml_collections.ConfigDict(block)
