"""The secrets this process knows, and the one redaction every output passes through.

Who registers: ``config.load_job`` registers the API token and the values of the variables a job
lists in ``[gateway] secret_env`` as soon as it reads them, so a job loaded from Python is as safe
as one loaded by the CLI. Who scrubs: every log line (``logging_setup``), every printed error
(``cli``) and every file written through ``store`` (text and JSON files, and the string columns of
Parquet files in a run folder).

``scrub`` replaces each registered value, also in the forms JSON and HTML escaping give it, and
anything that looks like a bearer credential, with ``***``. Values shorter than
``MIN_SECRET_LENGTH`` are not registered: they would match ordinary words and numbers (a "true"
would turn every JSON boolean into ``***``), and no API token is that short.

This module imports nothing else from the package, so every layer may use it, and pyarrow only
when a table is scrubbed, so light commands (``--help``, a run up to its first request) do not
load it.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

MASK = "***"
MIN_SECRET_LENGTH = 8

_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&#34;", "'": "&#39;"}
_secrets: set[str] = set()
_forms: list[str] = []  # every registered value and its escaped forms, longest first


class Secret:
    """A string that never shows itself in repr, str, logs or exceptions."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _escaped_forms(value: str) -> set[str]:
    html = "".join(_HTML.get(c, c) for c in value)
    return {
        value,
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        html,
        html.replace("&#34;", "&quot;").replace("&#39;", "&#x27;"),
    }


def redact(secret: Secret | str | None) -> None:
    """Never let this value (stripped of surrounding whitespace) appear in any output from now on."""
    if secret is None:
        return
    value = (secret.reveal() if isinstance(secret, Secret) else secret).strip()
    if len(value) < MIN_SECRET_LENGTH or value in _secrets:
        return
    _secrets.add(value)
    forms = {form for known in _secrets for form in _escaped_forms(known)}
    _forms[:] = sorted(forms, key=len, reverse=True)


def is_secret(value: str) -> bool:
    """Whether this value (stripped) is a registered secret."""
    return value.strip() in _secrets


def scrub(text: str) -> str:
    """The text with every registered secret and bearer credential replaced by ***."""
    for form in _forms:
        if form in text:
            text = text.replace(form, MASK)
    return _BEARER.sub(r"\1" + MASK, text)


def scrub_table(table: pa.Table) -> pa.Table:
    """The table with every registered secret replaced by *** in its string columns.

    Only the registered values: the bearer pattern is for text meant for people, and rewriting
    log data that merely resembles a credential would change what the stage hands over.
    """
    if not _secrets:
        return table
    import pyarrow as pa  # here, not at the top: every layer imports this module, light ones too
    import pyarrow.compute as pc

    for i, column in enumerate(table.columns):
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            continue
        cleaned = column
        for form in _forms:
            cleaned = pc.replace_substring(cleaned, pattern=form, replacement=MASK)
        table = table.set_column(i, table.schema.field(i), cleaned)
    return table
