"""Checkpoint speed: save time (the blocking part and in all) and restore time, per GB of training state.

  python benchmarks/checkpoint.py --gb=0.5                                   # eager CPU runtime, local disk
  PJRT_DEVICE=CPU CPU_NUM_DEVICES=4 python benchmarks/checkpoint.py --backend=xla --mesh=2,2
  python benchmarks/checkpoint.py --dir=gs://bucket/tmp/ckpt_bench --gb=13   # on a TPU VM / GPU host
  ... --md_out=benchmarks/results/<date>_<hardware>_checkpoint.md

The state is what a trainer checkpoints, sized by --gb: a stack of square Linear layers (fp32) as the model, an
EMA copy and AdamW's two moments (so 4 x the parameter bytes; DiT^DH-XL's ~13 GB is this shape at 13). It goes
through the real `CheckpointManager` and runtime: DCP with the shard-aware planner on XLA, integrity records,
COMMITTED last. Modes, each timed over --repeats saves (median):
  sync-1      blocking save, one file per process (the old behaviour)
  sync-N      blocking save, --threads files written in parallel per process
  async-N     staged to host memory (blocking part), then written by a background thread with N writers
Restore: `restore_latest` (verification of every file's size and CRC-32, then the DCP load) and the
verification alone. On XLA the blocking part of an async save is the device -> host copy of the local shards;
on CPU the staging is a memcpy, so there it measures host memory bandwidth, not a TPU/GPU transfer.
"""
from __future__ import annotations

import datetime
import json
import statistics
import tempfile
import time

import ml_collections
import torch
from absl import app, flags, logging
from etils import epath

from rae_xla import config as config_lib
from rae_xla.checkpoint.manager import CheckpointManager
from rae_xla.runtime import make_runtime

import provenance  # benchmarks/provenance.py (the script's folder is on sys.path)

_BACKEND = flags.DEFINE_enum("backend", "cpu", ["cpu", "cuda", "xla"], "Runtime backend.")
_MESH = flags.DEFINE_string("mesh", "1,-1", "XLA mesh data,fsdp (-1 = the remaining devices).")
_GB = flags.DEFINE_float("gb", 0.25, "Training state size in GB (model + EMA + 2 AdamW moments, fp32).")
_WIDTH = flags.DEFINE_integer("width", 1024, "Width of the square layers (a 4 MB fp32 weight at 1024).")
_THREADS = flags.DEFINE_integer("threads", 4, "Writer threads per process for the -N modes.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Saves per mode; the median is reported.")
_DIR = flags.DEFINE_string("dir", "", "Checkpoint directory (local or gs://); default: a fresh temp dir.")
_JSON_OUT = flags.DEFINE_string("json_out", "", "Write the results JSON here.")
_MD_OUT = flags.DEFINE_string("md_out", "", "Write a markdown report (date, commit, machine, table) here.")


def build_state(runtime, gb: float, width: int) -> tuple[dict, int]:
    """{'model', 'ema', 'optim'} with AdamW moments allocated; returns it and its size in bytes."""
    layers = max(1, round(gb * 1e9 / (4 * 4 * width * width)))
    torch.manual_seed(0)
    model = runtime.shard_model(torch.nn.Sequential(*[torch.nn.Linear(width, width, bias=False)
                                                      for _ in range(layers)]))
    ema = runtime.place_frozen(torch.nn.Sequential(*[torch.nn.Linear(width, width, bias=False)
                                                     for _ in range(layers)]).requires_grad_(False),
                               like_trainable=True)
    opt = torch.optim.AdamW(list(runtime.unwrap(model).parameters()), lr=1e-4)
    runtime.prime_optimizer(opt)
    runtime.wait()
    return {"model": model, "ema": ema, "optim": (model, opt)}, 4 * 4 * layers * width * width


def time_saves(runtime, directory: str, state: dict, *, async_save: bool, threads: int, repeats: int) -> dict:
    blocking, total = [], []
    with CheckpointManager(directory, runtime, keep=1, async_save=async_save, write_threads=threads) as manager:
        for step in range(1, repeats + 1):
            runtime.wait()
            started = time.perf_counter()
            manager.save(step, state, meta={})
            blocking.append(time.perf_counter() - started)
            manager.wait_until_finished()
            total.append(time.perf_counter() - started)
    return {"blocking_s": statistics.median(blocking), "total_s": statistics.median(total)}


def time_restore(runtime, directory: str, state: dict, threads: int) -> dict:
    manager = CheckpointManager(directory, runtime, keep=1, write_threads=threads)
    step = manager.latest_step()
    started = time.perf_counter()
    problem = manager.verify(step)
    verify = time.perf_counter() - started
    assert problem is None, problem
    started = time.perf_counter()
    manager.restore_latest(state)
    runtime.wait()
    return {"verify_s": verify, "restore_s": time.perf_counter() - started}


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    data, fsdp = (int(v) for v in _MESH.value.split(","))
    runtime = make_runtime(ml_collections.ConfigDict(config_lib.runtime_block(
        backend=_BACKEND.value, mesh=dict(data=data, fsdp=fsdp))))
    state, nbytes = build_state(runtime, _GB.value, _WIDTH.value)
    gb = nbytes / 1e9
    root = _DIR.value or tempfile.mkdtemp(prefix="ckpt_bench_")
    rows = {}
    for name, async_save, threads in (("sync-1", False, 1), (f"sync-{_THREADS.value}", False, _THREADS.value),
                                      (f"async-{_THREADS.value}", True, _THREADS.value)):
        directory = str(epath.Path(root) / name)
        row = time_saves(runtime, directory, state, async_save=async_save, threads=threads, repeats=_REPEATS.value)
        row.update(time_restore(runtime, directory, state, threads))
        row.update({k.replace("_s", "_s_per_gb"): v / gb for k, v in list(row.items())})
        rows[name] = row
        print(f"{name:10s} save blocking {row['blocking_s']:7.2f} s, in all {row['total_s']:7.2f} s | restore "
              f"{row['restore_s']:7.2f} s (verify {row['verify_s']:6.2f} s) | per GB: blocking "
              f"{row['blocking_s_per_gb']:.2f} s, save {row['total_s_per_gb']:.2f} s, restore "
              f"{row['restore_s_per_gb']:.2f} s", flush=True)
        if not _DIR.value:
            epath.Path(directory).rmtree()
    report = dict(backend=runtime.kind, device_kind=runtime.device_kind, mesh=runtime.mesh_shape,
                  processes=runtime.process_count, state_gb=gb, directory=root, threads=_THREADS.value,
                  repeats=_REPEATS.value, modes=rows)
    runtime.close()
    print("RESULT_JSON " + json.dumps(report))
    if _JSON_OUT.value:
        epath.Path(_JSON_OUT.value).write_text(json.dumps(report, indent=1))
    if _MD_OUT.value:
        epath.Path(_MD_OUT.value).write_text(markdown(report))


def markdown(report: dict) -> str:
    lines = [f"# Checkpoint save/restore — {datetime.date.today().isoformat()}", "",
             f"- Commit: {provenance.commit()}", f"- Machine: {provenance.machine()}, torch {torch.__version__}",
             f"- Backend: {report['backend']} ({report['device_kind']}), mesh {report['mesh']}, "
             f"{report['processes']} process(es)",
             f"- State: {report['state_gb']:.3f} GB (model + EMA + AdamW m, v; fp32), directory "
             f"{'gs://' if report['directory'].startswith('gs://') else 'local disk'}, median of "
             f"{report['repeats']} saves", "",
             "| mode | save blocking s | save total s | restore s (incl. verify) | verify s | blocking s/GB | "
             "save s/GB | restore s/GB |", "|---|---|---|---|---|---|---|---|"]
    for name, r in report["modes"].items():
        lines.append(f"| {name} | {r['blocking_s']:.3f} | {r['total_s']:.3f} | {r['restore_s']:.3f} | "
                     f"{r['verify_s']:.3f} | {r['blocking_s_per_gb']:.3f} | {r['total_s_per_gb']:.3f} | "
                     f"{r['restore_s_per_gb']:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    app.run(main)
