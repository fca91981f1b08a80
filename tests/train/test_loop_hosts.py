"""TrainLoop's agreement between hosts (one host collective for SIGTERM, NaN and counters) and profile_steps."""
import threading

import pytest

from rae_xla.train.loop import TrainLoop
from tests.conftest import run_python
from tests.train.test_stage2 import args, metrics


class _TwoHosts:
    """A runtime stand-in for one of two hosts: the other host's values are added in the 'collective'."""

    def __init__(self, other):
        self.other, self.calls, self.waited = other, [], 0

    def sum_over_processes(self, values):
        self.calls.append(list(values))
        return [a + b for a, b in zip(values, self.other)]

    def wait(self):
        self.waited += 1


class _Checkpoints:
    """This host's checkpoint manager: `failed` = its background save ended with an error (not yet raised)."""

    def __init__(self, failed=False):
        self.failed, self.raised = failed, 0

    def latest_step(self):
        return 30

    def save_failed(self):
        return self.failed

    def wait_until_finished(self):
        self.raised += 1
        raise OSError("the save of this host failed")


def _loop(runtime, replaced=2):
    loop = object.__new__(TrainLoop)
    loop.runtime, loop.checkpoints, loop.lock = runtime, _Checkpoints(), threading.Lock()
    loop.nonfinite_window, loop.replaced, loop.replaced_total = None, replaced, 0
    return loop


def test_sigterm_on_another_host_stops_this_one_and_counters_are_summed():
    runtime = _TwoHosts(other=[1, 0, 5, 0])
    loop = _loop(runtime)
    assert loop._agree(False, step=40) is True
    assert runtime.calls == [[0, 0, 2, 0]]  # One collective carries all four values.
    assert loop.replaced_total == 7


def test_a_nan_seen_by_another_host_stops_every_host_at_the_same_step():
    runtime = _TwoHosts(other=[0, 1, 0, 0])
    loop = _loop(runtime)
    with pytest.raises(FloatingPointError, match="between steps 30 and 40"):
        loop._agree(False, step=40)
    assert runtime.waited == 1  # Pending step closures ran first.


def test_nothing_to_agree_on():
    loop = _loop(_TwoHosts(other=[0, 0, 0, 0]))
    assert loop._agree(False, step=3) is False and loop.replaced_total == 2


def test_a_failed_background_save_on_another_host_stops_this_one_too():
    loop = _loop(_TwoHosts(other=[0, 0, 0, 1]))  # This host's save has not failed (yet): it waits for its own.
    with pytest.raises(OSError, match="the save of this host failed"):
        loop._agree(False, step=40)
    assert loop.checkpoints.raised == 1


def test_profile_steps_write_a_trace_and_checks_every_n_steps(tmp_path):
    workdir, data_dir = tmp_path / "run", tmp_path / "tfds"
    run_python(args(workdir, str(data_dir), 6, "--config.runtime.profile_steps=(2, 4)",
                    "--config.runtime.preemption_check_every=4", "--config.train.log_every=3"))
    traces = list((workdir / "profile" / "host_0").glob("*.json"))
    assert len(traces) == 1 and traces[0].stat().st_size > 0
    rows = metrics(workdir)
    assert [r["step"] for r in rows] == [3, 6] and all(r["data_replaced_images"] == 0 for r in rows)
