"""Shared test setup: absl flags parsed (absl's test helpers read them), a subprocess runner for code that
needs its own process (XLA env vars and `use_spmd()` are per process; torchrun), and the one rule for XLA tests.

XLA tests carry `@pytest.mark.xla` (or run XLA through `run_python(..., xla_devices=n)`, which applies the same
rule). Where torch_xla publishes no wheel (macOS, Linux arm64) they skip with one line saying so; on Linux x86_64
a missing torch_xla is a FAILURE, so CI can never pass while silently skipping them.
"""
import importlib.util
import os
import platform
import subprocess
import sys

import pytest
from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# torch_xla 2.9.0 wheels on PyPI: Linux x86_64 only (setup.py installs it there and nowhere else).
XLA_WHEEL_PLATFORMS = {("Linux", "x86_64")}


def require_xla() -> None:
    """Returns if torch_xla is importable; else skips (no wheel for this platform) or fails (there is one)."""
    if importlib.util.find_spec("torch_xla") is not None:
        return
    where = (platform.system(), platform.machine())
    if where in XLA_WHEEL_PLATFORMS:
        pytest.fail(f"torch_xla is not installed, but {where[0]} {where[1]} has a torch_xla wheel, so the XLA tests "
                    "must run here: install it with `pip install -e '.[test]'` (setup.py pins torch_xla==2.9.0).",
                    pytrace=False)
    pytest.skip(f"torch_xla has no wheel for {where[0]} {where[1]}; XLA tests run on Linux x86_64 only")


def pytest_configure(config):
    flags.FLAGS.mark_as_parsed()
    config.addinivalue_line("markers", "xla: runs torch_xla (skipped where no wheel exists; on Linux x86_64 a "
                                       "missing torch_xla fails)")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if item.get_closest_marker("xla") is not None:
        require_xla()  # Before fixtures: module fixtures of XLA tests start XLA subprocesses.


def run_python(args, *, xla_devices=None, env=None, timeout=600, check=True, module_runner=None):
    """Runs `python <args>` (or `<module_runner> <args>`, e.g. torchrun) in the repo root; returns the result.

    xla_devices: if set, the child runs torch_xla on that many virtual CPU devices (PJRT_DEVICE=CPU); the
      XLA rule above applies (skip or fail when torch_xla is missing).
    """
    if xla_devices:
        require_xla()
    child_env = dict(os.environ)
    child_env.pop("PJRT_DEVICE", None)
    child_env.pop("CPU_NUM_DEVICES", None)
    if xla_devices:
        child_env.update(PJRT_DEVICE="CPU", CPU_NUM_DEVICES=str(xla_devices))
    child_env.update(env or {})
    command = (module_runner or [sys.executable]) + list(args)
    result = subprocess.run(command, cwd=REPO, env=child_env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
                             f"{result.stderr[-6000:]}")
    return result


@pytest.fixture(name="run_python")
def run_python_fixture():
    return run_python


@pytest.fixture(name="release_env", scope="session")
def release_env_fixture(tmp_path_factory):
    """The offline stand-in of a released-files user's machine (tests/release_env.py), built once per run: the
    environment variables that select it (HF cache, TORCH_HOME) and DATA_DIR for the placeholder bucket."""
    from tests import release_env
    return release_env.build(tmp_path_factory.mktemp("release_env"))


@pytest.fixture(name="use_release_env")
def use_release_env_fixture(release_env, monkeypatch):
    """This process reads hf:// and torch-hub files from the release environment (offline)."""
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_CACHE", release_env["HF_HUB_CACHE"])
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    for key in ("HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "TORCH_HOME"):
        monkeypatch.setenv(key, release_env[key])
    return release_env
