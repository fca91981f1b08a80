"""The RAE pixel decoder (`GeneralDecoder`): a ViT-MAE-style decoder without mask tokens (docs/reference.md §2).

latent tokens (B, N, C) -> decoder_embed -> [trainable CLS; tokens] + fixed sin-cos table -> L pre-LN ViT
layers -> LayerNorm -> decoder_pred -> drop CLS -> (B, N, p*p*3) -> unpatchify -> (B, 3, h*p, w*p).
Names equal the official state dict (`decoder_layers.{i}.attention.attention.query.weight`, ...) so
released `model.pt` files load strictly.
"""
import json
import math

import torch
import torch.nn.functional as F
from etils import epath
from torch import nn

from rae_xla import errors, hub
from rae_xla.models.layers import sincos_pos_embed_2d

# Released decoder configs (configs/decoder/{ViTB,ViTL,ViTXL}/config.json); XL uses F = 4096, not 4 * 1152.
DECODER_PRESETS = {
    "ViT-B": dict(hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072),
    "ViT-L": dict(hidden_size=1024, num_layers=24, num_heads=16, intermediate_size=4096),
    "ViT-XL": dict(hidden_size=1152, num_layers=28, num_heads=16, intermediate_size=4096),
}


class _SelfAttention(nn.Module):
    """HF ViT self-attention: separate query/key/value Linear layers, softmax(QK^T/sqrt(d))V via SDPA."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool):
        super().__init__()
        self.num_heads = num_heads
        self.query = nn.Linear(dim, dim, bias=qkv_bias)
        self.key = nn.Linear(dim, dim, bias=qkv_bias)
        self.value = nn.Linear(dim, dim, bias=qkv_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = (proj(x).view(b, n, self.num_heads, -1).transpose(1, 2)
                   for proj in (self.query, self.key, self.value))
        return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)


class _Dense(nn.Module):
    """A Linear held as `.dense` (HF naming: `attention.output.dense`, `intermediate.dense`, `output.dense`)."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.dense = nn.Linear(dim_in, dim_out)


class _Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool):
        super().__init__()
        self.attention = _SelfAttention(dim, num_heads, qkv_bias)
        self.output = _Dense(dim, dim)


class ViTMAELayer(nn.Module):
    """Pre-LN block: h += Wo Attn(LN(h)); h += W2 GELU_erf(W1 LN(h))."""

    def __init__(self, dim: int, num_heads: int, intermediate_size: int, layer_norm_eps: float, qkv_bias: bool):
        super().__init__()
        self.attention = _Attention(dim, num_heads, qkv_bias)
        self.intermediate = _Dense(dim, intermediate_size)
        self.output = _Dense(intermediate_size, dim)
        self.layernorm_before = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.layernorm_after = nn.LayerNorm(dim, eps=layer_norm_eps)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h + self.attention.output.dense(self.attention.attention(self.layernorm_before(h)))
        return h + self.output.dense(F.gelu(self.intermediate.dense(self.layernorm_after(h))))


class ViTDecoder(nn.Module):
    """Latent tokens (B, n, in_channels) -> images (B, 3, side*p, side*p), side = sqrt(num_patches).

    Args: hidden_size D, num_layers, num_heads, intermediate_size F (decoder geometry); in_channels = the
    encoder width (768 for DINOv2-B); num_patches N = latent tokens (256 at 256 px); patch_size p (16).
    """

    def __init__(self, hidden_size: int, num_layers: int, num_heads: int, intermediate_size: int, in_channels: int,
                 num_patches: int, patch_size: int = 16, layer_norm_eps: float = 1e-12, qkv_bias: bool = True,
                 num_channels: int = 3):
        super().__init__()
        side = math.isqrt(num_patches)
        if side * side != num_patches:
            raise ValueError(f"num_patches must be a square number, got {num_patches}.")
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}.")
        self.num_patches, self.patch_size, self.num_channels = num_patches, patch_size, num_channels
        self.decoder_embed = nn.Linear(in_channels, hidden_size)
        self.trainable_cls_token = nn.Parameter(torch.zeros(1, 1, hidden_size))
        # Frozen sin-cos table with a zero CLS row; loaded from checkpoints (a trained decoder may have changed it).
        self.decoder_pos_embed = nn.Parameter(sincos_pos_embed_2d(hidden_size, side, cls_row=True)[None],
                                              requires_grad=False)
        self.decoder_layers = nn.ModuleList([
            ViTMAELayer(hidden_size, num_heads, intermediate_size, layer_norm_eps, qkv_bias)
            for _ in range(num_layers)])
        self.decoder_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.decoder_pred = nn.Linear(hidden_size, patch_size * patch_size * num_channels)

    @classmethod
    def from_preset(cls, name_or_config: str, in_channels: int, num_patches: int, patch_size: int = 16):
        """'ViT-B' | 'ViT-L' | 'ViT-XL', or a released `config.json` (its file or folder, local or gs://)."""
        if name_or_config in DECODER_PRESETS:
            return cls(**DECODER_PRESETS[name_or_config], in_channels=in_channels, num_patches=num_patches,
                       patch_size=patch_size)
        return cls(**read_decoder_config(name_or_config), in_channels=in_channels, num_patches=num_patches,
                   patch_size=patch_size)

    def forward(self, latent_tokens: torch.Tensor) -> torch.Tensor:
        """(B, n, C) tokens in row-major order -> pixel patches (B, N, p*p*3), CLS dropped (the logits)."""
        h = self.decoder_embed(latent_tokens)
        if h.shape[1] != self.num_patches:                     # official `interpolate_latent` (other grids)
            h = self._resize_tokens(h)
        h = torch.cat([self.trainable_cls_token.expand(h.shape[0], -1, -1), h], dim=1) + self.decoder_pos_embed
        for layer in self.decoder_layers:
            h = layer(h)
        return self.decoder_pred(self.decoder_norm(h))[:, 1:]

    def _resize_tokens(self, h: torch.Tensor) -> torch.Tensor:
        b, n, d = h.shape
        side_in, side_out = math.isqrt(n), math.isqrt(self.num_patches)
        grid = h.transpose(1, 2).reshape(b, d, side_in, side_in)
        grid = F.interpolate(grid, size=(side_out, side_out), mode="bilinear", align_corners=False)
        return grid.flatten(2).transpose(1, 2)

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, h*w, p*p*3) with (pixel row, pixel col, channel) order -> (B, 3, h*p, w*p)."""
        b, n, _ = patches.shape
        side, p = math.isqrt(n), self.patch_size
        x = patches.reshape(b, side, side, p, p, self.num_channels)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(b, self.num_channels, side * p, side * p)


def read_decoder_config(path: str) -> dict:
    """Decoder geometry from a released HF `config.json` (ViTMAEConfig fields `decoder_*`); local, gs:// or hf://."""
    p = epath.Path(hub.local_file(path) if str(path).endswith(".json") else hub.local_dir(path))
    if p.is_dir():
        p = p / "config.json"
    if not p.exists():
        raise errors.InputPathError(f"decoder config {path!r} (rae.decoder_config) not found; pass 'ViT-B', 'ViT-L', 'ViT-XL' or a "
                                "folder/file holding the released config.json.")
    cfg = json.loads(p.read_text())
    required = ["decoder_hidden_size", "decoder_num_hidden_layers", "decoder_num_attention_heads",
                "decoder_intermediate_size", "hidden_act", "layer_norm_eps", "qkv_bias", "num_channels"]
    missing = [k for k in required if k not in cfg]
    if missing:
        raise ValueError(f"decoder config {p} lacks {missing}; is it a released configs/decoder/*/config.json?")
    if cfg["hidden_act"] != "gelu":
        raise ValueError(f"decoder config {p}: hidden_act {cfg['hidden_act']!r} unsupported (only exact 'gelu').")
    return dict(hidden_size=cfg["decoder_hidden_size"], num_layers=cfg["decoder_num_hidden_layers"],
                num_heads=cfg["decoder_num_attention_heads"], intermediate_size=cfg["decoder_intermediate_size"],
                layer_norm_eps=cfg["layer_norm_eps"], qkv_bias=cfg["qkv_bias"], num_channels=cfg["num_channels"])
