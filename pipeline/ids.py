"""Log ids: opaque strings, compared in one canonical spelling.

Cloudflare has issued three id formats (reference, "Log entry" and "Changes since mid-2026"): 26-char
ULIDs (logs before 2026-10-08), lowercase UUIDv7 since, and 64-hex ids seen in real payloads. The API
accepts each. All three formats are case-insensitive, and people retype ids into spreadsheets, so an
analyst's ``01JADM…`` in lower case or a UUID in upper case is the same log. Ids are never parsed,
sorted by meaning or validated: a string of any other shape is kept exactly as written (an id we
do not recognise may well be case-sensitive).

The canonical spelling is the one Cloudflare prints: ULIDs upper case, UUIDs and hex lower case.
Every place that compares ids from two sources (labels against the extract, plan against look-ups,
verify against the server) compares canonical ids; the server's own spelling is what it gets back.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl

ULID = r"[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}"
UUID = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
HEX = r"(?:[0-9A-Fa-f]{2}){8,}"  # 16 hex digits or more, an even count (64 seen)

BLANKS = " \t\r\n"  # what a spreadsheet leaves around a cell

_ULID = re.compile(ULID)
_LOWER = re.compile(f"{UUID}|{HEX}")


def canonical_id(log_id: str) -> str:
    """``01jadm…`` -> ``01JADM…``; ``0191B…-…`` -> ``0191b…-…``; anything else as it is (trimmed)."""
    text = log_id.strip(BLANKS)
    if _ULID.fullmatch(text):
        return text.upper()
    if _LOWER.fullmatch(text):
        return text.lower()
    return text


def canonical_id_expr(column: pl.Expr) -> pl.Expr:
    """The same, as a polars expression (vectorised: no Python call per row)."""
    import polars as pl  # here, not at the top: canonical_id's callers (the client side) stay light

    text = column.str.strip_chars(BLANKS)
    return (
        pl.when(text.str.contains(f"^{ULID}$"))
        .then(text.str.to_uppercase())
        .when(text.str.contains(f"^(?:{UUID}|{HEX})$"))
        .then(text.str.to_lowercase())
        .otherwise(text)
    )
