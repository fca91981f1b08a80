"""The scripts launch/tpu_vm.sh runs ON the TPU workers, run here with stand-in executables:
launch/tpu_python.sh (which interpreter builds the venv) and launch/tpu_run.sh (pid, signals, logs)."""
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _executable(path, text):
    path.write_text(text)
    path.chmod(0o755)


def _fake_python(bin_dir, name, version, has_venv=True):
    """An interpreter stand-in answering tpu_python.sh's three questions for `version` like '3.10'."""
    major, minor = (int(v) for v in version.split("."))
    supported = 0 if (3, 10) <= (major, minor) <= (3, 13) else 1
    _executable(bin_dir / name, f"""#!/bin/bash
case "$2" in
  *"(3, 10) <="*) exit {supported} ;;
  *ensurepip*) exit {0 if has_venv else 1} ;;
  *print*) echo python{version} ;;
esac
""")


def _fake_sudo(bin_dir, calls):
    """Records its argv; `apt-get install ... pythonX.Y` makes a working pythonX.Y appear."""
    _executable(bin_dir / "sudo", f"""#!/bin/bash
echo "$*" >> {calls}
if [[ "$1 $2" == "apt-get install" ]]; then
  for pkg in "$@"; do
    if [[ "$pkg" =~ ^python3\\.[0-9]+$ ]]; then
      printf '#!/bin/bash\\ncase "$2" in *ensurepip*|*"(3, 10) <="*) exit 0;; esac\\n' > {bin_dir}/$pkg
      chmod +x {bin_dir}/$pkg
    fi
  done
fi
""")


def _pick(tmp_path, pythons, env=None):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, version, has_venv in pythons:
        _fake_python(bin_dir, name, version, has_venv)
    calls = tmp_path / "sudo_calls"
    _fake_sudo(bin_dir, calls)
    for tool in ("bash", "hostname", "env", "chmod"):  # Nothing else from the host: no real python on PATH.
        os.symlink(shutil.which(tool), bin_dir / tool)
    result = subprocess.run(["bash", str(ROOT / "launch" / "tpu_python.sh")], capture_output=True, text=True,
                            env={"PATH": str(bin_dir), **(env or {})})
    return result, (calls.read_text().splitlines() if calls.exists() else [])


def test_the_images_own_python_310_is_used_without_apt(tmp_path):
    result, sudo = _pick(tmp_path, [("python3", "3.10", True)])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "bin" / "python3") and sudo == []


def test_a_newer_supported_python_is_found_when_python3_is_too_old(tmp_path):
    result, sudo = _pick(tmp_path, [("python3", "3.8", True), ("python3.12", "3.12", True)])
    assert result.stdout.strip().endswith("/python3.12") and sudo == []


def test_without_a_supported_python_one_is_installed(tmp_path):
    result, sudo = _pick(tmp_path, [("python3", "3.8", True), ("python3.14", "3.14", True)])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("/python3.11")
    assert "apt-get install -y -qq python3.11 python3.11-venv" in sudo


def test_a_supported_python_without_venv_gets_only_its_venv_package(tmp_path):
    result, sudo = _pick(tmp_path, [("python3", "3.10", False)])
    assert result.stdout.strip().endswith("/python3")
    assert sudo[-1] == "apt-get install -y -qq python3.10-venv"


def test_a_forced_python_that_is_unsupported_is_an_error(tmp_path):
    result, sudo = _pick(tmp_path, [("python3.9", "3.9", True)], env={"PYTHON": "python3.9"})
    assert result.returncode == 2 and "PYTHON=python3.9 is not a Python 3.10-3.13" in result.stderr and sudo == []


@pytest.fixture
def worker_tree(tmp_path):
    """A copy of launch/tpu_run.sh in a fake ~/rae_xla with a trainer stand-in and a copy command stand-in."""
    (tmp_path / "launch").mkdir()
    shutil.copy(ROOT / "launch" / "tpu_run.sh", tmp_path / "launch" / "tpu_run.sh")
    _executable(tmp_path / "trainer", """#!/bin/bash
trap 'echo "got TERM, checkpointing"; exit 0' TERM
echo "trainer $* PJRT_DEVICE=$PJRT_DEVICE"
if [[ "$*" == *--config.sleep* ]]; then sleep 30 & wait; fi
exit 3
""")
    _executable(tmp_path / "copy", f"#!/bin/bash\necho \"$@\" > {tmp_path}/copied\n")
    return tmp_path


def _start_run(tree, *flags):
    env = {**os.environ, "RAE_PYTHON": str(tree / "trainer"), "COPY": str(tree / "copy")}
    env.pop("PJRT_DEVICE", None)
    return subprocess.Popen(["bash", str(tree / "launch" / "tpu_run.sh"), "r7", "gs://b/run", *flags], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_run_wrapper_keeps_a_log_per_run_and_copies_it_with_the_exit_code(worker_tree):
    process = _start_run(worker_tree, "--config=c.py")
    assert process.wait(timeout=60) == 3  # The trainer's exit code.
    log = (worker_tree / "logs" / "run-r7.log").read_text()
    assert "trainer -m rae_xla.main --config=c.py PJRT_DEVICE=TPU" in log
    assert "rae_xla.main exited with code 3" in log
    assert os.readlink(worker_tree / "logs" / "latest.log") == "run-r7.log"
    host = subprocess.run(["hostname"], capture_output=True, text=True).stdout.strip()
    assert (worker_tree / "copied").read_text().split() == ["logs/run-r7.log", f"gs://b/run/logs/r7/{host}.log"]


def test_sigterm_to_the_wrapper_reaches_the_trainer_which_exits_cleanly(worker_tree):
    process = _start_run(worker_tree, "--config.sleep")
    log = worker_tree / "logs" / "run-r7.log"
    for _ in range(200):
        if log.exists() and "trainer" in log.read_text():
            break
        time.sleep(0.05)
    pid = int((worker_tree / "logs" / "run.pid").read_text())
    assert pid != process.pid  # The pid file names the trainer, which `tpu_vm.sh stop` signals.
    process.send_signal(signal.SIGTERM)  # A preemption signals every process, the wrapper included.
    assert process.wait(timeout=60) == 0
    assert "got TERM, checkpointing" in log.read_text() and "exited with code 0" in log.read_text()
