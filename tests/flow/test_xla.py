"""Sampling on the XLA CPU device: same result as eager, a fixed set of step graphs, no recompiles."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

from tests import golden

pytestmark = pytest.mark.xla

SCRIPT = pathlib.Path(__file__).with_name("xla_sampling_script.py")
# Distinct step graphs `sample` must ask for with 10 grid points (9 steps):
EXPECTED_GRAPHS = {
    "euler_cfg_interval": 2,           # guided and unguided Euler steps
    "heun_plain": 1,
    "euler_autoguidance_interval": 2,  # guided (main + weak) and unguided
    "sde_plain": 2,                    # noisy steps and the noise-free last step
}


@pytest.fixture(scope="module")
def report():
    env = dict(os.environ, PJRT_DEVICE="CPU", CPU_NUM_DEVICES="4")
    proc = subprocess.run([sys.executable, str(SCRIPT), str(golden.TINY)], env=env, capture_output=True, text=True,
                          timeout=600, cwd=pathlib.Path(__file__).parents[2])
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    assert line, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(line[-1][len("RESULT "):])


@pytest.mark.parametrize("case", sorted(EXPECTED_GRAPHS))
def test_xla_sampling_matches_eager_without_recompiles(report, case):
    r = report[case]
    assert r["graphs"] == EXPECTED_GRAPHS[case]
    for err in r["rel_err"]:
        assert err is None if case.startswith("sde") else err < 1e-5, r
    assert r["finite"]
    first, second = r["compiles_after_call"]
    assert second == first, f"the second call recompiled: {r}"
    # At most one compile per distinct step graph (fewer when an earlier case compiled the same graph).
    assert first - r["compiles_before"] <= r["graphs"], r
    # A step compiles only when it is the first use of its step graph; every reuse compiles nothing.
    seen, count = set(), r["compiles_before"]
    for variant, after in r["per_step_first_call"]:
        assert after == count or variant not in seen, f"step graph {variant} recompiled: {r}"
        seen.add(variant)
        count = after
    assert len(seen) == r["graphs"] and count == first
