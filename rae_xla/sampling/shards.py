"""Sample shards in the workdir: written as they are made, atomically, resumable, assembled into ADM npz files.

A shard is `<dir>/<start:08d>_<end:08d>.npz` holding rows [start, end) of every array of the run (e.g. `images`
uint8 (n, H, W, 3) and `labels` int64 (n,)). It is written under a temporary name and renamed when complete,
so a preempted run leaves either a whole shard or a `*.tmp` file (deleted on the next start). The shards of a
run always cover a prefix [0, covered) of the sample indices: shards are written in index order, a row below
`covered` is never written twice, and a run resumes at `covered` (with any batch size or device count).
The final file is streamed shard by shard into an uncompressed npz (no N x H x W x 3 array in memory), the
format `np.savez` writes and ADM's evaluator reads (`arr_0` uint8 N x H x W x 3).
"""
from __future__ import annotations

import io
import json
import re
import zipfile
from typing import Mapping

import numpy as np
from absl import logging
from etils import epath

_SHARD = re.compile(r"^(\d{8})_(\d{8})\.npz$")
SETTINGS_FILE = "settings.json"


class ShardStore:
    """Shards of one run of `total` samples in `directory` (local or gs://). Only process 0 writes.

    `settings` (JSON-serialisable) describe what the samples are a function of (model, seed, labels, sampler...).
    They are written on the first start and compared on every resume: a mismatch is an error, never a file
    that mixes two settings.
    """

    def __init__(self, directory: str | epath.Path, total: int, settings: Mapping, *, writer: bool):
        self.directory = epath.Path(directory)
        self.total = total
        self.writer = writer
        if writer:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._check_settings(dict(settings, total=total))
            for leftover in self.directory.glob("*.tmp"):  # A write interrupted before its rename.
                leftover.unlink()
        self.covered = self.scan()

    def _check_settings(self, settings: dict) -> None:
        path = self.directory / SETTINGS_FILE
        text = json.dumps(settings, indent=2, sort_keys=True, default=str)
        if path.exists():
            old = json.loads(path.read_text())
            new = json.loads(text)
            if old != new:
                diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
                raise ValueError(f"{self.directory} holds shards made with other settings (differing: {diff}); "
                                 f"use another workdir, or delete {self.directory} to start over")
        else:
            path.write_text(text)

    def shards(self) -> list[tuple[int, int, epath.Path]]:
        """(start, end, path) of every complete shard, by start."""
        if not self.directory.exists():
            return []
        found = []
        for path in self.directory.iterdir():
            match = _SHARD.match(path.name)
            if match:
                found.append((int(match.group(1)), int(match.group(2)), path))
        return sorted(found)

    def scan(self) -> int:
        """End of the contiguous prefix [0, covered) the shards hold."""
        covered = 0
        for start, end, path in self.shards():
            if start > covered:
                raise ValueError(f"sample shards in {self.directory} skip rows [{covered}, {start}) before {path.name}; "
                                 f"the directory was edited by hand: delete it to start over")
            covered = max(covered, end)
        return min(covered, self.total)

    def write(self, start: int, arrays: Mapping[str, np.ndarray]) -> None:
        """Stores rows [start, start + n) (n = len of each array), keeping only [covered, total)."""
        n = len(next(iter(arrays.values())))
        if start > self.covered:
            raise ValueError(f"shard starting at {start} would leave a gap after {self.covered}")
        lo, hi = self.covered - start, min(n, self.total - start)
        if hi <= lo:
            return
        if self.writer:
            name = f"{start + lo:08d}_{start + hi:08d}.npz"
            buffer = io.BytesIO()
            np.savez(buffer, **{k: np.asarray(v)[lo:hi] for k, v in arrays.items()})
            tmp = self.directory / (name + ".tmp")
            tmp.write_bytes(buffer.getvalue())
            tmp.rename(self.directory / name)
        self.covered = start + hi

    @property
    def done(self) -> bool:
        return self.covered >= self.total

    def assemble(self, out_path: str | epath.Path, keys: Mapping[str, str]) -> None:
        """Streams the shards into one npz at `out_path`: {npz key: shard array name}, rows in index order."""
        shards = self.shards()
        out_path = epath.Path(out_path)
        first = np.load(io.BytesIO(shards[0][2].read_bytes()))
        tmp = out_path.parent / (out_path.name + ".tmp")
        with tmp.open("wb") as f, zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as archive:
            for npz_key, name in keys.items():
                template = first[name]
                header = {"descr": np.lib.format.dtype_to_descr(template.dtype), "fortran_order": False,
                          "shape": (self.total, *template.shape[1:])}
                with archive.open(npz_key + ".npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array_header_1_0(member, header)
                    written = 0
                    for start, end, path in shards:
                        rows = np.load(io.BytesIO(path.read_bytes()))[name]
                        keep = rows[max(written - start, 0):self.total - start]
                        member.write(np.ascontiguousarray(keep, dtype=template.dtype).tobytes())
                        written = max(written, start + len(rows))
                    if written < self.total:
                        raise ValueError(f"shards in {self.directory} hold {written} of {self.total} rows")
        # replace, not rename: a rerun of a finished job (preempted after writing the npz, or run again) assembles
        # the same rows again and must overwrite the earlier file, which epath's rename refuses.
        tmp.replace(out_path)
        logging.info("Wrote %s (%d rows: %s).", out_path, self.total, ", ".join(keys))
