"""The models under torch_xla on CPU (subprocess, PJRT_DEVICE=CPU CPU_NUM_DEVICES=4): equal to eager, one compiled
graph per model and shape, no CPU fallback ops; and the same under SPMD with FSDP-sharded weights."""
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.xla

SCRIPT = os.path.join(os.path.dirname(__file__), "xla_check.py")


@pytest.mark.parametrize("mode", ["plain", "spmd"])
def test_models_under_xla(mode):
    env = dict(os.environ, PJRT_DEVICE="CPU", CPU_NUM_DEVICES="4")
    proc = subprocess.run([sys.executable, SCRIPT, mode], env=env, capture_output=True, text=True)
    checks = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert proc.stdout.strip().endswith("OK") and len(checks) == (6 if mode == "plain" else 2), proc.stdout
