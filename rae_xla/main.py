"""Entry point: `python -m rae_xla.main --config=configs/<experiment>.py[:arg] --workdir=<dir or gs://...>`.

The only file of the library that defines flags. It parses them, builds the runtime, validates the config,
writes `workdir/config.json` (process 0), and runs the job named by `config.job` (rae_xla.config.JOBS).
Overrides: `--config.train.global_batch_size=256`; an unknown key names its nearest valid neighbours.
`--preflight [--plan_for=v5p-64]` runs rae_xla/preflight instead of the job: the plan and every input checked,
all problems listed, exit 2 if any (no weights loaded, no accelerator runtime started).

The error boundary of every job is here: a `rae_xla.errors.UserError` (config files and their arguments, paths,
files that are not what a field expects, the workdir, damaged checkpoints) ends the process with exit code 2
and one line `FATAL <kind> error: ...` on stderr; `--traceback` shows the traceback too. Other exceptions are
bugs and keep their traceback.
"""
import importlib
import importlib.util
import os
import sys
import traceback

from absl import app, flags, logging
from etils import epath
from ml_collections import config_flags

from rae_xla import config as config_lib
from rae_xla import errors
from rae_xla.runtime import make_runtime

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment file in configs/, optionally ':arg'.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (local path or gs://bucket/path).")
_PREFLIGHT = flags.DEFINE_bool("preflight", False, "Print the job's plan (devices, mesh, batches, parameters, FLOPs, "
                                "bytes per device, checkpoints) and check every input and the workdir, without "
                                "loading weights or starting the accelerator; exit 2 listing every problem.")
_PLAN_FOR = flags.DEFINE_string("plan_for", "", "With --preflight: plan for these devices instead of this machine's: "
                                "a TPU slice (v5p-64, 2xv5p-64, v6e-256), gpu:N or cpu[:N].")
_TRACEBACK = flags.DEFINE_bool("traceback", False, "Also print the Python traceback of input errors (which are "
                                                   "otherwise one FATAL line).")
flags.mark_flags_as_required(["config", "workdir"])
_TRACEBACK_FLAG = "--traceback"  # Read from argv too: input errors can happen before the flags are parsed.


def _fail(error: errors.UserError, code: int = 2) -> None:
    if _TRACEBACK_FLAG in sys.argv:
        traceback.print_exception(error)
    print(errors.fatal_line(error), file=sys.stderr)
    sys.exit(code)


def _config_flag(argv) -> str:
    return next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), "")


def _base_config(argv):
    """The config file's get_config(arg) without overrides: checks the file and its argument, explains overrides."""
    return load_config_file(_config_flag(argv))


def load_config_file(value: str):
    """`configs/x.py:arg` -> its get_config(arg); a missing file or a bad argument is one UserError."""
    path, _, arg = value.partition(":")
    if not os.path.isfile(path):
        raise errors.InputPathError(
            f"config file {path!r} (--config={value}) {'is a folder' if os.path.isdir(path) else 'does not exist'}; "
            f"give an experiment file, e.g. --config=configs/quickstart.py (see configs/)")
    spec = importlib.util.spec_from_file_location("_rae_xla_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # A Python error in the file keeps its traceback: it points at the line.
    try:
        return module.get_config(arg or None)
    except config_lib.ConfigError as e:
        raise config_lib.ConfigError(f"--config={value}: {e}") from e


def _parse_flags(argv):
    """absl flag parsing with one clear line for config mistakes instead of a traceback."""
    base = None
    try:
        base = _base_config(argv) if _config_flag(argv) else None
        return flags.FLAGS(argv)
    except errors.UserError as e:
        _fail(e)
    except flags.Error as e:
        _fail(config_lib.ConfigError(str(e)))
    except (AttributeError, KeyError) as e:
        for arg in argv:
            if base is not None and arg.startswith("--config."):
                message = config_lib.unknown_key_message(base, arg[len("--config."):].split("=", 1)[0])
                if message:
                    _fail(config_lib.ConfigError(message))
        _fail(config_lib.ConfigError(f"could not apply the config overrides: {e}"))


def _prepare_workdir(workdir: str) -> None:
    """Creates `workdir` and writes into it now, so a bad one fails in one line before anything is built."""
    path = epath.Path(workdir)
    try:
        if path.exists() and not path.is_dir():
            raise errors.WorkdirError(f"--workdir={workdir} is an existing file, not a folder; give a new or "
                                      "existing folder (local or gs://bucket/path)")
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write_check"
        probe.write_text("")
        probe.unlink()
    except errors.WorkdirError:
        raise
    except OSError as e:  # PermissionError, a read-only mount, a file where a parent folder should be, ...
        raise errors.WorkdirError(f"cannot create or write --workdir={workdir} ({type(e).__name__}: {e}); give a "
                                  "folder you can write to") from e


def run(config, workdir: str) -> None:
    """validate -> runtime -> workdir -> the job of `config.job`; UserError for bad input (see `main`)."""
    runtime = None
    try:
        config_lib.validate(config)  # Static checks first: nothing is initialised yet.
        runtime = make_runtime(config.runtime)
        config_lib.validate(config, num_devices=runtime.num_devices, process_count=runtime.process_count)
        if runtime.is_main:
            _prepare_workdir(workdir)
            (epath.Path(workdir) / "config.json").write_text(config_lib.to_json(config))
        else:
            logging.set_verbosity(logging.WARNING)  # One log per run, from process 0.
        importlib.import_module(config_lib.JOBS[config.job]).run(config, workdir, runtime)
    finally:
        if runtime is not None:
            runtime.close()


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config, workdir = _CONFIG.value, _WORKDIR.value
    try:
        if _PREFLIGHT.value:
            from rae_xla import preflight
            sys.exit(2 if preflight.run(config, workdir, plan_for=_PLAN_FOR.value) else 0)
        run(config, workdir)
    except errors.UserError as e:  # Found while building or running (a wrong file, no intact checkpoint): one line.
        _fail(e)
    except FloatingPointError as e:  # A diverged run: say where, and what was kept.
        print(f"FATAL training error: {e}", file=sys.stderr)
        sys.exit(1)
    except Exception as e:  # noqa: BLE001  A network or storage failure outside a wrapped read: still one line.
        cause = errors.network_cause(e)
        if cause is None:
            raise
        _fail(errors.InputPathError(f"a remote read or write failed: {cause}. Check the network and the gs:// / "
                                    "hf:// paths of the config (--traceback shows where)."))


if __name__ == "__main__":
    app.run(main, flags_parser=_parse_flags)
