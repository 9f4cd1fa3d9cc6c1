"""Secrets: the API key never reaches an error message, a log record, CLI output or an eval run folder.

The model server here is hostile on purpose: its error bodies echo the Authorization header back.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

import pytest
from loopback import LoopbackServer, QuietHandler
from prompt_format import prompt_sources
from typer.testing import CliRunner

from assistant.answering.ask import Assistant
from assistant.interfaces.cli import app
from assistant.errors import AssistantError, BackendUnavailableError
from assistant.indexing.build import build_index
from assistant.settings import Settings

KEY = "sk-test-CANARY-123456"
REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "articles"
ASTELLAS = "Which pharmaceutical company employed the senior employee detained in Beijing?"


pytestmark = pytest.mark.usefixtures("fresh_caches")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EchoServer(LoopbackServer):
    """An OpenAI-style server; `script(n, body)` gives a status, and error bodies echo the key back."""

    def __init__(self, script: Callable[[int, dict[str, Any]], int], echo_header: bool = False) -> None:
        self.script = script
        self.echo_header = echo_header
        self.requests = 0
        self.seen_keys: list[str] = []
        owner = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                owner.requests += 1
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                auth = self.headers.get("Authorization", "")
                owner.seen_keys.append(auth)
                status = owner.script(owner.requests, body)
                if status == 200:
                    payload: dict[str, Any] = {
                        "id": "x", "object": "chat.completion", "created": 0, "model": "m",
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": _extractive(body)}}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
                else:
                    payload = {"error": {"message": f"bad request from '{auth}' (key {auth[7:]})",
                                         "type": "invalid_request_error", "param": auth}}
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                if owner.echo_header:
                    self.send_header("x-echo-key", auth)
                self.end_headers()
                self.wfile.write(data)


        self.serve(Handler)



def _extractive(body: dict[str, Any]) -> str:
    prompt = body["messages"][-1]["content"]
    for label, _file, _date, text in prompt_sources(prompt):
        for sentence in re.split(r"(?<=[.!?])\s+", text):
            if "Astellas" in sentence:
                return f"{sentence} [{label}]"
    return "OK"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("secrets")
    corpus = root / "articles"
    shutil.copytree(SAMPLES, corpus)
    settings = Settings.from_env(environ={}, corpus_dir=str(corpus), index_dir=str(root / "idx"),
                                 embedder="fake:hash")
    build_index(corpus, settings=settings)
    return corpus, root / "idx"


@pytest.fixture
def key_env(clean_env: pytest.MonkeyPatch, built: tuple[Path, Path]) -> pytest.MonkeyPatch:
    """The key set the way users set it (environment), everything else offline and temporary."""
    corpus, index_dir = built
    clean_env.setenv("OPENAI_API_KEY", KEY)
    clean_env.setenv("ASSISTANT_EMBEDDER", "fake:hash")
    clean_env.setenv("ASSISTANT_INDEX_DIR", str(index_dir))
    clean_env.setenv("ASSISTANT_CORPUS", str(corpus))
    clean_env.setenv("ASSISTANT_LLM", "openai:gpt-test")
    clean_env.setenv("ASSISTANT_MAX_RETRIES", "1")
    clean_env.setenv("ASSISTANT_REQUEST_TIMEOUT", "5")
    return clean_env


def _no_key(*texts: str) -> None:
    for text in texts:
        assert KEY not in text and KEY[8:] not in text, f"the API key leaked: ...{text[max(0, text.find('CANARY') - 80):][:200]}"


def _error_texts(exc: BaseException) -> list[str]:
    return [str(exc), repr(exc), "".join(traceback.format_exception(exc))]


@pytest.mark.parametrize("status", [401, 403, 429, 500, 400, 404])
def test_key_echoed_by_a_failing_server_never_reaches_the_error_or_the_logs(
        key_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, status: int) -> None:
    caplog.set_level(logging.DEBUG)
    with EchoServer(lambda n, body: status) as server:
        key_env.setenv("ASSISTANT_OPENAI_BASE_URL", server.url)
        with pytest.raises(BackendUnavailableError) as info:
            Assistant(Settings.from_env()).ask(ASTELLAS)
        assert server.seen_keys and all(KEY in k for k in server.seen_keys), "the key must have been sent"
    _no_key(*_error_texts(info.value), caplog.text, *(r.getMessage() for r in caplog.records))


def test_key_echoed_in_a_response_header_never_reaches_debug_logs(key_env: pytest.MonkeyPatch,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    # openai and httpcore log response headers at DEBUG; a proxy that echoes the key in a header
    # must not turn `--log-level DEBUG` into a key dump.
    caplog.set_level(logging.DEBUG)
    with EchoServer(lambda n, body: 401, echo_header=True) as server:
        key_env.setenv("ASSISTANT_OPENAI_BASE_URL", server.url)
        with pytest.raises(BackendUnavailableError):
            Assistant(Settings.from_env()).ask(ASTELLAS)
    _no_key(caplog.text)


def test_key_never_appears_when_the_server_is_unreachable(key_env: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    key_env.setenv("ASSISTANT_OPENAI_BASE_URL", f"http://127.0.0.1:{_free_port()}/v1")
    with pytest.raises(BackendUnavailableError) as info:
        Assistant(Settings.from_env()).ask(ASTELLAS)
    _no_key(*_error_texts(info.value), caplog.text)


def test_settings_never_show_the_key(key_env: pytest.MonkeyPatch) -> None:
    settings = Settings.from_env()
    assert settings.model.openai_api_key == KEY
    _no_key(repr(settings), str(settings), json.dumps(settings.public_dict()))


def test_cli_ask_json_and_stderr_never_show_the_key(key_env: pytest.MonkeyPatch) -> None:
    with EchoServer(lambda n, body: 401) as server:
        key_env.setenv("ASSISTANT_OPENAI_BASE_URL", server.url)
        result = CliRunner().invoke(app, ["ask", ASTELLAS, "--json"])
    assert result.exit_code == BackendUnavailableError.exit_code, result.output
    assert "error:" in result.stderr and "OPENAI_API_KEY" in result.stderr
    _no_key(result.output, result.stderr, result.stdout)


def test_cli_chat_never_shows_the_key(key_env: pytest.MonkeyPatch) -> None:
    with EchoServer(lambda n, body: 500) as server:
        key_env.setenv("ASSISTANT_OPENAI_BASE_URL", server.url)
        result = CliRunner().invoke(app, ["chat"], input=ASTELLAS + "\n")
    assert result.exit_code != 0
    _no_key(result.output, result.stderr)


def test_cli_process_stderr_with_retry_warnings_never_shows_the_key(key_env: pytest.MonkeyPatch) -> None:
    # A real process: the library's retry warnings reach stderr through logging's last-resort handler.
    with EchoServer(lambda n, body: 503) as server:
        env = {**os.environ, "ASSISTANT_OPENAI_BASE_URL": server.url, "ASSISTANT_MAX_RETRIES": "2"}
        proc = subprocess.run([sys.executable, "-m", "assistant.interfaces.cli", "ask", ASTELLAS, "--json"], env=env,
                              capture_output=True, text=True, timeout=120)
        assert server.requests == 3, proc.stderr
    assert proc.returncode == BackendUnavailableError.exit_code, proc.stderr
    assert "retry" in proc.stderr and "HTTP 503" in proc.stderr
    _no_key(proc.stdout, proc.stderr)


def test_eval_run_folder_never_holds_the_key(key_env: pytest.MonkeyPatch, tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    runner = pytest.importorskip("assistant.evaluate.runner", reason="the eval runner is not written yet")
    caplog.set_level(logging.DEBUG)
    runs = tmp_path / "runs"
    # One whole run succeeds; the second run's warm-up too, then the server rejects (and echoes) the key.
    with EchoServer(lambda n, body: 200 if n <= 3 else 401) as server:
        key_env.setenv("ASSISTANT_OPENAI_BASE_URL", server.url)
        settings = Settings.from_env()
        dataset = REPO / "evals" / "datasets" / "sample.jsonl"
        completed = runner.run_eval(dataset, settings=settings, limit=1, runs_dir=runs)
        with pytest.raises(AssistantError) as info:
            runner.run_eval(dataset, settings=settings, limit=3, runs_dir=runs)
    _no_key(*_error_texts(info.value), caplog.text, json.dumps(completed.summary), completed.markdown)
    folders = [p for p in runs.iterdir() if p.is_dir()]
    assert len(folders) == 2, "the failed run keeps its folder (settings and finished cases)"
    for path in runs.rglob("*"):
        if path.is_file():
            _no_key(path.read_bytes().decode("utf-8", errors="replace"))
    settings_file = json.loads((completed.run_dir / "settings.json").read_text(encoding="utf-8"))
    assert settings_file["openai_api_key"] == "set"
