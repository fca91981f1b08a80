#!/usr/bin/env bash
# One prepared check for a machine with NVIDIA GPUs (~5 minutes after the install): installs rae_xla, runs
# the stage-2 training-step benchmark of DiT^DH-XL in bf16 and fp32, with DDP (param_sharding=replicate) and
# FSDP2 (param_sharding=fsdp) over the GPUs present, then the sampling benchmark, and writes
# benchmarks/results/<date>_<gpu>_device_check.md (+ one JSON per run under benchmarks/results/device_check/).
#
#   bash benchmarks/device_check.sh                 # every visible GPU
#   NGPU=1 STEPS=10 bash benchmarks/device_check.sh # fewer GPUs / shorter timing
#
# The step is the real one (benchmarks/throughput.py: build_training, AdamW, clipping, EMA) with
# --latents_input: random 768x16x16 latents replace the DINOv2-B encoder, whose weights need a download.
# With one GPU, 'DDP' and 'FSDP2' both run unwrapped (a single process): the line says so.
# Environment: VENV (default .venv; reused if it has rae_xla), PYTHON (interpreter for a new venv),
#              NGPU, BATCH_PER_GPU (default 32), STEPS (default 12), SKIP_INSTALL=1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV="${VENV:-.venv}"
if [[ "${SKIP_INSTALL:-0}" != 1 ]]; then
  if [[ ! -x "$VENV/bin/python" ]]; then
    py="${PYTHON:-}"
    if [[ -z "$py" ]]; then
      for candidate in python3 python3.13 python3.12 python3.11 python3.10; do
        if command -v "$candidate" >/dev/null &&
           "$candidate" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 13) else 1)'; then
          py="$candidate"
          break
        fi
      done
    fi
    [[ -n "$py" ]] || { echo "error: no Python 3.10-3.13 found; set PYTHON=..." >&2; exit 2; }
    "$py" -m venv "$VENV"
  fi
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -e '.[test]'   # torch 2.9.0 from PyPI is a CUDA 12.8 build.
fi
PY="$VENV/bin/python"

NGPU="${NGPU:-$("$PY" -c 'import torch; print(torch.cuda.device_count())')}"
if [[ "$NGPU" -lt 1 ]]; then
  echo "error: no CUDA device visible (torch.cuda.device_count() == 0)." >&2
  exit 2
fi
GPU="$("$PY" -c 'import torch; print(torch.cuda.get_device_name(0).replace(" ", "-"))')"
DATE="$(date -u +%Y-%m-%d)"
OUT="benchmarks/results/${DATE}_${NGPU}x${GPU}_device_check.md"
JSON_DIR="benchmarks/results/device_check"
mkdir -p "$JSON_DIR"
BATCH=$(( ${BATCH_PER_GPU:-32} * NGPU ))
STEPS="${STEPS:-12}"
echo "device check: $NGPU x $GPU, global batch $BATCH, $STEPS timed steps per setting -> $OUT" >&2

step_benchmark() {  # step_benchmark <precision> <replicate|fsdp>
  local precision="$1" sharding="$2" name label
  name="ditdh_xl_${precision}_${sharding}"
  label="DiT^DH-XL step, $precision, $([[ $sharding == replicate ]] && echo DDP || echo FSDP2), $NGPU GPU(s)"
  [[ "$NGPU" == 1 ]] && label+=" (one process: no DDP/FSDP2 wrapper)"
  "$VENV/bin/torchrun" --standalone --nnodes=1 --nproc_per_node="$NGPU" benchmarks/throughput.py \
    --config=configs/ditdh_xl.py --config.runtime.backend=cuda --config.runtime.precision="$precision" \
    --config.runtime.param_sharding="$sharding" --config.train.global_batch_size="$BATCH" \
    --latents_input --steps="$STEPS" --warmup=2 --windows=2 \
    --json_out="$JSON_DIR/$name.json" --md_out="$OUT" --label="$label" ||
    echo "- $label: FAILED (see the output above)" >> "$OUT"
}

for precision in bf16 fp32; do
  for sharding in replicate fsdp; do
    step_benchmark "$precision" "$sharding"
  done
done

# Sampling: network evaluations and wall time of 50-point sampling with CFG-interval / autoguidance.
sampling_args=(--batch 8 --repeats 3)
if "$PY" benchmarks/sampling_cost.py --help 2>&1 | grep -q -- "--device"; then
  sampling_args+=(--device cuda)
fi
{
  echo
  echo "## Sampling cost ($("$PY" benchmarks/sampling_cost.py --help 2>&1 | grep -q -- '--device' && echo cuda || echo 'CPU: this sampling_cost.py has no --device'))"
  echo
  echo "\`python benchmarks/sampling_cost.py ${sampling_args[*]}\`"
  echo
  "$PY" benchmarks/sampling_cost.py "${sampling_args[@]}" || echo "FAILED"
} >> "$OUT"
echo "wrote $OUT and $JSON_DIR/*.json" >&2
