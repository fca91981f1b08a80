"""LPIPS-VGG equals `lpips.LPIPS(net='vgg')` given the same backbone weights (a random VGG16 saved in torchvision's
format here: no network). Also the torchvision-cache lookup, the missing-file error and the random mode. ~25 s
(building lpips.LPIPS constructs a full torchvision VGG16)."""
import os

import pytest
import torch

from rae_xla.losses import lpips as our_lpips

SIZE = 48   # 48 px: relu5_3 is 3x3


@pytest.fixture(scope="module", name="vgg_file")
def vgg_file_fixture(tmp_path_factory):
    """A random VGG16 `features` state dict in torchvision's key format (features.{i}.weight|bias)."""
    torch.manual_seed(0)
    layers = our_lpips._vgg16_layers()
    state = {f"features.{i}.{name}": tensor.clone()
             for i, layer in enumerate(layers) for name, tensor in layer.state_dict().items()}
    path = tmp_path_factory.mktemp("vgg") / our_lpips.VGG16_FILE
    torch.save(state, path)
    return path


@pytest.fixture(scope="module", name="reference")
def reference_fixture(vgg_file):
    import lpips
    model = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False).eval()
    state = torch.load(vgg_file, weights_only=True)
    mapped = {}
    for key, value in state.items():
        index = int(key.split(".")[1])
        k = next(k for k, (start, end) in enumerate(our_lpips.SLICES) if start <= index < end)
        mapped[f"slice{k + 1}.{key[len('features.'):]}"] = value
    model.net.load_state_dict(mapped)
    return model


def _images(seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(3, 3, SIZE, SIZE, generator=g) * 2 - 1, torch.rand(3, 3, SIZE, SIZE, generator=g) * 2 - 1


def test_equals_lpips_package(vgg_file, reference):
    ours = our_lpips.LPIPS(backbone=str(vgg_file))
    x, y = _images(0)
    with torch.no_grad():
        expected = reference(x, y).flatten()
        got = ours(x, y)
    assert got.shape == (3,) and expected.abs().min() > 1e-3
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    # Same names as the official/lpips modules (lpips also keeps a duplicate `lins` list): strict loads work.
    ref_state = {k: v for k, v in reference.state_dict().items() if not k.startswith("lins.")}
    assert sorted(ours.state_dict()) == sorted(ref_state)
    for key, value in ref_state.items():
        assert torch.equal(ours.state_dict()[key], value), key


def test_frozen_and_differentiable_wrt_inputs(vgg_file):
    model = our_lpips.LPIPS(backbone=str(vgg_file)).train()
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    x, y = _images(1)
    x.requires_grad_(True)
    model(x, y).mean().backward()
    assert x.grad.abs().sum() > 0
    assert torch.allclose(model(y, y), torch.zeros(3))


def test_reads_torchvision_cache_and_names_the_missing_file(vgg_file, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}/hub/checkpoints/{our_lpips.VGG16_FILE}.*download"):
        our_lpips.LPIPS()
    os.makedirs(tmp_path / "hub" / "checkpoints")
    os.symlink(vgg_file, tmp_path / "hub" / "checkpoints" / our_lpips.VGG16_FILE)
    from_cache, from_path = our_lpips.LPIPS(), our_lpips.LPIPS(backbone=str(vgg_file))
    x, y = _images(2)
    with torch.no_grad():
        assert torch.equal(from_cache(x, y), from_path(x, y))
    with pytest.raises(FileNotFoundError, match="nowhere.pth.*not found.*download.pytorch.org"):
        our_lpips.LPIPS(backbone=str(tmp_path / "nowhere.pth"))


def test_random_backbone_and_bad_file(tmp_path):
    torch.manual_seed(0)
    model = our_lpips.LPIPS(backbone="random")
    x, y = _images(3)
    with torch.no_grad():
        assert (model(x, y) > 0).all()
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(our_lpips.CheckpointMismatchError, match="not a torchvision VGG16"):
        our_lpips.LPIPS(backbone=str(tmp_path / "bad.pth"))
