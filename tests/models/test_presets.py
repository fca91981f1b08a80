"""Presets build exactly the released architectures (keys, shapes, parameter counts), on the meta device."""
import pytest
import torch

from rae_xla.models import PRESETS, build_stage2_model, stage2_preset
from rae_xla.models.flops import ditdh_forward_flops
from rae_xla.models.vit_decoder import ViTDecoder
from tests import golden

STAGE2 = {"DiTDH-XL": "DiTDH-XL_256", "DiTDH-S-guidance": "DiTDH-S_256_guidance"}
DECODERS = {"ViT-B": "decoder_ViTB_dinov2B_256", "ViT-L": "decoder_ViTL_dinov2B_256",
            "ViT-XL": "decoder_ViTXL_dinov2B_256"}


def _shapes(module):
    return {k: list(v.shape) for k, v in module.state_dict().items()}


@pytest.mark.parametrize("preset", sorted(STAGE2))
def test_stage2_preset_matches_released_checkpoint(preset):
    released = golden.released_keys()[STAGE2[preset]]
    spec = stage2_preset(preset)
    assert {k: spec[k] for k in released["config"]} == released["config"]
    with torch.device("meta"):
        model = build_stage2_model(**spec)
    assert _shapes(model) == released["keys"]
    assert sum(p.numel() for p in model.parameters()) == released["num_params"]
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == released["num_trainable"]


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_decoder_preset_matches_released_checkpoint(name):
    released = golden.released_keys()[DECODERS[name]]
    with torch.device("meta"):
        decoder = ViTDecoder.from_preset(name, in_channels=768, num_patches=256, patch_size=16)
    assert _shapes(decoder) == released["keys"]
    assert sum(p.numel() for p in decoder.parameters()) == released["num_params"]


def test_released_decoder_config_json_is_accepted(tmp_path):
    """The released configs/decoder/*/config.json form (here the golden tiny one) gives the same geometry."""
    decoder = ViTDecoder.from_preset(f"{golden.TINY}/decoder_tiny", in_channels=32, num_patches=16, patch_size=8)
    expected = golden.manifest()["cases"]["rae"]["decoder_state_dict_keys"]
    assert _shapes(decoder) == expected
    (tmp_path / "config.json").write_text('{"decoder_hidden_size": 8}')
    with pytest.raises(ValueError, match="lacks"):
        ViTDecoder.from_preset(str(tmp_path), in_channels=32, num_patches=16)


def test_every_preset_builds_and_unknown_names_fail():
    for name in PRESETS:
        with torch.device("meta"):
            build_stage2_model(**stage2_preset(name))
    with pytest.raises(ValueError, match="unknown stage-2 preset"):
        stage2_preset("DiTDH-XXL")
    with pytest.raises(ValueError, match="no field"):
        stage2_preset("DiTDH-S", hidden=3)
    assert stage2_preset("DiTDH-XL", input_size=32)["input_size"] == 32


def test_flop_count_of_ditdh_xl():
    """161.6 GMAC forward: the paper's 146 plus the head's per-token adaLN (2 x 6.4 G) and final adaLN (2.1 G),
    which the official model really computes (its head conditioning is one vector per token)."""
    spec = stage2_preset("DiTDH-XL")
    tokens, enc, dec = 256, 1152, 2048
    per_token_adaln = 2 * tokens * dec * 6 * dec + tokens * dec * 2 * dec
    paper_style = ditdh_forward_flops(**spec) / 2 - per_token_adaln + 2 * dec * 6 * dec + dec * 2 * dec
    assert abs(paper_style / 1e9 - 146.0) < 1.0
    assert enc * 6 * enc * 2 < ditdh_forward_flops(**spec)


@pytest.mark.parametrize("flags", [dict(wo_shift=True), dict(patch_size=2), dict(patch_size=[2, 2], wo_shift=True),
                                   dict(use_rope=False, use_pos_embed=False)])
def test_official_crash_settings_work(flags):
    """wo_shift=True and patch_size>1 crash in the official DDT; here they run forward and backward."""
    cfg = dict(input_size=4, in_channels=8, hidden_size=[32, 48], depth=[1, 1], num_heads=[2, 2], num_classes=10)
    model = build_stage2_model("ditdh", **{**cfg, **flags}).train()
    for p in model.parameters():                         # leave the zero init so gradients reach every input
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.1)
    x = torch.randn(2, 8, 4, 4, requires_grad=True)
    out = model(x, torch.rand(2), torch.randint(0, 10, (2,)))
    assert out.shape == x.shape
    out.square().mean().backward()
    assert x.grad.abs().sum() > 0
    if flags.get("wo_shift"):
        assert model.blocks[0].adaLN_modulation[1].out_features == 4 * 32
