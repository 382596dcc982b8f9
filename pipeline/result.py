"""What every stage returns: a frozen dataclass that round-trips through its JSON file.

A stage writes ``<stage>.result.json`` in the run folder with ``to_json()``; a resumed run, the
report and the CLI read it back with ``from_json()`` and use its fields — never dict keys, so a
renamed field fails loudly instead of reading as 0. Keys a newer version added and an older file
lacks take the field's default; keys an older version wrote and this one dropped are ignored.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Protocol, Self


class JsonResult(Protocol):
    """What run.py needs of any stage's result."""

    def to_json(self) -> dict[str, Any]: ...


class StageResult:
    """Mixin for a stage's frozen result dataclass: to_json, from_json, read."""

    def to_json(self) -> dict[str, Any]:
        """The fields as JSON values: tuples become lists, as they read back from the file."""
        assert dataclasses.is_dataclass(self)
        plain: dict[str, Any] = _lists(dataclasses.asdict(self))
        return plain

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        assert dataclasses.is_dataclass(cls)
        known: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in data or not f.init:
                continue
            value = data[f.name]
            if isinstance(value, list) and str(f.type).startswith("tuple"):
                value = tuple(value)
            known[f.name] = value
        return cls(**known)

    @classmethod
    def read(cls, path: Path) -> Self | None:
        """The result in ``path``, or None when there is none (or it cannot be read)."""
        result: Self | None = read_result(cls, path)
        return result


def _lists(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_lists(v) for v in value]
    return value


def read_result(cls: Any, path: Path) -> Any:
    """``cls.from_json`` of the JSON object in ``path``; None when there is none, it does not
    parse, or it lacks a required field (then it is not that stage's result)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    try:
        return cls.from_json(data)
    except (TypeError, KeyError, ValueError):
        return None
