"""Stage-2 model presets: official keyword arguments for 16x16, 768-channel latents (DINOv2-B at 256 px).

The released models are `DiTDH-XL` (839M) and its autoguidance model `DiTDH-S-guidance` (= DiTDH-S, 196M)
(docs/reference.md §8.2, §3.5-§3.6). For 512 px pass `input_size=32` as an override.
"""
import copy

# Flags of every released stage-2 config (configs/stage2/*): SwiGLU, RoPE, RMSNorm, no qk-norm, shift on.
_COMMON = dict(input_size=16, patch_size=1, in_channels=768, mlp_ratio=4.0, class_dropout_prob=0.1,
               num_classes=1000, use_qknorm=False, use_swiglu=True, use_rope=True, use_rmsnorm=True,
               wo_shift=False, use_pos_embed=True)


def _ditdh(hidden: int, depth: int, heads: int) -> dict:
    # Every DiT^DH size uses the same 2-block, 2048-wide, 16-head DDT head.
    return dict(arch="ditdh", hidden_size=[hidden, 2048], depth=[depth, 2], num_heads=[heads, 16], **_COMMON)


def _dit(hidden: int, depth: int, heads: int) -> dict:
    return dict(arch="lightningdit", hidden_size=hidden, depth=depth, num_heads=heads, learn_sigma=False, **_COMMON)


PRESETS = {
    "DiTDH-S": _ditdh(384, 12, 6),
    "DiTDH-B": _ditdh(768, 12, 12),
    "DiTDH-L": _ditdh(1024, 24, 16),
    "DiTDH-XL": _ditdh(1152, 28, 16),
    "DiTDH-S-guidance": _ditdh(384, 12, 6),      # the released autoguidance model (DiTDH-S_ep14 / _ep20)
    "DiT-S": _dit(384, 12, 6),
    "DiT-B": _dit(768, 12, 12),
    "DiT-L": _dit(1024, 24, 16),
    "DiT-XL": _dit(1152, 28, 16),
}


def stage2_preset(name: str, **overrides) -> dict:
    """PRESETS[name] with `overrides` applied -> dict(arch=..., **official kwargs). Unknown keys are errors."""
    if name not in PRESETS:
        raise ValueError(f"unknown stage-2 preset {name!r}; choose one of {sorted(PRESETS)}.")
    spec = copy.deepcopy(PRESETS[name])
    unknown = set(overrides) - set(spec)
    if unknown:
        raise ValueError(f"preset {name!r} has no field(s) {sorted(unknown)}; fields: {sorted(spec)}.")
    spec.update(overrides)
    return spec
