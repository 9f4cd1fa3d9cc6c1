"""End to end with the real embedded models on the sample articles: the default embedder indexes into a
temp folder, the default 1.5B GGUF answers with verbatim citations and declines what the articles
do not say; the 0.5B model is selectable by name (Python and CLI) and a GGUF file by path.

Slow by nature (a few real generations on CPU); models come with the `local` extra, so nothing here
is skipped."""

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
from assistant.backends.model_files import ensure_model_file
from assistant.interfaces.cli import app
from assistant.indexing.build import build_index
from assistant.settings import Settings

REPO = Path(__file__).resolve().parent.parent
QUESTION = "Which company employed the Japanese businessman detained in Beijing?"
UNANSWERABLE = "Which Brazilian athlete won a gold medal at the Olympics?"
ASTELLAS_FILES = {"000_ab41fa749cc5eede.txt", "001_e2d5a160401ece19.txt"}


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Default settings (real embedder, real 1.5B model) with the sample articles indexed into tmp."""
    root = tmp_path_factory.mktemp("e2e")
    shutil.copytree(REPO / "articles", root / "articles")
    s = Settings.from_env(environ={}, corpus_dir=str(root / "articles"), index_dir=str(root / "index"))
    report = build_index(s.index.corpus_dir, settings=s)
    assert report.added == 5
    return s


@pytest.fixture(scope="module")
def bot(settings: Settings) -> Assistant:
    return Assistant(settings)


@pytest.fixture(scope="module")
def astellas(bot: Assistant) -> Answer:
    return bot.ask(QUESTION)


def test_the_defaults_are_the_real_local_embedder_and_the_1_5b_model(settings: Settings, astellas: Answer) -> None:
    assert settings.index.embedder.startswith("local:") and settings.model.llm == "local:qwen2.5-coder-1.5b"
    model = get_llm(settings)
    assert isinstance(model, LocalChatModel)
    assert model.model_path is not None and model.model_path.name == "qwen2.5-coder-1.5b.gguf"
    assert astellas.prompt_tokens > 0 and astellas.completion_tokens > 0


def test_the_real_model_names_astellas_and_cites_a_verbatim_quote(settings: Settings, astellas: Answer) -> None:
    assert astellas.declined is False, astellas.to_dict()
    assert "Astellas" in astellas.answer
    cited = [c for c in astellas.citations if c.file in ASTELLAS_FILES]
    assert cited, astellas.to_dict()
    for c in astellas.citations:
        text = (Path(settings.index.corpus_dir) / c.file).read_text(encoding="utf-8")
        assert c.quote == text[c.start:c.end] and c.quote in text
    assert any("Astellas" in c.quote for c in cited)


def test_the_real_pipeline_declines_an_unanswerable_question(bot: Assistant) -> None:
    answer = bot.ask(UNANSWERABLE)

    assert answer.declined is True
    assert answer.answer.startswith("The articles don't say.")
    assert answer.decline_reason in ("entities", "answerable", "addresses", "supported_any")
    assert answer.citations == [] and answer.sources


def test_the_local_model_chooses_an_option_under_a_grammar_with_calibrated_probabilities(bot: Assistant) -> None:
    model = get_llm(bot.settings)
    messages = [{"role": "user", "content": "Sources:\n[S1] Carlos Moya beat Andy Roddick in Seville.\n"
                                            "[S2] Claxton ran 7.96 seconds.\n\nQuestion: Who did Moya beat?\n"
                                            "Reply with the number of the source that answers, or NONE."}]
    choice = model.choose(messages, ["1", "2", "NONE"])
    assert choice.calibrated and choice.option in ("1", "2", "NONE")
    assert abs(sum(choice.probs.values()) - 1.0) < 1e-6
    assert choice.p("1") > choice.p("2")


def test_the_real_model_streams_several_deltas_before_the_answer(bot: Assistant, astellas: Answer) -> None:
    events = list(bot.stream(QUESTION))

    deltas, final = events[:-1], events[-1]
    assert isinstance(final, Answer) and not final.declined
    assert len(deltas) >= 3 and all(isinstance(d, str) for d in deltas)
    assert "Astellas" in "".join(deltas)
    assert 0 < final.timings["first_token_s"] <= final.timings["total_s"]


# --- other GGUF models: the 0.5B by name, any GGUF by path --------------------------------------------------

@pytest.fixture(scope="module")
def small_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A cache folder holding the 0.5B model joined from its installed part packages."""
    cache = tmp_path_factory.mktemp("model-cache")
    ensure_model_file("qwen2.5-coder-0.5b", cache)
    yield cache
    # Drop the small models this module loaded; the default model stays for other modules.
    CACHE.clear("llm", where=lambda key: str(cache) in key)


def test_the_0_5b_model_is_selectable_by_name_and_answers(settings: Settings, small_cache: Path) -> None:
    s = settings.with_(llm="local:qwen2.5-coder-0.5b", cache_dir=str(small_cache))
    answer = Assistant(s).ask(QUESTION)

    model = get_llm(s)
    assert isinstance(model, LocalChatModel)
    assert model.model_path == small_cache / "models" / "qwen2.5-coder-0.5b.gguf"
    assert answer.prompt_tokens > 0, "the 0.5B model itself must have been asked"


def test_a_gguf_file_given_by_path_is_loaded_and_answers(settings: Settings, small_cache: Path) -> None:
    path = small_cache / "models" / "qwen2.5-coder-0.5b.gguf"
    s = settings.with_(llm=f"local:{path}", cache_dir=str(small_cache))
    answer = Assistant(s).ask(QUESTION)

    model = get_llm(s)
    assert isinstance(model, LocalChatModel) and model.model_path == path.resolve()
    assert answer.prompt_tokens > 0


def test_the_cli_llm_option_selects_the_0_5b_model(settings: Settings, small_cache: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("ASSISTANT_") or name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ASSISTANT_CORPUS", settings.index.corpus_dir)
    monkeypatch.setenv("ASSISTANT_INDEX_DIR", settings.index.index_dir)
    monkeypatch.setenv("ASSISTANT_CACHE_DIR", str(small_cache))
    result = CliRunner().invoke(app, ["ask", QUESTION, "--json", "--llm", "local:qwen2.5-coder-0.5b"])

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["question"] == QUESTION and data["prompt_tokens"] > 0
    cli_model = get_llm(Settings.from_env(llm="local:qwen2.5-coder-0.5b"))
    assert isinstance(cli_model, LocalChatModel) and cli_model.model_path.name == "qwen2.5-coder-0.5b.gguf"
