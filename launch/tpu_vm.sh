#!/usr/bin/env bash
# Cloud TPU operations for rae_xla: create TPU VMs (directly, or through queued resources: spot, reserved,
# several slices), install rae_xla on every worker of every slice, run one training command everywhere, read
# logs, stop (SIGTERM: the trainer checkpoints and exits), delete. Thin wrapper over gcloud: every training
# setting lives in the config file, not here.
#
#   export NAME=rae-v5p ZONE=us-east5-a ACCEL=v5p-64 VERSION=v2-alpha-tpuv5 PROJECT=my-project
#   SPOT=1 SLICES=2 launch/tpu_vm.sh create     # 2 x v5p-64 through a queued resource, spot capacity
#   launch/tpu_vm.sh state                      # WAITING_FOR_RESOURCES ... ACTIVE
#   launch/tpu_vm.sh setup
#   launch/tpu_vm.sh run --config=configs/ditdh_xl.py --workdir=gs://my-bucket/runs/ditdh_xl
#   launch/tpu_vm.sh logs                       # SLICE=0 WORKER=0 LINES=100 by default
#   launch/tpu_vm.sh stop                       # SIGTERM: the trainer checkpoints, then exits
#   launch/tpu_vm.sh delete
# Put --dry-run first to print the commands instead of running them. The restart loop after a preemption is
# in docs/readme/tpu.md (rerunning `run` with the same --workdir resumes from the last checkpoint).
set -euo pipefail

usage() {
  cat <<'EOF'
usage: launch/tpu_vm.sh [--dry-run] <command> [args]

commands:
  create                      create the TPU: with SLICES>1, SPOT=1, RESERVED=1 or QUEUED=1 a queued resource
                              $NAME (gcloud compute tpus queued-resources create; slices are nodes $NAME-0,
                              $NAME-1, ...), else a plain TPU VM $NAME (accelerator $ACCEL, runtime $VERSION)
  state                       print the state of the queued resource (ACTIVE, SUSPENDED, ...) or of the TPU VM
  setup                       copy the repo (git archive of HEAD, or clone $REPO_URL) to ~/rae_xla on every
                              worker of every slice, build ~/rae_xla/.venv with the image's Python if it is
                              3.10-3.13 (launch/tpu_python.sh; else one is installed), pip install -e '.[tpu]'
  run --config=C --workdir=gs://B/D [more flags]
                              the preflight (rae_xla.main --preflight) on worker 0 first: stops on any problem
                              (PREFLIGHT=0 skips it); then on every worker of every slice: stop what still holds the TPU, then start
                              `python -m rae_xla.main` under setsid nohup (launch/tpu_run.sh); log in
                              ~/rae_xla/logs/run-$RUN_ID.log (kept per run), copied to D/logs/$RUN_ID/ at exit
  logs                        tail the log of the latest run on worker $WORKER (default 0) of slice $SLICE
                              (default 0), $LINES lines (default 100)
  stop                        SIGTERM the training on every worker (it checkpoints, then exits)
  delete                      delete the queued resource (with its TPU VMs) or the TPU VM

environment (required): NAME ZONE PROJECT, and ACCEL VERSION for create
environment (optional): SLICES (default 1), SPOT=1, RESERVED=1, QUEUED=1 (create); REPO_URL REPO_REF (setup
                        clones instead of copying); PYTHON (setup: force an interpreter); RUN_ID (run: default
                        UTC time); PASS_ENV (run: more variable names to forward); PREFLIGHT=0 (run: skip the
                        preflight on worker 0); SLICE WORKER LINES (logs)
forwarded to run when set here: LIBTPU_INIT_ARGS XLA_FLAGS PT_XLA_DEBUG_LEVEL XLA_IR_DEBUG XLA_HLO_DEBUG
                        TPU_STDERR_LOG_LEVEL TPU_MIN_LOG_LEVEL TPU_VMODULE and every name in PASS_ENV
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

SLICES="${SLICES:-1}"
if ! [[ "$SLICES" =~ ^[1-9][0-9]*$ ]]; then
  echo "error: SLICES=$SLICES must be a positive integer." >&2
  exit 2
fi
if [[ "${SPOT:-0}" == 1 && "${RESERVED:-0}" == 1 ]]; then
  echo "error: SPOT=1 and RESERVED=1 exclude each other: pick one capacity type." >&2
  exit 2
fi
# A queued resource holds the TPU VMs whenever there are several slices or a capacity type is asked for.
QUEUED_RESOURCE=0
if [[ "$SLICES" -gt 1 || "${SPOT:-0}" == 1 || "${RESERVED:-0}" == 1 || "${QUEUED:-0}" == 1 ]]; then
  QUEUED_RESOURCE=1
fi

nodes() {  # The TPU VM (node) names: one per slice.
  if [[ "$SLICES" -gt 1 ]]; then
    local i
    for ((i = 0; i < SLICES; i++)); do echo "$NAME-$i"; done
  else
    echo "$NAME"
  fi
}

ssh_node() {  # ssh_node <node> <worker> <remote command>
  run_cmd gcloud compute tpus tpu-vm ssh "$1" --zone="$ZONE" --project="$PROJECT" --worker="$2" --command="$3"
}

ssh_every_worker() {  # ssh_every_worker <remote command>: every worker of every slice.
  local node
  for node in $(nodes); do
    ssh_node "$node" all "$1"
  done
}

# VAR=value words (shell-quoted) for the variables to forward that are set on this machine.
forwarded_env() {
  local name words=""
  for name in LIBTPU_INIT_ARGS XLA_FLAGS PT_XLA_DEBUG_LEVEL XLA_IR_DEBUG XLA_HLO_DEBUG TPU_STDERR_LOG_LEVEL \
              TPU_MIN_LOG_LEVEL TPU_VMODULE ${PASS_ENV:-}; do
    if ! [[ "$name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
      echo "error: PASS_ENV entry '$name' is not a variable name." >&2
      exit 2
    fi
    if [[ -n "${!name+set}" ]]; then
      words+="$name=$(printf '%q' "${!name}") "
    fi
  done
  echo "$words"
}

REMOTE_DIR='~/rae_xla'

case "$COMMAND" in
  create)
    need NAME ZONE ACCEL VERSION PROJECT
    capacity=()
    [[ "${SPOT:-0}" == 1 ]] && capacity+=(--spot)
    [[ "${RESERVED:-0}" == 1 ]] && capacity+=(--reserved)
    if [[ "$QUEUED_RESOURCE" == 1 ]]; then
      if [[ "$SLICES" -gt 1 ]]; then
        placement=(--node-count="$SLICES" --node-prefix="$NAME")
      else
        placement=(--node-id="$NAME")
      fi
      run_cmd gcloud compute tpus queued-resources create "$NAME" --zone="$ZONE" --project="$PROJECT" \
        --accelerator-type="$ACCEL" --runtime-version="$VERSION" "${placement[@]}" ${capacity[@]+"${capacity[@]}"}
    else
      run_cmd gcloud compute tpus tpu-vm create "$NAME" --zone="$ZONE" --project="$PROJECT" \
        --accelerator-type="$ACCEL" --version="$VERSION"
    fi
    ;;
  state)
    need NAME ZONE PROJECT
    if [[ "$QUEUED_RESOURCE" == 1 ]]; then
      run_cmd gcloud compute tpus queued-resources describe "$NAME" --zone="$ZONE" --project="$PROJECT" \
        --format='value(state.state)'
    else
      run_cmd gcloud compute tpus tpu-vm describe "$NAME" --zone="$ZONE" --project="$PROJECT" --format='value(state)'
    fi
    ;;
  setup)
    need NAME ZONE PROJECT
    if [[ -n "${REPO_URL:-}" ]]; then
      fetch="rm -rf $REMOTE_DIR && git clone $REPO_URL $REMOTE_DIR && cd $REMOTE_DIR && git checkout ${REPO_REF:-main}"
    else
      # Ship the committed tree only (no .venv, no runs/): what is on HEAD is what runs.
      run_cmd git archive --format=tar.gz -o /tmp/rae_xla.tgz HEAD
      for node in $(nodes); do
        run_cmd gcloud compute tpus tpu-vm scp /tmp/rae_xla.tgz "$node":rae_xla.tgz --zone="$ZONE" \
          --project="$PROJECT" --worker=all
      done
      fetch="rm -rf $REMOTE_DIR && mkdir -p $REMOTE_DIR && tar -xzf ~/rae_xla.tgz -C $REMOTE_DIR && cd $REMOTE_DIR"
    fi
    # The image's Python when it is 3.10-3.13 (TPU VM images ship 3.10): no apt install on every worker.
    pick="PY=\$(${PYTHON:+PYTHON=$(printf '%q' "$PYTHON") }bash launch/tpu_python.sh)"
    venv="\$PY -m venv .venv && .venv/bin/pip install -q --upgrade pip && .venv/bin/pip install -q -e '.[tpu]'"
    ssh_every_worker "set -e; $fetch && $pick && $venv"
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
    run_id="${RUN_ID:-$(date -u +%Y%m%d-%H%M%S)}"
    if ! [[ "$run_id" =~ ^[A-Za-z0-9_.-]+$ ]]; then
      echo "error: RUN_ID=$run_id may only hold letters, digits, '.', '_' and '-'." >&2
      exit 2
    fi
    env_words="$(forwarded_env)"
    flags="$(printf '%q ' "$@")"
    # The preflight first, on worker 0 of the first slice alone: the plan, every input (gs://, hf://, local)
    # and the workdir checked without starting the TPU runtime; any problem stops here, before every worker
    # starts (PREFLIGHT=0 skips it). ACCEL (and SLICES) size the plan when set.
    if [[ "${PREFLIGHT:-1}" != 0 ]]; then
      plan=""
      [[ -n "${ACCEL:-}" ]] && plan=" --plan_for=${SLICES}x${ACCEL}"
      check="cd $REMOTE_DIR && ${env_words}PJRT_DEVICE=TPU .venv/bin/python -m rae_xla.main $flags--preflight$plan"
      if ! ssh_node "$(nodes | head -n 1)" 0 "$check"; then
        echo "error: the preflight on worker 0 found problems (the FATAL lines above); fix them, or run with" \
             "PREFLIGHT=0 to skip the check." >&2
        exit 2
      fi
    fi
    # A previous run (or a crashed one) still holding the chips makes libtpu fail with 'TPU in use': end the
    # recorded trainer, then anything with the TPU device files open (/dev/accel* on v4/v5e, /dev/vfio on
    # v5p/v6e), and drop libtpu's lock file.
    kill_stale="(old=\$(cat logs/run.pid 2>/dev/null); grep -qs rae_xla.main /proc/\$old/cmdline && kill -9 \$old; "
    kill_stale+="sudo lsof -t /dev/accel* /dev/vfio/[0-9]* 2>/dev/null | sort -u | xargs -r sudo kill -9; "
    kill_stale+="sudo rm -f /tmp/libtpu_lockfile; true)"
    # setsid + nohup: the job outlives the ssh session; launch/tpu_run.sh records the trainer's pid for 'stop'.
    start="cd $REMOTE_DIR && mkdir -p logs && $kill_stale && ${env_words}setsid nohup bash launch/tpu_run.sh"
    start+=" $run_id $(printf '%q' "$workdir") $flags> logs/nohup-$run_id.out 2>&1 < /dev/null &"
    ssh_every_worker "$start"
    [[ "$DRY_RUN" == 1 ]] || echo "run $run_id started; logs: launch/tpu_vm.sh logs, then $workdir/logs/$run_id/" >&2
    ;;
  logs)
    need NAME ZONE PROJECT
    slice="${SLICE:-0}"
    node="$NAME"
    [[ "$SLICES" -gt 1 ]] && node="$NAME-$slice"
    ssh_node "$node" "${WORKER:-0}" "tail -n ${LINES:-100} $REMOTE_DIR/logs/latest.log"
    ;;
  stop)
    need NAME ZONE PROJECT
    ssh_every_worker "kill -TERM \$(cat $REMOTE_DIR/logs/run.pid)"
    ;;
  delete)
    need NAME ZONE PROJECT
    if [[ "$QUEUED_RESOURCE" == 1 ]]; then
      # --force also deletes the TPU VMs the queued resource holds.
      run_cmd gcloud compute tpus queued-resources delete "$NAME" --zone="$ZONE" --project="$PROJECT" --force --quiet
    else
      run_cmd gcloud compute tpus tpu-vm delete "$NAME" --zone="$ZONE" --project="$PROJECT" --quiet
    fi
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
