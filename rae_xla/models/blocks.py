"""The adaLN transformer block and final layer shared by DiT^DH and LightningDiT (docs/reference.md §3.2, §3.4).

Attribute names (`norm1`, `attn`, `norm2`, `mlp`, `adaLN_modulation`, `norm_final`, `linear`) equal the
official ones. The conditioning may be one vector per image (B, H) or one per token (B, L, H).
"""
import torch
from torch import nn

from rae_xla.models.layers import (GeluMlp, NormAttention, RMSNorm, SwiGLUFFN, VisionRotaryEmbeddingFast, gate,
                                   modulate, plain_layer_norm, swiglu_hidden_width)


def block_norm(dim: int, use_rmsnorm: bool) -> nn.Module:
    """RMSNorm with weight (released models) or LayerNorm without affine, eps 1e-6 (official alternative)."""
    return RMSNorm(dim) if use_rmsnorm else plain_layer_norm(dim)


class AdaLNBlock(nn.Module):
    """x += g1 * Attn(mod(norm1(x))); x += g2 * FFN(mod(norm2(x))), mod params = Linear(SiLU(cond)).

    Chunk order: shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp; with `wo_shift` the shifts
    are absent (4 chunks: scale_msa, gate_msa, scale_mlp, gate_mlp). The official DDT block crashes with
    wo_shift=True (its modulate cannot take a None shift); here it works.
    """

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float, use_qknorm: bool, use_swiglu: bool,
                 use_rmsnorm: bool, wo_shift: bool):
        super().__init__()
        self.wo_shift = wo_shift
        self.norm1 = block_norm(hidden_size, use_rmsnorm)
        self.attn = NormAttention(hidden_size, num_heads, qk_norm=use_qknorm, use_rmsnorm=use_rmsnorm)
        self.norm2 = block_norm(hidden_size, use_rmsnorm)
        if use_swiglu:
            self.mlp = SwiGLUFFN(hidden_size, swiglu_hidden_width(hidden_size, mlp_ratio))
        else:
            self.mlp = GeluMlp(hidden_size, int(hidden_size * mlp_ratio))
        chunks = 4 if wo_shift else 6
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, chunks * hidden_size))

    def forward(self, x: torch.Tensor, cond: torch.Tensor, rope: VisionRotaryEmbeddingFast | None) -> torch.Tensor:
        """x (B, N, H); cond (B, H) or (B, L, H) with L dividing N -> (B, N, H)."""
        if cond.dim() == 2:
            cond = cond.unsqueeze(1)
        mod = self.adaLN_modulation(cond)
        if self.wo_shift:
            scale_msa, gate_msa, scale_mlp, gate_mlp = mod.chunk(4, dim=-1)
            shift_msa = shift_mlp = None
        else:
            shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mod.chunk(6, dim=-1)
        x = x + gate(self.attn(modulate(self.norm1(x), shift_msa, scale_msa), rope), gate_msa)
        x = x + gate(self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp)), gate_mlp)
        return x


class FinalLayer(nn.Module):
    """linear(norm_final(x) * (1 + scale) + shift), (shift, scale) = Linear(SiLU(cond)); no gate, always a shift."""

    def __init__(self, hidden_size: int, out_dim: int, use_rmsnorm: bool):
        super().__init__()
        self.norm_final = block_norm(hidden_size, use_rmsnorm)
        self.linear = nn.Linear(hidden_size, out_dim)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x (B, N, H); cond (B, H) or (B, L, H) -> (B, N, out_dim)."""
        if cond.dim() == 2:
            cond = cond.unsqueeze(1)
        shift, scale = self.adaLN_modulation(cond).chunk(2, dim=-1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


def unpatchify(tokens: torch.Tensor, channels: int, patch: int) -> torch.Tensor:
    """(B, h*w, p*p*C) row-major tokens, (row, col, channel) inside a token -> (B, C, h*p, w*p); square grid."""
    b, n, _ = tokens.shape
    side = int(round(n ** 0.5))
    x = tokens.reshape(b, side, side, patch, patch, channels)
    return torch.einsum("nhwpqc->nchpwq", x).reshape(b, channels, side * patch, side * patch)


def zero_adaln_and_final(blocks: nn.ModuleList, final_layer: FinalLayer) -> None:
    """Official init: every adaLN output projection and the final linear start at zero (identity blocks)."""
    for block in blocks:
        nn.init.zeros_(block.adaLN_modulation[-1].weight)
        nn.init.zeros_(block.adaLN_modulation[-1].bias)
    for layer in (final_layer.adaLN_modulation[-1], final_layer.linear):
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)
