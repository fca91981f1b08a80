"""Runs shipped configs' real jobs in one process (one import of torch & co. for all of them), through
`rae_xla.main.run` (validate -> runtime -> workdir -> job), and writes each run's outcome as JSON.

  python tests/release_smoke_script.py SPEC.json RESULT.json

SPEC: a list of {"name", "config" ("configs/x.py[:arg]"), "overrides" ({"a.b": value}), "workdir"}.
RESULT: {name: {"ok": bool, "error": the FATAL line or traceback text, "seconds": wall time}}. The environment (HF cache, TORCH_HOME)
comes from the caller (tests/release_env.py).
"""
import json
import sys
import time
import traceback

from rae_xla import errors
from rae_xla import main as main_lib


def _typed(value):
    return tuple(_typed(v) for v in value) if isinstance(value, list) else value


def run_one(spec: dict) -> dict:
    try:
        config = main_lib.load_config_file(spec["config"])
        config.update_from_flattened_dict({k: _typed(v) for k, v in spec["overrides"].items()})
        main_lib.run(config, spec["workdir"])
        return {"ok": True, "error": ""}
    except errors.UserError as e:
        return {"ok": False, "error": errors.fatal_line(e)}
    except Exception:  # noqa: BLE001  Reported to the test, which names the config.
        return {"ok": False, "error": traceback.format_exc()[-4000:]}


def main(spec_path: str, result_path: str) -> None:
    with open(spec_path) as f:
        specs = json.load(f)
    results = {}
    for spec in specs:
        start = time.perf_counter()
        results[spec["name"]] = dict(run_one(spec), seconds=round(time.perf_counter() - start, 1))
        print(f"release smoke {spec['name']}: {'ok' if results[spec['name']]['ok'] else 'FAILED'} "
              f"({results[spec['name']]['seconds']} s)", flush=True)
        with open(result_path, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:])
