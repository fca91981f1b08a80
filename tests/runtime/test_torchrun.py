"""The native-torch runtime under torchrun with 2 gloo processes matches one eager process."""
import json
import sys

import numpy as np
import pytest

from tests.conftest import run_python

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


@pytest.mark.parametrize("strategy", ["replicate", "fsdp"])  # DDP and FSDP2.
def test_two_process_training_matches_single_process(strategy, tmp_path):
    single, multi = tmp_path / "single.json", tmp_path / "multi.json"
    run_python(["-m", "rae_xla.runtime.selftest", "--backend=cpu", "--steps=4", f"--out={single}"])
    run_python(["-m", "rae_xla.runtime.selftest", "--backend=cpu", "--steps=4", f"--param_sharding={strategy}",
                f"--out={multi}"], module_runner=TORCHRUN)
    a, b = json.loads(single.read_text()), json.loads(multi.read_text())
    np.testing.assert_allclose(b["losses"], a["losses"], atol=1e-6, rtol=0)
    for key in a["tensors"]:
        np.testing.assert_allclose(b["tensors"][key], a["tensors"][key], atol=1e-4, rtol=0, err_msg=key)
