#!/usr/bin/env bash
# Runs ON each TPU VM worker: launch/tpu_vm.sh run starts it under setsid nohup. Starts the trainer, records
# its pid (launch/tpu_vm.sh stop signals exactly that process), forwards SIGTERM/SIGINT to it (a spot
# preemption signals every process: the trainer checkpoints, then exits 0), keeps the log of this run in
# logs/run-<RUN_ID>.log (logs/latest.log points at it; earlier runs are kept) and, when the trainer has exited,
# appends the exit code and copies the log to <workdir>/logs/<RUN_ID>/<hostname>.log.
#
#   launch/tpu_run.sh RUN_ID WORKDIR [rae_xla.main flags]
# Environment: RAE_PYTHON (default .venv/bin/python), COPY (default 'gcloud storage cp').
set -uo pipefail

run_id="$1" workdir="$2"
shift 2
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mkdir -p logs
log="logs/run-$run_id.log"
ln -sfn "run-$run_id.log" logs/latest.log

pid="" signalled=0
# Set before the start: no window in which a TERM would end the wrapper instead of reaching the trainer.
trap 'signalled=1; [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null' TERM INT
PJRT_DEVICE="${PJRT_DEVICE:-TPU}" "${RAE_PYTHON:-.venv/bin/python}" -m rae_xla.main "$@" >>"$log" 2>&1 </dev/null &
pid=$!
echo "$pid" > logs/run.pid
wait "$pid"
rc=$?
while [[ "$signalled" == 1 ]]; do  # `wait` returned early (128+signal) for the trap: wait for the real status.
  signalled=0
  wait "$pid"
  rc=$?
done
echo "rae_xla.main exited with code $rc" >>"$log"
${COPY:-gcloud storage cp} "$log" "$workdir/logs/$run_id/$(hostname).log" >>"$log" 2>&1 ||
  echo "could not copy the log to $workdir/logs/$run_id/" >>"$log"
exit "$rc"
