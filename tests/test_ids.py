"""Log ids of every format compare in one spelling; unknown shapes are left exactly as written."""

from __future__ import annotations

import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from pipeline.ids import canonical_id, canonical_id_expr

ULID = "01JADMCQQQBWH3NXZ5GCRN98DP"
UUID7 = "01a118cf-487b-7226-b63c-5ab791b7584a"
HEX64 = "9f" * 32


def test_each_format_has_cloudflares_spelling() -> None:
    """ULIDs upper case, UUIDs and hex lower case, whatever case the analyst typed."""
    assert canonical_id(ULID.lower()) == ULID
    assert canonical_id(UUID7.upper()) == UUID7
    assert canonical_id(HEX64.upper()) == HEX64
    assert canonical_id(f"  {UUID7} ") == UUID7


def test_unknown_shapes_are_kept_as_written() -> None:
    """An id of no known format may be case-sensitive: only surrounding blanks go."""
    for odd in ["Log-42", "abcDEF", "01JADMCQQQBWH3NXZ5GCRN98D", "ü" * 26]:
        assert canonical_id(odd) == odd


@given(st.text(max_size=70))
def test_the_expression_agrees_with_the_function(text: str) -> None:
    """The vectorised form gives the same id as the scalar one for any string."""
    got = pl.select(canonical_id_expr(pl.lit(text, dtype=pl.String))).item()
    assert got == canonical_id(text)
