"""The folder -> ArrayRecord builder decode-checks every image in its worker processes: a file that does not
decode is skipped, named on stdout and in the log, and counted in build_report.<split>.json; --strict refuses."""
import json
import os
import shutil

import pytest

import rae_xla.data as data
from rae_xla.data import build
from tests.data.conftest import write_image

BAD = 'dog/truncated.jpg'


@pytest.fixture(scope='module')
def folder_with_a_truncated_jpeg(tmp_path_factory):
    """12 good images in 3 classes and one JPEG cut in half (the issue's reproduction)."""
    root = str(tmp_path_factory.mktemp('corrupt') / 'train')
    for i in range(12):
        write_image(os.path.join(root, ('cat', 'dog', 'owl')[i % 3], f'{i:02d}.jpg'), 40 + i, 50, seed=i)
    write_image(os.path.join(root, 'dog', 'whole.jpg'), 64, 64, seed=99)
    with open(os.path.join(root, 'dog', 'whole.jpg'), 'rb') as f:
        encoded = f.read()
    with open(os.path.join(root, BAD), 'wb') as f:
        f.write(encoded[:len(encoded) // 2])
    os.remove(os.path.join(root, 'dog', 'whole.jpg'))
    return root


def _source(data_dir, name, split='train'):
    return data.open_source(dict(source='tfds', name=name, data_dir=str(data_dir), split=split, image_size=32,
                                 random_flip=False, num_workers=0, prefetch_factor=2, synthetic_num_classes=4,
                                 synthetic_num_images=40))


def test_checker_rejects_truncated_and_non_image_bytes(folder_with_a_truncated_jpeg, tmp_path):
    data_bytes, error = build.read_and_check(os.path.join(folder_with_a_truncated_jpeg, 'cat', '00.jpg'))
    assert error is None and data_bytes[:2] == b'\xff\xd8'
    data_bytes, error = build.read_and_check(os.path.join(folder_with_a_truncated_jpeg, BAD))
    assert data_bytes is None and error.startswith('OSError: ') and 'runcated' in error  # PIL's wording varies.
    (tmp_path / 'x.png').write_bytes(b'not an image at all')
    assert build.read_and_check(str(tmp_path / 'x.png'))[1].startswith('UnidentifiedImageError')
    assert build.read_and_check(str(tmp_path / 'missing.jpg'))[1].startswith('unreadable: FileNotFoundError')


def test_corrupt_file_is_skipped_named_and_counted(folder_with_a_truncated_jpeg, tmp_path, capsys):
    argv = [f'--image_folder={folder_with_a_truncated_jpeg}', f'--data_dir={tmp_path}', '--name=checked',
            '--num_workers=2']
    assert build.main(argv) == 0
    out = capsys.readouterr().out
    assert f'skipped {BAD}: OSError: ' in out
    assert '12 images, 1 skipped because they do not decode' in out
    target = tmp_path / 'checked' / '1.0.0'
    report = json.loads((target / build.report_name('train')).read_text())
    assert (report['num_files'], report['num_written'], report['num_skipped']) == (13, 12, 1)
    assert [s['file_name'] for s in report['skipped']] == [BAD]
    source = _source(tmp_path, 'checked')
    assert len(source) == 12
    ids = {example_id for _, _, example_id, _ in source.read_encoded(list(range(12)))}
    assert BAD not in ids and len(ids) == 12
    # A second split lands in the same version folder with its own report.
    assert build.main(argv + ['--split=validation', '--num_workers=0']) == 0
    assert json.loads((target / build.report_name('validation')).read_text())['num_skipped'] == 1
    assert len(_source(tmp_path, 'checked', 'validation')) == 12


def test_strict_makes_a_corrupt_file_an_error_and_writes_nothing(folder_with_a_truncated_jpeg, tmp_path, capsys):
    argv = [f'--image_folder={folder_with_a_truncated_jpeg}', f'--data_dir={tmp_path}', '--name=strict',
            '--num_workers=2', '--strict']
    assert build.main(argv) == 2
    err = capsys.readouterr().err
    assert f'{os.path.join(folder_with_a_truncated_jpeg, BAD)} does not decode (OSError: ' in err
    assert 'without --strict' in err
    assert not (tmp_path / 'strict').exists() and not [p for p in os.listdir(tmp_path) if p.startswith('.staging')]
    clean = tmp_path / 'clean'
    shutil.copytree(folder_with_a_truncated_jpeg, clean)
    os.remove(clean / BAD)
    assert build.main([f'--image_folder={clean}', f'--data_dir={tmp_path}', '--name=strict', '--strict']) == 0
    assert len(_source(tmp_path, 'strict')) == 12
