"""benchmarks/device_check.sh is prepared for a GPU machine; here (no GPU) it must stop with one clear line
after the install step, before running anything, and its settings must name every configuration."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "device_check.sh"


def test_without_a_gpu_it_stops_with_one_clear_line(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"  # The test's interpreter stands in for the venv's.
    python.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    env = {**os.environ, "VENV": str(venv), "SKIP_INSTALL": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(["bash", str(SCRIPT)], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "error: no CUDA device visible (torch.cuda.device_count() == 0)."


def test_it_runs_every_precision_and_sharding_and_the_sampling_benchmark():
    text = SCRIPT.read_text()
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    assert "for precision in bf16 fp32" in text and "for sharding in replicate fsdp" in text
    assert "benchmarks/throughput.py" in text and "--config=configs/ditdh_xl.py" in text
    assert "benchmarks/sampling_cost.py" in text and "benchmarks/results/" in text
