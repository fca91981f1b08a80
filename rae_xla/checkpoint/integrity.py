"""Sizes and CRC-32 checksums of checkpoint files: recorded while DCP writes them, verified before a restore.

Recording costs no extra read: the DCP storage writer's filesystem is wrapped (`FileRecorder.wrap`) so that
every byte written passes through `zlib.crc32` on its way to the file (zlib releases the GIL on large buffers,
so the writer threads still run in parallel). The records `{file name: {'bytes': n, 'crc32': c}}` of every
process end up in the checkpoint's meta.json. Verification reads each file once (split over processes and
threads) and names the first file whose size or checksum differs, or that is missing.
"""
from __future__ import annotations

import contextlib
import threading
import zlib
from concurrent import futures
from typing import Any, Iterable

from etils import epath

READ_CHUNK_BYTES = 16 << 20  # 16 MiB: large enough for GCS throughput, small enough for memory.


class _HashingStream:
    """A write-only stream proxy that counts bytes and updates a CRC-32 as DCP writes through it."""

    def __init__(self, raw):
        self._raw = raw
        self.size = 0
        self.crc = 0

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        self.crc = zlib.crc32(view, self.crc)
        self.size += view.nbytes
        written = self._raw.write(data)
        return view.nbytes if written is None else written

    def tell(self) -> int:
        return self.size  # DCP records item offsets with tell(); the file started empty.

    def __getattr__(self, name: str) -> Any:  # flush, close, fileno (for fsync), writable, ...
        return getattr(self._raw, name)


class _RecordingFileSystem:
    """Delegates to a DCP FileSystem; streams opened for writing record their size and CRC-32 when closed."""

    def __init__(self, fs, recorder: "FileRecorder"):
        self._fs = fs
        self._recorder = recorder

    @contextlib.contextmanager
    def create_stream(self, path, mode: str):
        with self._fs.create_stream(path, mode) as stream:
            if "w" not in mode:
                yield stream
                return
            hashing = _HashingStream(stream)
            yield hashing
        self._recorder.add(_name(path), hashing.size, hashing.crc)

    def rename(self, path, new_path) -> None:
        self._fs.rename(path, new_path)  # DCP writes '.metadata.tmp', then renames it.
        self._recorder.move(_name(path), _name(new_path))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fs, name)


class FileRecorder:
    """Collects `{file name: {'bytes', 'crc32'}}` for the files one process writes into one checkpoint."""

    def __init__(self):
        self.records: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()  # DCP writes files from several threads.

    def wrap(self, fs):
        return _RecordingFileSystem(fs, self)

    def add(self, name: str, size: int, crc: int) -> None:
        with self._lock:
            self.records[name] = {"bytes": size, "crc32": crc}

    def move(self, old: str, new: str) -> None:
        with self._lock:
            if old in self.records:
                self.records[new] = self.records.pop(old)


def _name(path) -> str:
    return str(path).rstrip("/").rsplit("/", 1)[-1]


def check_sizes(directory: epath.Path, records: dict[str, dict[str, int]]) -> str | None:
    """Cheap check (one stat per file): None if every recorded file exists with its size, else the problem."""
    for name, record in sorted(records.items()):
        path = directory / name
        if not path.exists():
            return f"file {name} is missing"
        size = path.stat().length
        if size != record["bytes"]:
            return f"file {name} has {size} bytes, {record['bytes']} were written"
    return None


def verify_file(path: epath.Path, record: dict[str, int]) -> str | None:
    """Reads `path` once: None if its size and CRC-32 equal `record`, else what differs."""
    if not path.exists():
        return f"file {path.name} is missing"
    size, crc = 0, 0
    with path.open("rb") as f:
        while chunk := f.read(READ_CHUNK_BYTES):
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
    if size != record["bytes"]:
        return f"file {path.name} has {size} bytes, {record['bytes']} were written (truncated or overwritten)"
    if crc != record["crc32"]:
        return f"file {path.name} has CRC-32 {crc:#010x}, {record['crc32']:#010x} was written (corrupted)"
    return None


def verify_files(directory: epath.Path, records: dict[str, dict[str, int]], names: Iterable[str],
                 threads: int) -> str | None:
    """Verifies the files `names` of `records` with `threads` parallel readers; the first problem found, or None."""
    names = sorted(names)
    with futures.ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for problem in pool.map(lambda n: verify_file(directory / n, records[n]), names):
            if problem:
                return problem
    return None
