"""The analysts' CSV inbox: what an analyst sees happen to the files they drop in."""

from __future__ import annotations

import codecs
import csv
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.config import CsvLabelsConfig
from pipeline.emulator.seed import SAMPLE_LOGS_PATH, read_logs_file
from pipeline.errors import InputError
from pipeline.labelers.csv import CsvLabeler
from pipeline.labelers.csvfile import read_table, table_frame
from pipeline.labelers.values import NEGATIVE, POSITIVE, parse_feedback, parse_score

SAMPLE_LABELS = Path(__file__).resolve().parents[2] / "sample_data" / "labels"
NOW = datetime(2026, 11, 25, 6, tzinfo=UTC)
LOGS = pl.DataFrame({"id": ["L1", "L2", "L3", "L4"]})


def labeler(inbox: Path, join_key: str = "log_id", known: pl.DataFrame | None = None) -> CsvLabeler:
    config = CsvLabelsConfig(inbox=inbox, join_key=join_key)
    return CsvLabeler(config, known.lazy() if known is not None else None)


def drop(inbox: Path, name: str, text: str | bytes, encoding: str = "utf-8") -> Path:
    inbox.mkdir(parents=True, exist_ok=True)
    path = inbox / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode(encoding))
    return path


def by_file(accounting: dict[str, object], name: str) -> dict[str, object]:
    files = accounting["by_file"]
    assert isinstance(files, list)
    return next(f for f in files if f["name"] == name)


@pytest.fixture(scope="module")
def newest_day_ids() -> pl.DataFrame:
    logs = list(read_logs_file(SAMPLE_LOGS_PATH))
    newest = max(log["created_at"][:10] for log in logs)
    return pl.DataFrame({"id": [x["id"] for x in logs if x["created_at"].startswith(newest)]})


def expected_table() -> dict[str, dict[str, int]]:
    """The per-file table of sample_data/labels/EXPECTED.md."""
    text = (SAMPLE_LABELS / "EXPECTED.md").read_text(encoding="utf-8")
    keys = ["rows", "accepted", "rejected", "labels", "duplicates", "superseded", "outside_window"]
    out = {}
    for m in re.finditer(r"^\| (\w+\.csv) \|((?: \d+ \|)+)$", text, re.M):
        out[m.group(1)] = dict(zip(keys, map(int, m.group(2).split("|")[:-1]), strict=True))
    return out


# ---------------------------------------------------------------------------------------------
# The sample files and their documented accounting


def test_messy_sample_gives_exactly_its_documented_accounting(
    tmp_path: Path, newest_day_ids: pl.DataFrame
) -> None:
    """messy.csv: 23 rows, 15 accepted, 8 rejected by the reasons EXPECTED.md lists."""
    shutil.copy(SAMPLE_LABELS / "messy.csv", tmp_path / "messy.csv")
    out = labeler(tmp_path).run(newest_day_ids, "run-1", NOW)
    messy = by_file(out.accounting, "messy.csv")
    assert {k: messy[k] for k in expected_table()["messy.csv"]} == expected_table()["messy.csv"]
    assert messy == messy | {"rows": 23, "accepted": 15, "rejected": 8, "labels": 13}
    assert messy["rejected_by_reason"] == {
        "bad_feedback": 2,
        "bad_log_id": 1,
        "bad_score": 2,
        "missing_key": 1,
        "no_label": 1,
        "too_many_fields": 1,
    }
    assert (messy["encoding"], messy["delimiter"]) == ("utf-8-sig", ";")
    assert out.labels.height == 13


def test_messy_rejects_file_names_each_rejected_line_as_documented(
    tmp_path: Path, newest_day_ids: pl.DataFrame
) -> None:
    """Every rejected row is in messy.rejects.csv with the line and reason EXPECTED.md gives."""
    shutil.copy(SAMPLE_LABELS / "messy.csv", tmp_path / "messy.csv")
    labeler(tmp_path).run(newest_day_ids, "run-1", NOW)
    documented = re.findall(
        r"^\| (\d+) \|[^\n]*\| rejected: (\w+)",
        (SAMPLE_LABELS / "EXPECTED.md").read_text(encoding="utf-8"),
        re.M,
    )
    rejects = tmp_path / "processed" / "run-1" / "messy.rejects.csv"
    with rejects.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter=";"))
    assert [(r["reject_line"], r["reject_reason"]) for r in rows] == documented
    assert rows[0]["Rating"] == "meh"  # the original cells, under the original headers


def test_clean_sample_is_fully_accepted(tmp_path: Path, newest_day_ids: pl.DataFrame) -> None:
    """clean.csv: every row becomes a label for a log of the newest day."""
    shutil.copy(SAMPLE_LABELS / "clean.csv", tmp_path / "clean.csv")
    out = labeler(tmp_path).run(newest_day_ids, "run-1", NOW)
    clean = by_file(out.accounting, "clean.csv")
    assert clean["rows"] == clean["accepted"] == clean["labels"] == 40
    assert clean["rejected"] == 0 and clean["rejects_path"] is None
    assert out.labels["log_id"].is_in(newest_day_ids["id"].implode()).all()
    assert expected_table()["clean.csv"]["accepted"] == 40


def test_sample_files_are_up_to_date_with_their_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    """The committed CSV files and EXPECTED.md are what generate_labels.py writes."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(
        "generate_labels", SAMPLE_LABELS.parent / "generate_labels.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "generate_labels", module)
    spec.loader.exec_module(module)
    for name, data in module.build().items():
        assert (SAMPLE_LABELS / name).read_bytes() == data, f"{name} is stale"


# ---------------------------------------------------------------------------------------------
# Reading


def test_latin1_file_with_a_semicolon_is_read(tmp_path: Path) -> None:
    """A Windows export in Latin-1 with ';' reads; accents survive into the reason."""
    drop(tmp_path, "fr.csv", "Log ID;Label;Commentaire\nL1;bon;\nL2;mauvais;\n", "latin-1")
    drop(tmp_path, "x.csv", "log;thumbs;Note\nL1;up;très bien\nL2;down;réponse fausse\n", "latin-1")
    out = labeler(tmp_path).run(LOGS, "r", NOW)
    x = by_file(out.accounting, "x.csv")
    assert x["encoding"] in ("cp1252", "latin-1") and x["accepted"] == 2
    assert "réponse fausse" in out.labels["reason"].to_list()
    fr = by_file(out.accounting, "fr.csv")  # words outside the vocabulary are not guessed
    assert fr["rejected_by_reason"] == {"bad_feedback": 2}


def test_utf16_tab_file_from_excel_is_read(tmp_path: Path) -> None:
    """Excel's 'Unicode text' (UTF-16 with BOM, tabs) is read like any other file."""
    drop(tmp_path, "u.tsv", codecs.BOM_UTF16_LE + "id\tfeedback\nL1\t👍\n".encode("utf-16-le"))
    out = labeler(tmp_path).run(LOGS, "r", NOW)
    assert out.labels.select("log_id", "feedback").rows() == [("L1", 1)]


def test_delimiter_is_detected_even_with_commas_inside_cells(tmp_path: Path) -> None:
    """A ';' file whose comments contain commas is not mistaken for a ',' file."""
    drop(
        tmp_path, "a.csv", 'log_id;score;reason\nL1;85;"good, short, clear"\nL2;10%;"bad, wrong"\n'
    )
    out = labeler(tmp_path).run(LOGS, "r", NOW)
    assert sorted(out.labels.select("log_id", "score").rows()) == [("L1", 85.0), ("L2", 10.0)]


@pytest.mark.parametrize(
    "header",
    ["log_id,feedback", "ID,Rating", " Log ID ,THUMBS", "cf-aig-log-id,label", "LOG,Feedback"],
)
def test_header_aliases_match_case_and_space_insensitively(tmp_path: Path, header: str) -> None:
    """Common spellings of the log id and feedback columns are recognised."""
    drop(tmp_path, "a.csv", f"{header}\nL1,down\n")
    out = labeler(tmp_path).run(LOGS, "r", NOW)
    assert out.labels.select("log_id", "feedback").rows() == [("L1", -1)]


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"", "empty"),
        (b"PK\x03\x04rest-of-a-zip", "spreadsheet"),
        (b"a,b\x00\x00c", "binary"),
        (b"name,comment\nx,y\n", "no usable columns"),
    ],
)
def test_unusable_files_say_why(content: bytes, why: str) -> None:
    """A file that cannot be used at all is refused with a reason a person understands."""
    with pytest.raises(InputError, match=why):
        read_table(content)


# ---------------------------------------------------------------------------------------------
# Values (property-based)


def _variants(word: str) -> st.SearchStrategy[str]:
    return st.tuples(
        st.sampled_from(["", " ", "  ", "\t"]),
        st.lists(st.booleans(), min_size=len(word), max_size=len(word)),
        st.sampled_from(["", " ", "\t"]),
    ).map(
        lambda t: (
            t[0] + "".join(c.upper() if up else c for c, up in zip(word, t[1], strict=True)) + t[2]
        )
    )


@given(st.sampled_from(POSITIVE + NEGATIVE).flatmap(lambda w: st.tuples(st.just(w), _variants(w))))
def test_every_documented_feedback_spelling_parses_in_any_case(pair: tuple[str, str]) -> None:
    """'Thumbs_Up ', ' GOOD', '+1', '👎' ... give 1 or -1 whatever the case and spaces."""
    word, written = pair
    assert parse_feedback([written]) == [1 if word in POSITIVE else -1]


@given(st.text(max_size=12))
def test_feedback_is_never_guessed(text: str) -> None:
    """Anything that is not a documented spelling reads as 'no feedback', never as a label."""
    token = re.sub(r"(\w)[\s\-]+(\w)", r"\1_\2", text.strip().lower())
    token = re.sub("[\ufe0f\U0001f3fb-\U0001f3ff]", "", token)
    expected = 1 if token in POSITIVE else -1 if token in NEGATIVE else None
    assert parse_feedback([text]) == [expected]


@given(st.floats(min_value=0, max_value=100, allow_nan=False), st.sampled_from(["", "%", " %"]))
def test_scores_in_range_parse_with_or_without_percent(value: float, suffix: str) -> None:
    """85, '85%', ' 85.5 ' are the same score as written."""
    assert parse_score([f" {value!r}{suffix} "]) == [pytest.approx(value)]


@given(st.integers(0, 99), st.integers(0, 9))
def test_decimal_comma_scores_parse(whole: int, tenth: int) -> None:
    """'72,5' (a European spreadsheet) is 72.5."""
    assert parse_score([f"{whole},{tenth}"]) == [pytest.approx(whole + tenth / 10)]


@given(
    st.one_of(
        st.floats(max_value=-0.001),
        st.floats(min_value=100.001),
        st.sampled_from(["nan", "inf", "-inf", "high", "1.2.3", "--5"]),
    )
)
def test_scores_outside_0_100_are_rejected(value: float | str) -> None:
    """A score of 150, -3, NaN or 'high' is not a score."""
    assert parse_score([str(value)]) == [None]


# ---------------------------------------------------------------------------------------------
# Duplicates and conflicts: the last word wins


def test_later_row_wins_within_a_file_and_earlier_rows_are_counted(tmp_path: Path) -> None:
    """Same label twice: one label, one duplicate. Different labels: the later wins, one superseded."""
    drop(tmp_path, "a.csv", "log_id,feedback\nL1,up\nL2,up\nL1,up\nL2,down\n")
    out = labeler(tmp_path).run(LOGS, "r", NOW)
    a = by_file(out.accounting, "a.csv")
    assert (a["rows"], a["accepted"], a["labels"], a["duplicates"], a["superseded"]) == (
        4,
        4,
        2,
        1,
        1,
    )
    assert sorted(out.labels.select("log_id", "feedback").rows()) == [("L1", 1), ("L2", -1)]


def test_later_file_by_name_wins_across_files_of_one_run(tmp_path: Path) -> None:
    """Two files in one run: the one later by name wins; the earlier file's row is superseded."""
    drop(tmp_path, "2026-11-02-corrections.csv", "log_id,feedback\nL1,down\n")
    drop(tmp_path, "2026-11-01-labels.csv", "log_id,feedback\nL1,up\nL2,up\n")
    out = labeler(tmp_path).run(LOGS, "r", NOW)
    assert sorted(out.labels.select("log_id", "feedback", "source").rows()) == [
        ("L1", -1, "csv:2026-11-02-corrections.csv"),
        ("L2", 1, "csv:2026-11-01-labels.csv"),
    ]
    first = by_file(out.accounting, "2026-11-01-labels.csv")
    assert (first["accepted"], first["labels"], first["superseded"]) == (2, 1, 1)


# ---------------------------------------------------------------------------------------------
# Join key: the application's ids in metadata


KNOWN = pl.DataFrame(
    {
        "id": ["L1", "L2", "L3", "L4"],
        "metadata": [
            '{"request_id":"req_a"}',
            '{"request_id":"req_b"}',
            '{"request_id":"req_dup"}',
            '{"request_id":"req_dup"}',
        ],
    }
)


def test_rows_can_name_logs_by_a_metadata_key(tmp_path: Path) -> None:
    """request_id resolves to the one log carrying it; ambiguous and unknown values are rejected."""
    drop(tmp_path, "a.csv", "request_id,feedback\nreq_a,up\nreq_dup,down\nreq_nope,up\n")
    out = labeler(tmp_path, "request_id", KNOWN).run(LOGS, "r", NOW)
    a = by_file(out.accounting, "a.csv")
    assert out.labels.select("log_id", "feedback").rows() == [("L1", 1)]
    assert a["rejected_by_reason"] == {"ambiguous_key": 1, "unknown_key": 1}
    rejects = (tmp_path / str(a["rejects_path"])).read_text(encoding="utf-8")
    assert "several extracted logs" in rejects and "req_nope" in rejects


def test_a_log_id_column_still_works_when_a_join_key_is_set(tmp_path: Path) -> None:
    """With join_key = request_id, a row that gives the log id directly uses it."""
    drop(tmp_path, "a.csv", "log_id,request_id,feedback\nL4,,up\n,req_b,down\n")
    out = labeler(tmp_path, "request_id", KNOWN).run(LOGS, "r", NOW)
    assert sorted(out.labels.select("log_id", "feedback").rows()) == [("L2", -1), ("L4", 1)]


# ---------------------------------------------------------------------------------------------
# Each file applied once: moving, manifest, resume


# ---------------------------------------------------------------------------------------------
# Physical records: a broken quote is one rejected line, not a swallowed file


def _fifty_rows_with_a_stray_quote() -> str:
    rows = [f"L{i},{'up' if i % 2 else 'down'},fine {i}" for i in range(1, 51)]
    rows[5] = 'L6,up,"stray quote at the start of a cell'
    rows[30] = 'L31,down,"good, short"'
    return "log_id,feedback,reason\n" + "\n".join(rows) + "\n"


def test_a_stray_quote_rejects_its_line_and_the_rest_still_counts(tmp_path: Path) -> None:
    """50 rows, one with an unclosed quote: rows 50 = accepted 49 + rejected 1, on line 7."""
    drop(tmp_path, "q.csv", _fifty_rows_with_a_stray_quote())
    out = labeler(tmp_path).run(LOGS, "r", NOW)
    q = by_file(out.accounting, "q.csv")
    assert (q["rows"], q["accepted"], q["rejected"]) == (50, 49, 1)
    assert q["rejected_by_reason"] == {"broken_quote": 1}
    with (tmp_path / str(q["rejects_path"])).open(encoding="utf-8", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["reject_line"] == "7" and row["log_id"] == "L6"
    assert len(row["reject_detail"]) < 200
    assert "good, short" in out.labels["reason"].to_list()


def test_a_stray_quote_running_to_the_end_of_a_large_file_is_one_rejected_line(
    tmp_path: Path,
) -> None:
    """An unclosed quote near the top of 20,000 rows (past the csv module's field limit) costs one row."""
    body = "".join(f"L{i},up,reason number {i} with some words\n" for i in range(20_000))
    drop(tmp_path, "big.csv", 'log_id,feedback,reason\nX0,up,"oops\n' + body)
    out = labeler(tmp_path).run(LOGS, "r", NOW)
    big = by_file(out.accounting, "big.csv")
    assert (big["rows"], big["accepted"], big["rejected"]) == (20_001, 20_000, 1)


def test_properly_quoted_multi_line_cells_are_one_row(tmp_path: Path) -> None:
    """A comment over three lines inside closed quotes is one row and keeps its line breaks."""
    text = 'log_id,feedback,reason\nL1,up,"first line\nsecond line\nthird"\nL2,down,plain\n'
    drop(tmp_path, "m.csv", text)
    out = labeler(tmp_path).run(LOGS, "r", NOW)
    m = by_file(out.accounting, "m.csv")
    assert (m["rows"], m["accepted"], m["rejected"]) == (2, 2, 0)
    assert "first line\nsecond line\nthird" in out.labels["reason"].to_list()
    assert out.labels.filter(pl.col("log_id") == "L2")["reason"].to_list() == ["plain"]


def test_a_review_sheet_prompt_with_commas_and_numbers_in_it_stays_one_row(tmp_path: Path) -> None:
    """A quoted prompt holding CSV data and sums over several lines is one row, not a runaway."""
    prompt = "Parse this:\nL1,up,50,x\n1,2,3,4,5\n3+4, then 5\n5"
    text = f'log_id,request_text,feedback,score,reason\nL1,"{prompt}",up,80,ok\nL2,short,down,,\n'
    drop(tmp_path, "review.csv", text)
    out = labeler(tmp_path).run(LOGS, "r", NOW)
    review = by_file(out.accounting, "review.csv")
    assert (review["rows"], review["accepted"], review["rejected"]) == (2, 2, 0)


@given(
    st.lists(st.sampled_from(["up", "down", "-1", "meh", ""]), min_size=1, max_size=30),
    st.sets(st.integers(0, 29), max_size=4),
)
def test_rows_in_always_equal_accepted_plus_rejected(labels: list[str], broken: set[int]) -> None:
    """Whatever quotes are broken, every non-blank physical line is one row, on its own line."""
    quote = '"'
    lines = [f"L{i},{quote if i in broken else ''}{v},x" for i, v in enumerate(labels)]
    table = read_table(("log_id,feedback,reason\n" + "\n".join(lines) + "\n").encode())
    frame = table_frame(table)
    assert frame.height == len(labels)
    assert frame["line"].to_list() == list(range(2, len(labels) + 2))
    assert frame["read_reject"].is_not_null().to_list() == [i in broken for i in range(len(labels))]


CELLS = ["", " ", "up", "Down ", "👍", "-1", "50%", "L1", "\ufeffid", "a b", '"up"', '""', '" "',
         '"a,b"', '"a;b"', 'x"y', '"', "'=1", ",", ";", "\t"]  # fmt: skip


@given(
    st.sampled_from([",", ";", "\t"]),
    st.lists(st.lists(st.sampled_from(CELLS), max_size=6), max_size=12),
    st.sampled_from(["\n", "\r\n", "\r"]),
    st.booleans(),
)
def test_a_file_read_line_by_line_vectorised_gives_the_rows_of_the_csv_module(
    delimiter: str, rows: list[list[str]], newline: str, last_newline: bool
) -> None:
    """Files of one-line records are read without a Python object per cell: the same rows, line
    numbers and cells beyond the header as the csv module gives, whatever the quotes, blanks,
    ragged rows and line endings (a file the fast reading cannot take goes to the csv module)."""
    import pipeline.labelers.csvfile as csvfile

    header = delimiter.join(["log_id", "feedback", "score"])
    text = newline.join([header, *(delimiter.join(cells) for cells in rows)])
    data = (text + (newline if last_newline else "")).encode()
    fast = read_table(data)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(csvfile, "_plain_rows", lambda *args: None)
        slow = read_table(data)
    assert fast.cells is not None or '"' in text  # a file without quotes is always read fast
    assert (fast.header, fast.delimiter) == (slow.header, slow.delimiter)
    assert table_frame(fast).equals(table_frame(slow))


# ---------------------------------------------------------------------------------------------
# Encodings, detected


def test_utf16_without_a_bom_is_read_not_called_binary(tmp_path: Path) -> None:
    """UTF-16 LE without its BOM (some exporters omit it) is detected and read."""
    text = "log_id,feedback,reason\n" + "".join(f"L{i},up,très bien {i}\n" for i in range(1, 5))
    drop(tmp_path, "u.csv", text.encode("utf-16-le"))
    out = labeler(tmp_path).run(LOGS, "r", NOW)
    u = by_file(out.accounting, "u.csv")
    assert u["status"] == "applied" and u["encoding"] == "utf_16_le" and u["accepted"] == 4
    assert "très bien 1" in out.labels["reason"].to_list()


JAPANESE = [
    "とても良い回答です",
    "間違っています",
    "説明が分かりやすい",
    "翻訳が不自然です",
    "計算が間違い",
]


def test_shift_jis_is_detected_not_decoded_as_cp1252(tmp_path: Path) -> None:
    """A Japanese Excel export (Shift-JIS) keeps its comments readable."""
    rows = [f"L{1 + i % 4},{'up' if i % 2 else 'down'},{JAPANESE[i % 5]}" for i in range(30)]
    drop(tmp_path, "jp.csv", ("log_id,feedback,reason\n" + "\n".join(rows) + "\n").encode("cp932"))
    out = labeler(tmp_path).run(LOGS, "r", NOW)
    jp = by_file(out.accounting, "jp.csv")
    assert jp["encoding"] in ("cp932", "shift_jis") and jp["accepted"] == 30
    assert set(out.labels["reason"].to_list()) <= set(JAPANESE)


@pytest.mark.parametrize("pad", [0, 1, 2, 3])
def test_a_large_shift_jis_file_is_detected_wherever_the_sample_ends(pad: int) -> None:
    """Over 256 KiB the detector sees a sample: it ends at a line break, never inside a character."""
    rows = "".join(f"L{i},up,{JAPANESE[i % 5]}\n" for i in range(20_000))
    table = read_table(("log_id,feedback,reason\n" + "x" * pad + rows).encode("cp932"))
    frame = table_frame(table)
    assert table.encoding == "cp932" and frame.height == 20_000
    assert frame["orig_2"][-1] == JAPANESE[19_999 % 5]


def test_utf8_with_and_without_bom_is_utf8(tmp_path: Path) -> None:
    """UTF-8 stays UTF-8 (the fast path), with or without BOM, even with a cp1252-looking byte run."""
    body = "log_id,feedback,reason\nL1,up,Übergröße ✓\n"
    assert read_table(body.encode()).encoding == "utf-8"
    assert read_table(codecs.BOM_UTF8 + body.encode()).encoding == "utf-8-sig"


# ---------------------------------------------------------------------------------------------
# Ids of every format; the request-id header


UUID7 = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
ULID = "01JADM4X3K7Q8R9S0T1V2W3X4Y"
HEX64 = "ab" * 32


def test_ids_match_the_extract_whatever_their_case(tmp_path: Path) -> None:
    """Upper-case UUIDv7, lower-case ULID and upper hex in a CSV label the logs the extract holds."""
    logs = pl.DataFrame({"id": [UUID7, ULID, HEX64]})
    text = f"log_id,feedback\n{UUID7.upper()},up\n{ULID.lower()},down\n{HEX64.upper()},up\n"
    drop(tmp_path, "a.csv", text)
    out = labeler(tmp_path).run(logs, "r", NOW)
    assert sorted(out.labels.select("log_id", "feedback").rows()) == sorted(
        [(UUID7, 1), (ULID, -1), (HEX64, 1)]
    )
    assert by_file(out.accounting, "a.csv")["outside_window"] == 0


def test_the_same_log_in_two_spellings_is_one_log(tmp_path: Path) -> None:
    """A UUID written lower then upper case: the later row wins, the earlier is superseded."""
    drop(tmp_path, "a.csv", f"log_id,feedback\n{UUID7},up\n{UUID7.upper()},down\n")
    out = labeler(tmp_path).run(pl.DataFrame({"id": [UUID7]}), "r", NOW)
    a = by_file(out.accounting, "a.csv")
    assert (a["labels"], a["superseded"]) == (1, 1)
    assert out.labels.select("log_id", "feedback").rows() == [(UUID7, -1)]


@pytest.mark.parametrize("header", ["request_id", "cf-aig-request-id", "CF-AIG-Request-ID"])
def test_a_request_id_column_is_the_log_id(tmp_path: Path, header: str) -> None:
    """A column named like Cloudflare's request-id header carries the log id (same value)."""
    text = f"{header},feedback\n{UUID7.upper()},up\n{ULID.lower()},down\n{HEX64.upper()},up\n"
    drop(tmp_path, "a.csv", text)
    out = labeler(tmp_path).run(pl.DataFrame({"id": [UUID7, ULID, HEX64]}), "r", NOW)
    assert sorted(out.labels.select("log_id", "feedback").rows()) == sorted(
        [(UUID7, 1), (ULID, -1), (HEX64, 1)]
    )
    assert by_file(out.accounting, "a.csv")["outside_window"] == 0


def test_an_explicit_log_id_column_wins_over_request_id(tmp_path: Path) -> None:
    """With both log_id and request_id columns, log_id names the log."""
    drop(tmp_path, "a.csv", f"request_id,log_id,feedback\nreq-1,{ULID},up\n")
    out = labeler(tmp_path).run(pl.DataFrame({"id": [ULID]}), "r", NOW)
    assert out.labels["log_id"].to_list() == [ULID]


def test_join_key_values_match_metadata_case_insensitively(tmp_path: Path) -> None:
    """join_key = trace_id: an upper-case UUID in the CSV finds the log whose metadata has it lower."""
    known = pl.DataFrame({"id": [ULID], "metadata": [f'{{"trace_id":"{UUID7}"}}']})
    drop(tmp_path, "a.csv", f"trace_id,feedback\n{UUID7.upper()},up\n")
    out = labeler(tmp_path, "trace_id", known).run(pl.DataFrame({"id": [ULID]}), "r", NOW)
    assert out.labels["log_id"].to_list() == [ULID]


# ---------------------------------------------------------------------------------------------
# The rejects file neutralises formulas


def test_rejects_file_neutralises_formula_cells_and_drops_back_unchanged(tmp_path: Path) -> None:
    """'=HYPERLINK(...)' echoed into the rejects file starts with an apostrophe; -1 stays -1; fixed
    and dropped back, the reason reads as the analyst wrote it."""
    link = '=HYPERLINK("http://evil","x")'
    drop(
        tmp_path,
        "a.csv",
        f'log_id,feedback,score,reason\nL1,meh,-1,"{link.replace(chr(34), chr(34) * 2)}"\n',
    )
    labeler(tmp_path).run(LOGS, "run-1", NOW)
    rejects = tmp_path / "processed" / "run-1" / "a.rejects.csv"
    with rejects.open(encoding="utf-8", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["reason"] == "'" + link and row["score"] == "-1"
    assert all(not v.startswith(("=", "+", "@")) for v in row.values())
    fixed = rejects.read_text(encoding="utf-8").replace(",meh,-1,", ",up,50,")
    drop(tmp_path, "fixed.csv", fixed)
    out = labeler(tmp_path).run(LOGS, "run-2", NOW)
    assert out.labels["reason"].to_list() == [link]
