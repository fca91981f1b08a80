"""The checks every block validator shares: one value among choices, a path field, the batch split over devices,
and the placeholder bucket. Each failure is one `ConfigError` naming the field and the fix."""
from __future__ import annotations

import dataclasses
import difflib
import os
from typing import Any, Iterable

from rae_xla.config.keys import all_keys, get_field
from rae_xla.errors import ConfigError

# Where the released artefacts (HF repo nyu-visionx/RAE-collections) and ImageNet live. Users replace the
# placeholder bucket on the command line; validate() refuses to start while it is still there.
PLACEHOLDER = "YOUR_BUCKET"


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def one_of(value: Any, choices: Iterable[Any], field: str) -> None:
    """`field`=value must be one of `choices`; the message suggests the nearest choice (a typo, usually)."""
    choices = tuple(choices)
    if value not in choices:
        near = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ConfigError(f"{field}={value!r} is not one of {list(choices)}{hint}")


def is_remote(path: str) -> bool:
    """gs:// and hf:// paths are checked when loaded (a malformed hf:// URL is an error now)."""
    if path.startswith("hf://"):
        from rae_xla import hub  # Deferred: only configs with hf:// paths need it.
        try:
            hub.parse(path)
        except ValueError as e:
            raise ConfigError(str(e)) from e
        return True
    return path.startswith("gs://")


def check_path(field: str, path: str, expected: str, *, only_suffix: str = "") -> None:
    """A path field: '' (unset) passes, gs:// and hf:// are checked when loaded, a local path must exist.

    `expected` says what to give instead, e.g. "stage2_model.pt, or ''". With `only_suffix` (e.g. '.pt') only
    paths ending in it are files; the others are folders (a training workdir) that their loader checks.
    """
    if not path or (only_suffix and not path.endswith(only_suffix)) or is_remote(path):
        return
    if not os.path.exists(os.path.expanduser(path)):
        raise ConfigError(f"{field}={path!r} does not exist; give a local, gs:// or hf:// {expected}")


@dataclasses.dataclass(frozen=True)
class Placement:
    """How a global batch is split: the resolved mesh (None before the backend starts) and the process count."""

    mesh: dict[str, int] | None
    process_count: int

    def batch_shards(self) -> int:
        """Devices (mesh data x fsdp) or processes, whichever splits the batch finer."""
        if self.mesh is None:
            return self.process_count
        return max(self.process_count, self.mesh["data"] * self.mesh["fsdp"])

    def check_eval_batch(self, batch: int, field: str) -> None:
        shards = self.batch_shards()
        require(batch >= 1 and batch % shards == 0,
                f"{field}={batch} must be a positive multiple of the {shards} batch shards (devices or processes)")


def check_no_placeholder(config: Any) -> None:
    """No string field may still name the placeholder bucket of the released configs."""
    for key in all_keys(config):
        value = get_field(config, key)
        if isinstance(value, str) and PLACEHOLDER in value:
            raise ConfigError(f"{key}={value!r} still names the placeholder bucket; point it at your copy, e.g. "
                              f"--config.{key}=gs://my-bucket/... (README: 'Data and released checkpoints')")
