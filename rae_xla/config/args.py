"""Argument parsing for `--config=configs/x.py:res=512,runlocal`: the string after ':' -> typed options."""
from __future__ import annotations

from typing import Any

import ml_collections

from rae_xla.errors import ConfigError


def parse_arg(arg: str | None, **spec: Any) -> ml_collections.ConfigDict:
    """Parses the string after ':' in `--config=file.py:ARG` into the typed fields of `spec`.

    `ARG` is a comma-separated list of `key=value`; a bare `key` means True. Values are converted to the type of
    the default in `spec` (bool accepts true/false/1/0). Unknown keys are an error listing the valid ones.
    Example: `parse_arg('res=512,runlocal', res=256, runlocal=False)` -> {res: 512, runlocal: True}.
    """
    out = ml_collections.ConfigDict(dict(spec))
    if not arg:
        return out
    for item in arg.split(","):
        key, has_value, raw = item.partition("=")
        key = key.strip()
        if key not in spec:
            raise ConfigError(f"unknown config argument {key!r} in ':{arg}'; valid arguments: {sorted(spec)}")
        default = spec[key]
        if not has_value:
            if not isinstance(default, bool):
                raise ConfigError(f"config argument {key!r} needs a value, e.g. ':{key}={default}'")
            out[key] = True
        elif isinstance(default, bool):
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ConfigError(f"config argument {key}={raw!r} must be true or false")
            out[key] = raw.lower() in ("true", "1")
        else:
            try:
                out[key] = type(default)(raw)
            except ValueError as e:
                raise ConfigError(f"config argument {key}={raw!r} must be a {type(default).__name__}") from e
    return out
