"""Combining labels from many sources: the chosen label per log, and labeling-function analysis.

Rules of the choice (see `pipeline.label` for the user-facing description): the label is taken
whole from the source whose kind ranks first in ``precedence``; among rules the one listed first
in the job file wins; several CSV sources (or external ones) rank by name. Kinds left out of
``precedence`` are analysed but never chosen.

Everything here is lazy, streamable queries, and their memory grows with the labels held as
frames (and, for chosen.parquet, with the chosen rows held narrow while sorted), not with the logs:
the analysis sums the window `SLICE_ROWS` rows per query (in one query the streaming engine held
memory that grew with the logs) and the chosen rows are picked `CHOSEN_ROWS` rows per query (by the
in-memory engine: a slice that small needs less there). Each log is one row of a wide frame (the
window's logs first, numbered `_row` as scanned, then the logs outside the window that labels
name), with per-source columns `h<i>` labeled?, `f<i>` feedback, `s<i>` score. A source is either
*computed* — its columns are expressions over the columns of the window frame (a rule's, read from
the rules' evaluated columns, see `pipeline.label`) — or a *frame* of labels (CSV, external: as
many rows as labels), joined on `_row`. The choice, the overlaps, the conflicts and the pairwise
agreement are row-wise expressions and column sums that the streaming engine evaluates batch by
batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import polars as pl

from pipeline.ids import canonical_id_expr
from pipeline.labelers.base import ROW, labeled_at_expr

UTC_MS = pl.Datetime("ms", "UTC")
KIND_PREFIX = {"csv": "csv", "rule": "rules", "external": "external"}
KINDS = ("csv", "external", "rules")
SLICE_ROWS = 262_144  # window rows per query of the analysis's sums
CHOSEN_ROWS = 131_072  # window rows per query picking the chosen rows; chosen rows per batch
CHOSEN_COLUMNS = pl.Schema(
    {
        "log_id": pl.String(),
        "feedback": pl.Int8(),
        "score": pl.Float64(),
        "source": pl.String(),
        "kind": pl.String(),
        "reason": pl.String(),
        "labeled_at": pl.Datetime("ms", "UTC"),
        "in_window": pl.Boolean(),
        "sources": pl.Int32(),
        "disagree": pl.Boolean(),
    }
)


def kind_of(source: str) -> str:
    prefix = source.partition(":")[0]
    return KIND_PREFIX.get(prefix, prefix)


def order_sources(
    sources: Sequence[str], precedence: Sequence[str], rule_order: Sequence[str]
) -> list[str]:
    """Sources sorted by (kind rank, rank within the kind, name); kinds not in `precedence` last."""
    kind_rank = {kind: i for i, kind in enumerate(precedence)}
    rule_rank = {name: i for i, name in enumerate(rule_order)}

    def key(source: str) -> tuple[int, int, str]:
        kind = kind_of(source)
        name = source.partition(":")[2]
        within = rule_rank.get(name, len(rule_rank)) if kind == "rules" else 0
        return kind_rank.get(kind, len(kind_rank)), within, source

    return sorted(set(sources), key=key)


@dataclass(frozen=True)
class Computed:
    """A source whose labels are expressions over the log columns (a rule): `labeled` is true,
    never null, where it labels the log; `feedback`/`score` hold its values there (null where it
    gives none). `has_feedback`/`has_score`: some label has one (else no pair sums for it)."""

    source: str
    labeled: pl.Expr
    feedback: pl.Expr
    score: pl.Expr
    reason: str
    labeled_at: datetime
    has_feedback: bool = True
    has_score: bool = True


def _resolve_rows(
    labels: pl.DataFrame, window: pl.LazyFrame, size: int, *, placed: bool = False
) -> tuple[pl.DataFrame, int]:
    """Labels with `_row` filled in: a label without one is looked up among the window's ids
    (one streamed semi-join against the labels' few ids); the rest, logs outside the window, are
    numbered from `size` on in id order. Returns the labels and how many logs are outside."""
    if ROW not in labels.columns:
        labels = labels.with_columns(pl.lit(None, pl.UInt32).alias(ROW))
    missing = labels.filter(pl.col(ROW).is_null())
    if missing.height == 0:
        return labels, 0
    keys = missing.select("log_id").unique()
    found = (
        pl.DataFrame(schema={"log_id": pl.String, "_r": pl.UInt32})
        if placed  # the caller looked them up already: these are outside the window
        else window.select(pl.col("id").alias("log_id"), pl.col(ROW).alias("_r"))
        .join(keys.lazy(), on="log_id", how="semi")
        .collect(engine="streaming")
    )
    outside = keys.join(found, on="log_id", how="anti").sort("log_id")
    outside = outside.with_columns((pl.int_range(pl.len(), dtype=pl.UInt32) + size).alias("_r"))
    mapping = pl.concat([found, outside])
    resolved = (
        missing.drop(ROW)
        .join(mapping, on="log_id", how="left")
        .rename({"_r": ROW})
        .select(labels.columns)
    )
    return pl.concat([labels.filter(pl.col(ROW).is_not_null()), resolved]), outside.height


@dataclass(frozen=True)
class Combined:
    window: int  # how many of the rows are the window's logs (rows 0..window-1)
    sources: list[str]  # every source, in choice order; the first `eligible` may be chosen
    eligible: int
    # per row: log_id, _row; h<i>, f<i>, s<i> per source; n, pos, neg; win. Of all the rows, or
    # of `rows` window rows from `first` on (and, `with_outside`, the rows outside the window).
    part: Callable[[int, int | None, bool], pl.LazyFrame]
    reason: list[pl.Expr]  # per source: the reason of its label on the row
    labeled_at: list[pl.Expr]
    has_feedback: list[bool]
    has_score: list[bool]
    details: pl.DataFrame  # _row, and r<i>/t<i> (reason, labeled_at) of the held labels
    # The computed sources' (reason, labeled_at), constant per source, by source number.
    fixed: dict[int, tuple[str, datetime]] = field(default_factory=dict)

    @property
    def wide(self) -> pl.LazyFrame:
        """Every row (the window's, then those outside it)."""
        return self.part(0, None, True)

    def chosen(self) -> pl.LazyFrame:
        """One row per log with a label from an eligible source (CHOSEN_SCHEMA columns), by
        log id (one lazy query: for tools and tests; the stage writes `chosen_batches`)."""
        if not self.eligible:
            return pl.LazyFrame(schema=CHOSEN_COLUMNS)
        return self._named(self._picked(self.wide).sort("log_id"))

    def chosen_batches(
        self, slice_rows: int = CHOSEN_ROWS, batch_rows: int = CHOSEN_ROWS
    ) -> Iterator[pl.DataFrame]:
        """The rows of `chosen`, in order, `batch_rows` at a time. The narrow picked rows are
        collected slice by slice of the window and held (log id, `_row`, the source as a
        number, the values), sorted by an index, and named batch by batch: the streaming
        engine's sort held ~3× more (measured at 10M logs). A slice is small enough for the
        in-memory engine, which picks it with less memory than the streaming engine and sooner
        (1M logs: the stage's peak ~470 MB against ~500 MB)."""
        if not self.eligible:
            return
        firsts = range(0, max(self.window, 1), max(slice_rows, 1))
        picked = pl.concat(  # not rechunked: a second copy of the rows while it copies
            [
                self._picked(self.part(first, slice_rows, first == firsts[-1])).collect()
                for first in firsts
            ]
        )
        held = self.details.drop(ROW)
        if held.width:  # where each row's held label details are: looked up once, not per batch
            at = self.details.select(ROW).with_row_index("_at")
            picked = picked.join(at, on=ROW, how="left", maintain_order="left")
        order = picked.get_column("log_id").arg_sort()
        for first in range(0, picked.height, max(batch_rows, 1)):
            batch = picked.select(pl.all().gather(order.slice(first, batch_rows)))
            if held.width:
                batch = batch.drop("_at").hstack(held.select(pl.all().gather(batch["_at"])))
            yield self._named(batch.lazy(), joined=True).collect()

    def _picked(self, wide: pl.LazyFrame) -> pl.LazyFrame:
        """The chosen rows, narrow: log_id, `_row`, `win` (UInt16), values, sources, disagree."""
        win = pl.col("win")
        return wide.filter(win.is_not_null()).select(
            pl.col("log_id"),
            pl.col(ROW),
            win.cast(pl.UInt16),  # narrow while sorted
            self._pick(lambda i: pl.col(f"f{i}")).cast(pl.Int8).alias("feedback"),
            self._pick(lambda i: pl.col(f"s{i}")).cast(pl.Float64).alias("score"),
            pl.col("n").cast(pl.UInt16).alias("sources"),
            ((pl.col("pos") > 0) & (pl.col("neg") > 0)).alias("disagree"),
        )

    def _pick(self, value: Callable[[int], pl.Expr]) -> pl.Expr:
        win = pl.col("win")
        return pl.coalesce([pl.when(win == i).then(value(i)) for i in range(self.eligible)])

    def _named(self, picked: pl.LazyFrame, *, joined: bool = False) -> pl.LazyFrame:
        """Picked rows as CHOSEN_SCHEMA columns: the source named, the held labels' reasons
        fetched by `_row` (unless `joined`: the rows carry them); row order kept."""
        if self.details.width > 1 and not joined:
            picked = picked.join(self.details.lazy(), on=ROW, how="left", maintain_order="left")
        win = pl.col("win")
        picks = list(range(self.eligible))
        names = self.sources[: self.eligible]
        return picked.select(
            pl.col("log_id"),
            pl.col("feedback"),
            pl.col("score"),
            win.replace_strict(picks, names, return_dtype=pl.String).alias("source"),
            win.replace_strict(picks, [kind_of(s) for s in names], return_dtype=pl.String).alias(
                "kind"
            ),
            self._fixed_or_held(0, pl.String(), lambda i: self.reason[i]).alias("reason"),
            self._fixed_or_held(1, UTC_MS, lambda i: self.labeled_at[i]).alias("labeled_at"),
            (pl.col(ROW) < self.window).alias("in_window"),
            pl.col("sources"),
            pl.col("disagree"),
        ).cast(CHOSEN_COLUMNS)

    def _fixed_or_held(
        self, at: int, dtype: pl.DataType, held: Callable[[int], pl.Expr]
    ) -> pl.Expr:
        """The chosen source's reason (`at` 0) or labeled_at (1): a computed source's constant
        looked up by source number (not a literal column per source), a held label's column."""
        win = pl.col("win")
        fixed = [i for i in range(self.eligible) if i in self.fixed]
        values = [self.fixed[i][at] for i in fixed]
        constant = (
            win.replace_strict(
                fixed,
                pl.Series(values).cast(dtype, strict=False) if at == 0 else _instants(values),
                default=None,
                return_dtype=dtype,
            )
            if fixed
            else pl.lit(None, dtype)
        )
        others = [pl.when(win == i).then(held(i)) for i in range(self.eligible) if i not in fixed]
        return pl.coalesce([*others, constant]).cast(dtype)

    def analysis(self, slice_rows: int | None = SLICE_ROWS) -> dict[str, Any]:
        """Per source and per kind: labels, coverage, polarity, overlaps, conflicts, chosen; and
        agreement for every pair of sources (and of kinds) that labeled a common log. One pass."""
        kind_cols, present, kind_flags = self._kind_columns()
        names = [str(i) for i in range(len(self.sources))]
        won_source = lambda key: (pl.col("win") == int(key)).fill_null(False)  # noqa: E731
        won_kind = lambda key: pl.col(f"c{key}")  # noqa: E731
        in_window = pl.col(ROW) < self.window
        exprs = [
            pl.len().alias("rows"),
            (pl.col("n") > 0).sum().alias("labeled_logs"),
            pl.col("win").is_not_null().sum().alias("chosen"),
            (pl.col("win").is_not_null() & in_window).sum().alias("chosen_in_window"),
            ((pl.col("pos") > 0) & (pl.col("neg") > 0)).sum().alias("conflicts"),
            (pl.col("n") > 1).sum().alias("overlapping_logs"),
            *_table_exprs(names, ("n", "pos", "neg"), won_source, in_window),
            *_table_exprs(present, ("kn", "kpos", "kneg"), won_kind, in_window),
            *_pair_exprs(names, self.has_feedback, self.has_score),
            *_pair_exprs(present, *kind_flags),
        ]
        # The sums are added up over slices of the window: in one query the streaming engine
        # holds memory that grows with the rows (measured: +1.2 GB at 10M logs × 21 sources).
        step = max(self.window, 1) if slice_rows is None else max(slice_rows, 1)
        firsts = range(0, max(self.window, 1), step)
        partial = pl.concat(
            [
                self.part(first, step, first == firsts[-1])
                .with_columns(kind_cols)
                .with_columns(_per_log(present, ("kn", "kpos", "kneg")))
                .select(exprs)
                .collect(engine="streaming")
                for first in firsts
            ],
            how="vertical_relaxed",
        )
        sums = partial.select(pl.all().sum()).row(0, named=True)
        return {
            "window_logs": self.window,
            **{
                k: int(sums[k] or 0)
                for k in (
                    "labeled_logs",
                    "chosen",
                    "chosen_in_window",
                    "conflicts",
                    "overlapping_logs",
                )
            },
            "sources": _table_rows(sums, self.sources, names, self.window),
            "kinds": _table_rows(sums, present, present, self.window),
            "agreement": {
                "kinds": _pair_rows(sums, present, present),
                "sources": _pair_rows(sums, self.sources, names),
            },
        }

    def _kind_columns(self) -> tuple[list[pl.Expr], list[str], tuple[list[bool], list[bool]]]:
        """Per kind, the label that wins within the kind, as h/f/s columns named by kind, plus
        `c<kind>` = this kind's source won the choice; the kinds present; their has-flags."""
        cols: list[pl.Expr] = []
        present: list[str] = []
        has_f: list[bool] = []
        has_s: list[bool] = []
        for kind in KINDS:
            members = [i for i, s in enumerate(self.sources) if kind_of(s) == kind]
            if not members:
                continue
            present.append(kind)
            has_f.append(any(self.has_feedback[i] for i in members))
            has_s.append(any(self.has_score[i] for i in members))
            won = pl.col("win").is_in(members).fill_null(False).alias(f"c{kind}")
            if len(members) == 1:
                (i,) = members
                cols += [pl.col(f"{c}{i}").alias(f"{c}{kind}") for c in "hfs"]
                cols.append(won)
                continue
            first = pl.coalesce([pl.when(pl.col(f"h{i}")).then(pl.lit(i)) for i in members])
            f: Any = pl
            s: Any = pl
            for i in members:
                f = f.when(first == i).then(pl.col(f"f{i}"))
                s = s.when(first == i).then(pl.col(f"s{i}"))
            cols += [
                first.is_not_null().alias(f"h{kind}"),
                f.otherwise(None).cast(pl.Int8).alias(f"f{kind}"),
                s.otherwise(None).cast(pl.Float64).alias(f"s{kind}"),
                won,
            ]
        return cols, present, (has_f, has_s)


def _per_log(
    keys: Sequence[str | int], names: tuple[str, str, str] = ("n", "pos", "neg")
) -> list[pl.Expr]:
    n, pos, neg = names
    if not keys:
        return [pl.lit(0).alias(c) for c in names]
    return [
        pl.sum_horizontal([pl.col(f"h{k}").cast(pl.UInt8) for k in keys]).alias(n),
        pl.sum_horizontal([(pl.col(f"f{k}") == 1).fill_null(False) for k in keys]).alias(pos),
        pl.sum_horizontal([(pl.col(f"f{k}") == -1).fill_null(False) for k in keys]).alias(neg),
    ]


def combine(
    labels: pl.DataFrame,
    window_ids: pl.Series,
    precedence: Sequence[str],
    rule_order: Sequence[str],
) -> Combined:
    """Lay labels (LABEL_SCHEMA, optionally with `_row`) out per log, the window being
    `window_ids` (in memory: for tools and tests; the stage uses `combine_streamed`)."""
    window = pl.DataFrame(
        {"id": window_ids, ROW: pl.int_range(window_ids.len(), dtype=pl.UInt32, eager=True)}
    ).lazy()
    return combine_streamed(labels, window, window_ids.len(), precedence, rule_order)


def combine_streamed(
    labels: pl.DataFrame,
    window: pl.LazyFrame,
    size: int,
    precedence: Sequence[str],
    rule_order: Sequence[str],
    computed: Sequence[Computed] = (),
    *,
    placed: bool = False,
    canonical_ids: bool = False,
) -> Combined:
    """The wide frame over `window` (a lazy scan of the window's logs with `_row`, `size` rows)
    for the frame `labels` (LABEL_SCHEMA, optionally with `_row`) and the `computed` sources.
    `placed`: a label without `_row` is known to be outside the window (not looked up).
    `canonical_ids`: the window's ids are in their canonical spelling already (`pipeline.ids`)."""
    labels, _ = _resolve_rows(labels, window, size, placed=placed)
    by_name = {c.source: c for c in computed}
    sources = order_sources(
        [*labels["source"].unique().to_list(), *by_name], precedence, rule_order
    )
    eligible = sum(kind_of(s) in precedence for s in sources)
    parts = (
        {str(k[0]): v for k, v in labels.partition_by("source", as_dict=True).items()}
        if labels.height
        else {}
    )
    pivot: list[pl.DataFrame] = []
    window_cols: list[pl.Expr] = []
    reason: list[pl.Expr] = []
    labeled_at: list[pl.Expr] = []
    has_f: list[bool] = []
    has_s: list[bool] = []
    fixed: dict[int, tuple[str, datetime]] = {}
    for i, source in enumerate(sources):
        if source in by_name:
            c = by_name[source]
            window_cols += [
                c.labeled.alias(f"h{i}"),
                c.feedback.cast(pl.Int8).alias(f"f{i}"),
                c.score.cast(pl.Float64).alias(f"s{i}"),
            ]
            reason.append(pl.lit(c.reason, pl.String))
            labeled_at.append(labeled_at_expr(c.labeled_at))
            fixed[i] = (c.reason, c.labeled_at)
            has_f.append(c.has_feedback)
            has_s.append(c.has_score)
            continue
        part = parts[source]
        pivot.append(
            part.select(
                pl.col(ROW),
                pl.col("log_id").alias("_id"),
                pl.lit(True).alias(f"h{i}"),
                pl.col("feedback").alias(f"f{i}"),
                pl.col("score").alias(f"s{i}"),
                pl.col("reason").alias(f"r{i}"),
                pl.col("labeled_at").alias(f"t{i}"),
            )
        )
        reason.append(pl.col(f"r{i}"))
        labeled_at.append(pl.col(f"t{i}"))
        has_f.append(part["feedback"].null_count() < part.height)
        has_s.append(part["score"].null_count() < part.height)
    h_cols = [f"h{i}" for i in range(len(sources))]
    if pivot:
        framed = pl.concat(pivot, how="diagonal").group_by(ROW).agg(pl.all().drop_nulls().first())
    else:
        framed = pl.DataFrame(schema={ROW: pl.UInt32, "_id": pl.String})
    inside = framed.filter(pl.col(ROW) < size)
    outside = framed.filter(pl.col(ROW) >= size).lazy()
    win = (
        pl.coalesce([pl.when(pl.col(f"h{i}")).then(pl.lit(i, pl.Int32)) for i in range(eligible)])
        if eligible
        else pl.lit(None, pl.Int32)
    )
    columns = window.select(pl.col(ROW), pl.col("id"), *window_cols)
    # A window log's id; its held labels were placed by that id, spelled alike when canonical
    # (no string is built then: the column is the window's).
    window_id = (
        pl.col("id")
        if canonical_ids
        else pl.coalesce(pl.col("_id"), canonical_id_expr(pl.col("id")))
    )

    def wide(first: int = 0, rows: int | None = None, with_outside: bool = True) -> pl.LazyFrame:
        part, held = columns, inside
        if first or rows is not None:  # a slice joins the held labels of its rows only
            part = columns.slice(first, rows)
            row = pl.col(ROW)
            held = inside.filter((row >= first) & (row < first + rows) if rows else row >= first)
        parts = [
            part.join(held.lazy(), on=ROW, how="left")
            .with_columns(window_id.alias("log_id"))
            .drop("_id", "id")
        ]
        if with_outside:
            parts.append(outside.rename({"_id": "log_id"}))
        return (
            pl.concat(parts, how="diagonal_relaxed")
            .with_columns(*[pl.col(h).fill_null(False) for h in h_cols])
            .with_columns(*_per_log(list(range(len(sources)))), win.alias("win"))
        )

    details = framed.select(ROW, *[c for c in framed.columns if c[0] in "rt" and c[1:].isdigit()])
    return Combined(size, sources, eligible, wide, reason, labeled_at, has_f, has_s, details, fixed)


def _instants(values: Sequence[Any]) -> pl.Series:
    """Datetimes as `labeled_at` values (`labeled_at_expr`: UTC, milliseconds)."""
    return pl.select(pl.concat_list([labeled_at_expr(v) for v in values]).explode()).to_series()


def _table_exprs(
    names: Sequence[str],
    per_log: tuple[str, str, str],
    won: Callable[[str], pl.Expr],
    in_window: pl.Expr,
) -> list[pl.Expr]:
    """The sums behind the per-source (or per-kind) table; columns h/f/s<name>."""
    n, pos, neg = (pl.col(c) for c in per_log)
    exprs: list[pl.Expr] = []
    for key in names:
        h, f, s = pl.col(f"h{key}"), pl.col(f"f{key}"), pl.col(f"s{key}")
        conflict = ((f == 1) & (neg > 0)) | ((f == -1) & (pos > 0))
        exprs += [
            h.sum().alias(f"{key}|labels"),
            (h & in_window).sum().alias(f"{key}|in_window"),
            (f == 1).sum().alias(f"{key}|positive"),
            (f == -1).sum().alias(f"{key}|negative"),
            s.is_not_null().sum().alias(f"{key}|with_score"),
            (h & (n > 1)).sum().alias(f"{key}|overlaps"),
            conflict.fill_null(False).sum().alias(f"{key}|conflicts"),
            won(key).sum().alias(f"{key}|chosen"),
        ]
    return exprs


TABLE_KEYS = (
    "labels", "in_window", "positive", "negative", "with_score", "overlaps", "conflicts", "chosen"
)  # fmt: skip


def _table_rows(
    sums: dict[str, Any], keys: Sequence[str], names: Sequence[str], window: int
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for label, key in zip(keys, names, strict=True):
        row: dict[str, Any] = {k: int(sums[f"{key}|{k}"] or 0) for k in TABLE_KEYS}
        labels = max(row["labels"], 1)
        row["outside_window"] = row["labels"] - row["in_window"]
        row["coverage"] = round(row["in_window"] / max(window, 1), 6)
        row["overlap_rate"] = round(row["overlaps"] / labels, 6)
        row["conflict_rate"] = round(row["conflicts"] / labels, 6)
        out[label] = row
    return dict(sorted(out.items()))


def _pair_exprs(
    names: Sequence[str], has_f: Sequence[bool], has_s: Sequence[bool]
) -> list[pl.Expr]:
    """The sums behind the agreement of each pair; a side that never gives a feedback (or a
    score) needs no feedback (score) sums."""
    exprs: list[pl.Expr] = []
    for i, a in enumerate(names):
        for j in range(i + 1, len(names)):
            b = names[j]
            fa, fb, sa, sb = pl.col(f"f{a}"), pl.col(f"f{b}"), pl.col(f"s{a}"), pl.col(f"s{b}")
            p = f"{a}|{b}|"
            exprs.append((pl.col(f"h{a}") & pl.col(f"h{b}")).sum().alias(p + "overlap"))
            if has_f[i] and has_f[j]:
                exprs += [
                    (fa == fb).sum().alias(p + "agree"),
                    (fa != fb).sum().alias(p + "disagree"),
                ]
            if has_s[i] and has_s[j]:
                exprs += [
                    (sa.is_not_null() & sb.is_not_null()).sum().alias(p + "both_score"),
                    (sa - sb).abs().sum().alias(p + "score_abs_diff"),
                ]
    return exprs


def _pair_rows(
    sums: dict[str, Any], keys: Sequence[str], names: Sequence[str]
) -> list[dict[str, Any]]:
    """For each pair of sources (or kinds) that labeled a common log: how often they agree."""
    label = dict(zip(names, keys, strict=True))
    out = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            p = f"{a}|{b}|"
            row = {k: int(sums.get(p + k) or 0) for k in ("overlap", "agree", "disagree")}
            if not row["overlap"]:
                continue
            row["both_feedback"] = row["agree"] + row["disagree"]  # == is null unless both set
            both_score = int(sums.get(p + "both_score") or 0)
            first, second = sorted((label[a], label[b]))
            out.append(
                {
                    "a": first,
                    "b": second,
                    **row,
                    "agreement": round(row["agree"] / row["both_feedback"], 6)
                    if row["both_feedback"]
                    else None,
                    "both_score": both_score,
                    "score_mean_abs_diff": round(
                        float(sums[p + "score_abs_diff"] or 0) / both_score, 6
                    )
                    if both_score
                    else None,
                }
            )
    return sorted(out, key=lambda r: (r["a"], r["b"]))


__all__ = [
    "KINDS",
    "Combined",
    "Computed",
    "combine",
    "combine_streamed",
    "kind_of",
    "order_sources",
]
