"""RAE.encode: the frozen encoder's precision switch and the resize matrices kept as device buffers."""
import os

import pytest
import torch

from rae_xla.models import rae as rae_lib
from rae_xla.models.rae import RAE
from tests import golden


@pytest.fixture(scope="module")
def spec():
    return golden.manifest()["cases"]["rae"]


def _rae(spec, **overrides):
    return RAE.from_pretrained(
        encoder=os.path.join(golden.TINY, spec["encoder_dir"]),
        decoder_config=os.path.join(golden.TINY, spec["decoder_config_dir"]),
        stats=os.path.join(golden.TINY, spec["latent_stats"]), encoder_input_size=spec["encoder_input_size"],
        decoder_patch_size=spec["decoder_patch_size"], **overrides).eval()


def test_fp32_encoder_ignores_an_enclosing_bf16_autocast(spec):
    rae, io = _rae(spec), golden.load("rae.io.pt")
    plain = rae.encode(io["image"])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = rae.encode(io["image"])
    assert inside.dtype == torch.float32
    torch.testing.assert_close(inside, plain, atol=0, rtol=0)
    torch.testing.assert_close(plain, io["latent"], atol=2e-5, rtol=1e-5)  # The official fp32 latents.


def test_bf16_encoder_runs_under_autocast_and_returns_fp32(spec):
    rae, io = _rae(spec, encoder_precision="bf16"), golden.load("rae.io.pt")
    latent = rae.encode(io["image"])
    assert latent.dtype == torch.float32
    error = (latent - io["latent"]).abs().max().item()
    assert 0 < error < 0.25 * io["latent"].abs().max().item()  # bf16 rounding: close, not equal.


def test_resize_matrices_are_built_once_as_buffers_that_follow_to(spec, monkeypatch):
    rae, io = _rae(spec), golden.load("rae.io.pt")
    height, width = io["image"].shape[-2:]
    first = rae.encode(io["image"])
    rows = getattr(rae, f"resize_{height}x{width}_rows")
    calls = []
    monkeypatch.setattr(rae_lib, "_bicubic_matrix", lambda *a: calls.append(a) or torch.zeros(1))
    second = rae.encode(io["image"])
    assert calls == [] and getattr(rae, f"resize_{height}x{width}_rows") is rows
    torch.testing.assert_close(second, first, atol=0, rtol=0)
    assert not any(k.startswith("resize_") for k in rae.state_dict())  # Not in checkpoints.
    rae.to(torch.float64)
    assert getattr(rae, f"resize_{height}x{width}_rows").dtype == torch.float64  # Buffers move with the module.
    monkeypatch.undo()
    assert rae_lib._bicubic_matrix(height, spec["encoder_input_size"]).dtype == torch.float32  # Cache untouched.


def test_unknown_precision_is_refused(spec):
    with pytest.raises(ValueError, match="encoder_precision='fp16'"):
        _rae(spec, encoder_precision="fp16")
