"""Chat models: llama.cpp embedded through xllamacpp, and OpenAI or OpenAI-compatible servers."""

from __future__ import annotations

import logging
import queue
import random
import secrets
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence, TypeVar

from ..errors import AssistantError, BackendUnavailableError, ConfigError, ModelFileError
from ..types import Choice, Completion
from .base import Message
from .choice import grammar, to_choice
from .model_files import LOCAL_EXTRA, OnMessage, ensure_model_file

if TYPE_CHECKING:
    from ..settings import Settings

log = logging.getLogger(__name__)

SEED = 42
TOP_LOGPROBS = 20
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_T = TypeVar("_T")


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
        request.update(grammar=grammar(options), logprobs=True, top_logprobs=TOP_LOGPROBS)
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
        path = ensure_model_file(self.model, self.settings.cache_dir, self.on_message)
        try:
            import xllamacpp as xlc
        except ImportError as exc:
            raise BackendUnavailableError(
                f"the local model runtime is not installed ({exc}); run `pip install '{LOCAL_EXTRA}'` "
                "or choose a remote model with ASSISTANT_LLM=openai:<model>") from None
        params = xlc.CommonParams()
        params.model.path = str(path)
        params.n_ctx = int(self.settings.n_ctx)
        params.n_parallel = 1  # one slot keeps the whole n_ctx per request; others queue
        params.cpuparams.n_threads = int(self.settings.n_threads)
        params.cpuparams_batch.n_threads = int(self.settings.n_threads)
        params.sampling.seed = SEED
        if self.settings.speculative:
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


class OpenAIChatModel:
    """A chat model behind the OpenAI API or any OpenAI-compatible server, with bounded retries."""

    DEFAULT_URL = "https://api.openai.com/v1"

    def __init__(self, model: str, settings: "Settings", compatible: bool, *, backoff_base: float = 0.5,
                 backoff_max: float = 8.0, sleep: Callable[[float], None] = time.sleep) -> None:
        self.model = model or ("default" if compatible else "")
        self.compatible = compatible
        self.model_id = f"{'openai-compatible' if compatible else 'openai'}:{model}"
        self.settings = settings
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.sleep = sleep
        if compatible:
            if not settings.openai_base_url:
                raise ConfigError("ASSISTANT_OPENAI_BASE_URL is not set: export the URL of your "
                                  "OpenAI-compatible server (e.g. http://127.0.0.1:8080/v1) or choose "
                                  "another model with ASSISTANT_LLM")
            api_key = settings.openai_api_key or "not-needed"
            self.url_setting = "ASSISTANT_OPENAI_BASE_URL"
        else:
            if not settings.openai_api_key:
                raise ConfigError("OPENAI_API_KEY is not set: export it or choose another model with "
                                  "ASSISTANT_LLM (e.g. local:qwen2.5-coder-1.5b)")
            if not model:
                raise ConfigError("no OpenAI model named: set ASSISTANT_LLM like 'openai:gpt-4o-mini'")
            api_key = settings.openai_api_key
            self.url_setting = "ASSISTANT_OPENAI_BASE_URL" if settings.openai_base_url else "OpenAI API"
        self.base_url = (settings.openai_base_url or self.DEFAULT_URL).rstrip("/")
        self._secret = api_key
        try:
            import httpx
            import openai
        except ImportError:
            raise BackendUnavailableError("the 'openai' package is not installed; run `pip install openai` "
                                          "or choose a local model with ASSISTANT_LLM=local:...") from None
        self._openai = openai
        self._httpx = httpx
        _redact_http_logs(api_key)
        # Retries are done below (not by the client) so backoff is bounded, logged and testable.
        self._client = openai.OpenAI(api_key=api_key, base_url=self.base_url,
                                     timeout=settings.request_timeout, max_retries=0)

    def __repr__(self) -> str:
        return f"OpenAIChatModel(model_id={self.model_id!r}, base_url={self.base_url!r})"

    def complete(self, messages: list[Message], *, max_tokens: int, temperature: float = 0.0,
                 stop: list[str] | None = None) -> Completion:
        """Return the whole reply with token usage."""
        response = self._with_retries(lambda: self._client.chat.completions.create(
            **self._request(messages, max_tokens, temperature, stop)))
        text = (response.choices[0].message.content or "") if response.choices else ""
        usage = response.usage
        return Completion(text=text, prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                          completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0))

    def choose(self, messages: list[Message], options: Sequence[str]) -> Choice:
        """One short reply with top log-probabilities (OpenAI and vLLM return them; no grammar)."""
        hint = {"role": "system", "content": "Reply with exactly one of: " + ", ".join(options) + "."}
        request = self._request([*messages, hint], max(4, max(len(o) for o in options)), 0.0, None)
        response = self._with_retries(lambda: self._client.chat.completions.create(
            **request, logprobs=True, top_logprobs=TOP_LOGPROBS))
        if not response.choices:
            return to_choice([], options, "")
        first = response.choices[0]
        content = getattr(first.logprobs, "content", None) or []
        top = [(t.token, float(t.logprob)) for t in (content[0].top_logprobs if content else [])]
        return to_choice(top, options, first.message.content or "")

    def stream(self, messages: list[Message], *, max_tokens: int, temperature: float = 0.0,
               stop: list[str] | None = None) -> Iterator[str]:
        """Yield the reply as text deltas while it is generated."""
        # Only opening the stream is retried: once text was yielded a retry would repeat it.
        chunks = self._with_retries(lambda: self._client.chat.completions.create(
            **self._request(messages, max_tokens, temperature, stop), stream=True))
        try:
            for chunk in chunks:
                for choice in chunk.choices or []:
                    if choice.delta is not None and choice.delta.content:
                        yield choice.delta.content
        except (self._openai.OpenAIError, self._httpx.HTTPError) as exc:
            raise self._final_error(exc, tries=1, during="while streaming") from None
        except ValueError as exc:
            raise self._not_openai(exc) from None
        finally:
            chunks.close()

    def _request(self, messages: list[Message], max_tokens: int, temperature: float,
                 stop: list[str] | None) -> dict[str, Any]:
        request: dict[str, Any] = {"model": self.model, "messages": list(messages),
                                   "max_tokens": int(max_tokens), "temperature": float(temperature)}
        if stop:
            request["stop"] = list(stop)
        return request

    def _with_retries(self, call: Callable[[], _T]) -> _T:
        tries = max(0, int(self.settings.max_retries)) + 1
        for attempt in range(1, tries + 1):
            try:
                return call()
            except self._openai.OpenAIError as exc:
                if attempt == tries or not self._is_transient(exc):
                    raise self._final_error(exc, tries=attempt) from None
                delay = self._backoff(attempt, exc)
                log.warning("%s at %s: %s; retry %d/%d in %.2f s", self.model_id, self.base_url,
                            self._describe(exc), attempt, tries - 1, delay)
                self.sleep(delay)
            except ValueError as exc:  # a 200 reply that is not JSON (json.JSONDecodeError)
                raise self._not_openai(exc) from None
        raise AssertionError("unreachable")

    def _is_transient(self, exc: Exception) -> bool:
        if isinstance(exc, self._openai.APIConnectionError):  # includes APITimeoutError
            return True
        status = getattr(exc, "status_code", None)
        return status in (408, 429) or (isinstance(status, int) and status >= 500)

    def _backoff(self, attempt: int, exc: Exception) -> float:
        delay = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        retry_after = _retry_after(exc)
        if retry_after is not None:
            delay = min(self.backoff_max, max(delay, retry_after))
        # Jitter spreads out many clients that failed together.
        return delay * (1 + 0.2 * random.random())

    def _final_error(self, exc: Exception, *, tries: int, during: str = "") -> AssistantError:
        openai = self._openai
        where = f"the model server at {self.base_url} ({self.url_setting})"
        after = f" after {tries} {'try' if tries == 1 else 'tries'}"
        if during:
            after = f" {during}"
        status = getattr(exc, "status_code", None)
        if isinstance(exc, (openai.APITimeoutError, self._httpx.TimeoutException)):
            text = (f"{where} did not answer within {self.settings.request_timeout:g} s{after}; raise "
                    "ASSISTANT_REQUEST_TIMEOUT or check that the server is not overloaded")
        elif isinstance(exc, (openai.APIConnectionError, self._httpx.TransportError)):
            text = (f"cannot reach {where}: {_connection_reason(exc)}{after}; check that the server "
                    f"runs and the URL is right")
        elif status in (401, 403):
            key_var = "OPENAI_API_KEY"
            text = (f"{where} rejected the API key (HTTP {status}){after}; set a valid key in {key_var}")
        elif status == 404:
            text = (f"{where} does not know model '{self.model}' or the URL is wrong (HTTP 404); check "
                    f"ASSISTANT_LLM and {self.url_setting}: {self._describe(exc)}")
        elif status == 429:
            text = (f"{where} kept rate-limiting requests (HTTP 429){after}; wait, lower concurrency, "
                    "or raise ASSISTANT_MAX_RETRIES")
        elif isinstance(status, int) and status >= 500:
            text = f"{where} failed with HTTP {status}{after}: {self._describe(exc)}"
        elif isinstance(status, int):
            text = f"{where} refused the request (HTTP {status}): {self._describe(exc)}"
        else:
            text = f"{where} failed{after}: {self._describe(exc)}"
        return BackendUnavailableError(self._scrub(text))

    def _not_openai(self, exc: Exception) -> AssistantError:
        return BackendUnavailableError(self._scrub(
            f"the model server at {self.base_url} ({self.url_setting}) sent a reply that is not an OpenAI "
            f"chat completion ({type(exc).__name__}: {str(exc)[:120]}); check that the URL points at an "
            "OpenAI-compatible /v1 endpoint"))

    def _describe(self, exc: Exception) -> str:
        if isinstance(exc, self._openai.APITimeoutError):
            return f"no answer within {self.settings.request_timeout:g} s"
        if isinstance(exc, self._openai.APIConnectionError):
            return _connection_reason(exc)
        body = getattr(exc, "body", None)
        message = body.get("message") if isinstance(body, dict) else None
        if not message and isinstance(body, dict) and isinstance(body.get("error"), dict):
            message = body["error"].get("message")
        return self._scrub(str(message or exc))[:300]

    def _scrub(self, text: str) -> str:
        # Servers sometimes echo the Authorization header back; never let the key reach a message.
        if self._secret and len(self._secret) >= 4:
            text = text.replace(self._secret, "***")
        return text


class _RedactSecret(logging.Filter):
    """Blank a secret out of log records (the HTTP libraries log response headers at DEBUG)."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is not ours to break
            return True
        if self.secret in message:
            record.msg, record.args = message.replace(self.secret, "***"), None
        return True


_HTTP_LOGGERS = ("openai", "httpx", "httpx2", "httpcore", "httpcore2")


def _redact_http_logs(secret: str) -> None:
    # Logger filters are not inherited by child loggers, so each logger of the HTTP stack gets one.
    if len(secret) < 4:
        return
    names = {n for n in logging.Logger.manager.loggerDict if n.split(".")[0] in _HTTP_LOGGERS}
    for name in sorted(names | set(_HTTP_LOGGERS)):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactSecret) and f.secret == secret for f in logger.filters):
            logger.addFilter(_RedactSecret(secret))


def _retry_after(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _connection_reason(exc: BaseException) -> str:
    cause: BaseException | None = exc
    while cause is not None and cause.__cause__ is not None:
        cause = cause.__cause__
    text = str(cause or exc).lower()
    if "refused" in text:
        return "connection refused"
    if "name or service" in text or "nodename" in text or "getaddrinfo" in text:
        return "host name not found"
    return str(cause or exc)[:200] or "connection failed"
