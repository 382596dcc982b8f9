"""Request and response heads as a person reads them: the prompt and the answer, not the JSON.

A GET of one log returns ``request_head`` and ``response_head``: the first characters of the bodies
the gateway saw (``*_head_complete`` false when the body was longer, ``*_size`` its full size in
bytes). For a review sheet the useful part is what the user asked and what the model answered, so
``request_text`` and ``response_text`` pick them out of the usual shapes:

- requests: OpenAI-style ``messages`` (also Groq, Mistral, Workers AI, Anthropic with its content
  blocks; the last user turn, that is the user messages after the last other message), Gemini's
  ``contents``, Workers AI's ``prompt``, the Responses API's and embeddings' ``input``;
- responses: OpenAI ``choices`` (message, text or streamed deltas), Anthropic ``content`` blocks,
  Gemini ``candidates``, Workers AI ``result.response``/``response``, the Responses API's
  ``output``, and ``error.message``; a server-sent-events head (``data: {...}`` lines) is joined
  from its chunks.

A head cut off inside its JSON is read as far as it goes (its open strings and brackets
closed): the part of the prompt or answer it holds, or, when the cut comes before the user's
message, the messages before it by role. Anything else is shown as it came. The text is cut to
``limit`` characters (``…(truncated)``), and a head the gateway did not store whole says so.
"""

from __future__ import annotations

import json
import re
from typing import Any

TEXT_CHARS = 1000
TRUNCATED = " …(truncated)"


def request_text(
    head: object, *, complete: object = True, size: object = None, limit: int = TEXT_CHARS
) -> str:
    """The last user turn of a request head (or the head itself), readable and at most `limit`."""
    return _readable(head, _prompt, complete=complete, size=size, limit=limit)


def response_text(
    head: object, *, complete: object = True, size: object = None, limit: int = TEXT_CHARS
) -> str:
    """The assistant's answer in a response head (or the head itself), readable."""
    return _readable(head, _answer, complete=complete, size=size, limit=limit)


def _readable(head: object, pick: Any, *, complete: object, size: object, limit: int) -> str:
    if head is None or head == "":
        return ""
    raw = head if isinstance(head, str) else json.dumps(head, ensure_ascii=False)
    text = _pick_from(raw, pick)
    text = (text if text is not None else raw).strip()
    if len(text) > limit:
        text = text[:limit].rstrip() + TRUNCATED
    if complete is False:
        whole = (
            f" of {size:,} bytes" if isinstance(size, int) and not isinstance(size, bool) else ""
        )
        text += f"\n…(incomplete: the log keeps only the first {len(raw):,} characters{whole})"
    return text


def _pick_from(raw: str, pick: Any) -> str | None:
    try:
        body = json.loads(raw)
    except ValueError:
        if pick is _answer and raw.lstrip().startswith(("data:", "event:")):
            return _events(raw)
        body = _closed(raw)  # a head cut off inside its JSON: read what it holds
        if body is None:
            return None
        found = pick(body)
        if found is None and pick is _prompt:
            found = _what_there_is(body)
        return found if isinstance(found, str) and found.strip() else None
    found = pick(body)
    return found if isinstance(found, str) and found.strip() else None


def _closed(raw: str) -> Any:
    """JSON cut off at any point, completed: the open string and brackets closed (None if that
    does not make it parse, e.g. a cut between a key and its colon)."""
    closers: list[str] = []
    in_string = escaped = False
    for char in raw:  # one pass over a head of a few hundred characters
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            closers.append("]" if char == "[" else "}")
        elif char in "]}" and closers:
            closers.pop()
    if not closers:
        return None
    text = raw
    if in_string:
        if escaped:
            text = text[:-1]  # a lone backslash: the escape it began is past the cut
        elif (cut := re.search(r"(\\+)u[0-9a-fA-F]{0,3}$", text)) and len(cut.group(1)) % 2:
            text = text[: cut.start()] + cut.group(1)[:-1]  # a \uXXXX cut short
        text += '"'
    text = re.sub(r"[\s,]*$", "", text)
    if text.endswith(":"):
        text += "null"
    try:
        return json.loads(text + "".join(reversed(closers)))
    except ValueError:
        return None


def _what_there_is(body: Any) -> str | None:
    """A cut request whose user turn is past the cut: the messages it does hold, by role."""
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list):
        return None
    lines = [
        f"[{m.get('role')}] {_content(m.get('content')) or ''}"
        for m in messages
        if isinstance(m, dict)
    ]
    return "\n".join(lines) or None


# -- requests -------------------------------------------------------------------------------------


def _prompt(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    messages = body.get("messages")
    if isinstance(messages, list) and messages:
        return _last_user_turn(messages, "content")
    contents = body.get("contents")  # Gemini
    if isinstance(contents, list) and contents:
        return _last_user_turn(contents, "parts")
    for key in ("prompt", "input"):  # Workers AI; Responses API and embeddings
        value = body.get(key)
        if isinstance(value, str):
            return value
        if isinstance(value, list) and value:
            if all(isinstance(v, str) for v in value):
                return "\n\n".join(value)
            return _last_user_turn(value, "content")
    return None


def _last_user_turn(messages: list[Any], field: str) -> str | None:
    """The user messages after the last message of another role (or before a trailing one)."""
    roles = [m.get("role") if isinstance(m, dict) else None for m in messages]
    if "user" not in roles:
        return None
    end = len(roles) - roles[::-1].index("user")  # just past the last user message
    start = end
    while start > 0 and roles[start - 1] == "user":
        start -= 1
    texts = [_content(m.get(field)) for m in messages[start:end]]
    return "\n\n".join(t for t in texts if t) or None


def _content(content: Any) -> str | None:
    """A message's content: a string, or blocks with ``text`` (images and tools named)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return None
    parts: list[str] = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict):
            kind = str(block.get("type") or "")
            if isinstance(block.get("text"), str):
                parts.append(block["text"])
            elif "image" in kind or "inline_data" in block or "inlineData" in block:
                parts.append("[image]")
            elif kind == "tool_use" or "functionCall" in block:
                parts.append(f"[tool call: {block.get('name') or block.get('functionCall')}]")
            elif kind == "tool_result":
                parts.append(_content(block.get("content")) or "[tool result]")
    return "\n".join(parts) or None


# -- responses ------------------------------------------------------------------------------------


def _answer(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    choices = body.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        choice = choices[0]
        for key in ("message", "delta"):
            message = choice.get(key)
            if isinstance(message, dict):
                return _message_text(message)
        text = choice.get("text")
        return text if isinstance(text, str) else None
    if isinstance(body.get("content"), list):  # Anthropic
        return _content(body["content"])
    candidates = body.get("candidates")  # Gemini
    if isinstance(candidates, list) and candidates and isinstance(candidates[0], dict):
        content = candidates[0].get("content")
        return _content(content.get("parts")) if isinstance(content, dict) else None
    result = body.get("result")  # Workers AI
    if isinstance(result, dict) and isinstance(result.get("response"), str):
        return str(result["response"])
    if isinstance(body.get("response"), str):
        return str(body["response"])
    if isinstance(body.get("output_text"), str):  # Responses API
        return str(body["output_text"])
    output = body.get("output")
    if isinstance(output, list):
        texts = [_content(item.get("content")) for item in output if isinstance(item, dict)]
        return "\n".join(t for t in texts if t) or None
    error = body.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return f"error: {error['message']}"
    if isinstance(error, str):
        return f"error: {error}"
    return None


def _message_text(message: dict[str, Any]) -> str | None:
    text = _content(message.get("content")) or ""
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        for call in calls:
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                text += f"\n[tool call: {function.get('name')}({function.get('arguments', '')})]"
    if not text and isinstance(message.get("refusal"), str):
        text = str(message["refusal"])
    return text.strip() or None


def _events(raw: str) -> str | None:
    """A streamed (server-sent events) head: the text of its chunks, in order."""
    pieces: list[str] = []
    for line in raw.splitlines():
        if not line.startswith("data:"):
            continue
        try:
            chunk = json.loads(line[5:].strip())
        except ValueError:
            continue  # [DONE], or the chunk the head cut off
        if isinstance(chunk, dict):
            delta = chunk.get("delta")
            choices = chunk.get("choices")
            if chunk.get("type") == "content_block_delta" and isinstance(delta, dict):
                piece = delta.get("text")  # Anthropic
            elif isinstance(choices, list) and choices and isinstance(choices[0], dict):
                delta = choices[0].get("delta")  # OpenAI: tokens keep their spaces, no strip
                piece = delta.get("content") if isinstance(delta, dict) else None
            else:
                piece = _answer(chunk)  # Workers AI {"response": ...}, Gemini candidates
            if isinstance(piece, str):
                pieces.append(piece)
    return "".join(pieces) or None
