"""`config.rae`: the frozen encoder, the decoder and the latent statistics (docs/reference.md §1): the block, the
released DINOv2-B RAE, its ranges, its checks."""
from __future__ import annotations

from typing import Any

import ml_collections

from rae_xla.config.checks import Placement, check_path, one_of, require
from rae_xla.config.ranges import COUNT, NON_NEGATIVE
from rae_xla.errors import ConfigError
from rae_xla.models.encoders import KINDS as ENCODERS
from rae_xla.runtime.base import PRECISIONS


def rae_block(**overrides: Any) -> ml_collections.ConfigDict:
    """The frozen encoder + decoder + latent statistics (docs/reference.md §1)."""
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


def released_rae_block(res: int, models_dir: str = "hf://nyu-visionx/RAE-collections") -> ml_collections.ConfigDict:
    """The released DINOv2-B (registers) RAE: ViT-XL decoder trained with tau=0.8, ImageNet latent statistics.

    res 256: 224-px encoder input -> 768x16x16 latents; res 512: 448-px -> 768x32x32 (docs/reference.md §8.2).
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


RANGES = {
    "encoder_input_size": COUNT,  # A multiple of the encoder's patch size, checked when the encoder is built.
    "decoder_patch_size": COUNT,
    "noise_tau": NON_NEGATIVE,  # The std of the noise added to latents in decoder training; 0 = none.
}


def validate_rae(config: ml_collections.ConfigDict, placement: Placement) -> None:
    """The encoder kind and precision, a released name that agrees with the fields, and the weight files."""
    rae = config.rae
    one_of(rae.encoder_precision, PRECISIONS, "rae.encoder_precision")
    one_of(rae.encoder, ENCODERS, "rae.encoder")
    check_released_rae_name(rae)
    for field in ("decoder_weights", "stats"):
        check_path(f"rae.{field}", rae[field], "path, or '' for none")


def check_released_rae_name(rae: ml_collections.ConfigDict) -> None:
    """rae.name sets the encoder/decoder/stats fields; a field also set by hand to something else is a conflict."""
    if not rae.name:
        return
    from rae_xla import released
    one_of(rae.name, released.RAES, "rae.name")
    spec, defaults = released.rae(rae.name), rae_block()
    named = dict(encoder=spec.encoder, encoder_path=spec.encoder_path, encoder_input_size=spec.encoder_input_size,
                 decoder_config=spec.decoder_config, decoder_patch_size=spec.decoder_patch_size,
                 decoder_weights=released.path(spec.decoder_weights, rae.released_root),
                 stats=released.path(spec.stats, rae.released_root))
    for field, value in named.items():
        require(rae[field] in (defaults[field], value),
                f"rae.name={rae.name!r} sets rae.{field}={value!r}, but rae.{field}={rae[field]!r} was given too; "
                f"drop one of them")
