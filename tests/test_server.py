"""`assistant serve`: the HTTP API through the real `openai` client and raw HTTP, the model lock, errors,
the token, discovery through server.json, a server killed mid-answer, and `ask`/`chat` routed to it."""

from __future__ import annotations

import re

import http.client
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import httpx
import openai
import pytest

from conftest import built_sample
from typer.testing import CliRunner

import assistant.interfaces.protocol as protocol
from assistant.backends import get_llm
from assistant.interfaces.cli import app
from assistant.interfaces.client import ask_via_server, find_server, health
from assistant.errors import (BackendUnavailableError, ConfigError, IndexNotBuiltError, InputError,
                              ServerError)
from assistant.interfaces.server import AssistantServer, is_loopback, make_server
from assistant.settings import Settings
from assistant.types import Answer
from served import running

REPO = Path(__file__).resolve().parent.parent
ASTELLAS_Q = "Which pharmaceutical firm employed the senior employee detained in Beijing in March?"
UNANSWERABLE_Q = "Who won the Olympic gold medal for Brazil?"
HAYASHI_Q = "What did Foreign Minister Yoshimasa Hayashi announce on Friday?"
TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Offline settings (fake embedder and model) over a temp copy of the sample corpus, index built."""
    return built_sample(tmp_path_factory, "serve")


@pytest.fixture
def server(built: Settings) -> Iterator[AssistantServer]:
    """A server without a token, in a thread on a free port."""
    yield from running(built)


@pytest.fixture
def token_server(built: Settings) -> Iterator[AssistantServer]:
    """A server that requires TOKEN."""
    yield from running(built, TOKEN)


def _post(url: str, path: str, body: bytes | dict[str, Any], token: str = "",
          method: str = "POST") -> tuple[int, dict[str, Any]]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    conn.request(method, path, body=data if method == "POST" else None, headers=headers)
    response = conn.getresponse()
    status, raw = response.status, response.read()
    conn.close()
    return status, json.loads(raw)


def _client(url: str, token: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=token, max_retries=0, timeout=30)


# -- the OpenAI-compatible endpoint ------------------------------------------------------------------

def test_openai_client_gets_the_checked_answer_with_citations(server: AssistantServer) -> None:
    resp = _client(server.url).chat.completions.create(model="anything", messages=[
        {"role": "user", "content": ASTELLAS_Q}])
    assert resp.object == "chat.completion" and resp.model == "fake:extractive"
    assert "Astellas" in resp.choices[0].message.content and resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None and resp.usage.prompt_tokens > 0
    extra = resp.model_extra or {}
    assert extra["citations"] and extra["citations"][0]["file"].startswith("001_")
    assert {"label", "file", "start", "end", "quote", "inferred"} <= set(extra["citations"][0])
    assert extra["assistant"]["declined"] is False and extra["assistant"]["sources"]


def test_openai_client_streams_the_same_answer_then_citations(server: AssistantServer) -> None:
    client = _client(server.url)
    whole = client.chat.completions.create(model="m", messages=[{"role": "user", "content": ASTELLAS_Q}])
    chunks = list(client.chat.completions.create(model="m", messages=[{"role": "user", "content": ASTELLAS_Q}],
                                                 stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == whole.choices[0].message.content
    assert len([c for c in chunks if c.choices[0].delta.content]) > 1  # word groups, not one blob
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    assert (last.model_extra or {})["citations"] == (whole.model_extra or {})["citations"]
    assert (last.model_extra or {})["assistant"]["declined"] is False


def test_a_client_reading_only_the_content_sees_each_citation_label_file_and_quote(server: AssistantServer) -> None:
    resp = _client(server.url).chat.completions.create(model="m", messages=[{"role": "user", "content": ASTELLAS_Q}])
    content = resp.choices[0].message.content or ""
    answer, _, block = content.partition("\n\nSources:\n")
    assert "Astellas" in answer and block, content
    citations = (resp.model_extra or {})["citations"]
    for c in citations:
        assert f"[{c['label']}]" in answer
        line = next(line for line in block.splitlines() if line.startswith(f"[{c['label']}] "))
        assert c["file"] in line and " ".join(c["quote"].split())[:60] in line
    # Asked for without it (a client that reads the extra fields), the content is the answer alone.
    bare = _client(server.url).chat.completions.create(model="m", messages=[{"role": "user", "content": ASTELLAS_Q}],
                                                       extra_body={"sources_block": False})
    assert bare.choices[0].message.content == answer
    # A sources block sent back as history is not taken for what the assistant said.
    follow = _client(server.url).chat.completions.create(model="m", messages=[
        {"role": "user", "content": ASTELLAS_Q}, {"role": "assistant", "content": content},
        {"role": "user", "content": "When was that employee detained?"}])
    model = get_llm(server.settings)
    rewrites = [m[-1]["content"] for m in model.requests if m[-1]["content"].startswith("Rewrite")]
    assert rewrites and "Sources:" not in rewrites[-1] and follow.choices[0].message.content


def test_the_sources_block_can_be_switched_off_by_setting(built: Settings) -> None:
    for server in running(built.with_(server_sources_block=False)):
        resp = _client(server.url).chat.completions.create(model="m", messages=[{"role": "user", "content": ASTELLAS_Q}])
        assert "Sources:" not in (resp.choices[0].message.content or "")
        assert (resp.model_extra or {})["citations"]


def test_a_declined_question_is_the_decline_text_with_its_reason(server: AssistantServer) -> None:
    resp = _client(server.url).chat.completions.create(model="m", messages=[
        {"role": "user", "content": UNANSWERABLE_Q}])
    extra = resp.model_extra or {}
    assert resp.choices[0].message.content.startswith("The articles don't say.")
    assert extra["assistant"]["declined"] is True and extra["assistant"]["decline_reason"]
    assert extra["citations"] == []


def test_the_stream_is_chunked_and_sends_keep_alives_while_the_answer_is_made(
        server: AssistantServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(protocol, "KEEPALIVE_S", 0.05)
    real = server.answer

    def slow(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.4)
        return real(*args, **kwargs)

    monkeypatch.setattr(server, "answer", slow)
    conn = http.client.HTTPConnection(server.url.removeprefix("http://"), timeout=30)
    conn.request("POST", "/v1/chat/completions", body=json.dumps(
        {"messages": [{"role": "user", "content": ASTELLAS_Q}], "stream": True}))
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("Transfer-Encoding") == "chunked"
    assert response.getheader("Content-Type").startswith("text/event-stream")
    body = response.read().decode()
    conn.close()
    role, keep_alive, done = (body.index('"role": "assistant"'), body.index(": keep-alive"),
                              body.index("data: [DONE]"))
    assert role < keep_alive < body.index("Astellas") < done


def test_earlier_turns_become_the_history_the_follow_up_is_rewritten_with(server: AssistantServer) -> None:
    model = get_llm(server.settings)
    model.requests.clear()
    first = _client(server.url).chat.completions.create(model="m", messages=[
        {"role": "user", "content": ASTELLAS_Q}])
    follow = "When was that employee detained?"
    resp = _client(server.url).chat.completions.create(model="m", messages=[
        {"role": "system", "content": "ignored"},
        {"role": "user", "content": ASTELLAS_Q},
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": follow}])
    rewrites = [m[-1]["content"] for m in model.requests if m[-1]["content"].startswith("Rewrite")]
    assert len(rewrites) == 1 and ASTELLAS_Q in rewrites[0] and "Astellas Pharma" in rewrites[0]
    assert follow in rewrites[0]
    assert (resp.model_extra or {})["assistant"]["question"] == follow


def test_v1_models_lists_the_one_model(server: AssistantServer) -> None:
    assert [m.id for m in _client(server.url).models.list()] == ["fake:extractive"]


# -- /v1/ask and /healthz -----------------------------------------------------------------------------

def test_v1_ask_returns_the_answer_json_and_applies_filters(server: AssistantServer) -> None:
    status, body = _post(server.url, "/v1/ask", {"question": ASTELLAS_Q})
    assert status == 200 and "Astellas" in body["answer"] and not body["declined"]
    assert {"question", "citations", "sources", "verdicts", "timings", "decline_reason"} <= set(body)
    assert Answer.from_dict(body).to_dict() == body  # the client rebuilds exactly what was sent
    status, body = _post(server.url, "/v1/ask", {"question": ASTELLAS_Q, "files": ["004_749f0bb3dcd254b9.txt"]})
    assert status == 200 and {s["file"] for s in body["sources"]} <= {"004_749f0bb3dcd254b9.txt"}
    status, body = _post(server.url, "/v1/ask", {"question": ASTELLAS_Q, "since": "yesterday"})
    assert status == 400 and "is not a date" in body["error"]["message"]


def test_ask_via_server_rebuilds_the_answer(server: AssistantServer) -> None:
    answer = ask_via_server(server.url, ASTELLAS_Q)
    assert "Astellas" in answer.answer and answer.citations[0].file.startswith("001_")
    assert answer.verdicts and answer.verdicts[0].name
    with pytest.raises(InputError, match="is not a date"):
        ask_via_server(server.url, ASTELLAS_Q, since="yesterday")


def test_healthz_reports_the_model_and_index_without_waiting_for_the_model(server: AssistantServer) -> None:
    with server.lock:  # a long answer in progress
        status = health(server.url, timeout=2)
    assert status["status"] == "ok" and status["model"] == "fake:extractive" and status["busy"] is True
    assert status["fingerprint"] and status["fingerprint"] in status["index"]


@pytest.fixture
def roomy_server(built: Settings) -> Iterator[AssistantServer]:
    """A server whose queue holds six requests."""
    yield from running(built.with_(server_queue_max=6))


def test_parallel_requests_queue_for_the_one_model_and_are_all_answered(
        roomy_server: AssistantServer, monkeypatch: pytest.MonkeyPatch) -> None:
    server = roomy_server
    active, peak = [0], [0]
    real = server.assistant.ask

    def counted(*args: Any, **kwargs: Any) -> Any:
        active[0] += 1
        peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        try:
            return real(*args, **kwargs)
        finally:
            active[0] -= 1

    monkeypatch.setattr(server.assistant, "ask", counted)
    questions = [ASTELLAS_Q, UNANSWERABLE_Q] * 3
    results: dict[int, Any] = {}

    def one(n: int) -> None:
        if n % 2:
            results[n] = _post(server.url, "/v1/ask", {"question": questions[n]})[1]["answer"]
        else:
            resp = _client(server.url).chat.completions.create(model="m", messages=[
                {"role": "user", "content": questions[n]}])
            results[n] = resp.choices[0].message.content

    threads = [threading.Thread(target=one, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == list(range(6)) and peak[0] == 1
    for n, text in results.items():
        assert ("Astellas" in text) if questions[n] == ASTELLAS_Q else text.startswith("The articles don't say.")


# -- load and bad input ------------------------------------------------------------------------------

def _raw(url: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
    """(status, headers, JSON body) of one POST."""
    conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=60)
    conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    out = response.status, {k.lower(): v for k, v in response.getheaders()}, json.loads(response.read())
    conn.close()
    return out


@pytest.mark.parametrize("path, key", [("/v1/ask", "question"), ("/v1/chat/completions", "messages")])
def test_a_question_over_the_limit_is_413_with_the_setting_named(server: AssistantServer, path: str, key: str) -> None:
    question = "Why? " * 401  # 2,005 characters, over the default 2,000
    body: dict[str, Any] = {key: question if key == "question" else [{"role": "user", "content": question}]}
    status, _, reply = _raw(server.url, path, body)
    assert status == 413 and "ASSISTANT_SERVER_QUESTION_MAX_CHARS" in reply["error"]["message"]
    assert server.answered == 0  # refused before the model


def test_beyond_the_queue_bound_a_request_gets_503_with_retry_after(built: Settings,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    for server in running(built.with_(server_queue_max=1)):
        release, entered = threading.Event(), threading.Event()
        real = server.answer

        def held(*args: Any, **kwargs: Any) -> Any:
            entered.set()
            release.wait(30)
            return real(*args, **kwargs)

        monkeypatch.setattr(server, "answer", held)
        first: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: first.update(r=_raw(server.url, "/v1/ask", {"question": ASTELLAS_Q})))
        thread.start()
        assert entered.wait(30)
        assert _post(server.url, "/healthz", b"", method="GET")[1]["queue"] == 1
        status, headers, reply = _raw(server.url, "/v1/chat/completions",
                                      {"messages": [{"role": "user", "content": ASTELLAS_Q}], "stream": True})
        assert status == 503 and int(headers["retry-after"]) >= 1
        assert "ASSISTANT_SERVER_QUEUE_MAX" in reply["error"]["message"] and reply["error"]["type"] == "server_busy"
        release.set()
        thread.join(30)
        assert first["r"][0] == 200 and "Astellas" in first["r"][2]["answer"]
        assert _post(server.url, "/healthz", b"", method="GET")[1]["queue"] == 0


def test_twenty_concurrent_clients_each_get_an_answer_or_a_clean_503(built: Settings,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    for server in running(built.with_(server_queue_max=4)):
        real = server.answer

        def slow(*args: Any, **kwargs: Any) -> Any:
            time.sleep(0.1)
            return real(*args, **kwargs)

        monkeypatch.setattr(server, "answer", slow)
        results: dict[int, tuple[int, dict[str, str], dict[str, Any]]] = {}

        def one(n: int) -> None:
            path, body = (("/v1/ask", {"question": ASTELLAS_Q}) if n % 2 else
                          ("/v1/chat/completions", {"messages": [{"role": "user", "content": ASTELLAS_Q}]}))
            results[n] = _raw(server.url, path, body)

        threads = [threading.Thread(target=one, args=(n,)) for n in range(20)]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert time.monotonic() - start < 60 and not any(t.is_alive() for t in threads)  # none hangs
        assert sorted(results) == list(range(20))  # none is lost
        answered = [n for n, (status, _, _) in results.items() if status == 200]
        busy = [n for n, (status, headers, _) in results.items() if status == 503 and "retry-after" in headers]
        assert len(answered) + len(busy) == 20 and len(answered) >= 4
        assert server.answered == len(answered)


# -- errors and the token -----------------------------------------------------------------------------

@pytest.mark.parametrize("path, body, status, words", [
    ("/v1/ask", b"{not json", 400, "not valid JSON"),
    ("/v1/ask", b"[1, 2]", 400, "JSON object"),
    ("/v1/ask", {"question": "  "}, 400, "'question'"),
    ("/v1/ask", {"question": 5}, 400, "'question'"),
    ("/v1/ask", {"question": ASTELLAS_Q, "files": "001.txt"}, 400, "'files'"),
    ("/v1/chat/completions", {"messages": []}, 400, "'messages'"),
    ("/v1/chat/completions", {"messages": [{"role": "assistant", "content": "hi"}]}, 400, "last message"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}, 400, "'stream'"),
    ("/v1/nothing", {}, 404, "no endpoint"),
    ("/v1/ask", b'{"question": "' + b"x" * 1_100_000 + b'"}', 413, "over"),
])
def test_bad_requests_get_an_openai_shaped_error(server: AssistantServer, path: str, body: Any, status: int,
                                                 words: str) -> None:
    got, reply = _post(server.url, path, body)
    assert got == status and words in reply["error"]["message"] and reply["error"]["type"]
    assert "Traceback" not in json.dumps(reply)


def test_a_get_on_a_post_endpoint_is_405(server: AssistantServer) -> None:
    assert _post(server.url, "/v1/ask", b"", method="GET")[0] == 405


def test_a_library_failure_is_a_json_error_not_a_traceback(server: AssistantServer,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(server.assistant, "ask", broken)
    status, reply = _post(server.url, "/v1/ask", {"question": ASTELLAS_Q})
    assert status == 500 and "secret internals" not in json.dumps(reply)
    chunks = _client(server.url).chat.completions.create(model="m", messages=[
        {"role": "user", "content": ASTELLAS_Q}], stream=True)
    with pytest.raises(openai.APIError, match="internal server error"):
        list(chunks)


@pytest.mark.parametrize("error, status", [(IndexNotBuiltError("index not built: run `assistant index`"), 503),
                                           (BackendUnavailableError("model server down"), 502)])
def test_library_errors_keep_their_message_status_and_class(server: AssistantServer, monkeypatch: pytest.MonkeyPatch,
                                                            error: Exception, status: int) -> None:
    def failing(*args: Any, **kwargs: Any) -> Any:
        raise error

    monkeypatch.setattr(server.assistant, "ask", failing)
    got, reply = _post(server.url, "/v1/ask", {"question": ASTELLAS_Q})
    assert got == status and reply["error"]["message"] == str(error)
    with pytest.raises(type(error), match=str(error)[:10]):
        ask_via_server(server.url, ASTELLAS_Q)


def test_the_token_is_required_everywhere_but_healthz(token_server: AssistantServer) -> None:
    url = token_server.url
    assert _post(url, "/v1/ask", {"question": ASTELLAS_Q})[0] == 401
    status, reply = _post(url, "/v1/ask", {"question": ASTELLAS_Q}, token="wrong")
    assert status == 401 and reply["error"]["type"] == "authentication_error"
    assert _post(url, "/v1/models", b"", method="GET")[0] == 401
    assert _post(url, "/v1/ask", {"question": ASTELLAS_Q}, token=TOKEN)[0] == 200
    assert health(url)["token_required"] is True
    with pytest.raises(openai.AuthenticationError):
        _client(url, "wrong").chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    resp = _client(url, TOKEN).chat.completions.create(model="m", messages=[{"role": "user", "content": ASTELLAS_Q}])
    assert "Astellas" in resp.choices[0].message.content
    with pytest.raises(ConfigError, match="ASSISTANT_SERVER_TOKEN"):
        ask_via_server(url, ASTELLAS_Q)


def test_a_non_loopback_host_without_a_token_is_refused(built: Settings) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("127.8.0.1") and is_loopback("::1")
    assert is_loopback("localhost") and not is_loopback("0.0.0.0") and not is_loopback("192.168.1.20")
    with pytest.raises(ConfigError, match="--token"):
        make_server(built, host="0.0.0.0", port=0, token="")
    server = make_server(built, host="0.0.0.0", port=0, token=TOKEN, warm=False)
    assert server.url.startswith("http://127.0.0.1:")
    server.server_close()


# -- the CLI through a server -------------------------------------------------------------------------

runner = CliRunner()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, built: Settings) -> pytest.MonkeyPatch:
    """The environment a user would set, pointing at the built index."""
    for name in list(os.environ):
        if name.startswith("ASSISTANT_") or name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
            monkeypatch.delenv(name, raising=False)
    for var, value in (("ASSISTANT_CORPUS", built.index.corpus_dir), ("ASSISTANT_INDEX_DIR", built.index.index_dir),
                       ("ASSISTANT_EMBEDDER", "fake:hash"), ("ASSISTANT_LLM", "fake:extractive")):
        monkeypatch.setenv(var, value)
    return monkeypatch


def test_cli_ask_uses_the_server_in_assistant_server_url(server: AssistantServer, env: pytest.MonkeyPatch) -> None:
    env.setenv("ASSISTANT_SERVER_URL", server.url)
    before = server.answered
    result = runner.invoke(app, ["ask", ASTELLAS_Q])
    assert result.exit_code == 0, result.output
    assert "Astellas" in result.stdout and "Sources:" in result.stdout and re.search(r"\[S\d+\] 001_", result.stdout)
    result = runner.invoke(app, ["ask", ASTELLAS_Q, "--json", "--file", "001_e2d5a160401ece19.txt"])
    assert result.exit_code == 0 and json.loads(result.stdout)["citations"][0]["file"] == "001_e2d5a160401ece19.txt"
    result = runner.invoke(app, ["ask", ASTELLAS_Q, "--since", "yesterday"])
    assert result.exit_code == InputError.exit_code and "is not a date" in result.stderr
    assert server.answered == before + 2


def test_cli_ask_with_another_llm_answers_in_process(server: AssistantServer, env: pytest.MonkeyPatch) -> None:
    env.setenv("ASSISTANT_SERVER_URL", server.url)
    before = server.answered
    result = runner.invoke(app, ["ask", ASTELLAS_Q, "--llm", "fake:queue"])
    assert server.answered == before and result.exit_code != 0  # the empty queue model, in this process


def test_cli_chat_sends_the_history_to_the_server(server: AssistantServer, env: pytest.MonkeyPatch) -> None:
    env.setenv("ASSISTANT_SERVER_URL", server.url)
    before = server.answered
    result = runner.invoke(app, ["chat"], input=f"{ASTELLAS_Q}\n/sources\nWhen was that employee detained?\n")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("Astellas") >= 2 and re.search(r"\[S\d+\] 001_", result.stdout)
    assert "  - 001_" in result.stdout  # /sources lists the last answer's passages
    assert server.answered == before + 2
    rewrites = [m for m in get_llm(server.settings).requests if m[-1]["content"].startswith("Rewrite")]
    assert rewrites and ASTELLAS_Q in rewrites[-1][-1]["content"]


def test_cli_ask_with_an_unreachable_server_url_fails_clearly(env: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env.setenv("ASSISTANT_SERVER_URL", f"http://127.0.0.1:{port}")
    result = runner.invoke(app, ["ask", ASTELLAS_Q])
    assert result.exit_code == ServerError.exit_code
    assert f"127.0.0.1:{port}" in result.stderr and "assistant serve" in result.stderr
    assert "ASSISTANT_SERVER_URL" in result.stderr and "Traceback" not in result.output


def test_a_stale_server_json_is_ignored(env: pytest.MonkeyPatch, built: Settings) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    path = Path(built.index.index_dir) / "server.json"
    try:
        for pid in (gone.pid, os.getpid()):  # a dead process; a live one that serves nothing
            path.write_text(json.dumps({"url": "http://127.0.0.1:9", "pid": pid, "model": "fake:extractive",
                                        "token_required": False}))
            assert find_server(Settings.from_env()) is None
        result = runner.invoke(app, ["ask", ASTELLAS_Q])
        assert result.exit_code == 0 and "Astellas" in result.stdout
    finally:
        path.unlink(missing_ok=True)


# -- a real `assistant serve` process -----------------------------------------------------------------

# The server process, with questions containing "slow" taking a minute (the keep-alive phase).
SLOW_SERVE = """
import sys, time
import assistant.answering.ask as answering
real = answering.Assistant.ask
def ask(self, question, filters=None):
    if "slow" in question:
        time.sleep(60)
    return real(self, question, filters=filters)
answering.Assistant.ask = ask
from assistant.interfaces.cli import main
sys.argv = ["assistant", "serve", "--port", "0"]
main()
"""


def _spawn(built: Settings, tmp_path: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any], Path]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    env.update(ASSISTANT_CORPUS=built.index.corpus_dir, ASSISTANT_INDEX_DIR=built.index.index_dir,
               ASSISTANT_EMBEDDER="fake:hash", ASSISTANT_LLM="fake:extractive", HF_HUB_OFFLINE="1")
    log = tmp_path / "serve.log"
    path = Path(built.index.index_dir) / "server.json"
    path.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", SLOW_SERVE], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=log.open("wb"))
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited: {log.read_text()}")
        if "serving on" in log.read_text():
            return proc, json.loads(path.read_text()), log
        time.sleep(0.1)
    proc.kill()
    pytest.fail(f"server did not start: {log.read_text()}")


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_serve_announces_itself_and_removes_server_json_when_stopped(
        built: Settings, tmp_path: Path, env: pytest.MonkeyPatch, stop: signal.Signals) -> None:
    proc, info, log = _spawn(built, tmp_path)
    path = Path(built.index.index_dir) / "server.json"
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert info["pid"] == proc.pid and info["model"] == "fake:extractive" and info["token_required"] is False
        assert f"serving on {info['url']}" in log.read_text()
        assert find_server(Settings.from_env()) == info["url"]
        result = runner.invoke(app, ["ask", ASTELLAS_Q, "--json"])  # found through server.json
        assert result.exit_code == 0 and "Astellas" in json.loads(result.stdout)["answer"]
        assert health(info["url"])["answered"] == 1
    finally:
        proc.send_signal(stop)
        assert proc.wait(30) == 0
    assert not path.exists()


def test_a_server_killed_mid_answer_is_an_error_not_a_quiet_end(
        built: Settings, tmp_path: Path, env: pytest.MonkeyPatch) -> None:
    proc, info, _ = _spawn(built, tmp_path)
    url = info["url"]
    try:
        stream = _client(url).chat.completions.create(model="m", stream=True, messages=[
            {"role": "user", "content": f"slow: {ASTELLAS_Q}"}])
        events = iter(stream)
        assert next(events).choices[0].delta.role == "assistant"  # sent before the answer is made
        failures: list[BaseException] = []

        def ask() -> None:
            try:
                ask_via_server(url, f"slow: {ASTELLAS_Q}")
            except BaseException as exc:
                failures.append(exc)

        asking = threading.Thread(target=ask)
        asking.start()
        time.sleep(0.5)
    finally:
        proc.kill()
        proc.wait(30)
    with pytest.raises((httpx.HTTPError, openai.APIError)) as info_exc:
        for _ in events:
            pass
    causes = [info_exc.value]
    while causes[-1].__cause__ is not None:
        causes.append(causes[-1].__cause__)
    assert any("incomplete chunked read" in str(c) for c in causes), causes
    asking.join(30)
    assert len(failures) == 1 and isinstance(failures[0], ServerError)
    assert url in str(failures[0]) and "assistant serve" in str(failures[0])
    assert find_server(Settings.from_env()) is None  # server.json is left behind, and ignored
    (Path(built.index.index_dir) / "server.json").unlink(missing_ok=True)


# -- the endpoints the web page reads, the docs, and a client that leaves ---------------------------

def _get(url: str, path: str, token: str = "") -> tuple[int, Any]:
    return _post(url, path, b"", token=token, method="GET")


def test_v1_ask_stream_sends_the_draft_then_the_same_answer_as_v1_ask(server: AssistantServer) -> None:
    conn = http.client.HTTPConnection(server.url.removeprefix("http://"), timeout=30)
    conn.request("POST", "/v1/ask/stream", body=json.dumps({"question": ASTELLAS_Q}),
                 headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("Content-Type").startswith("application/x-ndjson")
    events = [json.loads(line) for line in response.read().decode().splitlines() if line.strip()]
    conn.close()
    kinds = [e["type"] for e in events]
    assert kinds[-1] == "answer" and kinds.count("delta") > 1 and "error" not in kinds
    final = events[-1]["answer"]
    whole = _post(server.url, "/v1/ask", {"question": ASTELLAS_Q})[1]
    assert final["answer"] == whole["answer"] and final["citations"] == whole["citations"]
    assert "Astellas" in "".join(e["text"] for e in events if e["type"] == "delta")  # the draft, as it was made


def test_v1_ask_with_history_rewrites_the_follow_up(server: AssistantServer) -> None:
    first = _post(server.url, "/v1/ask", {"question": ASTELLAS_Q})[1]
    status, body = _post(server.url, "/v1/ask", {"question": "When was that employee detained?",
                                                 "history": [{"question": ASTELLAS_Q, "answer": first["answer"]}]})
    rewrites = [m[-1]["content"] for m in get_llm(server.settings).requests if m[-1]["content"].startswith("Rewrite")]
    assert status == 200 and body["question"] == "When was that employee detained?" and body["standalone_question"]
    assert rewrites and ASTELLAS_Q in rewrites[-1]


def test_v1_files_gives_the_indexed_text_and_refuses_anything_else(server: AssistantServer) -> None:
    status, listing = _get(server.url, "/v1/files")
    assert status == 200 and len(listing["files"]) == 5 and listing["files"][0]["date"]
    answer = _post(server.url, "/v1/ask", {"question": ASTELLAS_Q})[1]
    c = answer["citations"][0]
    status, article = _get(server.url, f"/v1/files/{c['file']}")
    assert status == 200 and article["text"][c["start"]:c["end"]] == c["quote"]
    outside = Path(server.settings.index.corpus_dir).parent / "secret.txt"
    outside.write_text("not an article")
    for path, expected in (("/v1/files/../secret.txt", 403), ("/v1/files/%2E%2E/secret.txt", 403),
                           ("/v1/files/..%2Fsecret.txt", 403), ("/v1/files/%2Fetc%2Fpasswd", 403),
                           ("/v1/files/metadata.json", 404), ("/v1/files/nothing.txt", 404)):
        status, reply = _get(server.url, path)
        assert status == expected and "not an article" not in json.dumps(reply), (path, status)


def test_v1_search_and_v1_timeline(server: AssistantServer) -> None:
    status, found = _get(server.url, "/v1/search?q=seafood%20import%20ban&k=2&file=003_f17476cd56e4653e.txt")
    assert status == 200 and found["passages"] and len(found["passages"]) <= 2
    assert {p["file"] for p in found["passages"]} == {"003_f17476cd56e4653e.txt"}
    status, found = _get(server.url, "/v1/search?q=seafood%20import%20ban&k=3")
    assert status == 200 and len(found["passages"]) == 3 and all(p["text"] for p in found["passages"])
    assert _get(server.url, "/v1/search?q=ban&since=yesterday")[0] == 400
    status, timeline = _get(server.url, "/v1/timeline?topic=Hayashi%20Qin%20Gang%20meeting%20visit%20Beijing")
    assert status == 200 and timeline["events"] and {"date", "status", "citations"} <= set(timeline["events"][0])
    status, reply = _get(server.url, "/v1/timeline")
    assert status == 400 and "'topic'" in reply["error"]["message"]


def test_openapi_and_the_docs_are_served_from_this_process(server: AssistantServer) -> None:
    status, schema = _get(server.url, "/openapi.json")
    assert status == 200 and {"/v1/ask", "/v1/chat/completions", "/v1/ask/stream", "/v1/timeline"} <= set(schema["paths"])
    assert "question" in schema["components"]["schemas"]["AskRequest"]["properties"]
    for path in ("/docs", "/"):
        with urllib.request.urlopen(server.url + path, timeout=10) as reply:
            page = reply.read().decode()
        assert reply.status == 200 and not re.search(r"""(src|href)=["']https?:""", page), path
    with urllib.request.urlopen(server.url + "/docs/assets/swagger-ui-bundle.js", timeout=10) as reply:
        assert reply.status == 200 and len(reply.read()) > 100_000


def test_the_page_and_docs_need_no_token_but_the_api_does(token_server: AssistantServer) -> None:
    assert _get(token_server.url, "/openapi.json")[0] == 200
    for path in ("/v1/files", "/v1/search?q=ban", "/v1/timeline?topic=ban"):
        assert _get(token_server.url, path)[0] == 401, path
    assert _get(token_server.url, "/v1/files", token=TOKEN)[0] == 200


def test_a_client_that_leaves_mid_stream_frees_its_place_and_the_server_goes_on(
        server: AssistantServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(protocol, "KEEPALIVE_S", 0.05)
    release = threading.Event()
    real = server.answer

    def held(*args: Any, **kwargs: Any) -> Any:
        release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(server, "answer", held)
    before = server.answered
    sock = socket.create_connection(server.url.removeprefix("http://").split(":"), timeout=30)
    body = json.dumps({"messages": [{"role": "user", "content": ASTELLAS_Q}], "stream": True}).encode()
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    assert b"keep-alive" in sock.recv(65536) + sock.recv(65536)  # the stream has begun
    sock.close()  # the client leaves while its answer is made
    assert health(server.url)["queue"] == 1
    release.set()
    deadline = time.monotonic() + 30
    while health(server.url)["queue"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert health(server.url)["queue"] == 0 and server.answered == before + 1  # made, and its place freed
    resp = _client(server.url).chat.completions.create(model="m", messages=[{"role": "user", "content": ASTELLAS_Q}])
    assert "Astellas" in resp.choices[0].message.content


def test_a_page_that_leaves_while_its_question_waits_for_the_model_is_dropped_from_the_queue(
        server: AssistantServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(protocol, "KEEPALIVE_S", 0.05)
    before = server.answered
    with server.lock:  # the model is busy with another question
        sock = socket.create_connection(server.url.removeprefix("http://").split(":"), timeout=30)
        body = json.dumps({"question": ASTELLAS_Q}).encode()
        sock.sendall(b"POST /v1/ask/stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        assert b'"wait"' in sock.recv(65536)
        assert health(server.url)["queue"] == 1
        sock.close()
        time.sleep(0.5)  # several keep-alive beats: the server notices the client is gone
    deadline = time.monotonic() + 30
    while health(server.url)["queue"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert health(server.url)["queue"] == 0 and server.answered == before  # never answered
    assert _post(server.url, "/v1/ask", {"question": ASTELLAS_Q})[0] == 200 and server.answered == before + 1
