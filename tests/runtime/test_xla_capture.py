"""The captured (traced once, replayed) XLA step equals the lazy one and refuses steps it would get wrong.

runtime/xla_capture.py replays a compiled graph instead of re-running the step's Python (issue 10). The toy step in
capture_xla_script.py has what the trainers' steps have: FSDP-sharded weights, device random draws, ForeachAdamW
with a per-step learning rate (through `prepare_step`), an EMA whose tensors start as clones of the weights.
The stage-2 trainer uses it with --config.runtime.capture_step=True (off by default for now, see README).
"""
import json

import numpy as np
import pytest

from tests.conftest import run_python

pytestmark = pytest.mark.xla


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("capture") / "out.json"
    run_python(["tests/runtime/capture_xla_script.py", str(out)], xla_devices=4, timeout=900)
    return json.loads(out.read_text())


def test_replayed_steps_equal_lazy_steps_bitwise(results):
    lazy, captured = results["lazy"], results["captured"]
    assert captured["replays"] >= 3, "the capture never got to replay: the test would compare lazy with lazy"
    assert captured["losses"] == lazy["losses"]
    assert len(set(lazy["losses"])) == len(lazy["losses"])  # Training moved: the equality above means something.
    for key in ("params", "ema", "exp_avg_sq"):
        for a, b in zip(lazy[key], captured[key]):
            np.testing.assert_array_equal(np.array(a), np.array(b), err_msg=key)
    assert lazy["optimizer_step"] == captured["optimizer_step"] == 6.0  # Host step counter advanced per call.


def test_a_tensor_updated_outside_the_state_is_refused(results):
    assert "updated 1 device tensor(s) that are neither in its state() nor returned" in results["hidden_update"]


def test_a_python_number_that_changes_per_call_is_refused(results):
    assert "bakes in" in results["python_number"] and "changed between calls" in results["python_number"]
