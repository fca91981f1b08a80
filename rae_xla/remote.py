"""Local, gs:// and hf:// paths: existence checks that read metadata only, and network failures as one cause.

Two users:
  * the preflight (`--preflight`, rae_xla/preflight/) asks `probe(path)` for every input a job will read, before
    a pod is paid for: a local stat, a GCS object/prefix lookup, or an HF cache lookup (plus a HEAD request
    when the Hub may be reached); nothing is downloaded;
  * every job wraps its first read of a remote path in `reading(path, field)`, so a DNS failure, a refused
    connection, a 403 or a missing bucket ends as one `FATAL input error:` line naming the path and the cause
    instead of an aiohttp traceback.

Why a reachability probe before gcsfs: gcsfs retries a connection error with exponential back-off, so an
unreachable endpoint costs 35-50 s before the first exception (measured here with no network); the probe
(name lookup + TCP connect, 5 s timeout) answers at once, and is asked once per host per process.
"""
from __future__ import annotations

import contextlib
import functools
import os
import socket
import urllib.parse
from typing import Iterator

from rae_xla import errors, hub

_GCS_HOST = "storage.googleapis.com"
_CONNECT_TIMEOUT_S = 5.0


def gcs_endpoint() -> tuple[str, int]:
    """(host, port) gcsfs talks to: `$STORAGE_EMULATOR_HOST` when set (tests, local emulators), else GCS."""
    emulator = os.environ.get("STORAGE_EMULATOR_HOST", "")
    if emulator:
        url = urllib.parse.urlparse(emulator if "://" in emulator else f"http://{emulator}")
        return url.hostname or "localhost", url.port or (443 if url.scheme == "https" else 80)
    return _GCS_HOST, 443


@functools.lru_cache(maxsize=8)
def _unreachable(host: str, port: int) -> str | None:
    """Why (host, port) cannot be reached (no name, refused, timed out), or None when a TCP connect succeeds."""
    try:
        with socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT_S):
            return None
    except socket.gaierror as e:
        return f"the name {host} does not resolve ({e.strerror}): no network or DNS on this machine"
    except OSError as e:
        return f"cannot connect to {host}:{port} ({e.strerror or type(e).__name__})"


def gcs_unreachable() -> str | None:
    """Why Google Cloud Storage (or the emulator) cannot be reached from here, or None."""
    return _unreachable(*gcs_endpoint())


def is_remote(path: str) -> bool:
    return path.startswith("gs://") or hub.is_hub_path(path)


def probe(path: str, *, folder: bool = False) -> str | None:
    """None if `path` (local, gs:// or hf://) exists as a file (or a folder with `folder=True`), else why not.

    Metadata only: nothing is downloaded. An hf:// path counts as present when the HF cache holds it, or when the
    Hub answers a HEAD request for it (hub.probe).
    """
    if hub.is_hub_path(path):
        return hub.probe(path, folder=folder)
    if path.startswith("gs://"):
        down = gcs_unreachable()
        if down:
            return down
        from etils import epath
        try:
            target = epath.Path(path)
            ok = target.is_dir() if folder else target.exists() and not target.is_dir()
        except Exception as e:  # noqa: BLE001  Any storage failure is the answer here, not a crash.
            return errors.network_cause(e) or f"{type(e).__name__}: {e}"
        return None if ok else ("no such folder" if folder else "no such object")
    local = os.path.expanduser(path)
    if folder:
        return None if os.path.isdir(local) else ("is a file, not a folder" if os.path.exists(local) else
                                                  "no such folder")
    return None if os.path.isfile(local) else ("is a folder, not a file" if os.path.isdir(local) else "no such file")


@contextlib.contextmanager
def reading(path: str, field: str) -> Iterator[None]:
    """Turns a network/storage failure while reading `path` (config field `field`) into one InputPathError.

    For gs:// paths the endpoint is probed first, so an unreachable GCS fails at once instead of after gcsfs's
    retries. User errors and anything that is not a network failure pass through unchanged.
    """
    if path.startswith("gs://"):
        down = gcs_unreachable()
        if down:
            raise errors.InputPathError(f"{field}={path!r}: cannot reach Google Cloud Storage: {down}. Check the "
                                        "network (or $STORAGE_EMULATOR_HOST), or point the field at a local copy.")
    try:
        yield
    except errors.UserError:
        raise
    except Exception as e:
        cause = errors.network_cause(e)
        if cause is None:
            raise
        raise errors.InputPathError(f"{field}={path!r} cannot be read: {cause}. Check the path and access, or "
                                    "point the field at a local copy.") from e
