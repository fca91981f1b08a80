"""LightningDiT: the single-stream DiT baseline of RAE (docs/reference.md §3.4); official parameter names."""
import torch
from torch import nn

from rae_xla.models.blocks import AdaLNBlock, FinalLayer, unpatchify, zero_adaln_and_final
from rae_xla.models.layers import (GaussianFourierEmbedding, LabelEmbedder, PatchEmbed, VisionRotaryEmbeddingFast,
                                   sincos_pos_embed_2d)


class LightningDiT(nn.Module):
    """forward(x (B, C, G, G), t (B,) flow time in [0, 1], y (B,) int64) -> (B, C, G, G).

    Conditioning c = t_emb + y_emb (no SiLU, unlike DiT^DH). With `learn_sigma` the network predicts 2C
    channels and the second half is dropped, as in the official forward. `use_gembed` is accepted and unused
    (as in the official code).
    """

    def __init__(self, input_size: int = 16, patch_size: int = 1, in_channels: int = 768, hidden_size: int = 1152,
                 depth: int = 28, num_heads: int = 16, mlp_ratio: float = 4.0, class_dropout_prob: float = 0.1,
                 num_classes: int = 1000, learn_sigma: bool = False, use_qknorm: bool = False,
                 use_swiglu: bool = True, use_rope: bool = True, use_rmsnorm: bool = True, wo_shift: bool = False,
                 use_pos_embed: bool = True, use_gembed: bool = False):
        super().__init__()
        if input_size % patch_size:
            raise ValueError(f"input_size {input_size} is not divisible by patch_size {patch_size}.")
        self.in_channels = in_channels
        self.out_channels = 2 * in_channels if learn_sigma else in_channels
        self.patch_size = patch_size
        self.num_classes = num_classes
        grid = input_size // patch_size

        self.x_embedder = PatchEmbed(patch_size, in_channels, hidden_size)
        self.t_embedder = GaussianFourierEmbedding(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size, class_dropout_prob)
        if use_pos_embed:
            self.pos_embed = nn.Parameter(sincos_pos_embed_2d(hidden_size, grid)[None], requires_grad=False)
        else:
            self.pos_embed = None
        self.feat_rope = VisionRotaryEmbeddingFast(hidden_size // num_heads // 2, grid) if use_rope else None
        self.blocks = nn.ModuleList([
            AdaLNBlock(hidden_size, num_heads, mlp_ratio=mlp_ratio, use_qknorm=use_qknorm, use_swiglu=use_swiglu,
                       use_rmsnorm=use_rmsnorm, wo_shift=wo_shift) for _ in range(depth)])
        self.final_layer = FinalLayer(hidden_size, patch_size * patch_size * self.out_channels, use_rmsnorm)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Official init: xavier-uniform for every Linear with zero bias, then the DiT special cases."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        w = self.x_embedder.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        zero_adaln_and_final(self.blocks, self.final_layer)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.x_embedder(x)
        if self.pos_embed is not None:
            h = h + self.pos_embed
        c = self.t_embedder(t) + self.y_embedder(y, self.training)
        for block in self.blocks:
            h = block(h, c, self.feat_rope)
        out = unpatchify(self.final_layer(h, c), self.out_channels, self.patch_size)
        return out[:, : self.in_channels]
