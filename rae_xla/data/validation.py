"""`validate_data_config(config.data)`: cheap checks with one clear error each, before anything heavy.

Does not import tensorflow_datasets or torch: TFDS metadata is read as JSON, folders are scanned
only until the first image is found.
"""
import json
import os
from typing import Any

from rae_xla import remote
from rae_xla.data import builder
from rae_xla.data import dataset
from rae_xla.data import sources
from rae_xla.data import synthetic


def _check_type(data_cfg: Any, key: str, kind: type, minimum: int | None = None) -> Any:
    value = dataset.field(data_cfg, key)
    # bool is an int subclass: reject True where a count is expected, and 1 where a flag is expected.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f'config.data.{key}={value!r} must be a {kind.__name__}.')
    if minimum is not None and value < minimum:
        raise ValueError(f'config.data.{key}={value!r} must be >= {minimum}.')
    return value


def _first_image(root: str) -> str | None:
    for class_entry in sorted(os.scandir(root), key=lambda e: e.name):
        if class_entry.is_dir() and not class_entry.name.startswith('.'):
            for entry in os.scandir(class_entry.path):
                if entry.is_file() and entry.name.lower().endswith(sources.IMAGE_EXTENSIONS):
                    return entry.path
    return None


def _check_tfds(data_dir: str, name: str, split: str) -> None:
    version_dir = sources.find_tfds_version_dir(data_dir, name)  # raises when absent
    splits = [s['name'] for s in json.loads((version_dir / 'dataset_info.json').read_text())['splits']]
    if split not in splits:
        raise ValueError(f'config.data.split={split!r} is not in {version_dir}; available splits: {splits}.')


def _check_folder(data_dir: str, split: str) -> None:
    root = sources.resolve_folder_root(data_dir, split)
    if not os.path.isdir(root):
        raise ValueError(f'config.data.data_dir={data_dir!r} does not exist; point it at a root/<class>/<image> '
                         'tree (or a folder holding train/ and val/ trees).')
    if _first_image(root) is None:
        raise ValueError(f'config.data.data_dir: {root!r} holds no images in the root/<class>/<image> layout '
                         f'(extensions {sources.IMAGE_EXTENSIONS}).')


def validate_data_config(data_cfg: Any) -> None:
    """Raises ValueError naming the field for a bad value, a missing path or a path without images."""
    for key in dataset.FIELDS:
        dataset.field(data_cfg, key)
    kind = _check_type(data_cfg, 'source', str)
    if kind not in dataset.SOURCES:
        raise ValueError(f'config.data.source={kind!r} must be one of {dataset.SOURCES}.')
    name = _check_type(data_cfg, 'name', str)
    data_dir = _check_type(data_cfg, 'data_dir', str)
    split = _check_type(data_cfg, 'split', str)
    if not data_dir:
        raise ValueError('config.data.data_dir is empty; set a local folder or gs:// path.')
    if not split:
        raise ValueError("config.data.split is empty; use e.g. 'train' or 'validation'.")
    _check_type(data_cfg, 'image_size', int, minimum=8)
    _check_type(data_cfg, 'random_flip', bool)
    if dataset.crop_mode(data_cfg) not in ('center', 'random'):
        raise ValueError(f"config.data.crop={dataset.crop_mode(data_cfg)!r} must be 'center' (ADM center crop) or "
                         "'random' (stage-1 resize + random crop).")
    _check_type(data_cfg, 'num_workers', int, minimum=0)
    _check_type(data_cfg, 'prefetch_factor', int, minimum=1)
    num_classes = _check_type(data_cfg, 'synthetic_num_classes', int, minimum=1)
    num_images = _check_type(data_cfg, 'synthetic_num_images', int, minimum=1)
    if kind == 'tfds':
        if not name:
            raise ValueError("config.data.name is empty; set the TFDS dataset name, e.g. 'imagenet2012'.")
        with remote.reading(data_dir, 'config.data.data_dir'):  # An unreachable bucket: one line, at once.
            _check_tfds(data_dir, name, split)
    elif kind == 'folder':
        _check_folder(data_dir, split)
    else:
        builder.check_dataset_name(name)
        if num_images < num_classes:
            raise ValueError(f'config.data.synthetic_num_images={num_images} must be >= synthetic_num_classes='
                             f'{num_classes} (at least one image per class).')
        if split not in synthetic.split_sizes(num_images, num_classes):
            raise ValueError(f"config.data.split={split!r}: the synthetic dataset has splits 'train' and 'validation'.")
        synthetic.built_dataset_dir(data_dir, name, num_classes, num_images)  # a stale cache is an error now
