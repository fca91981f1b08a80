"""torch.distributed.checkpoint storage for local paths and `gs://` (through fsspec/gcsfs).

Shared by both runtimes; the XLA runtime adds its own planners on top. Writers split each process's shards over
`threads` files written in parallel, and, given a `FileRecorder`, record every file's size and CRC-32 as it is
written (rae_xla/checkpoint/integrity.py).
"""
from __future__ import annotations

from torch.distributed import checkpoint as dcp
from torch.distributed.checkpoint._fsspec_filesystem import FsspecReader, FsspecWriter

from rae_xla.checkpoint.integrity import FileRecorder


def is_remote(path: str) -> bool:
    return "://" in path


def writer_for(path: str, *, threads: int = 1, recorder: FileRecorder | None = None) -> dcp.StorageWriter:
    """A DCP writer for `path`: FileSystemWriter locally, FsspecWriter for gs://; `threads` files per process."""
    if is_remote(path):
        # per_thread_copy_ahead=0: the state is already in host memory (staged), nothing to copy ahead.
        writer = FsspecWriter(path, single_file_per_rank=True, sync_files=False, thread_count=threads,
                              per_thread_copy_ahead=0)
    else:
        writer = dcp.FileSystemWriter(path, single_file_per_rank=True, thread_count=threads)
    if recorder is not None:
        writer.fs = recorder.wrap(writer.fs)
    return writer


def reader_for(path: str) -> dcp.StorageReader:
    return FsspecReader(path) if is_remote(path) else dcp.FileSystemReader(path)
