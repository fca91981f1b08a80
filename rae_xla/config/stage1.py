"""`config.stage1`: decoder training losses, discriminator and phases, the official main-branch recipe
(docs/reference.md §5.3-§5.7): the block, its ranges, its checks."""
from __future__ import annotations

from typing import Any

import ml_collections

from rae_xla.config.checks import Placement, one_of, require
from rae_xla.config.ranges import COUNT, NON_NEGATIVE, POSITIVE, PROBABILITY, at_least, nested
from rae_xla.config.train import LR_SCHEDULE_RANGES, SCHEDULE_TYPES, SCHEDULE_UNITS
from rae_xla.losses.gan import D_LOSSES, G_LOSSES


def stage1_block(**overrides: Any) -> ml_collections.ConfigDict:
    """Decoder training losses, discriminator and phases: the official main-branch recipe (docs/reference.md
    §5.3-§5.7).

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


RECIPE_SIZE = at_least(0, note="0 = from disc_arch.recipe")
RANGES = {
    "perceptual_weight": NON_NEGATIVE,
    "lpips_start": NON_NEGATIVE,
    "disc_weight": NON_NEGATIVE,
    "max_d_weight": POSITIVE,  # Clamp of the adaptive weight; 0 would switch the GAN loss off silently.
    "disc_upd_start": NON_NEGATIVE,
    "disc_start": NON_NEGATIVE,
    "diffaug_prob": PROBABILITY,
    "diffaug_cutout": PROBABILITY,  # The cutout's side as a fraction of the image side; 0 = no cutout.
    "disc_arch.ks": COUNT,  # kernel size of the discriminator heads
    "disc_arch.key_depths": NON_NEGATIVE,  # indices of the backbone blocks the heads read
    "disc_arch.norm_eps": POSITIVE,
    "disc_recipe.depth": RECIPE_SIZE,
    "disc_recipe.embed_dim": RECIPE_SIZE,
    "disc_recipe.num_heads": RECIPE_SIZE,
    "disc_recipe.patch_size": COUNT,
    "disc_recipe.mlp_ratio": POSITIVE,
    "disc_recipe.in_chans": COUNT,
    **nested("disc_lr_schedule", LR_SCHEDULE_RANGES),
}


def validate_stage1(config: ml_collections.ConfigDict, placement: Placement) -> None:
    """Phase units and order, the GAN losses, and unnormalised latents."""
    stage1 = config.stage1
    one_of(stage1.start_unit, SCHEDULE_UNITS, "stage1.start_unit")
    one_of(stage1.disc_loss, tuple(D_LOSSES), "stage1.disc_loss")
    one_of(stage1.gen_loss, tuple(G_LOSSES), "stage1.gen_loss")
    one_of(stage1.disc_lr_schedule.type, SCHEDULE_TYPES, "stage1.disc_lr_schedule.type")
    one_of(stage1.disc_lr_schedule.unit, SCHEDULE_UNITS, "stage1.disc_lr_schedule.unit")
    require(stage1.disc_start >= stage1.disc_upd_start,
            f"stage1.disc_start={stage1.disc_start} must be >= stage1.disc_upd_start={stage1.disc_upd_start} "
            f"(the GAN loss needs a discriminator that is trained)")
    require(not config.rae.stats, "stage 1 trains on unnormalised latents: set --config.rae.stats='' (compute "
            "the statistics afterwards with the stats job)")
