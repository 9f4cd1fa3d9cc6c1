"""`assistant serve`: one resident process that loads the model, embedder and index once and answers
over HTTP: `/v1/ask`, an OpenAI-compatible `/v1/chat/completions`, a web page at `/` and the API's
documentation at `/docs`. FastAPI routes (`api.py`, `webapp.py`) on uvicorn.

Model work runs in threads queued for the one model behind one lock, at most `server_queue_max`
admitted at once (503 with Retry-After beyond); `/healthz` never waits for it. Streaming sends only
checked text: the answer's checks run after generation, so the chat stream keeps the connection
alive with SSE comments while the answer is made, then sends it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ipaddress
import json
import math
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from ..errors import ConfigError
from ..settings import Settings
from ..types import Answer
from .protocol import Reject, error_body, sources_block

__all__ = ["DEFAULT_PORT", "AssistantServer", "Reject", "check_bind", "error_body", "is_loopback", "make_server",
           "remove_discovery", "serve", "sources_block", "write_discovery"]

DEFAULT_PORT = 8765
GRACE_S = 3.0  # on shutdown, how long requests in progress may still finish
DISCOVERY = "server.json"
T = TypeVar("T")


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


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free one)."""
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc}): is another server "
                          f"running there? Pick another --port") from None
    return sock


def _log_config() -> dict[str, Any]:
    """uvicorn's logging, the access log on stderr too (stdout is left to the program's output)."""
    import copy

    import uvicorn.config

    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    return config


class AssistantServer:
    """The bound socket, the FastAPI app and the one Assistant they share; `url`, `serve_forever()`,
    `shutdown()` and `server_close()` as on a `socketserver` server."""

    def __init__(self, settings: Settings, host: str, port: int, token: str = "", verbose: bool = False) -> None:
        check_bind(host, token)
        from ..answering.ask import Assistant
        from .api import create_app
        from .webapp import add_web

        self.socket = _listen(host, port)
        self.server_address = self.socket.getsockname()
        self.settings, self.token, self.verbose = settings, token, verbose
        self.model = settings.model.llm
        self.assistant = Assistant(settings, on_message=lambda msg: print(msg, file=sys.stderr))
        self.lock = threading.Lock()
        self.answered = 0
        self.started = int(time.time())
        self.held = 0  # requests admitted and not finished: the one answered and those waiting
        self.answer_s = 0.0  # time spent answering, for Retry-After
        self._admission = threading.Lock()
        self.app = create_app(self, extend=add_web)
        self._uvicorn: Any = None
        self._serving, self._stopped = threading.Event(), threading.Event()

    # -- the socketserver-like life cycle ------------------------------------------------------------
    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Serve with uvicorn until `shutdown()` (or, in the main thread, SIGINT/SIGTERM)."""
        import uvicorn

        config = uvicorn.Config(self.app, lifespan="off", ws="none", log_level="info" if self.verbose else "warning",
                                access_log=self.verbose, log_config=_log_config() if self.verbose else None,
                                timeout_graceful_shutdown=int(GRACE_S), server_header=False)
        self._uvicorn = uvicorn.Server(config)
        self._serving.set()
        try:
            self._uvicorn.run(sockets=[self.socket])
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop `serve_forever()` (from another thread) and wait until it has returned."""
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        if self._serving.is_set():
            self._stopped.wait()

    def server_close(self) -> None:
        """Close the listening socket."""
        self.socket.close()

    @property
    def url(self) -> str:
        """Where clients reach the server (a wildcard bind is reached on loopback)."""
        host, port = self.server_address[0], self.server_address[1]
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    # -- the queue for the one model -----------------------------------------------------------------
    def _enter(self) -> None:
        with self._admission:
            if self.held >= self.settings.server.queue_max:
                mean = self.answer_s / self.answered if self.answered else 10.0
                wait = max(1, math.ceil(mean * self.held))
                raise Reject(503, f"the server is busy: {self.held} requests are queued for the one model "
                                  f"(ASSISTANT_SERVER_QUEUE_MAX={self.settings.server.queue_max}); "
                                  f"retry in about {wait} s", "server_busy", {"Retry-After": str(wait)})
            self.held += 1

    def _leave(self) -> None:
        with self._admission:
            self.held -= 1

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Hold a place in the queue for one request, or refuse it with 503 and Retry-After (the
        mean answer time so far times the requests ahead) when `server_queue_max` are held."""
        self._enter()
        try:
            yield
        finally:
            self._leave()

    def submit(self, work: Callable[..., T], *args: Any, **kwargs: Any) -> "concurrent.futures.Future[T]":
        """Admit one request (503 when the queue is full) and run `work` in a daemon thread: its place
        is freed when the work ends, whether or not the client is still there, and a stopping server
        never waits for it."""
        self._enter()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_running_or_notify_cancel()
                future.set_result(work(*args, **kwargs))
            except BaseException as exc:  # handed to whoever awaits the future
                future.set_exception(exc)
            finally:
                self._leave()

        threading.Thread(target=run, name="assistant-request", daemon=True).start()
        return future

    # -- the work, under the model lock --------------------------------------------------------------
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
        return {"status": "ok", "model": self.model, "embedder": self.settings.index.embedder,
                "index": str(loc.root), "fingerprint": loc.fingerprint, "pid": os.getpid(),
                "token_required": bool(self.token), "busy": self.lock.locked(), "answered": self.answered,
                "queue": self.held, "queue_max": self.settings.server.queue_max,
                "uptime_s": int(time.time()) - self.started}

    def _standalone(self, question: str, history: list[tuple[str, str]]) -> str:
        from ..answering.chat import ChatSession, Turn

        session = ChatSession(self.assistant)
        session.turns = [Turn(q, standalone=q, answer=a) for q, a in history]
        return session.standalone(question)

    def answer(self, question: str, filters: Any = None, history: list[tuple[str, str]] | None = None) -> Answer:
        """Answer under the model lock; `history` (question, answer) pairs make it a chat follow-up."""
        with self.lock:
            t0 = time.perf_counter()
            if history is None:
                answer = self.assistant.ask(question, filters=filters)
            else:
                standalone = self._standalone(question, history)
                answer = self.assistant.ask(standalone, filters=filters)
                answer.question, answer.standalone_question = question, standalone
            self.answered += 1
            self.answer_s += time.perf_counter() - t0
            return answer

    def stream(self, question: str, filters: Any = None, history: list[tuple[str, str]] | None = None,
               gone: threading.Event | None = None) -> Iterator[tuple[str, Any]]:
        """Like `answer`, as events: ("standalone", question) for a follow-up, ("delta", text) as the
        draft is made, ("revision", text) when the checks changed it, then ("answer", Answer). Nothing
        is made when `gone` is set by the time the model is free (the client left the queue)."""
        from ..answering.ask import Revision

        with self.lock:
            if gone is not None and gone.is_set():
                return
            t0 = time.perf_counter()
            standalone = question
            if history:
                standalone = self._standalone(question, history)
                yield "standalone", standalone
            answer: Answer | None = None
            for event in self.assistant.stream(standalone, filters=filters):
                if isinstance(event, Answer):
                    answer = event
                else:
                    yield ("revision" if isinstance(event, Revision) else "delta"), str(event)
            assert answer is not None
            if history:
                answer.question, answer.standalone_question = question, standalone
            self.answered += 1
            self.answer_s += time.perf_counter() - t0
            yield "answer", answer

    def search(self, query: str, k: int, filters: Any = None) -> list[Any]:
        """The top passages for a query (retrieval only), under the lock like the rest of the model work."""
        with self.lock:
            return self.assistant.retriever.search(query, k=k, filters=filters)

    def timeline(self, topic: str, since: str = "", until: str = "") -> Any:
        """`assistant timeline` for a topic, under the model lock."""
        from ..news.timeline import build_timeline

        with self.lock:
            return build_timeline(self.assistant.retriever, self.assistant.llm, topic, since=since, until=until)


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
    folder = Path(server.settings.index.index_dir)
    folder.mkdir(parents=True, exist_ok=True)
    info = {"url": server.url, "pid": os.getpid(), "model": server.model, "embedder": server.settings.index.embedder,
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
    print(f"loading {settings.model.llm} and the index in {settings.index.index_dir}...", file=sys.stderr)
    server = make_server(settings, host, port, token, verbose=True)
    path = write_discovery(server)

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # uvicorn takes SIGINT and SIGTERM while it serves, stops gracefully, then raises them again for
    # these handlers, which end serve_forever(). SIGINT too: a server started in the background of a
    # script has it ignored otherwise.
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    bound = server.server_address[0]
    shown = server.url if bound in ("127.0.0.1", "::1") else f"http://{host}:{server.server_address[1]}"
    print(f"serving on {shown}" + (" (token required)" if token else ""), file=sys.stderr)
    print(f"open {shown}/ in a browser to ask; the API is described at {shown}/docs", file=sys.stderr, flush=True)
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


