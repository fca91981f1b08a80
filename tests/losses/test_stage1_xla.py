"""The discriminator step and the generator's GAN/adaptive-weight path under torch_xla (subprocess, 4 virtual CPU
devices, strict compile: one graph per function, no host sync, no CPU fallback op), equal to eager.
See stage1_xla_check.py. ~1-2 min on 2 idle cores (XLA compiles the backward of the tiny DINO discriminator);
its 'spmd' mode (batch and weights sharded over a (2, 2) mesh) compiles for ~5 min and is run by hand."""
import os

from tests.conftest import run_python

SCRIPT = os.path.join(os.path.dirname(__file__), "stage1_xla_check.py")


def test_discriminator_and_adaptive_weight_under_xla():
    result = run_python([SCRIPT, "plain"], xla_devices=4, timeout=1800)
    checks = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert result.stdout.strip().endswith("OK") and len(checks) == 6, result.stdout
