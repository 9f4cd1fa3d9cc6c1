"""Assistant.ask / stream: hybrid retrieval, filters, the prompt budget, labelled sources, the checks
(entities, the answerable gate, per-sentence support) and declining, date ordering and undated sources,
streaming, model selection and backend errors."""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import shutil
import socket
from pathlib import Path
from typing import Iterator, Sequence

import pytest
from prompt_format import prompt_sources as parse_sources

from assistant.answering.ask import DECLINE_TEXT, SENTINEL, Assistant, ask
from assistant.backends import get_llm
from assistant.backends.cache import CACHE
from assistant.news.timeline import build_timeline
from assistant.backends.fakes import FakeChatModel, QueueChatModel
from assistant.backends.llms import LocalChatModel
from assistant.backends.model_files import KNOWN_MODELS, ensure_model_file
from assistant.indexing.chunking import split_sentences
from assistant.errors import BackendUnavailableError, ConfigError, InputError
from assistant.indexing.build import build_index
from assistant.search.retrieval import Filters, Retriever
from assistant.settings import Settings
from assistant.types import Answer

REPO = Path(__file__).resolve().parent.parent
ARTICLES = REPO / "articles"
DATES = {name: meta["date"] for name, meta in
         json.loads((ARTICLES / "metadata.json").read_text(encoding="utf-8"))["files"].items()}

ASTELLAS_Q = "Which pharmaceutical firm employed the senior employee detained in Beijing in March?"
UNANSWERABLE_Q = "Who won the Olympic gold medal for Brazil?"
MINISTERS_Q = "What did the Japanese foreign minister discuss with his Chinese counterpart in Beijing?"


# --- fixtures and helpers -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("answering") / "articles"
    shutil.copytree(ARTICLES, target)
    return target


@pytest.fixture(scope="module")
def settings(corpus_dir: Path) -> Settings:
    """fake:hash embedder, fake:extractive model, the sample corpus indexed once into a temp folder."""
    s = Settings.from_env(environ={}, corpus_dir=str(corpus_dir), index_dir=str(corpus_dir.parent / "index"),
                          embedder="fake:hash", llm="fake:extractive")
    build_index(s.index.corpus_dir, settings=s)
    return s


@pytest.fixture(autouse=True)
def fresh_models() -> Iterator[None]:
    """Every test gets its own fake model instance (the registry caches one per process)."""
    CACHE.clear("llm")
    yield
    CACHE.clear("llm")


def fake_model(settings: Settings) -> FakeChatModel:
    model = get_llm(settings)
    assert isinstance(model, FakeChatModel)
    return model


def astellas_sentence(sources: list) -> str:
    """The sentence of the prompt's sources that names the firm (the answer to ASTELLAS_Q)."""
    for src in sources:
        for sp in split_sentences(src.text):
            if "Astellas" in src.text[sp.start:sp.end]:
                return " ".join(src.text[sp.start:sp.end].split()).rstrip(".")
    raise AssertionError("no source names Astellas")


def queue_model(settings: Settings) -> tuple[Settings, QueueChatModel]:
    """The settings with the fake:queue model, and that model (the one the Assistant will get), emptied.
    The pick check is off here (its own tests queue its reply), so each test queues only what it is about."""
    s = settings.with_(llm="fake:queue", checks_off=settings.checks.checks_off | {"picked"})
    model = get_llm(s)
    assert isinstance(model, QueueChatModel)
    model.reset()
    return s, model


def first_sentence(text: str) -> str:
    """The first sentence of a source's text, whitespace collapsed, without its final full stop."""
    span = split_sentences(text)[0]
    return " ".join(text[span.start:span.end].split()).rstrip(".")


def prompt_sources(messages: list[dict[str, str]]) -> list[tuple[str, str, str, str]]:
    """(label number, file, date, text) of every labelled source line in the user message."""
    return [(label[1:], file, date, text) for label, file, date, text in parse_sources(messages[-1]["content"])]


def sentences_sent(messages: list[dict[str, str]], corpus: Path) -> int:
    """How many corpus sentences the prompt holds: each source is located in its file and split there."""
    total = 0
    for _n, name, _date, text in prompt_sources(messages):
        raw = (corpus / name).read_text(encoding="utf-8")
        match = re.search(r"\s+".join(map(re.escape, text.split())), raw)
        assert match, f"source text of {name} is not a span of the file"
        total += len(split_sentences(raw, match.start(), match.end()))
    return total


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- hybrid retrieval ---------------------------------------------------------------------------------

class UselessEmbedder:
    """Vectors carry no meaning: a pseudo-random unit vector per text."""

    model_id = "fake:useless"

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        out = []
        for text in texts:
            rng = random.Random(hashlib.md5(text.encode()).hexdigest())
            vec = [rng.gauss(0.0, 1.0) for _ in range(16)]
            norm = math.sqrt(sum(v * v for v in vec))
            out.append([v / norm for v in vec])
        return out


def test_a_rare_keyword_is_found_by_bm25_when_dense_ranking_misses_it(
        tmp_path: Path, corpus_dir: Path) -> None:
    useless = UselessEmbedder()
    s = Settings.from_env(environ={}, corpus_dir=str(corpus_dir), index_dir=str(tmp_path / "index"),
                          embedder="fake:useless", llm="fake:extractive", dense_k=3,
                          # Meaningless vectors make the sentence choice within passages noisy too;
                          # what is tested here is the passage retrieval, so the budget is generous.
                          evidence_tokens=600)
    build_index(s.index.corpus_dir, settings=s, embedder=useless)
    question = "Which pharmaceutical firm employed the detained man?"
    bot = Assistant(s, retriever=Retriever(s, embedder=useless))

    # Precondition: the dense side alone would not surface the only chunks naming the firm.
    chunks = bot.retriever.all_chunks()
    q = useless.embed([question])[0]
    vectors = useless.embed([c.text for c in chunks])
    by_similarity = sorted(range(len(chunks)), key=lambda n: -sum(a * b for a, b in zip(q, vectors[n])))
    dense_top = by_similarity[:s.retrieval.dense_k]
    assert not any("Astellas" in chunks[n].text for n in dense_top)

    passages = bot.retriever.search(question, k=4)
    assert any("Astellas" in p.text for p in passages)
    answer = bot.ask(question)
    assert not answer.declined
    assert "Astellas" in answer.answer
    assert any("Astellas" in c.quote for c in answer.citations)


# --- filters ------------------------------------------------------------------------------------------

def test_without_filters_sources_span_several_files(settings: Settings) -> None:
    model = fake_model(settings)
    Assistant(settings).ask(MINISTERS_Q)
    assert len({name for _n, name, _d, _t in prompt_sources(model.requests[-1])}) > 1


def test_a_file_filter_restricts_every_source_and_citation_to_that_file(settings: Settings) -> None:
    model = fake_model(settings)
    only = "003_f17476cd56e4653e.txt"
    answer = Assistant(settings).ask(MINISTERS_Q, filters=Filters(files=(only,)))

    assert not answer.declined
    assert {name for _n, name, _d, _t in prompt_sources(model.requests[-1])} == {only}
    assert {p.file for p in answer.sources} == {only}
    assert {c.file for c in answer.citations} == {only}


@pytest.mark.parametrize("filters, allowed", [
    (Filters(date_from="2024-01-01"), {"003_f17476cd56e4653e.txt", "004_749f0bb3dcd254b9.txt"}),
    (Filters(date_to="2022-12-31"), {"002_0c11952fb06d513a.txt"}),
    (Filters(date_from="2023-03-01", date_to="2023-03-31"), {"001_e2d5a160401ece19.txt"}),
])
def test_a_date_range_restricts_the_sources_to_articles_published_in_it(
        settings: Settings, filters: Filters, allowed: set[str]) -> None:
    model = fake_model(settings)
    answer = Assistant(settings).ask(MINISTERS_Q, filters=filters)

    sent = {name for _n, name, _d, _t in prompt_sources(model.requests[-1])} if model.requests else set()
    assert sent | {p.file for p in answer.sources} | {c.file for c in answer.citations} <= allowed
    assert answer.sources


def test_a_date_that_does_not_parse_is_an_input_error_naming_the_option() -> None:
    with pytest.raises(InputError, match="--since"):
        Filters(date_from="last spring")


# --- the prompt -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("budget", [60, 150, 450])
def test_the_evidence_in_the_prompt_stays_within_its_token_budget(settings: Settings, corpus_dir: Path,
                                                                  budget: int) -> None:
    from assistant.search.evidence import tokens_of

    s = settings.with_(evidence_tokens=budget)
    model = fake_model(s)
    Assistant(s).ask("When did Hayashi meet Qin Gang in Beijing?")

    sources = prompt_sources(model.requests[-1])
    assert sources
    spent = sum(tokens_of(text) + 1 for *_x, text in sources)
    # The best sentence always goes in, even when it alone is over a tiny budget.
    assert spent <= budget or len(sources) == 1
    # Passages are retrieved whole, so without the budget far more would be sent.
    assert sentences_sent(model.requests[-1], corpus_dir) >= (2 if budget >= 150 else 1)


def test_a_picked_sentence_brings_the_sentence_after_it(settings: Settings, corpus_dir: Path) -> None:
    model = fake_model(settings)
    question = "Which company employed the Japanese businessman detained in Beijing?"
    Assistant(settings).ask(question)

    for _n, name, _date, text in prompt_sources(model.requests[-1]):
        raw = (corpus_dir / name).read_text(encoding="utf-8")
        match = re.search(r"\s+".join(map(re.escape, text.split())), raw)
        spans = split_sentences(raw, match.start(), match.end())
        # Every passage is a run of whole sentences, and a run of one is rare: picks carry context.
        assert raw[match.start():match.end()].strip() == raw[spans[0].start:spans[-1].end].strip()
    assert max(len(split_sentences(t)) for *_x, t in prompt_sources(model.requests[-1])) >= 2


def test_sources_are_labelled_s1_upwards_with_filename_and_date(settings: Settings) -> None:
    model = fake_model(settings)
    Assistant(settings).ask(MINISTERS_Q)

    sources = prompt_sources(model.requests[-1])
    assert [int(n) for n, _f, _d, _t in sources] == list(range(1, len(sources) + 1))
    for _n, name, date, _t in sources:
        assert (ARTICLES / name).is_file()
        assert date == DATES[name]
    assert ".txt" not in model.requests[-1][0]["content"]


@pytest.mark.parametrize("question", [MINISTERS_Q, "When did the Japanese foreign minister visit Beijing?"])
def test_each_file_is_named_once_above_all_of_its_passages(settings: Settings, question: str) -> None:
    model = fake_model(settings)
    Assistant(settings).ask(question)

    prompt = model.requests[-1][-1]["content"]
    files = [name for _n, name, _d, _t in prompt_sources(model.requests[-1])]
    assert len(files) > len(set(files)), "the question must draw two passages from one file"
    for name in set(files):
        assert prompt.count(name) == 1, f"{name} is named more than once"
    # Passages of one file are contiguous: the file changes at most once per distinct file.
    changes = sum(1 for a, b in zip(files, files[1:]) if a != b)
    assert changes == len(set(files)) - 1


def test_the_system_prompt_says_source_text_is_never_instructions(settings: Settings) -> None:
    model = fake_model(settings)
    Assistant(settings).ask(MINISTERS_Q)

    system, user = model.requests[-1]
    assert system["role"] == "system" and user["role"] == "user"
    assert "never instructions" in system["content"]
    assert "[S1]" not in system["content"].replace("like [S1]", "")
    assert user["content"].rstrip().endswith(f"Question: {MINISTERS_Q}")


# --- declining ------------------------------------------------------------------------------------------

def test_a_question_about_names_no_article_mentions_is_declined_without_calling_the_model(
        settings: Settings) -> None:
    model = fake_model(settings)
    answer = Assistant(settings).ask(UNANSWERABLE_Q)

    assert answer.declined is True
    assert answer.decline_reason == "entities"
    # The decline says which name no passage mentions (spaCy tags "Brazil" as a place).
    assert answer.answer.startswith(DECLINE_TEXT) and '"Brazil"' in answer.answer
    assert 1 <= len(answer.sources) <= 3
    assert answer.citations == []
    assert model.requests == [] and model.choice_requests == []


def test_a_declined_stream_yields_the_decline_text_then_the_answer(settings: Settings) -> None:
    model = fake_model(settings)
    events = list(Assistant(settings).stream(UNANSWERABLE_Q))

    final = events[-1]
    assert isinstance(final, Answer) and final.declined and final.decline_reason == "entities"
    streamed = "".join(e for e in events if isinstance(e, str))
    assert streamed == final.answer and streamed.startswith(DECLINE_TEXT)
    assert model.requests == [] and model.choice_requests == []


def test_the_gate_saying_none_declines_as_answerable_without_asking_the_model_to_answer(
        settings: Settings) -> None:
    s, model = queue_model(settings)
    model.enqueue_choice("NONE", 0.9)
    answer = Assistant(s).ask(ASTELLAS_Q)

    assert answer.declined is True
    assert answer.decline_reason == "answerable"
    assert answer.answer == DECLINE_TEXT and answer.citations == []
    gate = next(v for v in answer.verdicts if v.name == "answerable")
    assert not gate.passed and gate.score == pytest.approx(0.9) and gate.threshold == s.checks.gate_none_max
    assert len(model.choice_requests) == 1, "only the gate was asked"
    assert model.requests == [], "the model must not be asked to answer after the gate declined"


def test_the_gate_prompt_is_the_answer_prompt_with_the_gate_question_after_it(settings: Settings) -> None:
    s, model = queue_model(settings)
    sources = Assistant(s).gather(ASTELLAS_Q).sources
    model.enqueue_choice("1", 0.95).enqueue(f"{astellas_sentence(sources)} [S1].").enqueue_choice("yes", 0.9)
    answer = Assistant(s).ask(ASTELLAS_Q)

    assert not answer.declined
    (system, user), gate = model.requests[0], model.choice_requests[0]
    # Same system message, and the answer's user message is a prefix of the gate's: a local model's
    # prompt cache reuses the gate's work for the answer.
    assert gate[0] == system and len(gate) == 2
    assert gate[1]["role"] == "user"
    assert gate[1]["content"].startswith(user["content"]) and len(gate[1]["content"]) > len(user["content"])
    assert "NONE" in gate[1]["content"][len(user["content"]):]
    # The support question continues the answer conversation the same way.
    assert model.choice_requests[1][:2] == [system, user]


def test_a_sentence_its_source_does_not_state_is_withheld_and_a_supported_one_stays(settings: Settings) -> None:
    s, model = queue_model(settings)
    sources = Assistant(s).gather(ASTELLAS_Q).sources
    first = next(src for src in sources if "Astellas" in src.text)
    other = next(src for src in sources if src is not first and "Astellas" not in src.text)
    kept, withheld = astellas_sentence([first]), first_sentence(other.text)
    model.enqueue_choice("1", 0.95).enqueue(f"{kept} [{first.label}]. {withheld} [{other.label}].")
    model.enqueue_choice("yes", 0.9).enqueue_choice("no", 0.9)  # S1's sentence supported, S2's not
    answer = Assistant(s).ask(ASTELLAS_Q)

    assert answer.declined is False and answer.decline_reason == ""
    assert kept in answer.answer and withheld not in answer.answer
    assert answer.unsupported_sentences == [f"{withheld}."], "listed without its label or a stray space"
    assert {c.label for c in answer.citations} == {first.label}
    support = [v for v in answer.verdicts if v.name == "supported"]
    assert [v.passed for v in support] == [True, False]
    assert [v.subject for v in support] == [f"{kept}.", f"{withheld}."]
    # The support questions asked about the sentences in order, each naming its cited source.
    asked = [m[-1]["content"] for m in model.choice_requests[1:]]
    assert kept in asked[0] and f"[{first.label}]" in asked[0]
    assert withheld in asked[1] and f"[{other.label}]" in asked[1]
    assert withheld in answer.draft


def test_an_answer_whose_every_sentence_is_unsupported_is_declined_as_supported_any(settings: Settings) -> None:
    s, model = queue_model(settings)
    sources = Assistant(s).gather(ASTELLAS_Q).sources
    one, two = first_sentence(sources[0].text), first_sentence(sources[1].text)
    model.enqueue_choice("1", 0.95).enqueue(f"{one} [S1]. {two} [S2].")
    model.enqueue_choice("no", 0.9).enqueue_choice("no", 0.8)
    answer = Assistant(s).ask(ASTELLAS_Q)

    assert answer.declined is True
    assert answer.decline_reason == "supported_any"
    assert answer.answer == DECLINE_TEXT and answer.citations == []
    assert [v.passed for v in answer.verdicts if v.name == "supported"] == [False, False]
    assert one in answer.draft and two in answer.draft, "the draft keeps what the model wrote"
    assert len(model.choice_requests) == 3 and not model.choices, "gate plus one support check per sentence"


@pytest.mark.parametrize("reply", [SENTINEL, f"{SENTINEL}.", f"  {SENTINEL}\n"])
def test_a_model_replying_with_the_sentinel_is_declined(settings: Settings, reply: str) -> None:
    s, model = queue_model(settings)
    model.enqueue_choice("1", 0.95).enqueue(reply)
    answer = Assistant(s).ask(ASTELLAS_Q)

    assert len(model.requests) == 1, "the gate passed, so the model was asked to answer"
    assert answer.declined is True
    assert answer.decline_reason == "model_declined"
    assert answer.answer == DECLINE_TEXT
    assert answer.sources
    assert len(model.choice_requests) == 1, "a decline has no sentence to check for support"


@pytest.mark.parametrize("reply", [SENTINEL, f"  {SENTINEL}\n", f"{SENTINEL} (the sources do not say)"])
def test_a_streamed_sentinel_never_reaches_the_user(settings: Settings, reply: str) -> None:
    s, model = queue_model(settings)
    model.enqueue_choice("1", 0.95).enqueue(reply)
    events = list(Assistant(s).stream(ASTELLAS_Q))

    text = "".join(e for e in events if isinstance(e, str))
    assert model.requests, "the model was asked to answer"
    assert "NOT_IN" not in text and "sources do not say" not in text
    assert text.strip() == DECLINE_TEXT
    assert isinstance(events[-1], Answer) and events[-1].declined
    assert events[-1].decline_reason == "model_declined"


def test_the_fake_model_answering_an_answerable_question_is_not_declined(settings: Settings) -> None:
    model = fake_model(settings)
    answer = Assistant(settings).ask(ASTELLAS_Q)

    assert len(model.requests) == 1
    assert answer.declined is False and answer.decline_reason == ""
    assert "Astellas" in answer.answer
    assert answer.citations and answer.sources
    assert answer.prompt_tokens > 0
    assert {"retrieve_s", "generate_s", "total_s"} <= set(answer.timings)
    assert [v.name for v in answer.verdicts] == ["entities", "answerable", "numbers", "supported", "addresses", "subject"]
    assert all(v.passed for v in answer.verdicts)
    assert len(model.choice_requests) == 2, "the gate and one support check (the pick check is off by default)"
    picking = Assistant(settings.with_(pick_check=True)).ask(ASTELLAS_Q)
    assert not picking.declined and picking.verdicts[-1].name == "picked" and picking.verdicts[-1].passed


def test_an_empty_question_is_an_input_error(settings: Settings) -> None:
    with pytest.raises(InputError, match="empty"):
        Assistant(settings).ask("   ")


# --- disagreeing sources and dates ----------------------------------------------------------------------

def test_sources_for_a_when_question_are_ordered_by_date_and_show_it(settings: Settings) -> None:
    model = fake_model(settings)
    Assistant(settings).ask("When did the Japanese foreign minister visit Beijing?")

    dates = [date for _n, _f, date, _t in prompt_sources(model.requests[-1])]
    assert len(set(dates)) >= 2, "the question must draw on articles of different dates"
    assert dates == sorted(dates)


def test_both_the_planned_and_the_actual_meeting_date_reach_the_model(settings: Settings) -> None:
    model = fake_model(settings)
    Assistant(settings).ask("On what date did Hayashi and Qin Gang meet in Beijing?")

    sources = prompt_sources(model.requests[-1])
    texts = " ".join(t for _n, _f, _d, t in sources)
    assert "on April 1" in texts and "on April 2" in texts
    assert "disagree" in model.requests[-1][0]["content"]
    dates = [d for _n, _f, d, _t in sources]
    assert dates == sorted(dates)


def test_a_when_question_answered_from_an_undated_file_gets_a_note_and_is_not_declined(
        tmp_path: Path) -> None:
    corpus = tmp_path / "articles"
    shutil.copytree(ARTICLES, corpus)
    (corpus / "metadata.json").unlink()  # no file has a publication date now
    s = Settings.from_env(environ={}, corpus_dir=str(corpus), index_dir=str(tmp_path / "index"),
                          embedder="fake:hash", llm="fake:queue")
    build_index(s.index.corpus_dir, settings=s)
    s, model = queue_model(s)
    question = "When did Hayashi meet Qin Gang in Beijing?"
    sources = Assistant(s).gather(question).sources
    assert sources and all(not src.date for src in sources)
    cited = next(src for src in sources if "on April 2" in src.text)
    sentence = next(" ".join(cited.text[sp.start:sp.end].split()).rstrip(".")
                    for sp in split_sentences(cited.text) if "on April 2" in cited.text[sp.start:sp.end])
    model.enqueue_choice(cited.label[1:], 0.95).enqueue(f"{sentence} [{cited.label}].").enqueue_choice("yes", 0.9)
    answer = Assistant(s).ask(question)

    assert "publication date unknown" in model.requests[0][-1]["content"]
    assert answer.declined is False and answer.decline_reason == ""
    assert "April 2" in answer.answer
    assert len(answer.notes) == 1
    assert cited.file in answer.notes[0] and "no publication date" in answer.notes[0]


# --- streaming ------------------------------------------------------------------------------------------

def test_stream_yields_several_text_deltas_before_the_final_answer(settings: Settings) -> None:
    events = list(Assistant(settings).stream(ASTELLAS_Q))

    deltas, final = events[:-1], events[-1]
    assert isinstance(final, Answer) and not final.declined
    assert len(deltas) >= 3 and all(isinstance(d, str) for d in deltas)
    assert "Astellas" in "".join(deltas)
    assert final.citations
    assert "first_token_s" in final.timings


# --- the module-level ask() ---------------------------------------------------------------------------

def test_module_level_ask_answers_with_the_given_settings(settings: Settings) -> None:
    answer = ask(ASTELLAS_Q, settings=settings)
    assert isinstance(answer, Answer) and "Astellas" in answer.answer


def test_module_level_ask_reads_settings_from_the_environment(settings: Settings,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSISTANT_INDEX_DIR", settings.index.index_dir)
    monkeypatch.setenv("ASSISTANT_CORPUS", settings.index.corpus_dir)
    monkeypatch.setenv("ASSISTANT_EMBEDDER", "fake:hash")
    monkeypatch.setenv("ASSISTANT_LLM", "fake:extractive")
    answer = ask(ASTELLAS_Q)
    assert not answer.declined and "Astellas" in answer.answer


# --- model selection --------------------------------------------------------------------------------------

def test_the_default_model_is_the_local_1_5b_gguf(tmp_path: Path) -> None:
    s = Settings.from_env(environ={}, cache_dir=str(tmp_path))
    assert s.model.llm == "local:qwen2.5-coder-1.5b"
    model = get_llm(s)
    assert isinstance(model, LocalChatModel)
    assert model.model == "qwen2.5-coder-1.5b" and "1.5B" in KNOWN_MODELS[model.model].description
    assert "loaded=False" in repr(model), "the model loads on first use, not when it is chosen"


def test_the_0_5b_model_is_selectable_by_name(tmp_path: Path) -> None:
    s = Settings.from_env(environ={"ASSISTANT_LLM": "local:qwen2.5-coder-0.5b"}, cache_dir=str(tmp_path))
    model = get_llm(s)
    assert isinstance(model, LocalChatModel)
    assert model.model_id == "local:qwen2.5-coder-0.5b"
    assert "qwen2.5-coder-0.5b" in KNOWN_MODELS


def test_a_gguf_file_is_selectable_by_path(tmp_path: Path) -> None:
    gguf = tmp_path / "my-model.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 64)
    s = Settings.from_env(environ={}, llm=f"local:{gguf}", cache_dir=str(tmp_path))
    model = get_llm(s)
    assert isinstance(model, LocalChatModel) and model.model == str(gguf)
    assert ensure_model_file(model.model, s.model.cache_dir) == gguf.resolve()


def test_an_unknown_local_model_name_is_a_config_error_listing_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="qwen2.5-coder-1.5b"):
        ensure_model_file("qwen-9000", tmp_path)


# --- backend errors surface through ask() ------------------------------------------------------------

def test_openai_without_a_key_fails_with_a_message_naming_openai_api_key(settings: Settings) -> None:
    s = settings.with_(llm="openai:gpt-4o-mini", openai_api_key="")
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        Assistant(s).ask(ASTELLAS_Q)


def test_compatible_server_without_a_url_fails_naming_assistant_openai_base_url(settings: Settings) -> None:
    s = settings.with_(llm="openai-compatible:some-model", openai_base_url="")
    with pytest.raises(ConfigError, match="ASSISTANT_OPENAI_BASE_URL"):
        Assistant(s).ask(ASTELLAS_Q)


def test_an_unreachable_server_fails_naming_the_url_setting(settings: Settings) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    s = settings.with_(llm="openai-compatible:some-model", openai_base_url=url, max_retries=0,
                       request_timeout=5.0, openai_api_key="sk-SECRET-never-shown")
    with pytest.raises(BackendUnavailableError) as info:
        Assistant(s).ask(ASTELLAS_Q)
    message = str(info.value)
    assert "ASSISTANT_OPENAI_BASE_URL" in message and url in message and "cannot reach" in message
    assert "sk-SECRET" not in message


def test_an_unreachable_server_also_fails_cleanly_when_streaming(settings: Settings) -> None:
    s = settings.with_(llm="openai-compatible:some-model", openai_base_url=f"http://127.0.0.1:{free_port()}/v1",
                       max_retries=0, request_timeout=5.0)
    with pytest.raises(BackendUnavailableError, match="ASSISTANT_OPENAI_BASE_URL"):
        list(Assistant(s).stream(ASTELLAS_Q))


def test_a_changed_api_key_timeout_or_retry_count_is_not_served_a_stale_client(settings: Settings) -> None:
    s = settings.with_(llm="openai-compatible:some-model", openai_base_url=f"http://127.0.0.1:{free_port()}/v1",
                       openai_api_key="sk-first")
    first = get_llm(s)
    for change in ({"openai_api_key": "sk-second"}, {"openai_api_key": ""}, {"request_timeout": 1.0},
                   {"max_retries": 0}):
        assert get_llm(s.with_(**change)) is not first, f"{change} was ignored: the cached client is reused"
    assert get_llm(s) is first


# --- models handed in ---------------------------------------------------------------------------
def test_a_model_handed_in_is_the_one_asked_and_no_process_model_is_built(settings: Settings) -> None:
    model = QueueChatModel()
    bot = Assistant(settings.with_(checks_off=settings.checks.checks_off | {"picked"}), llm=model)
    sources = bot.gather(ASTELLAS_Q).sources
    model.enqueue_choice("1", 0.9).enqueue(f"{astellas_sentence(sources)} [S1].").enqueue_choice("yes", 0.9)
    answer = bot.ask(ASTELLAS_Q)
    assert "Astellas" in answer.answer and model.requests and not model.replies
    assert CACHE.keys("llm") == []  # settings name fake:extractive; nothing built it


def test_a_retriever_handed_in_is_the_one_searched(settings: Settings) -> None:
    from assistant.search.retrieval import get_retriever

    searched: list[str] = []
    real = get_retriever(settings)

    class Recording:
        def search(self, query: str, **kw):  # type: ignore[no-untyped-def]
            searched.append(query)
            return real.search(query, **kw)

        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            return getattr(real, name)  # everything but search, from the real one

    bot = Assistant(settings, retriever=Recording())  # type: ignore[arg-type]
    assert bot.gather(ASTELLAS_Q).sources and searched == [ASTELLAS_Q]
    timeline = build_timeline(bot.retriever, bot.llm, "Hayashi visit to Beijing")
    assert searched[-1] == "Hayashi visit to Beijing" and timeline.topic == "Hayashi visit to Beijing"


def test_every_setting_is_read_from_its_derived_environment_variable() -> None:
    names = Settings.env_names()
    assert names["evidence_tokens"] == "ASSISTANT_EVIDENCE_TOKENS" and names["corpus_dir"] == "ASSISTANT_CORPUS"
    assert names["openai_api_key"] == "OPENAI_API_KEY" and names["n_threads"] == "ASSISTANT_THREADS"
    s = Settings.from_env(environ={"ASSISTANT_EVIDENCE_TOKENS": "450", "ASSISTANT_PICK_CHECK": "1",
                                   "ASSISTANT_SUPPORT_MIN": "0.6", "ASSISTANT_CHECKS_OFF": "picked,numbers"})
    assert (s.evidence.tokens, s.checks.pick_check, s.checks.support_min) == (450, True, 0.6)
    assert s.checks.checks_off == frozenset({"picked", "numbers"})


# --- evidence settings reach the ranking and the budget ---------------------------------------------------

def test_the_evidence_weights_setting_decides_which_sentences_rank_first(settings: Settings) -> None:
    question = Assistant(settings).understand(MINISTERS_Q)
    passages = Assistant(settings).retriever.search(question.text, k=8)
    # Weigh only "lead" (a sentence among the first two of its article): the leads rank first.
    lead_only = settings.with_(evidence_weights=(("lead", 5.0),))
    ranked = Assistant(lead_only).rank_sentences(question, passages)
    assert ranked[0].features["lead"] == 1.0
    leads = sum(1 for i in ranked if i.features["lead"] == 1.0)
    assert all(i.features["lead"] == 1.0 for i in ranked[:leads])
    # The shipped weights order them otherwise.
    shipped = Assistant(settings).rank_sentences(question, passages)
    assert [i.sentence for i in shipped[:leads]] != [i.sentence for i in ranked[:leads]]


def test_the_chars_per_token_setting_prices_the_evidence_budget(settings: Settings) -> None:
    question = Assistant(settings).understand(MINISTERS_Q)
    default = Assistant(settings).gather(MINISTERS_Q)
    # At twice the characters per token every sentence costs half, so more fit in the same budget.
    cheap = settings.with_(evidence_chars_per_token=8.0)
    assert Assistant(cheap).budget(question).chars_per_token == 8.0
    more = Assistant(cheap).gather(MINISTERS_Q)
    assert sum(len(s.text) for s in more.sources) > sum(len(s.text) for s in default.sources)


def test_the_evidence_weights_are_read_from_a_json_object_in_the_environment() -> None:
    s = Settings.from_env({"ASSISTANT_EVIDENCE_WEIGHTS": '{"dense": 3, "bias": -7}'})
    assert dict(s.evidence.weights) == {"dense": 3.0, "bias": -7.0}
    with pytest.raises(ConfigError, match="ASSISTANT_EVIDENCE_WEIGHTS"):
        Settings.from_env({"ASSISTANT_EVIDENCE_WEIGHTS": "dense=3"})
    with pytest.raises(ConfigError, match="CHARS_PER_TOKEN"):
        Settings.from_env({"ASSISTANT_EVIDENCE_CHARS_PER_TOKEN": "0"})


def test_the_notes_settings_reach_the_quote_and_the_composed_answer(settings: Settings,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import assistant.answering.ask as ask_module

    seen: dict[str, float] = {}
    real_quote, real_compose = ask_module.quote_if_only_labels, ask_module.compose

    def quote(q, text, sources, wants_bonus):  # type: ignore[no-untyped-def]
        seen["quote_wants_bonus"] = wants_bonus
        return real_quote(q, text, sources, wants_bonus)

    def compose(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen["as_of_same_min"] = args[-1]
        return real_compose(*args, **kwargs)

    monkeypatch.setattr(ask_module, "quote_if_only_labels", quote)
    monkeypatch.setattr(ask_module, "compose", compose)
    s, model = queue_model(settings.with_(quote_wants_bonus=0.125, as_of_same_min=0.875))
    model.rule = lambda messages, options: "yes" if "yes" in options else next(o for o in options if o != "NONE")
    model.enqueue("[S1]")  # a reply of labels only: answered with S1's best sentence
    answer = Assistant(s).ask(ASTELLAS_Q)
    assert seen == {"quote_wants_bonus": 0.125, "as_of_same_min": 0.875}
    assert not answer.declined and answer.citations
