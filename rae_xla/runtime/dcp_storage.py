"""torch.distributed.checkpoint storage for local paths and `gs://` (through fsspec/gcsfs).

Shared by both runtimes; the XLA runtime adds its own planners on top.
"""
from __future__ import annotations

from torch.distributed import checkpoint as dcp
from torch.distributed.checkpoint._fsspec_filesystem import FsspecReader, FsspecWriter


def is_remote(path: str) -> bool:
    return "://" in path


def writer_for(path: str) -> dcp.StorageWriter:
    """A DCP writer for `path`: FileSystemWriter locally, FsspecWriter for gs:// (one file per process)."""
    if is_remote(path):
        return FsspecWriter(path, single_file_per_rank=True, sync_files=False)
    return dcp.FileSystemWriter(path, single_file_per_rank=True)


def reader_for(path: str) -> dcp.StorageReader:
    return FsspecReader(path) if is_remote(path) else dcp.FileSystemReader(path)
