#!/usr/bin/env bash
# Runs ON a TPU VM worker (launch/tpu_vm.sh setup calls it): prints the Python interpreter to build the venv
# with. The image's own Python is used when it is a version torch 2.9 + torch_xla 2.9 publish wheels for
# (CPython 3.10-3.13; TPU VM images ship 3.10), so a normal setup installs nothing with apt. Only when none
# is found is $FALLBACK (default python3.11) installed from apt. $PYTHON (set on the launching machine)
# forces a choice. Its venv module is checked too: Ubuntu splits ensurepip into pythonX.Y-venv.
set -euo pipefail

supported() {  # supported <interpreter>: exit 0 if it runs and is 3.10..3.13
  command -v "$1" >/dev/null 2>&1 &&
    "$1" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 13) else 1)' >/dev/null 2>&1
}

chosen=""
for candidate in ${PYTHON:-python3 python3.13 python3.12 python3.11 python3.10}; do
  if supported "$candidate"; then
    chosen="$candidate"
    break
  fi
done
if [[ -z "$chosen" ]]; then
  if [[ -n "${PYTHON:-}" ]]; then
    echo "error: PYTHON=$PYTHON is not a Python 3.10-3.13 on $(hostname); unset it to pick one automatically." >&2
    exit 2
  fi
  chosen="${FALLBACK:-python3.11}"
  echo "no Python 3.10-3.13 on $(hostname): installing $chosen from apt" >&2
  sudo apt-get update -qq >&2 && sudo apt-get install -y -qq "$chosen" "$chosen-venv" >&2
fi
if ! "$chosen" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  version="$("$chosen" -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}")')"
  echo "$chosen has no venv/ensurepip: installing $version-venv from apt" >&2
  sudo apt-get update -qq >&2 && sudo apt-get install -y -qq "$version-venv" >&2
fi
command -v "$chosen"
