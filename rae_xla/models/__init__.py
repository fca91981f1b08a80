"""Single-device stage-1/stage-2 networks with the official parameter names (see docs/readme/models.md)."""
from torch import nn

from rae_xla.models.presets import PRESETS, stage2_preset

ARCHS = ("ditdh", "lightningdit")


def build_stage2_model(arch: str, **kwargs) -> nn.Module:
    """'ditdh' -> DiTDH(**kwargs); 'lightningdit' -> LightningDiT(**kwargs) (official keyword arguments)."""
    if arch == "ditdh":
        from rae_xla.models.ditdh import DiTDH
        return DiTDH(**kwargs)
    if arch == "lightningdit":
        from rae_xla.models.dit import LightningDiT
        return LightningDiT(**kwargs)
    raise ValueError(f"unknown stage-2 arch {arch!r}; use one of {ARCHS}.")


__all__ = ["ARCHS", "PRESETS", "build_stage2_model", "stage2_preset"]
