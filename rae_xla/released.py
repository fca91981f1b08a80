"""The released RAE artefacts by name: one literal table (docs/reference.md §8.2, §10; HF repo
nyu-visionx/RAE-collections).

    from rae_xla.models.rae import RAE
    rae = RAE.from_pretrained("dinov2-b")                 # encoder, ViT-XL decoder (tau 0.8), ImageNet stats
    spec = released.stage2("ditdh-xl-256")               # preset, weights, recommended sampling (autoguidance)

Paths are relative to a root that mirrors the repository's layout: `hf://nyu-visionx/RAE-collections` by default
(resolved through the Hugging Face cache, rae_xla/hub.py), or a local / gs:// copy of the same folders
(`root=` here, `rae.released_root` in configs). Only artefacts whose paths the official configs name are listed;
the DINOv2-S/L decoders (uploaded Feb 2026) are not, because their paths could not be checked here.
"""
from __future__ import annotations

import dataclasses

DEFAULT_ROOT = "hf://nyu-visionx/RAE-collections"


@dataclasses.dataclass(frozen=True)
class ReleasedRAE:
    """A frozen encoder + released decoder + latent statistics; `latent_shape` = (C, H, W) of its latents."""
    encoder: str  # 'dinov2' | 'siglip2' | 'mae' (rae_xla.models.encoders)
    encoder_path: str  # a Hugging Face model id (or hf:// repository)
    encoder_input_size: int
    decoder_config: str  # a ViTDecoder preset
    decoder_weights: str  # relative to the root
    stats: str  # relative to the root
    noise_tau: float  # the tau the decoder was trained with (the RAE itself encodes with tau 0 at inference)
    latent_shape: tuple[int, int, int]
    decoder_patch_size: int = 16


@dataclasses.dataclass(frozen=True)
class ReleasedStage2:
    """A released DiT^DH: preset + overrides (rae_xla/models/presets.py), weights, its RAE, the paper's sampling."""
    preset: str
    input_size: int
    weights: str  # relative to the root
    rae: str  # a RAES name
    sampling_method: str = "euler"
    sampling_steps: int = 50  # grid points: 50 -> 49 Euler steps
    guidance_method: str = "none"  # none | cfg | autoguidance
    guidance_scale: float = 1.0
    guidance_model: str = ""  # autoguidance: a STAGE2 name (the weaker model)
    guidance_interval: tuple[float, float] = (0.0, 1.0)


_DINO = "decoders/dinov2/wReg_base"
_DINO_STATS = "stats/dinov2/wReg_base/imagenet1k/stat.pt"


def _dinov2_b(decoder_folder: str, tau: float, res: int = 256) -> ReleasedRAE:
    return ReleasedRAE(
        encoder="dinov2", encoder_path="facebook/dinov2-with-registers-base",
        encoder_input_size=224 if res == 256 else 448, decoder_config="ViT-XL",
        decoder_weights=f"{_DINO}/{decoder_folder}/model.pt",
        stats=_DINO_STATS if res == 256 else "stats/dinov2/wReg_base/imagenet1k_512/stat.pt",
        noise_tau=tau, latent_shape=(768, res // 16, res // 16))


# Decoder folder suffixes: n05/n08/n10 = trained with noise tau 0.5/0.8/1.0 (issue #61); no suffix = no noise;
# _i512 = trained at 512 px from 448-px encoder inputs.
RAES: dict[str, ReleasedRAE] = {
    "dinov2-b": _dinov2_b("ViTXL_n08", 0.8),  # the paper's RAE, behind every released DiT^DH
    "dinov2-b-512": _dinov2_b("ViTXL_n08_i512", 0.8, res=512),
    "dinov2-b-tau0": _dinov2_b("ViTXL", 0.0),
    "dinov2-b-tau0.5": _dinov2_b("ViTXL_n05", 0.5),
    "dinov2-b-tau1.0": _dinov2_b("ViTXL_n10", 1.0),
    "siglip2-b": ReleasedRAE(
        encoder="siglip2", encoder_path="google/siglip2-base-patch16-256", encoder_input_size=256,
        decoder_config="ViT-XL", decoder_weights="decoders/siglip2/base_p16_i256/ViTXL_n08/model.pt",
        stats="stats/siglip2/base_p16_i256/ImageNet1k/stat.pt", noise_tau=0.8, latent_shape=(768, 16, 16)),
    "mae-b": ReleasedRAE(
        encoder="mae", encoder_path="facebook/vit-mae-base", encoder_input_size=256, decoder_config="ViT-XL",
        decoder_weights="decoders/mae/base_p16/ViTXL_n08/model.pt",
        stats="stats/mae/base_p16/ImageNet1k/stat.pt", noise_tau=0.8, latent_shape=(768, 16, 16)),
}

_DITS = "DiTs/Dinov2/wReg_base"
STAGE2: dict[str, ReleasedStage2] = {
    # docs/reference.md §10: 256 px gFID 1.13 with autoguidance (scale 1.42, DiT^DH-S at 14 epochs), 50-point Euler.
    "ditdh-xl-256": ReleasedStage2(
        preset="DiTDH-XL", input_size=16, weights=f"{_DITS}/ImageNet256/DiTDH-XL/stage2_model.pt", rae="dinov2-b",
        guidance_method="autoguidance", guidance_scale=1.42, guidance_model="ditdh-s-256-ep14"),
    "ditdh-xl-512": ReleasedStage2(
        preset="DiTDH-XL", input_size=32, weights=f"{_DITS}/ImageNet512/DiTDH-XL_ep400/stage2_model.pt",
        rae="dinov2-b-512", guidance_method="autoguidance", guidance_scale=1.5, guidance_model="ditdh-s-512-ep20"),
    "ditdh-s-256-ep14": ReleasedStage2(
        preset="DiTDH-S-guidance", input_size=16, weights=f"{_DITS}/ImageNet256/DiTDH-S_ep14/stage2_model.pt",
        rae="dinov2-b"),
    "ditdh-s-512-ep20": ReleasedStage2(
        preset="DiTDH-S-guidance", input_size=32, weights=f"{_DITS}/ImageNet512/DiTDH-S_ep20/stage2_model.pt",
        rae="dinov2-b-512"),
}

DISCRIMINATOR_BACKBONE = "discs/dino_vit_small_patch8_224.pth"  # frozen DINO ViT-S/8 of the stage-1 GAN loss


def rae(name: str) -> ReleasedRAE:
    return _lookup(RAES, name, "RAE")


def stage2(name: str) -> ReleasedStage2:
    return _lookup(STAGE2, name, "stage-2 model")


def path(relative: str, root: str = DEFAULT_ROOT) -> str:
    """root/relative, for a root that is hf://, gs:// or a local folder."""
    return f"{root.rstrip('/')}/{relative}"


def _lookup(table: dict, name: str, what: str):
    if name not in table:
        raise KeyError(f"no released {what} named {name!r}; released: {', '.join(sorted(table))}")
    return table[name]
