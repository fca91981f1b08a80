#!/usr/bin/env bash
# Run rae_xla on GPUs with torchrun (native PyTorch backend: DDP/FSDP2 over NCCL). Settings live in the config.
#
#   launch/gpu.sh --config=configs/ditdh_xl.py --workdir=runs/ditdh_xl          # one node, all its GPUs
#   NGPU=4 launch/gpu.sh --config=... --workdir=...                              # 4 GPUs of this node
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 launch/gpu.sh --config=... --workdir=gs://b/run   # on node 0
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=10.0.0.1 launch/gpu.sh --config=... --workdir=gs://b/run   # on node 1
# Put --dry-run first to print the torchrun command instead of running it. Every other argument is passed
# to `python -m rae_xla.main` unchanged (e.g. --config.train.global_batch_size=256).
set -euo pipefail

usage() {
  cat <<'EOF'
usage: launch/gpu.sh [--dry-run] --config=CONFIG --workdir=WORKDIR [more rae_xla.main flags]
environment: NGPU (processes per node, default auto = one per visible GPU; torchrun from PATH),
             multi-node: NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT (default 29500)
EOF
}

DRY_RUN=0
if [[ "${1:-}" == "--dry-run" ]]; then
  DRY_RUN=1
  shift
fi
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" || $# -eq 0 ]]; then
  usage
  [[ $# -eq 0 ]] && exit 2
  exit 0
fi
has_config=0 has_workdir=0
for arg in "$@"; do
  [[ "$arg" == --config=* ]] && has_config=1
  [[ "$arg" == --workdir=* ]] && has_workdir=1
done
if [[ "$has_config" == 0 || "$has_workdir" == 0 ]]; then
  echo "error: launch/gpu.sh needs --config=... and --workdir=..." >&2
  usage >&2
  exit 2
fi

source "$(dirname "${BASH_SOURCE[0]}")/print_cmd.sh"

NNODES="${NNODES:-1}"
if [[ "$NNODES" == 1 ]]; then
  rendezvous=(--standalone --nnodes=1)
else
  for var in NODE_RANK MASTER_ADDR; do
    if [[ -z "${!var:-}" ]]; then
      echo "error: NNODES=$NNODES needs \$$var (this node's rank / node 0's address)." >&2
      exit 2
    fi
  done
  rendezvous=(--nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR"
              --master_port="${MASTER_PORT:-29500}")
fi

cmd=(torchrun "${rendezvous[@]}" --nproc_per_node="${NGPU:-auto}"
     -m rae_xla.main "$@")
if [[ "$DRY_RUN" == 1 ]]; then
  print_cmd "${cmd[@]}"
else
  exec "${cmd[@]}"
fi
