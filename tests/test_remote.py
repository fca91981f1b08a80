"""rae_xla/remote.py and errors.network_cause: what counts as a network failure, metadata-only probes of local,
gs:// and hf:// paths, and `reading()` turning a failure into one InputPathError naming the field."""
import socket

import pytest

from rae_xla import errors, hub, remote
from tests.release_env import put_in_hf_cache


def _chained(outer: Exception, inner: BaseException) -> Exception:
    try:
        try:
            raise inner
        except BaseException as e:
            raise outer from e
    except Exception as e:  # noqa: BLE001
        return e


def test_network_cause_tells_network_failures_from_bugs():
    assert "does not resolve" in errors.network_cause(socket.gaierror(-2, "Name or service not known"))
    assert "connection failed" in errors.network_cause(ConnectionRefusedError(111, "refused"))
    # Found through the cause chain, as gcsfs and aiohttp raise them.
    assert "does not resolve" in errors.network_cause(_chained(RuntimeError("wrapper"), socket.gaierror(-2, "x")))
    from gcsfs.retry import HttpError
    assert "permission denied" in errors.network_cause(HttpError({"code": 403, "message": "Forbidden"}))
    assert "does not exist" in errors.network_cause(HttpError({"code": 404, "message": "Not Found"}))
    for bug in (ValueError("bad"), KeyError("k"), FileNotFoundError("local")):
        assert errors.network_cause(bug) is None


def test_probe_local_and_unreachable_gcs(tmp_path, monkeypatch):
    (tmp_path / "f.pt").write_text("")
    assert remote.probe(str(tmp_path / "f.pt")) is None and remote.probe(str(tmp_path), folder=True) is None
    assert remote.probe(str(tmp_path)) == "is a folder, not a file"
    assert remote.probe(str(tmp_path / "nope.pt")) == "no such file"
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:1")  # A refused connection, no network needed.
    remote._unreachable.cache_clear()
    assert "cannot connect to 127.0.0.1:1" in remote.probe("gs://bucket/x.pt")
    with pytest.raises(errors.InputPathError, match=r"rae.stats='gs://bucket/x.pt': cannot reach Google Cloud"):
        with remote.reading("gs://bucket/x.pt", "rae.stats"):
            raise AssertionError("not reached: the endpoint is probed first")
    remote._unreachable.cache_clear()


def test_reading_turns_network_errors_into_one_input_error_and_passes_bugs():
    with pytest.raises(errors.InputPathError, match=r"^rae.decoder_weights='/x.pt' cannot be read: a host name"):
        with remote.reading("/x.pt", "rae.decoder_weights"):
            raise _chained(OSError("read failed"), socket.gaierror(-2, "Name or service not known"))
    with pytest.raises(ValueError, match="a bug"):
        with remote.reading("/x.pt", "rae.decoder_weights"):
            raise ValueError("a bug")


def test_hub_probe_reads_the_cache_only_when_offline(tmp_path, monkeypatch):
    from huggingface_hub import constants
    cache = tmp_path / "hub"
    put_in_hf_cache(cache, "org/repo", "a" * 40, {"dir/f.pt": b"x"}, refs={"main": "a" * 40})
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert hub.probe("hf://org/repo/dir/f.pt") is None
    assert hub.probe("hf://org/repo/dir", folder=True) is None and hub.probe("hf://org/repo", folder=True) is None
    assert "HF_HUB_OFFLINE=1" in hub.probe("hf://org/repo/dir/g.pt")
    assert "hf download org/other" in hub.probe("hf://org/other", folder=True)
    assert "not hf://" in hub.probe("hf://org")
