"""Run by test_stage1.py under 4 virtual XLA devices: stage 1's AdamW moments (made at build time) have their
parameter's sharding before and after a step; then the step capture (runtime/xla_capture.py) refuses the
reconstruction step when its state() misses the EMA it updates, and when it runs without its prepare hooks (the
optimizer then bakes the per-step LR and bias corrections into the graph as Python numbers). Prints one JSON line
per check, then OK."""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../.."))  # The repository (configs/, rae_xla/).
import torch_xla  # noqa: E402

from configs import quickstart  # noqa: E402
from rae_xla.runtime import make_runtime  # noqa: E402
from rae_xla.runtime.xla_capture import CaptureError, CapturedStep  # noqa: E402
from rae_xla.train import loop, stage1  # noqa: E402
from rae_xla.train import stage1_step as step_lib  # noqa: E402


def spec(t: torch.Tensor) -> str:
    """The tensor's sharding; '' for replicated (no annotation and an explicit '{replicated}' mean the same)."""
    text = torch_xla._XLAC._get_xla_sharding_spec(t)
    return "" if text == "{replicated}" else text


def layouts(training) -> list[tuple[str, str, str]]:
    """(param spec, exp_avg spec, exp_avg_sq spec) for every parameter of both optimizers."""
    return [(spec(p), spec(s["exp_avg"]), spec(s["exp_avg_sq"]))
            for opt in (training.optimizer, training.disc_optimizer) for p, s in opt.state.items()]


def report(name: str, rows: list[tuple[str, str, str]]) -> None:
    print(json.dumps({"check": name, "tensors": len(rows), "sharded": sum(1 for p, _, _ in rows if p),
                      "mismatched": [r for r in rows if not r[0] == r[1] == r[2]][:3]}), flush=True)


def main():
    config = quickstart.get_config("part=stage1,batch=8")
    config.runtime.backend = "xla"
    config.stage1.perceptual_weight = 0.0  # No VGG: a smaller graph; the optimizer state is the point.
    runtime = make_runtime(config.runtime)
    training = stage1.build_training(config, runtime, 100)
    report("built", layouts(training))
    b, size = config.train.global_batch_size, config.data.image_size
    images = torch.randint(0, 256, (b, size, size, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    batch = next(iter(runtime.device_batches([{"image": images}])))
    sums = loop.zero_scalars(step_lib.SUM_KEYS, runtime.device)
    captured = training.step_fns[(False, step_lib.RECON)]
    assert isinstance(captured, CapturedStep), type(captured)  # runtime.capture_step is on by default.
    for step in range(2):
        runtime.seed(step)
        sums = captured(batch, sums)
    runtime.wait()
    report("after_steps", layouts(training))

    ema = {id(t) for t in training.ema_decoder.parameters()}
    misuses = {  # The trainer's step function, captured wrongly; in this order (see below).
        "undeclared_update": CapturedStep(captured.fn, state=lambda: [t for t in captured.state() if id(t) not in ema],
                                          name="no_ema", prepare=captured.prepare),
        "python_number": CapturedStep(captured.fn, state=captured.state, name="no_hooks")}
    for name, step_fn in misuses.items():
        error = ""
        try:
            for step in range(4):  # Lazy call, then traces: refused by the second trace at the latest.
                loop.set_lr(training.optimizer, 1e-3 * (step + 1))  # A warm-up: the LR changes every step.
                sums = step_fn(batch, sums)
        except CaptureError as e:
            error = str(e)
        print(json.dumps({"check": name, "error": error, "ema_tensors": len(ema)}), flush=True)
        # The first refusal comes after its trace: run that IR as a lazy step. The second comes after the capture
        # dropped the trace's IR, leaving the state tensors without values (a refusal ends a run): last, no sync.
        if name == "undeclared_update":
            torch_xla.sync()
    print("OK")


if __name__ == "__main__":
    main()
