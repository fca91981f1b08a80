"""Writes an ArrayRecord TFDS dataset (image, label, file_name) without TensorFlow.

TFDS's own writer (`GeneratorBasedBuilder.download_and_prepare` with file_format='array_record') runs
without TF when images are given as encoded bytes (docs/ecosystem.md §3). We define the builder class at run
time so any dataset name works, build into a staging folder, then publish:
- local data_dir: one `os.rename` of the finished version folder (atomic: a crashed build is never read);
- gs:// data_dir: upload every file, `dataset_info.json` last (readers only accept a version folder
  holding it, see `sources.find_tfds_version_dir`).
A second split (e.g. `validation` after `train`) is merged into the existing version: its files (shards and
extra files) are added, then dataset_info.json is replaced by one listing both splits.
"""
import json
import os
import re
import shutil
import tempfile
import uuid
from typing import Callable, Iterator, Mapping

from absl import logging
from etils import epath

from rae_xla.data import retry

VERSION = '1.0.0'
_NAME = re.compile(r'^[a-z][a-z0-9_]*$')
_COPY_CHUNK = 8 << 20  # 8 MiB streaming copies: shards can be ~1 GB

# One example: (unique key, {'image': encoded bytes, 'label': int, 'file_name': str}).
Example = tuple[str, dict]


def check_dataset_name(name: str) -> None:
    if not _NAME.match(name):
        raise ValueError(f'dataset name {name!r} must be snake_case (a-z, 0-9, _; starting with a letter), '
                         'as TFDS requires, e.g. "my_images".')


def _builder_class(name: str, class_names: list[str], description: str,
                   splits: dict[str, Callable[[], Iterator[Example]]]):
    """A GeneratorBasedBuilder subclass for this one dataset, kept out of TFDS's global registry."""
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    from tensorflow_datasets.core import registered  # pylint: disable=g-import-not-at-top

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self, description=description, supervised_keys=('image', 'label'),
            features=tfds.features.FeaturesDict({
                # encoding_format=None: the bytes are stored as given (JPEG, PNG, ...), never re-encoded.
                'image': tfds.features.Image(shape=(None, None, 3), encoding_format=None),
                'label': tfds.features.ClassLabel(names=class_names),
                'file_name': tfds.features.Text()}))

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        return {split: make_examples() for split, make_examples in splits.items()}

    def _generate_examples(self):
        raise NotImplementedError  # unused: _split_generators hands TFDS ready generators

    with registered.skip_registration():
        return type('RaeXlaImageDataset', (tfds.core.GeneratorBasedBuilder,), dict(
            name=name, VERSION=tfds.core.Version(VERSION), RELEASE_NOTES={VERSION: 'Written by rae_xla.data.build.'},
            __module__=__name__, _info=_info, _split_generators=_split_generators,
            _generate_examples=_generate_examples))


def _copy_file(src: epath.Path, dst: epath.Path) -> None:
    def copy():
        with src.open('rb') as f_in, dst.open('wb') as f_out:
            shutil.copyfileobj(f_in, f_out, _COPY_CHUNK)
    retry.retry_call(copy, f'copy {src} -> {dst}')


def _merge_split_info(existing: epath.Path, staged: epath.Path, split: str) -> str:
    """dataset_info.json text listing the existing splits plus the staged one (same classes required)."""
    old_labels = (existing / 'label.labels.txt').read_text()
    new_labels = (staged / 'label.labels.txt').read_text()
    if old_labels != new_labels:
        raise ValueError(f'{existing} was built with other class folders than this image folder; '
                         'every split of one dataset needs the same class names. Use another --name.')
    info = json.loads((existing / 'dataset_info.json').read_text())
    new_info = json.loads((staged / 'dataset_info.json').read_text())
    info['splits'] = info['splits'] + [s for s in new_info['splits'] if s['name'] == split]
    return json.dumps(info, indent=2, sort_keys=True)


def _publish(staged: epath.Path, target: epath.Path, split_names: list[str], extra_names: list[str]) -> None:
    """Moves the staged version folder to target (new dataset) or merges new splits (their shards and the extra
    files `extra_names`) into target."""
    target_info = target / 'dataset_info.json'
    if target_info.exists():
        existing = {s['name'] for s in json.loads(target_info.read_text())['splits']}
        clash = sorted(existing & set(split_names))
        if clash:
            raise ValueError(f'{target} already holds split(s) {clash}; delete that folder or choose another --name.')
        merged_info = _merge_split_info(target, staged, split_names[0]) if len(split_names) == 1 else None
        if merged_info is None:
            raise ValueError(f'{target} exists; add splits to it one --split at a time.')
        for f in staged.iterdir():
            if f.name.startswith(f'{target.parent.name}-{split_names[0]}.') or f.name in extra_names:
                _copy_file(f, target / f.name)
        tmp_info = target / f'.dataset_info.json.{uuid.uuid4().hex}'
        tmp_info.write_text(merged_info)
        tmp_info.replace(target_info)  # atomic on local disk; copy+delete on GCS, the info file is small
        return
    if not str(target).startswith('gs://'):
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staged, target)  # atomic; fails if another process published first
        return
    files = sorted(staged.iterdir(), key=lambda f: f.name == 'dataset_info.json')  # info last
    target.mkdir(parents=True, exist_ok=True)
    for f in files:
        _copy_file(f, target / f.name)


def write_tfds_dataset(data_dir: str, name: str, class_names: list[str],
                       splits: dict[str, Callable[[], Iterator[Example]]], description: str,
                       extra_files: Mapping[str, str] | Callable[[], Mapping[str, str]] | None = None) -> epath.Path:
    """Builds `data_dir/name/1.0.0` with the given splits and returns that path.

    Args:
      data_dir: local folder or gs:// prefix (the TFDS data_dir).
      name: snake_case dataset name.
      class_names: label names; label i is class_names[i].
      splits: split name -> zero-argument function returning an iterator of (key, example).
      description: stored in dataset_info.json.
      extra_files: file name -> text, written into the version folder before it is published (also when a
        split is added to an existing dataset); or a function returning that dict, called after the examples
        were generated (e.g. to record what the generators skipped).
    """
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    check_dataset_name(name)
    tfds.disable_progress_bar()
    remote = data_dir.startswith('gs://')
    if not remote:
        os.makedirs(data_dir, exist_ok=True)
    # Local: stage inside data_dir so the final rename stays on one filesystem (atomic).
    staging = tempfile.mkdtemp(prefix=f'.staging-{name}-', dir=None if remote else data_dir)
    try:
        builder = _builder_class(name, class_names, description, splits)(data_dir=staging, file_format='array_record')
        builder.download_and_prepare()
        staged = epath.Path(staging) / name / VERSION
        extra = dict((extra_files() if callable(extra_files) else extra_files) or {})
        for file_name, text in extra.items():
            (staged / file_name).write_text(text)
        target = epath.Path(data_dir) / name / VERSION
        _publish(staged, target, list(splits), list(extra))
        logging.info('Wrote TFDS dataset %s (splits %s, %d classes).', target, list(splits), len(class_names))
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)
