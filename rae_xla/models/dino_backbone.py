"""The frozen DINO ViT inside the stage-1 discriminator (official `disc/dinodisc.py`, `FrozenDINONoDrop`).

timm's `VisionTransformer` has exactly the key names of the released `discs/dino_vit_small_patch8_224.pth`
(original-DINO naming: `cls_token`, `pos_embed`, `patch_embed.proj`, `blocks.N.{norm1,attn.qkv,attn.proj,norm2,
mlp.fc1,mlp.fc2}`, `norm`), so it is the network; this module adds only what the official wrapper does around it
(docs/reference.md §5.5):
- input x in [-1, 1] -> bilinear resize to 224x224 (align_corners=False, no antialias, written as two matmuls; always, for 256 or
  512 px inputs, issue #76) -> x * (0.5/std) + (0.5 - mean)/std with ImageNet mean/std, in float32;
- patch embedding, CLS, `pos_embed` (the grid is always 224/patch, so the table is never interpolated);
- the blocks, with tanh-approximate GELU in the MLP (the original DINO uses exact GELU; the official
  discriminator builds its ViT with tanh-GELU, and the released discriminator heads were trained on that);
- features: the last block's output first, then the outputs of the key-depth blocks in increasing order,
  CLS dropped, each (B, C, tokens). The final LayerNorm `norm` is loaded but never applied.
The loader zeroes the key third of every `attn.qkv.bias` (softmax-invariant: it changes results by rounding only).

Freezing: after loading, every parameter becomes a NON-PERSISTENT buffer. So the backbone moves with `.to()` and
`copy.deepcopy` like any submodule, but it is absent from `parameters()` (no optimizer or gradient wrapper sees it)
and from `state_dict()` (the discriminator's state dict is the heads only, as the official `disc` entry), and it
is rebuilt from the checkpoint file, never from a training checkpoint. Its `train()` is a no-op: it always runs
in eval mode (it has no dropout or drop-path anyway).
"""
from functools import partial

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from rae_xla.checkpoint.official import CheckpointMismatchError, read_checkpoint

INPUT_SIZE = 224                       # the official wrapper resizes every input to 224x224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Buffers of the official wrapper that a checkpoint may hold; they are constants here (the input normalisation).
WRAPPER_BUFFERS = ("x_scale", "x_shift")
RELEASED_FILE = "hf://nyu-visionx/RAE-collections/discs/dino_vit_small_patch8_224.pth"
RANDOM = "random"                      # dino_ckpt_path value for a seeded random backbone (tests, quickstart)

# Backbone sizes by official recipe name (`disc/dinodisc.py`, `recipes`). DINO ViT-S/8: 21.7M parameters.
RECIPES = {
    "S_8": dict(depth=12, key_depths=(2, 5, 8, 11), norm_eps=1e-6, patch_size=8, in_chans=3, embed_dim=384,
                num_heads=6, mlp_ratio=4.0),
}
RECIPE_FIELDS = ("depth", "key_depths", "norm_eps", "patch_size", "in_chans", "embed_dim", "num_heads", "mlp_ratio")


class FrozenDino(nn.Module):
    """Frozen DINO ViT feature extractor: (B,3,H,W) in [-1,1] -> [(B, embed_dim, (224/patch)^2)] * (1 + #key depths).

    `key_depths` >= depth are dropped silently, as the official code does (they never match a block index).
    """

    def __init__(self, *, depth: int, key_depths, norm_eps: float, patch_size: int, in_chans: int, embed_dim: int,
                 num_heads: int, mlp_ratio: float):
        super().__init__()
        self.key_depths = tuple(sorted(d for d in key_depths if 0 <= d < depth))
        self.patch_size = patch_size
        self.vit = VisionTransformer(
            img_size=INPUT_SIZE, patch_size=patch_size, in_chans=in_chans, num_classes=0, global_pool="token",
            embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=True,
            norm_layer=partial(nn.LayerNorm, eps=norm_eps), act_layer=partial(nn.GELU, approximate="tanh"))
        std = torch.tensor(IMAGENET_STD)
        scale, shift = 0.5 / std, (0.5 - torch.tensor(IMAGENET_MEAN)) / std
        self.register_buffer("x_scale", scale.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("x_shift", shift.view(1, 3, 1, 1), persistent=False)
        self._freeze()

    @property
    def embed_dim(self) -> int:
        return self.vit.embed_dim

    @property
    def num_features(self) -> int:
        """How many feature maps forward returns (one per discriminator head)."""
        return 1 + len(self.key_depths)

    @property
    def tokens(self) -> int:
        """Patch tokens per feature map: (224 / patch)^2 = 784 for patch 8."""
        return (INPUT_SIZE // self.patch_size) ** 2

    def checkpoint_keys(self) -> dict[str, tuple[int, ...]]:
        """Key -> shape of the released-format checkpoint this backbone reads."""
        return {k: tuple(v.shape) for k, v in self.vit.named_buffers() if v is not None}

    def load_checkpoint(self, src) -> "FrozenDino":
        """Loads a released-format checkpoint (path, gs:// path or dict) strictly; zeroes the key third of qkv.bias.

        The file itself is not changed. Missing, unexpected or wrongly shaped keys raise CheckpointMismatchError.
        """
        state = {k: v for k, v in read_checkpoint(src).items() if k not in WRAPPER_BUFFERS}
        expected = self.checkpoint_keys()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        shapes = [f"{k}: file {tuple(state[k].shape)} vs model {expected[k]}" for k in expected
                  if k in state and tuple(state[k].shape) != expected[k]]
        if missing or unexpected or shapes:
            raise CheckpointMismatchError(
                f"DINO discriminator backbone checkpoint {src if isinstance(src, str) else '<dict>'} does not match "
                f"the recipe (depth {len(self.vit.blocks)}, embed {self.embed_dim}, patch {self.patch_size}): "
                f"missing {missing[:8]}, unexpected {unexpected[:8]}, wrong shape {shapes[:8]}. Use the released "
                "discs/dino_vit_small_patch8_224.pth with recipe 'S_8', or the recipe that matches your file.")
        buffers = dict(self.vit.named_buffers())
        with torch.no_grad():
            for key, value in state.items():
                value = value.to(torch.float32)
                if key.endswith("attn.qkv.bias"):
                    value = value.clone()
                    third = value.shape[0] // 3
                    value[third:2 * third] = 0   # k-bias adds a per-query constant to the logits: softmax ignores it
                buffers[key].copy_(value)
        return self

    def _freeze(self) -> None:
        """Turns every parameter of the ViT into a non-persistent buffer (see the module docstring)."""
        for module in self.vit.modules():
            for name, param in list(module._parameters.items()):
                if param is None:
                    continue
                del module._parameters[name]
                module.register_buffer(name, param.detach(), persistent=False)
        self.vit.eval()

    def train(self, mode: bool = True) -> "FrozenDino":
        """Always eval (the official backbone is outside the module tree, so `disc.train()` never reaches it)."""
        del mode
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x (B,3,H,W) in [-1,1] -> feature maps, each (B, embed_dim, tokens): last block first, then key depths.

        The resize and normalisation run in float32 (outside autocast, as the official prefix); the rest in the
        backbone's dtype (float32, or bfloat16 after `.to(torch.bfloat16)`) or under the caller's autocast.
        """
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = self.preprocess(x).to(self.vit.pos_embed.dtype)              # (B,3,224,224)
            tokens = self.vit.patch_embed(x)                                  # (B, T, C)
            cls = self.vit.cls_token.expand(tokens.shape[0], -1, -1)
            tokens = torch.cat([cls, tokens], dim=1) + self.vit.pos_embed     # (B, 1+T, C)
        features = []
        for depth, block in enumerate(self.vit.blocks):
            tokens = block(tokens)
            if depth in self.key_depths:
                features.append(tokens[:, 1:].transpose(1, 2))
        features.insert(0, tokens[:, 1:].transpose(1, 2))
        return features

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """x (B,3,H,W) in [-1,1] -> the patch-embedding input (B,3,224,224), float32."""
        x = resize_bilinear(x.float(), INPUT_SIZE)
        return x * self.x_scale.float() + self.x_shift.float()


def bilinear_matrix(size_in: int, size_out: int, device=None) -> torch.Tensor:
    """(size_out, size_in) float32 M with M @ v == 1-D F.interpolate(v, mode='linear', align_corners=False).

    PyTorch's rule: source = max((dst + 0.5) * in/out - 0.5, 0), i0 = floor(source), i1 = min(i0 + 1, in - 1),
    weights (1 - frac, frac). Built from `arange` on `device`, so under XLA it is a graph constant.
    """
    scale = torch.tensor(size_in / size_out, dtype=torch.float32, device=device)
    source = torch.clamp((torch.arange(size_out, device=device, dtype=torch.float32) + 0.5) * scale - 0.5, min=0.0)
    low = source.long()
    frac = source - low
    high = torch.clamp(low + 1, max=size_in - 1)
    columns = torch.arange(size_in, device=device).view(1, size_in)
    return ((columns == low.view(-1, 1)) * (1 - frac).view(-1, 1)
            + (columns == high.view(-1, 1)) * frac.view(-1, 1)).float()


def resize_bilinear(images: torch.Tensor, size: int) -> torch.Tensor:
    """(B,C,H,W) -> (B,C,size,size): F.interpolate(bilinear, align_corners=False, no antialias) as two matmuls.

    XLA has no lowering for the backward of aten::upsample_bilinear2d (it would run on the host, a CPU fallback
    and a device round trip in every generator step); bilinear resizing is separable, so fixed row and column
    matrices give the same weights as PyTorch's (bit-equal; tested) and outputs equal up to summation order: 5e-7 at
    256 px. (PyTorch's own CPU kernels differ by up to 6e-5 between a 3-channel and a 1-channel call at 512 px.)
    """
    rows = bilinear_matrix(images.shape[-2], size, images.device)          # (size, H)
    cols = bilinear_matrix(images.shape[-1], size, images.device)          # (size, W)
    return rows @ images @ cols.T


def resolve_recipe(recipe, *, key_depths=None, norm_eps=None) -> dict:
    """A recipe name ('S_8') or dict of backbone sizes -> the full dict; `key_depths`/`norm_eps` (the arch's) win."""
    if isinstance(recipe, str):
        if recipe not in RECIPES:
            raise ValueError(f"unknown DINO discriminator recipe {recipe!r}; use one of {sorted(RECIPES)} or pass a "
                             f"dict with {RECIPE_FIELDS}.")
        recipe = RECIPES[recipe]
    resolved = dict(recipe)
    if key_depths is not None:
        resolved["key_depths"] = tuple(key_depths)
    if norm_eps is not None:
        resolved["norm_eps"] = norm_eps
    missing = [f for f in RECIPE_FIELDS if f not in resolved]
    unknown = [f for f in resolved if f not in RECIPE_FIELDS]
    if missing or unknown:
        raise ValueError(f"DINO recipe dict: missing fields {missing}, unknown fields {unknown}; it needs exactly "
                         f"{RECIPE_FIELDS}.")
    return resolved


def build_backbone(recipe: dict, checkpoint) -> FrozenDino:
    """FrozenDino(**recipe) loaded from `checkpoint` (local / gs:// / hf:// path or a dict); 'random' keeps timm's
    random init (seeded by torch's global generator)."""
    if checkpoint is None:
        raise ValueError(f"the DINO discriminator needs `dino_ckpt_path`: the released {RELEASED_FILE}, or 'random' "
                         "for a random backbone (tests and the quickstart only).")
    backbone = FrozenDino(**recipe)
    if checkpoint != RANDOM:
        try:
            backbone.load_checkpoint(checkpoint)
        except FileNotFoundError as err:
            raise FileNotFoundError(
                f"DINO discriminator backbone {checkpoint!r} not found ({err}). Point gan.disc.arch.dino_ckpt_path at "
                f"{RELEASED_FILE} (a local or gs:// copy, or that hf:// path), or use 'random' for a random "
                "backbone (tests and the quickstart only).") from err
    return backbone
