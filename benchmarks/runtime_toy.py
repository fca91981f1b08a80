"""Runtime overhead per backend: compile time and steady-state step time of the SPMD toy model.

  python benchmarks/runtime_toy.py                        # every backend present on this machine
  python benchmarks/runtime_toy.py --backends=cpu,xla_cpu --md_out=benchmarks/results/<date>_<hw>_runtime_toy.md

The model and step are the runtime self-test's (rae_xla/runtime/selftest.py): a 2-block TinyTransformer
(width 32, batch 8 x 8 tokens x 16), MSE, backward, grad-norm clipping, AdamW with a per-step LR, EMA. It is
small enough that the step time is the runtime's own cost (dispatch, tracing, collectives), not arithmetic.

Backends, each in its own subprocess (PJRT env vars and `use_spmd()` are per process):
  cpu      eager PyTorch on the CPU
  xla_cpu  torch_xla SPMD on 4 virtual CPU devices, mesh (data 2, fsdp 2)
  xla_tpu  torch_xla SPMD on the TPU chips of this host, mesh (1, all)   [only where libtpu is installed]
  cuda     eager PyTorch on one GPU                                       [only where CUDA is visible]
Reported: first-step time (tracing + compile + run), compile seconds and graph count from
`runtime.compile_stats()`, and the median step time over `--windows` windows of `--window_steps` steps, each
bracketed by `runtime.wait()` (never from one step).
"""
from __future__ import annotations

import datetime
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from absl import app, flags

from rae_xla import config as config_lib
from rae_xla.runtime import make_runtime
from rae_xla.runtime.selftest import TinyTransformer, toy_batch, toy_lr

import provenance  # benchmarks/provenance.py (the script's folder is on sys.path)

# name -> (runtime backend, mesh (data, fsdp), extra environment).
BACKENDS = {
    "cpu": ("cpu", (1, -1), {}),
    "xla_cpu": ("xla", (2, 2), {"PJRT_DEVICE": "CPU", "CPU_NUM_DEVICES": "4"}),
    "xla_tpu": ("xla", (1, -1), {"PJRT_DEVICE": "TPU"}),
    "cuda": ("cuda", (1, -1), {}),
}

_BACKENDS = flags.DEFINE_string("backends", "auto", "Comma-separated names from BACKENDS, or 'auto' = the ones "
                                "present here.")
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed steps after the first step.")
_WINDOWS = flags.DEFINE_integer("windows", 5, "Timing windows; the reported step time is their median.")
_WINDOW_STEPS = flags.DEFINE_integer("window_steps", 10, "Steps per timing window.")
_BATCH = flags.DEFINE_integer("global_batch", 8, "Global batch, divisible by the device count (the "
                             "--batch flag belongs to the imported selftest module).")
_THREADS = flags.DEFINE_integer("threads", 0, "torch intra-op threads in each child (0: torch's default); on a "
                                "shared box 1 thread avoids OpenMP spin contention in eager CPU steps.")
_MD_OUT = flags.DEFINE_string("md_out", "", "Write the table (with date, commit, machine) to this markdown file.")
_CHILD = flags.DEFINE_string("child", "", "Internal: measure this backend in this process and print JSON.")


def available_backends() -> list[str]:
    names = ["cpu"]
    if importlib.util.find_spec("torch_xla") is not None:
        names.append("xla_cpu")
    if importlib.util.find_spec("libtpu") is not None:
        names.append("xla_tpu")
    if torch.cuda.is_available():
        names.append("cuda")
    return names


def measure(name: str, *, warmup: int, windows: int, window_steps: int, batch: int) -> dict:
    """Builds the runtime `name` in this process, trains the toy model, returns the timings."""
    backend, (data, fsdp), _ = BACKENDS[name]
    runtime = make_runtime(config_lib.runtime_block(backend=backend, mesh=dict(data=data, fsdp=fsdp)))
    try:
        torch.manual_seed(0)
        model = runtime.shard_model(TinyTransformer())
        ema = runtime.place_frozen(TinyTransformer().requires_grad_(False), like_trainable=True)
        params, ema_params = list(runtime.unwrap(model).parameters()), list(ema.parameters())
        opt = torch.optim.AdamW(params, lr=toy_lr(0), weight_decay=0.01, foreach=False)

        def step_fn(x, y):  # The self-test's step (without its strict-mode probe).
            opt.zero_grad(set_to_none=True)
            loss = F.mse_loss(model(x), y)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            with torch.no_grad():
                torch._foreach_lerp_(ema_params, [p.detach() for p in params], 0.1)
            return loss, grad_norm

        step = runtime.compile_step(step_fn, name="toy_step", max_graphs=2)
        rows = runtime.per_process_batch(batch)
        here = slice(runtime.process_index * rows, (runtime.process_index + 1) * rows)
        batches = list(runtime.device_batches(toy_batch(s, batch, here) for s in range(2)))
        counter = iter(range(10**9))

        def run(count: int):
            loss = None
            for _ in range(count):
                s = next(counter)
                for group in opt.param_groups:
                    # A host float, changing every step: must not recompile. `s % 20` keeps it in [3.4e-4, 1e-3]:
                    # near s = 31 toy_lr falls to ~4e-7, where AdamW's 1 - lr*wd rounds to 1.0f, which torch_xla
                    # bakes in as a constant, so one extra graph is compiled (measured: 3 graphs instead of 2).
                    group["lr"] = toy_lr(s % 20)
                loss, _ = step(batches[s % 2]["x"], batches[s % 2]["y"])
            return loss

        runtime.wait()
        started = time.perf_counter()
        run(1)
        runtime.wait()
        first_step_s = time.perf_counter() - started
        graphs_first = runtime.compile_stats().get("graphs")
        run(warmup)
        runtime.wait()
        graphs_warm = runtime.compile_stats().get("graphs")
        window_s = []
        for _ in range(windows):
            started = time.perf_counter()
            loss = run(window_steps)
            runtime.wait()
            window_s.append((time.perf_counter() - started) / window_steps)
        stats = runtime.compile_stats()
        return {"backend": name, "device_kind": runtime.device_kind, "torch_threads": torch.get_num_threads(), "num_devices": runtime.num_devices,
                "mesh": runtime.mesh_shape, "first_step_seconds": first_step_s,
                "compile_seconds": stats.get("compile_seconds"), "graphs": stats.get("graphs"),
                "graphs_after_first_step": graphs_first,
                "graphs_compiled_while_timing": None if graphs_warm is None else stats["graphs"] - graphs_warm,
                "median_step_seconds": statistics.median(window_s), "window_step_seconds": window_s,
                "final_loss": float(loss.detach().cpu())}
    finally:
        runtime.close()


def run_child(name: str) -> dict:
    """Measures backend `name` in a fresh interpreter with its environment; returns its JSON result."""
    env = {k: v for k, v in os.environ.items() if k not in ("PJRT_DEVICE", "CPU_NUM_DEVICES")}
    env.update(BACKENDS[name][2])
    command = [sys.executable, os.path.abspath(__file__), f"--child={name}", f"--warmup={_WARMUP.value}",
               f"--windows={_WINDOWS.value}", f"--window_steps={_WINDOW_STEPS.value}",
               f"--global_batch={_BATCH.value}", f"--threads={_THREADS.value}"]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT_JSON ")]
    if result.returncode != 0 or not lines:
        return {"backend": name, "error": (result.stderr or result.stdout).strip().splitlines()[-1:]}
    return json.loads(lines[-1][len("RESULT_JSON "):])


def table(results: list[dict]) -> str:
    def f(value, scale=1.0, digits=3):
        return "—" if value is None else f"{value * scale:.{digits}g}"

    lines = ["| backend | device kind | devices | mesh (data x fsdp) | first step s (incl. compile) | compile s | "
             "graphs (after step 1 / total) | median step ms | window ms (min-max) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['backend']} | failed: {' '.join(r['error'])} |" + " |" * 7)
            continue
        graphs = "—" if r["graphs"] is None else f"{r['graphs_after_first_step']} / {r['graphs']}"
        lines.append(
            f"| {r['backend']} | {r['device_kind']} | {r['num_devices']} | {r['mesh']['data']} x {r['mesh']['fsdp']} "
            f"| {f(r['first_step_seconds'])} | {f(r['compile_seconds'])} | {graphs} "
            f"| {f(r['median_step_seconds'], 1e3)} | {f(min(r['window_step_seconds']), 1e3)}-"
            f"{f(max(r['window_step_seconds']), 1e3)} |")
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _CHILD.value:
        if _THREADS.value > 0:
            torch.set_num_threads(_THREADS.value)
        result = measure(_CHILD.value, warmup=_WARMUP.value, windows=_WINDOWS.value,
                         window_steps=_WINDOW_STEPS.value, batch=_BATCH.value)
        print("RESULT_JSON " + json.dumps(result))
        return
    if _WINDOWS.value < 1 or _WINDOW_STEPS.value < 1 or _WARMUP.value < 0:
        raise app.UsageError("--windows and --window_steps must be >= 1 and --warmup >= 0")
    names = available_backends() if _BACKENDS.value == "auto" else _BACKENDS.value.split(",")
    unknown = sorted(set(names) - set(BACKENDS))
    if unknown:
        raise app.UsageError(f"unknown backend(s) {unknown}; choose from {sorted(BACKENDS)} or 'auto'")
    results = [run_child(name) for name in names]
    text = table(results)
    print(text)
    print("RESULT_JSON " + json.dumps(results))
    if _MD_OUT.value:
        with open(_MD_OUT.value, "w") as fh:
            fh.write(f"# Runtime toy step per backend — {datetime.date.today().isoformat()}\n\n"
                     f"- Commit: {provenance.commit()}\n- Machine: {provenance.machine()}, torch {torch.__version__}\n"
                     f"- Command: `python benchmarks/runtime_toy.py {' '.join(sys.argv[1:])}`\n"
                     f"- 1-min load average at the end: {os.getloadavg()[0]:.1f}\n"
                     f"- Steps: 1 first step, {_WARMUP.value} warm-up, {_WINDOWS.value} windows x "
                     f"{_WINDOW_STEPS.value} steps, global batch {_BATCH.value}\n\n{text}\n")


if __name__ == "__main__":
    app.run(main)
