"""LPIPS-VGG perceptual distance (v0.1), as the official stage-1 trainer uses it (docs/reference.md §5.6).

    x, y (B,3,H,W) in [-1,1] -> (x - shift)/scale -> VGG16 features at relu1_2, relu2_2, relu3_3, relu4_3,
    relu5_3 (64, 128, 256, 512, 512 channels) -> unit-normalise over channels (eps 1e-10) -> squared difference
    -> 1x1 conv (`lin{0..4}`, no bias) -> spatial mean -> sum over the 5 layers -> (B,) distances.

Weights:
- the five linear heads: `lpips/weights/v0.1/vgg.pth`, shipped in the `lpips` wheel (the same heads as the
  official `vgg.pth` from taming-transformers), read from the installed package without importing it;
- the VGG16 backbone: torchvision's ImageNet weights `vgg16-397923af.pth`, from torchvision's cache
  ($TORCH_HOME/hub/checkpoints/, `backbone='imagenet'`) or any path to a torchvision-format VGG16 state dict
  (`features.{i}.weight|bias`; a file with only the `features.*` entries is enough), or `backbone='random'`: a
  seeded random VGG (He init, as torchvision's) for tests and the quickstart -- a real perceptual loss needs the
  ImageNet weights.
Names are the official module's (`scaling_layer.{shift,scale}`, `net.slice{1..5}.{i}.*`, `lin{k}.model.1.weight`),
so `lpips.LPIPS(net='vgg')` and the official LPIPS state dicts load strictly. The network is frozen and always in
eval mode (`train()` is a no-op). Deliberate difference: both images go through VGG in one batch of 2B (one
pass instead of two; the numbers are the same up to float rounding).
"""
import importlib.util
import os

import torch
from torch import nn

from rae_xla.checkpoint.official import CheckpointMismatchError, read_checkpoint

VGG16_FILE = "vgg16-397923af.pth"          # torchvision's ImageNet VGG16 weights (IMAGENET1K_V1)
VGG16_URL = f"https://download.pytorch.org/models/{VGG16_FILE}"
IMAGENET, RANDOM = "imagenet", "random"
# VGG16 `features` up to relu5_3: conv widths, 'M' = 2x2 max-pool. Layer indices equal torchvision's.
VGG16_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
# torchvision feature indices [start, end) of each slice, ending after relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.
SLICES = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))
CHANNELS = (64, 128, 256, 512, 512)
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
NORM_EPS = 1e-10


def torchvision_cache_path() -> str:
    """Where torchvision caches the ImageNet VGG16 weights ($TORCH_HOME/hub/checkpoints/vgg16-397923af.pth)."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", VGG16_FILE)


def packaged_heads_path() -> str:
    """The LPIPS v0.1 VGG linear heads shipped in the `lpips` wheel."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("LPIPS needs the `lpips` package for its linear heads: pip install lpips==0.1.4.")
    return os.path.join(spec.submodule_search_locations[0], "weights", "v0.1", "vgg.pth")


def _vgg16_layers() -> list[nn.Module]:
    layers, c_in = [], 3
    for width in VGG16_CONFIG:
        if width == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        conv = nn.Conv2d(c_in, width, kernel_size=3, padding=1)
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")   # torchvision's VGG init
        nn.init.zeros_(conv.bias)
        layers += [conv, nn.ReLU()]
        c_in = width
    return layers


class VGG16Slices(nn.Module):
    """VGG16 features cut into the 5 LPIPS slices: (B,3,H,W) -> 5 maps (B, CHANNELS[k], H/2^k, W/2^k)."""

    def __init__(self):
        super().__init__()
        layers = _vgg16_layers()
        for k, (start, end) in enumerate(SLICES):
            block = nn.Sequential()
            for index in range(start, end):
                block.add_module(str(index), layers[index])      # torchvision's index: keys net.slice{k}.{index}.*
            self.add_module(f"slice{k + 1}", block)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for k in range(len(SLICES)):
            x = getattr(self, f"slice{k + 1}")(x)
            features.append(x)
        return features

    def load_torchvision(self, state: dict, source: str) -> None:
        """Loads `features.{i}.*` entries of a torchvision VGG16 state dict (other entries are ignored)."""
        mapped, expected = {}, self.state_dict()
        for k, (start, end) in enumerate(SLICES):
            for index in range(start, end):
                for name in ("weight", "bias"):
                    target = f"slice{k + 1}.{index}.{name}"
                    if target in expected:
                        mapped[target] = state.get(f"features.{index}.{name}")
        missing = [k for k, v in mapped.items() if v is None]
        shapes = [k for k, v in mapped.items() if v is not None and tuple(v.shape) != tuple(expected[k].shape)]
        if missing or shapes:
            raise CheckpointMismatchError(f"{source} is not a torchvision VGG16 state dict: missing features "
                                          f"entries for {missing[:6]}, wrong shapes for {shapes[:6]}.")
        self.load_state_dict(mapped, strict=True)


class NetLinLayer(nn.Module):
    """Dropout (inactive: the network is always in eval mode) + 1x1 conv C -> 1 without bias."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, kernel_size=1, bias=False))


class ScalingLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale


class LPIPS(nn.Module):
    """Frozen LPIPS-VGG: forward(x, y) with x, y (B,3,H,W) in [-1,1] -> (B,) distances (take .mean() for the loss).

    backbone: 'imagenet' (torchvision's cache), a path (local or gs://) to a torchvision VGG16 state dict, or
    'random'. heads: None (the `lpips` wheel's vgg.pth) or a path to an LPIPS-format `lin{k}.model.1.weight` file.
    """

    def __init__(self, backbone: str = IMAGENET, heads: str | None = None):
        super().__init__()
        self.scaling_layer = ScalingLayer()
        self.net = VGG16Slices()
        for k, channels in enumerate(CHANNELS):
            self.add_module(f"lin{k}", NetLinLayer(channels))
        self._load_backbone(backbone)
        self._load_heads(heads or packaged_heads_path())
        self.requires_grad_(False)
        self.eval()

    def _load_backbone(self, backbone: str) -> None:
        if backbone == RANDOM:
            return
        path = torchvision_cache_path() if backbone == IMAGENET else backbone
        if backbone == IMAGENET and not os.path.exists(path):
            raise FileNotFoundError(
                f"LPIPS needs torchvision's ImageNet VGG16 weights and found none at {path}. Download {VGG16_URL} "
                f"to that path (or set $TORCH_HOME), or pass the file's path as the LPIPS backbone; 'random' gives "
                "a random VGG (tests and the quickstart only).")
        try:
            state = read_checkpoint(path)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"LPIPS VGG16 backbone file {path!r} not found ({err}). Download {VGG16_URL} and "
                                    f"point the LPIPS backbone at it, or put it at {torchvision_cache_path()} "
                                    "and use 'imagenet'.") from err
        self.net.load_torchvision(state, repr(path))

    def _load_heads(self, path: str) -> None:
        state = read_checkpoint(path)
        heads = {k: v for k, v in self.state_dict().items() if k.startswith("lin")}
        if sorted(state) != sorted(heads):
            raise CheckpointMismatchError(f"LPIPS heads file {path!r} holds {sorted(state)}; expected {sorted(heads)} "
                                          "(lpips/weights/v0.1/vgg.pth format).")
        self.load_state_dict(state, strict=False)   # the heads only; the names were checked just above

    def train(self, mode: bool = True) -> "LPIPS":
        del mode
        return super().train(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        features = self.net(self.scaling_layer(torch.cat([x, y], dim=0)))
        total = 0.0
        for k, f in enumerate(features):
            f = f / (torch.sqrt(torch.sum(f ** 2, dim=1, keepdim=True)) + NORM_EPS)
            diff = (f[:batch] - f[batch:]) ** 2                                       # (B, C_k, h, w)
            total = total + getattr(self, f"lin{k}").model(diff).mean(dim=(2, 3))     # (B, 1)
        return total.flatten()
