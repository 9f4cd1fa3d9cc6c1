"""Talk to a running `assistant serve` (stdlib only, so `ask` and `chat` start fast).

`find_server` picks the server: ASSISTANT_SERVER_URL when set, else the one <index_dir>/server.json
names if its process is alive and answers /healthz at once (a stale file is ignored)."""

from __future__ import annotations

import http.client
import json
import os
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlsplit

from .. import errors
from ..errors import AssistantError, ServerError
from ..settings import Settings
from ..types import Answer

PROBE_TIMEOUT = 0.5
ANSWER_TIMEOUT = 900.0  # a local model behind a queue of other requests can take minutes


def request(url: str, method: str, path: str, body: dict[str, Any] | None = None, token: str = "",
            timeout: float = ANSWER_TIMEOUT) -> dict[str, Any]:
    """One JSON request to the server; any failure is an AssistantError saying what to do."""
    parts = urlsplit(url)
    conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    base = parts.path.rstrip("/")
    if base.endswith("/v1") and path.startswith("/v1/"):
        base = base[:-3]  # ASSISTANT_SERVER_URL may be given as the OpenAI base_url
    try:
        conn = conn_cls(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
        try:
            conn.request(method, base + path, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        finally:
            conn.close()
    except (OSError, http.client.HTTPException) as exc:
        raise ServerError(f"the assistant server at {url} failed ({type(exc).__name__}: {str(exc) or 'no reply'}); "
                          f"start it with `assistant serve`, or unset ASSISTANT_SERVER_URL to answer "
                          f"in this process") from None
    try:
        reply = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ServerError(f"the assistant server at {url} answered {response.status} without JSON; "
                          f"is ASSISTANT_SERVER_URL an `assistant serve`?") from None
    if response.status >= 400:
        raise _error(url, response.status, reply)
    return reply


def _error(url: str, status: int, reply: Any) -> AssistantError:
    """The server's error as the library error it came from (same exit code), else a ServerError."""
    info = reply.get("error") if isinstance(reply, dict) else None
    info = info if isinstance(info, dict) else {}
    message = str(info.get("message") or f"HTTP {status}")
    if status == 401:
        return errors.ConfigError(f"the assistant server at {url} needs its token: set ASSISTANT_SERVER_TOKEN "
                                  f"({message})")
    cls = getattr(errors, str(info.get("code") or ""), None)
    if isinstance(cls, type) and issubclass(cls, AssistantError):
        return cls(message)
    return ServerError(f"the assistant server at {url} answered {status}: {message}")


def health(url: str, timeout: float = PROBE_TIMEOUT) -> dict[str, Any]:
    """The server's /healthz reply."""
    return request(url, "GET", "/healthz", timeout=timeout)


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def find_server(settings: Settings, llm: str | None = None) -> str | None:
    """The URL of the server to use, or None to answer in this process.

    ASSISTANT_SERVER_URL wins (unreachable: ServerError). Otherwise <index_dir>/server.json, when its
    process is alive, answers /healthz within half a second and serves this embedder. With `llm`
    (an explicit --llm), only a server running that model is used."""
    if settings.server.url:
        url = settings.server.url.rstrip("/")
        if llm and health(url, timeout=settings.model.request_timeout).get("model") != llm:
            return None
        return url
    try:
        info = json.loads((Path(settings.index.index_dir) / "server.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not isinstance(info.get("url"), str) or not _alive(info.get("pid")):
        return None
    try:
        status = health(info["url"])
    except AssistantError:
        return None
    if status.get("pid") != info["pid"] or status.get("embedder") != settings.index.embedder:
        return None
    if llm and status.get("model") != llm:
        return None
    return info["url"]


def ask_via_server(url: str, question: str, files: Sequence[str] = (), since: str = "", until: str = "",
                   token: str = "", timeout: float = ANSWER_TIMEOUT) -> Answer:
    """Ask the server's /v1/ask; the Answer is rebuilt from its JSON."""
    body: dict[str, Any] = {"question": question, "files": list(files)}
    if since:
        body["since"] = since
    if until:
        body["until"] = until
    return Answer.from_dict(request(url, "POST", "/v1/ask", body, token=token, timeout=timeout))


def answer_from_completion(reply: dict[str, Any]) -> Answer:
    """An Answer from a /v1/chat/completions reply (its text, `citations` and `assistant` fields)."""
    extra = reply.get("assistant") or {}
    content = reply["choices"][0]["message"].get("content") or ""
    return Answer.from_dict({**extra, "answer": content, "citations": reply.get("citations") or []})


class RemoteChat:
    """A conversation held by the client and answered by the server (history sent as messages)."""

    def __init__(self, url: str, token: str = "", timeout: float = ANSWER_TIMEOUT) -> None:
        self.url, self.token, self.timeout = url, token, timeout
        self.messages: list[dict[str, str]] = []
        self.last_answer: Answer | None = None

    def reset(self) -> None:
        """Forget the conversation."""
        self.messages.clear()
        self.last_answer = None

    def ask(self, question: str) -> Answer:
        """Answer one turn; a follow-up is rewritten by the server with the history."""
        messages = self.messages + [{"role": "user", "content": question}]
        # No sources block in the content: this client prints the citations from the extra fields.
        reply = request(self.url, "POST", "/v1/chat/completions",
                        {"messages": messages, "stream": False, "sources_block": False},
                        token=self.token, timeout=self.timeout)
        answer = answer_from_completion(reply)
        self.messages = messages + [{"role": "assistant", "content": answer.answer}]
        self.last_answer = answer
        return answer
