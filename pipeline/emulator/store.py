"""The emulator's SQLite store: logs of any number of (account, gateway) pairs, file or memory.

Indexed for what the API does all the time: every ordering the list endpoint offers is served by an
index ``(gateway, column, created_at, id)``, so a page is an index range plus at most 50 row
lookups, and deep pages skip index entries only (a "deferred join"). ``created_at`` is kept as epoch
milliseconds (for comparisons) and as the API's ISO string (so nothing is formatted per request).

One connection guarded by a lock: the ASGI app calls it from uvicorn's event-loop thread while a
test reads ground truth from its own thread. File databases use WAL. A ``version`` counter changes
on every write, so counts and aggregates can be cached between writes.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.emulator.filters import Where
from pipeline.emulator.timefmt import ms_to_iso, to_ms

_SCHEMA = """
CREATE TABLE IF NOT EXISTS gateways (
    gw INTEGER PRIMARY KEY,
    account_id TEXT NOT NULL,
    gateway_id TEXT NOT NULL,
    UNIQUE (account_id, gateway_id)
);
CREATE TABLE IF NOT EXISTS logs (
    pk INTEGER PRIMARY KEY,
    gw INTEGER NOT NULL,
    id TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    path TEXT NOT NULL,
    duration INTEGER NOT NULL,
    success INTEGER NOT NULL,
    cached INTEGER NOT NULL,
    tokens_in INTEGER,
    tokens_out INTEGER,
    cost REAL,
    custom_cost INTEGER,
    metadata TEXT,
    model_type TEXT,
    request_type TEXT,
    status_code INTEGER,
    step INTEGER,
    request_content_type TEXT,
    response_content_type TEXT,
    feedback NUMERIC,
    score NUMERIC,
    event_id TEXT,
    authentication INTEGER,
    wholesale INTEGER,
    compatibility_mode INTEGER,
    dlp_action TEXT,
    user_agent TEXT,
    request_head TEXT,
    request_head_complete INTEGER,
    request_size INTEGER,
    response_head TEXT,
    response_head_complete INTEGER,
    response_size INTEGER,
    request_body TEXT,
    response_body TEXT,
    entry_json TEXT NOT NULL,
    detail_json TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS logs_gw_id ON logs (gw, id);
CREATE INDEX IF NOT EXISTS logs_gw_created ON logs (gw, created_at_ms, id);
CREATE INDEX IF NOT EXISTS logs_gw_provider ON logs (gw, provider, created_at_ms, id);
CREATE INDEX IF NOT EXISTS logs_gw_model ON logs (gw, model, created_at_ms, id);
CREATE INDEX IF NOT EXISTS logs_gw_model_type ON logs (gw, model_type, created_at_ms, id);
CREATE INDEX IF NOT EXISTS logs_gw_success ON logs (gw, success, created_at_ms, id);
CREATE INDEX IF NOT EXISTS logs_gw_cached ON logs (gw, cached, created_at_ms, id);
"""

# (stored dict key, column); the dict key is the API's spelling.
_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "id"),
    ("created_at", "created_at"),
    ("provider", "provider"),
    ("model", "model"),
    ("path", "path"),
    ("duration", "duration"),
    ("success", "success"),
    ("cached", "cached"),
    ("tokens_in", "tokens_in"),
    ("tokens_out", "tokens_out"),
    ("cost", "cost"),
    ("custom_cost", "custom_cost"),
    ("metadata", "metadata"),
    ("model_type", "model_type"),
    ("request_type", "request_type"),
    ("status_code", "status_code"),
    ("step", "step"),
    ("request_content_type", "request_content_type"),
    ("response_content_type", "response_content_type"),
    ("feedback", "feedback"),
    ("score", "score"),
    ("event_id", "event_id"),
    ("authentication", "authentication"),
    ("wholesale", "wholesale"),
    ("compatibilityMode", "compatibility_mode"),
    ("dlp_action", "dlp_action"),
    ("user_agent", "user_agent"),
    ("request_head", "request_head"),
    ("request_head_complete", "request_head_complete"),
    ("request_size", "request_size"),
    ("response_head", "response_head"),
    ("response_head_complete", "response_head_complete"),
    ("response_size", "response_size"),
    ("request_body", "request_body"),
    ("response_body", "response_body"),
)
_BOOL_KEYS = frozenset(
    {
        "success",
        "cached",
        "custom_cost",
        "authentication",
        "wholesale",
        "compatibilityMode",
        "request_head_complete",
        "response_head_complete",
    }
)
_JSON_KEYS = frozenset({"request_body", "response_body"})
_REQUIRED = ("id", "created_at", "provider", "model", "path", "duration", "success", "cached")
_ALL_SQL = ", ".join(column for _, column in _COLUMNS)
_INSERT_SQL = (
    f"INSERT OR REPLACE INTO logs (gw, created_at_ms, {_ALL_SQL}, entry_json, detail_json) "
    f"VALUES (?, ?, {', '.join('?' * len(_COLUMNS))}, ?, ?)"
)


# A list entry is the fields of reference §3.1 plus feedback and score. Everything but feedback,
# score and metadata never changes after insert, so that part is rendered to JSON once, at insert
# (``entry_json``, without braces; ``detail_json`` adds GET one's heads and sizes), and a page is
# assembled by string concatenation in SQLite: no per-field work in Python on the hot path.
_ENTRY_KEYS = (
    "id",
    "created_at",
    "provider",
    "model",
    "path",
    "duration",
    "success",
    "cached",
    "tokens_in",
    "tokens_out",
    "cost",
    "custom_cost",
    "model_type",
    "request_type",
    "status_code",
    "step",
    "request_content_type",
    "response_content_type",
)
_ALWAYS_KEYS = frozenset({"tokens_in", "tokens_out"})  # nullable, yet always present
_DETAIL_KEYS = (
    "request_head",
    "request_head_complete",
    "request_size",
    "response_head",
    "response_head_complete",
    "response_size",
)
_ENTRY_TAIL = (
    """',"feedback":' || json_quote(logs.feedback) || ',"score":' || json_quote(logs.score) """
    """|| CASE WHEN logs.metadata IS NULL THEN '' """
    """ELSE ',"metadata":' || json_quote(logs.metadata) END"""
)
_ENTRY_JSON = f"""'{{' || logs.entry_json || {_ENTRY_TAIL} || '}}'"""
# A list entry without ``feedback`` and ``score`` (``EmulatorSettings.list_feedback`` false).
_ENTRY_TAIL_BARE = (
    """CASE WHEN logs.metadata IS NULL THEN '' """
    """ELSE ',"metadata":' || json_quote(logs.metadata) END"""
)
_ENTRY_JSON_BARE = f"""'{{' || logs.entry_json || {_ENTRY_TAIL_BARE} || '}}'"""
_DETAIL_JSON = f"""'{{' || logs.entry_json || logs.detail_json || {_ENTRY_TAIL} || '}}'"""
_AGGREGATES_SQL = (
    "min(cost), max(cost), min(duration), max(duration), min(tokens_in), max(tokens_in), "
    "min(tokens_out), max(tokens_out), min(COALESCE(tokens_in, 0) + COALESCE(tokens_out, 0)), "
    "max(COALESCE(tokens_in, 0) + COALESCE(tokens_out, 0))"
)
_AGGREGATE_NAMES = (
    "min_cost",
    "max_cost",
    "min_duration",
    "max_duration",
    "min_tokens_in",
    "max_tokens_in",
    "min_tokens_out",
    "max_tokens_out",
    "min_total_tokens",
    "max_total_tokens",
)


class EmulatorStore:
    """Logs by (account_id, gateway_id). Thread-safe; ``path=":memory:"`` keeps nothing on disk.

    Public methods take ``(account_id, gateway_id)``; methods prefixed ``gw_`` take the integer key
    from ``gateway_key`` and are what the ASGI app uses on its hot path.
    """

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, cached_statements=256
        )
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._gateways: dict[tuple[str, str], int] = {}
        for gw, account_id, gateway_id in self._db.execute(
            "SELECT gw, account_id, gateway_id FROM gateways"
        ):
            self._gateways[(account_id, gateway_id)] = gw
        self.version = 0
        self._cache: dict[tuple[Any, ...], Any] = {}
        self._cache_version = 0

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> EmulatorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- gateways ----------------------------------------------------------------------------
    def ensure_gateway(self, account_id: str, gateway_id: str) -> int:
        """Create the gateway if needed (an empty gateway still exists) and return its key."""
        with self._lock:
            key = self._gateways.get((account_id, gateway_id))
            if key is None:
                cur = self._db.execute(
                    "INSERT INTO gateways (account_id, gateway_id) VALUES (?, ?)",
                    (account_id, gateway_id),
                )
                key = int(cur.lastrowid or 0)
                self._gateways[(account_id, gateway_id)] = key
            return key

    def has_account(self, account_id: str) -> bool:
        """Whether any gateway of ``account_id`` exists (an unknown account is a 403)."""
        with self._lock:
            return any(account == account_id for account, _ in self._gateways)

    def gateway_key(self, account_id: str, gateway_id: str) -> int | None:
        """The integer key of an existing gateway, or None if it was never created."""
        return self._gateways.get((account_id, gateway_id))

    def gateways(self) -> list[tuple[str, str]]:
        with self._lock:
            return sorted(self._gateways)

    # -- writes ------------------------------------------------------------------------------
    def insert_logs(
        self, account_id: str, gateway_id: str, logs: Iterable[Mapping[str, Any]]
    ) -> int:
        """Insert (or replace, by id) logs in the stored-log shape; returns how many."""
        return self.gw_insert(self.ensure_gateway(account_id, gateway_id), logs)

    def gw_insert(self, gw: int, logs: Iterable[Mapping[str, Any]]) -> int:
        rows = [_to_row(log) for log in logs]
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(_INSERT_SQL, ((gw, *row) for row in rows))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self._bump()
        return len(rows)

    def delete_ids(self, account_id: str, gateway_id: str, ids: Iterable[str]) -> int:
        """Delete logs by id; returns how many existed."""
        gw = self.gateway_key(account_id, gateway_id)
        return 0 if gw is None else self.gw_delete_ids(gw, ids)

    def gw_delete_ids(self, gw: int, ids: Iterable[str]) -> int:
        with self._lock:
            cur = self._db.executemany(
                "DELETE FROM logs WHERE gw = ? AND id = ?", ((gw, i) for i in ids)
            )
            self._bump()
            return cur.rowcount

    def gw_patch(self, gw: int, log_id: str, changes: Mapping[str, Any]) -> bool:
        """Apply a validated PATCH (feedback, score, metadata as JSON text or None); False if gone."""
        with self._lock:
            if not changes:
                return self.gw_exists(gw, log_id)
            sets = ", ".join(f"{name} = ?" for name in changes)
            cur = self._db.execute(
                f"UPDATE logs SET {sets} WHERE gw = ? AND id = ?",
                (*changes.values(), gw, log_id),
            )
            self._bump()
            return cur.rowcount > 0

    def gw_delete_where(self, gw: int, where: Where, order_sql: str, limit: int) -> int:
        """DELETE by filters: the first ``limit`` matching logs in ``order_sql`` order."""
        with self._lock:
            cur = self._db.execute(
                f"DELETE FROM logs WHERE pk IN (SELECT pk FROM logs WHERE gw = ? "
                f"{_and(where)} ORDER BY {order_sql} LIMIT ?)",
                (gw, *where.params, limit),
            )
            self._bump()
            return cur.rowcount

    def _bump(self) -> None:
        self.version += 1

    # -- reads for the API ---------------------------------------------------------------------
    def gw_entries_json(
        self,
        gw: int,
        where: Where,
        order_sql: str,
        limit: int,
        offset: int,
        *,
        feedback: bool = True,
    ) -> str:
        """One page of list entries as JSON array text (API shape: metadata as a JSON string).

        The inner query walks only the index (deep offsets stay cheap); the outer one reads the
        page's rows and renders them. ``feedback`` false leaves ``feedback`` and ``score`` out.
        """
        outer_order = ", ".join(f"logs.{part.strip()}" for part in order_sql.split(","))
        entry = _ENTRY_JSON if feedback else _ENTRY_JSON_BARE
        sql = (
            f"SELECT {entry} FROM (SELECT pk AS p FROM logs WHERE gw = ? {_and(where)} "
            f"ORDER BY {order_sql} LIMIT ? OFFSET ?) AS page JOIN logs ON logs.pk = page.p "
            f"ORDER BY {outer_order}"
        )
        with self._lock:
            rows = self._db.execute(sql, (gw, *where.params, limit, offset)).fetchall()
        return "[" + ",".join(row[0] for row in rows) + "]"

    def gw_entries(
        self, gw: int, where: Where, order_sql: str, limit: int, offset: int
    ) -> list[dict[str, Any]]:
        """One page of list entries as dicts (see ``gw_entries_json``)."""
        entries: list[dict[str, Any]] = json.loads(
            self.gw_entries_json(gw, where, order_sql, limit, offset)
        )
        return entries

    def gw_count(self, gw: int, where: Where) -> int:
        """How many logs match; cached until the next write."""
        key = ("count", gw, where.sql, where.params)
        with self._lock:
            cached = self._cached(key)
            if cached is not None:
                return int(cached)
            sql = f"SELECT count(*) FROM logs WHERE gw = ? {_and(where)}"
            value = int(self._db.execute(sql, (gw, *where.params)).fetchone()[0])
            self._cache[key] = value
            return value

    def gw_aggregates(self, gw: int, where: Where) -> dict[str, float]:
        """min/max of cost, duration and tokens over the matching logs (``meta_info``)."""
        key = ("aggregates", gw, where.sql, where.params)
        with self._lock:
            cached = self._cached(key)
            if cached is None:
                sql = f"SELECT {_AGGREGATES_SQL} FROM logs WHERE gw = ? {_and(where)}"
                row = self._db.execute(sql, (gw, *where.params)).fetchone()
                cached = {n: v for n, v in zip(_AGGREGATE_NAMES, row, strict=True) if v is not None}
                self._cache[key] = cached
            return dict(cached)

    def _cached(self, key: tuple[Any, ...]) -> Any:
        if self._cache_version != self.version:
            self._cache.clear()
            self._cache_version = self.version
        return self._cache.get(key)

    def gw_detail_json(self, gw: int, log_id: str) -> str | None:
        """GET one as JSON text: the list entry plus the request/response heads and sizes."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_DETAIL_JSON} FROM logs WHERE gw = ? AND id = ?", (gw, log_id)
            ).fetchone()
        return None if row is None else str(row[0])

    def gw_body(self, gw: int, log_id: str, which: str) -> tuple[bool, Any]:
        """(found, body) for the /request or /response route."""
        column = "request_body" if which == "request" else "response_body"
        with self._lock:
            row = self._db.execute(
                f"SELECT {column} FROM logs WHERE gw = ? AND id = ?", (gw, log_id)
            ).fetchone()
        if row is None:
            return False, None
        return True, {} if row[0] is None else json.loads(row[0])

    def gw_exists(self, gw: int, log_id: str) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM logs WHERE gw = ? AND id = ?", (gw, log_id)
            ).fetchone()
        return row is not None

    def gw_bounds(self, gw: int) -> tuple[int, int] | None:
        """Oldest and newest created_at (ms) of a gateway, or None when it holds no logs."""
        with self._lock:
            row = self._db.execute(
                "SELECT min(created_at_ms), max(created_at_ms) FROM logs WHERE gw = ?", (gw,)
            ).fetchone()
        return None if row[0] is None else (int(row[0]), int(row[1]))

    def gw_random_ids(self, gw: int, k: int, rng: random.Random) -> list[str]:
        """Up to ``k`` distinct ids chosen with ``rng`` (reproducible for a given store state)."""
        with self._lock:
            total = self._db.execute("SELECT count(*) FROM logs WHERE gw = ?", (gw,)).fetchone()[0]
            picks = sorted(rng.sample(range(total), min(k, total)))
            return [
                self._db.execute(
                    "SELECT id FROM logs WHERE gw = ? ORDER BY created_at_ms, id LIMIT 1 OFFSET ?",
                    (gw, offset),
                ).fetchone()[0]
                for offset in picks
            ]

    # -- ground truth for tests and tools ------------------------------------------------------
    def count(self, account_id: str, gateway_id: str) -> int:
        """How many logs the gateway holds now."""
        gw = self.gateway_key(account_id, gateway_id)
        return 0 if gw is None else self.gw_count(gw, Where())

    def ids_between(
        self,
        account_id: str,
        gateway_id: str,
        start: str | datetime | None = None,
        end: str | datetime | None = None,
    ) -> list[str]:
        """Ids with ``start <= created_at < end`` (either bound optional), oldest first."""
        gw = self.gateway_key(account_id, gateway_id)
        if gw is None:
            return []
        low = -(2**62) if start is None else to_ms(start)
        high = 2**62 if end is None else to_ms(end)
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM logs WHERE gw = ? AND created_at_ms >= ? AND created_at_ms < ? "
                "ORDER BY created_at_ms, id",
                (gw, low, high),
            ).fetchall()
        return [row[0] for row in rows]

    def all_ids(self, account_id: str, gateway_id: str) -> list[str]:
        """Every id of the gateway, oldest first."""
        return self.ids_between(account_id, gateway_id)

    def get(self, account_id: str, gateway_id: str, log_id: str) -> dict[str, Any] | None:
        """The stored log (metadata as a dict, bodies parsed, every field present), or None."""
        gw = self.gateway_key(account_id, gateway_id)
        if gw is None:
            return None
        with self._lock:
            row = self._db.execute(
                f"SELECT {_ALL_SQL} FROM logs WHERE gw = ? AND id = ?", (gw, log_id)
            ).fetchone()
        if row is None:
            return None
        log: dict[str, Any] = {}
        for (key, _), value in zip(_COLUMNS, row, strict=True):
            if value is not None and key in _BOOL_KEYS:
                value = bool(value)
            elif value is not None and (key in _JSON_KEYS or key == "metadata"):
                value = json.loads(value)
            log[key] = value
        return log


def _and(where: Where) -> str:
    return f"AND {where.sql}" if where.sql else ""


def _to_row(log: Mapping[str, Any]) -> tuple[Any, ...]:
    missing = [key for key in _REQUIRED if log.get(key) is None]
    if missing:
        raise ValueError(f"log {log.get('id')!r} lacks required fields: {', '.join(missing)}")
    created_ms = to_ms(log["created_at"])
    values: list[Any] = [created_ms]
    for key, _ in _COLUMNS:
        value = log.get(key)
        if key == "created_at":
            value = ms_to_iso(created_ms)
        elif value is None:
            pass
        elif key == "metadata":
            value = value if isinstance(value, str) else _dumps(value)
        elif key in _JSON_KEYS:
            value = _dumps(value)
        elif key in _BOOL_KEYS:
            value = int(bool(value))
        values.append(value)
    values.append(_fragment(log, _ENTRY_KEYS, created_at=values[2]))
    values.append(_fragment(log, _DETAIL_KEYS, leading_comma=True))
    return tuple(values)


def _fragment(
    log: Mapping[str, Any],
    keys: tuple[str, ...],
    *,
    created_at: str | None = None,
    leading_comma: bool = False,
) -> str:
    """``"k":v,...`` for the keys present (NULL optional fields are left out, as the API does)."""
    parts = []
    for key in keys:
        value = created_at if key == "created_at" else log.get(key)
        if value is None and key not in _ALWAYS_KEYS:
            continue
        if key in _BOOL_KEYS:
            value = bool(value)
        parts.append(f"{_dumps(key)}:{_dumps(value)}")
    text = ",".join(parts)
    return f",{text}" if leading_comma and text else text


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
