"""The stage-1 DINO discriminator (official `disc/dinodisc.py` + `disc/discriminator.py`, docs/reference.md §5.5).

    x (B,3,H,W) in [-1,1] -> frozen DINO ViT (models/dino_backbone.py): 1 + len(key_depths) feature maps
    (B, C, T), T = (224/patch)^2 = 784 -> one head per map -> logits (B, heads*T), heads concatenated in
    feature order (last block first).

Each head (official module names, so the state dict is the official `disc` checkpoint entry key for key):
    heads.k.0      = [SNConv1d(C,C,1), BatchNormLocal(C), LeakyReLU(0.2)]
    heads.k.1.fn   = [SNConv1d(C,C,ks, padding ks//2, circular over the token sequence), BatchNormLocal, LeakyReLU]
                     combined as (fn(x) + x) / sqrt(2)
    heads.k.2      = SNConv1d(C,1,1)
SN = torch's hook-based `spectral_norm` (1 power iteration, dim 0, eps 1e-12): keys `weight_orig`, `weight_u`,
`weight_v`. BatchNormLocal (norm_type 'bn', virtual batch 1) is a per-sample, per-channel normalisation over the
tokens in float32 (biased variance, eps norm_eps) with an affine weight/bias; it has no running statistics, so
train and eval differ ONLY in spectral norm: a train-mode call runs one power iteration and updates `weight_u`,
`weight_v` in place; an eval-mode call uses the stored vectors. The official D step calls the discriminator twice
in train mode (fake, then real: two iterations), the G step once in eval mode; `forward(..., power_iteration=)`
chooses per call without touching the caller's mode.

Under XLA: the power iteration is a few matrix-vector products and in-place buffer writes inside `no_grad`; it
traces into the step graph like any other op (no host sync, no data-dependent shape) and the updated u, v are
graph outputs. Under SPMD, give the buffers (`spectral_norm_buffers()`) an explicit sharding, e.g. replicated (they
are tiny), before the first step: unannotated, they come back from the first graph with the sharding XLA
propagated onto them, and the second call compiles a second graph. Call the module the same way in every step of
a phase so the graph is the same. On CUDA, wrap with DDP `broadcast_buffers=False` (u, v evolve identically on
every rank when the weights do; broadcasting the frozen backbone each step would be wasted bandwidth).

Known official quirks kept (tests/golden/official_tiny_stage1/manifest.json `quirks`): a freshly built
discriminator has random, un-iterated u, v (an eval call before any train call divides the last conv by a random
projection); the conv biases before BatchNormLocal are dead parameters (zero gradient) but stay in the state dict.
"""
import math
from collections.abc import Mapping

import torch
from torch import nn

from rae_xla.models.dino_backbone import RANDOM, FrozenDino, build_backbone, resolve_recipe

ARCH_FIELDS = ("dino_ckpt_path", "ks", "key_depths", "norm_type", "using_spec_norm", "norm_eps", "recipe")
LEAKY_SLOPE = 0.2
SN_EPS = 1e-12


class BatchNormLocal(nn.Module):
    """Per-sample, per-channel normalisation over the last axis, in float32: (B,C,T) -> (B,C,T) float32."""

    def __init__(self, num_features: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, keepdim=True, unbiased=False)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return x * self.weight[None, :, None] + self.bias[None, :, None]


class ResidualBlock(nn.Module):
    """(fn(x) + x) / sqrt(2); `fn` keeps the official attribute name (keys `heads.k.1.fn.*`)."""

    def __init__(self, fn: nn.Module):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.fn(x) + x) * (1 / math.sqrt(2))   # the official multiplies by 1/sqrt(2), not divides


def _conv(c_in: int, c_out: int, kernel: int, spectral: bool) -> nn.Conv1d:
    conv = nn.Conv1d(c_in, c_out, kernel_size=kernel, padding=kernel // 2, padding_mode="circular")
    if spectral:
        conv = nn.utils.spectral_norm(conv, name="weight", n_power_iterations=1, dim=0, eps=SN_EPS)
    return conv


def _block(channels: int, kernel: int, eps: float, spectral: bool) -> nn.Sequential:
    # LeakyReLU is in place in the official code; out of place here (same numbers, friendlier to functionalization).
    return nn.Sequential(_conv(channels, channels, kernel, spectral), BatchNormLocal(channels, eps),
                         nn.LeakyReLU(LEAKY_SLOPE))


def make_head(channels: int, ks: int, norm_eps: float, spectral: bool) -> nn.Sequential:
    """One discriminator head: (B, C, T) -> (B, 1, T)."""
    return nn.Sequential(_block(channels, 1, norm_eps, spectral),
                         ResidualBlock(_block(channels, ks, norm_eps, spectral)),
                         _conv(channels, 1, 1, spectral))


class DinoDiscriminator(nn.Module):
    """Frozen DINO backbone + trainable heads. `parameters()` and `state_dict()` cover the heads only."""

    def __init__(self, backbone: FrozenDino, *, ks: int, norm_eps: float, using_spec_norm: bool):
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleList([make_head(backbone.embed_dim, ks, norm_eps, using_spec_norm)
                                    for _ in range(backbone.num_features)])

    @property
    def num_logits(self) -> int:
        """Logits per image: heads * tokens (3920 for the released S_8 recipe)."""
        return len(self.heads) * self.backbone.tokens

    def logits_per_head(self, x: torch.Tensor, *, power_iteration: bool | None = None) -> list[torch.Tensor]:
        """x (B,3,H,W) in [-1,1] -> [(B, tokens)] per head, in feature order. See `forward` for `power_iteration`."""
        features = self.backbone(x)
        with _spectral_mode(self.heads, power_iteration):
            # float32 features for the float32 heads (a no-op unless the backbone runs in another dtype).
            return [head(f.float()).flatten(1) for head, f in zip(self.heads, features)]

    def forward(self, x: torch.Tensor, *, power_iteration: bool | None = None) -> torch.Tensor:
        """x (B,3,H,W) in [-1,1] (any H, W: resized to 224) -> logits (B, heads*tokens), float32.

        power_iteration: None follows the module's mode (train: one spectral-norm power iteration, updating
        `weight_u`/`weight_v` in place; eval: stored u, v); True/False forces it for this call only.
        """
        return torch.cat(self.logits_per_head(x, power_iteration=power_iteration), dim=1)

    def spectral_norm_buffers(self) -> dict[str, torch.Tensor]:
        """name -> `weight_u` / `weight_v` buffer: the state a train-mode call updates in place (annotate these
        under SPMD, see the module docstring)."""
        return {name: buf for name, buf in self.named_buffers() if name.endswith(("weight_u", "weight_v"))}

    def load_state_dict(self, state_dict: Mapping, strict: bool = True, assign: bool = False):
        """The official `disc` entry (heads only); strict by default, mismatches raise naming the keys."""
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


class _spectral_mode:
    """Sets the heads' training flag (which drives the spectral-norm hooks) for one call, then restores it."""

    def __init__(self, heads: nn.Module, train: bool | None):
        self.heads, self.train, self.saved = heads, train, None

    def __enter__(self):
        if self.train is not None:
            self.saved = [m.training for m in self.heads.modules()]
            self.heads.train(self.train)

    def __exit__(self, *exc):
        if self.saved is not None:
            for module, mode in zip(self.heads.modules(), self.saved):
                module.training = mode
        # Each spectral-norm hook leaves its result (weight_orig / sigma) on the conv as a plain attribute until
        # the next call recomputes it; nothing reads it in between (autograd keeps its own reference for the
        # backward). Dropped here, so that a step leaves no tensors of its own on the module: a captured XLA step
        # (runtime/xla_capture.py) would otherwise see 3 per head updated outside its state, and the lazy graph
        # computes them as extra outputs. The `weight` key was never in the state dict (weight_orig is).
        for module in self.heads.modules():
            if "weight_orig" in module._parameters:
                module.weight = None


def build_discriminator(arch: Mapping, recipe=None) -> DinoDiscriminator:
    """The official `gan.disc.arch` dict -> DinoDiscriminator with its backbone loaded.

    arch: `dino_ckpt_path` (released-format file, gs:// path, or 'random' for a seeded random backbone), `ks`
      (head conv kernel, 9), `key_depths` ((2,5,8,11)), `norm_type` ('bn'), `using_spec_norm` (True),
      `norm_eps` (1e-6), `recipe` ('S_8').
    recipe: a recipe name or a dict of backbone sizes (`depth`, `embed_dim`, `num_heads`, `patch_size`,
      `mlp_ratio`, `in_chans`, `norm_eps`, `key_depths`) replacing arch['recipe']; as in the official code,
      arch's `key_depths` and `norm_eps` override the recipe's.
    """
    arch = dict(arch)
    unknown = sorted(set(arch) - set(ARCH_FIELDS))
    needed = [f for f in ARCH_FIELDS if f not in arch and not (f == "recipe" and recipe is not None)]
    if unknown or needed:
        raise ValueError(f"discriminator arch: unknown fields {unknown}, missing fields {needed}; the official "
                         f"gan.disc.arch has exactly {ARCH_FIELDS}.")
    if arch["norm_type"] != "bn":
        raise ValueError(f"discriminator norm_type {arch['norm_type']!r} is not supported; the official configs use "
                         "'bn' (BatchNormLocal).")
    sizes = resolve_recipe(recipe if recipe is not None else arch["recipe"], key_depths=arch["key_depths"],
                           norm_eps=arch["norm_eps"])
    backbone = build_backbone(sizes, arch["dino_ckpt_path"])
    return DinoDiscriminator(backbone, ks=int(arch["ks"]), norm_eps=float(arch["norm_eps"]),
                             using_spec_norm=bool(arch["using_spec_norm"]))


__all__ = ["RANDOM", "BatchNormLocal", "DinoDiscriminator", "build_discriminator", "make_head"]
