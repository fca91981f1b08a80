"""The embedded synthetic dataset: deterministic pixels, class-dependent content, cached atomic builds."""
import os

import numpy as np
import pytest

import rae_xla.data as data
from rae_xla.data import synthetic


def _cfg(data_dir, **overrides):
    cfg = dict(source='synthetic', name='shapes', data_dir=str(data_dir), split='train', image_size=32,
               random_flip=False, num_workers=0, prefetch_factor=2, synthetic_num_classes=8, synthetic_num_images=64)
    cfg.update(overrides)
    return cfg


def test_render_is_a_pure_function_of_class_index_split():
    a = synthetic.render(3, 17, 'train', 48)
    assert a.shape == (48, 64, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, synthetic.render(3, 17, 'train', 48))
    assert not np.array_equal(a, synthetic.render(3, 18, 'train', 48))
    assert not np.array_equal(a, synthetic.render(3, 17, 'validation', 48))


def test_class_hue_is_visible_in_the_image():
    """The brightest, most saturated pixels carry the class colour (what a model can learn)."""
    for class_id in range(6):
        image = synthetic.render(class_id, class_id, 'train', 64).astype(float)
        saturation = image.max(-1) - image.min(-1)
        shape_pixels = image[saturation >= np.percentile(saturation, 95)]
        colour = synthetic.class_colour(class_id)
        assert np.abs(shape_pixels.mean(0) - colour).max() < 40, class_id


def test_two_builds_are_byte_identical_and_the_cache_is_reused(tmp_path):
    dirs = [data.open_source(_cfg(tmp_path / run)).dataset_dir for run in ('a', 'b')]
    for split in ('train', 'validation'):
        files = [os.path.join(d, f'shapes-{split}.array_record-00000-of-00001') for d in dirs]
        with open(files[0], 'rb') as f0, open(files[1], 'rb') as f1:
            assert f0.read() == f1.read()
    record = os.path.join(dirs[0], 'shapes-train.array_record-00000-of-00001')
    mtime = os.path.getmtime(record)
    source = data.open_source(_cfg(tmp_path / 'a'))  # second open: no rebuild
    assert os.path.getmtime(record) == mtime and len(source) == 64 and source.num_classes == 8
    assert len(data.open_source(_cfg(tmp_path / 'a', split='validation'))) == 8
    labels = [source.read_encoded([i])[0][1] for i in range(len(source))]
    assert np.bincount(labels).tolist() == [8] * 8  # balanced


def test_cache_built_with_other_sizes_is_a_clear_error(tmp_path):
    data.open_source(_cfg(tmp_path))
    with pytest.raises(ValueError, match='synthetic_num_images'):
        data.validate_data_config(_cfg(tmp_path, synthetic_num_images=128))
    with pytest.raises(ValueError, match='synthetic_num_classes'):
        data.open_source(_cfg(tmp_path, synthetic_num_classes=4))
