"""Building blocks shared by the stage-2 models (DiT^DH, LightningDiT) and the ViT decoder.

Every class keeps the attribute names of the official `stage2/models/model_utils.py` (docs/reference.md §3.1),
because released checkpoints are loaded by name. Nothing here names a device or branches on tensor values,
so the same code runs eagerly, under `torch.compile` and inside one XLA graph.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x^2) + eps) * weight, reduced in float32 then cast back (official behaviour)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


def plain_layer_norm(dim: int) -> nn.LayerNorm:
    """The official non-RMS block norm: LayerNorm without affine, eps 1e-6 (so no checkpoint entries)."""
    return nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)


def swiglu_hidden_width(hidden_size: int, mlp_ratio: float) -> int:
    """Official width rule int(2/3 * int(H * ratio)): 1152 -> 3072, 2048 -> 5461, 384 -> 1024 (no rounding)."""
    return int(2 / 3 * int(hidden_size * mlp_ratio))


class SwiGLUFFN(nn.Module):
    """w3(SiLU(a) * b) with (a, b) the two halves of w12(x), a first. Keys `w12.*`, `w3.*`."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(a) * b)


class GeluMlp(nn.Module):
    """timm `Mlp` as the official non-SwiGLU path uses it: fc1 -> tanh-GELU -> fc2. Keys `fc1.*`, `fc2.*`."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


def rope_2d_tables(head_dim: int, grid: int, theta: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables (grid*grid, head_dim) of the official EVA-02 style 2-D RoPE.

    Channels [0, head_dim/2) rotate with the row index h, [head_dim/2, head_dim) with the column index w;
    inside each half the angles are repeated pairwise ([f0, f0, f1, f1, ...], the interleaved layout).
    Frequencies f_i = theta^(-2i/d) with d = head_dim/2, i < d/2. Tokens are in row-major order.
    """
    if head_dim % 4:
        raise ValueError(f"2-D RoPE needs head_dim divisible by 4, got {head_dim}; choose hidden/heads accordingly.")
    half = head_dim // 2
    freqs = 1.0 / (theta ** (torch.arange(0, half, 2)[: half // 2].float() / half))
    angles = torch.arange(grid, dtype=torch.float32)[:, None] * freqs[None, :]
    angles = angles.repeat_interleave(2, dim=-1)                       # (G, half)
    rows = angles[:, None, :].expand(grid, grid, half)
    cols = angles[None, :, :].expand(grid, grid, half)
    table = torch.cat([rows, cols], dim=-1).reshape(grid * grid, head_dim)
    return table.cos(), table.sin()


class VisionRotaryEmbeddingFast(nn.Module):
    """2-D RoPE with persistent buffers `freqs_cos`, `freqs_sin` of shape (grid^2, head_dim) (in checkpoints).

    `dim` is head_dim/2 as in the official constructor; `pt_seq_len` is the token-grid side.
    """

    def __init__(self, dim: int, pt_seq_len: int, theta: float = 10000.0):
        super().__init__()
        cos, sin = rope_2d_tables(2 * dim, pt_seq_len, theta)
        self.register_buffer("freqs_cos", cos)
        self.register_buffer("freqs_sin", sin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, heads, N, head_dim) with N == grid^2 -> same shape, rotated."""
        pairs = x.unflatten(-1, (-1, 2))
        rotated = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
        return x * self.freqs_cos + rotated * self.freqs_sin


class NormAttention(nn.Module):
    """Multi-head self-attention through F.scaled_dot_product_attention, with optional q/k norm and RoPE.

    Keys `qkv.*` (bias on), `proj.*`, and `q_norm.*`/`k_norm.*` when qk-norm is on (RMSNorm(hd) if
    use_rmsnorm else LayerNorm(hd) with affine and PyTorch's default eps 1e-5, as in the official code).
    """

    def __init__(self, dim: int, num_heads: int, qk_norm: bool, use_rmsnorm: bool):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden size {dim} is not divisible by num_heads {num_heads}.")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        norm = RMSNorm if use_rmsnorm else nn.LayerNorm
        self.q_norm = norm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = norm(self.head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rope: VisionRotaryEmbeddingFast | None) -> torch.Tensor:
        """x: (B, N, dim) -> (B, N, dim)."""
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = rope(q), rope(k)
        out = F.scaled_dot_product_attention(q.to(v.dtype), k.to(v.dtype), v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class PatchEmbed(nn.Module):
    """Conv2d(kernel = stride = p) -> row-major tokens (B, (H/p)*(W/p), D). Key `proj.*`.

    The official DiT^DH passes in_chans*p^2 as the conv's input channels, which only works for p = 1;
    here the conv takes the true channel count, so p > 1 works (same keys, correct shapes).
    """

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


def sincos_pos_embed_2d(dim: int, grid: int, cls_row: bool = False) -> torch.Tensor:
    """Fixed 2-D sin-cos table (grid*grid [+1], dim) float32, MAE/DiT generator.

    The first dim/2 channels encode the column index w, the last dim/2 the row index h (docs/reference.md §2.1);
    each half is [sin(pos*w_k), cos(pos*w_k)], w_k = 10000^(-k/(dim/4)), computed in float64.
    `cls_row` prepends an all-zero row (the ViT decoder's CLS position).
    """
    if dim % 4:
        raise ValueError(f"sin-cos position table needs dim divisible by 4, got {dim}.")
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4.0))
    pos = np.arange(grid, dtype=np.float64)
    cols, rows = np.meshgrid(pos, pos)                                 # cols[h, w] = w, rows[h, w] = h

    def encode(p):
        out = np.einsum("m,d->md", p.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    table = np.concatenate([encode(cols), encode(rows)], axis=1)
    if cls_row:
        table = np.concatenate([np.zeros([1, dim]), table], axis=0)
    return torch.from_numpy(table).float()


class GaussianFourierEmbedding(nn.Module):
    """Flow time t in [0, 1] -> (B, H): mlp([sin(2*pi*t*W), cos(2*pi*t*W)]).

    `W` (256,) ~ N(0, 1) is a frozen Parameter stored in checkpoints as `t_embedder.W`; load it, never redraw it.
    """

    def __init__(self, hidden_size: int, embedding_size: int = 256, scale: float = 1.0):
        super().__init__()
        self.W = nn.Parameter(torch.randn(embedding_size) * scale, requires_grad=False)
        self.mlp = nn.Sequential(
            nn.Linear(2 * embedding_size, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        proj = t[:, None].float() * self.W[None, :] * (2 * math.pi)
        return self.mlp(torch.cat([proj.sin(), proj.cos()], dim=-1).to(self.mlp[0].weight.dtype))


class LabelEmbedder(nn.Module):
    """Class label -> (B, H). Row `num_classes` is the null class; CFG label dropout only when `train`.

    The drop mask is drawn with torch.rand on the labels' device (no host sync, static shapes).
    """

    def __init__(self, num_classes: int, hidden_size: int, dropout_prob: float):
        super().__init__()
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob
        self.embedding_table = nn.Embedding(num_classes + int(dropout_prob > 0), hidden_size)

    def forward(self, labels: torch.Tensor, train: bool) -> torch.Tensor:
        if train and self.dropout_prob > 0:
            drop = torch.rand(labels.shape[0], device=labels.device) < self.dropout_prob
            labels = torch.where(drop, torch.full_like(labels, self.num_classes), labels)
        return self.embedding_table(labels)


def modulate(x: torch.Tensor, shift: torch.Tensor | None, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: x * (1 + scale) + shift. x (B, N, H); shift/scale (B, L, H) with L dividing N
    (each conditioning token repeated N/L times consecutively, as DDTModulate does); shift None = no shift."""
    scale = _expand_condition(scale, x.shape[1])
    out = x * (1 + scale)
    if shift is not None:
        out = out + _expand_condition(shift, x.shape[1])
    return out


def gate(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """x * gate with the same per-token broadcasting as `modulate`."""
    return x * _expand_condition(g, x.shape[1])


def _expand_condition(c: torch.Tensor, tokens: int) -> torch.Tensor:
    length = c.shape[1]
    if length == 1 or length == tokens:
        return c
    if tokens % length:
        raise ValueError(f"conditioning length {length} does not divide the token count {tokens}.")
    return c.repeat_interleave(tokens // length, dim=1)
