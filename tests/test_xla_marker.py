"""The one rule for XLA tests (tests/conftest.py): skip with one line where torch_xla has no wheel, fail on
Linux x86_64 when it is missing, run when it is installed."""
import importlib.util
import platform

import pytest

from tests import conftest


def _without_torch_xla(monkeypatch, system, machine):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch_xla" else
                        real_find_spec(name, *a))
    monkeypatch.setattr(platform, "system", lambda: system)
    monkeypatch.setattr(platform, "machine", lambda: machine)


@pytest.mark.parametrize("system,machine", [("Darwin", "arm64"), ("Linux", "aarch64")])
def test_no_wheel_platform_skips_with_the_reason(monkeypatch, system, machine):
    _without_torch_xla(monkeypatch, system, machine)
    with pytest.raises(pytest.skip.Exception, match=f"torch_xla has no wheel for {system} {machine}"):
        conftest.require_xla()
    with pytest.raises(pytest.skip.Exception):
        conftest.run_python(["-c", "pass"], xla_devices=4)  # The subprocess runner applies the same rule.


def test_linux_x86_64_without_torch_xla_fails(monkeypatch):
    _without_torch_xla(monkeypatch, "Linux", "x86_64")
    with pytest.raises(pytest.fail.Exception, match="torch_xla is not installed, but Linux x86_64 has a torch_xla"):
        conftest.require_xla()


def test_installed_torch_xla_runs(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    assert conftest.require_xla() is None
