"""Entry point: `python -m rae_xla.main --config=configs/<experiment>.py[:arg] --workdir=<dir or gs://...>`.

The only file of the library that defines flags. It parses them, builds the runtime, validates the config,
writes `workdir/config.json` (process 0), and runs the job named by `config.job` (rae_xla.config.JOBS).
Overrides: `--config.train.global_batch_size=256`; an unknown key names its nearest valid neighbours.
"""
import importlib
import importlib.util
import sys

from absl import app, flags, logging
from etils import epath
from ml_collections import config_flags

from rae_xla import config as config_lib
from rae_xla.runtime import make_runtime

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment file in configs/, optionally ':arg'.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (local path or gs://bucket/path).")
flags.mark_flags_as_required(["config", "workdir"])


def _fail(message: str, kind: str = "config", code: int = 2) -> None:
    print(f"FATAL {kind} error: {message}", file=sys.stderr)
    sys.exit(code)


def _base_config(argv):
    """The config file's get_config(arg) without overrides (to explain a bad override)."""
    value = next(a.split("=", 1)[1] for a in argv if a.startswith("--config="))
    path, _, arg = value.partition(":")
    spec = importlib.util.spec_from_file_location("_rae_xla_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg or None)


def _parse_flags(argv):
    """absl flag parsing with one clear line for config mistakes instead of a traceback."""
    try:
        return flags.FLAGS(argv)
    except (config_lib.ConfigError, flags.Error) as e:
        _fail(str(e))
    except (AttributeError, KeyError) as e:
        base = _base_config(argv)
        for arg in argv:
            if arg.startswith("--config."):
                message = config_lib.unknown_key_message(base, arg[len("--config."):].split("=", 1)[0])
                if message:
                    _fail(message)
        _fail(f"could not apply the config overrides: {e}")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config, workdir = _CONFIG.value, _WORKDIR.value
    try:
        config_lib.validate(config)  # Static checks first: nothing is initialised yet.
        runtime = make_runtime(config.runtime)
        config_lib.validate(config, num_devices=runtime.num_devices, process_count=runtime.process_count)
    except config_lib.ConfigError as e:
        _fail(str(e))
    if runtime.is_main:
        epath.Path(workdir).mkdir(parents=True, exist_ok=True)
        (epath.Path(workdir) / "config.json").write_text(config_lib.to_json(config))
    else:
        logging.set_verbosity(logging.WARNING)  # One log per run, from process 0.
    try:
        importlib.import_module(config_lib.JOBS[config.job]).run(config, workdir, runtime)
    except config_lib.ConfigError as e:  # Found while building (e.g. model vs latent shape): still one line.
        _fail(str(e))
    except FloatingPointError as e:  # A diverged run: say where, and what was kept.
        _fail(str(e), kind="training", code=1)
    finally:
        runtime.close()


if __name__ == "__main__":
    app.run(main, flags_parser=_parse_flags)
