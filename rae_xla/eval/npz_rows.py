"""Row-wise reading of one array inside an .npz (local or gs://) without loading it: 50,000 512-px samples are
39 GB, more than a host should hold just to stream them through the Inception in batches."""
from __future__ import annotations

import zipfile

import numpy as np
from etils import epath


class NpzRows:
    """`rows[lo:hi]` -> np.ndarray of rows lo..hi-1 of `name` in the npz at `path`; also len(), shape, dtype.

    Reads are cheapest in increasing order (the evaluation reads batches front to back); a backward read reopens
    the member. Fortran-ordered arrays are refused (np.savez never writes them for C-contiguous input).
    """

    def __init__(self, path: str, name: str = "arr_0"):
        self.path, self.name = path, name
        self._file = epath.Path(path).open("rb")
        self._zip = zipfile.ZipFile(self._file)
        member = f"{name}.npy"
        if member not in self._zip.namelist():
            raise ValueError(f"{path} has no {name}; arrays: {[n[:-4] for n in self._zip.namelist()]}")
        self._member = member
        self._open()

    def _open(self) -> None:
        self._stream = self._zip.open(self._member)
        version = np.lib.format.read_magic(self._stream)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in read_header:
            raise ValueError(f"{self.path}:{self.name}: .npy format version {version} is not supported")
        shape, fortran, dtype = read_header[version](self._stream)
        if fortran:
            raise ValueError(f"{self.path}:{self.name} is Fortran-ordered; rewrite it with np.savez")
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self._row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self._position = 0  # Next row the stream will return.

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: slice) -> np.ndarray:
        if not isinstance(rows, slice) or rows.step not in (None, 1):
            raise TypeError("NpzRows supports contiguous slices only, e.g. rows[lo:hi]")
        lo, hi, _ = rows.indices(len(self))
        hi = max(hi, lo)
        if lo < self._position:
            self._stream.close()
            self._open()
        if lo > self._position:
            self._stream.read((lo - self._position) * self._row_bytes)  # Forward skip (stored members: a copy).
        data = self._stream.read((hi - lo) * self._row_bytes)
        self._position = hi
        return np.frombuffer(data, self.dtype).reshape(hi - lo, *self.shape[1:])

    def read_all(self) -> np.ndarray:
        return self[0:len(self)].copy()

    def close(self) -> None:
        self._stream.close()
        self._zip.close()
        self._file.close()
