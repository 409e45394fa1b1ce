"""Typed, checked access to one decoded TOML table (pure: no I/O).

Every error names the key with its path (``channels[2].units``) and is built by the
caller's exception class, so each profile format keeps its own error type.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence


class TableReader:
    """Getters for one TOML table; ``make_error`` turns a message into the exception."""

    def __init__(
        self,
        make_error: Callable[[str], Exception],
        source: str,
        table: Mapping[str, object],
        path: str,
    ) -> None:
        self.make_error, self.source, self.table, self.path = make_error, source, table, path

    def error(self, key: str, problem: str) -> Exception:
        where = f"{self.path}.{key}" if self.path else key
        return self.make_error(f"{self.source}: key '{where}': {problem}")

    def check_keys(self, allowed: set[str]) -> None:
        for key in self.table:
            if key not in allowed:
                raise self.error(key, f"unknown key (allowed: {', '.join(sorted(allowed))})")

    def text(self, key: str, default: str | None = None, *, empty: bool = False) -> str:
        value = self.table.get(key, default)
        if not isinstance(value, str) or (not value and not empty):
            raise self.error(key, "missing or not a non-empty string")
        return value

    def choice(self, key: str, choices: Sequence[str], default: str | None = None) -> str:
        value = self.text(key, default)
        if value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}")
        return value

    def integer(self, key: str, low: int, high: int, default: int | None = None) -> int:
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, "missing or not an integer")
        if not low <= value <= high:
            raise self.error(key, f"must be in {low}..{high}")
        return value

    def number(self, key: str, default: float | None = None, *, positive: bool = False) -> float:
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, "missing or not a number")
        number = float(value)
        if not math.isfinite(number) or (positive and number <= 0):
            raise self.error(
                key, "must be a finite" + (" positive" if positive else "") + " number"
            )
        return number

    def optional_number(self, key: str) -> float | None:
        return None if key not in self.table else self.number(key)

    def flag(self, key: str, default: bool) -> bool:
        value = self.table.get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, "must be true or false")
        return value
