"""Loader contract: per-process slices, exact resume, flips, spawn workers, bad images, eval padding."""
import os

import numpy as np
import pytest
import torch

import rae_xla.data as data
from rae_xla.data import loader as loader_lib
from rae_xla.data import sampler
from tests.data.conftest import write_image

G = 8  # global batch; the 40-image dataset gives 5 steps per epoch


@pytest.fixture(scope='module')
def cfg(tmp_path_factory):
    return dict(source='synthetic', name='shapes', data_dir=str(tmp_path_factory.mktemp('synth')), split='train',
                image_size=16, random_flip=True, num_workers=0, prefetch_factor=2, synthetic_num_classes=4,
                synthetic_num_images=40)


def _take(cfg, n, process_index=0, process_count=1, seed=7, start_step=0):
    it = data.make_train_loader(cfg, global_batch_size=G, process_index=process_index, process_count=process_count,
                                seed=seed, start_step=start_step)
    return [next(it) for _ in range(n)]


def test_batch_format(cfg):
    batch, = _take(cfg, 1, process_index=1, process_count=2)
    assert batch['image'].shape == (4, 16, 16, 3) and batch['image'].dtype == torch.uint8
    assert batch['label'].shape == (4,) and batch['label'].dtype == torch.int64
    assert batch['step'] == 0 and batch['num_replaced'].shape == () and int(batch['num_replaced']) == 0
    assert set(batch) == {'image', 'label', 'step', 'num_replaced'}


def test_processes_read_disjoint_slices_whose_union_is_the_global_batch(cfg):
    whole = _take(cfg, 6)
    parts = [_take(cfg, 6, process_index=p, process_count=2) for p in range(2)]
    for step in range(6):
        for key in ('image', 'label'):
            torch.testing.assert_close(torch.cat([parts[0][step][key], parts[1][step][key]]), whole[step][key],
                                       rtol=0, atol=0)
        rows = [sampler.global_batch_indices(7, step, 40, G)[sampler.process_rows(p, 2, G)] for p in range(2)]
        assert not set(rows[0]) & set(rows[1])


def test_resume_at_step_k_continues_exactly(cfg):
    uninterrupted = _take(cfg, 13)  # crosses two epoch boundaries (5 steps per epoch)
    resumed = _take(cfg, 6, start_step=7)
    for a, b in zip(uninterrupted[7:], resumed):
        assert a['step'] == b['step']
        assert torch.equal(a['image'], b['image']) and torch.equal(a['label'], b['label'])
    # Resuming with a different process count reads the same global data.
    halves = [_take(cfg, 3, process_index=p, process_count=2, start_step=9) for p in range(2)]
    for step in range(3):
        assert torch.equal(torch.cat([halves[0][step]['image'], halves[1][step]['image']]),
                           uninterrupted[9 + step]['image'])


def test_each_epoch_is_a_new_permutation_without_repeats():
    epochs = [np.concatenate([sampler.global_batch_indices(3, e * 5 + k, 43, G) for k in range(5)]) for e in range(2)]
    for order in epochs:
        assert len(set(order.tolist())) == 40  # 43 // 8 = 5 steps, the remainder dropped
    assert not np.array_equal(epochs[0], epochs[1])
    assert not np.array_equal(sampler.global_batch_indices(3, 0, 43, G), sampler.global_batch_indices(4, 0, 43, G))


def test_flips_follow_the_coin_and_are_off_when_disabled(cfg):
    flipped, = _take(cfg, 1, start_step=3)
    plain, = _take(dict(cfg, random_flip=False), 1, start_step=3)
    coins = sampler.global_flips(7, 3, G)
    assert 0 < coins.sum() < G  # both branches exercised at this seed/step
    for row in range(G):
        want = plain['image'][row].flip(1) if coins[row] else plain['image'][row]
        assert torch.equal(flipped['image'][row], want)


def test_spawned_workers_give_the_same_batches(cfg):
    it = data.make_train_loader(dict(cfg, num_workers=2), global_batch_size=G, process_index=0, process_count=1,
                                seed=7, start_step=4)
    assert it.loader.multiprocessing_context.get_start_method() == 'spawn'  # never fork after torch_xla init
    with_workers = [next(it) for _ in range(4)]
    for a, b in zip(with_workers, _take(cfg, 4, start_step=4)):
        assert a['step'] == b['step'] and torch.equal(a['image'], b['image'])


@pytest.fixture
def broken_folder(tmp_path):
    root = tmp_path / 'train'
    for c in range(2):
        for i in range(4):
            write_image(str(root / f'c{c}' / f'{i}.jpg'), 24, 30, seed=10 * c + i)
    (root / 'c0' / '1.jpg').write_bytes(b'\xff\xd8\xff\xe0 truncated garbage')
    return root


def test_bad_images_are_replaced_counted_and_logged(broken_folder, caplog):
    cfg = dict(source='folder', name='', data_dir=str(broken_folder), split='train', image_size=16, random_flip=False,
               num_workers=0, prefetch_factor=2, synthetic_num_classes=1, synthetic_num_images=1)
    it = data.make_train_loader(cfg, global_batch_size=8, process_index=0, process_count=1, seed=0, start_step=0)
    os.remove(broken_folder / 'c1' / '2.jpg')  # disappears after listing
    with caplog.at_level('WARNING'):
        batch = next(it)
    assert batch['image'].shape == (8, 16, 16, 3) and int(batch['num_replaced']) == 2
    assert it.num_replaced_total == 2 and len(it.replaced_ids) == 2
    assert 'c0/1.jpg' in caplog.text and 'c1/2.jpg' in caplog.text
    # Deterministic rule: index i -> i + 1 (c0/1.jpg is index 1, replaced by c0/2.jpg, label 0).
    source = it.loader.dataset.source  # the listing made before the file was removed
    order = sampler.global_batch_indices(0, 0, 8, 8).tolist()
    row = order.index(1)
    expected, _, _ = loader_lib.load_examples(source, np.array([2]), np.array([False]), 16)
    assert torch.equal(batch['image'][row], torch.from_numpy(expected[0])) and int(batch['label'][row]) == 0
    again = loader_lib.TrainSteps(source, 16, False, 8, 0, 1, seed=0)[0]
    assert torch.equal(again['image'], batch['image']) and again['replaced_ids'] == list(it.replaced_ids)


def test_eval_loader_covers_each_index_once_with_padding(cfg):
    seen = []
    for p in range(2):
        batches = list(data.make_eval_loader(cfg, batch_size=12, process_index=p, process_count=2))
        assert len(batches) == 4  # ceil(40 / 12)
        for b in batches:
            assert b['image'].shape == (6, 16, 16, 3) and b['valid'].dtype == torch.bool
            seen += b['index'][b['valid']].tolist()
            assert (b['image'][~b['valid']] == 0).all()
    assert sorted(seen) == list(range(40))
    first = next(iter(data.make_eval_loader(cfg, batch_size=12, process_index=0, process_count=1)))
    source = data.open_source(cfg)
    image, label = source[5]
    assert int(first['label'][5]) == label  # in order, unflipped
