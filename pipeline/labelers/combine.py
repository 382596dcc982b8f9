"""Combining labels from many sources: the chosen label per log, and labeling-function analysis.

Rules of the choice (see `pipeline.label` for the user-facing description): the label is taken
whole from the source whose kind ranks first in ``precedence``; among rules the one listed first
in the job file wins; several CSV sources (or external ones) rank by name. Kinds left out of
``precedence`` are analysed but never chosen.

Everything here is vectorised and avoids hashing log ids: each log gets a row number (the window's
logs first, then logs outside the window), each source's labels are scattered into per-source
columns of one wide frame (`h<i>` labeled?, `f<i>` feedback, `s<i>` score), and the choice, the
overlaps, the conflicts and the pairwise agreement are row-wise expressions and column sums.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from pipeline.labelers.base import ROW

KIND_PREFIX = {"csv": "csv", "rule": "rules", "external": "external"}
KINDS = ("csv", "external", "rules")


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


def _rows(labels: pl.DataFrame, window_ids: pl.Series) -> tuple[pl.DataFrame, pl.Series]:
    """Labels with `_row` filled in, and the log ids by row (window first, then the others)."""
    n = window_ids.len()
    if ROW not in labels.columns:
        labels = labels.with_columns(pl.lit(None, pl.UInt32).alias(ROW))
    missing = labels.filter(pl.col(ROW).is_null())
    if missing.height == 0:
        return labels, window_ids.alias("log_id")
    index = pl.DataFrame({"log_id": window_ids, "_r": pl.int_range(n, dtype=pl.UInt32, eager=True)})
    keys = missing.select("log_id").unique().join(index, on="log_id", how="left")
    outside = keys.filter(pl.col("_r").is_null()).sort("log_id")
    outside = outside.with_columns((pl.int_range(pl.len(), dtype=pl.UInt32) + n).alias("_r"))
    mapping = pl.concat([keys.filter(pl.col("_r").is_not_null()), outside])
    resolved = (
        missing.drop(ROW)
        .join(mapping, on="log_id", how="left")
        .rename({"_r": ROW})
        .select(labels.columns)
    )
    ids = pl.concat([window_ids.alias("log_id"), outside["log_id"]])
    return pl.concat([labels.filter(pl.col(ROW).is_not_null()), resolved]), ids


@dataclass(frozen=True)
class Combined:
    ids: pl.Series  # log id by row: the window's logs first
    window: int  # how many of `ids` are the window's logs
    sources: list[str]  # every source, in choice order; the first `eligible` may be chosen
    eligible: int
    parts: dict[str, pl.DataFrame]  # per source: its labels, with `_row`
    wide: pl.DataFrame  # per row: h<i>, f<i>, s<i> per source; n, pos, neg; win (source index)

    def chosen(self) -> pl.DataFrame:
        """One row per log with a label from an eligible source (CHOSEN_SCHEMA columns)."""
        win, n = self.wide["win"], self.wide["n"]
        disagree = (self.wide["pos"] > 0) & (self.wide["neg"] > 0)
        frames = []
        for i, source in enumerate(self.sources[: self.eligible]):
            part = self.parts[source]
            won = win.gather(part[ROW]) == i
            part = part.filter(won)
            frames.append(
                part.with_columns(
                    pl.lit(kind_of(source)).alias("kind"),
                    (pl.col(ROW) < self.window).alias("in_window"),
                    n.gather(part[ROW]).cast(pl.Int32).alias("sources"),
                    disagree.gather(part[ROW]).alias("disagree"),
                )
            )
        columns = [
            "log_id",
            "feedback",
            "score",
            "source",
            "kind",
            "reason",
            "labeled_at",
            "in_window",
            "sources",
            "disagree",
        ]
        if not frames:
            return pl.DataFrame(
                schema={
                    "log_id": pl.String,
                    "feedback": pl.Int8,
                    "score": pl.Float64,
                    "source": pl.String,
                    "kind": pl.String,
                    "reason": pl.String,
                    "labeled_at": pl.Datetime("ms", "UTC"),
                    "in_window": pl.Boolean,
                    "sources": pl.Int32,
                    "disagree": pl.Boolean,
                }
            )
        return pl.concat([f.select(columns) for f in frames]).sort("log_id")

    def analysis(self) -> dict[str, Any]:
        """Per source and per kind: labels, coverage, polarity, overlaps, conflicts, chosen; and
        agreement for every pair of sources (and of kinds) that labeled a common log."""
        kinds = self._kind_frame()
        present = [k for k in KINDS if any(kind_of(s) == k for s in self.sources)]
        wide = self.wide
        return {
            "window_logs": self.window,
            "labeled_logs": int((wide["n"] > 0).sum()),
            "chosen": int(wide["win"].is_not_null().sum()),
            "chosen_in_window": int(wide["win"].head(self.window).is_not_null().sum()),
            "conflicts": int(((wide["pos"] > 0) & (wide["neg"] > 0)).sum()),
            "overlapping_logs": int((wide["n"] > 1).sum()),
            "sources": _table(wide, self.sources, self.window, chosen=True),
            "kinds": _table(kinds, present, self.window, chosen=True),
            "agreement": {
                "kinds": _pairs(kinds, present),
                "sources": _pairs(wide, self.sources),
            },
        }

    def _kind_frame(self) -> pl.DataFrame:
        """Per kind, the label that wins within the kind, as h/f/s columns named by kind, plus
        n/pos/neg over kinds and `c<kind>` = this kind's source won the choice."""
        firsts: list[pl.Expr] = []
        cols: list[pl.Expr] = []
        for kind in KINDS:
            members = [i for i, s in enumerate(self.sources) if kind_of(s) == kind]
            if not members:
                continue
            won = pl.col("win").is_in(members).fill_null(False).alias(f"c{kind}")
            if len(members) == 1:
                (i,) = members
                cols += [pl.col(f"{c}{i}").alias(f"{c}{kind}") for c in "hfs"]
                cols.append(won)
                continue
            first = pl.col(f"first_{kind}")
            firsts.append(
                pl.coalesce([pl.when(pl.col(f"h{i}")).then(pl.lit(i)) for i in members]).alias(
                    first.meta.output_name()
                )
            )
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
        frame = self.wide.with_columns(firsts).select(cols)
        present = [k for k in KINDS if f"h{k}" in frame.columns]
        return frame.with_columns(_per_log(present))


def _per_log(keys: Sequence[str | int]) -> list[pl.Expr]:
    if not keys:
        return [pl.lit(0).alias(c) for c in ("n", "pos", "neg")]
    return [
        pl.sum_horizontal([pl.col(f"h{k}").cast(pl.UInt8) for k in keys]).alias("n"),
        pl.sum_horizontal([(pl.col(f"f{k}") == 1).fill_null(False) for k in keys]).alias("pos"),
        pl.sum_horizontal([(pl.col(f"f{k}") == -1).fill_null(False) for k in keys]).alias("neg"),
    ]


def combine(
    labels: pl.DataFrame,
    window_ids: pl.Series,
    precedence: Sequence[str],
    rule_order: Sequence[str],
) -> Combined:
    """Lay labels (LABEL_SCHEMA, optionally with `_row`) out per log and choose."""
    labels, ids = _rows(labels, window_ids)
    sources = order_sources(labels["source"].unique().to_list(), precedence, rule_order)
    eligible = sum(kind_of(s) in precedence for s in sources)
    parts = (
        {str(k[0]): v for k, v in labels.partition_by("source", as_dict=True).items()}
        if labels.height
        else {}
    )
    size = ids.len()
    columns: list[pl.Series] = []
    for i, source in enumerate(sources):
        part = parts[source]
        rows = part[ROW]
        columns.append(pl.zeros(size, pl.Boolean, eager=True).scatter(rows, True).alias(f"h{i}"))
        for name, column, dtype in (("f", "feedback", pl.Int8), ("s", "score", pl.Float64)):
            empty = pl.repeat(None, size, dtype=dtype, eager=True).alias(f"{name}{i}")
            values = part[column]
            columns.append(
                empty.scatter(rows, values) if values.null_count() < len(values) else empty
            )
    if not columns:  # a frame of `size` rows needs a column
        columns.append(pl.zeros(size, pl.Boolean, eager=True).alias("_empty"))
    wide = pl.DataFrame(columns)
    win = (
        pl.coalesce([pl.when(pl.col(f"h{i}")).then(pl.lit(i, pl.Int32)) for i in range(eligible)])
        if eligible
        else pl.lit(None, pl.Int32)
    )
    wide = wide.with_columns(*_per_log(list(range(len(sources)))), win.alias("win"))
    return Combined(ids, window_ids.len(), sources, eligible, parts, wide)


def _table(
    wide: pl.DataFrame, keys: Sequence[str], window: int, *, chosen: bool
) -> dict[str, dict[str, Any]]:
    """The per-source (or per-kind) table. `keys` name the sources; their columns are
    h/f/s<index> for sources (index = position in keys) or h/f/s<kind> for kinds."""
    if not keys:
        return {}
    names = [k if f"h{k}" in wide.columns else str(i) for i, k in enumerate(keys)]
    in_window = pl.int_range(pl.len()) < window
    exprs: list[pl.Expr] = []
    for key in names:
        h, f, s = pl.col(f"h{key}"), pl.col(f"f{key}"), pl.col(f"s{key}")
        won = (
            pl.col(f"c{key}")
            if f"c{key}" in wide.columns
            else (pl.col("win") == int(key)).fill_null(False)
        )
        conflict = ((f == 1) & (pl.col("neg") > 0)) | ((f == -1) & (pl.col("pos") > 0))
        exprs += [
            h.sum().alias(f"{key}|labels"),
            (h & in_window).sum().alias(f"{key}|in_window"),
            (f == 1).sum().alias(f"{key}|positive"),
            (f == -1).sum().alias(f"{key}|negative"),
            s.is_not_null().sum().alias(f"{key}|with_score"),
            (h & (pl.col("n") > 1)).sum().alias(f"{key}|overlaps"),
            conflict.fill_null(False).sum().alias(f"{key}|conflicts"),
            won.sum().alias(f"{key}|chosen"),
        ]
    sums = wide.select(exprs).row(0, named=True)
    out: dict[str, dict[str, Any]] = {}
    for label, key in zip(keys, names, strict=True):
        row: dict[str, Any] = {
            k.split("|")[1]: int(v or 0) for k, v in sums.items() if k.split("|")[0] == key
        }
        labels = max(row["labels"], 1)
        row["outside_window"] = row["labels"] - row["in_window"]
        row["coverage"] = round(row["in_window"] / max(window, 1), 6)
        row["overlap_rate"] = round(row["overlaps"] / labels, 6)
        row["conflict_rate"] = round(row["conflicts"] / labels, 6)
        if not chosen:
            row.pop("chosen")
        out[label] = row
    return dict(sorted(out.items()))


def _pairs(wide: pl.DataFrame, keys: Sequence[str]) -> list[dict[str, Any]]:
    """For each pair of sources (or kinds) that labeled a common log: how often they agree."""
    names = [k if f"h{k}" in wide.columns else str(i) for i, k in enumerate(keys)]
    exprs: list[pl.Expr] = []
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    if not pairs or wide.is_empty():
        return []  # a quiet night: no two sources labeled anything in common
    # Columns that are all null (a rule that gives no score) need no pair sums at all.
    counts = wide.select(
        *[pl.col(f"f{k}").is_not_null().any().alias(f"f{k}") for k in names],
        *[pl.col(f"s{k}").is_not_null().any().alias(f"s{k}") for k in names],
    ).row(0, named=True)
    for a, b in pairs:
        fa, fb, sa, sb = pl.col(f"f{a}"), pl.col(f"f{b}"), pl.col(f"s{a}"), pl.col(f"s{b}")
        p = f"{a}|{b}|"
        exprs.append((pl.col(f"h{a}") & pl.col(f"h{b}")).sum().alias(p + "overlap"))
        if counts[f"f{a}"] and counts[f"f{b}"]:
            exprs += [(fa == fb).sum().alias(p + "agree"), (fa != fb).sum().alias(p + "disagree")]
        if counts[f"s{a}"] and counts[f"s{b}"]:
            exprs += [
                (sa.is_not_null() & sb.is_not_null()).sum().alias(p + "both_score"),
                (sa - sb).abs().sum().alias(p + "score_abs_diff"),
            ]
    if not exprs:
        return []
    sums = wide.select(exprs).row(0, named=True)
    label = dict(zip(names, keys, strict=True))
    out = []
    for a, b in pairs:
        p = f"{a}|{b}|"
        row = {k: int(sums.get(p + k) or 0) for k in ("overlap", "agree", "disagree")}
        if not row["overlap"]:
            continue
        row["both_feedback"] = row["agree"] + row["disagree"]  # == is null unless both are set
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
                "score_mean_abs_diff": round(float(sums[p + "score_abs_diff"] or 0) / both_score, 6)
                if both_score
                else None,
            }
        )
    return sorted(out, key=lambda r: (r["a"], r["b"]))
