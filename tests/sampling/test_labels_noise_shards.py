"""Host-side pieces of the sampling jobs: label orders, per-index noise, atomic shards and npz assembly."""
import zipfile

import numpy as np
import pytest
import torch

from rae_xla.sampling import labels as labels_lib
from rae_xla.sampling.noise import sample_noise
from rae_xla.sampling.shards import ShardStore


@pytest.mark.parametrize("n,classes", [(50, 10), (1000, 1000), (37, 10), (7, 10), (120, 7)])
def test_equal_labels_are_balanced_to_one(n, classes):
    labels = labels_lib.class_labels("equal", seed=3, num_samples=n, num_classes=classes)
    counts = np.bincount(labels, minlength=classes)
    assert labels.shape == (n,) and counts.sum() == n
    assert counts.max() - counts.min() <= 1
    if n % classes == 0:
        assert (counts == n // classes).all()
    assert not np.array_equal(labels, np.sort(labels)) or n <= 1  # shuffled


def test_equal_labels_are_a_function_of_seed_and_n():
    a = labels_lib.class_labels("equal", seed=1, num_samples=100, num_classes=10)
    b = labels_lib.class_labels("equal", seed=1, num_samples=100, num_classes=10)
    c = labels_lib.class_labels("equal", seed=2, num_samples=100, num_classes=10)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def official_loop(seed, n, classes, world, batch):
    """A transcription of sample_ddp.py's label sampler and PNG numbering: label of every saved PNG index."""
    pool = torch.arange(classes).repeat_interleave(n // classes)
    g = torch.Generator()
    g.manual_seed(seed)
    pool = pool[torch.randperm(pool.numel(), generator=g)]
    total = int(np.ceil(n / (world * batch)) * world * batch)
    if total > n:
        pool = torch.cat([pool, torch.randint(0, classes, (total - n,), generator=g)])
    per_rank = total // world
    iterations = per_rank // batch
    saved = {}
    for rank in range(world):
        device_pool = pool[rank * per_rank:(rank + 1) * per_rank].view(iterations, batch)
        done = 0
        for step in range(iterations):
            for local, label in enumerate(device_pool[step].tolist()):
                saved[local * world + rank + done] = label
            done += world * batch
    return np.array([saved[i] for i in range(n)])


@pytest.mark.parametrize("n,world,batch", [(40, 2, 4), (60, 4, 5), (30, 8, 3), (20, 1, 20)])
def test_official_labels_reproduce_the_official_png_order(n, world, batch):
    got = labels_lib.class_labels("official", seed=5, num_samples=n, num_classes=10, official_world_size=world,
                                  official_batch=batch)
    np.testing.assert_array_equal(got, official_loop(5, n, 10, world, batch))


def test_random_labels_cover_the_range():
    labels = labels_lib.class_labels("random", seed=0, num_samples=2000, num_classes=10)
    assert labels.min() == 0 and labels.max() == 9 and len(set(np.bincount(labels))) > 1


def test_bad_label_mode_is_one_clear_error():
    with pytest.raises(ValueError, match="unknown label mode"):
        labels_lib.class_labels("balanced", seed=0, num_samples=10, num_classes=10)


def test_noise_depends_only_on_seed_and_index():
    full = sample_noise(7, range(8), (4, 2, 2))
    part = sample_noise(7, [5, 2], (4, 2, 2))
    torch.testing.assert_close(part, full[[5, 2]], rtol=0, atol=0)
    assert not torch.equal(full[0], full[1])
    assert not torch.equal(sample_noise(8, [0], (4, 2, 2))[0], full[0])
    assert abs(float(sample_noise(0, range(64), (16, 4, 4)).std()) - 1.0) < 0.05


def rows(start, end):
    return {"images": np.arange(start, end, dtype=np.uint8)[:, None, None, None].repeat(2, 1).repeat(2, 2).repeat(3, 3),
            "labels": np.arange(start, end, dtype=np.int64)}


def test_shards_resume_trim_and_assemble(tmp_path):
    store = ShardStore(tmp_path / "s", 10, {"seed": 0}, writer=True)
    store.write(0, rows(0, 4))
    (tmp_path / "s" / "00000004_00000008.npz.tmp").write_bytes(b"partial")  # An interrupted write.
    again = ShardStore(tmp_path / "s", 10, {"seed": 0}, writer=True)
    assert again.covered == 4 and not list((tmp_path / "s").glob("*.tmp"))
    again.write(2, rows(2, 6))  # Rows 2, 3 exist: only 4, 5 are written.
    again.write(6, rows(6, 12))  # Rows past the total (padding) are dropped.
    assert [(a, b) for a, b, _ in again.shards()] == [(0, 4), (4, 6), (6, 10)] and again.done
    with pytest.raises(ValueError, match="gap"):
        ShardStore(tmp_path / "t", 10, {}, writer=True).write(3, rows(3, 5))
    (tmp_path / "out.npz").write_bytes(b"an earlier run's file")  # A finished job run again overwrites it.
    again.assemble(tmp_path / "out.npz", {"arr_0": "images", "arr_1": "labels"})
    with np.load(tmp_path / "out.npz") as out:
        np.testing.assert_array_equal(out["arr_0"], rows(0, 10)["images"])
        np.testing.assert_array_equal(out["arr_1"], np.arange(10))
    with zipfile.ZipFile(tmp_path / "out.npz") as archive:  # Uncompressed, as np.savez (ADM reads it lazily).
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_STORED}


def test_shards_refuse_other_settings(tmp_path):
    ShardStore(tmp_path, 10, {"seed": 0}, writer=True)
    with pytest.raises(ValueError, match="other settings.*seed"):
        ShardStore(tmp_path, 10, {"seed": 1}, writer=True)
