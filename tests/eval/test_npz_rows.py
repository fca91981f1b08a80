"""NpzRows reads the same rows np.load does, in any order, from stored and compressed npz files."""
import numpy as np
import pytest

from rae_xla.eval.npz_rows import NpzRows


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_rows_equal_np_load(tmp_path, save):
    images = np.random.default_rng(0).integers(0, 256, (11, 4, 5, 3), dtype=np.uint8)
    save(tmp_path / "x.npz", arr_0=images, arr_1=np.arange(11))
    rows = NpzRows(str(tmp_path / "x.npz"))
    assert len(rows) == 11 and rows.shape == (11, 4, 5, 3) and rows.dtype == np.uint8
    np.testing.assert_array_equal(rows[0:4], images[0:4])
    np.testing.assert_array_equal(rows[6:20], images[6:])  # A forward skip, clipped at the end.
    np.testing.assert_array_equal(rows[2:3], images[2:3])  # Backward: reopens.
    np.testing.assert_array_equal(rows.read_all(), images)
    assert rows[11:11].shape == (0, 4, 5, 3)
    np.testing.assert_array_equal(NpzRows(str(tmp_path / "x.npz"), "arr_1")[3:5], [3, 4])
    with pytest.raises(ValueError, match="no arr_2"):
        NpzRows(str(tmp_path / "x.npz"), "arr_2")
