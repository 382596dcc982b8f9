"""Markdown and HTML renderings of a run's report (the numbers come from `pipeline.report`).

``report.md`` is for CI logs and chat; ``report.html`` is one self-contained file (inline CSS and SVG,
no scripts, no network). Every string that came from logs, CSV files or the API is HTML-escaped: the
page is built from ``Markup`` pieces, and anything that is not already ``Markup`` is escaped when it
is put in.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MAX_ROWS = 50  # rows per failure / reject table in md and html


@dataclass(frozen=True)
class Extras:
    results: Mapping[str, dict[str, Any] | None]
    by_model: list[dict[str, Any]]  # provider, model, labels, positive, negative, patch
    feedback: list[dict[str, Any]]  # value, before, planned, after (None: not known)
    analysis: Any
    rejects: list[dict[str, Any]]  # file, line, reason, row
    timeline: list[list[int]]
    feedback_note: str | None = None  # what "after" can and cannot say


STATUS_SENTENCES = {
    "ok": "Every planned change was applied and verified.",
    "nothing_to_do": "Nothing to do: no label needed a change, and nothing went wrong.",
}


def headline(data: Mapping[str, Any]) -> tuple[str | None, str | None, list[str]]:
    """What the report opens with: the cause of a failed or partial run (the first problem), or
    the sentence for its status; then the other problems (for an ok run: what to look at)."""
    status, problems = str(data["status"]), list(data["problems"])
    if status in ("failed", "partial") and problems:
        return problems[0], None, problems[1:]
    return None, STATUS_SENTENCES.get(status), problems


def status_word(data: Mapping[str, Any]) -> str:
    return str(data["status"]).replace("_", " ").upper()


def sums(data: Mapping[str, Any]) -> list[tuple[str, bool]]:
    """Equations that must hold between the sections, each with whether it does."""
    out: list[tuple[str, bool]] = []
    plan_, load_, verify_ = data["plan"], data["load"], data["verify"]
    if plan_["ran"]:
        parts = [plan_[k] or 0 for k in ("patch", "unchanged", "keep_existing", "not_found")]
        labels = plan_.get("labels")
        labels = sum(parts) if labels is None else labels
        out.append(
            (
                f"labeled logs {labels:,} = {parts[0]:,} patch + {parts[1]:,} unchanged + "
                f"{parts[2]:,} kept + {parts[3]:,} not found",
                sum(parts) == labels,
            )
        )
    if plan_["ran"] and load_["ran"]:
        got = [load_[k] or 0 for k in ("patched", "failed", "gone", "pending")]
        out.append(
            (
                f"planned patches {plan_['patch'] or 0:,} = {got[0]:,} patched + {got[1]:,} failed "
                f"+ {got[2]:,} gone + {got[3]:,} pending",
                sum(got) == (plan_["patch"] or 0),
            )
        )
    if load_["ran"] and verify_["ran"]:
        got = [verify_[k] or 0 for k in ("verified", "mismatched", "unverifiable")]
        out.append(
            (
                f"patched {load_['patched'] or 0:,} = {got[0]:,} verified + {got[1]:,} mismatched "
                f"+ {got[2]:,} unverifiable",
                sum(got) == (load_["patched"] or 0),
            )
        )
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 1e6 else f"{value:,.0f}"
    return str(value)


def _failures(extras: Extras) -> list[dict[str, Any]]:
    load_ = extras.results.get("load") or {}
    verify_ = extras.results.get("verify") or {}
    rows = [
        {
            "log_id": f.get("log_id"),
            "what": f.get("status"),
            "http": f.get("http_status"),
            "reason": f.get("error"),
        }
        for f in load_.get("failures") or []
    ]
    rows += [
        {
            "log_id": m.get("log_id"),
            "what": m.get("status"),
            "http": None,
            "reason": m.get("reason"),
        }
        for m in verify_.get("mismatches") or []
    ]
    return rows


# ---------------------------------------------------------------------------------------------
# report.md


def render_markdown(data: Mapping[str, Any], extras: Extras) -> str:
    def md(value: Any) -> str:
        return _fmt(value).replace("|", "\\|").replace("\n", " ")

    def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(md(c) for c in row) + " |" for row in rows]
        return [*lines, ""]

    w = data["window"]
    cause, sentence, others = headline(data)
    lines = [f"# aigw-feedback run {data['run_id']}: **{status_word(data)}**", ""]
    if cause is not None:
        lines += [f"**Why:** {md(cause)}", ""]
    elif sentence is not None:
        lines += [sentence, ""]
    lines += [f"- {md(p)}" for p in others] + ([""] if others else [])
    lines += [
        f"Job `{data['job']}`, gateway `{data['gateway_id']}`, window {w['start']} .. {w['end']}, "
        f"{data['started_at']} → {_fmt(data['finished_at'])}. Exit code {data['exit_code']}.",
        "",
    ]
    if data["not_run"]:
        lines += [f"Not run: {', '.join(data['not_run'])}.", ""]
    lines += ["## Numbers", ""]
    lines += [f"- {'✓' if ok else '✗ does not add up:'} {text}" for text, ok in sums(data)]
    lines.append("")
    rows = []
    for name in ("extract", "plan", "load", "verify"):
        sec = data[name]
        shown = ", ".join(f"{k} {_fmt(v)}" for k, v in sec.items() if k != "ran")
        rows.append((name, shown if sec["ran"] else "not run"))
    lb = data["labels"]
    rows.insert(
        1,
        (
            "labels",
            (
                f"total {_fmt(lb['total'])}, conflicts {_fmt(lb['conflicts'])}, csv "
                + ", ".join(f"{k} {_fmt(v)}" for k, v in lb["csv"].items())
            )
            if lb["ran"]
            else "not run",
        ),
    )
    req = data["requests"]
    rows.append(
        (
            "requests",
            f"total {_fmt(req['total'])}, budget {_fmt(req['budget_per_s'])}/s, utilisation "
            f"{_pct(req['utilisation'])} (load {_pct(req['load_utilisation'])})",
        )
    )
    lines += table(["stage", "numbers"], rows)
    if lb["by_source"]:
        lines += ["## Labels by source", ""]
        lines += table(["source", "labels"], [(k, _count(v)) for k, v in lb["by_source"].items()])
    if extras.by_model:
        lines += ["## Labels by provider and model", ""]
        lines += table(
            ["provider", "model", "labels", "+1", "-1", "to patch"],
            [
                (r["provider"], r["model"], r["labels"], r["positive"], r["negative"], r["patch"])
                for r in extras.by_model[:MAX_ROWS]
            ],
        )
    if extras.feedback:
        lines += ["## Feedback on the labeled logs", ""]
        lines += table(
            ["feedback", "before", "planned", "after"],
            [(r["value"], r["before"], r["planned"], r["after"]) for r in extras.feedback],
        )
        if extras.feedback_note:
            lines += [extras.feedback_note, ""]
    failures = _failures(extras)
    if failures:
        lines += [f"## Failures ({_fmt(_failure_count(data, failures))})", ""]
        lines += table(
            ["log", "what", "HTTP", "reason"],
            [(r["log_id"], r["what"], r["http"], r["reason"]) for r in failures[:MAX_ROWS]],
        )
    if extras.rejects:
        lines += [f"## Rejected CSV rows ({_fmt(_rejected(data, extras))})", ""]
        lines += table(
            ["file", "line", "reason"],
            [(r["file"], r["line"], r["reason"]) for r in extras.rejects[:MAX_ROWS]],
        )
    return "\n".join(lines).rstrip() + "\n"


def _count(value: Any) -> Any:
    if isinstance(value, Mapping):
        for key in ("labels", "total", "rows", "count"):
            if key in value:
                return value[key]
        return json.dumps(value)
    return value


def _failure_count(data: Mapping[str, Any], listed: Sequence[Any]) -> int:
    """Failed, gone, mismatched and unverifiable changes (the lists in the results are capped)."""
    ld, vf = data["load"], data["verify"]
    keys = [(ld, "failed"), (ld, "gone"), (vf, "mismatched"), (vf, "unverifiable")]
    return max(len(listed), sum(int(sec.get(k) or 0) for sec, k in keys))


def _rejected(data: Mapping[str, Any], extras: Extras) -> Any:
    return data["labels"]["csv"].get("rejected") or len(extras.rejects)


def _pct(value: Any) -> str:
    return "–" if value is None else f"{float(value) * 100:.0f}%"


# ---------------------------------------------------------------------------------------------
# report.html


class Markup(str):
    """Text that is already HTML. Everything else is escaped when it is put into the page."""


def esc(value: Any) -> Markup:
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(_fmt(value), quote=True))


def el(tag: str, *children: Any, **attrs: Any) -> Markup:
    attr = "".join(
        f' {k.rstrip("_").replace("_", "-")}="{html.escape(str(v), quote=True)}"'
        for k, v in attrs.items()
        if v is not None
    )
    return Markup(f"<{tag}{attr}>" + "".join(esc(c) for c in children) + f"</{tag}>")


def html_table(header: Sequence[Any], rows: Iterable[Sequence[Any]], **attrs: Any) -> Markup:
    head = el("thead", el("tr", *(el("th", h) for h in header)))
    body = el("tbody", *(el("tr", *(el("td", c) for c in row)) for row in rows))
    return el("table", head, body, **attrs)


def render_value(value: Any, depth: int = 0) -> Markup:
    """Any JSON value as HTML (the label analysis has no fixed shape): maps become tables."""
    if isinstance(value, Mapping):
        if value and all(isinstance(v, Mapping) for v in value.values()) and depth < 3:
            cols: list[str] = []
            for v in value.values():
                cols += [k for k in v if k not in cols]
            if all(not isinstance(v.get(c), Mapping | list) for v in value.values() for c in cols):
                return html_table(
                    ["", *cols], ([k, *(v.get(c) for c in cols)] for k, v in value.items())
                )
        return el(
            "table",
            el(
                "tbody",
                *(
                    el("tr", el("th", k), el("td", render_value(v, depth + 1)))
                    for k, v in value.items()
                ),
            ),
            class_="kv",
        )
    if isinstance(value, list):
        if value and all(isinstance(v, Mapping) for v in value):
            cols = []
            for v in value:
                cols += [k for k in v if k not in cols]
            return html_table(
                cols, ([render_value(v.get(c), depth + 1) for c in cols] for v in value[:MAX_ROWS])
            )
        return esc(", ".join(_fmt(v) for v in value))
    return esc(value)


def render_analysis(analysis: Any) -> Markup:
    """The label analysis: its plain numbers in one table, then each per-source table full width."""
    if not isinstance(analysis, Mapping):
        return render_value(analysis)
    plain = {k: v for k, v in analysis.items() if not isinstance(v, Mapping | list)}
    parts: list[Markup] = [render_value(plain)] if plain else []
    for key, value in analysis.items():
        if key not in plain:
            parts += [
                el("h3", key.replace("_", " ")),
                el("div", render_value(value), class_="wide"),
            ]
    return el("div", *parts)


def timeline_svg(timeline: Sequence[Sequence[int]], budget: float | None) -> Markup:
    """PATCH calls per second over the load, against the budget line. Inline SVG, no script."""
    if not timeline:
        return el("p", "No PATCH requests recorded.", class_="muted")
    start, end = timeline[0][0], timeline[-1][0]
    span = end - start + 1
    buckets = min(120, span)
    size = math.ceil(span / buckets)
    buckets = math.ceil(span / size)
    per = [0.0] * buckets
    for sec, n in timeline:
        per[(sec - start) // size] += n / size
    top = max([*per, budget or 0.0]) * 1.15 or 1.0
    width, height, pad = 720, 220, 36
    bar_w = (width - pad - 8) / buckets
    parts: list[str] = []
    for i, rate in enumerate(per):
        h = (height - pad) * rate / top
        x = pad + i * bar_w
        title = f"{_fmt(size * i)}–{_fmt(size * (i + 1))} s: {rate:.2f} requests/s"
        parts.append(
            f'<rect x="{x:.1f}" y="{height - pad - h:.1f}" width="{max(bar_w - 1, 0.5):.1f}" '
            f'height="{h:.1f}" class="bar"><title>{html.escape(title)}</title></rect>'
        )
    if budget:
        y = height - pad - (height - pad) * budget / top
        parts.append(
            f'<line x1="{pad}" x2="{width - 8}" y1="{y:.1f}" y2="{y:.1f}" class="budget"/>'
        )
        parts.append(
            f'<text x="{width - 10}" y="{y - 4:.1f}" text-anchor="end" class="lbl">'
            f"budget {budget:.2f}/s</text>"
        )
    for frac in (0.0, 0.5, 1.0):
        value = top / 1.15 * frac
        y = height - pad - (height - pad) * value / top
        parts.append(
            f'<text x="{pad - 4}" y="{y + 4:.1f}" text-anchor="end" class="lbl">{value:.1f}</text>'
        )
    parts.append(f'<text x="{pad}" y="{height - 12}" class="lbl">0 s</text>')
    parts.append(
        f'<text x="{width - 8}" y="{height - 12}" text-anchor="end" class="lbl">{span} s</text>'
    )
    parts.append(
        f'<text x="{pad}" y="12" class="lbl">PATCH requests per second (bucket {size} s)</text>'
    )
    return Markup(
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="requests over time against the budget">{"".join(parts)}</svg>'
    )


CSS = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
main{max-width:1040px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:17px;margin:28px 0 8px}
.badge{display:inline-block;padding:2px 10px;border-radius:12px;color:#fff;font-weight:600;font-size:14px;vertical-align:middle}
.ok{background:#1f8a4c}
.nothing_to_do{background:#4a6a8a}
.partial{background:#c77d00}
.failed{background:#c0392b}
.muted{color:#667}
.card{background:#fff;border:1px solid #e2e5ea;border-radius:8px;padding:14px 18px;margin:10px 0}
.card.cause{border-left:6px solid #c0392b;font-size:16px;background:#fdf3f2}
.card.cause.partial-cause{border-left-color:#c77d00;background:#fdf7ec}
.card.note{border-left:6px solid #c77d00}
.card p{margin:0}
.card ul{margin:8px 0 0;padding-left:22px}
.card.note ul{margin:0}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:10px}
.num{background:#fff;border:1px solid #e2e5ea;border-radius:8px;padding:10px 14px}
.num b{display:block;font-size:22px}
.num span{color:#667;font-size:13px}
table{border-collapse:collapse;width:100%;background:#fff;margin:6px 0;font-size:14px}
th,td{border:1px solid #e2e5ea;padding:4px 8px;text-align:left;vertical-align:top;word-break:break-word}
th{background:#f0f2f5;word-break:normal}
h3{font-size:15px;margin:16px 0 4px}
.wide{overflow-x:auto}
.wide table{width:auto}
.wide td,.wide th{white-space:nowrap}
table.kv th{width:28%}
.sum-ok::before{content:"✓ ";color:#1f8a4c;font-weight:700}
.sum-bad::before{content:"✗ ";color:#c0392b;font-weight:700}
svg .bar{fill:#4a78c2}
svg .budget{stroke:#c0392b;stroke-width:2;stroke-dasharray:6 4}
svg .lbl{font-size:11px;fill:#556}
code{background:#eef0f3;padding:1px 4px;border-radius:4px}
"""


def render_html(data: Mapping[str, Any], extras: Extras) -> str:
    status = str(data["status"])
    w = data["window"]
    head = [
        el(
            "h1",
            "aigw-feedback run ",
            el("code", data["run_id"]),
            " ",
            el("span", status_word(data), class_=f"badge {status}"),
        )
    ]
    cause, sentence, others = headline(data)
    rest = [el("ul", *(el("li", p) for p in others))] if others else []
    if cause is not None:
        kind = "cause partial-cause" if status == "partial" else "cause"
        head.append(el("div", el("p", el("b", "Why: "), cause), *rest, class_=f"card {kind}"))
    else:
        if sentence is not None:
            head.append(el("div", el("p", sentence), class_="card ok-card"))
        if rest:
            head.append(el("div", *rest, class_="card note"))
    head.append(
        el(
            "p",
            f"Job {data['job']} · gateway {data['gateway_id']} · window {w['start']} .. {w['end']} · "
            f"{data['started_at']} → {_fmt(data['finished_at'])} · exit code {data['exit_code']}",
            class_="muted",
        )
    )
    if data["not_run"]:
        head.append(el("p", "Not run: " + ", ".join(data["not_run"]), class_="muted"))

    lb, pl_, ld, vf, req = (
        data["labels"],
        data["plan"],
        data["load"],
        data["verify"],
        data["requests"],
    )
    tiles = [
        ("logs extracted", data["extract"]["logs"]),
        ("labels", lb["total"]),
        ("to patch", pl_["patch"]),
        ("patched", ld["patched"]),
        ("failed", ld["failed"]),
        ("verified", vf["verified"]),
        ("requests", req["total"]),
        ("budget used", _pct(req["utilisation"])),
    ]
    body: list[Markup] = [
        *head,
        el(
            "div",
            *(el("div", el("b", v), el("span", k), class_="num") for k, v in tiles),
            class_="grid",
        ),
    ]

    body.append(el("h2", "Numbers that add up"))
    body.append(
        el("ul", *(el("li", text, class_="sum-ok" if ok else "sum-bad") for text, ok in sums(data)))
    )
    stage_rows = []
    for name in ("extract", "plan", "load", "verify"):
        sec = data[name]
        stage_rows.append(
            [
                name,
                ", ".join(f"{k} {_fmt(v)}" for k, v in sec.items() if k != "ran")
                if sec["ran"]
                else "not run",
            ]
        )
    stage_rows.insert(
        1,
        [
            "labels",
            ", ".join(
                [f"total {_fmt(lb['total'])}", f"conflicts {_fmt(lb['conflicts'])}"]
                + [f"csv {k} {_fmt(v)}" for k, v in lb["csv"].items()]
            )
            if lb["ran"]
            else "not run",
        ],
    )
    stage_rows.append(
        [
            "requests",
            f"total {_fmt(req['total'])}, budget {_fmt(req['budget_per_s'])}/s, "
            f"utilisation {_pct(req['utilisation'])} (load {_pct(req['load_utilisation'])})",
        ]
    )
    body.append(html_table(["stage", "numbers"], stage_rows))

    if lb["by_source"]:
        body.append(el("h2", "Labels by source"))
        body.append(render_value(lb["by_source"]))
    if extras.by_model:
        body.append(el("h2", "Labels by provider and model"))
        body.append(
            html_table(
                ["provider", "model", "labels", "+1", "-1", "to patch"],
                (
                    [
                        r["provider"],
                        r["model"],
                        r["labels"],
                        r["positive"],
                        r["negative"],
                        r["patch"],
                    ]
                    for r in extras.by_model[:MAX_ROWS]
                ),
            )
        )
    if extras.feedback:
        body.append(el("h2", "Feedback on the labeled logs, before and after"))
        body.append(
            html_table(
                ["feedback", "before", "planned", "after"],
                ([r["value"], r["before"], r["planned"], r["after"]] for r in extras.feedback),
            )
        )
        if extras.feedback_note:
            body.append(el("p", extras.feedback_note, class_="muted"))
    if extras.analysis is not None:
        body.append(el("h2", "Label analysis"))
        body.append(render_analysis(extras.analysis))
    body.append(el("h2", "Requests over time"))
    body.append(el("div", timeline_svg(extras.timeline, req["budget_per_s"]), class_="card"))
    if ld["ran"]:
        body.append(
            el(
                "p",
                f"{_fmt(ld['requests'])} load requests, {_fmt(ld['rate_limited'])} rate-limited (429), "
                f"{_fmt(ld['retries'])} retries, {_fmt(ld['seconds'])} s.",
                class_="muted",
            )
        )
    failures = _failures(extras)
    body.append(el("h2", f"Failures ({_fmt(_failure_count(data, failures))})"))
    if failures:
        body.append(
            html_table(
                ["log", "what", "HTTP", "reason"],
                ([r["log_id"], r["what"], r["http"], r["reason"]] for r in failures[:MAX_ROWS]),
            )
        )
        if len(failures) > MAX_ROWS:
            body.append(
                el(
                    "p",
                    f"… and {len(failures) - MAX_ROWS} more (see load.result.json, verify.parquet)",
                    class_="muted",
                )
            )
    else:
        body.append(el("p", "None.", class_="muted"))
    body.append(el("h2", f"Rejected CSV rows ({_fmt(_rejected(data, extras))})"))
    if extras.rejects:
        body.append(
            html_table(
                ["file", "line", "reason", "row"],
                (
                    [r["file"], r["line"], r["reason"], r.get("row")]
                    for r in extras.rejects[:MAX_ROWS]
                ),
            )
        )
    else:
        body.append(el("p", "None.", class_="muted"))

    page = el(
        "html",
        el(
            "head",
            Markup('<meta charset="utf-8">'),
            Markup('<meta name="viewport" content="width=device-width,initial-scale=1">'),
            el("title", f"aigw-feedback {data['run_id']} {status_word(data).lower()}"),
            el("style", Markup(CSS)),
        ),
        el("body", el("main", *body)),
        lang="en",
    )
    return "<!doctype html>\n" + page + "\n"
