"""Data sources: index -> (uint8 HWC RGB image, int label), with a length and a class count.

Two storage kinds sit behind one interface (`Source`):
- `TfdsSource`: a TFDS dataset prepared in ArrayRecord format (imagenet2012, or one written by
  `rae_xla.data.build`), local or gs://, read through `tfds.builder_from_directory` without TensorFlow.
  Metadata goes through etils/gcsfs; records through ArrayRecord's own C++ GCS client.
- `FolderSource`: a local `root/<class>/<image>` tree, labels = index of the class folder in sorted
  order (torchvision ImageFolder's rule, which is also the label order of TFDS imagenet2012).
The `synthetic` source is a `TfdsSource` over a dataset built on first use (`synthetic.py`).

Both pickle to a few KB plus the file list, and open their readers lazily in each worker process.
"""
import os
import re
from typing import Protocol

import numpy as np
from etils import epath

from rae_xla.data import retry
from rae_xla.data import transforms

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.gif', '.tif', '.tiff', '.ppm')
_VERSION_DIR = re.compile(r'^\d+\.\d+\.\d+$')


class Source(Protocol):
    """What the loader needs from a dataset."""
    num_classes: int

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]: ...

    def read_encoded(self, indices: list[int]) -> list[tuple[bytes | None, int, str, str | None]]:
        """For each index: (encoded image bytes or None, label, example id, error text or None)."""


class _DecodedAccess:
    """`source[i]`: decode one example read through the subclass's `read_encoded` (OSError if unreadable)."""

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        encoded, label, example_id, error = self.read_encoded([index])[0]
        if error is not None:
            raise OSError(f'cannot read {example_id}: {error}')
        return np.asarray(transforms.decode_rgb(encoded)), label


def find_tfds_version_dir(data_dir: str, name: str) -> epath.Path:
    """Returns `data_dir/name/<newest version>` holding a complete dataset (its dataset_info.json).

    `name` may pin a version as 'imagenet2012:5.1.0'. Raises ValueError naming the fix when nothing is there.
    """
    name, _, version = name.partition(':')
    base = epath.Path(data_dir) / name
    if not base.exists():
        raise ValueError(f'config.data: no TFDS dataset at {base} (data_dir={data_dir!r}, name={name!r}). '
                         'Prepare it first (docs/readme/data.md: ImageNet via `tfds build`, any image folder via '
                         '`python -m rae_xla.data.build`), or fix data_dir/name.')
    # dataset_info.json is written last (by TFDS locally, and by our uploader on gs://), so a
    # version folder without it is an interrupted build and is never read.
    versions = sorted((tuple(int(p) for p in d.name.split('.')), d) for d in base.iterdir()
                      if _VERSION_DIR.match(d.name) and (d / 'dataset_info.json').exists())
    if version:
        versions = [(v, d) for v, d in versions if d.name == version]
    if not versions:
        raise ValueError(f'config.data: {base} holds no complete TFDS version folder'
                         f'{" " + version if version else ""} (expected <version>/dataset_info.json). '
                         'Re-run the preparation, or fix data_dir/name.')
    return versions[-1][1]


class TfdsSource(_DecodedAccess):
    """An ArrayRecord TFDS split. Images stay encoded until a worker decodes them."""

    def __init__(self, dataset_dir: str, split: str):
        self.dataset_dir = str(dataset_dir)
        self.split = split
        self._reader = None
        builder = self._open_builder()
        splits = builder.info.splits
        if split not in splits:
            raise ValueError(f'config.data.split={split!r} is not in {self.dataset_dir}; '
                             f'available splits: {sorted(splits.keys())}.')
        features = builder.info.features
        for key in ('image', 'label'):
            if key not in features:
                raise ValueError(f'{self.dataset_dir} has no {key!r} feature (features: {list(features.keys())}); '
                                 'rae_xla needs image + label datasets.')
        self.num_classes = int(features['label'].num_classes)
        self._length = int(splits[split].num_examples)
        self._has_file_name = 'file_name' in features

    def _open_builder(self):
        import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top  (1.6 s import; workers only)
        return retry.retry_call(lambda: tfds.builder_from_directory(self.dataset_dir),
                                f'open TFDS dataset {self.dataset_dir}')

    def _data_source(self):
        if self._reader is None:
            import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
            builder = self._open_builder()
            self._reader = retry.retry_call(
                lambda: builder.as_data_source(split=self.split, decoders={'image': tfds.decode.SkipDecoding()}),
                f'open split {self.split} of {self.dataset_dir}')
        return self._reader

    def __getstate__(self):
        state = dict(self.__dict__)
        state['_reader'] = None  # reopened lazily in each worker process
        return state

    def __len__(self) -> int:
        return self._length

    def _example_id(self, index: int, record: dict | None) -> str:
        if record is not None and self._has_file_name:
            name = record['file_name']
            return name.decode() if isinstance(name, bytes) else str(name)
        return f'{self.split}[{index}]'

    def read_encoded(self, indices: list[int]) -> list[tuple[bytes | None, int, str, str | None]]:
        reader = self._data_source()
        what = f'read {len(indices)} records of {self.dataset_dir} {self.split}'
        try:  # one batched call: ArrayRecord reads the records in parallel (matters on GCS)
            records = retry.retry_call(lambda: reader.__getitems__(list(indices)), what)
        except Exception:  # pylint: disable=broad-except
            records = None  # isolate the bad record(s) one by one below
        out = []
        for position, index in enumerate(indices):
            try:
                record = records[position] if records is not None else retry.retry_call(
                    lambda: reader[index], f'read record {index} of {self.dataset_dir}', attempts=2)
                out.append((record['image'], int(record['label']), self._example_id(index, record), None))
            except Exception as error:  # pylint: disable=broad-except
                out.append((None, -1, self._example_id(index, None), f'{type(error).__name__}: {error}'))
        return out



def resolve_folder_root(data_dir: str, split: str) -> str:
    """`data_dir/<split>` when it exists ('validation' also tries 'val'), else `data_dir` itself."""
    if data_dir.startswith('gs://'):
        raise ValueError(f'config.data.data_dir={data_dir!r}: source="folder" reads local folders only '
                         '(listing a million GCS objects is slow). Convert the folder with '
                         '`python -m rae_xla.data.build` and use source="tfds".')
    for candidate in (split, 'val' if split == 'validation' else None):
        if candidate and os.path.isdir(os.path.join(data_dir, candidate)):
            return os.path.join(data_dir, candidate)
    return data_dir


def list_image_folder(root: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Lists `root/<class>/<image>`: (sorted class names, relative paths as bytes, int64 labels).

    Raises ValueError when root is missing, has no class folders, or holds no images.
    """
    if not os.path.isdir(root):
        raise ValueError(f'config.data.data_dir: image folder {root!r} does not exist. '
                         'Point data_dir at a root/<class>/<image> tree.')
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith('.'))
    paths, labels = [], []
    for label, class_name in enumerate(classes):
        with os.scandir(os.path.join(root, class_name)) as entries:
            files = sorted(e.name for e in entries if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS))
        paths.extend(f'{class_name}/{f}' for f in files)
        labels.extend([label] * len(files))
    if not paths:
        raise ValueError(f'config.data.data_dir: {root!r} holds no images in root/<class>/<image> layout '
                         f'({len(classes)} class folders, extensions {IMAGE_EXTENSIONS}).')
    # Fixed-width bytes: 1.28 M ImageNet paths take ~40 MB, pickled once per worker process.
    return classes, np.array(paths, dtype=np.bytes_), np.array(labels, dtype=np.int64)


class FolderSource(_DecodedAccess):
    """A local `root/<class>/<image>` tree (e.g. ImageNet train/ and val/ as usually unpacked)."""

    def __init__(self, root: str):
        self.root = root
        self.class_names, self._paths, self._labels = list_image_folder(root)
        self.num_classes = len(self.class_names)

    def __len__(self) -> int:
        return len(self._paths)

    def read_encoded(self, indices: list[int]) -> list[tuple[bytes | None, int, str, str | None]]:
        out = []
        for index in indices:
            relative = self._paths[index].decode()
            try:
                with open(os.path.join(self.root, relative), 'rb') as f:
                    out.append((f.read(), int(self._labels[index]), relative, None))
            except OSError as error:  # a file deleted or unreadable after listing
                out.append((None, int(self._labels[index]), relative, f'{type(error).__name__}: {error}'))
        return out

