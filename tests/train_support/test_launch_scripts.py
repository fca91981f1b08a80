"""launch/tpu_vm.sh and launch/gpu.sh: --dry-run output, and the exact argv they hand to gcloud/torchrun
(checked with stand-in executables on PATH that record their arguments)."""

import json
import os
import shlex
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TPU_ENV = dict(NAME="rae-v5p", ZONE="us-east5-a", ACCEL="v5p-64", VERSION="v2-alpha-tpuv5", PROJECT="proj")


def run_script(script, args, env=None, path_dir=None):
    full_env = {k: v for k, v in os.environ.items() if k not in TPU_ENV and k not in ("NNODES", "NGPU")}
    full_env.update(env or {})
    if path_dir is not None:
        full_env["PATH"] = f"{path_dir}:{full_env['PATH']}"
    return subprocess.run(["bash", str(ROOT / "launch" / script), *args], env=full_env, capture_output=True,
                          text=True, timeout=60)


def recording_stub(tmp_path, name):
    """An executable `name` that appends its argv as one JSON line to tmp_path/calls.jsonl."""
    stub = tmp_path / name
    stub.write_text(f"#!/usr/bin/env python3\nimport json, sys\n"
                    f"open({str(tmp_path / 'calls.jsonl')!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n")
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    return tmp_path


def recorded(tmp_path):
    return [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]


def test_tpu_create_dry_run_prints_the_gcloud_command():
    out = run_script("tpu_vm.sh", ["--dry-run", "create"], env=TPU_ENV)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ("gcloud compute tpus tpu-vm create rae-v5p --zone=us-east5-a --project=proj "
                                  "--accelerator-type=v5p-64 --version=v2-alpha-tpuv5")


def test_tpu_dry_run_output_is_a_pastable_command(tmp_path):
    """Each printed line, run by a shell, gives gcloud exactly the argv the real run gives it."""
    args = ["run", "--config=configs/ditdh_xl.py", "--workdir=gs://bucket/runs/x", "--config.name=it's a run"]
    env = {**TPU_ENV, "RUN_ID": "r0"}  # Else the run id is the time, which may tick between the two.
    dry = run_script("tpu_vm.sh", ["--dry-run", *args], env=env)
    real = run_script("tpu_vm.sh", args, env=env, path_dir=recording_stub(tmp_path, "gcloud"))
    assert dry.returncode == 0 and real.returncode == 0, dry.stderr + real.stderr
    assert [shlex.split(line) for line in dry.stdout.splitlines()] == [["gcloud", *a] for a in recorded(tmp_path)]


def test_tpu_run_starts_main_on_all_workers_through_the_run_wrapper(tmp_path):
    out = run_script("tpu_vm.sh", ["run", "--config=configs/ditdh_xl.py", "--workdir=gs://b/r", "--config.seed=3"],
                     env={**TPU_ENV, "RUN_ID": "r1"}, path_dir=recording_stub(tmp_path, "gcloud"))
    assert out.returncode == 0, out.stderr
    preflight, argv = recorded(tmp_path)
    # The preflight first, on worker 0 alone, with the same flags and the slice type to plan for.
    assert preflight[:5] == ["compute", "tpus", "tpu-vm", "ssh", "rae-v5p"] and "--worker=0" in preflight
    assert preflight[-1] == ("--command=cd ~/rae_xla && PJRT_DEVICE=TPU .venv/bin/python -m rae_xla.main "
                             "--config=configs/ditdh_xl.py --workdir=gs://b/r --config.seed=3 --preflight "
                             "--plan_for=1xv5p-64")
    assert argv[:5] == ["compute", "tpus", "tpu-vm", "ssh", "rae-v5p"]
    assert "--worker=all" in argv and "--zone=us-east5-a" in argv and "--project=proj" in argv
    remote = next(a for a in argv if a.startswith("--command="))[len("--command="):]
    assert "setsid nohup bash launch/tpu_run.sh r1 gs://b/r --config=configs/ditdh_xl.py --workdir=gs://b/r " \
           "--config.seed=3 > logs/nohup-r1.out" in remote
    # Stale processes holding the TPU are ended first: the recorded trainer, then the device files' users.
    assert remote.index("lsof -t /dev/accel* /dev/vfio/[0-9]*") < remote.index("launch/tpu_run.sh")
    assert "grep -qs rae_xla.main /proc/$old/cmdline && kill -9 $old" in remote
    assert "rm -f /tmp/libtpu_lockfile" in remote


def test_tpu_run_stops_when_the_preflight_fails(tmp_path):
    stub = recording_stub(tmp_path, "gcloud")
    (stub / "gcloud").write_text((stub / "gcloud").read_text() + "sys.exit(2)\n")  # The preflight exits 2.
    out = run_script("tpu_vm.sh", ["run", "--config=c.py", "--workdir=gs://b/r"], env={**TPU_ENV, "RUN_ID": "r4"},
                     path_dir=stub)
    assert out.returncode == 2 and "preflight on worker 0 found problems" in out.stderr
    (only,) = recorded(tmp_path)  # Nothing was started on the workers.
    assert "--preflight" in only[-1] and "--worker=0" in only


def test_tpu_run_forwards_flags_and_chosen_variables(tmp_path):
    env = {**TPU_ENV, "RUN_ID": "r2", "PREFLIGHT": "0", "LIBTPU_INIT_ARGS": "--xla_a=1 --xla_b=2", "XLA_FLAGS": "--xla_dump_to=/tmp/d",
           "MY_VAR": "x y", "PASS_ENV": "MY_VAR UNSET_VAR"}
    env_without = {k: v for k, v in os.environ.items() if k not in ("LIBTPU_INIT_ARGS", "XLA_FLAGS")}
    out = subprocess.run(["bash", str(ROOT / "launch" / "tpu_vm.sh"), "--dry-run", "run", "--config=c.py",
                          "--workdir=gs://b/r"], env={**env_without, **env}, capture_output=True, text=True)
    (line,) = out.stdout.splitlines()
    remote = next(a for a in shlex.split(line) if a.startswith("--command="))
    words = shlex.split(remote[len("--command="):].split("true) && ", 1)[1])
    assert words[:3] == ["LIBTPU_INIT_ARGS=--xla_a=1 --xla_b=2", "XLA_FLAGS=--xla_dump_to=/tmp/d", "MY_VAR=x y"]
    assert words[3:6] == ["setsid", "nohup", "bash"] and "UNSET_VAR" not in remote


def test_tpu_multislice_runs_on_every_worker_of_every_slice(tmp_path):
    env = {**TPU_ENV, "SLICES": "3", "RUN_ID": "r3", "PREFLIGHT": "0"}
    out = run_script("tpu_vm.sh", ["run", "--config=c.py", "--workdir=gs://b/r"], env=env,
                     path_dir=recording_stub(tmp_path, "gcloud"))
    assert out.returncode == 0, out.stderr
    calls = recorded(tmp_path)
    assert [c[4] for c in calls] == ["rae-v5p-0", "rae-v5p-1", "rae-v5p-2"]
    assert all("--worker=all" in c for c in calls)
    stop = run_script("tpu_vm.sh", ["--dry-run", "stop"], env=env).stdout.splitlines()
    assert len(stop) == 3 and all("kill -TERM $(cat ~/rae_xla/logs/run.pid)" in line for line in stop)
    logs = run_script("tpu_vm.sh", ["--dry-run", "logs"], env={**env, "SLICE": "2", "WORKER": "5"}).stdout
    assert "ssh rae-v5p-2 " in logs and "--worker=5" in logs and "tail -n 100 ~/rae_xla/logs/latest.log" in logs


@pytest.mark.parametrize("env, expected", [
    (dict(SPOT="1"), "gcloud compute tpus queued-resources create rae-v5p --zone=us-east5-a --project=proj "
                     "--accelerator-type=v5p-64 --runtime-version=v2-alpha-tpuv5 --node-id=rae-v5p --spot"),
    (dict(SLICES="2", RESERVED="1"), "gcloud compute tpus queued-resources create rae-v5p --zone=us-east5-a "
                                     "--project=proj --accelerator-type=v5p-64 --runtime-version=v2-alpha-tpuv5 "
                                     "--node-count=2 --node-prefix=rae-v5p --reserved"),
    (dict(QUEUED="1"), "gcloud compute tpus queued-resources create rae-v5p --zone=us-east5-a --project=proj "
                       "--accelerator-type=v5p-64 --runtime-version=v2-alpha-tpuv5 --node-id=rae-v5p"),
])
def test_tpu_create_through_queued_resources(env, expected):
    out = run_script("tpu_vm.sh", ["--dry-run", "create"], env={**TPU_ENV, **env})
    assert out.returncode == 0 and out.stdout.strip() == expected, out.stdout + out.stderr


def test_tpu_queued_state_and_delete():
    env = {**TPU_ENV, "SPOT": "1"}
    state = run_script("tpu_vm.sh", ["--dry-run", "state"], env=env).stdout.strip()
    assert state.startswith("gcloud compute tpus queued-resources describe rae-v5p ")
    assert state.endswith("'--format=value(state.state)'")
    delete = run_script("tpu_vm.sh", ["--dry-run", "delete"], env=env).stdout.strip()
    assert delete == ("gcloud compute tpus queued-resources delete rae-v5p --zone=us-east5-a --project=proj "
                      "--force --quiet")


def test_tpu_setup_ships_head_and_installs_tpu_extra():
    out = run_script("tpu_vm.sh", ["--dry-run", "setup"], env=TPU_ENV)
    lines = out.stdout.splitlines()
    assert lines[0] == "git archive --format=tar.gz -o /tmp/rae_xla.tgz HEAD"
    assert lines[1].startswith("gcloud compute tpus tpu-vm scp /tmp/rae_xla.tgz rae-v5p:rae_xla.tgz")
    assert "--worker=all" in lines[1] and "--worker=all" in lines[2]
    assert "PY=$(bash launch/tpu_python.sh) && $PY -m venv .venv" in lines[2]
    assert "apt-get" not in lines[2]  # Only launch/tpu_python.sh installs, and only without a usable Python.
    assert "pip install -q -e '\\''.[tpu]'\\''" in lines[2]


def test_tpu_setup_on_every_slice_and_forced_python():
    out = run_script("tpu_vm.sh", ["--dry-run", "setup"], env={**TPU_ENV, "SLICES": "2", "PYTHON": "python3.12"})
    lines = out.stdout.splitlines()
    assert [line.split()[6] for line in lines[1:3]] == ["rae-v5p-0:rae_xla.tgz", "rae-v5p-1:rae_xla.tgz"]
    assert all("PY=$(PYTHON=python3.12 bash launch/tpu_python.sh)" in line for line in lines[3:5])


def test_tpu_setup_can_clone_instead():
    out = run_script("tpu_vm.sh", ["--dry-run", "setup"], env={**TPU_ENV, "REPO_URL": "https://x/rae_xla.git",
                                                              "REPO_REF": "v1"})
    (line,) = out.stdout.splitlines()
    assert "git clone https://x/rae_xla.git ~/rae_xla" in line and "git checkout v1" in line


@pytest.mark.parametrize("command, expected", [
    (["logs"], "--worker=0 '--command=tail -n 100 ~/rae_xla/logs/latest.log'"),
    (["stop"], "--worker=all '--command=kill -TERM $(cat ~/rae_xla/logs/run.pid)'"),
    (["delete"], "gcloud compute tpus tpu-vm delete rae-v5p --zone=us-east5-a --project=proj --quiet"),
])
def test_tpu_logs_stop_delete(command, expected):
    out = run_script("tpu_vm.sh", ["--dry-run", *command], env=TPU_ENV)
    assert out.returncode == 0 and out.stdout.strip().endswith(expected), out.stdout + out.stderr


@pytest.mark.parametrize("args, env, message", [
    (["create"], {k: v for k, v in TPU_ENV.items() if k != "ZONE"}, "$ZONE is not set"),
    (["run", "--config=c.py", "--workdir=runs/local"], TPU_ENV, "must be shared: use gs://"),
    (["run", "--workdir=gs://b/r"], TPU_ENV, "run needs --config"),
    (["explode"], TPU_ENV, "unknown command 'explode'"),
    (["create"], {**TPU_ENV, "SPOT": "1", "RESERVED": "1"}, "exclude each other"),
    (["create"], {**TPU_ENV, "SLICES": "0"}, "SLICES=0 must be a positive integer"),
    (["run", "--config=c.py", "--workdir=gs://b/r"], {**TPU_ENV, "RUN_ID": "a b"}, "RUN_ID=a b may only hold"),
    (["run", "--config=c.py", "--workdir=gs://b/r"], {**TPU_ENV, "PASS_ENV": "A-B"}, "'A-B' is not a variable"),
])
def test_tpu_errors(args, env, message):
    out = run_script("tpu_vm.sh", ["--dry-run", *args], env=env)
    assert out.returncode == 2 and message in out.stderr


def test_tpu_help_lists_commands_and_env():
    out = run_script("tpu_vm.sh", ["--help"])
    assert out.returncode == 0
    for word in ("create", "state", "setup", "run", "logs", "stop", "delete", "NAME", "ZONE", "ACCEL", "VERSION",
                 "PROJECT", "SLICES", "SPOT", "RESERVED", "PASS_ENV", "LIBTPU_INIT_ARGS"):
        assert word in out.stdout


def test_gpu_single_node_standalone(tmp_path):
    args = ["--config=configs/ditdh_xl.py", "--workdir=runs/x", "--config.name=a b"]
    out = run_script("gpu.sh", args, path_dir=recording_stub(tmp_path, "torchrun"))
    assert out.returncode == 0, out.stderr
    assert recorded(tmp_path) == [["--standalone", "--nnodes=1", "--nproc_per_node=auto", "-m", "rae_xla.main",
                                   *args]]
    dry = run_script("gpu.sh", ["--dry-run", *args])
    assert shlex.split(dry.stdout) == ["torchrun", *recorded(tmp_path)[0]]


def test_gpu_multi_node():
    env = dict(NNODES="2", NODE_RANK="1", MASTER_ADDR="10.0.0.1", NGPU="8")
    out = run_script("gpu.sh", ["--dry-run", "--config=c.py", "--workdir=gs://b/r"], env=env)
    assert out.stdout.strip() == ("torchrun --nnodes=2 --node_rank=1 --master_addr=10.0.0.1 --master_port=29500 "
                                  "--nproc_per_node=8 -m rae_xla.main --config=c.py --workdir=gs://b/r")


@pytest.mark.parametrize("args, env, message", [
    (["--config=c.py"], {}, "needs --config=... and --workdir=..."),
    (["--config=c.py", "--workdir=w"], {"NNODES": "2"}, "needs $NODE_RANK"),
])
def test_gpu_errors(args, env, message):
    out = run_script("gpu.sh", ["--dry-run", *args], env=env)
    assert out.returncode == 2 and message in out.stderr
