"""Chat model backends: the embedded llama.cpp model, and OpenAI-style servers with faults."""

from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

import pytest
from loopback import LoopbackServer, QuietHandler

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from assistant.backends.llms import LocalChatModel
from assistant.backends.openai_chat import OpenAIChatModel  # noqa: E402
from assistant.backends.model_files import KNOWN_MODELS  # noqa: E402
from assistant.errors import BackendUnavailableError, ConfigError, ModelFileError  # noqa: E402
from assistant.settings import Settings  # noqa: E402

SECRET = "sk-test-SECRET123"
SMALL = KNOWN_MODELS["qwen2.5-coder-0.5b"]
ASK = [{"role": "user", "content": "Say hello."}]


def _small_model_available() -> bool:
    if importlib.util.find_spec("xllamacpp") is None:
        return False
    try:
        return all(metadata.version(p) == SMALL.version for p in SMALL.packages)
    except metadata.PackageNotFoundError:
        return False


needs_local = pytest.mark.skipif(not _small_model_available(),
                                 reason="xllamacpp or the qwen2.5-coder-0.5b part packages are not installed")


# --- a scripted OpenAI-style server on loopback -------------------------------------------------

Reply = tuple[int, dict, dict[str, str]]


def _ok(text: str = "pong") -> Reply:
    body = {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}
    return 200, body, {}


def _fail(status: int, message: str = "boom") -> Reply:
    return status, {"error": {"message": message, "type": "server_error"}}, {}


class FakeServer(LoopbackServer):
    """Answers POST /v1/chat/completions from a script of replies; counts requests."""

    def __init__(self, script: Callable[[int, dict, dict[str, str]], Reply | str]) -> None:
        self.script = script
        self.requests = 0
        self.release = threading.Event()
        owner = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                owner.requests += 1
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                reply = owner.script(owner.requests, body, dict(self.headers))
                if reply == "hang":
                    owner.release.wait(10)  # bounded: the test tears down long before
                    return
                if reply == "sse":
                    self._sse()
                    return
                status, payload, headers = reply  # type: ignore[misc]
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def _sse(self) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                for piece in ["Hel", "lo", " there"]:
                    chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m",
                             "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")


        self.serve(Handler)



def _remote(url: str, *, retries: int = 2, timeout: float = 5.0, key: str = "") -> OpenAIChatModel:
    settings = Settings().with_(llm="openai-compatible:m", openai_base_url=url, openai_api_key=key,
                        max_retries=retries, request_timeout=timeout)
    return OpenAIChatModel("m", settings, compatible=True, backoff_base=0.01, backoff_max=0.05)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- configuration ------------------------------------------------------------------------------

def test_openai_without_key_is_a_config_error_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="OPENAI_API_KEY is not set"):
        OpenAIChatModel("gpt-4o-mini", Settings().with_(openai_api_key=""), compatible=False)


def test_compatible_server_without_base_url_is_a_config_error_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="ASSISTANT_OPENAI_BASE_URL"):
        OpenAIChatModel("m", Settings().with_(openai_base_url=""), compatible=True)


def test_importing_the_module_does_not_load_the_local_runtime() -> None:
    code = "import sys, assistant.backends.llms, assistant.backends.openai_chat; assert 'xllamacpp' not in sys.modules; " \
           "assert 'openai' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


# --- faults against a scripted server -----------------------------------------------------------

def test_two_503s_are_retried_and_the_third_request_succeeds() -> None:
    with FakeServer(lambda n, body, headers: _fail(503) if n <= 2 else _ok("pong")) as server:
        completion = _remote(server.url, retries=3).complete(ASK, max_tokens=5)
    assert completion.text == "pong"
    assert (completion.prompt_tokens, completion.completion_tokens) == (5, 1)
    assert server.requests == 3


def test_persistent_500_fails_after_max_retries_with_backend_unavailable() -> None:
    with FakeServer(lambda n, body, headers: _fail(500)) as server:
        with pytest.raises(BackendUnavailableError) as info:
            _remote(server.url, retries=2).complete(ASK, max_tokens=5)
    assert server.requests == 3
    assert "HTTP 500 after 3 tries" in str(info.value)
    assert server.url in str(info.value)


def test_slow_server_times_out_with_a_message_naming_the_timeout_setting() -> None:
    with FakeServer(lambda n, body, headers: "hang") as server:
        with pytest.raises(BackendUnavailableError) as info:
            _remote(server.url, retries=1, timeout=0.3).complete(ASK, max_tokens=5)
    assert server.requests == 2
    assert "did not answer within 0.3 s" in str(info.value)
    assert "ASSISTANT_REQUEST_TIMEOUT" in str(info.value)


def test_unreachable_server_names_the_base_url_setting() -> None:
    url = f"http://127.0.0.1:{_free_port()}/v1"
    with pytest.raises(BackendUnavailableError) as info:
        _remote(url, retries=2).complete(ASK, max_tokens=5)
    message = str(info.value)
    assert f"cannot reach the model server at {url} (ASSISTANT_OPENAI_BASE_URL)" in message
    assert "connection refused after 3 tries" in message


def test_rejected_key_fails_at_once_and_never_reveals_the_key(caplog: pytest.LogCaptureFixture) -> None:
    def script(n: int, body: dict, headers: dict[str, str]) -> Reply:
        # A careless server echoing the Authorization header must not leak it through us.
        return _fail(401, f"invalid key {headers.get('Authorization', '')}")

    caplog.set_level(logging.DEBUG, logger="assistant")
    with FakeServer(script) as server:
        model = _remote(server.url, retries=3, key=SECRET)
        with pytest.raises(BackendUnavailableError) as info:
            model.complete(ASK, max_tokens=5)
    assert server.requests == 1
    assert "rejected the API key (HTTP 401)" in str(info.value)
    for text in (str(info.value), repr(info.value), repr(model), repr(model.settings), caplog.text):
        assert SECRET not in text


@pytest.mark.parametrize("status", [400, 404])
def test_client_errors_are_not_retried(status: int) -> None:
    with FakeServer(lambda n, body, headers: _fail(status, "bad request")) as server:
        with pytest.raises(BackendUnavailableError, match=f"HTTP {status}"):
            _remote(server.url, retries=3).complete(ASK, max_tokens=5)
    assert server.requests == 1


def test_rate_limit_is_retried_and_logged_without_the_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="assistant")
    script = lambda n, body, headers: (429, {"error": {"message": "slow down"}}, {"retry-after": "0"}) \
        if n == 1 else _ok()  # noqa: E731
    with FakeServer(script) as server:
        assert _remote(server.url, retries=2, key=SECRET).complete(ASK, max_tokens=5).text == "pong"
    assert server.requests == 2
    assert "retry 1/2" in caplog.text and SECRET not in caplog.text


def test_stream_yields_deltas_from_server_sent_events() -> None:
    with FakeServer(lambda n, body, headers: "sse" if body.get("stream") else _ok()) as server:
        deltas = list(_remote(server.url).stream(ASK, max_tokens=5))
    assert deltas == ["Hel", "lo", " there"]


def test_request_carries_model_tokens_temperature_and_stop() -> None:
    seen: list[dict] = []
    with FakeServer(lambda n, body, headers: (seen.append(body), _ok())[1]) as server:
        _remote(server.url).complete(ASK, max_tokens=7, temperature=0.3, stop=["\n\n"])
    assert seen[0]["model"] == "m" and seen[0]["max_tokens"] == 7
    assert seen[0]["temperature"] == 0.3 and seen[0]["stop"] == ["\n\n"]


# --- the real embedded model (0.5B) -------------------------------------------------------------

@pytest.fixture(scope="module")
def local_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalChatModel]:
    if not _small_model_available():
        pytest.skip("xllamacpp or the qwen2.5-coder-0.5b part packages are not installed")
    settings = Settings().with_(llm=f"local:{SMALL.name}", cache_dir=str(tmp_path_factory.mktemp("cache")),
                        n_ctx=2048, n_threads=2)
    yield LocalChatModel(SMALL.name, settings)


ECHO = [{"role": "system", "content": "You repeat exactly what you are asked to repeat."},
        {"role": "user", "content": "Repeat this word and nothing else: banana"}]


@needs_local
def test_local_complete_returns_text_and_token_counts(local_model: LocalChatModel) -> None:
    completion = local_model.complete(ECHO, max_tokens=8)
    assert "banana" in completion.text.lower()
    assert completion.prompt_tokens > 0 and completion.completion_tokens > 0


@needs_local
def test_local_stream_yields_several_text_deltas(local_model: LocalChatModel) -> None:
    deltas = list(local_model.stream([{"role": "user", "content": "Count from 1 to 5."}], max_tokens=16))
    assert len(deltas) > 1 and all(isinstance(d, str) for d in deltas)
    assert "1" in "".join(deltas)


@needs_local
def test_local_stream_closed_early_stops_generation(local_model: LocalChatModel) -> None:
    stream = local_model.stream([{"role": "user", "content": "Write a long story."}], max_tokens=200)
    first = next(stream)
    stream.close()
    assert first
    assert local_model.complete(ECHO, max_tokens=8).text  # the model is still usable


@needs_local
def test_local_concurrent_calls_from_four_threads_all_return(local_model: LocalChatModel) -> None:
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def ask(i: int) -> None:
        try:
            results[i] = local_model.complete([{"role": "user", "content": f"Say the number {i}."}],
                                              max_tokens=6).text
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors and len(results) == 4 and all(results.values())


@needs_local
def test_local_prompt_longer_than_context_is_a_config_error(local_model: LocalChatModel) -> None:
    with pytest.raises(ConfigError, match="ASSISTANT_CTX"):
        local_model.complete([{"role": "user", "content": "word " * 5000}], max_tokens=4)


@needs_local
def test_openai_client_answers_through_the_embedded_http_server(local_model: LocalChatModel) -> None:
    base_url = local_model.start_http_server()
    assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
    settings = Settings().with_(llm="openai-compatible:qwen", openai_base_url=base_url,
                        openai_api_key=local_model.http_api_key, request_timeout=60, max_retries=0)
    remote = OpenAIChatModel("qwen", settings, compatible=True)
    completion = remote.complete(ECHO, max_tokens=8)
    assert "banana" in completion.text.lower()
    assert completion.prompt_tokens > 0 and completion.completion_tokens > 0
    deltas = list(remote.stream([{"role": "user", "content": "Count from 1 to 5."}], max_tokens=16))
    assert len(deltas) > 1


@needs_local
def test_embedded_http_server_refuses_clients_without_its_key(local_model: LocalChatModel) -> None:
    base_url = local_model.start_http_server()
    request = urllib.request.Request(f"{base_url}/chat/completions", method="POST",
                                     data=json.dumps({"messages": ASK, "max_tokens": 2}).encode(),
                                     headers={"content-type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=30)
    assert info.value.code == 401


def test_serving_the_local_model_beyond_loopback_is_refused(tmp_path: Path) -> None:
    model = LocalChatModel(SMALL.name, Settings().with_(cache_dir=str(tmp_path)))
    with pytest.raises(ConfigError, match="loopback"):
        model.start_http_server(host="0.0.0.0")


@needs_local
def test_damaged_gguf_file_is_refused_with_a_model_file_error(local_model: LocalChatModel,
                                                              tmp_path: Path) -> None:
    local_model.complete(ECHO, max_tokens=2)  # makes sure the real file exists
    assert local_model.model_path is not None
    damaged = tmp_path / "damaged.gguf"
    with open(local_model.model_path, "rb") as src:
        damaged.write_bytes(src.read(300_000))  # a valid header, then nothing
    broken = LocalChatModel(str(damaged), Settings().with_(cache_dir=str(tmp_path)))
    with pytest.raises(ModelFileError, match="could not load"):
        broken.complete(ASK, max_tokens=2)
