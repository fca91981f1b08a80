"""Run by test_stage1.py under 4 virtual XLA devices: the stage-1 trainer twice in ONE process from the same flags as
`rae_xla.main` (--config=..., --config.<key>=...), into <workdir>/captured with the step capture (runtime.capture_step,
the default) and then into <workdir>/lazy with runtime.capture_step=False (every step re-traced).

One process instead of two: a graph the lazy run shares with the captured one comes from torch_xla's in-memory
compile cache, so the bitwise comparison costs the lazy run's steps rather than a second set of compiles (~2 min on
2 cores). The runtime reads `config.runtime` itself, so flipping capture_step between the runs switches it.
Prints one JSON line per run ({"run", "graphs", "replays"}: compiled graphs after the run, replayed calls per step
function), then OK.
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../.."))  # The repository (configs/, rae_xla/).
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from rae_xla import config as config_lib  # noqa: E402
from rae_xla.runtime import make_runtime  # noqa: E402
from rae_xla.train import stage1  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "As rae_xla.main's --config.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Parent of the two runs' workdirs.")


def main(argv):
    del argv
    config = _CONFIG.value
    runtime = make_runtime(config.runtime)
    config_lib.validate(config, num_devices=runtime.num_devices, process_count=runtime.process_count)
    replays = {}
    real_build = stage1.build_training

    def build_training(*args, **kwargs):  # Keeps the step functions to count their replays afterwards.
        training = real_build(*args, **kwargs)
        replays["fns"] = training.step_fns
        return training

    stage1.build_training = build_training
    try:
        for name, capture in (("captured", True), ("lazy", False)):
            config.runtime.capture_step = capture  # The runtime's own config object (compile_step reads it).
            stage1.run(config, os.path.join(_WORKDIR.value, name), runtime)
            counts = {str(key): getattr(fn, "replays", 0) for key, fn in replays["fns"].items()}
            print(json.dumps({"run": name, "graphs": runtime.compile_stats()["graphs"], "replays": counts}),
                  flush=True)
    finally:
        runtime.close()
    print("OK")


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main)
