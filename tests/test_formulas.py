"""Formula-leading cells are written as text; numbers and plain text are untouched."""

from __future__ import annotations

import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from pipeline.formulas import neutralise, neutralise_expr


def test_formulas_get_an_apostrophe_numbers_do_not() -> None:
    """=HYPERLINK, +cmd, @SUM and tab-led cells are defused; -1, +3.5 and words stay as they are."""
    assert neutralise('=HYPERLINK("http://x","y")') == '\'=HYPERLINK("http://x","y")'
    assert neutralise("+cmd|' /C calc'!A0") == "'+cmd|' /C calc'!A0"
    assert neutralise("@SUM(A1)") == "'@SUM(A1)"
    assert neutralise("\t=1") == "'\t=1"
    assert [neutralise(v) for v in ["-1", "+3.5", "1e3", "good", ""]] == [
        "-1",
        "+3.5",
        "1e3",
        "good",
        "",
    ]


@given(st.text(max_size=30))
def test_the_expression_agrees_with_the_function(text: str) -> None:
    """The column form defuses exactly the cells the scalar form does."""
    got = pl.select(neutralise_expr(pl.lit(text, dtype=pl.String))).item()
    assert got == neutralise(text)
