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

from assistant.answering.ask import DECLINE_TEXT, Assistant
from assistant.backends import get_llm
from assistant.backends.fakes import QueueChatModel
from assistant.interfaces.cli import app
from assistant.indexing.build import build_index
from assistant.settings import Settings
from caches import clear_process_caches

REPO = Path(__file__).resolve().parent.parent
ASTELLAS_Q = "Which pharmaceutical firm employed the senior employee detained in Beijing in March?"
ASTELLAS = ("The meeting comes as Japan presses for the release of a senior employee of Japanese pharmaceutical "
            "firm Astellas Pharma")
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
    build_index(settings.index.corpus_dir, settings=settings)
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
    clear_process_caches()
    yield monkeypatch
    clear_process_caches()


@pytest.fixture
def queue(env: pytest.MonkeyPatch) -> Iterator[QueueChatModel]:
    """ASSISTANT_LLM=fake:queue, and the model the CLI will use: get_llm caches one instance per
    configuration, and the CLI builds its settings from this same environment, so the test and the
    command share it. At the end every queued reply must have been asked for."""
    env.setenv("ASSISTANT_LLM", "fake:queue")
    env.setenv("ASSISTANT_CHECKS_OFF", "picked")  # the pick has its own tests (test_checks.py)
    model = get_llm(Settings.from_env())
    assert isinstance(model, QueueChatModel)
    model.reset()
    yield model
    assert not model.replies and not model.choices, "the CLI called the model fewer times than the test queued"


def sources_for(question: str) -> dict[str, str]:
    """The labelled sources (label -> text) the CLI's answer prompt for this question will show."""
    return {s.label: " ".join(s.text.split()) for s in Assistant(Settings.from_env()).gather(question).sources}


def label_of(question: str, words: str) -> str:
    """The label the answer prompt gives the source holding these words."""
    found = [label for label, text in sources_for(question).items() if words in text]
    assert found, f"no source for {question!r} holds {words!r}"
    return found[0]


def queue_answer(model: QueueChatModel, question: str, reply: str, cite: str, *support: str) -> str:
    """Queue one ask: the gate picks the source holding `cite`, the reply (`{label}` is that source's
    label), then one support verdict per cited sentence ("yes" or "no"). Returns the label."""
    label = label_of(question, cite)
    model.enqueue_choice(label[1:], 0.95)
    model.enqueue(reply.format(label=label))
    for verdict in support:
        model.enqueue_choice(verdict, 0.9)
    return label


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
        assert set(c) == {"label", "file", "start", "end", "quote", "inferred", "copies"}
        assert c["quote"] == (corpus / c["file"]).read_text(encoding="utf-8")[c["start"]:c["end"]]
        assert f"[{c['label']}]" in data["answer"]
    assert all({"file", "start", "end", "text"} <= set(s) for s in data["sources"])
    assert data["timings"]["total_s"] >= 0
    record = data["provenance"]
    assert record["index_fingerprint"] and record["model"] == "fake:extractive" and len(record["prompts_sha256"]) == 64
    assert set(record["files"]) == {c["file"] for c in data["citations"]} and all(record["files"].values())


def test_ask_prints_the_answer_then_each_citation_with_file_span_and_quote(env) -> None:
    result = runner.invoke(app, ["ask", ASTELLAS_Q])

    assert result.exit_code == 0, result.output
    answer, _, sources = result.stdout.partition("\nSources:\n")
    assert "Astellas" in answer
    assert re.search(r'^  \[S\d+\] 001_e2d5a160401ece19\.txt \[\d+:\d+\]: ".*Astellas.*"$', sources, re.M)


def test_a_declined_ask_says_so_and_lists_the_closest_passages(env) -> None:
    result = runner.invoke(app, ["ask", UNANSWERABLE_Q])

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(DECLINE_TEXT)
    assert "Closest passages:" in result.stdout
    data = ask_json(UNANSWERABLE_Q)
    assert data["declined"] is True and data["answer"].startswith(DECLINE_TEXT)
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


def test_ask_answers_a_reply_whose_label_sits_on_its_own_line(queue: QueueChatModel) -> None:
    queue_answer(queue, ASTELLAS_Q, ASTELLAS + ".\n[{label}]", ASTELLAS, "yes")
    result = runner.invoke(app, ["ask", ASTELLAS_Q, "--json"])

    assert result.exit_code == 0, result.output
    assert f"Question: {ASTELLAS_Q}" in queue.requests[-1][-1]["content"], "the CLI asked the test's model"
    data = json.loads(result.stdout)
    assert not data["declined"] and "Astellas" in data["answer"]
    assert [c["file"] for c in data["citations"]] == ["001_e2d5a160401ece19.txt"]


def test_ask_withholds_an_unsupported_sentence_and_lists_it_apart(queue: QueueChatModel) -> None:
    queue_answer(queue, ASTELLAS_Q, ASTELLAS + " [{label}]. The employee was released on bail in Paris [{label}].",
                 ASTELLAS, "yes", "no")
    result = runner.invoke(app, ["ask", ASTELLAS_Q])

    assert result.exit_code == 0, result.output
    answer, _, rest = result.stdout.partition("\nSources:\n")
    assert "Astellas" in answer and "Paris" not in answer
    assert "Withheld from the answer (no source supports it):\n  ! " in rest
    # Listed as written, without its label.
    assert re.search(r"^  ! The employee was released on bail in Paris\.$", rest, re.M)


def test_ask_json_carries_the_decline_reason_and_every_checks_verdict(env) -> None:
    answered = ask_json(ASTELLAS_Q)
    declined = ask_json(UNANSWERABLE_Q)

    assert answered["decline_reason"] == "" and answered["declined"] is False
    names = [v["name"] for v in answered["verdicts"]]
    assert names[:2] == ["entities", "answerable"] and "supported" in names and names[-2:] == ["addresses", "subject"]
    assert all(v["passed"] for v in answered["verdicts"])
    for v in answered["verdicts"] + declined["verdicts"]:
        assert set(v) == {"name", "passed", "score", "reason", "threshold", "subject"}
    assert declined["decline_reason"] == "entities"
    assert [(v["name"], v["passed"]) for v in declined["verdicts"]] == [("entities", False)]
    assert '"Brazil"' in declined["verdicts"][0]["reason"]


def test_a_declined_ask_prints_which_check_declined_it(env) -> None:
    result = runner.invoke(app, ["ask", UNANSWERABLE_Q])

    assert result.exit_code == 0, result.output
    first, line, *_ = result.stdout.split("\n")
    assert first.startswith(DECLINE_TEXT)
    assert line.startswith("(declined by the `entities` check: no retrieved passage mentions ") and '"Brazil"' in line


def test_an_ask_the_gate_declines_prints_the_answerable_check_and_its_probability(queue: QueueChatModel) -> None:
    queue.enqueue_choice("NONE", 0.9)
    result = runner.invoke(app, ["ask", ASTELLAS_Q])

    assert result.exit_code == 0, result.output
    assert queue.requests == [], "the gate declined before the answer was generated"
    assert result.stdout.startswith(f"{DECLINE_TEXT}\n(declined by the `answerable` check: "
                                    "the model judged that no source states the answer (P(NONE) = 0.90 ≥ 0.30))\n")


def test_an_answered_ask_prints_no_decline_line(env) -> None:
    result = runner.invoke(app, ["ask", ASTELLAS_Q])

    assert result.exit_code == 0 and "Astellas" in result.stdout
    assert "(declined by" not in result.stdout


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


def test_piped_chat_prints_only_the_checked_answer_not_a_withdrawn_draft(queue: QueueChatModel) -> None:
    queue_answer(queue, ASTELLAS_Q, "The employee was released on bail in Paris [{label}].", ASTELLAS, "no")
    result = runner.invoke(app, ["chat"], input=f"{ASTELLAS_Q}\n")

    assert result.exit_code == 0, result.output
    assert "released on bail in Paris" not in result.stdout, "a pipe never shows the withdrawn draft"
    assert result.stdout.count(DECLINE_TEXT) == 1
    assert "(declined by the `supported_any` check: " in result.stdout


def test_on_a_terminal_a_streamed_draft_the_checks_change_is_erased_and_replaced(capsys) -> None:
    from assistant.interfaces.cli import _Draft

    screen = _Draft(live=True)
    for delta in ["The employee was ", "released on bail ", "in Paris [S1]."]:
        screen.write(delta)
    screen.replace(DECLINE_TEXT)
    screen.finish()
    out = capsys.readouterr().out
    draft, _, after = out.partition("in Paris [S1].")
    assert draft.startswith("The employee was"), "the draft streams as it is generated"
    assert after.startswith("\r\x1b[J"), "then the cursor returns to the draft's start and clears it"
    assert after.endswith(DECLINE_TEXT) and after.count(DECLINE_TEXT) == 1


def test_a_wrapped_draft_is_erased_from_its_first_row(capsys, monkeypatch) -> None:
    import os

    from assistant.interfaces.cli import _Draft

    monkeypatch.setattr("shutil.get_terminal_size", lambda *a, **k: os.terminal_size((20, 24)))
    screen = _Draft(live=True)
    screen.write("x" * 45)  # three rows of 20 columns
    screen.replace("ok")
    assert "\x1b[2F\x1b[J" in capsys.readouterr().out


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



HAYASHI_ANSWER = "Japanese Foreign Minister Yoshimasa Hayashi intends to meet his counterpart in Beijing on April 1"
FOLLOW_UP = "and who did he meet?"
REWRITTEN = "Who did Yoshimasa Hayashi meet?"
QIN = "Chinese Foreign Minister Qin Gang told his Japanese counterpart Yoshimasa Hayashi"


def chat_with_a_follow_up(model: QueueChatModel) -> str:
    """Pipe HAYASHI_Q and FOLLOW_UP into `assistant chat`; the model rewrites the follow-up as REWRITTEN."""
    queue_answer(model, HAYASHI_Q, HAYASHI_ANSWER + " [{label}].", HAYASHI_ANSWER, "yes")
    model.enqueue(REWRITTEN)
    queue_answer(model, REWRITTEN, QIN + " during their meeting in Beijing in April [{label}].", QIN, "yes")
    result = runner.invoke(app, ["chat"], input=f"{HAYASHI_Q}\n{FOLLOW_UP}\n")
    assert result.exit_code == 0, result.output
    return result.stdout


def test_piped_chat_rewrites_a_follow_up_with_the_conversation_and_answers_the_rewrite(
        queue: QueueChatModel) -> None:
    out = chat_with_a_follow_up(queue)

    first, rewrite, second = queue.requests
    assert f"Question: {HAYASHI_Q}" in first[-1]["content"]
    prompt = rewrite[-1]["content"]
    assert prompt.startswith("Rewrite") and f"Question: {FOLLOW_UP}" in prompt
    assert f"User: {HAYASHI_Q}" in prompt and "Assistant: " + HAYASHI_ANSWER in prompt, "the history is shown"
    assert f"Question: {REWRITTEN}" in second[-1]["content"], "the rewritten question is what gets answered"
    assert "Qin Gang" in out.split(f"> {FOLLOW_UP}", 1)[1]


def test_piped_chat_prints_a_follow_ups_rewritten_question_in_parentheses_before_its_answer(
        queue: QueueChatModel) -> None:
    out = chat_with_a_follow_up(queue)

    before, follow_up = out.split(f"> {FOLLOW_UP}\n", 1)
    assert "  (" not in before, "the first question is not rewritten"
    rewritten, answer = follow_up.split("\n", 1)
    assert rewritten == f"  ({REWRITTEN})"
    assert answer.startswith(QIN)


def test_a_follow_up_the_rewrite_leaves_unchanged_prints_no_rewritten_question(env) -> None:
    # fake:extractive repeats the question when asked to rewrite it.
    model = get_llm(Settings.from_env())
    result = runner.invoke(app, ["chat"], input=f"{ASTELLAS_Q}\n{HAYASHI_Q}\n")

    assert result.exit_code == 0, result.output
    assert [m[-1]["content"].startswith("Rewrite") for m in model.requests] == [False, True, False]
    follow_up = result.stdout.split(f"> {HAYASHI_Q}\n", 1)[1]
    assert not follow_up.startswith("  (")


# --- printed quotes are clipped at a word boundary (assistant.text_utils.clip) -------------------------------

def assert_clipped_at_a_word(printed: str, full: str, limit: int) -> bool:
    """`printed` is `full` (whitespace collapsed) or a cut of it at a word boundary marked '…'.
    Returns whether it was cut where a plain slice would have split a word."""
    full = " ".join(full.split())
    assert len(printed) <= limit
    if printed == full:
        return False
    assert printed.endswith("…"), printed
    body = printed[:-1]
    assert full.startswith(body), (body, full)
    assert full[len(body)] in " ,;:", f"cut inside a word: {body[-20:]!r} + {full[len(body):len(body) + 20]!r}"
    return not full[limit - 2].isspace() and not full[limit - 1].isspace()


def test_chat_prints_each_quote_cut_at_a_word_boundary(env) -> None:
    quotes = {c["file"]: c["quote"] for c in ask_json(ASTELLAS_Q)["citations"]}
    result = runner.invoke(app, ["chat"], input=f"{ASTELLAS_Q}\n")

    assert result.exit_code == 0, result.output
    printed = re.findall(r'^  \[S\d+\] (\S+): "(.*)"$', result.stdout, re.M)
    assert printed and {file for file, _ in printed} <= set(quotes)
    mid_word = [assert_clipped_at_a_word(quote, quotes[file], 160) for file, quote in printed]
    assert any(mid_word), "some quote is long enough that a plain slice would cut a word"


def test_a_declined_asks_closest_passages_are_cut_at_a_word_boundary(env, built) -> None:
    result = runner.invoke(app, ["ask", UNANSWERABLE_Q])

    assert result.exit_code == 0, result.output
    passages = re.findall(r"^  - (\S+) \[(\d+):(\d+)\]: (.*)$", result.stdout, re.M)
    assert passages
    mid_word = []
    for file, start, end, printed in passages:
        full = (built[0] / file).read_text(encoding="utf-8")[int(start):int(end)]
        mid_word.append(assert_clipped_at_a_word(printed, full, 200))
    assert any(mid_word), "some passage is long enough that a plain slice would cut a word"
