"""DiffAug against the official StyleGAN-T DiffAug (official_tiny_stage1/diffaug.pt): every case, exactly. <1 s."""
import pytest
import torch

from rae_xla.losses.diffaug import diffaug
from tests import golden
from tests.losses.stage1_helpers import FOLDER, manifest_case

CASES = sorted(manifest_case("diffaug")["cases"])


@pytest.fixture(scope="module", name="data")
def data_fixture():
    return golden.load("diffaug.pt", FOLDER)


@pytest.mark.parametrize("name", CASES)
def test_injected_draws_give_the_official_output_exactly(data, name):
    case = manifest_case("diffaug")["cases"][name]
    out = diffaug(data["x"], prob=case["prob"], cutout=case["cutout"], rand3=data[name]["rand3"],
                  rand01=data[name]["rand01"])
    assert out.dtype == torch.float32 and out.shape == data["x"].shape
    torch.testing.assert_close(out, data[name]["out"], atol=0, rtol=0)


@pytest.mark.parametrize("name", CASES)
def test_own_draws_follow_the_official_order(data, name):
    """With torch's CPU generator seeded as the official run was, our own draws (rand(3), then rand(7,B,1,1))
    reproduce it: the draw order and shapes are the official ones."""
    case = manifest_case("diffaug")["cases"][name]
    torch.manual_seed(case["torch_manual_seed"])
    out = diffaug(data["x"], prob=case["prob"], cutout=case["cutout"])
    torch.testing.assert_close(out, data[name]["out"], atol=0, rtol=0)


def test_false_coins_are_identity_and_gradients_flow(data):
    x = data["x"].clone().requires_grad_(True)
    out = diffaug(x, prob=0.5, cutout=0.2, rand3=torch.tensor([0.9, 0.6, 0.51]), rand01=torch.rand(7, 2, 1, 1))
    assert torch.equal(out, x)
    out = diffaug(x, prob=1.0, cutout=0.0)
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_wrong_draw_shapes_are_rejected(data):
    with pytest.raises(ValueError, match="rand01 \\(7, 2, 1, 1\\); got \\(3,\\) and \\(7, 3, 1, 1\\)"):
        diffaug(data["x"], prob=1.0, cutout=0.0, rand3=torch.rand(3), rand01=torch.rand(7, 3, 1, 1))
