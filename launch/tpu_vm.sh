#!/usr/bin/env bash
# Create a Cloud TPU VM, install rae_xla on every worker, run one training command on all workers.
# Thin wrapper over gcloud: every training setting lives in the config file, not here.
#
#   export NAME=rae-v5p-64 ZONE=us-east5-a ACCEL=v5p-64 VERSION=v2-alpha-tpuv5 PROJECT=my-project
#   launch/tpu_vm.sh create
#   launch/tpu_vm.sh setup
#   launch/tpu_vm.sh run --config=configs/ditdh_xl.py --workdir=gs://my-bucket/runs/ditdh_xl
#   launch/tpu_vm.sh logs            # WORKER=0 LINES=100 by default
#   launch/tpu_vm.sh stop            # SIGTERM: the trainer checkpoints, then exits
#   launch/tpu_vm.sh delete
# Put --dry-run first to print the commands instead of running them.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: launch/tpu_vm.sh [--dry-run] <command> [args]

commands:
  create                      gcloud compute tpus tpu-vm create $NAME (accelerator $ACCEL, runtime $VERSION)
  setup                       copy the repo (git archive of HEAD, or clone $REPO_URL) to ~/rae_xla on all
                              workers, create ~/rae_xla/.venv with $PYTHON, pip install -e '.[tpu]'
  run --config=C --workdir=gs://B/D [more flags]
                              start `python -m rae_xla.main` on all workers under nohup (PJRT_DEVICE=TPU),
                              log to ~/rae_xla/logs/run.log on each worker
  logs                        tail the log of worker $WORKER (default 0), $LINES lines (default 100)
  stop                        SIGTERM the training on all workers (it checkpoints, then exits)
  delete                      delete the TPU VM

environment (required): NAME ZONE ACCEL VERSION PROJECT (ACCEL and VERSION only for create)
environment (optional): REPO_URL REPO_REF (setup clones instead of copying), PYTHON (default python3.11),
                        WORKER, LINES (logs)
EOF
}

DRY_RUN=0
if [[ "${1:-}" == "--dry-run" ]]; then
  DRY_RUN=1
  shift
fi
COMMAND="${1:-}"
[[ $# -gt 0 ]] && shift

source "$(dirname "${BASH_SOURCE[0]}")/print_cmd.sh"

# Runs (or with --dry-run prints) one command.
run_cmd() {
  if [[ "$DRY_RUN" == 1 ]]; then
    print_cmd "$@"
  else
    "$@"
  fi
}

need() {
  local var
  for var in "$@"; do
    if [[ -z "${!var:-}" ]]; then
      echo "error: \$$var is not set; export it (see 'launch/tpu_vm.sh --help')." >&2
      exit 2
    fi
  done
}

ssh_all() {  # ssh_all <worker> <remote command>
  run_cmd gcloud compute tpus tpu-vm ssh "$NAME" --zone="$ZONE" --project="$PROJECT" --worker="$1" \
    --command="$2"
}

REMOTE_DIR='~/rae_xla'
PY="${PYTHON:-python3.11}"

case "$COMMAND" in
  create)
    need NAME ZONE ACCEL VERSION PROJECT
    run_cmd gcloud compute tpus tpu-vm create "$NAME" --zone="$ZONE" --project="$PROJECT" \
      --accelerator-type="$ACCEL" --version="$VERSION"
    ;;
  setup)
    need NAME ZONE PROJECT
    if [[ -n "${REPO_URL:-}" ]]; then
      fetch="rm -rf $REMOTE_DIR && git clone $REPO_URL $REMOTE_DIR && cd $REMOTE_DIR && git checkout ${REPO_REF:-main}"
    else
      # Ship the committed tree only (no .venv, no runs/): what is on HEAD is what runs.
      run_cmd git archive --format=tar.gz -o /tmp/rae_xla.tgz HEAD
      run_cmd gcloud compute tpus tpu-vm scp /tmp/rae_xla.tgz "$NAME":rae_xla.tgz --zone="$ZONE" \
        --project="$PROJECT" --worker=all
      fetch="rm -rf $REMOTE_DIR && mkdir -p $REMOTE_DIR && tar -xzf ~/rae_xla.tgz -C $REMOTE_DIR"
    fi
    # TPU VM images ship an older python; rae_xla needs >= 3.11 (apt package on Ubuntu 22.04).
    install="(command -v $PY || (sudo apt-get update && sudo apt-get install -y $PY $PY-venv))"
    venv="cd $REMOTE_DIR && $PY -m venv .venv && .venv/bin/pip install -q --upgrade pip"
    ssh_all all "set -e; $fetch && $install && $venv && .venv/bin/pip install -q -e '.[tpu]'"
    ;;
  run)
    need NAME ZONE PROJECT
    config="" workdir=""
    for arg in "$@"; do
      case "$arg" in
        --config=*) config="${arg#--config=}" ;;
        --workdir=*) workdir="${arg#--workdir=}" ;;
      esac
    done
    if [[ -z "$config" || -z "$workdir" ]]; then
      echo "error: run needs --config=... and --workdir=gs://..." >&2
      exit 2
    fi
    if [[ "$workdir" != gs://* ]]; then
      echo "error: --workdir=$workdir: every worker writes checkpoints there, so it must be shared: use gs://." >&2
      exit 2
    fi
    flags="$(printf '%q ' "$@")"
    # setsid + nohup: the job outlives the ssh session; the pid file lets 'stop' signal exactly this job.
    start="cd $REMOTE_DIR && mkdir -p logs && PJRT_DEVICE=TPU setsid nohup .venv/bin/python -m rae_xla.main"
    start+=" $flags> logs/run.log 2>&1 < /dev/null & echo \$! > logs/run.pid"
    ssh_all all "$start"
    ;;
  logs)
    need NAME ZONE PROJECT
    ssh_all "${WORKER:-0}" "tail -n ${LINES:-100} $REMOTE_DIR/logs/run.log"
    ;;
  stop)
    need NAME ZONE PROJECT
    ssh_all all "kill -TERM \$(cat $REMOTE_DIR/logs/run.pid)"
    ;;
  delete)
    need NAME ZONE PROJECT
    run_cmd gcloud compute tpus tpu-vm delete "$NAME" --zone="$ZONE" --project="$PROJECT" --quiet
    ;;
  -h|--help|help)
    usage
    ;;
  "")
    usage >&2
    exit 2
    ;;
  *)
    echo "error: unknown command '$COMMAND'." >&2
    usage >&2
    exit 2
    ;;
esac
