"""Typed access to one TOML table of a job file, and the values it converts (durations, paths).

Every key a reader asks for is marked as seen, so what is left over is an unknown key: an error that
names it, the file, and the keys that are known there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: str | float | int) -> float:
    """'90s', '15m', '2h', '1d', '250ms' or a number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a duration cannot be negative: {value!r}")
        return float(value)
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"not a duration: {value!r} (try '90s', '15m', '2h' or '1d')")
    return float(match.group(1)) * _UNITS[match.group(2)]


class Section:
    """Typed access to one TOML table; every key read is marked, the rest are unknown keys."""

    def __init__(self, data: Mapping[str, Any], prefix: str, path: Path) -> None:
        self._data = data
        self._prefix = prefix
        self._path = path
        self._seen: set[str] = set()

    def _key(self, name: str) -> str:
        return f"{self._prefix}.{name}" if self._prefix else name

    def where(self, name: str) -> str:
        """'gateway.token_env in jobs/nightly.toml', for messages that put the key first."""
        return f"{self._key(name)} in {self._path}"

    def error(self, name: str, message: str) -> ConfigError:
        return ConfigError(message, path=self._path, key=self._key(name))

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        self._seen.add(name)
        if name not in self._data:
            return default
        value = self._data[name]
        if isinstance(value, bool) and kind in (int, float, (int, float)):
            raise self.error(name, f"expected a number, got {value!r}")
        if not isinstance(value, kind):
            names = (
                kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            )
            raise self.error(name, f"expected {names}, got {type(value).__name__} {value!r}")
        return value

    def require(self, name: str, kind: type | tuple[type, ...]) -> Any:
        if name not in self._data:
            self._seen.add(name)
            raise self.error(name, "is required")
        return self.get(name, kind)

    def duration(self, name: str, default: float | None) -> float | None:
        raw = self.get(name, (str, int, float))
        if raw is None:
            return default
        try:
            return parse_duration(raw)
        except ValueError as exc:
            raise self.error(name, str(exc)) from None

    def pick(self, **spec: tuple[str, Any]) -> dict[str, Any]:
        """The given keys as dataclass field values: ``field=(key, kind)``; kind ``DURATION`` or
        ``PATH`` converts. Keys the file leaves out are left out, so defaults come from the
        dataclass fields alone (one definition per default)."""
        out: dict[str, Any] = {}
        for field_name, (key, kind) in spec.items():
            self._seen.add(key)
            if key not in self._data:
                continue
            if kind is DURATION:
                out[field_name] = self.duration(key, None)
            elif kind is PATH:
                out[field_name] = Path(self.get(key, str)).expanduser()
            else:
                out[field_name] = self.get(key, kind)
        return out

    def section(self, name: str) -> Section:
        raw = self.get(name, dict, {})
        return Section(raw, self._key(name), self._path)

    def sections(self, name: str) -> list[Section]:
        raw = self.get(name, list, [])
        out = []
        for i, item in enumerate(raw):
            if not isinstance(item, dict):
                raise self.error(name, f"entry {i + 1} must be a table")
            out.append(Section(item, f"{self._key(name)}[{i + 1}]", self._path))
        return out

    def check_unknown(self) -> None:
        unknown = sorted(set(self._data) - self._seen)
        if unknown:
            known = ", ".join(sorted(self._seen)) or "none"
            raise self.error(unknown[0], f"unknown key (known keys here: {known})")


DURATION = object()  # pick(): a duration like "90s", "5m" -> seconds
PATH = object()  # pick(): a path, ~ expanded
