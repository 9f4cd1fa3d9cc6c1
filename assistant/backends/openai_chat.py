"""Chat models behind the OpenAI API or any OpenAI-compatible server (vLLM, Ollama, llama.cpp
server), with bounded retries and the API key kept out of logs."""

from __future__ import annotations

import logging
import random
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence, TypeVar

from ..errors import AssistantError, BackendUnavailableError, ConfigError
from ..types import Choice, Completion
from .base import Message
from .choice import to_choice

if TYPE_CHECKING:
    from ..settings import Settings

log = logging.getLogger(__name__)
_T = TypeVar("_T")


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
            if not settings.model.openai_base_url:
                raise ConfigError("ASSISTANT_OPENAI_BASE_URL is not set: export the URL of your "
                                  "OpenAI-compatible server (e.g. http://127.0.0.1:8080/v1) or choose "
                                  "another model with ASSISTANT_LLM")
            api_key = settings.model.openai_api_key or "not-needed"
            self.url_setting = "ASSISTANT_OPENAI_BASE_URL"
        else:
            if not settings.model.openai_api_key:
                raise ConfigError("OPENAI_API_KEY is not set: export it or choose another model with "
                                  "ASSISTANT_LLM (e.g. local:qwen2.5-coder-1.5b)")
            if not model:
                raise ConfigError("no OpenAI model named: set ASSISTANT_LLM like 'openai:gpt-4o-mini'")
            api_key = settings.model.openai_api_key
            self.url_setting = "ASSISTANT_OPENAI_BASE_URL" if settings.model.openai_base_url else "OpenAI API"
        self.base_url = (settings.model.openai_base_url or self.DEFAULT_URL).rstrip("/")
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
                                     timeout=settings.model.request_timeout, max_retries=0)

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
            **request, logprobs=True, top_logprobs=self.settings.model.top_logprobs))
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
        tries = max(0, int(self.settings.model.max_retries)) + 1
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
            text = (f"{where} did not answer within {self.settings.model.request_timeout:g} s{after}; raise "
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
            return f"no answer within {self.settings.model.request_timeout:g} s"
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
