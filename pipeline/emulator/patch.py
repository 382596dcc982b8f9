"""PATCH body validation: what the API accepts, and a 400 saying exactly what is wrong otherwise.

All fields are optional; unknown fields are ignored, as Cloudflare ignores them. ``feedback`` is a number in [-1, 1] or null, ``score`` a number in
[0, 100] or null, ``metadata`` a flat map of string -> string | number | boolean (at most 5 entries,
like request-time metadata) or null. Metadata REPLACES the stored map — the reference's assumption,
since Cloudflare does not document merge vs replace.
"""

from __future__ import annotations

import json
import math
from typing import Any

ALLOWED_FIELDS = ("feedback", "score", "metadata")
MAX_METADATA_ENTRIES = 5


class PatchError(ValueError):
    """The body cannot be applied; the message is the 400's message."""


def parse_patch(body: bytes) -> dict[str, Any]:
    """The request body -> column changes (metadata as JSON text or None). Raises PatchError."""
    if not body.strip():
        raise PatchError('request body is empty; send a JSON object such as {"feedback": 1}')
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PatchError(f"request body is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise PatchError("request body must be a JSON object with feedback, score or metadata")
    changes: dict[str, Any] = {}
    if "feedback" in data:
        changes["feedback"] = _number_or_null("feedback", data["feedback"], -1, 1)
    if "score" in data:
        changes["score"] = _number_or_null("score", data["score"], 0, 100)
    if "metadata" in data:
        changes["metadata"] = _metadata(data["metadata"])
    return changes


def _number_or_null(name: str, value: Any, low: float, high: float) -> int | float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PatchError(f"{name} must be a number between {low} and {high} or null, got {value!r}")
    if not low <= value <= high:
        raise PatchError(f"{name} must be between {low} and {high}, got {value!r}")
    return value


def _metadata(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise PatchError(
            f"metadata must be an object of string keys to scalar values or null, "
            f"got {type(value).__name__}"
        )
    if len(value) > MAX_METADATA_ENTRIES:
        raise PatchError(
            f"metadata has {len(value)} entries; at most {MAX_METADATA_ENTRIES} are allowed"
        )
    for key, item in value.items():
        if item is None or isinstance(item, dict | list):
            raise PatchError(
                f"metadata[{key!r}] must be a string, number or boolean, got {json.dumps(item)}"
            )
        if isinstance(item, float) and not math.isfinite(item):
            raise PatchError(f"metadata[{key!r}] must be a finite number")
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
