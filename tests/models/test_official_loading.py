"""Released-file loading is strict and its errors say what differs."""
import os

import pytest
import torch

from rae_xla.checkpoint.official import CheckpointMismatchError, load_decoder, load_stage2, load_stats
from rae_xla.models import build_stage2_model
from rae_xla.models.vit_decoder import ViTDecoder
from tests import golden


def _ditdh(case="ditdh_released_flags"):
    spec = golden.manifest()["cases"][case]
    return build_stage2_model("ditdh", **spec["config"]), golden.load(spec["state_dict"])


def test_ema_wrapped_and_prefixed_files_load(tmp_path):
    model, state = _ditdh()
    wrapped = {"ema": {"_orig_mod." + k: v for k, v in state.items()}, "model": {}, "step": 3}
    torch.save(wrapped, tmp_path / "stage2_model.pt")
    load_stage2(model, str(tmp_path / "stage2_model.pt"))
    torch.testing.assert_close(model.t_embedder.W, state["t_embedder.W"])


def test_wrong_model_lists_differences():
    model, _ = _ditdh()
    _, other = _ditdh("ditdh_alt_flags")
    with pytest.raises(CheckpointMismatchError) as err:
        load_stage2(model, other)
    message = str(err.value)
    assert "missing" in message and "unexpected" in message and "wrong shape" in message
    assert "blocks.0.attn.q_norm.weight" in message and "pos_embed: file (1, 16, 48) vs model (1, 16, 64)" in message


def test_missing_rope_buffer_is_an_error():
    model, state = _ditdh()
    del state["enc_feat_rope.freqs_cos"]
    with pytest.raises(CheckpointMismatchError, match=r"missing \(1\): enc_feat_rope.freqs_cos"):
        load_stage2(model, state)


def test_truncated_file_is_a_clear_error(tmp_path):
    src = os.path.join(golden.TINY, "decoder.state_dict.pt")
    data = open(src, "rb").read()
    (tmp_path / "model.pt").write_bytes(data[: len(data) // 2])
    decoder = ViTDecoder.from_preset(f"{golden.TINY}/decoder_tiny", in_channels=32, num_patches=16, patch_size=8)
    with pytest.raises(CheckpointMismatchError, match="truncated, corrupt or not a torch file"):
        load_decoder(decoder, str(tmp_path / "model.pt"))
    with pytest.raises(FileNotFoundError):
        load_decoder(decoder, str(tmp_path / "absent.pt"))


def test_training_checkpoint_given_as_decoder_is_refused():
    """The official strict=False loader silently keeps a random decoder here (issue #54)."""
    decoder = ViTDecoder.from_preset(f"{golden.TINY}/decoder_tiny", in_channels=32, num_patches=16, patch_size=8)
    state = golden.load("decoder.state_dict.pt")
    with pytest.raises(CheckpointMismatchError, match="training checkpoint"):
        load_decoder(decoder, {"model": {"decoder." + k: v for k, v in state.items()}, "ema": {}})
    with pytest.raises(CheckpointMismatchError, match="wrong shape"):
        load_decoder(ViTDecoder.from_preset("ViT-B", in_channels=32, num_patches=16, patch_size=8), state)


def test_stats_formats():
    mean, var = load_stats(os.path.join(golden.TINY, "latent_stats.pt"))
    assert mean.shape == var.shape == (32, 4, 4)
    no_mean, var2 = load_stats({"var": var})
    assert no_mean is None and torch.equal(var2, var)
    with pytest.raises(CheckpointMismatchError, match="'var'"):
        load_stats({"mean": mean})


def test_stats_extra_keys_are_ignored_with_a_warning_but_var_is_still_required(tmp_path, caplog):
    stats = golden.load("latent_stats.pt")
    torch.save({**stats, "count": torch.tensor(1281167), "note": torch.zeros(1)}, tmp_path / "stat.pt")
    with caplog.at_level("WARNING"):
        mean, var = load_stats(str(tmp_path / "stat.pt"))  # The official loader ignores extra keys too.
    assert torch.equal(mean, stats["mean"]) and torch.equal(var, stats["var"])
    assert "ignoring keys ['count', 'note']" in caplog.text
    with pytest.raises(CheckpointMismatchError, match="must hold 'var'"):
        load_stats({"mean": stats["mean"], "count": torch.tensor(3)})
