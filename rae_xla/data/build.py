"""Converts an image-folder tree into an ArrayRecord TFDS dataset, without TensorFlow.

  python -m rae_xla.data.build --image_folder=DIR --data_dir=DIR_OR_GS --name=NAME [--split=train]

DIR is `DIR/<class>/<image>`; labels are the class folders' indices in sorted order. The image bytes are
stored unchanged. Run it once per split (train, then validation) with the same --name to get one dataset
with both splits. Read the result with config.data.source='tfds', data_dir=DIR_OR_GS, name=NAME.
(argparse, not absl flags: rae_xla/main.py is the only module that defines absl flags.)
"""
import argparse
import os
import sys

from absl import logging
from etils import epath

from rae_xla.data import builder
from rae_xla.data import sources


def build_from_image_folder(image_folder: str, data_dir: str, name: str, split: str = 'train') -> epath.Path:
    """Writes `image_folder/<class>/<image>` as split `split` of TFDS dataset `data_dir/name`; returns its path."""
    class_names, paths, labels = sources.list_image_folder(image_folder)

    def examples():
        for relative, label in zip(paths, labels):
            relative = relative.decode()
            with open(os.path.join(image_folder, relative), 'rb') as f:
                yield relative, {'image': f.read(), 'label': int(label), 'file_name': relative}

    return builder.write_tfds_dataset(
        data_dir, name, class_names, {split: examples},
        description=f'Images from {os.path.abspath(image_folder)} ({len(paths)} images, {len(class_names)} classes).')


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog='python -m rae_xla.data.build', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--image_folder', required=True, help='root of <class>/<image> tree')
    parser.add_argument('--data_dir', required=True, help='TFDS data_dir: local folder or gs://bucket/prefix')
    parser.add_argument('--name', required=True, help='snake_case dataset name')
    parser.add_argument('--split', default='train', help='split name to write (default train)')
    args = parser.parse_args(argv)
    logging.set_verbosity(logging.INFO)
    try:
        target = build_from_image_folder(args.image_folder, args.data_dir, args.name, args.split)
    except ValueError as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    print(f'wrote {target} (split {args.split})')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
