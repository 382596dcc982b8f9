"""Cells a spreadsheet would run: every CSV or sheet this tool writes neutralises them.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is a formula to Excel,
LibreOffice and Google Sheets (OWASP, "CSV injection"), so ``=HYPERLINK("http://evil","x")`` from a
log's metadata or an analyst's file would become a live link in the next person's review sheet. Such
a text is written with a leading apostrophe, which every spreadsheet shows as plain text. Numbers
stay numbers: ``-1`` and ``+3.5`` are values, not formulas.
"""

from __future__ import annotations

import re

import polars as pl

LEADERS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_NUMBER_PATTERN = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$"


def neutralise(text: str) -> str:
    """``=1+1`` -> ``'=1+1``; ``-1`` and ``hello`` unchanged."""
    if text.startswith(LEADERS) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def neutralise_expr(column: pl.Expr) -> pl.Expr:
    """The same for a string column (vectorised)."""
    leading = column.str.contains(r"^[=+\-@\t\r]") & ~column.str.contains(_NUMBER_PATTERN)
    return pl.when(leading).then(pl.lit("'") + column).otherwise(column)
