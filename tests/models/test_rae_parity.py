"""RAE encode/decode against the official code: tiny DINOv2-with-registers + tiny ViT-MAE decoder + stats."""
import os

import torch

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


def test_variance_only_stats_match_the_official_outputs():
    """The released DINOv2-B stat.pt has no 'mean' (variance-only normalisation). Expected values come from the
    golden outputs and the official formula z_norm = (z - mean) / sqrt(var + eps) (docs/reference.md §1.4), not from a
    second path of our code: without the mean, z / sqrt(var + eps) = golden latent + mean / sqrt(var + eps); and
    decoding undoes the same normalisation, so the reconstruction is the golden one."""
    spec, io = golden.manifest()["cases"]["rae"], golden.load("rae.io.pt")
    stats = golden.load(spec["latent_stats"])
    mean, var = stats["mean"], stats["var"]
    assert mean.abs().max() > 0.1  # The golden stats do have a mean, so dropping it changes the latents.
    expected = io["latent"] + mean / torch.sqrt(var + spec["eps"])
    rae = _rae(stats={"var": var})
    with torch.no_grad():
        latent = rae.encode(io["image"])
        torch.testing.assert_close(latent, expected, atol=ATOL, rtol=1e-5)
        torch.testing.assert_close(rae.decode(latent), io["reconstruction"], atol=ATOL, rtol=1e-5)


def test_noise_augmentation_only_in_training_mode():
    rae, io = _rae(noise_tau=0.8), golden.load("rae.io.pt")
    torch.testing.assert_close(rae.encode(io["image"]), io["latent"], atol=ATOL, rtol=1e-5)
    rae.train()
    assert not rae.encoder.training                             # the frozen encoder stays in eval mode
    assert (rae.encode(io["image"]) - io["latent"]).abs().max() > 1e-3
