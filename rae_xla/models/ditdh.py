"""DiT^DH (`DiTwDDTHead`): a DiT trunk plus a wide, shallow DDT head (docs/reference.md §3.2, §3.3).

Parameter and buffer names equal the official ones, so released `stage2_model.pt` files load strictly.
Two official crashes are fixed: `wo_shift=True` (blocks then have 4 modulation chunks and no shift) and
`patch_size > 1` (the official patch embedding multiplies the input channels by p^2).
"""
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rae_xla.models.blocks import AdaLNBlock, FinalLayer, unpatchify, zero_adaln_and_final
from rae_xla.models.layers import (GaussianFourierEmbedding, LabelEmbedder, PatchEmbed, VisionRotaryEmbeddingFast,
                                   sincos_pos_embed_2d)


def as_pair(value, name: str) -> tuple:
    """An int means the same value for the trunk and the head; a 2-sequence is (trunk, head)."""
    if isinstance(value, int):
        return value, value
    if isinstance(value, Sequence) and len(value) == 2:
        return tuple(value)
    raise ValueError(f"{name} must be an int or a [trunk, head] pair, got {value!r}.")


class DiTDH(nn.Module):
    """forward(x (B, C, G, G) float, t (B,) flow time in [0, 1] (1 = noise), y (B,) int64) -> (B, C, G, G).

    Label dropout (prob `class_dropout_prob`, null class `num_classes`) happens only in training mode.
    """

    def __init__(self, input_size: int = 16, patch_size=1, in_channels: int = 768, hidden_size=(1152, 2048),
                 depth=(28, 2), num_heads=(16, 16), mlp_ratio: float = 4.0, class_dropout_prob: float = 0.1,
                 num_classes: int = 1000, use_qknorm: bool = False, use_swiglu: bool = True, use_rope: bool = True,
                 use_rmsnorm: bool = True, wo_shift: bool = False, use_pos_embed: bool = True):
        super().__init__()
        s_patch, x_patch = as_pair(patch_size, "patch_size")
        if s_patch != x_patch:
            raise ValueError(f"patch_size {patch_size!r}: trunk and head patch sizes must be equal here "
                             "(the official code then repeats conditioning tokens out of spatial order).")
        if input_size % x_patch:
            raise ValueError(f"input_size {input_size} is not divisible by patch_size {x_patch}.")
        enc_hidden, dec_hidden = as_pair(hidden_size, "hidden_size")
        enc_depth, dec_depth = as_pair(depth, "depth")
        enc_heads, dec_heads = as_pair(num_heads, "num_heads")
        self.in_channels = self.out_channels = in_channels
        self.patch_size = x_patch
        self.num_classes = num_classes
        self.num_encoder_blocks = enc_depth
        grid = input_size // x_patch

        self.s_embedder = PatchEmbed(s_patch, in_channels, enc_hidden)
        self.x_embedder = PatchEmbed(x_patch, in_channels, dec_hidden)
        self.s_projector = nn.Linear(enc_hidden, dec_hidden) if enc_hidden != dec_hidden else nn.Identity()
        self.t_embedder = GaussianFourierEmbedding(enc_hidden)
        self.y_embedder = LabelEmbedder(num_classes, enc_hidden, class_dropout_prob)
        if use_pos_embed:
            self.pos_embed = nn.Parameter(sincos_pos_embed_2d(enc_hidden, grid)[None], requires_grad=False)
        else:
            self.pos_embed = None
        # The official forward always uses the RoPE tables (use_rope=False crashes there); here it really disables it.
        if use_rope:
            self.enc_feat_rope = VisionRotaryEmbeddingFast(enc_hidden // enc_heads // 2, grid)
            self.dec_feat_rope = VisionRotaryEmbeddingFast(dec_hidden // dec_heads // 2, grid)
        else:
            self.enc_feat_rope = self.dec_feat_rope = None
        block_flags = dict(mlp_ratio=mlp_ratio, use_qknorm=use_qknorm, use_swiglu=use_swiglu,
                           use_rmsnorm=use_rmsnorm, wo_shift=wo_shift)
        self.blocks = nn.ModuleList(
            [AdaLNBlock(enc_hidden, enc_heads, **block_flags) for _ in range(enc_depth)]
            + [AdaLNBlock(dec_hidden, dec_heads, **block_flags) for _ in range(dec_depth)])
        self.final_layer = FinalLayer(dec_hidden, x_patch * x_patch * in_channels, use_rmsnorm)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Official init (xavier branch not taken): Linear layers keep PyTorch defaults, then special cases."""
        for embed in (self.x_embedder, self.s_embedder):
            w = embed.proj.weight.data
            nn.init.xavier_uniform_(w.view(w.shape[0], -1))
            nn.init.zeros_(embed.proj.bias)
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        zero_adaln_and_final(self.blocks, self.final_layer)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        t_emb = self.t_embedder(t)                                        # (B, H_enc)
        c = F.silu(t_emb + self.y_embedder(y, self.training))
        s = self.s_embedder(x)
        if self.pos_embed is not None:
            s = s + self.pos_embed
        for block in self.blocks[: self.num_encoder_blocks]:
            s = block(s, c, self.enc_feat_rope)
        s = self.s_projector(F.silu(t_emb.unsqueeze(1) + s))             # only the time is re-injected
        h = self.x_embedder(x)
        for block in self.blocks[self.num_encoder_blocks:]:
            h = block(h, s, self.dec_feat_rope)                          # per-token conditioning
        return unpatchify(self.final_layer(h, s), self.out_channels, self.patch_size)

    def forward_with_cfg(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, cfg_scale: float,
                         cfg_interval: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
        """Official CFG entry point on a doubled batch [z; z] with labels [y; null] (docs/reference.md §3.3).

        Guided = uncond + s * (cond - uncond) where t_min <= t <= t_max (inclusive, per sample), else cond;
        returned duplicated for both halves. No host sync: the interval test is a tensor mask.
        """
        t_min, t_max = cfg_interval
        if not t_min < t_max:
            raise ValueError(f"cfg_interval must have t_min < t_max, got {cfg_interval}.")
        half = x[: x.shape[0] // 2]
        out = self.forward(torch.cat([half, half]), t, y)
        cond, uncond = out.chunk(2)
        t_half = t[: half.shape[0]]
        inside = ((t_half >= t_min) & (t_half <= t_max)).view(-1, 1, 1, 1)
        guided = torch.where(inside, uncond + cfg_scale * (cond - uncond), cond)
        return torch.cat([guided, guided])

    def forward_with_autoguidance(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, cfg_scale: float,
                                  additional_model_forward: Callable[..., torch.Tensor],
                                  cfg_interval: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
        """weak + s * (main - weak) inside the inclusive interval, else main; both on the same labels."""
        t_min, t_max = cfg_interval
        out = self.forward(x, t, y)
        weak = additional_model_forward(x, t, y)
        inside = ((t >= t_min) & (t <= t_max)).view(-1, 1, 1, 1)
        return torch.where(inside, weak + cfg_scale * (out - weak), out)
