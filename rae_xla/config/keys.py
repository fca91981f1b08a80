"""The config's dotted keys: listing them, explaining an unknown `--config.<key>` override, and the resolved
config as JSON (workdir/config.json)."""
from __future__ import annotations

import difflib
import json
from typing import Any

import ml_collections


def get_field(config: ml_collections.ConfigDict, dotted: str) -> Any:
    """The value at a dotted key, e.g. get_field(config, 'train.lr_schedule.base_lr')."""
    node: Any = config
    for part in dotted.split("."):
        node = node[part]
    return node


def all_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    """Every dotted key of `config` (leaves and blocks), e.g. ['train', 'train.global_batch_size', ...]."""
    keys = []
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        keys.append(dotted)
        if isinstance(value, ml_collections.ConfigDict):
            keys.extend(all_keys(value, dotted + "."))
    return keys


def unknown_key_message(config: ml_collections.ConfigDict, dotted: str) -> str | None:
    """For `--config.<dotted>=...`: None if the key exists, else an error naming its nearest valid neighbours."""
    node: Any = config
    parts = dotted.split(".")
    for depth, part in enumerate(parts):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            prefix = ".".join(parts[:depth])
            siblings = list(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
            near = difflib.get_close_matches(part, siblings, n=3, cutoff=0.5)
            near_full = difflib.get_close_matches(dotted, all_keys(config), n=3, cutoff=0.6)
            suggestions = [f"{prefix}.{n}" if prefix else n for n in near] or near_full
            where = f"config.{prefix}" if prefix else "the config"
            msg = f"unknown config key 'config.{dotted}': {where} has no field {part!r}."
            if suggestions:
                msg += " Nearest valid keys: " + ", ".join(f"config.{s}" for s in suggestions) + "."
            return msg
        node = node[part]
    return None


def to_json(config: ml_collections.ConfigDict) -> str:
    """The resolved config as indented JSON (tuples become lists)."""
    return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str)
