"""The OpenAI protocol for real: the embedded 1.5B model serves llama.cpp's OpenAI-compatible API on
loopback, and the assistant answers through it as `openai-compatible:<model>` (Python API and CLI).
A missing or wrong OPENAI_API_KEY gives a message naming the setting, never the key."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Iterator

import pytest
from typer.testing import CliRunner

from assistant import Answer, Assistant
from assistant.backends import get_llm
from assistant.backends.cache import CACHE
from assistant.backends.llms import LocalChatModel
from assistant.backends.openai_chat import OpenAIChatModel
from assistant.interfaces.cli import app
from assistant.errors import BackendUnavailableError
from assistant.indexing.build import build_index
from assistant.settings import Settings

REPO = Path(__file__).resolve().parent.parent
QUESTION = "Which company employed the Japanese businessman detained in Beijing?"
ASTELLAS_FILES = {"000_ab41fa749cc5eede.txt", "001_e2d5a160401ece19.txt"}
MODEL = "qwen2.5-coder-1.5b"


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("openai")
    shutil.copytree(REPO / "articles", root / "articles")
    s = Settings.from_env(environ={}, corpus_dir=str(root / "articles"), index_dir=str(root / "index"))
    build_index(s.index.corpus_dir, settings=s)
    return s


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, str]]:
    """(base URL, bearer key) of the embedded model's OpenAI-compatible server on loopback."""
    model = LocalChatModel(MODEL, Settings.from_env(environ={}))
    url = model.start_http_server()
    assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
    yield url, model.http_api_key
    del model


@pytest.fixture(scope="module")
def remote(indexed: Settings, server: tuple[str, str]) -> Settings:
    url, key = server
    return indexed.with_(llm=f"openai-compatible:{MODEL}", openai_base_url=url, openai_api_key=key)


@pytest.fixture(scope="module")
def answer(remote: Settings) -> Answer:
    return Assistant(remote).ask(QUESTION)


def test_the_assistant_answers_through_the_openai_compatible_server(remote: Settings, answer: Answer) -> None:
    assert isinstance(get_llm(remote), OpenAIChatModel)
    assert answer.declined is False, answer.to_dict()
    assert "Astellas" in answer.answer
    assert answer.prompt_tokens > 0 and answer.completion_tokens > 0, "usage comes back over HTTP"
    assert any(c.file in ASTELLAS_FILES for c in answer.citations)
    for c in answer.citations:
        assert c.quote == (Path(remote.index.corpus_dir) / c.file).read_text(encoding="utf-8")[c.start:c.end]


def test_streaming_over_http_yields_several_deltas_before_the_answer(remote: Settings, answer: Answer) -> None:
    events = list(Assistant(remote).stream(QUESTION))

    assert isinstance(events[-1], Answer) and not events[-1].declined
    assert len(events) - 1 >= 3 and all(isinstance(e, str) for e in events[:-1])
    assert "Astellas" in "".join(events[:-1])


def test_a_missing_key_is_refused_with_a_message_naming_openai_api_key(remote: Settings, answer: Answer) -> None:
    s = remote.with_(openai_api_key="", max_retries=0)
    with pytest.raises(BackendUnavailableError) as info:
        Assistant(s).ask(QUESTION)
    assert "OPENAI_API_KEY" in str(info.value) and "401" in str(info.value)


def test_a_wrong_key_is_refused_without_revealing_it(remote: Settings, answer: Answer) -> None:
    s = remote.with_(openai_api_key="sk-wrong-SECRET-1234", max_retries=0)
    with pytest.raises(BackendUnavailableError) as info:
        Assistant(s).ask(QUESTION)
    message = str(info.value)
    assert "OPENAI_API_KEY" in message and remote.model.openai_base_url in message
    assert "sk-wrong-SECRET-1234" not in message


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, remote: Settings) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("ASSISTANT_") or name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ASSISTANT_CORPUS", remote.index.corpus_dir)
    monkeypatch.setenv("ASSISTANT_INDEX_DIR", remote.index.index_dir)
    monkeypatch.setenv("ASSISTANT_LLM", remote.model.llm)
    monkeypatch.setenv("ASSISTANT_OPENAI_BASE_URL", remote.model.openai_base_url)
    monkeypatch.setenv("ASSISTANT_MAX_RETRIES", "0")
    return monkeypatch


def test_the_cli_answers_through_the_server_with_the_key_from_the_environment(
        cli_env: pytest.MonkeyPatch, remote: Settings, answer: Answer) -> None:
    cli_env.setenv("OPENAI_API_KEY", remote.model.openai_api_key)
    result = CliRunner().invoke(app, ["ask", QUESTION, "--json"])

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["declined"] is False and "Astellas" in data["answer"]
    assert {c["file"] for c in data["citations"]} & ASTELLAS_FILES
    assert remote.model.openai_api_key not in result.output


def test_the_cli_without_openai_api_key_exits_5_naming_it(cli_env: pytest.MonkeyPatch, answer: Answer) -> None:
    CACHE.clear("llm")  # a client built with the key must not be reused
    result = CliRunner().invoke(app, ["ask", QUESTION])

    assert result.exit_code == 5
    assert "OPENAI_API_KEY" in result.stderr and "Traceback" not in result.output
