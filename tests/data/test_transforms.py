"""ADM center crop and flip against the steps docs/reference.md §6.1 spells out, on hand-computed sizes."""
import io

import numpy as np
import pytest
from PIL import Image

from rae_xla.data import transforms


def _random_image(height, width, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8))


# (input H, W, S, [sizes (W, H) after each BOX halving], bicubic size (W, H), crop offset (y, x))
CASES = [
    (375, 500, 256, [], (341, 256), (0, 42)),              # typical ImageNet: no halving, 256/375 scale
    (600, 800, 256, [(400, 300)], (341, 256), (0, 42)),    # one halving (600 >= 512)
    (1025, 1537, 256, [(768, 512), (384, 256)], (384, 256), (0, 64)),  # two halvings, odd sides floored
    (30, 40, 64, [], (85, 64), (0, 10)),                   # smaller than S: bicubic upsampling
    (512, 300, 128, [(150, 256)], (128, 218), (45, 0)),    # portrait
]


@pytest.mark.parametrize('height,width,size,halvings,bicubic_size,offset', CASES)
def test_center_crop_matches_adm_steps(height, width, size, halvings, bicubic_size, offset):
    image = _random_image(height, width)
    expected = image
    for half_size in halvings:
        expected = expected.resize(half_size, resample=Image.BOX)
    expected = np.asarray(expected.resize(bicubic_size, resample=Image.BICUBIC))
    y, x = offset
    expected = expected[y:y + size, x:x + size]
    got = transforms.center_crop_arr(image, size)
    assert got.shape == (size, size, 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)


def test_center_crop_differs_from_plain_bicubic_when_halving():
    """Guards the BOX pre-halving: skipping it (one bicubic resize) gives different pixels."""
    image = _random_image(600, 800, seed=1)
    plain = np.asarray(image.resize((341, 256), resample=Image.BICUBIC))[:, 42:298]
    assert np.abs(transforms.center_crop_arr(image, 256).astype(int) - plain).max() > 0


def test_flip_is_applied_after_the_crop():
    buffer = io.BytesIO()
    _random_image(90, 130, seed=2).save(buffer, 'PNG')
    plain = transforms.load_example_image(buffer.getvalue(), 64, flip=False)
    flipped = transforms.load_example_image(buffer.getvalue(), 64, flip=True)
    np.testing.assert_array_equal(flipped, plain[:, ::-1])
    assert not np.array_equal(flipped, plain)
    assert flipped.flags['C_CONTIGUOUS']


@pytest.mark.parametrize('mode,fmt', [('L', 'JPEG'), ('CMYK', 'JPEG'), ('RGBA', 'PNG'), ('P', 'PNG')])
def test_decode_converts_every_mode_to_rgb(mode, fmt):
    buffer = io.BytesIO()
    _random_image(20, 30, seed=3).convert(mode).save(buffer, fmt)
    decoded = np.asarray(transforms.decode_rgb(buffer.getvalue()))
    assert decoded.shape == (20, 30, 3) and decoded.dtype == np.uint8


def test_decode_rejects_garbage():
    with pytest.raises(Exception):
        transforms.decode_rgb(b'\xff\xd8\xff\xe0 definitely not a jpeg')


def test_stage1_random_crop_resizes_the_short_side_then_crops_at_the_drawn_offset():
    from rae_xla.data import sampler
    from rae_xla.data.transforms import first_crop_size, resize_random_crop_arr
    assert first_crop_size(256) == 384 and first_crop_size(64) == 96 and first_crop_size(512) == 768
    rng = np.random.default_rng(0)
    pil = Image.fromarray(rng.integers(0, 256, (100, 150, 3), dtype=np.uint8))  # H 100, W 150
    resized = np.asarray(pil.resize((144, 96), resample=Image.BICUBIC))  # short side 96, long int(96 * 1.5)
    for u in ([0.0, 0.0], [0.999, 0.999], [0.5, 0.25]):
        out = resize_random_crop_arr(pil, 64, np.array(u))
        top, left = int(u[0] * (96 - 64 + 1)), int(u[1] * (144 - 64 + 1))
        np.testing.assert_array_equal(out, resized[top:top + 64, left:left + 64])
    a, b = sampler.global_crops(3, 7, 16), sampler.global_crops(3, 7, 16)
    np.testing.assert_array_equal(a, b)  # A pure function of (seed, step) ...
    assert not np.array_equal(a, sampler.global_crops(3, 8, 16)) and a.min() >= 0 and a.max() < 1  # ... per step.
