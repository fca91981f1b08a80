"""RAE encode/decode against the official code: tiny DINOv2-with-registers + tiny ViT-MAE decoder + stats."""
import os

import torch

from rae_xla.checkpoint.official import load_stats
from rae_xla.models.rae import RAE
from tests import golden

ATOL = 2e-5


def _rae(**overrides):
    spec = golden.manifest()["cases"]["rae"]
    args = dict(encoder=os.path.join(golden.TINY, spec["encoder_dir"]),
                decoder_config=os.path.join(golden.TINY, spec["decoder_config_dir"]),
                decoder_weights=os.path.join(golden.TINY, spec["decoder_state_dict"]),
                stats=os.path.join(golden.TINY, spec["latent_stats"]),
                encoder_input_size=spec["encoder_input_size"], decoder_patch_size=spec["decoder_patch_size"],
                noise_tau=spec["noise_tau"])
    args.update(overrides)
    return RAE.from_pretrained(**args).eval()


def test_encode_resized_and_native_match_official():
    rae, io = _rae(), golden.load("rae.io.pt")
    torch.testing.assert_close(rae.encode(io["image"]), io["latent"], atol=ATOL, rtol=1e-5)
    torch.testing.assert_close(rae.encode(io["image_native"]), io["latent_native"], atol=ATOL, rtol=1e-5)
    assert rae.latent_shape == tuple(io["latent"].shape[1:])


def test_decode_matches_official():
    rae, io = _rae(), golden.load("rae.io.pt")
    with torch.no_grad():
        torch.testing.assert_close(rae.decode(io["latent"]), io["reconstruction"], atol=ATOL, rtol=1e-5)


def test_decoder_state_dict_has_the_official_keys_and_shapes():
    rae = _rae()
    expected = golden.manifest()["cases"]["rae"]["decoder_state_dict_keys"]
    assert {k: list(v.shape) for k, v in rae.decoder.state_dict().items()} == expected
    assert all(k.startswith(("encoder.", "decoder.")) for k in rae.state_dict())


def test_variance_only_stats_equal_zero_mean():
    """The released DINOv2-B stat.pt has no 'mean': variance-only normalisation, same as mean = 0."""
    mean, var = load_stats(os.path.join(golden.TINY, "latent_stats.pt"))
    io = golden.load("rae.io.pt")
    var_only = _rae(stats={"var": var}).encode(io["image"])
    zero_mean = _rae(stats={"var": var, "mean": torch.zeros_like(mean)}).encode(io["image"])
    torch.testing.assert_close(var_only, zero_mean)
    assert not torch.allclose(var_only, io["latent"])           # the golden stats do have a non-zero mean


def test_noise_augmentation_only_in_training_mode():
    rae, io = _rae(noise_tau=0.8), golden.load("rae.io.pt")
    torch.testing.assert_close(rae.encode(io["image"]), io["latent"], atol=ATOL, rtol=1e-5)
    rae.train()
    assert not rae.encoder.training                             # the frozen encoder stays in eval mode
    assert (rae.encode(io["image"]) - io["latent"]).abs().max() > 1e-3
