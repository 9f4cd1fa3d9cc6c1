"""The real CLI through typer's runner: `assistant ask` (text and --json, filters, first-run indexing,
errors with exit codes) and `assistant chat` reading one question per line from a pipe."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
from pathlib import Path
from typing import Iterator

import pytest
from typer.testing import CliRunner

import assistant.answering
import assistant.chat
from assistant.backends import _LLM_CACHE
from assistant.backends.fakes import FakeChatModel
from assistant.cli import app
from assistant.indexing import build_index
from assistant.settings import Settings

REPO = Path(__file__).resolve().parent.parent
ASTELLAS_Q = "Which pharmaceutical firm employed the senior employee detained in Beijing in March?"
UNANSWERABLE_Q = "Who won the Olympic gold medal for Brazil?"
MINISTERS_Q = "What did the Japanese foreign minister discuss with his Chinese counterpart in Beijing?"
HAYASHI_Q = "What did Foreign Minister Yoshimasa Hayashi announce on Friday?"
SECRET = "sk-cli-SECRET-4242"

runner = CliRunner()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(corpus, index dir) with the index already built by the fake embedder."""
    root = tmp_path_factory.mktemp("cli")
    shutil.copytree(REPO / "articles", root / "articles")
    settings = Settings.from_env(environ={}, corpus_dir=str(root / "articles"), index_dir=str(root / "index"),
                                 embedder="fake:hash")
    build_index(settings.corpus_dir, settings=settings)
    return root / "articles", root / "index"


def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("ASSISTANT_") or name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, built: tuple[Path, Path]) -> Iterator[pytest.MonkeyPatch]:
    """Settings through the environment, as a user would set them: fake backends, the temp index."""
    _clean(monkeypatch)
    corpus, index_dir = built
    monkeypatch.setenv("ASSISTANT_CORPUS", str(corpus))
    monkeypatch.setenv("ASSISTANT_INDEX_DIR", str(index_dir))
    monkeypatch.setenv("ASSISTANT_EMBEDDER", "fake:hash")
    monkeypatch.setenv("ASSISTANT_LLM", "fake:extractive")
    _LLM_CACHE.clear()
    yield monkeypatch
    _LLM_CACHE.clear()


def ask_json(*args: str) -> dict:
    result = runner.invoke(app, ["ask", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- ask ---------------------------------------------------------------------------------------------

def test_ask_json_prints_question_answer_declined_citations_sources_and_timings(env, built) -> None:
    data = ask_json(ASTELLAS_Q)

    assert {"question", "answer", "declined", "citations", "sources", "timings"} <= set(data)
    assert data["question"] == ASTELLAS_Q
    assert data["declined"] is False and "Astellas" in data["answer"]
    assert data["citations"]
    corpus = built[0]
    for c in data["citations"]:
        assert set(c) == {"label", "file", "start", "end", "quote", "inferred"}
        assert c["quote"] == (corpus / c["file"]).read_text(encoding="utf-8")[c["start"]:c["end"]]
        assert f"[{c['label']}]" in data["answer"]
    assert all({"file", "start", "end", "text"} <= set(s) for s in data["sources"])
    assert data["timings"]["total_s"] >= 0


def test_ask_prints_the_answer_then_each_citation_with_file_span_and_quote(env) -> None:
    result = runner.invoke(app, ["ask", ASTELLAS_Q])

    assert result.exit_code == 0, result.output
    answer, _, sources = result.stdout.partition("\nSources:\n")
    assert "Astellas" in answer
    assert re.search(r'^  \[S\d+\] 001_e2d5a160401ece19\.txt \[\d+:\d+\]: ".*Astellas.*"$', sources, re.M)


def test_a_declined_ask_says_so_and_lists_the_closest_passages(env) -> None:
    result = runner.invoke(app, ["ask", UNANSWERABLE_Q])

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("The articles don't say.")
    assert "Closest passages:" in result.stdout
    data = ask_json(UNANSWERABLE_Q)
    assert data["declined"] is True and data["answer"] == "The articles don't say."
    assert data["citations"] == [] and data["sources"]


def test_the_first_ask_without_an_index_builds_one_from_the_sample_corpus_and_says_so(
        env, built, tmp_path: Path) -> None:
    env.setenv("ASSISTANT_INDEX_DIR", str(tmp_path / "fresh-index"))
    first = runner.invoke(app, ["ask", ASTELLAS_Q, "--json"])

    assert first.exit_code == 0, first.output
    assert "No index yet: building one from" in first.stderr and str(built[0]) in first.stderr
    assert json.loads(first.stdout)["declined"] is False, "stdout stays pure JSON"
    second = runner.invoke(app, ["ask", ASTELLAS_Q, "--json"])
    assert second.exit_code == 0 and "No index yet" not in second.stderr


def test_ask_file_restricts_sources_and_citations_to_that_file(env) -> None:
    only = "003_f17476cd56e4653e.txt"
    data = ask_json(MINISTERS_Q, "--file", only)

    assert {s["file"] for s in data["sources"]} == {only}
    assert {c["file"] for c in data["citations"]} <= {only}


def test_ask_since_and_until_restrict_sources_to_the_date_range(env) -> None:
    recent = ask_json(MINISTERS_Q, "--since", "2024-01-01")
    assert {s["file"] for s in recent["sources"]} <= {"003_f17476cd56e4653e.txt", "004_749f0bb3dcd254b9.txt"}
    assert recent["sources"]

    early = ask_json(MINISTERS_Q, "--until", "2022-12-31")
    assert {s["file"] for s in early["sources"]} == {"002_0c11952fb06d513a.txt"}

    spring = ask_json(MINISTERS_Q, "--since", "2023-03-01", "--until", "2023-05-31")
    assert {s["file"] for s in spring["sources"]} <= {"000_ab41fa749cc5eede.txt", "001_e2d5a160401ece19.txt"}
    assert spring["sources"]


def test_search_file_since_and_until_restrict_the_passages(env) -> None:
    def files(*args: str) -> set[str]:
        result = runner.invoke(app, ["search", "foreign minister Beijing", "--k", "8", "--json", *args])
        assert result.exit_code == 0, result.output
        return {p["file"] for p in json.loads(result.stdout)}

    assert len(files()) > 2
    assert files("--file", "004_749f0bb3dcd254b9.txt") == {"004_749f0bb3dcd254b9.txt"}
    assert files("--file", "000_ab41fa749cc5eede.txt", "--file", "002_0c11952fb06d513a.txt") == {
        "000_ab41fa749cc5eede.txt", "002_0c11952fb06d513a.txt"}
    assert files("--since", "2024-12-01") == {"003_f17476cd56e4653e.txt", "004_749f0bb3dcd254b9.txt"}
    assert files("--until", "2023-03-31") == {"001_e2d5a160401ece19.txt", "002_0c11952fb06d513a.txt"}


def test_a_since_that_is_not_a_date_exits_2_with_a_message(env) -> None:
    result = runner.invoke(app, ["ask", ASTELLAS_Q, "--since", "yesterday"])

    assert result.exit_code == 2
    assert "--since" in result.stderr and "YYYY-MM-DD" in result.stderr
    assert "Traceback" not in result.output


class LabelOnItsOwnLine(FakeChatModel):
    """fake:extractive, but the label goes on a line of its own after the sentence (small models do this)."""

    def _reply(self, messages: list[dict[str, str]]) -> str:
        reply = super()._reply(messages)
        sentence, _, label = reply.rpartition(" [")
        return f"{sentence}\n[{label}" if sentence else reply


def test_ask_answers_a_reply_whose_label_sits_on_its_own_line(env) -> None:
    model = LabelOnItsOwnLine("scripted")
    env.setattr(assistant.answering, "get_llm", lambda settings, on_message=None: model)
    result = runner.invoke(app, ["ask", ASTELLAS_Q, "--json"])

    assert result.exit_code == 0, result.output
    assert "\n[S" in model._reply(model.requests[-1])
    data = json.loads(result.stdout)
    assert not data["declined"] and "Astellas" in data["answer"] and data["citations"]


class AddsAnInventedSentence(FakeChatModel):
    """fake:extractive, plus a sentence no source supports."""

    def _reply(self, messages: list[dict[str, str]]) -> str:
        return super()._reply(messages) + " The employee was released on bail in Paris [S1]."


def test_ask_withholds_an_unsupported_sentence_and_lists_it_apart(env) -> None:
    env.setattr(assistant.answering, "get_llm", lambda settings, on_message=None: AddsAnInventedSentence("s"))
    result = runner.invoke(app, ["ask", ASTELLAS_Q])

    assert result.exit_code == 0, result.output
    answer, _, rest = result.stdout.partition("\nSources:\n")
    assert "Astellas" in answer and "Paris" not in answer
    assert "Withheld from the answer (no source supports it):\n  ! The employee was released on bail in Paris." in rest


# --- backend errors: message on stderr naming the setting, an exit code, no traceback ---------------------

def test_openai_without_a_key_exits_2_naming_openai_api_key(env) -> None:
    result = runner.invoke(app, ["ask", ASTELLAS_Q, "--llm", "openai:gpt-4o-mini"])

    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "OPENAI_API_KEY" in result.stderr
    assert "Traceback" not in result.output and result.stdout == ""


def test_an_unreachable_server_exits_5_naming_the_url_setting_without_the_key(env) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    env.setenv("ASSISTANT_LLM", "openai-compatible:some-model")
    env.setenv("ASSISTANT_OPENAI_BASE_URL", url)
    env.setenv("ASSISTANT_MAX_RETRIES", "0")
    env.setenv("ASSISTANT_REQUEST_TIMEOUT", "5")
    env.setenv("OPENAI_API_KEY", SECRET)
    result = runner.invoke(app, ["ask", ASTELLAS_Q])

    assert result.exit_code == 5
    assert "ASSISTANT_OPENAI_BASE_URL" in result.stderr and url in result.stderr
    assert "cannot reach" in result.stderr
    assert SECRET not in result.output and "Traceback" not in result.output


def test_a_compatible_server_without_a_url_exits_2_naming_the_setting(env) -> None:
    env.setenv("ASSISTANT_LLM", "openai-compatible:some-model")
    result = runner.invoke(app, ["ask", ASTELLAS_Q])

    assert result.exit_code == 2 and "ASSISTANT_OPENAI_BASE_URL" in result.stderr


# --- chat ---------------------------------------------------------------------------------------------

def test_piped_chat_answers_one_question_per_line(env) -> None:
    result = runner.invoke(app, ["chat"], input=f"{ASTELLAS_Q}\n\n{UNANSWERABLE_Q}\n")

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"> {ASTELLAS_Q}" in out and f"> {UNANSWERABLE_Q}" in out
    first, second = out.split(f"> {UNANSWERABLE_Q}")
    assert "Astellas" in first and re.search(r'^  \[S\d+\] 001_e2d5a160401ece19\.txt: "', first, re.M)
    assert "The articles don't say." in second
    assert "Ask about the articles" not in out, "no interactive banner on a pipe"


class InventsAnAnswer(FakeChatModel):
    """A model that answers every question with a claim no source supports."""

    def _reply(self, messages: list[dict[str, str]]) -> str:
        self.requests.append(messages)
        return "The employee was released on bail in Paris [S1]."


def test_piped_chat_marks_a_streamed_draft_that_was_withdrawn(env) -> None:
    env.setattr(assistant.answering, "get_llm", lambda settings, on_message=None: InventsAnAnswer("s"))
    result = runner.invoke(app, ["chat"], input=f"{ASTELLAS_Q}\n")

    assert result.exit_code == 0, result.output
    draft, _, rest = result.stdout.partition("released on bail in Paris")
    assert _, "the draft was streamed as it was generated"
    assert "The articles don't say." in rest
    assert "(the draft above was withdrawn: the sources do not support it)" in rest


def test_piped_chat_declined_before_generation_has_no_withdrawn_note(env) -> None:
    result = runner.invoke(app, ["chat"], input=f"{UNANSWERABLE_Q}\n")

    assert result.exit_code == 0, result.output
    assert "The articles don't say." in result.stdout and "withdrawn" not in result.stdout


def test_chat_sources_reset_and_exit_commands(env) -> None:
    script = "\n".join([ASTELLAS_Q, "/sources", "/reset", "/sources", "/exit", UNANSWERABLE_Q]) + "\n"
    result = runner.invoke(app, ["chat"], input=script)

    assert result.exit_code == 0, result.output
    out = result.stdout
    after_answer = out.split(f"> {ASTELLAS_Q}", 1)[1]
    listed, _, after_reset = after_answer.partition("(history cleared)")
    assert re.search(r"^  - 001_e2d5a160401ece19\.txt \[\d+:\d+\]: \S", listed, re.M)
    assert "(no answer yet)" in after_reset
    assert UNANSWERABLE_Q not in out, "nothing after /exit is read"


def test_chat_ends_cleanly_at_the_end_of_input(env) -> None:
    result = runner.invoke(app, ["chat"], input="")
    assert result.exit_code == 0 and result.stdout == ""


class RewritingModel(FakeChatModel):
    """fake:extractive, but a follow-up about 'he' is rewritten with the name from the conversation."""

    def _reply(self, messages: list[dict[str, str]]) -> str:
        prompt = messages[-1]["content"]
        if prompt.startswith("Rewrite"):
            self.requests.append(messages)
            return "Who did Yoshimasa Hayashi meet?" if "Yoshimasa Hayashi" in prompt else "Who did he meet?"
        return super()._reply(messages)


def test_piped_chat_rewrites_a_follow_up_before_answering_it(env) -> None:
    model = RewritingModel("scripted")
    for module in (assistant.answering, assistant.chat):
        env.setattr(module, "get_llm", lambda settings, on_message=None: model)
    result = runner.invoke(app, ["chat"], input=f"{HAYASHI_Q}\nand who did he meet?\n")

    assert result.exit_code == 0, result.output
    follow_up = result.stdout.split("> and who did he meet?", 1)[1]
    assert "Qin Gang" in follow_up
    assert any(m[-1]["content"].startswith("Rewrite") for m in model.requests)
