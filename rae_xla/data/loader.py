"""Train and eval loaders: per-process slices of fixed global batches, decoded in worker processes.

Each DataLoader item is one whole step (this process's b = G / P rows), built by a map-style dataset
indexed by the step number, so the data at step k depends only on (seed, k) (see sampler.py) and not
on worker count, scheduling or where a run was resumed. Workers are started with 'spawn': a fork after
torch_xla/PJRT has started threads in the parent can deadlock, and spawn never copies that state.

Undecodable or unreadable examples are replaced by the next readable index (i+1, i+2, ... mod N), with
the replacement's own label, so image and label stay consistent and the batch shape never changes; the
batch carries `num_replaced`, and the ids are logged (absl warning) and kept on the loader.
"""
import collections
import itertools
import multiprocessing
from typing import Any, Iterator

import numpy as np
import torch
from absl import logging

from rae_xla.data import dataset
from rae_xla.data import sampler
from rae_xla.data import sources
from rae_xla.data import transforms

# Neighbours tried before giving up on a slot. 16 consecutive bad records means a broken shard; the
# slot then gets a mid-grey image (label of the original record, or 0 if unreadable) and a loud warning.
MAX_REPLACEMENT_TRIES = 16
_MAX_KEPT_IDS = 1000


def _decode_one(source: sources.Source, index: int, image_size: int, flip: bool, crop_uv=None):
    """(image, label, None) for a good example, (None, label, 'id: reason') for a bad one."""
    encoded, label, example_id, error = source.read_encoded([int(index)])[0]
    if error is None:
        try:
            return transforms.load_example_image(encoded, image_size, flip, crop_uv), label, None
        except Exception as decode_error:  # pylint: disable=broad-except  (PIL raises many types)
            error = f'{type(decode_error).__name__}: {decode_error}'
    return None, label, f'{example_id} ({error})'


def load_examples(source: sources.Source, indices: np.ndarray, flips: np.ndarray, image_size: int,
                  crops: np.ndarray | None = None):
    """Reads, decodes and crops `indices`, replacing bad ones deterministically.

    crops: None (ADM center crop) or float (b, 2) uniforms for the stage-1 random crop of each slot.

    Returns (uint8 (b, S, S, 3) images, int64 (b,) labels, list of 'id (reason)' strings for replaced slots).
    """
    images = np.empty((len(indices), image_size, image_size, 3), np.uint8)
    labels = np.empty((len(indices),), np.int64)
    replaced = []
    records = source.read_encoded([int(i) for i in indices])
    for slot, (index, flip, (encoded, label, example_id, error)) in enumerate(zip(indices, flips, records)):
        image = None
        if error is None:
            try:
                image = transforms.load_example_image(encoded, image_size, bool(flip),
                                                      None if crops is None else crops[slot])
            except Exception as decode_error:  # pylint: disable=broad-except
                error = f'{type(decode_error).__name__}: {decode_error}'
        if image is None:
            replaced.append(f'{example_id} ({error})')
            for offset in range(1, MAX_REPLACEMENT_TRIES + 1):
                image, label, _ = _decode_one(source, (int(index) + offset) % len(source), image_size, bool(flip),
                                              None if crops is None else crops[slot])
                if image is not None:
                    break
            if image is None:
                image, label = np.full((image_size, image_size, 3), 128, np.uint8), max(label, 0)
        images[slot], labels[slot] = image, label
    return images, labels, replaced


class TrainSteps(torch.utils.data.Dataset):
    """Map-style dataset: step k -> this process's slice of global batch k (flip per config)."""

    def __init__(self, source: sources.Source, image_size: int, random_flip: bool, global_batch_size: int,
                 process_index: int, process_count: int, seed: int, crop: str = 'center'):
        self.source, self.image_size, self.random_flip, self.crop = source, image_size, random_flip, crop
        self.global_batch_size, self.seed = global_batch_size, seed
        self.rows = sampler.process_rows(process_index, process_count, global_batch_size)
        self.steps_per_epoch = sampler.steps_per_epoch(len(source), global_batch_size)

    def indices_and_flips(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        indices = sampler.global_batch_indices(self.seed, step, len(self.source), self.global_batch_size)[self.rows]
        flips = sampler.global_flips(self.seed, step, self.global_batch_size)[self.rows]
        return indices, flips if self.random_flip else np.zeros_like(flips)

    def __getitem__(self, step: int) -> dict:
        indices, flips = self.indices_and_flips(step)
        crops = (sampler.global_crops(self.seed, step, self.global_batch_size)[self.rows] if self.crop == 'random'
                 else None)
        images, labels, replaced = load_examples(self.source, indices, flips, self.image_size, crops)
        return {'image': torch.from_numpy(images), 'label': torch.from_numpy(labels), 'step': step,
                'num_replaced': torch.tensor(len(replaced), dtype=torch.int64), 'replaced_ids': replaced}


class EvalSteps(torch.utils.data.Dataset):
    """Map-style dataset: eval step j -> this process's rows of indices [j*G, (j+1)*G), padded past N."""

    def __init__(self, source: sources.Source, image_size: int, global_batch_size: int, process_index: int,
                 process_count: int):
        self.source, self.image_size, self.global_batch_size = source, image_size, global_batch_size
        self.rows = sampler.process_rows(process_index, process_count, global_batch_size)

    def __len__(self) -> int:
        return -(-len(self.source) // self.global_batch_size)  # ceil: the last batch is padded

    def __getitem__(self, step: int) -> dict:
        indices = np.arange(step * self.global_batch_size, (step + 1) * self.global_batch_size)[self.rows]
        valid = indices < len(self.source)
        b = len(indices)
        images = np.zeros((b, self.image_size, self.image_size, 3), np.uint8)
        labels = np.zeros((b,), np.int64)
        read_images, read_labels, replaced = load_examples(self.source, indices[valid], np.zeros(valid.sum(), bool),
                                                           self.image_size)
        images[valid], labels[valid] = read_images, read_labels
        return {'image': torch.from_numpy(images), 'label': torch.from_numpy(labels),
                'index': torch.from_numpy(indices.astype(np.int64)), 'valid': torch.from_numpy(valid), 'step': step,
                'num_replaced': torch.tensor(len(replaced), dtype=torch.int64), 'replaced_ids': replaced}


class _StepsFrom(torch.utils.data.Sampler):
    """start, start + 1, ... forever (training is bounded by the trainer's step count)."""

    def __init__(self, start: int):
        self.start = start

    def __iter__(self) -> Iterator[int]:
        return itertools.count(self.start)


class BatchIterator:
    """Iterates DataLoader batches; logs replaced examples and keeps their count and (last 1000) ids.

    Yields dicts without 'replaced_ids'; `num_replaced_total` and `replaced_ids` are for the trainer's metrics.
    """

    def __init__(self, loader: torch.utils.data.DataLoader):
        self.loader = loader
        self._iterator = None
        self.num_replaced_total = 0
        self.replaced_ids = collections.deque(maxlen=_MAX_KEPT_IDS)

    def __iter__(self) -> 'BatchIterator':
        return self

    def __next__(self) -> dict:
        if self._iterator is None:
            self._iterator = iter(self.loader)  # starts the workers on first use
        batch = next(self._iterator)
        replaced = batch.pop('replaced_ids')
        if replaced:
            self.num_replaced_total += len(replaced)
            self.replaced_ids.extend(replaced)
            logging.warning('data: step %d: replaced %d unreadable example(s) (%d so far): %s', batch['step'],
                            len(replaced), self.num_replaced_total, '; '.join(replaced))
        return batch


def _data_loader(steps: torch.utils.data.Dataset, data_cfg: Any, step_order) -> torch.utils.data.DataLoader:
    num_workers = dataset.field(data_cfg, 'num_workers')
    worker_options = {}
    if num_workers > 0:
        worker_options = dict(multiprocessing_context=multiprocessing.get_context('spawn'), persistent_workers=True,
                              prefetch_factor=dataset.field(data_cfg, 'prefetch_factor'))
    # batch_size=None: each item already is a whole batch; DataLoader keeps items in sampler order.
    return torch.utils.data.DataLoader(steps, batch_size=None, sampler=step_order, num_workers=num_workers,
                                       **worker_options)


def make_train_loader(data_cfg: Any, *, global_batch_size: int, process_index: int, process_count: int, seed: int,
                      start_step: int) -> BatchIterator:
    """Infinite iterator of {'image': uint8 (b, S, S, 3), 'label': int64 (b,), 'step': int, 'num_replaced': int64 ()}.

    b = global_batch_size // process_count; the first batch is step `start_step`. Steps per epoch =
    len(source) // global_batch_size (remainder dropped).
    """
    if start_step < 0:
        raise ValueError(f'start_step={start_step} must be >= 0.')
    steps = TrainSteps(dataset.open_source(data_cfg), dataset.field(data_cfg, 'image_size'),
                       dataset.field(data_cfg, 'random_flip'), global_batch_size, process_index, process_count, seed,
                       crop=dataset.crop_mode(data_cfg))
    logging.info('data: %d examples, %d classes, %d steps/epoch, process %d/%d reads %d of %d rows per step.',
                 len(steps.source), steps.source.num_classes, steps.steps_per_epoch, process_index, process_count,
                 steps.rows.stop - steps.rows.start, global_batch_size)
    return BatchIterator(_data_loader(steps, data_cfg, _StepsFrom(start_step)))


def make_eval_loader(data_cfg: Any, *, batch_size: int, process_index: int, process_count: int) -> BatchIterator:
    """Finite iterator over every example once, in index order, never flipped.

    `batch_size` is the GLOBAL batch size (split over processes like training). Yields
    {'image': uint8 (b, S, S, 3), 'label': int64 (b,), 'index': int64 (b,), 'valid': bool (b,), 'step': int,
    'num_replaced': int64 ()}; rows past the end of the dataset are zeros with valid=False.
    """
    steps = EvalSteps(dataset.open_source(data_cfg), dataset.field(data_cfg, 'image_size'), batch_size,
                      process_index, process_count)
    return BatchIterator(_data_loader(steps, data_cfg, range(len(steps))))
