"""Shared test setup: absl flags parsed (absl's test helpers read them), and a subprocess runner for code that
needs its own process (XLA env vars and `use_spmd()` are per process; torchrun)."""
import os
import subprocess
import sys

import pytest
from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_configure(config):
    del config
    flags.FLAGS.mark_as_parsed()


def run_python(args, *, xla_devices=None, env=None, timeout=600, check=True, module_runner=None):
    """Runs `python <args>` (or `<module_runner> <args>`, e.g. torchrun) in the repo root; returns the result.

    xla_devices: if set, the child runs torch_xla on that many virtual CPU devices (PJRT_DEVICE=CPU).
    """
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
