"""torch.distributed.checkpoint storage for local paths and `gs://` (through fsspec/gcsfs).

Shared by both runtimes; the XLA runtime adds its own planners on top. Writers split each process's shards over
`threads` files written in parallel, and, given a `FileRecorder`, record every file's size and CRC-32 as it is
written (rae_xla/checkpoint/integrity.py).
"""
from __future__ import annotations

from torch.distributed import checkpoint as dcp
from torch.distributed.checkpoint._fsspec_filesystem import FsspecReader, FsspecWriter

from rae_xla.checkpoint.integrity import FileRecorder


class _CopyRenameFileSystem:
    """DCP's fsspec FileSystem with rename = copy + delete.

    gcs has no rename: gcsfs first tries the objects moveTo API (hierarchical-namespace buckets only; the GCS
    emulators answer 501, which gcsfs retries for ~30 s) before it copies. DCP renames only its small
    `.metadata.tmp`, and our `COMMITTED` marker (written after it) is what makes a checkpoint atomic.
    """

    def __init__(self, fs):
        self._fs = fs

    def rename(self, path, new_path) -> None:
        self._fs.fs.copy(str(path), str(new_path))
        self._fs.fs.rm(str(path))

    def __getattr__(self, name: str):
        return getattr(self._fs, name)


def is_remote(path: str) -> bool:
    return "://" in path


def writer_for(path: str, *, threads: int = 1, recorder: FileRecorder | None = None) -> dcp.StorageWriter:
    """A DCP writer for `path`: FileSystemWriter locally, FsspecWriter for gs://; `threads` files per process."""
    if is_remote(path):
        # per_thread_copy_ahead=0: the state is already in host memory (staged), nothing to copy ahead.
        writer = FsspecWriter(path, single_file_per_rank=True, sync_files=False, thread_count=threads,
                              per_thread_copy_ahead=0)
        writer.fs = _CopyRenameFileSystem(writer.fs)
    else:
        writer = dcp.FileSystemWriter(path, single_file_per_rank=True, thread_count=threads)
    if recorder is not None:
        writer.fs = recorder.wrap(writer.fs)
    return writer


def reader_for(path: str) -> dcp.StorageReader:
    return FsspecReader(path) if is_remote(path) else dcp.FileSystemReader(path)
