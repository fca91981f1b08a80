"""GAN losses, accuracy and the adaptive weight against the official functions (official_tiny_stage1). ~5 s."""
import pytest
import torch

from rae_xla.losses import gan
from tests import golden
from tests.losses.stage1_helpers import FOLDER, TinyDecoder, golden_discriminator, lpips_like, manifest_case

ATOL = 1e-5


@pytest.fixture(scope="module", name="losses")
def losses_fixture():
    return golden.load("gan_losses.pt", FOLDER)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_d_and_g_losses(losses, reduction):
    real, fake = losses["logits_real"], losses["logits_fake"]
    torch.testing.assert_close(gan.hinge_d_loss(real, fake, reduction), losses[f"hinge_d_loss_{reduction}"],
                               atol=ATOL, rtol=0)
    torch.testing.assert_close(gan.vanilla_d_loss(real, fake, reduction), losses[f"vanilla_d_loss_{reduction}"],
                               atol=ATOL, rtol=0)
    torch.testing.assert_close(gan.vanilla_g_loss(fake, reduction), losses[f"vanilla_g_loss_{reduction}"],
                               atol=ATOL, rtol=0)


def test_trainer_choices_and_accuracy(losses):
    real, fake = losses["logits_real"], losses["logits_fake"]
    choice = manifest_case("gan_losses")["trainer_choice"]
    torch.testing.assert_close(gan.D_LOSSES[choice["disc_loss"]](real, fake), losses["d_loss"], atol=ATOL, rtol=0)
    torch.testing.assert_close(gan.G_LOSSES[choice["gen_loss"]](fake), losses["g_loss"], atol=ATOL, rtol=0)
    torch.testing.assert_close(gan.discriminator_accuracy(real, fake), losses["accuracy"])
    with pytest.raises(ValueError, match="reduction 'none'"):
        gan.vanilla_g_loss(fake, "none")


def test_adaptive_weight_unclamped_clamped_and_total_loss_gradients():
    """The official calculate_adaptive_weight on the manifest's tiny decoder + eval-mode golden discriminator."""
    ref = golden.load("adaptive_weight.pt", FOLDER)
    decoder = TinyDecoder(**manifest_case("adaptive_weight")["tiny_decoder"]["config"])
    decoder.load_state_dict(ref["decoder_state_dict"])
    disc = golden_discriminator().eval()
    images = ref["images"]
    recon = decoder(ref["z"])
    torch.testing.assert_close(recon, ref["recon"], atol=ATOL, rtol=0)
    recon_total = (recon - images).abs().mean() + ref["perceptual_weight"] * lpips_like(2 * images - 1, 2 * recon - 1)
    torch.testing.assert_close(recon_total, ref["recon_total"], atol=ATOL, rtol=0)
    logits = disc(2 * recon - 1)
    torch.testing.assert_close(logits, ref["logits_fake"], atol=ATOL, rtol=0)
    gan_loss = gan.vanilla_g_loss(logits)
    torch.testing.assert_close(gan_loss, ref["gan_loss"], atol=ATOL, rtol=0)
    last = decoder.decoder_pred.weight
    weight = gan.adaptive_weight(recon_total, gan_loss, last, ref["max_d_weight"])
    assert not weight.requires_grad
    torch.testing.assert_close(weight, ref["d_weight_unclamped"], atol=0, rtol=1e-5)
    torch.testing.assert_close(weight, ref["adaptive_weight"], atol=0, rtol=1e-5)
    clamped = gan.adaptive_weight(recon_total, gan_loss, last, ref["max_d_weight_small"])
    assert ref["max_d_weight_small"] < ref["d_weight_unclamped"].item()
    torch.testing.assert_close(clamped, ref["adaptive_weight_clamped"], atol=0, rtol=1e-6)
    total = recon_total + ref["disc_weight"] * weight * gan_loss
    torch.testing.assert_close(total, ref["total_loss"], atol=ATOL, rtol=0)
    total.backward()
    scale = max(g.abs().max().item() for g in ref["total_loss_grads"].values())
    for name, param in decoder.named_parameters():
        torch.testing.assert_close(param.grad, ref["total_loss_grads"][name], atol=1e-5 * scale, rtol=0)
    assert disc.heads[0][2].weight_orig.grad is not None  # the G loss reaches the heads too (the trainer zeroes it)
