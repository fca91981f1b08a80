"""Errors caused by the user's input, which every job reports as one line instead of a traceback.

`rae_xla/main.py` catches `UserError` around everything a job does (flag parsing, building, training, sampling)
and prints

    FATAL <kind> error: <what> <where> <how to fix>

then exits with code 2 (no traceback unless `--traceback`). Anything else is a bug and keeps its traceback.
A job gets this for free: raise one of the classes below (`ConfigError`, kind 'config', is also importable as
`rae_xla.config.ConfigError`) where the input is first found to be wrong, with a message that names the input
(the config field or path) and the fix. Do not raise them for internal inconsistencies: those are bugs.

Kinds (the word after FATAL): config (a config file, its argument or a field), input (a path that does not
exist or is the wrong kind of thing), checkpoint (a file that is not the checkpoint the field expects, or no
intact checkpoint to resume from), workdir (cannot create or write the output directory). Data problems (a
missing dataset or split) are reported as config errors naming the `config.data.*` field. `network_cause`
tells a network or storage-service failure (DNS, refused connection, GCS 401/403/404, no credentials) from a
bug, so that rae_xla/remote.py and main.py can report it as one `input` line.
"""
from __future__ import annotations

import socket


class UserError(Exception):
    """Base class: a mistake in the user's input. `kind` is the word printed after FATAL."""

    kind = "input"


class ConfigError(UserError, ValueError):
    """A mistake in the config: the message names the field and how to fix it (main.py: one FATAL line)."""

    kind = "config"


class InputPathError(UserError, FileNotFoundError):
    """A path given by the user does not exist or is the wrong kind (a file where a folder is needed...).

    Also a FileNotFoundError, so existing `except OSError` handlers keep working.
    """

    kind = "input"


class CheckpointFileError(UserError, ValueError):
    """A file is not the checkpoint its field expects (not a torch file, truncated, another model), or a run has
    no intact checkpoint to resume from."""

    kind = "checkpoint"


class WorkdirError(UserError, OSError):
    """The workdir cannot be created or written (an existing file, no permission, a read-only mount)."""

    kind = "workdir"


def fatal_line(error: UserError) -> str:
    """The single line printed for `error`; a multi-line message is joined with '; ' so it stays one line."""
    parts = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"FATAL {error.kind} error: {'; '.join(parts) or type(error).__name__}"


def network_cause(error: BaseException) -> str | None:
    """A one-phrase cause if `error` (or anything in its cause chain) is a network or storage-service failure.

    Recognised: name resolution, refused/reset connections and timeouts (socket, aiohttp, requests, httpx),
    HTTP 401/403/404 answers from GCS (gcsfs `HttpError`), and missing Google credentials. None otherwise, so
    that bugs keep their traceback.
    """
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        cause = _describe(error)
        if cause:
            return cause
        error = error.__cause__ or error.__context__
    return None


def _describe(error: BaseException) -> str | None:
    name = type(error).__name__
    module = type(error).__module__
    if isinstance(error, socket.gaierror) or name == "ClientConnectorDNSError":
        return f"a host name does not resolve ({error}): no network or DNS"
    if name == "HttpError" and module.startswith("gcsfs"):
        code = getattr(error, "code", None)
        meaning = {401: "not authenticated (run `gcloud auth application-default login`)",
                   403: "permission denied (the account has no access to this bucket or object)",
                   404: "the bucket or object does not exist"}.get(code, f"HTTP {code}")
        return f"GCS answered {meaning}"
    if module.startswith("google.auth"):
        return f"no usable Google credentials ({error}); run `gcloud auth application-default login`"
    if module.startswith(("aiohttp", "requests", "httpx", "urllib3")) and any(
            word in name for word in ("Connect", "Timeout", "Proxy", "SSL")):  # The HTTP clients' transport errors.
        return f"the connection failed ({name}: {error})"
    if isinstance(error, (ConnectionError, TimeoutError)):
        return f"the connection failed ({type(error).__name__}: {error})"
    return None
