"""Retries with exponential backoff for storage calls (GCS reads and writes fail transiently).

gcsfs already retries HTTP 5xx/429 inside each request, and ArrayRecord's C++ GCS client has its own
retry policy; this outer loop covers what escapes them (connection resets, timeouts surfacing as
OSError/RuntimeError) when opening a dataset, reading a batch of records or uploading a file.
"""
import time
from typing import Callable, TypeVar

from absl import logging

T = TypeVar('T')

# 5 attempts with 0.5 s doubling waits: 0.5 + 1 + 2 + 4 = 7.5 s worst case before giving up, long
# enough for a GCS 503 burst, short enough that a genuinely missing object fails fast.
DEFAULT_ATTEMPTS = 5
DEFAULT_FIRST_WAIT_S = 0.5

# Errors that are never transient: retrying them only delays the clear error.
PERMANENT_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError,
                    ValueError, TypeError, KeyError, IndexError)


def retry_call(fn: Callable[[], T], what: str, attempts: int = DEFAULT_ATTEMPTS,
               first_wait_s: float = DEFAULT_FIRST_WAIT_S) -> T:
    """Calls fn(); on a non-permanent exception waits and retries, re-raising the last error.

    Args:
      fn: the zero-argument call to make.
      what: a short description for the log line, e.g. 'read 64 records of gs://b/x/train'.
      attempts: total tries (>= 1).
      first_wait_s: wait before the second try; doubles each time.
    """
    wait_s = first_wait_s
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except PERMANENT_ERRORS:
            raise
        except Exception as error:  # pylint: disable=broad-except
            if attempt == attempts:
                raise
            logging.warning('%s failed (attempt %d/%d: %s: %s); retrying in %.1f s', what, attempt, attempts,
                            type(error).__name__, error, wait_s)
            time.sleep(wait_s)
            wait_s *= 2
    raise AssertionError('unreachable')
