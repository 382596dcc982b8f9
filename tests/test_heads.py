"""Request and response heads as readable text: the prompt and the answer, not the JSON."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from pipeline.heads import TRUNCATED, request_text, response_text


def test_openai_request_shows_the_last_user_turn_not_the_system_prompt_or_history() -> None:
    """A chat request reads as the user messages after the last assistant reply."""
    head = json.dumps(
        {
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "Refund order 4411"},
                {"role": "user", "content": [{"type": "text", "text": "it came broken"}]},
            ],
        }
    )
    assert request_text(head) == "Refund order 4411\n\nit came broken"


def test_anthropic_gemini_workers_ai_and_responses_requests_read_as_their_prompt() -> None:
    """Anthropic content blocks, Gemini contents, Workers AI prompt and Responses input."""
    anthropic = {
        "system": "Be kind.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Explain UDP"}]}],
    }
    gemini = {"contents": [{"role": "user", "parts": [{"text": "Explain TCP"}]}]}
    workers = {"prompt": "Write a haiku"}
    responses = {"model": "gpt-4.1", "input": "Summarize this"}
    image = {"messages": [{"role": "user", "content": [{"type": "image_url"}, "what is it?"]}]}
    assert request_text(json.dumps(anthropic)) == "Explain UDP"
    assert request_text(json.dumps(gemini)) == "Explain TCP"
    assert request_text(json.dumps(workers)) == "Write a haiku"
    assert request_text(json.dumps(responses)) == "Summarize this"
    assert request_text(json.dumps(image)) == "[image]\nwhat is it?"


def test_responses_read_as_the_assistant_text_in_every_usual_shape() -> None:
    """OpenAI choices, Anthropic content, Gemini candidates, Workers AI result, errors."""
    openai = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Sure."}}]}
    anthropic = {"type": "message", "content": [{"type": "text", "text": "Of course."}]}
    gemini = {"candidates": [{"content": {"parts": [{"text": "Yes."}]}}]}
    workers = {"result": {"response": "A haiku."}, "success": True}
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    tool = {
        "choices": [
            {
                "message": {
                    "content": None,
                    "tool_calls": [{"function": {"name": "refund", "arguments": '{"id":1}'}}],
                }
            }
        ]
    }
    assert response_text(json.dumps(openai)) == "Sure."
    assert response_text(json.dumps(anthropic)) == "Of course."
    assert response_text(json.dumps(gemini)) == "Yes."
    assert response_text(json.dumps(workers)) == "A haiku."
    assert response_text(json.dumps(error)) == "error: Overloaded"
    assert response_text(json.dumps(tool)) == '[tool call: refund({"id":1})]'


def test_a_streamed_response_is_joined_from_its_chunks_with_their_spaces() -> None:
    """A server-sent-events head reads as the text its deltas add up to, cut-off chunk and all."""
    openai = (
        'data: {"choices":[{"delta":{"role":"assistant","content":"Hel"}}]}\n\n'
        'data: {"choices":[{"delta":{"content":"lo there"}}]}\n\n'
        'data: {"choices":[{"delta":{"content":" frie'
    )
    anthropic = (
        "event: content_block_delta\n"
        'data: {"type":"content_block_delta","delta":{"type":"text_delta","text":"One "}}\n'
        'data: {"type":"content_block_delta","delta":{"type":"text_delta","text":"two"}}\n'
    )
    assert response_text(openai, complete=False).startswith("Hello there\n…(incomplete")
    assert response_text(anthropic) == "One two"


def test_unknown_shapes_and_unreadable_heads_are_shown_as_they_came_and_marked() -> None:
    """Anything unrecognised is the raw head; an incomplete head says how much is missing."""
    embeddings = json.dumps({"object": "list", "data": [{"embedding": [0.1]}]})
    assert response_text(embeddings) == embeddings
    cut = '{"model":"gpt-4o","messages":[{"role":"system","content":"You are"},{"rol'
    shown = request_text(cut, complete=False, size=2048)
    marker = f"\n…(incomplete: the log keeps only the first {len(cut)} characters of 2,048 bytes)"
    assert shown == cut + marker  # cut between a key and its colon: not readable, shown raw
    assert request_text(None) == request_text("") == ""
    assert request_text("plain text prompt") == "plain text prompt"


def test_long_text_is_cut_to_the_limit_and_says_so() -> None:
    """A 5,000-character answer shows its first 1,000 characters and '…(truncated)'."""
    head = json.dumps({"choices": [{"message": {"content": "x" * 5000}}]})
    shown = response_text(head)
    assert shown == "x" * 1000 + TRUNCATED
    assert response_text(head, limit=200) == "x" * 200 + TRUNCATED


@given(st.text(max_size=300), st.booleans())
def test_any_head_gives_text_within_the_limit_and_never_raises(head: str, complete: bool) -> None:
    """Whatever the gateway stored, the reader gets text no longer than the limit plus marks."""
    for read in (request_text, response_text):
        shown = read(head, complete=complete, limit=100)
        body = shown.split("\n…(incomplete")[0]
        assert len(body) <= 100 + len(TRUNCATED)


def test_a_head_cut_inside_its_json_still_reads_as_the_part_of_the_prompt_it_holds() -> None:
    """Cut mid-message, the prompt shows as far as it goes; cut before it, the earlier turns."""
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Résumé "}]
    full = json.dumps({"messages": [*messages[:1], {**messages[1], "content": "Résumé " * 40}]})
    start = full.index("R\\u00e9sum")
    for cut in range(full.index("Be brief") + 2, len(full) - 2):
        shown = request_text(full[:cut], complete=False, size=len(full))
        body = shown.split("\n…(incomplete")[0]
        if cut > start:
            assert "Résumé Résumé".startswith(body[:13]) and body.startswith("R"), (cut, shown)
        elif not body.startswith("{"):  # a cut between a key and its colon stays raw
            assert body.startswith("[system] Be"), (cut, shown)
    answer = '{"choices":[{"index":0,"message":{"role":"assistant","content":"Here is the plan: fir'
    assert response_text(answer, complete=False).startswith("Here is the plan: fir\n…(incomplete")
    assert request_text(full[:-4] + "\\u00", complete=False).startswith("Résumé")
