"""Builder -> reader round trip, folder source, split merging, and clear errors on bad configs."""
import os

import numpy as np
import pytest
from PIL import Image

import rae_xla.data as data
from rae_xla.data import build
from rae_xla.data import sources


def _cfg(**overrides):
    cfg = dict(source='folder', name='tiny', data_dir='/nonexistent', split='train', image_size=32, random_flip=False,
               num_workers=0, prefetch_factor=2, synthetic_num_classes=4, synthetic_num_images=40)
    cfg.update(overrides)
    return cfg


def _expected(image_folder):
    """{relative path: (decoded RGB array, label)} straight from the files, labels = sorted class index."""
    classes = sorted(d for d in os.listdir(image_folder) if os.path.isdir(os.path.join(image_folder, d)))
    out = {}
    for label, cls in enumerate(classes):
        for name in os.listdir(os.path.join(image_folder, cls)):
            if not name.endswith('.txt'):
                out[f'{cls}/{name}'] = (np.asarray(Image.open(os.path.join(image_folder, cls, name)).convert('RGB')), label)
    return out


def test_folder_source_reads_every_image_with_sorted_class_labels(image_folder):
    source = data.open_source(_cfg(data_dir=os.path.dirname(image_folder)))  # resolves <data_dir>/train
    expected = _expected(image_folder)
    assert len(source) == len(expected) == 7 and source.num_classes == 3
    for index in range(len(source)):
        (_, label, example_id, error), = source.read_encoded([index])
        image, label2 = source[index]
        assert error is None and label == label2 == expected[example_id][1]
        np.testing.assert_array_equal(image, expected[example_id][0])


def test_builder_round_trip_through_tfds_reader(image_folder, tmp_path):
    target = build.build_from_image_folder(image_folder, str(tmp_path), 'tiny_images', 'train')
    assert (target / 'dataset_info.json').exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith('.staging')]  # staging cleaned up
    source = data.open_source(_cfg(source='tfds', name='tiny_images', data_dir=str(tmp_path)))
    expected = _expected(image_folder)
    assert len(source) == len(expected) and source.num_classes == 3
    seen = set()
    for encoded, label, example_id, error in source.read_encoded(list(range(len(source)))):
        assert error is None and label == expected[example_id][1]
        with open(os.path.join(image_folder, example_id), 'rb') as f:
            assert encoded == f.read()  # bytes stored unchanged
        seen.add(example_id)
    assert seen == set(expected)


def test_second_split_merges_and_duplicate_split_is_refused(image_folder, tmp_path):
    build.build_from_image_folder(image_folder, str(tmp_path), 'two_splits', 'train')
    build.build_from_image_folder(image_folder, str(tmp_path), 'two_splits', 'validation')
    for split in ('train', 'validation'):
        cfg = _cfg(source='tfds', name='two_splits', data_dir=str(tmp_path), split=split)
        data.validate_data_config(cfg)
        assert len(data.open_source(cfg)) == 7
    with pytest.raises(ValueError, match='already holds split'):
        build.build_from_image_folder(image_folder, str(tmp_path), 'two_splits', 'train')


def test_build_command_line(image_folder, tmp_path, capsys):
    assert build.main([f'--image_folder={image_folder}', f'--data_dir={tmp_path}', '--name=cli_images']) == 0
    assert 'wrote' in capsys.readouterr().out
    assert build.main([f'--image_folder={tmp_path}/missing', f'--data_dir={tmp_path}', '--name=x']) == 2
    assert 'does not exist' in capsys.readouterr().err
    assert build.main([f'--image_folder={image_folder}', f'--data_dir={tmp_path}', '--name=Bad-Name']) == 2


def test_incomplete_version_folder_is_never_read(tmp_path):
    os.makedirs(tmp_path / 'half' / '1.0.0')  # an interrupted build: no dataset_info.json
    with pytest.raises(ValueError, match='no complete TFDS version'):
        sources.find_tfds_version_dir(str(tmp_path), 'half')


@pytest.mark.parametrize('overrides,message', [
    (dict(source='hdf5'), 'config.data.source'),
    (dict(source='tfds', data_dir='/no/such/dir'), 'no TFDS dataset at'),
    (dict(source='folder', data_dir='/no/such/dir'), 'does not exist'),
    (dict(source='folder', data_dir='gs://bucket/x'), 'local folders only'),
    (dict(image_size=0), 'config.data.image_size'),
    (dict(random_flip=1), 'config.data.random_flip'),
    (dict(num_workers=-1), 'config.data.num_workers'),
    (dict(prefetch_factor=True), 'config.data.prefetch_factor'),
    (dict(source='synthetic', name='Not Snake'), 'snake_case'),
    (dict(source='synthetic', synthetic_num_images=2), 'synthetic_num_images'),
    (dict(source='synthetic', split='test'), 'config.data.split'),
])
def test_validate_names_the_bad_field(overrides, message, tmp_path):
    cfg = _cfg(data_dir=str(tmp_path))
    cfg.update(overrides)
    with pytest.raises(ValueError, match=message):
        data.validate_data_config(cfg)


def test_validate_missing_field_and_empty_folder(tmp_path):
    cfg = _cfg(data_dir=str(tmp_path))
    del cfg['num_workers']
    with pytest.raises(ValueError, match='config.data.num_workers is missing'):
        data.validate_data_config(cfg)
    os.makedirs(tmp_path / 'empty_class')
    with pytest.raises(ValueError, match='holds no images'):
        data.validate_data_config(_cfg(data_dir=str(tmp_path)))
    with pytest.raises(ValueError, match='holds no images'):
        data.open_source(_cfg(data_dir=str(tmp_path)))


def test_validate_unknown_tfds_split(image_folder, tmp_path):
    build.build_from_image_folder(image_folder, str(tmp_path), 'only_train', 'train')
    with pytest.raises(ValueError, match="split='validation'"):
        data.validate_data_config(_cfg(source='tfds', name='only_train', data_dir=str(tmp_path), split='validation'))
