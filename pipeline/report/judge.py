"""The run's status, its problems in plain words (the cause first) and its exit code.

Status: ``ok`` — every planned change applied and verified (exit 0); ``nothing_to_do`` — the plan
had no change to make and nothing went wrong (exit 0: a quiet night is a success); ``partial`` — some
changes were applied but others failed, are pending or unverified, or an error stopped the run
after some were applied (exit 1, or the error's exit code); ``failed`` — no plan, nothing could be
applied, or an error stopped the run before anything was (exit 1, or the error's: 3 for a refused
token). A log that disappeared between plan and load (``gone``) is listed but does not make a run
partial: there is nothing left to label. ``problems`` puts the cause first: the error, what stopped
the run, the inbox files that were not read; then what it left undone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.config import JobConfig
from pipeline.run_result import Stages

OK_STATUSES = ("ok", "nothing_to_do")

# How each kind of error in outcome.json is named at the head of the report.
ERROR_LEADS = {
    "auth": "the token was refused",
    "permission": "the token lacks a permission",
    "not_found": "not found",
    "unreachable": "the API could not be reached",
    "usage": "a usage or configuration error",
    "damaged": "a file of the run is damaged",
    "input": "an input cannot be used",
    "api": "the API refused a request",
    "internal": "an internal error",
}  # any other kind: "an error"


def judge(
    results: Stages,
    job: JobConfig | None = None,
    *,
    outcome: Mapping[str, Any] | None = None,
    inbox: list[dict[str, Any]] | None = None,
) -> tuple[str, list[str]]:
    """ok | nothing_to_do | partial | failed (dry_run for a dry run's plan), and the reasons in
    plain words, the cause first."""
    outcome = outcome or {}
    causes: list[str] = []
    error = outcome_error(outcome)
    if error is not None:
        causes.append(_error_text(error))
    stopped = str(outcome.get("stopped") or "")
    if stopped:
        causes.append(
            f"the run was {stopped}" if stopped.startswith("stopped ") else
            f"the run stopped early: {stopped}"
        )  # fmt: skip
    causes += [_inbox_text(f) for f in inbox or [] if f.get("status") != "applied"]
    causes += [f"a labeler failed: {e}" for e in (results.label.errors if results.label else ())]
    if outcome.get("dry_run") and results.load is None and error is None and not stopped:
        return "dry_run", causes  # planned on purpose, nothing meant to be written yet
    status, undone = _changes(results, job, stopped_known=bool(stopped))
    if error is not None:
        applied = results.load.patched if results.load else 0
        status = "partial" if applied else "failed"
    return status, causes + undone


def outcome_error(outcome: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The error that stopped the run's last invocation, as outcome.json has it, if any."""
    error = outcome.get("error")
    return error if isinstance(error, Mapping) else None


def exit_code(status: str, error: Mapping[str, Any] | None) -> int:
    """The run's exit code: the error's when an error stopped it (3 for a refused token), else 0
    when it succeeded and 1 when it did not (the report says which changes)."""
    if error is not None and isinstance(error.get("exit_code"), int):
        return int(error["exit_code"])
    return 0 if status in (*OK_STATUSES, "dry_run") else 1


def _changes(
    results: Stages, job: JobConfig | None, *, stopped_known: bool
) -> tuple[str, list[str]]:
    """The status by what happened to the planned changes, and what was left undone."""
    plan_, load_, verify_ = results.plan, results.load, results.verify
    if plan_ is None:
        # A cap or a signal before the plan: unfinished, not failed (the next run continues it).
        return ("partial" if stopped_known else "failed"), [
            "no plan: the run stopped before the plan stage"
        ]
    patches = plan_.patch
    if patches == 0:
        return "nothing_to_do", []
    if load_ is None:
        return "partial", [f"{patches} planned changes were not loaded (load did not run)"]
    problems = []
    patched = load_.patched
    for n, text in (
        (load_.failed, "changes failed"),
        (load_.pending, "changes are still pending"),
    ):
        if n:
            problems.append(f"{n} {text}")
    if load_.stopped_early and not stopped_known:
        problems.append(f"the load stopped early: {load_.stop_reason}")
    verify_expected = job.verify.enabled if job is not None else plan_.verify_enabled
    if verify_ is None:
        if verify_expected and patched:
            problems.append(f"{patched} applied changes were not verified (verify did not run)")
    else:
        for n, text in ((verify_.mismatched, "changes read back different"),
                        (verify_.unverifiable, "changes could not be verified")):  # fmt: skip
            if n:
                problems.append(f"{n} {text}")
        unchecked = patched - verify_.checked
        if unchecked > 0:
            problems.append(f"{unchecked} applied changes were not read back")
    if not problems:
        return "ok", []
    stopped = stopped_known or bool(load_.stopped_early)
    if patched == 0 and not stopped:
        return "failed", ["nothing could be applied", *problems]
    return "partial", problems  # some changes landed, or a cap/signal left the rest for later


def _error_text(error: Mapping[str, Any]) -> str:
    lead = ERROR_LEADS.get(str(error.get("kind")), "an error")
    stage = f" during {error['stage']}" if error.get("stage") else ""
    message = str(error.get("message") or "").strip()
    return f"{lead}{stage}: {message}" if message else f"{lead}{stage}"


def _inbox_text(entry: Mapping[str, Any]) -> str:
    """An inbox file that was not read, with its reason and where it went."""
    name, status = entry.get("name") or "?", str(entry.get("status") or "")
    detail = str(entry.get("detail") or "").strip()
    verb = {
        "unreadable": "could not be read",
        "already_applied": "was not applied again",
        "missing": "is missing",
    }.get(status, f"was not read ({status.replace('_', ' ')})")
    text = f"inbox file {name} {verb}" + (f": {detail}" if detail else "")
    if status == "unreadable" and entry.get("path"):
        text += f" (moved to {entry['path']} in the inbox)"
    return text
