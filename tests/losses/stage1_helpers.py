"""Shared pieces of the stage-1 parity tests: the golden discriminator and the tiny decoder of `adaptive_weight`."""
import torch
import torch.nn.functional as F
from torch import nn

from rae_xla.models.discriminator import build_discriminator
from tests import golden

FOLDER = "official_tiny_stage1"


def manifest_case(name: str) -> dict:
    return golden.manifest(FOLDER)["cases"][name]


def golden_discriminator():
    """The golden tiny discriminator: the official factory's arguments, backbone file and saved state dict."""
    case = manifest_case("discriminator")
    arch = dict(case["arch"], dino_ckpt_path=str(golden.path(FOLDER, case["arch"]["dino_ckpt_path"])))
    disc = build_discriminator(arch, recipe=case["recipe"])
    disc.load_state_dict(golden.load(case["files"]["state_dict"], FOLDER))
    return disc


class TinyDecoder(nn.Module):
    """manifest adaptive_weight.tiny_decoder: z (B, g*g, cz) -> Linear -> exact GELU -> decoder_pred -> unpatchify."""

    def __init__(self, cz: int, hidden: int, patch: int, grid: int):
        super().__init__()
        self.patch, self.grid = patch, grid
        self.decoder_embed = nn.Linear(cz, hidden)
        self.decoder_pred = nn.Linear(hidden, patch * patch * 3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        g, p, batch = self.grid, self.patch, z.shape[0]
        x = self.decoder_pred(F.gelu(self.decoder_embed(z))).reshape(batch, g, g, p, p, 3)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(batch, 3, g * p, g * p)


SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


def lpips_like(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """manifest adaptive_weight.losses.lpips_like (a stand-in with LPIPS's structure, no VGG)."""
    shift = torch.tensor(SHIFT, device=a.device).view(1, 3, 1, 1)
    scale = torch.tensor(SCALE, device=a.device).view(1, 3, 1, 1)
    total = 0.0
    for k in (1, 2, 4):
        fa, fb = (a - shift) / scale, (b - shift) / scale
        if k > 1:
            fa, fb = F.avg_pool2d(fa, k), F.avg_pool2d(fb, k)
        fa = fa / (torch.sqrt((fa ** 2).sum(1, keepdim=True)) + 1e-10)
        fb = fb / (torch.sqrt((fb ** 2).sum(1, keepdim=True)) + 1e-10)
        total = total + ((fa - fb) ** 2).sum(1).mean((1, 2))
    return total.mean()
