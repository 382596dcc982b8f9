"""`aigw-feedback check JOB`: a preflight that writes nothing and spends two requests.

What it finds out, from the answers of one list request for the newest log and one for the last
24 hours (``per_page=1``: their ``total_count`` is the count, the entry the newest log):

- the token is accepted, the account and the gateway exist, and reading works;
- the bucket: its quota and window (``Ratelimit-Policy``) and what remains now (``Ratelimit``), and
  whether someone else is using it (fewer remain than our own two requests explain);
- how many logs the gateway holds and how old its newest log is. A gateway in use whose newest log
  is days old is most likely on Cloudflare's new logging (accounts created from 2026-09-24 get
  "Logs powered by Workers Observability", which this REST API is not documented to serve), or has
  logging switched off;
- what a nightly run costs at the last day's volume (list + PATCH + verify requests) against the
  job's budget and ``max_duration``.

Edit permission cannot be proven without writing: the first PATCH of a run proves it.
``--write-probe`` does that now with one more request, rewriting the newest log's feedback to
the value it already has (no change to any log).

Exit codes as for ``run``: 0 all is well, 1 something needs a look (the findings say what),
2 the gateway or account does not exist, 3 the token was refused.
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from pipeline.config import JobConfig
from pipeline.errors import AuthError, GatewayNotFoundError, TransportError
from pipeline.gateway import open_client
from pipeline.gateway.client import LogsClient
from pipeline.gateway.lookup import BATCH
from pipeline.redaction import redact
from pipeline.timefmt import human, iso, parse_iso

STALE_AFTER = timedelta(days=2)  # a gateway in use logs every day; two quiet days say "look"
_REMAINING = re.compile(r"\br\s*=\s*(\d+)")
_POLICY = re.compile(r"\bq\s*=\s*(\d+).*?\bw\s*=\s*(\d+(?:\.\d+)?)")


@dataclass(frozen=True)
class Bucket:
    """The rate-limit bucket the token draws on, as the server's headers describe it."""

    quota: int | None = None  # requests per window (Ratelimit-Policy q)
    window_seconds: float | None = None  # (Ratelimit-Policy w)
    remaining: int | None = None  # now (Ratelimit r, or x-ratelimit-remaining)
    used_by_others: int | None = None  # what our own requests do not explain


@dataclass(frozen=True)
class CheckResult:
    job: str
    gateway_id: str
    base_url: str
    token: str  # accepted | refused
    gateway: str  # found | not_found | unreachable | unknown
    edit: str  # unproven | proven | refused
    logs: int | None = None
    newest_at: str | None = None
    newest_age_seconds: float | None = None
    daily_logs: int | None = None
    nightly_requests: int | None = None
    nightly_seconds: float | None = None
    bucket: Bucket = field(default_factory=Bucket)
    requests: int = 0
    findings: tuple[str, ...] = ()  # what needs a look, in plain words
    exit_code: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "gateway_id": self.gateway_id,
            "base_url": self.base_url,
            "token": self.token,
            "gateway": self.gateway,
            "edit": self.edit,
            "logs": self.logs,
            "newest_at": self.newest_at,
            "newest_age_seconds": self.newest_age_seconds,
            "daily_logs": self.daily_logs,
            "nightly_requests": self.nightly_requests,
            "nightly_seconds": self.nightly_seconds,
            "bucket": self.bucket.__dict__,
            "requests": self.requests,
            "findings": list(self.findings),
            "exit_code": self.exit_code,
        }

    def summary(self) -> str:
        ok, bad = "ok  ", "FAIL"
        lines = [f"check job {self.job} gateway {self.gateway_id} at {self.base_url}"]
        lines.append(f"  {ok if self.token == 'accepted' else bad} token {self.token}")
        lines.append(f"  {ok if self.gateway == 'found' else bad} gateway {self.gateway}")
        edit = {"proven": ok, "refused": bad}.get(self.edit, "?   ")
        lines.append(
            f"  {edit} AI Gateway Edit {self.edit}"
            + (
                " (the first PATCH proves it; or use --write-probe)"
                if self.edit == "unproven"
                else ""
            )
        )
        if self.logs is not None:
            age = f", newest {human(self.newest_age_seconds)} old" if self.newest_at else ""
            lines.append(
                f"       logs held: {self.logs:,}{age}; last 24 h: {self.daily_logs or 0:,}"
            )
        b = self.bucket
        if b.quota is not None:
            left = f", {b.remaining:,} left now" if b.remaining is not None else ""
            lines.append(f"       bucket: {b.quota:,} requests per {b.window_seconds:.0f} s{left}")
        if self.nightly_requests is not None and self.nightly_seconds is not None:
            lines.append(
                f"       a nightly run at this volume: about {self.nightly_requests:,} "
                f"request{'s' if self.nightly_requests != 1 else ''}, "
                f"{human(self.nightly_seconds)} at the job's budget"
            )
        lines += [f"  note {text}" for text in self.findings]
        lines.append(f"requests spent: {self.requests}; exit {self.exit_code}")
        return "\n".join(lines)


async def check(
    job: JobConfig,
    *,
    write_probe: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    now: datetime | None = None,
) -> CheckResult:
    """The preflight (see the module docstring). Writes nothing unless ``write_probe``."""
    redact(job.gateway.token)
    job.gateway.require_token()
    now = now or datetime.now(UTC)
    async with open_client(job, transport=transport, clock=clock, sleep=sleep) as client:
        try:
            return await _look(job, client, now, write_probe)
        except AuthError as exc:
            return _stopped(job, client, "refused", "unknown", str(exc), 3)
        except GatewayNotFoundError as exc:
            return _stopped(job, client, "accepted", "not_found", str(exc), 2)
        except TransportError as exc:
            where = f"the API at {job.gateway.base_url} could not be reached: {exc}"
            return _stopped(job, client, "unknown", "unreachable", where, 1)


def _stopped(
    job: JobConfig, client: LogsClient, token: str, gateway: str, finding: str, code: int
) -> CheckResult:
    """What check can say when its first request already failed."""
    return CheckResult(
        job.name, job.gateway.gateway_id, job.gateway.base_url, token=token, gateway=gateway,
        edit="unproven", requests=client.stats.requests, findings=(finding,), exit_code=code,
    )  # fmt: skip


async def _look(
    job: JobConfig, client: LogsClient, now: datetime, write_probe: bool
) -> CheckResult:
    newest = await client.list_logs(per_page=1, direction="desc")
    bucket = _bucket(client.stats.limit_headers, client.stats.requests, job)
    since = {"key": "created_at", "operator": "gt", "value": [iso(now - timedelta(days=1))]}
    day = await client.list_logs(filters=[since], per_page=1)
    findings: list[str] = []
    entry = newest.entries[0] if newest.entries else None
    newest_at = str(entry.get("created_at")) if entry else None
    age = (now - parse_iso(newest_at)).total_seconds() if newest_at else None
    if newest.total_count == 0:
        findings.append(
            "the gateway holds no logs: is logging on for it, and are requests going through it?"
        )
    elif age is not None and age > STALE_AFTER.total_seconds():
        findings.append(
            f"the newest log is {human(age)} old: this gateway is probably on Cloudflare's new "
            "logging (accounts created from 2026-09-24: Logs powered by Workers Observability, "
            "which this API is not documented to serve) or its logging is off; check the "
            "gateway's Logs settings in the dashboard before scheduling the job"
        )
    if bucket.used_by_others:
        findings.append(
            f"about {bucket.used_by_others:,} requests of this bucket were used by something else "
            "in the last window (the dashboard, another token of the same user, another host): "
            "the job slows down to leave them room; an account-owned token has a bucket of its own"
        )
    daily = day.total_count
    lists = math.ceil(daily / BATCH) + 1
    verify = math.ceil(daily / BATCH) if job.verify.enabled else 0
    nightly = lists + daily + verify  # at most one PATCH per log of the day
    seconds = nightly / job.budget.rate_per_second
    cap = job.budget.max_duration_seconds
    if cap is not None and seconds > cap:
        findings.append(
            f"labeling every log of a day ({daily:,}) could take {human(seconds)}, more than "
            f"max_duration ({human(cap)}): the run would stop and continue the next night"
        )
    edit = "unproven"
    if write_probe and entry is not None:
        try:
            await client.patch_log(str(entry["id"]), {"feedback": entry.get("feedback")})
            edit = "proven"
        except AuthError as exc:
            findings.insert(0, str(exc))
            edit = "refused"
    code = 3 if edit == "refused" else (1 if findings else 0)
    return CheckResult(
        job.name, job.gateway.gateway_id, job.gateway.base_url,
        token="accepted", gateway="found", edit=edit, logs=newest.total_count,
        newest_at=newest_at, newest_age_seconds=round(age, 1) if age is not None else None,
        daily_logs=daily, nightly_requests=nightly, nightly_seconds=round(seconds, 1),
        bucket=bucket, requests=client.stats.requests, findings=tuple(findings), exit_code=code,
    )  # fmt: skip


def _bucket(headers: Mapping[str, str], ours: int, job: JobConfig) -> Bucket:
    """The bucket from the headers of our first answer (``ours``: requests we have sent)."""
    lower = {k.lower(): v for k, v in headers.items()}
    policy = _POLICY.search(lower.get("ratelimit-policy", ""))
    quota = int(policy.group(1)) if policy else job.budget.requests_per_period
    window = float(policy.group(2)) if policy else job.budget.period_seconds
    left = _REMAINING.search(lower.get("ratelimit", ""))
    remaining = int(left.group(1)) if left else None
    if remaining is None and lower.get("x-ratelimit-remaining", "").isdigit():
        remaining = int(lower["x-ratelimit-remaining"])
    others = None if remaining is None else max(0, quota - ours - remaining - 1)
    return Bucket(quota, window, remaining, others)


def learned_by_run(
    job: JobConfig, client: LogsClient, *, window_logs: int | None, extracted: bool
) -> list[str]:
    """What a run found out for free from its own answers, in the words ``check`` uses.

    ``window_logs``: what the extract found (None: no extract ran). A window that held no logs
    is the run's version of check's "newest log is days old" (the run does not spend a request on
    the newest log; ``check`` does). The bucket: the server's limit when it differs from the
    job's, and answers that showed someone else drawing on it.
    """
    notes: list[str] = []
    if extracted and window_logs == 0:
        notes.append(
            "the window held no logs: if this gateway is in use, its logging is off or it is on "
            "Cloudflare's new logging (accounts created from 2026-09-24), which this API is not "
            f"documented to serve; `aigw-feedback check {job.path.name}` reads the newest log's age"
        )
    bucket = _bucket(client.stats.limit_headers, 0, job)
    own = (job.budget.requests_per_period, job.budget.period_seconds)
    if client.stats.limit_headers and (bucket.quota, bucket.window_seconds) != own:
        notes.append(
            f"the server's limit is {bucket.quota:,} requests per {bucket.window_seconds:.0f} s "
            f"(the job's budget: {own[0]:,} per {own[1]:.0f} s); the run kept to the lower rate"
        )
    stats = getattr(client.budget, "stats", None)  # the real budget's; a test's NoBudget has none
    slowdowns = int(getattr(stats, "slowdowns", 0))
    if slowdowns:
        notes.append(
            f"{slowdowns:,} answers showed something else drawing on this token's bucket (the "
            "dashboard, another token of the same user, another host): the job slowed down to "
            "leave it room; an account-owned token has a bucket of its own"
        )
    return notes
