"""`assistant serve`: one resident process that loads the model, embedder and index once and answers
over HTTP (`/v1/ask`, and an OpenAI-compatible `/v1/chat/completions`).

Requests from many threads queue for the one model behind one lock; `/healthz` never waits for it.
Streaming sends only checked text: the answer's checks (support, decline) run after generation, so
the stream keeps the connection alive with SSE comments while the answer is made, then sends it.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import math
import os
import re
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

from .. import errors
from ..errors import AssistantError, ConfigError
from ..settings import Settings
from ..types import Answer

DEFAULT_PORT = 8765
MAX_BODY = 1_000_000
KEEPALIVE_S = 2.0
WORDS_PER_DELTA = 8
DISCOVERY = "server.json"
ENDPOINTS = ("/healthz", "/v1/models", "/v1/ask", "/v1/chat/completions")

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


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str) -> None:
    """Refuse a non-loopback address without a token: anyone who can reach it could use the model."""
    if not is_loopback(host) and not token:
        raise ConfigError(f"refusing to serve on {host} without a token: anyone who can reach it could use "
                          f"the model; pass --token or set ASSISTANT_SERVER_TOKEN, or bind to 127.0.0.1")


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


class AssistantServer(ThreadingHTTPServer):
    """The HTTP server and the one Assistant it shares; `url`, `serve_forever()`, `shutdown()`."""

    daemon_threads = True

    def __init__(self, settings: Settings, host: str, port: int, token: str = "", verbose: bool = False) -> None:
        check_bind(host, token)
        from ..answering.ask import Assistant

        if ":" in host.strip("[]"):
            self.address_family = socket.AF_INET6
        try:
            super().__init__((host.strip("[]"), port), Handler)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc}): is another server "
                              f"running there? Pick another --port") from None
        self.settings, self.token, self.verbose = settings, token, verbose
        self.model = settings.llm
        self.assistant = Assistant(settings, on_message=lambda msg: print(msg, file=sys.stderr))
        self.lock = threading.Lock()
        self.answered = 0
        self.started = int(time.time())
        self.held = 0  # requests admitted and not finished: the one answered and those waiting
        self.answer_s = 0.0  # time spent answering, for Retry-After
        self._admission = threading.Lock()

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Hold a place in the queue for one request, or refuse it with 503 and Retry-After (the
        mean answer time so far times the requests ahead) when `server_queue_max` are held."""
        with self._admission:
            if self.held >= self.settings.server_queue_max:
                mean = self.answer_s / self.answered if self.answered else 10.0
                wait = max(1, math.ceil(mean * self.held))
                raise Reject(503, f"the server is busy: {self.held} requests are queued for the one model "
                                  f"(ASSISTANT_SERVER_QUEUE_MAX={self.settings.server_queue_max}); "
                                  f"retry in about {wait} s", "server_busy", {"Retry-After": str(wait)})
            self.held += 1
        try:
            yield
        finally:
            with self._admission:
                self.held -= 1

    @property
    def url(self) -> str:
        """Where clients reach the server (a wildcard bind is reached on loopback)."""
        host, port = self.server_address[0], self.server_address[1]
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def warm(self) -> None:
        """Load the index, embedder, NER and chat model now, so the first request is not cold."""
        with self.lock:
            self.assistant.gather("Who met whom in Beijing?")
            load = getattr(self.assistant.llm, "_ensure_loaded", None)
            if callable(load):
                load()

    def health(self) -> dict[str, Any]:
        """What /healthz reports (no lock taken)."""
        from ..indexing.store import locate

        loc = locate(self.settings)
        return {"status": "ok", "model": self.model, "embedder": self.settings.embedder,
                "index": str(loc.root), "fingerprint": loc.fingerprint, "pid": os.getpid(),
                "token_required": bool(self.token), "busy": self.lock.locked(), "answered": self.answered,
                "queue": self.held, "queue_max": self.settings.server_queue_max,
                "uptime_s": int(time.time()) - self.started}

    def answer(self, question: str, filters: Any = None, history: list[tuple[str, str]] | None = None) -> Answer:
        """Answer under the model lock; `history` (question, answer) pairs make it a chat follow-up."""
        with self.lock:
            t0 = time.perf_counter()
            if history is None:
                answer = self.assistant.ask(question, filters=filters)
            else:
                from .chat import ChatSession, Turn

                session = ChatSession(self.assistant)
                session.turns = [Turn(q, standalone=q, answer=a) for q, a in history]
                standalone = session.standalone(question)
                answer = self.assistant.ask(standalone, filters=filters)
                answer.question, answer.standalone_question = question, standalone
            self.answered += 1
            self.answer_s += time.perf_counter() - t0
            return answer


def make_server(settings: Settings, host: str = "127.0.0.1", port: int = DEFAULT_PORT, token: str = "",
                warm: bool = True, verbose: bool = False) -> AssistantServer:
    """Bind the server (port 0: any free port) and, by default, warm the models; serve with `serve_forever()`."""
    server = AssistantServer(settings, host, port, token, verbose)
    if warm:
        try:
            server.warm()
        except BaseException:
            server.server_close()
            raise
    return server


def write_discovery(server: AssistantServer) -> Path:
    """Write <index_dir>/server.json (mode 0600, atomically) so `ask` and `chat` find the server."""
    folder = Path(server.settings.index_dir)
    folder.mkdir(parents=True, exist_ok=True)
    info = {"url": server.url, "pid": os.getpid(), "model": server.model, "embedder": server.settings.embedder,
            "token_required": bool(server.token)}
    fd, tmp = tempfile.mkstemp(prefix=".server.", dir=folder)  # created 0600
    with os.fdopen(fd, "w") as f:
        json.dump(info, f)
    path = folder / DISCOVERY
    os.replace(tmp, path)
    return path


def remove_discovery(path: Path) -> None:
    """Remove server.json if it is still this process's."""
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def serve(settings: Settings, host: str = "127.0.0.1", port: int = DEFAULT_PORT, token: str = "") -> None:
    """Run the server until SIGINT or SIGTERM, announcing it in server.json while it runs."""
    check_bind(host, token)
    print(f"loading {settings.llm} and the index in {settings.index_dir}...", file=sys.stderr)
    server = make_server(settings, host, port, token, verbose=True)
    path = write_discovery(server)

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # SIGINT too: a server started in the background of a script has it ignored otherwise.
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    bound = server.server_address[0]
    shown = server.url if bound in ("127.0.0.1", "::1") else f"http://{host}:{server.server_address[1]}"
    print(f"serving on {shown}" + (" (token required)" if token else ""), file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        remove_discovery(path)
        server.server_close()
        print("server stopped", file=sys.stderr)


def _text(content: Any) -> str:
    """A message's text: a string, or the text parts of a content list."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    raise Reject(400, "message content must be a string or a list of text parts")


_SOURCES_BLOCK = re.compile(r"\n\nSources:\n(?:\[S\d+\] [^\n]*(?:\n|$))+\Z")


def _chat_turns(messages: Any) -> tuple[str, list[tuple[str, str]]]:
    """The last user message, and the earlier (user, assistant) pairs as history."""
    if not isinstance(messages, list) or not messages:
        raise Reject(400, "'messages' must be a non-empty list")
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise Reject(400, "each message must be an object with a 'role' and 'content'")
    last = messages[-1]
    question = _text(last.get("content")).strip()
    if last["role"] != "user" or not question:
        raise Reject(400, "the last message must be a non-empty user message (the question)")
    history: list[tuple[str, str]] = []
    pending = ""
    for m in messages[:-1]:
        if m["role"] == "user":
            pending = _text(m.get("content")).strip()
        elif m["role"] == "assistant" and pending:
            # A sources block this server appended is not part of what the assistant said.
            said = _SOURCES_BLOCK.sub("", _text(m.get("content"))).strip()
            history.append((pending, said))
            pending = ""
    return question, history


def _filters(body: dict[str, Any]) -> Any:
    files, since, until = body.get("files"), body.get("since"), body.get("until")
    if files is not None and (not isinstance(files, list) or not all(isinstance(f, str) for f in files)):
        raise Reject(400, "'files' must be a list of file names")
    for name, value in (("since", since), ("until", until)):
        if value is not None and not isinstance(value, str):
            raise Reject(400, f"'{name}' must be a date string, YYYY-MM-DD")
    from ..search.retrieval import Filters

    return Filters(files=tuple(files or ()), date_from=since or "", date_to=until or "")


def _extras(answer: Answer) -> dict[str, Any]:
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


def _with_sources(body: dict[str, Any], default: bool) -> bool:
    value = body.get("sources_block", default)
    if not isinstance(value, bool):
        raise Reject(400, "'sources_block' must be true or false")
    return value


def _deltas(text: str) -> list[str]:
    """The answer in groups of a few words (joined, they give the text back exactly)."""
    words = re.findall(r"\s*\S+\s*", text) or [text]
    return ["".join(words[i:i + WORDS_PER_DELTA]) for i in range(0, len(words), WORDS_PER_DELTA)]


class Handler(BaseHTTPRequestHandler):
    """Routes requests; every failure becomes an OpenAI-shaped JSON error."""

    server: AssistantServer
    protocol_version = "HTTP/1.1"  # chunked streaming: a server killed mid-answer is an error, not an EOF
    timeout = 300

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._handle({"/healthz": self._healthz, "/v1/models": self._models})

    def do_POST(self) -> None:
        self._handle({"/v1/ask": self._ask, "/v1/chat/completions": self._chat})

    def _handle(self, routes: dict[str, Callable[[], None]]) -> None:
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        try:
            if path != "/healthz":
                self._authorize()
            route = routes.get(path)
            if route is None:
                if path in ENDPOINTS:
                    raise Reject(405, f"{path} does not accept {self.command}")
                raise Reject(404, f"no endpoint {self.command} {path}; see {', '.join(ENDPOINTS)}")
            route()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # the one boundary: log it here, tell the client only the message
            if not isinstance(exc, (Reject, AssistantError)):
                traceback.print_exc(file=sys.stderr)
            status, body = error_body(exc)
            self.close_connection = True  # the body may be unread: start afresh
            self._json(status, body, getattr(exc, "headers", None))

    def _authorize(self) -> None:
        token = self.server.token
        if not token:
            return
        given = self.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
            raise Reject(401, "missing or wrong bearer token: send 'Authorization: Bearer <token>'",
                         "authentication_error")

    def _json(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if status == 401:
            self.send_header("WWW-Authenticate", "Bearer")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict[str, Any]:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raise Reject(411, "send the body with a Content-Length")
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0:
            raise Reject(400, "bad Content-Length")
        if length > MAX_BODY:
            if length <= 8 * MAX_BODY:  # read it, so the client hears the 413 rather than a reset
                while length > 0:
                    block = self.rfile.read(min(length, 65536))
                    if not block:
                        break
                    length -= len(block)
            raise Reject(413, f"request body over {MAX_BODY} bytes")
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw.decode("utf-8")) if raw else None
        except (UnicodeDecodeError, ValueError) as exc:
            raise Reject(400, f"the body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise Reject(400, "the body must be a JSON object")
        return body

    def _healthz(self) -> None:
        self._json(200, self.server.health())

    def _models(self) -> None:
        self._json(200, {"object": "list", "data": [{"id": self.server.model, "object": "model",
                                                     "created": self.server.started, "owned_by": "assistant"}]})

    def _ask(self) -> None:
        body = self._body()
        question = body.get("question")
        if not isinstance(question, str) or not question.strip():
            raise Reject(400, "'question' must be a non-empty string")
        self._check_length(question)
        filters = _filters(body)
        with self.server.admit():
            answer = self.server.answer(question, filters=filters)
        self._json(200, answer.to_dict())

    def _check_length(self, question: str) -> None:
        limit = self.server.settings.server_question_max_chars
        if len(question) > limit:
            raise Reject(413, f"the question is {len(question):,} characters long; at most {limit:,} are "
                              "accepted (ASSISTANT_SERVER_QUESTION_MAX_CHARS): ask about one thing at a time")

    def _chat(self) -> None:
        body = self._body()
        question, history = _chat_turns(body.get("messages"))
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise Reject(400, "'stream' must be true or false")
        block = _with_sources(body, self.server.settings.server_sources_block)
        self._check_length(question)
        base = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()), "model": self.server.model}
        with self.server.admit():
            if stream:
                self._stream(base, question, history, block)
                return
            answer = self.server.answer(question, history=history)
        content = answer.answer + (sources_block(answer) if block else "")
        self._json(200, {**base, "object": "chat.completion",
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                      "finish_reason": "stop", "logprobs": None}],
                         "usage": {"prompt_tokens": answer.prompt_tokens,
                                   "completion_tokens": answer.completion_tokens,
                                   "total_tokens": answer.prompt_tokens + answer.completion_tokens},
                         **_extras(answer)})

    def _stream(self, base: dict[str, Any], question: str, history: list[tuple[str, str]], block: bool = True) -> None:
        """SSE over chunked transfer: the role at once, keep-alives while answering, then the checked text."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> None:
            event = {**base, "object": "chat.completion.chunk",
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}
            send(f"data: {json.dumps(event, ensure_ascii=False)}\n\n")

        def send(text: str) -> None:
            data = text.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        chunk({"role": "assistant", "content": ""})
        result: dict[str, Any] = {}
        done = threading.Event()

        def work() -> None:
            try:
                result["answer"] = self.server.answer(question, history=history)
            except BaseException as exc:  # reported to the client below
                result["error"] = exc
            finally:
                done.set()

        threading.Thread(target=work, daemon=True).start()
        while not done.wait(KEEPALIVE_S):
            send(": keep-alive\n\n")
        if "error" in result:
            exc = result["error"]
            if not isinstance(exc, AssistantError):
                traceback.print_exception(exc, file=sys.stderr)
            send(f"data: {json.dumps(error_body(exc)[1], ensure_ascii=False)}\n\n")
        else:
            answer = result["answer"]
            for piece in _deltas(answer.answer):
                chunk({"content": piece})
            sources = sources_block(answer) if block else ""
            if sources:
                chunk({"content": sources})
            chunk({}, "stop", **_extras(answer))
        send("data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
