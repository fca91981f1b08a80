"""Frozen representation encoders for the RAE (docs/reference.md §1.1; docs/ecosystem.md §8), via `transformers`.

`load_encoder(kind, path, input_size)` returns a `FrozenEncoder`: normalised images (B, 3, S, S) -> patch
tokens (B, N, C), N = (S / patch)^2, with the final LayerNorm's affine removed (a pure standardisation, as
the official wrappers do) and the CLS/register tokens dropped. Shapes are static for XLA:
- DINOv2: the learned position table is resized to the S/14 grid ONCE at load with HF's own bicubic+antialias
  code (bit-identical), so the forward has no `_upsample_bicubic2d_aa` (an XLA CPU fallback) and compiles once.
- MAE: the table is resized once the same way (HF's plain bicubic), and a fixed `noise = 0..N-1` is passed so
  the token "shuffle" is the identity (HF shuffles randomly even at mask ratio 0).
- SigLIP(2) fixed-resolution checkpoints run at their native size (no interpolation).
`path` is a local HF folder, a `gs://` folder (copied once into a local cache), a hub id (needs network), or
`random-tiny`: a seeded, randomly initialised tiny model of the same HF class (no download; random weights).
"""
import hashlib
import json
import logging
import os
import tempfile

import torch
from etils import epath
from torch import nn

from rae_xla import errors, hub, remote

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# Published processor values, used when a folder has no preprocessor_config.json (docs/reference.md §1.2).
DEFAULT_MEAN_STD = {"dinov2": (IMAGENET_MEAN, IMAGENET_STD), "mae": (IMAGENET_MEAN, IMAGENET_STD),
                    "siglip2": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))}
RANDOM_TINY = "random-tiny"
RANDOM_TINY_SEED = 0
KINDS = tuple(DEFAULT_MEAN_STD)  # The encoders `load_encoder` builds (config.rae.encoder).


class FrozenEncoder(nn.Module):
    """Wraps an HF vision model; always in eval mode with requires_grad False.

    Attributes: kind, hidden_size C, patch_size, input_size S, grid = S // patch, image_mean/std (3-tuples),
    and the HF model under `encoder` (DINOv2) or `model` (SigLIP2, MAE), as in the official state dicts.
    """

    def __init__(self, kind: str, hf_model: nn.Module, hidden_size: int, patch_size: int, input_size: int,
                 num_prefix_tokens: int, image_mean, image_std):
        super().__init__()
        self.kind, self.hidden_size, self.patch_size, self.input_size = kind, hidden_size, patch_size, input_size
        self.grid = input_size // patch_size
        self.num_prefix_tokens = num_prefix_tokens
        self.image_mean, self.image_std = tuple(image_mean), tuple(image_std)
        setattr(self, "encoder" if kind == "dinov2" else "model", hf_model)
        self.requires_grad_(False)
        self.eval()

    @property
    def hf_model(self) -> nn.Module:
        return self.encoder if self.kind == "dinov2" else self.model

    def train(self, mode: bool = True):
        """Frozen: stays in eval mode whatever the parent does (DINOv2/MAE dropouts are 0 anyway)."""
        return super().train(False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels (B, 3, S, S), already normalised with image_mean/std -> tokens (B, grid^2, C)."""
        if self.kind == "mae":
            b, n = pixels.shape[0], self.grid * self.grid
            noise = torch.arange(n, device=pixels.device).to(pixels.dtype).expand(b, n)
            hidden = self.model(pixel_values=pixels, noise=noise, interpolate_pos_encoding=True).last_hidden_state
        else:
            hidden = self.hf_model(pixel_values=pixels).last_hidden_state
        return hidden[:, self.num_prefix_tokens:]


def load_encoder(kind: str, path: str, input_size: int) -> FrozenEncoder:
    """Build the frozen encoder `kind` ('dinov2' | 'siglip2' | 'mae') from `path` for S = input_size."""
    if kind not in DEFAULT_MEAN_STD:
        raise ValueError(f"encoder kind {kind!r} unknown; use one of {sorted(DEFAULT_MEAN_STD)}.")
    if path == RANDOM_TINY:
        hf_model = _random_tiny(kind, input_size)
        mean, std = DEFAULT_MEAN_STD[kind]
        logging.warning("encoder %s: RANDOM weights (%s, seed %d), for tests/quickstart only", kind, RANDOM_TINY,
                        RANDOM_TINY_SEED)
    else:
        local = _localize(path)
        hf_model = _from_pretrained(kind, local)
        mean, std = _processor_mean_std(kind, local)
        logging.info("encoder %s loaded from %s (mean %s, std %s)", kind, path, mean, std)
    hf_model = hf_model.float()
    cfg = hf_model.config
    patch = cfg.patch_size
    if input_size % patch:
        raise ValueError(f"encoder input_size {input_size} is not a multiple of the {kind} patch size {patch}.")
    if kind == "dinov2":
        _fix_position_table(hf_model.embeddings, cfg, input_size)
        _strip_affine(hf_model.layernorm)
        prefix = 1 + cfg.num_register_tokens
    elif kind == "mae":
        cfg.mask_ratio = 0.0
        _fix_position_table(hf_model.embeddings, cfg, input_size)
        hf_model.embeddings.patch_embeddings.image_size = (input_size, input_size)
        hf_model.embeddings.image_size = (input_size, input_size)
        _strip_affine(hf_model.layernorm)
        prefix = 1
    else:
        if cfg.image_size != input_size:
            raise ValueError(f"SigLIP2 checkpoint is fixed-resolution {cfg.image_size}px; set encoder_input_size "
                             f"to {cfg.image_size} (got {input_size}).")
        _strip_affine(hf_model.post_layernorm)
        prefix = 0
    return FrozenEncoder(kind, hf_model, cfg.hidden_size, patch, input_size, prefix, mean, std)


# The random-tiny encoders' sizes (also read by the preflight's planner, which builds no model).
RANDOM_TINY_WIDTHS = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)


def random_tiny_shape(kind: str) -> tuple[int, int, int, int]:
    """(hidden size, patch, layers, register tokens) of the random-tiny encoder of `kind`."""
    return (RANDOM_TINY_WIDTHS["hidden_size"], 14 if kind == "dinov2" else 16, RANDOM_TINY_WIDTHS["num_hidden_layers"],
            4 if kind == "dinov2" else 0)


def _random_tiny(kind: str, input_size: int) -> nn.Module:
    import transformers as tf
    small = dict(RANDOM_TINY_WIDTHS, image_size=input_size)
    _, patch, _, registers = random_tiny_shape(kind)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_TINY_SEED)
        if kind == "dinov2":
            return tf.Dinov2WithRegistersModel(tf.Dinov2WithRegistersConfig(patch_size=patch,
                                                                             num_register_tokens=registers, **small))
        if kind == "mae":
            return tf.ViTMAEModel(tf.ViTMAEConfig(patch_size=patch, mask_ratio=0.0, **small))
        return tf.SiglipVisionModel(tf.SiglipVisionConfig(patch_size=patch, **small))


def _from_pretrained(kind: str, local: str) -> nn.Module:
    import transformers as tf
    try:
        if kind == "dinov2":
            return tf.Dinov2WithRegistersModel.from_pretrained(local)
        if kind == "mae":
            return tf.ViTMAEForPreTraining.from_pretrained(local).vit if _is_pretraining(local) \
                else tf.ViTMAEModel.from_pretrained(local)
        config = tf.AutoConfig.from_pretrained(local)
        if hasattr(config, "vision_config"):                   # a full SigLIP(2) model: keep its vision tower
            return tf.SiglipModel.from_pretrained(local).vision_model
        return tf.SiglipVisionModel.from_pretrained(local)
    except OSError as err:  # An input error (one FATAL line in main.py), not a bug.
        if os.path.isabs(local) and not os.path.exists(local):
            raise errors.InputPathError(f"encoder folder {local!r} (rae.encoder_path) does not exist; give a local "
                                        "HF folder, a gs:// folder, or a hub id on a machine with network access"
                                        ) from err
        raise errors.InputPathError(f"cannot load the {kind} encoder from {local!r} (rae.encoder_path): give a local "
                                    "HF folder, a gs:// folder, or a hub id on a machine with network access "
                                    f"({str(err).splitlines()[0] if str(err) else type(err).__name__})") from err


def _is_pretraining(local: str) -> bool:
    cfg_file = os.path.join(local, "config.json")
    if not os.path.exists(cfg_file):
        return True                                            # hub id: facebook/vit-mae-base is ForPreTraining
    return "ViTMAEForPreTraining" in json.load(open(cfg_file)).get("architectures", [])


def _fix_position_table(embeddings: nn.Module, cfg, input_size: int) -> None:
    """Resize the learned table to the input grid once, with HF's own interpolation (same numbers as at run time)."""
    grid = input_size // cfg.patch_size
    dim = embeddings.position_embeddings.shape[-1]
    with torch.no_grad():
        table = embeddings.interpolate_pos_encoding(torch.zeros(1, 1 + grid * grid, dim), input_size, input_size)
    embeddings.position_embeddings = nn.Parameter(table.clone(), requires_grad=False)
    cfg.image_size = input_size


def _strip_affine(norm: nn.LayerNorm) -> None:
    """Official `normalize=True`: the final LayerNorm keeps only (x - mean) / sqrt(var + eps)."""
    norm.elementwise_affine = False
    norm.weight = None
    norm.bias = None


def _processor_mean_std(kind: str, local: str):
    proc = os.path.join(local, "preprocessor_config.json")
    if os.path.isdir(local) and os.path.exists(proc):
        cfg = json.load(open(proc))
        return tuple(cfg["image_mean"]), tuple(cfg["image_std"])
    return DEFAULT_MEAN_STD[kind]


def _localize(path: str) -> str:
    """hf:// -> the HF cache's snapshot folder; gs:// (or any non-local epath) folder -> a local copy in a cache dir;
    local paths and hub ids unchanged."""
    if hub.is_hub_path(path):
        return hub.local_dir(path)
    if "://" not in path:
        return path
    cache_root = os.environ.get("RAE_XLA_CACHE", os.path.join(tempfile.gettempdir(), "rae_xla_cache"))
    local = os.path.join(cache_root, hashlib.sha256(path.encode()).hexdigest()[:16])
    if os.path.exists(os.path.join(local, ".complete")):
        return local
    src = epath.Path(path)
    with remote.reading(path, "rae.encoder_path"):  # An unreachable bucket: one line naming the folder.
        if not src.is_dir():
            raise errors.InputPathError(f"encoder folder {path!r} (rae.encoder_path) does not exist or is not a "
                                        "folder.")
        os.makedirs(local, exist_ok=True)
        for item in src.iterdir():
            if item.is_file():
                (epath.Path(local) / item.name).write_bytes(item.read_bytes())
    open(os.path.join(local, ".complete"), "w").close()     # a half-copied folder is never reused
    return local
