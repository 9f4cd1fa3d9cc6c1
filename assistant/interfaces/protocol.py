"""What goes over the wire of `assistant serve`: the request bodies (pydantic models, so /openapi.json
describes them), errors as OpenAI-shaped JSON, and the OpenAI chat helpers (history from messages,
the extra fields, the "Sources:" block, the answer in word groups)."""

from __future__ import annotations

import re
from typing import Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from .. import errors
from ..errors import AssistantError
from ..types import Answer

MAX_BODY = 1_000_000
KEEPALIVE_S = 2.0  # a streaming response sends a keep-alive this often while the model works
ENDPOINTS = ("/", "/docs", "/healthz", "/v1/models", "/v1/ask", "/v1/ask/stream", "/v1/chat/completions",
             "/v1/search", "/v1/timeline", "/v1/files", "/v1/files/{name}")
WORDS_PER_DELTA = 8

# Library errors as HTTP statuses (anything else from the library is a 500).
_STATUS: dict[type[AssistantError], int] = {
    errors.InputError: 400,
    errors.IndexNotBuiltError: 503,
    errors.IndexLockedError: 503,
    errors.StoreError: 503,
    errors.BackendUnavailableError: 502,
    errors.ModelFileError: 500,
    errors.ConfigError: 500,
}


class Reject(Exception):
    """A request the server refuses: an HTTP status, a message and an OpenAI-style error type."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.headers = status, message, kind, headers or {}


def error_body(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """The status and OpenAI-shaped error body for an exception (never a traceback)."""
    if isinstance(exc, Reject):
        return exc.status, {"error": {"message": exc.message, "type": exc.kind, "code": None}}
    if isinstance(exc, AssistantError):
        status = next((s for cls, s in _STATUS.items() if isinstance(exc, cls)), 500)
        kind = "invalid_request_error" if status < 500 else "server_error"
        return status, {"error": {"message": str(exc), "type": kind, "code": type(exc).__name__}}
    return 500, {"error": {"message": "internal server error (see the server's log)", "type": "server_error",
                           "code": None}}


def validation_message(problems: list[dict[str, Any]]) -> str:
    """A request body that failed validation, in one sentence naming the field."""
    first = problems[0] if problems else {}
    loc = [str(part) for part in first.get("loc", ())][1:]  # after "body", "query" or "path"
    ctx = first.get("ctx") or {}
    if first.get("type") == "json_invalid":
        return f"the body is not valid JSON: {ctx.get('error', first.get('msg', ''))}"
    if not loc:
        return "the body must be a JSON object (sent without a Content-Type or as application/json)"
    what = str(ctx["error"]) if first.get("type") == "value_error" and "error" in ctx else first.get("msg", "")
    where = f"'{loc[0]}'" + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in loc[1:])
    return f"{where} {what[0].lower()}{what[1:]}" if what else f"{where} is not valid"


# -- request bodies ------------------------------------------------------------------------------------

class Turn(BaseModel):
    """One earlier turn of a conversation."""

    question: str
    answer: str


class AskRequest(BaseModel):
    """A question, optional filters, and (for a follow-up) the earlier turns."""

    question: str = Field(description="The question about the articles.")
    files: Optional[list[str]] = Field(None, description="Only these files (names as in citations).")
    since: Optional[str] = Field(None, description="Only articles dated on/after YYYY-MM-DD (or YYYY-MM, YYYY).")
    until: Optional[str] = Field(None, description="Only articles dated on/before YYYY-MM-DD.")
    history: Optional[list[Turn]] = Field(None, description="Earlier turns: the question is then a follow-up, "
                                                            "rewritten to stand alone before retrieval.")

    @field_validator("question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must be a non-empty string")
        return value

    def filters(self) -> Any:
        """The retrieval filters (bad dates raise InputError, a 400)."""
        from ..search.retrieval import Filters

        return Filters(files=tuple(self.files or ()), date_from=self.since or "", date_to=self.until or "")

    def turns(self) -> list[tuple[str, str]] | None:
        """The history as (question, answer) pairs, or None for a first question."""
        return None if self.history is None else [(t.question, t.answer) for t in self.history]


class ContentPart(BaseModel):
    """A part of a message's content; only text parts are read."""

    model_config = ConfigDict(extra="allow")
    type: str
    text: str = ""


class ChatMessage(BaseModel):
    """An OpenAI chat message."""

    model_config = ConfigDict(extra="allow")
    role: str
    content: Union[str, list[ContentPart], None] = None


class ChatRequest(BaseModel):
    """OpenAI's chat completion request; `model`, `temperature` and the other sampling fields are accepted
    and ignored (the server answers with its one model, checked)."""

    model_config = ConfigDict(extra="allow")
    messages: list[ChatMessage] = Field(min_length=1, description="The conversation; the last is the question.")
    model: Optional[str] = None
    stream: StrictBool = Field(False, description="Server-sent events: the role at once, keep-alive comments "
                                                  "while the answer is made and checked, then its text.")
    sources_block: Optional[StrictBool] = Field(None, description="Append 'Sources:' with each citation to the "
                                                                  "content (default: the server's setting).")


# -- the OpenAI chat helpers ---------------------------------------------------------------------------

def _text(content: Any) -> str:
    """A message's text: a string, or the text parts of a content list."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.text for p in content if p.type == "text")


_SOURCES_BLOCK = re.compile(r"\n\nSources:\n(?:\[S\d+\] [^\n]*(?:\n|$))+\Z")


def chat_turns(messages: list[ChatMessage]) -> tuple[str, list[tuple[str, str]]]:
    """The last user message, and the earlier (user, assistant) pairs as history."""
    last = messages[-1]
    question = _text(last.content).strip()
    if last.role != "user" or not question:
        raise Reject(400, "the last message must be a non-empty user message (the question)")
    history: list[tuple[str, str]] = []
    pending = ""
    for m in messages[:-1]:
        if m.role == "user":
            pending = _text(m.content).strip()
        elif m.role == "assistant" and pending:
            # A sources block this server appended is not part of what the assistant said.
            said = _SOURCES_BLOCK.sub("", _text(m.content)).strip()
            history.append((pending, said))
            pending = ""
    return question, history


def extras(answer: Answer) -> dict[str, Any]:
    """The fields added to OpenAI's chat objects: citations and the answer's checks."""
    d = answer.to_dict()
    keys = ("question", "standalone_question", "declined", "decline_reason", "notes", "sources", "verdicts",
            "unsupported_sentences", "uncited_sentences", "timings")
    return {"citations": d["citations"], "assistant": {k: d[k] for k in keys}}


def sources_block(answer: Answer, quote_chars: int = 200) -> str:
    """The citations as text under the answer, for chat clients that show only the message content
    (most drop the extra fields): "Sources:" then one line per label, its file and its quote."""
    if answer.declined or not answer.citations:
        return ""
    lines, seen = ["", "", "Sources:"], set()
    for c in answer.citations:
        if c.label in seen:
            continue
        seen.add(c.label)
        quote = " ".join(c.quote.split())
        quote = quote if len(quote) <= quote_chars else quote[:quote_chars].rsplit(" ", 1)[0] + " …"
        lines.append(f'[{c.label}] {c.file}: "{quote}"')
    return "\n".join(lines)


def deltas(text: str) -> list[str]:
    """The answer in groups of a few words (joined, they give the text back exactly)."""
    words = re.findall(r"\s*\S+\s*", text) or [text]
    return ["".join(words[i:i + WORDS_PER_DELTA]) for i in range(0, len(words), WORDS_PER_DELTA)]


def completion(base: dict[str, Any], answer: Answer, block: bool) -> dict[str, Any]:
    """The chat.completion object for an answer."""
    content = answer.answer + (sources_block(answer) if block else "")
    return {**base, "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": "stop", "logprobs": None}],
            "usage": {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens,
                      "total_tokens": answer.prompt_tokens + answer.completion_tokens},
            **extras(answer)}


def chunk(base: dict[str, Any], delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    """One chat.completion.chunk."""
    return {**base, "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}
