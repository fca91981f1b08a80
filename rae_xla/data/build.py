"""Converts an image-folder tree into an ArrayRecord TFDS dataset, without TensorFlow.

  python -m rae_xla.data.build --image_folder=DIR --data_dir=DIR_OR_GS --name=NAME [--split=train] \
      [--num_workers=N] [--strict]

DIR is `DIR/<class>/<image>`; labels are the class folders' indices in sorted order. The image bytes are
stored unchanged. Run it once per split (train, then validation) with the same --name to get one dataset
with both splits. Read the result with config.data.source='tfds', data_dir=DIR_OR_GS, name=NAME.

Every image is decode-checked while building, in `--num_workers` processes that read and decode the files (the
main process only writes). A file that does not decode is skipped: each one is named in the log and on stdout,
and `build_report.<split>.json` in the dataset's version folder counts and lists them. `--strict` makes a
corrupt file an error instead (nothing is written). The loader still replaces an image that fails at read time
(the second line of defence).
(argparse, not absl flags: rae_xla/main.py is the only module that defines absl flags.)
"""
import argparse
import io
import json
import multiprocessing
import os
import sys

from absl import logging
from etils import epath
from PIL import Image

from rae_xla.data import builder
from rae_xla.data import sources
from rae_xla.data import transforms  # noqa: F401  Sets the loader's decompression-bomb limit (workers too).

# Reads and checks run ahead of the writer in chunks of this many files per worker task (IPC overhead ~ per task).
_CHUNK = 16


class CorruptImageError(ValueError):
    """--strict and a file that does not decode; the message names it."""


def report_name(split: str) -> str:
    """The file in the version folder that counts and names the files skipped while building `split`."""
    return f'build_report.{split}.json'


def read_and_check(path: str) -> tuple[bytes | None, str | None]:
    """(file bytes, None) when `path` decodes as an image, else (None, why). Runs in the worker processes.

    The check is the loader's decode (`transforms.decode_rgb`: open + convert to RGB, same pixel limit), with
    JPEGs decoded at 1/8 scale (PIL draft mode: libjpeg still reads the whole entropy-coded stream, so a truncated
    or garbled file fails as at full size, at a fraction of the inverse-DCT cost).
    """
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as error:
        return None, f'unreadable: {type(error).__name__}: {error}'
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format == 'JPEG':
                image.draft('RGB', (max(image.width // 8, 1), max(image.height // 8, 1)))
            image.convert('RGB')
    except Exception as error:  # PIL raises OSError, ValueError, SyntaxError, DecompressionBombError, ...
        return None, f'{type(error).__name__}: {error}'
    return data, None


def build_from_image_folder(image_folder: str, data_dir: str, name: str, split: str = 'train', *,
                            num_workers: int | None = None, strict: bool = False) -> epath.Path:
    """Writes `image_folder/<class>/<image>` as split `split` of TFDS dataset `data_dir/name`; returns its path.

    num_workers: processes that read and decode-check the files (default: the CPU count, at most 16; 0 = in
      this process). strict: raise CorruptImageError at the first file that does not decode, instead of
      skipping it. Skipped files are logged and listed in `build_report.<split>.json` (see `report_name`).
    """
    class_names, paths, labels = sources.list_image_folder(image_folder)
    relatives = [p.decode() for p in paths]
    skipped: list[dict] = []
    workers = min(os.cpu_count() or 1, 16) if num_workers is None else num_workers

    def examples():
        full_paths = [os.path.join(image_folder, r) for r in relatives]
        if workers > 0:
            # spawn: a forked child of a process that already started threads (TFDS, gcsfs) can deadlock.
            pool = multiprocessing.get_context('spawn').Pool(workers)
            checked = pool.imap(read_and_check, full_paths, chunksize=_CHUNK)  # In order, streamed.
        else:
            pool, checked = None, map(read_and_check, full_paths)
        try:
            for relative, label, (data, error) in zip(relatives, labels, checked):
                if error is not None:
                    if strict:
                        raise CorruptImageError(f'{os.path.join(image_folder, relative)} does not decode ({error}); '
                                                'remove or replace it, or build without --strict to skip it.')
                    logging.warning('Skipping %s: it does not decode (%s).', relative, error)
                    skipped.append({'file_name': relative, 'error': error})
                    continue
                yield relative, {'image': data, 'label': int(label), 'file_name': relative}
        finally:
            if pool is not None:
                pool.terminate()

    def report():
        return {report_name(split): json.dumps({
            'split': split, 'num_files': len(relatives), 'num_written': len(relatives) - len(skipped),
            'num_skipped': len(skipped), 'skipped': skipped}, indent=2)}

    target = builder.write_tfds_dataset(
        data_dir, name, class_names, {split: examples},
        description=f'Images from {os.path.abspath(image_folder)} ({len(paths)} images, {len(class_names)} classes).',
        extra_files=report)
    if skipped:
        logging.warning('Skipped %d of %d files of split %s that do not decode (listed in %s).', len(skipped),
                        len(relatives), split, target / report_name(split))
    return target


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog='python -m rae_xla.data.build', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--image_folder', required=True, help='root of <class>/<image> tree')
    parser.add_argument('--data_dir', required=True, help='TFDS data_dir: local folder or gs://bucket/prefix')
    parser.add_argument('--name', required=True, help='snake_case dataset name')
    parser.add_argument('--split', default='train', help='split name to write (default train)')
    parser.add_argument('--num_workers', type=int, default=None,
                        help='processes that read and decode-check the images (default: CPU count, at most 16)')
    parser.add_argument('--strict', action='store_true', help='a file that does not decode is an error, not skipped')
    args = parser.parse_args(argv)
    logging.set_verbosity(logging.INFO)
    try:
        target = build_from_image_folder(args.image_folder, args.data_dir, args.name, args.split,
                                         num_workers=args.num_workers, strict=args.strict)
    except ValueError as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    report = json.loads((target / report_name(args.split)).read_text())
    for entry in report['skipped']:
        print(f'skipped {entry["file_name"]}: {entry["error"]}')
    print(f'wrote {target} (split {args.split}): {report["num_written"]} images, {report["num_skipped"]} skipped '
          'because they do not decode')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
