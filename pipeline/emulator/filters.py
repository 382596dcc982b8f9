"""List and delete query parameters -> validated SQL fragments, as the Logs API reads them.

``filters`` is ONE query parameter holding a JSON array of ``{"key", "operator", "value": [...]}``.
Several values in one filter are OR-ed (``neq`` matches rows equal to none of them), several filters
are AND-ed. Keys and operators outside the reference's lists, bad JSON or values of the wrong type are
a 400 with a message naming what is wrong. Dotted forms such as ``filters.key=...`` (what the
official SDKs send) are not the ``filters`` parameter, so they are ignored and the result is
unfiltered — exactly the real API's surprising behaviour. The deprecated flat parameters
(``start_date``, ``min_cost``, ``feedback``…) still work, as the docs say they do.

Everything here is pure: it produces ``(sql, params)`` for ``store.py`` and never touches the
database, so it is cheap to test exhaustively.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.emulator.timefmt import iso_to_ms

MAX_PER_PAGE = 50
DEFAULT_PER_PAGE = 20
MAX_DELETE_LIMIT = 10_000
OPERATORS = ("eq", "neq", "contains", "lt", "gt")
LIST_ORDER_COLUMNS = ("created_at", "provider", "model", "model_type", "success", "cached")
DELETE_ORDER_COLUMNS = (
    *LIST_ORDER_COLUMNS,
    "cost",
    "tokens_in",
    "tokens_out",
    "duration",
    "feedback",
)
_TOKENS_SQL = "(COALESCE(tokens_in, 0) + COALESCE(tokens_out, 0))"

# key -> (SQL column or expression, value kind)
FILTER_KEYS: dict[str, tuple[str, str]] = {
    "id": ("id", "text"),
    "created_at": ("created_at_ms", "time"),
    "request_content_type": ("request_content_type", "text"),
    "response_content_type": ("response_content_type", "text"),
    "request_type": ("request_type", "text"),
    "success": ("success", "bool"),
    "cached": ("cached", "bool"),
    "provider": ("provider", "text"),
    "model": ("model", "text"),
    "model_type": ("model_type", "text"),
    "cost": ("cost", "number"),
    "tokens": (_TOKENS_SQL, "number"),
    "tokens_in": ("tokens_in", "number"),
    "tokens_out": ("tokens_out", "number"),
    "duration": ("duration", "number"),
    "feedback": ("feedback", "number"),
    "event_id": ("event_id", "text"),
    "metadata.key": ("key", "meta"),
    "metadata.value": ("value", "meta"),
    "authentication": ("authentication", "bool"),
    "wholesale": ("wholesale", "bool"),
    "compatibilityMode": ("compatibility_mode", "bool"),
    "dlp_action": ("dlp_action", "text"),
    "user_agent": ("user_agent", "text"),
}
_ALLOWED_OPERATORS = {
    "text": OPERATORS,
    "time": OPERATORS,
    "meta": OPERATORS,
    "number": ("eq", "neq", "lt", "gt"),
    "bool": ("eq", "neq"),
}
_ORDER_SQL = {
    "created_at": "created_at_ms",
    "provider": "provider",
    "model": "model",
    "model_type": "model_type",
    "success": "success",
    "cached": "cached",
    "cost": "cost",
    "tokens_in": "tokens_in",
    "tokens_out": "tokens_out",
    "duration": "duration",
    "feedback": "feedback",
}


class QueryError(ValueError):
    """A query parameter or filter the API would answer with 400; the message says which."""


@dataclass(frozen=True)
class Where:
    """A SQL condition over the ``logs`` table (without the gateway clause) and its parameters."""

    sql: str = ""
    params: tuple[Any, ...] = ()

    def and_(self, other: Where) -> Where:
        if not other.sql:
            return self
        if not self.sql:
            return other
        return Where(f"{self.sql} AND {other.sql}", self.params + other.params)


@dataclass(frozen=True)
class ListQuery:
    page: int
    per_page: int
    where: Where
    order_sql: str
    meta_info: bool


@dataclass(frozen=True)
class DeleteQuery:
    where: Where
    order_sql: str
    limit: int


def parse_list_query(params: Mapping[str, str]) -> ListQuery:
    """Validate a list request's query parameters; raises QueryError for a 400."""
    page = _int_param(params, "page", 1, low=1)
    per_page = _int_param(params, "per_page", DEFAULT_PER_PAGE, low=1, high=MAX_PER_PAGE)
    direction = params.get("order_by_direction") or params.get("direction") or "desc"
    order_sql = _order_sql(params.get("order_by") or "created_at", direction, LIST_ORDER_COLUMNS)
    where = parse_filters(params.get("filters"))
    where = where.and_(_deprecated_params(params))
    search = params.get("search")
    if search:
        where = where.and_(Where("metadata LIKE ? ESCAPE '\\'", (f"%{_like_escape(search)}%",)))
    return ListQuery(page, per_page, where, order_sql, _bool_param(params, "meta_info"))


def parse_delete_query(params: Mapping[str, str]) -> DeleteQuery:
    """Validate a DELETE request's query parameters; raises QueryError for a 400."""
    limit = _int_param(params, "limit", MAX_DELETE_LIMIT, low=1, high=MAX_DELETE_LIMIT)
    direction = params.get("order_by_direction") or "asc"
    order_sql = _order_sql(params.get("order_by") or "created_at", direction, DELETE_ORDER_COLUMNS)
    return DeleteQuery(parse_filters(params.get("filters")), order_sql, limit)


def parse_filters(raw: str | None) -> Where:
    """The ``filters`` parameter (a JSON array) -> one AND-ed condition."""
    if raw is None or raw.strip() == "":
        return Where()
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise QueryError(f"filters: not valid JSON ({exc.msg} at position {exc.pos})") from exc
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise QueryError("filters: expected a JSON array of {key, operator, value} objects")
    where = Where()
    for index, item in enumerate(data):
        where = where.and_(_one_filter(index, item))
    return where


def _one_filter(index: int, item: Any) -> Where:
    at = f"filters[{index}]"
    if not isinstance(item, dict):
        raise QueryError(f"{at}: expected an object with key, operator and value")
    missing = [name for name in ("key", "operator", "value") if name not in item]
    if missing:
        raise QueryError(f"{at}: missing {', '.join(missing)}")
    key, operator, values = item["key"], item["operator"], item["value"]
    if key not in FILTER_KEYS:
        raise QueryError(
            f"{at}.key: {key!r} is not a filter key; expected one of {', '.join(FILTER_KEYS)}"
        )
    column, kind = FILTER_KEYS[key]
    if operator not in OPERATORS:
        raise QueryError(
            f"{at}.operator: {operator!r} is not an operator; expected one of {', '.join(OPERATORS)}"
        )
    if operator not in _ALLOWED_OPERATORS[kind]:
        raise QueryError(f"{at}.operator: {operator!r} cannot be used with key {key!r}")
    if not isinstance(values, list) or not values:
        raise QueryError(f"{at}.value: expected a non-empty array of values")
    if kind == "meta":
        return _meta_condition(at, column, operator, values)
    if operator == "contains":
        text_column = "created_at" if kind == "time" else column
        return _contains(at, text_column, values)
    convert = _CONVERTERS[kind]
    converted = [None if v is None else convert(f"{at}.value", v) for v in values]
    return _compare(column, operator, converted)


def _compare(column: str, operator: str, values: list[Any]) -> Where:
    present = [v for v in values if v is not None]
    has_null = len(present) < len(values)
    if operator in ("eq", "neq"):
        parts = []
        if present:
            marks = ", ".join("?" * len(present))
            parts.append(f"{column} IN ({marks})")
        if has_null:
            parts.append(f"{column} IS NULL")
        matched = " OR ".join(parts)
        if operator == "eq":
            return Where(f"({matched})", tuple(present))
        if has_null:
            return Where(f"NOT ({matched})", tuple(present))
        return Where(f"({column} IS NULL OR NOT ({matched}))", tuple(present))
    if not present:
        raise QueryError(f"operator {operator!r} needs a value that is not null")
    symbol = "<" if operator == "lt" else ">"
    sql = " OR ".join(f"{column} {symbol} ?" for _ in present)
    return Where(f"({sql})", tuple(present))


def _contains(at: str, column: str, values: list[Any]) -> Where:
    patterns = []
    for value in values:
        if value is None or isinstance(value, bool | dict | list):
            raise QueryError(f"{at}.value: contains needs strings, got {value!r}")
        patterns.append(f"%{_like_escape(str(value))}%")
    sql = " OR ".join(f"{column} LIKE ? ESCAPE '\\'" for _ in patterns)
    return Where(f"({sql})", tuple(patterns))


def _meta_condition(at: str, part: str, operator: str, values: list[Any]) -> Where:
    """``metadata.key`` / ``metadata.value`` match inside the stored JSON map."""
    if part == "key":
        atom = "m.key"
    else:
        atom = (
            "(CASE m.type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' "
            "ELSE CAST(m.value AS TEXT) END)"
        )
    conditions: list[str] = []
    params: list[Any] = []
    for value in values:
        if value is None or isinstance(value, dict | list):
            raise QueryError(f"{at}.value: expected strings, numbers or booleans, got {value!r}")
        if operator == "contains":
            conditions.append(f"{atom} LIKE ? ESCAPE '\\'")
            params.append(f"%{_like_escape(_meta_text(value))}%")
        elif operator in ("lt", "gt"):
            symbol = "<" if operator == "lt" else ">"
            if isinstance(value, int | float) and not isinstance(value, bool) and part == "value":
                conditions.append(f"(m.type IN ('integer', 'real') AND m.value {symbol} ?)")
                params.append(value)
            else:
                conditions.append(f"{atom} {symbol} ?")
                params.append(_meta_text(value))
        else:
            conditions.append(f"{atom} = ?")
            params.append(_meta_text(value))
    exists = f"EXISTS (SELECT 1 FROM json_each(logs.metadata) AS m WHERE {' OR '.join(conditions)})"
    if operator == "neq":
        return Where(f"NOT {exists}", tuple(params))
    return Where(exists, tuple(params))


def _meta_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _to_text(at: str, value: Any) -> str:
    if isinstance(value, bool | dict | list):
        raise QueryError(f"{at}: expected a string, got {value!r}")
    return str(value)


def _to_number(at: str, value: Any) -> float:
    if isinstance(value, bool):
        raise QueryError(f"{at}: expected a number, got {value!r}")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise QueryError(f"{at}: expected a number, got {value!r}") from None
    else:
        raise QueryError(f"{at}: expected a number, got {value!r}")
    if not math.isfinite(number):
        raise QueryError(f"{at}: expected a finite number, got {value!r}")
    return number


def _to_bool(at: str, value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if value in (0, 1):
        return int(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return int(value.lower() in ("true", "1"))
    raise QueryError(f"{at}: expected true or false, got {value!r}")


def _to_time(at: str, value: Any) -> float:
    if not isinstance(value, str):
        raise QueryError(f"{at}: expected an ISO-8601 timestamp string, got {value!r}")
    try:
        return iso_to_ms(value)
    except ValueError:
        raise QueryError(f"{at}: {value!r} is not an ISO-8601 timestamp") from None


_CONVERTERS: dict[str, Callable[[str, Any], Any]] = {
    "text": _to_text,
    "number": _to_number,
    "bool": _to_bool,
    "time": _to_time,
}


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _int_param(
    params: Mapping[str, str], name: str, default: int, *, low: int, high: int | None = None
) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise QueryError(f"{name}: expected an integer, got {raw!r}") from None
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise QueryError(f"{name}: must be {bounds}, got {value}")
    return value


def _bool_param(params: Mapping[str, str], name: str) -> bool:
    raw = params.get(name)
    if raw is None or raw == "":
        return False
    lowered = raw.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise QueryError(f"{name}: expected true or false, got {raw!r}")


def _order_sql(order_by: str, direction: str, allowed: tuple[str, ...]) -> str:
    if order_by not in allowed:
        raise QueryError(f"order_by: {order_by!r} is not one of {', '.join(allowed)}")
    if direction not in ("asc", "desc"):
        raise QueryError(f"order_by_direction: {direction!r} is not one of asc, desc")
    dir_sql = direction.upper()
    column = _ORDER_SQL[order_by]
    # Ties are broken by created_at then id in the same direction, so pages are stable and an
    # index serves every ordering.
    tie = f"created_at_ms {dir_sql}, id {dir_sql}"
    if column == "created_at_ms":
        return f"created_at_ms {dir_sql}, id {dir_sql}"
    return f"{column} {dir_sql}, {tie}"


_DEPRECATED_RANGES = {
    "min_cost": ("cost", ">="),
    "max_cost": ("cost", "<="),
    "min_tokens_in": ("tokens_in", ">="),
    "max_tokens_in": ("tokens_in", "<="),
    "min_tokens_out": ("tokens_out", ">="),
    "max_tokens_out": ("tokens_out", "<="),
    "min_total_tokens": (_TOKENS_SQL, ">="),
    "max_total_tokens": (_TOKENS_SQL, "<="),
    "min_duration": ("duration", ">="),
    "max_duration": ("duration", "<="),
}
_DEPRECATED_EQUALS = (
    "model",
    "model_type",
    "provider",
    "request_content_type",
    "response_content_type",
)


_DEPRECATED_NAMES = frozenset(
    {
        "start_date",
        "end_date",
        "success",
        "cached",
        "feedback",
        *_DEPRECATED_RANGES,
        *_DEPRECATED_EQUALS,
    }
)


def _deprecated_params(params: Mapping[str, str]) -> Where:
    where = Where()
    if _DEPRECATED_NAMES.isdisjoint(params.keys()):
        return where
    for name, symbol in (("start_date", ">="), ("end_date", "<=")):
        raw = params.get(name)
        if raw:
            where = where.and_(Where(f"created_at_ms {symbol} ?", (_to_time(name, raw),)))
    for name, (column, symbol) in _DEPRECATED_RANGES.items():
        raw = params.get(name)
        if raw:
            where = where.and_(Where(f"{column} {symbol} ?", (_to_number(name, raw),)))
    for name in ("success", "cached"):
        raw = params.get(name)
        if raw:
            where = where.and_(Where(f"{name} = ?", (_to_bool(name, raw),)))
    raw = params.get("feedback")
    if raw:
        value = _to_number("feedback", raw)
        if value not in (0, 1):
            raise QueryError(f"feedback: expected 0 or 1, got {raw!r}")
        where = where.and_(Where("feedback = ?", (value,)))
    for name in _DEPRECATED_EQUALS:
        raw = params.get(name)
        if raw:
            where = where.and_(Where(f"{name} = ?", (raw,)))
    return where
