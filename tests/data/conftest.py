"""Fixtures for the data tests: tiny image folders and an in-process GCS emulator."""
import io
import os

import numpy as np
import pytest
from absl import flags
from PIL import Image


def pytest_configure(config):
    del config
    flags.FLAGS.mark_as_parsed()  # absl flags are unparsed under pytest (docs/ecosystem.md §2)


def write_image(path: str, height: int, width: int, seed: int, fmt: str = 'JPEG', mode: str = 'RGB') -> None:
    """A random smooth image (so JPEG keeps it close) saved at `path`."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((width, height), Image.BILINEAR).convert(mode)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image.save(path, format=fmt)


@pytest.fixture(scope='session')
def image_folder(tmp_path_factory) -> str:
    """root/<class>/<image>: 3 classes, 7 images, mixed sizes, formats (JPEG, PNG, grey, RGBA)."""
    root = str(tmp_path_factory.mktemp('folder') / 'train')
    specs = [('cat', 'a.jpg', 60, 80, 'JPEG', 'RGB'), ('cat', 'b.png', 48, 48, 'PNG', 'RGBA'),
             ('dog', 'c.JPEG', 100, 70, 'JPEG', 'L'), ('dog', 'd.jpeg', 33, 50, 'JPEG', 'RGB'),
             ('dog', 'e.png', 64, 96, 'PNG', 'RGB'), ('owl', 'f.jpg', 130, 90, 'JPEG', 'RGB'),
             ('owl', 'g.jpg', 40, 40, 'JPEG', 'RGB')]
    for seed, (cls, name, h, w, fmt, mode) in enumerate(specs):
        write_image(os.path.join(root, cls, name), h, w, seed, fmt, mode)
    with open(os.path.join(root, 'owl', 'notes.txt'), 'w') as f:
        f.write('not an image: must be ignored')
    return root


def jpeg_bytes(height: int, width: int, seed: int) -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)).save(buffer, 'JPEG')
    return buffer.getvalue()


@pytest.fixture(scope='session')
def gcs_emulator():
    """(endpoint, bucket) of an in-process gcp-storage-emulator on 127.0.0.1 (no network needed).

    The env vars are set here for any in-process gcsfs use; the gs:// read test itself runs in a
    subprocess (env passed explicitly) so this process's gcsfs/etils state stays clean.
    """
    from gcp_storage_emulator import server  # pylint: disable=g-import-not-at-top
    bucket = 'rae-test'
    emulator = server.create_server('127.0.0.1', 0, in_memory=True, default_bucket=bucket)
    emulator.start()
    endpoint = f'http://127.0.0.1:{emulator._api._httpd.server_address[1]}'  # pylint: disable=protected-access
    env = {'STORAGE_EMULATOR_HOST': endpoint, 'CLOUD_STORAGE_EMULATOR_ENDPOINT': endpoint,
           'GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT': 'false'}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield endpoint, bucket
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    emulator.stop()
