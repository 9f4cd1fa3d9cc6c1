"""The embedded chat model: llama.cpp through xllamacpp (the OpenAI-API client is `openai_chat`)."""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from ..errors import BackendUnavailableError, ConfigError, ModelFileError
from ..types import Choice, Completion
from .base import Message
from .choice import grammar, to_choice
from .model_files import LOCAL_EXTRA, OnMessage, ensure_model_file

if TYPE_CHECKING:
    from ..settings import Settings

log = logging.getLogger(__name__)

SEED = 42
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class LocalChatModel:
    """A GGUF chat model run in-process by llama.cpp's server engine (xllamacpp), loaded on first use."""

    def __init__(self, model: str, settings: "Settings", *, on_message: OnMessage = None) -> None:
        self.model = model
        self.model_id = f"local:{model}"
        self.settings = settings
        self.on_message = on_message
        self.load_seconds = 0.0
        self.model_path: Path | None = None
        self._server: Any = None
        self._host = "127.0.0.1"
        self._port = 0
        # llama.cpp always opens an HTTP listener next to the in-process API; a random key
        # keeps other local users off it, while direct calls below bypass HTTP and need none.
        self._http_key = secrets.token_urlsafe(24)
        self._load_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalChatModel(model={self.model!r}, loaded={self._server is not None})"

    def complete(self, messages: list[Message], *, max_tokens: int, temperature: float = 0.0,
                 stop: list[str] | None = None) -> Completion:
        """Return the whole reply with token usage."""
        server = self._ensure_loaded()
        # The server engine queues and batches requests itself and releases the GIL while
        # generating, so concurrent callers need no lock here.
        result = server.handle_chat_completions(self._request(messages, max_tokens, temperature, stop))
        self._raise_for_error(result)
        usage = result.get("usage") or {}
        text = result["choices"][0]["message"].get("content") or ""
        return Completion(text=text, prompt_tokens=int(usage.get("prompt_tokens", 0)),
                          completion_tokens=int(usage.get("completion_tokens", 0)))

    def choose(self, messages: list[Message], options: Sequence[str]) -> Choice:
        """Reply with one option under a grammar; probabilities from the unconstrained first token."""
        server = self._ensure_loaded()
        request = self._request(messages, max(4, max(len(o) for o in options)), 0.0, None)
        request.update(grammar=grammar(options), logprobs=True, top_logprobs=self.settings.model.top_logprobs)
        result = server.handle_chat_completions(request)
        self._raise_for_error(result)
        choice = result["choices"][0]
        content = (choice.get("logprobs") or {}).get("content") or [{}]
        top = [(t.get("token", ""), float(t.get("logprob", -100.0))) for t in content[0].get("top_logprobs") or []]
        return to_choice(top, options, choice["message"].get("content") or "")

    def stream(self, messages: list[Message], *, max_tokens: int, temperature: float = 0.0,
               stop: list[str] | None = None) -> Iterator[str]:
        """Yield the reply as text deltas while it is generated."""
        server = self._ensure_loaded()
        request = self._request(messages, max_tokens, temperature, stop, stream=True)
        chunks: queue.Queue[tuple[str, Any]] = queue.Queue()
        cancelled = threading.Event()

        def on_chunk(chunk: Any) -> bool:
            # Runs inside the native call; exceptions here would be swallowed, so only enqueue.
            chunks.put(("chunk", chunk))
            return cancelled.is_set()  # True tells llama.cpp to stop generating

        def produce() -> None:
            try:
                server.handle_chat_completions(request, on_chunk)
            except BaseException as exc:  # handed to the consumer thread
                chunks.put(("error", exc))
            finally:
                chunks.put(("done", None))

        # handle_chat_completions blocks until generation ends, so it runs in a worker thread
        # and the generator relays its chunks as they arrive.
        worker = threading.Thread(target=produce, name="llm-stream", daemon=True)
        worker.start()
        try:
            while True:
                kind, item = chunks.get()
                if kind == "done":
                    break
                if kind == "error":
                    raise BackendUnavailableError(f"local model {self.model} failed while streaming: {item}")
                self._raise_for_error(item)
                for choice in item.get("choices") or []:
                    delta = (choice.get("delta") or {}).get("content")
                    if delta:
                        yield delta
        finally:
            cancelled.set()
            worker.join(timeout=5.0)

    def start_http_server(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve the model over llama.cpp's OpenAI-compatible HTTP API on loopback; return the base URL."""
        if host not in _LOOPBACK:
            raise ConfigError(f"refusing to serve the local model on '{host}': only loopback addresses "
                              f"({', '.join(_LOOPBACK)}) are allowed")
        with self._load_lock:
            if self._server is None:
                self._host, self._port = host, port
        server = self._ensure_loaded()
        address = str(server.listening_address).rstrip("/")
        actual_port = int(address.rsplit(":", 1)[1])
        if (port and port != actual_port) or host != self._host:
            raise ConfigError(f"the local model already serves on {address}; create another "
                              "LocalChatModel to serve on a different address")
        return address + "/v1"

    @property
    def http_api_key(self) -> str:
        """The bearer key HTTP clients must send to the server from `start_http_server`."""
        return self._http_key

    def _request(self, messages: list[Message], max_tokens: int, temperature: float,
                 stop: list[str] | None, stream: bool = False) -> dict[str, Any]:
        request: dict[str, Any] = {"messages": list(messages), "max_tokens": int(max_tokens),
                                   "temperature": float(temperature), "seed": SEED, "stream": stream}
        if stop:
            request["stop"] = list(stop)
        return request

    def _raise_for_error(self, result: Any) -> None:
        if not isinstance(result, dict) or "error" not in result:
            return
        error = result["error"] if isinstance(result["error"], dict) else {"message": str(result["error"])}
        message = error.get("message", "unknown error")
        if error.get("type") == "exceed_context_size_error":
            raise ConfigError(f"the prompt does not fit the local model's context: {message}. Raise "
                              "ASSISTANT_CTX or lower ASSISTANT_EVIDENCE_TOKENS / ASSISTANT_HISTORY_TURNS")
        raise BackendUnavailableError(f"local model {self.model} rejected the request "
                                      f"(HTTP {error.get('code', '?')}): {message}")

    def _ensure_loaded(self) -> Any:
        if self._server is not None:
            return self._server
        with self._load_lock:
            if self._server is None:
                self._server = self._load()
        return self._server

    def _load(self) -> Any:
        path = ensure_model_file(self.model, self.settings.model.cache_dir, self.on_message)
        try:
            import xllamacpp as xlc
        except ImportError as exc:
            raise BackendUnavailableError(
                f"the local model runtime is not installed ({exc}); run `pip install '{LOCAL_EXTRA}'` "
                "or choose a remote model with ASSISTANT_LLM=openai:<model>") from None
        params = xlc.CommonParams()
        params.model.path = str(path)
        params.n_ctx = int(self.settings.model.n_ctx)
        params.n_parallel = 1  # one slot keeps the whole n_ctx per request; others queue
        params.cpuparams.n_threads = int(self.settings.model.n_threads)
        params.cpuparams_batch.n_threads = int(self.settings.model.n_threads)
        params.sampling.seed = SEED
        if self.settings.model.speculative:
            # n-gram speculative decoding: drafts from text already in the context (answers quote
            # their sources), verified by the model itself, so greedy output is unchanged.
            params.speculative.types = [xlc.common_speculative_type.COMMON_SPECULATIVE_TYPE_NGRAM_SIMPLE]
        params.verbosity = 0  # llama.cpp writes to stderr directly; 0 keeps it silent
        params.ui = False
        params.hostnames = [self._host]
        params.port = int(self._port)
        params.api_keys = [self._http_key]
        if self.on_message is not None:
            self.on_message(f"Loading local model {self.model} ...")
        started = time.perf_counter()
        try:
            server = xlc.Server(params)
        except RuntimeError as exc:
            port_hint = f", or port {self._port} may be taken" if self._port else ""
            raise ModelFileError(
                f"llama.cpp could not load {path} ({exc}): the file may be damaged or not a chat "
                f"model{port_hint}. Delete the file (known models are rebuilt from their packages) "
                "or choose another model with ASSISTANT_LLM") from None
        self.load_seconds = time.perf_counter() - started
        self.model_path = path
        return server
