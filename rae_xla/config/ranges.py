"""Range tables: the values each numeric config field accepts, declared next to its block's factory and checked
by `check_ranges` (issue 24). A table maps a field's dotted name inside its block to a `Range`, e.g.

    RANGES = {"global_batch_size": COUNT, "lr_schedule.base_lr": POSITIVE, "optimizer.betas": between(0, 1, ...)}

A tuple field (train.optimizer.betas, model.depth) has every element checked; None (an unset placeholder such
as flow.shift) passes; bools and strings are not numbers here (their types are checked where they are read).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterator, Mapping

import ml_collections

from rae_xla.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Range:
    """An interval of accepted values, plus special values outside it with a meaning of their own."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # True: `low` itself is refused (> low).
    high_open: bool = False  # True: `high` itself is refused (< high).
    special: tuple = ()  # e.g. (-1,) for "-1 = the remaining devices / all images".
    note: str = ""  # What the edge values mean, appended to the message, e.g. "0 = no previews".

    def contains(self, value: float) -> bool:
        if value in self.special:
            return True
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            return False
        return True

    def describe(self) -> str:
        """e.g. '> 0', '>= 1 or -1', 'in [0, 1)', 'a finite number'."""
        if self.low is not None and self.high is not None:
            text = (f"in {'(' if self.low_open else '['}{_number(self.low)}, "
                    f"{_number(self.high)}{')' if self.high_open else ']'}")
        elif self.low is not None:
            text = f"{'>' if self.low_open else '>='} {_number(self.low)}"
        elif self.high is not None:
            text = f"{'<' if self.high_open else '<='} {_number(self.high)}"
        else:
            text = "a finite number"
        return " or ".join([text, *(_number(s) for s in self.special)])


def at_least(low: float, *, special: tuple = (), note: str = "") -> Range:
    return Range(low=low, special=special, note=note)


def above(low: float, *, note: str = "") -> Range:
    return Range(low=low, low_open=True, note=note)


def between(low: float, high: float, *, high_open: bool = False, note: str = "") -> Range:
    return Range(low=low, high=high, high_open=high_open, note=note)


# The ranges most fields share.
COUNT = at_least(1)  # sizes, batch sizes, counts of images, steps between logs
NON_NEGATIVE = at_least(0)  # weights, epochs, noise levels, phase starts
POSITIVE = above(0)  # learning rates, epsilons, ratios
PROBABILITY = between(0, 1)
ANY_NUMBER = Range()  # every finite value means something (e.g. a logit-normal mean)


def _number(x: float) -> str:
    return repr(x) if isinstance(x, int) else f"{x:g}"


def _lookup(block: Any, dotted: str) -> Any:
    node = block
    for part in dotted.split("."):
        if not isinstance(node, (ml_collections.ConfigDict, Mapping)) or part not in node:
            return None
        node = node[part]
    return node


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_ranges(block: Any, prefix: str, table: Mapping[str, Range]) -> None:
    """Raises ConfigError for the first field of `block` (named `prefix`.field) outside its range in `table`.

    A field the block does not have, or that is None (unset), is skipped; non-numbers are left to the type checks.
    """
    for field, accepted in table.items():
        value = _lookup(block, field)
        elements = enumerate(value) if isinstance(value, (tuple, list)) else [(None, value)]
        for index, element in elements:
            if not _is_number(element) or accepted.contains(element):
                continue
            name = f"{prefix}.{field}" + ("" if index is None else f"[{index}]")
            note = f" ({accepted.note})" if accepted.note else ""
            raise ConfigError(f"{name}={element!r} must be {accepted.describe()}{note}")


def numeric_leaves(block: ml_collections.ConfigDict, prefix: str = "") -> Iterator[str]:
    """Dotted names of the int/float fields of `block` (tuples of numbers included), for completeness tests."""
    for key, value in block.items():
        if isinstance(value, ml_collections.ConfigDict):
            yield from numeric_leaves(value, f"{prefix}{key}.")
        elif _is_number(value) or (isinstance(value, (tuple, list)) and value and all(map(_is_number, value))):
            yield f"{prefix}{key}"


def nested(prefix: str, table: Mapping[str, Range]) -> dict[str, Range]:
    """`table` for a sub-dict of a block, e.g. nested('lr_schedule', LR_SCHEDULE_RANGES)."""
    return {f"{prefix}.{field}": accepted for field, accepted in table.items()}
