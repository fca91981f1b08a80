"""Analytic forward FLOPs per image (docs/xla_notes.md §3 convention: 2 x multiply-adds, matmuls only;
norms, softmax and element-wise ops are ignored). Training ~ 3 x forward. Used for MFU.
"""
from rae_xla.models.layers import swiglu_hidden_width


def _pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def _attention_macs(tokens: int, width: int) -> int:
    # qkv + proj projections, then QK^T and AV (each tokens^2 * width).
    return 4 * tokens * width * width + 2 * tokens * tokens * width


def _mlp_macs(tokens: int, width: int, mlp_ratio: float, use_swiglu: bool) -> int:
    if use_swiglu:
        hidden = swiglu_hidden_width(width, mlp_ratio)
        return tokens * width * 2 * hidden + tokens * hidden * width
    return 2 * tokens * width * int(width * mlp_ratio)


def ditdh_forward_flops(input_size: int, patch_size, in_channels: int, hidden_size, depth, num_heads,
                        mlp_ratio: float = 4.0, use_swiglu: bool = True, wo_shift: bool = False, **_unused) -> int:
    """Forward FLOPs of one image through DiTDH(**kwargs) (extra official kwargs are accepted and ignored)."""
    patch = _pair(patch_size)[1]
    tokens = (input_size // patch) ** 2
    patch_in = in_channels * patch * patch
    enc_w, dec_w = _pair(hidden_size)
    enc_d, dec_d = _pair(depth)
    chunks = 4 if wo_shift else 6
    macs = tokens * patch_in * (enc_w + dec_w)                         # s_embedder + x_embedder
    macs += 512 * enc_w + enc_w * enc_w                                # Gaussian-Fourier t-MLP
    macs += enc_d * (enc_w * chunks * enc_w                            # adaLN on one vector per image
                     + _attention_macs(tokens, enc_w) + _mlp_macs(tokens, enc_w, mlp_ratio, use_swiglu))
    macs += tokens * enc_w * dec_w if enc_w != dec_w else 0            # s_projector
    macs += dec_d * (tokens * dec_w * chunks * dec_w                   # per-token adaLN in the head
                     + _attention_macs(tokens, dec_w) + _mlp_macs(tokens, dec_w, mlp_ratio, use_swiglu))
    macs += tokens * dec_w * 2 * dec_w + tokens * dec_w * patch_in     # final adaLN (per token) + linear
    return 2 * macs


def lightningdit_forward_flops(input_size: int, patch_size: int, in_channels: int, hidden_size: int, depth: int,
                               num_heads: int, mlp_ratio: float = 4.0, use_swiglu: bool = True,
                               wo_shift: bool = False, learn_sigma: bool = False, **_unused) -> int:
    tokens = (input_size // patch_size) ** 2
    patch_in = in_channels * patch_size * patch_size
    chunks = 4 if wo_shift else 6
    macs = tokens * patch_in * hidden_size + 512 * hidden_size + hidden_size * hidden_size
    macs += depth * (hidden_size * chunks * hidden_size + _attention_macs(tokens, hidden_size)
                     + _mlp_macs(tokens, hidden_size, mlp_ratio, use_swiglu))
    macs += hidden_size * 2 * hidden_size + tokens * hidden_size * patch_in * (2 if learn_sigma else 1)
    return 2 * macs


def vit_decoder_forward_flops(hidden_size: int, num_layers: int, intermediate_size: int, in_channels: int,
                              num_patches: int, patch_size: int = 16, num_channels: int = 3, **_unused) -> int:
    tokens = num_patches + 1                                           # + trainable CLS
    macs = num_patches * in_channels * hidden_size
    macs += num_layers * (_attention_macs(tokens, hidden_size) + 2 * tokens * hidden_size * intermediate_size)
    macs += tokens * hidden_size * patch_size * patch_size * num_channels
    return 2 * macs


def dinov2_forward_flops(input_size: int = 224, hidden_size: int = 768, num_layers: int = 12,
                         mlp_ratio: float = 4.0, patch_size: int = 14, num_register_tokens: int = 4) -> int:
    """DINOv2-with-registers (defaults: ViT-B/14 reg4 at 224 px, ~23.5 GMAC)."""
    patches = (input_size // patch_size) ** 2
    tokens = 1 + num_register_tokens + patches
    macs = patches * 3 * patch_size * patch_size * hidden_size
    macs += num_layers * (_attention_macs(tokens, hidden_size) + 2 * tokens * hidden_size * int(hidden_size * mlp_ratio))
    return 2 * macs


def stage2_forward_flops(arch: str, **kwargs) -> int:
    """Dispatch on the preset `arch` ('ditdh' | 'lightningdit')."""
    if arch == "ditdh":
        return ditdh_forward_flops(**kwargs)
    if arch == "lightningdit":
        return lightningdit_forward_flops(**kwargs)
    raise ValueError(f"unknown stage-2 arch {arch!r}.")


def vit_decoder_module_flops(decoder) -> int:
    """Forward FLOPs per image of a built ViTDecoder, its sizes read from its layers (works on the meta device)."""
    layer = decoder.decoder_layers[0]
    return vit_decoder_forward_flops(
        hidden_size=decoder.decoder_embed.out_features, num_layers=len(decoder.decoder_layers),
        intermediate_size=layer.intermediate.dense.out_features, in_channels=decoder.decoder_embed.in_features,
        num_patches=decoder.num_patches, patch_size=decoder.patch_size)
