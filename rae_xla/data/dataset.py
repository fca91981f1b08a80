"""`open_source(config.data)`: the one place that maps the config block to a `Source`.

config.data fields (all required, no defaults; see `validation.validate_data_config`):
  source ('synthetic'|'tfds'|'folder'), name, data_dir, split, image_size, random_flip, num_workers,
  prefetch_factor, synthetic_num_classes, synthetic_num_images.
"""
import os
from typing import Any

from rae_xla import remote
from rae_xla.data import sources
from rae_xla.data import synthetic

FIELDS = ('source', 'name', 'data_dir', 'split', 'image_size', 'random_flip', 'num_workers', 'prefetch_factor',
          'synthetic_num_classes', 'synthetic_num_images')
SOURCES = ('synthetic', 'tfds', 'folder')


def field(data_cfg: Any, key: str) -> Any:
    """config.data[key] for a ConfigDict or a plain dict; a missing field is an error, never a default."""
    try:
        value = data_cfg[key]
    except (KeyError, AttributeError) as error:
        raise ValueError(f'config.data.{key} is missing; every field of config.data must be set '
                         f'(fields: {", ".join(FIELDS)}).') from error
    if key == 'data_dir' and not str(value).startswith('gs://'):
        value = os.path.expanduser(value)  # '~/.cache/...' must not become a folder named '~'.
    return value


def crop_mode(data_cfg: Any) -> str:
    """config.data.crop: 'center' (ADM center crop, stage 2) or 'random' (stage-1 resize + random crop).

    Optional (older configs and plain dicts have no such field): absent means 'center'.
    """
    try:
        return data_cfg['crop']
    except (KeyError, AttributeError):
        return 'center'


def open_source(data_cfg: Any) -> sources.Source:
    """Opens the dataset config.data describes (building the synthetic one on first use).

    Returns a Source: len(), .num_classes, [i] -> (uint8 (H, W, 3) ndarray, int label), read_encoded(indices).
    """
    kind, data_dir, split = field(data_cfg, 'source'), field(data_cfg, 'data_dir'), field(data_cfg, 'split')
    if kind == 'tfds':
        with remote.reading(data_dir, 'config.data.data_dir'):
            return sources.TfdsSource(sources.find_tfds_version_dir(data_dir, field(data_cfg, 'name')), split)
    if kind == 'folder':
        return sources.FolderSource(sources.resolve_folder_root(data_dir, split))
    if kind == 'synthetic':
        dataset_dir = synthetic.ensure_built(data_dir, field(data_cfg, 'name'), field(data_cfg, 'synthetic_num_classes'),
                                             field(data_cfg, 'synthetic_num_images'), field(data_cfg, 'image_size'))
        return sources.TfdsSource(dataset_dir, split)
    raise ValueError(f'config.data.source={kind!r} is not one of {SOURCES}.')
