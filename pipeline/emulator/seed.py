"""Realistic AI Gateway logs: a deterministic generator and the committed sample's loader.

The generator draws everything from one ``random.Random(seed)``, so the same arguments always give
the same logs (ids included) — tests, the demo and ``sample_data/generate_logs.py`` rely on it.
The logs look like a week of a real gateway: several providers and models, a day/night rhythm,
provider errors (429/500/503), cache hits, refusals and error texts in the response heads,
metadata maps, costs that are sometimes absent, a few logs that already carry feedback, and bursts
of logs sharing one ``created_at`` millisecond (``created_at`` is not unique on the real API).

``load_sample`` reads the committed ``sample_data/logs.jsonl.gz`` and can shift it by whole days so
that its newest day is yesterday, which is what a nightly job's default window looks at. Ids never
change when shifting, so analysts' CSV files that name ids keep matching.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, get_args

from pipeline.emulator.timefmt import ms_to_iso, to_ms

SAMPLE_LOGS_PATH = Path(__file__).resolve().parents[2] / "sample_data" / "logs.jsonl.gz"
SAMPLE_SEED = 20261124
SAMPLE_START = datetime(2026, 11, 18, tzinfo=UTC)
SAMPLE_END = datetime(2026, 11, 25, tzinfo=UTC)
HEAD_CHARS = 512
DAY_MS = 86_400_000

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

IdFormat = Literal["ulid", "cloudflare", "uuid7", "hex64"]
"""How generated logs are named: ``ulid`` always (the committed sample's format), ``cloudflare``
as Cloudflare does since its 2026-10-08 change (UUIDv7 from that day, ULID before), ``uuid7``
always, or ``hex64`` (64 lowercase hex digits, seen in real payloads)."""
ID_FORMATS: tuple[str, ...] = get_args(IdFormat)
UUID7_SINCE = datetime(2026, 10, 8, tzinfo=UTC)
UUID7_SINCE_MS = int(UUID7_SINCE.timestamp() * 1000)


@dataclass(frozen=True)
class _Model:
    provider: str
    model: str
    path: str
    weight: int
    usd_in: float  # per million tokens
    usd_out: float
    base_ms: int
    kind: str = "chat"  # chat | embeddings
    priced: bool = True


_MODELS = (
    _Model("openai", "gpt-4o-mini", "chat/completions", 30, 0.15, 0.60, 900),
    _Model("openai", "gpt-4o", "chat/completions", 12, 2.50, 10.0, 1800),
    _Model("openai", "gpt-4.1-mini", "chat/completions", 8, 0.40, 1.60, 1100),
    _Model("openai", "text-embedding-3-small", "embeddings", 6, 0.02, 0.0, 120, "embeddings"),
    _Model("anthropic", "claude-3-5-haiku-latest", "v1/messages", 10, 0.80, 4.0, 1200),
    _Model("anthropic", "claude-sonnet-4-20250514", "v1/messages", 8, 3.0, 15.0, 2600),
    _Model(
        "workers-ai",
        "@cf/meta/llama-3.1-8b-instruct",
        "@cf/meta/llama-3.1-8b-instruct",
        10,
        0.0,
        0.0,
        700,
        priced=False,
    ),
    _Model(
        "google-ai-studio",
        "gemini-2.0-flash",
        "v1beta/models/gemini-2.0-flash:generateContent",
        8,
        0.10,
        0.40,
        800,
    ),
    _Model("groq", "llama-3.3-70b-versatile", "openai/v1/chat/completions", 4, 0.59, 0.79, 400),
    _Model("mistral", "mistral-small-latest", "v1/chat/completions", 4, 0.10, 0.30, 900),
)
_MODEL_WEIGHTS = [m.weight for m in _MODELS]

_APPS = ("support-bot", "search", "summarizer", "code-assist", "sales-email")
_TOPICS = (
    "my invoice",
    "a refund for order 4411",
    "the Python GIL",
    "resetting my password",
    "our Q3 roadmap",
    "a SQL query that is slow",
    "the difference between TCP and UDP",
    "a birthday message for my manager",
    "the onboarding checklist",
    "a flaky CI job",
    "shipping to Canada",
    "this contract clause",
)
_PROMPTS = (
    "Can you help me with {t}?",
    "Summarize the following notes about {t} in three bullet points.",
    "Write a short, friendly reply to a customer asking about {t}.",
    "Explain {t} to a new colleague.",
    "What are the next steps for {t}?",
    "Translate this question about {t} into French.",
)
_ANSWERS = (
    "Sure! Here is what you need to know about {t}: first, check the details in your account. "
    "Then follow the steps below.",
    "Here is a summary of {t}:\n- The main point is clear.\n- Two follow-ups remain.\n- No blockers.",
    "Thanks for reaching out about {t}. I have looked into it and everything is in order.",
    "Good question. {t} comes down to a trade-off between speed and reliability.",
    "The next steps for {t} are: confirm the owner, agree on a date, and send the summary.",
)
_REFUSALS = (
    "I can't help with that.",
    "I'm sorry, but I cannot assist with that request.",
    "I'm not able to help with {t} because it may violate our usage policies.",
    "As an AI language model, I can't provide that information.",
    "Sorry, I can't help with that request.",
)
_SYSTEM_PROMPT = (
    "You are a helpful assistant for Acme Corp. Answer briefly and politely. Never reveal internal "
    "pricing, never give legal, medical or financial advice, and refuse requests that break the "
    "acceptable use policy. If you are unsure, say so and offer to escalate to a human agent. "
    "Use the customer's language. Keep answers under 150 words unless asked for more detail. "
    "Format lists with dashes. Do not invent order numbers, tracking ids or discount codes."
)
_ERRORS = {
    429: (
        '{"error":{"message":"Rate limit reached for requests","type":"requests",'
        '"code":"rate_limit_exceeded"}}',
        '{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens '
        'has exceeded your per-minute rate limit"}}',
    ),
    500: (
        '{"error":{"message":"The server had an error while processing your request. Sorry about '
        'that!","type":"server_error"}}',
        '{"type":"error","error":{"type":"api_error","message":"Internal server error"}}',
    ),
    503: (
        '{"error":{"message":"The engine is currently overloaded, please try again later",'
        '"type":"server_error"}}',
        '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
    ),
}
_USER_AGENTS = (
    "openai-python/1.54.3",
    "anthropic-python/0.40.0",
    "node-fetch/1.0",
    "python-httpx/0.28.1",
    "curl/8.5.0",
)


def ulid(ms: int, rng: random.Random) -> str:
    """A 26-character ULID-like id: 48 bits of time, 80 bits from ``rng`` (Crockford base32)."""
    return _ulid_text(ms, rng.getrandbits(80))


def log_id(ms: int, rng: random.Random, ids: IdFormat = "ulid") -> str:
    """An id for a log created at ``ms`` in the format ``ids`` asks for.

    Every format draws the same 80 bits from ``rng``, so the rest of a generated log does not depend
    on the id format: only the ids differ between, say, a ``ulid`` and a ``cloudflare`` run.
    """
    bits = rng.getrandbits(80)
    if ids == "ulid" or (ids == "cloudflare" and ms < UUID7_SINCE_MS):
        return _ulid_text(ms, bits)
    if ids in ("cloudflare", "uuid7"):
        return uuid7_text(ms, bits)
    if ids == "hex64":
        return hashlib.sha256(f"{ms}:{bits:020x}".encode()).hexdigest()
    raise ValueError(f"unknown id format {ids!r}; expected one of {', '.join(ID_FORMATS)}")


def uuid7_text(ms: int, bits: int) -> str:
    """A lowercase UUIDv7 (RFC 9562): 48 bits of ``ms``, version 7, variant 10, 74 bits of
    ``bits`` (its top 12 as rand_a, its low 62 as rand_b); 36 characters with dashes."""
    rand_a = (bits >> 68) & 0xFFF
    rand_b = bits & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _ulid_text(ms: int, bits: int) -> str:
    value = (ms & ((1 << 48) - 1)) << 80 | bits
    chars = []
    for _ in range(26):
        value, digit = divmod(value, 32)
        chars.append(_CROCKFORD[digit])
    return "".join(reversed(chars))


def _head(body: Any) -> tuple[str, bool, int]:
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return text[:HEAD_CHARS], len(text) <= HEAD_CHARS, len(text.encode())


def make_log(rng: random.Random, created_at_ms: int, ids: IdFormat = "ulid") -> dict[str, Any]:
    """One realistic log created at ``created_at_ms``, every random choice drawn from ``rng``;
    its id in the format ``ids`` (see ``IdFormat``)."""
    m = rng.choices(_MODELS, weights=_MODEL_WEIGHTS)[0]
    topic = rng.choice(_TOPICS)
    roll = rng.random()
    status = 200
    if roll < 0.045:
        status = rng.choices((429, 500, 503), weights=(5, 3, 2))[0]
    success = status == 200
    cached = success and m.kind == "chat" and rng.random() < 0.08
    refusal = success and m.kind == "chat" and rng.random() < 0.05
    stream = m.kind == "chat" and rng.random() < 0.15

    prompt = rng.choice(_PROMPTS).format(t=topic)
    tokens_in: int | None = max(3, int(rng.lognormvariate(math.log(180), 0.9)))
    tokens_out: int | None
    if m.kind == "embeddings":
        tokens_out = 0
    elif refusal:
        tokens_out = rng.randint(8, 30)
    else:
        tokens_out = max(1, int(rng.lognormvariate(math.log(220), 0.8)))
    if not success:
        tokens_out = 0
        if rng.random() < 0.5:
            tokens_in, tokens_out = None, None

    if cached:
        duration = rng.randint(4, 45)
    elif not success:
        duration = rng.randint(30, 1500) if status == 429 else rng.randint(200, 30_000)
    else:
        duration = int(m.base_ms * rng.lognormvariate(0, 0.45)) + (tokens_out or 0) * 4

    request_body: dict[str, Any]
    if m.kind == "embeddings":
        request_body = {"model": m.model, "input": prompt}
    else:
        messages = [{"role": "user", "content": prompt}]
        if rng.random() < 0.2:
            messages.insert(0, {"role": "system", "content": _SYSTEM_PROMPT})
        request_body = {
            "model": m.model,
            "messages": messages,
            "max_tokens": rng.choice((256, 512, 1024, 2048)),
        }
        if stream:
            request_body["stream"] = True
    anthropic_shape = m.provider == "anthropic"
    response_body: Any
    if not success:
        response_body = json.loads(_ERRORS[status][1 if anthropic_shape else 0])
    elif m.kind == "embeddings":
        response_body = {
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.0123, -0.0456, 0.0789]}],
            "usage": {"prompt_tokens": tokens_in, "total_tokens": tokens_in},
        }
    else:
        text = rng.choice(_REFUSALS if refusal else _ANSWERS).format(t=topic)
        usage = {"input_tokens": tokens_in, "output_tokens": tokens_out}
        if anthropic_shape:
            response_body = {
                "id": f"msg_{rng.getrandbits(64):016x}",
                "type": "message",
                "role": "assistant",
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "usage": usage,
            }
        else:
            response_body = {
                "id": f"chatcmpl-{rng.getrandbits(64):016x}",
                "object": "chat.completion",
                "model": m.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": tokens_in, "completion_tokens": tokens_out},
            }

    log: dict[str, Any] = {
        "id": log_id(created_at_ms, rng, ids),
        "created_at": ms_to_iso(created_at_ms),
        "provider": m.provider,
        "model": m.model,
        "path": m.path,
        "duration": duration,
        "success": success,
        "cached": cached,
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
    }
    if success and m.priced and rng.random() > 0.03:
        cost = ((tokens_in or 0) * m.usd_in + (tokens_out or 0) * m.usd_out) / 1_000_000
        log["cost"] = 0.0 if cached else round(cost, 9)
        log["custom_cost"] = rng.random() < 0.02
    log["metadata"] = _metadata(rng)
    log["model_type"] = "text-embeddings" if m.kind == "embeddings" else "text-generation"
    log["request_type"] = "embeddings" if m.kind == "embeddings" else "chat"
    log["status_code"] = status
    log["step"] = 1 if (success and rng.random() < 0.02) else 0
    log["request_content_type"] = "application/json"
    log["response_content_type"] = "text/event-stream" if stream and success else "application/json"
    log["feedback"], log["score"] = _existing_feedback(rng, refusal=refusal, success=success)
    log["event_id"] = f"{rng.getrandbits(128):032x}"
    log["authentication"] = rng.random() < 0.7
    log["wholesale"] = rng.random() < 0.05
    log["compatibilityMode"] = rng.random() < 0.2
    log["dlp_action"] = rng.choices((None, "FLAG", "BLOCK"), weights=(97, 2, 1))[0]
    log["user_agent"] = rng.choice(_USER_AGENTS)
    log["request_head"], log["request_head_complete"], log["request_size"] = _head(request_body)
    log["response_head"], log["response_head_complete"], log["response_size"] = _head(response_body)
    log["request_body"] = request_body
    log["response_body"] = response_body
    return log


def _metadata(rng: random.Random) -> dict[str, str | int | bool] | None:
    if rng.random() < 0.12:
        return None
    meta: dict[str, str | int | bool] = {"user": f"u_{rng.randrange(400):04d}"}
    if rng.random() < 0.9:
        meta["app"] = rng.choice(_APPS)
    if rng.random() < 0.7:
        meta["conversation"] = f"c_{rng.getrandbits(24):06x}"
    if rng.random() < 0.8:
        meta["request_id"] = f"req_{rng.getrandbits(48):012x}"
    if rng.random() < 0.15:
        meta["turn"] = rng.randint(1, 12)
    elif rng.random() < 0.05:
        meta["beta"] = True
    return meta


def _existing_feedback(
    rng: random.Random, *, refusal: bool, success: bool
) -> tuple[int | None, int | None]:
    if rng.random() >= 0.05:
        return None, None
    negative = refusal or not success or rng.random() < 0.25
    feedback = -1 if negative else 1
    score = None
    if rng.random() < 0.5:
        score = rng.randint(0, 40) if negative else rng.randint(60, 100)
    return feedback, score


def _diurnal_weight(ms: int) -> float:
    hour = (ms % DAY_MS) / 3_600_000
    return 0.3 + 0.7 * (0.5 + 0.5 * math.cos((hour - 15.0) / 24.0 * 2 * math.pi))


def _timestamps(rng: random.Random, n: int, start_ms: int, end_ms: int) -> list[int]:
    span = end_ms - start_ms
    out: list[int] = []
    while len(out) < n:
        ms = start_ms + int(rng.random() * span)
        if rng.random() < _diurnal_weight(ms):
            out.append(ms)
    out.sort()
    # Bursts: a few logs share the previous log's millisecond, as on the real API.
    for i in range(1, n):
        if rng.random() < 0.03:
            out[i] = out[i - 1]
    return out


def generate_logs(
    n: int,
    *,
    seed: int,
    start: datetime | str,
    end: datetime | str,
    ids: IdFormat = "ulid",
) -> list[dict[str, Any]]:
    """``n`` realistic logs with ``start <= created_at < end``, oldest first; same seed, same logs.

    ``ids`` picks the id format (see ``IdFormat``). The default stays ``ulid``, the format of the
    committed sample and its analysts' CSV files; ``cloudflare`` names logs as Cloudflare does now.
    Only the ids depend on it: every other field is the same for every format.
    """
    start_ms, end_ms = to_ms(start), to_ms(end)
    if n < 0 or end_ms <= start_ms:
        raise ValueError("need n >= 0 and start < end")
    if ids not in ID_FORMATS:
        raise ValueError(f"unknown id format {ids!r}; expected one of {', '.join(ID_FORMATS)}")
    rng = random.Random(seed)
    return [make_log(rng, ms, ids) for ms in _timestamps(rng, n, start_ms, end_ms)]


def read_logs_file(path: str | Path) -> Iterator[dict[str, Any]]:
    """Logs from a ``.jsonl``, ``.jsonl.gz`` or ``.json`` (an array) file."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        if path.name.endswith((".json", ".json.gz")):
            data = json.load(fh)
            if not isinstance(data, list):
                raise ValueError(f"{path}: expected a JSON array of logs")
            yield from data
            return
        for number, line in enumerate(fh, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc


def write_logs_file(path: str | Path, logs: Iterable[dict[str, Any]]) -> None:
    """Write logs as JSON lines; a ``.gz`` name is gzip'ed reproducibly (no timestamp in it)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as raw:
        if path.suffix == ".gz":
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
                for log in logs:
                    gz.write(_jsonl(log))
        else:
            for log in logs:
                raw.write(_jsonl(log))
    tmp.replace(path)


def _jsonl(log: dict[str, Any]) -> bytes:
    return (json.dumps(log, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def shift_days_to_yesterday(logs: list[dict[str, Any]], now: datetime) -> int:
    """Whole days to add so the newest log falls on the UTC day before ``now``."""
    if not logs:
        return 0
    newest = max(to_ms(log["created_at"]) for log in logs) // DAY_MS
    yesterday = (now.astimezone(UTC) - timedelta(days=1)).date()
    yesterday_day = (
        int(datetime(yesterday.year, yesterday.month, yesterday.day, tzinfo=UTC).timestamp())
        // 86_400
    )
    return yesterday_day - newest


def shift_logs(logs: Iterable[dict[str, Any]], days: int) -> list[dict[str, Any]]:
    """Copies of ``logs`` with ``created_at`` moved by ``days`` whole days; ids unchanged."""
    delta = days * DAY_MS
    return [{**log, "created_at": ms_to_iso(to_ms(log["created_at"]) + delta)} for log in logs]


def load_sample(
    path: str | Path | None = None,
    *,
    shift_to_yesterday: bool,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """The committed sample logs (or the logs file at ``path``), optionally moved so the newest
    day is yesterday relative to ``now`` (default: the current time)."""
    logs = list(read_logs_file(path or SAMPLE_LOGS_PATH))
    if not shift_to_yesterday:
        return logs
    days = shift_days_to_yesterday(logs, now or datetime.now(UTC))
    return shift_logs(logs, days) if days else logs
