"""Premise checks: a question that takes something for granted is declined when no passage states it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from assistant.answering import DECLINE_TEXT, Assistant
from assistant.backends import get_llm
from assistant.indexing import build_index
from assistant.premise import premise_gaps, premise_terms
from assistant.settings import Settings
from assistant.types import Passage

REPO = Path(__file__).resolve().parent.parent


def passage(text: str, file: str = "a.txt", date: str = "") -> Passage:
    return Passage(file=file, start=0, end=len(text), text=text, score=1.0, date=date)


def test_only_questions_that_assert_something_have_premise_terms() -> None:
    assert "cancel" in premise_terms("Why did Qin Gang cancel his 2023 visit to Tokyo?")
    assert "agree" in premise_terms("What did Wang Yi and Hayashi agree in Cambodia?")
    assert "help" in premise_terms("How has the hotline helped avoid clashes?")
    assert premise_terms("Who was China's foreign minister in April 2023?") == []
    assert premise_terms("When did Hayashi visit Beijing?") == []
    assert premise_terms("Which company employed the detained employee?") == []


def test_speech_and_framing_words_are_not_required() -> None:
    terms = premise_terms("What did Mao Ning say about the visit Japan plans?")
    assert "say" not in terms and "plan" not in terms
    assert {"mao", "ning", "visit", "japan"} <= set(terms)


def test_unstated_premise_is_reported_in_the_questions_words() -> None:
    passages = [passage("Chinese Foreign Minister Qin Gang told Hayashi in Beijing in April 2023 that he "
                        "is willing to visit Japan, including Tokyo."),
                passage("Wang cancelled a planned meeting with Hayashi in Cambodia.", file="b.txt")]
    # "cancel" is in the corpus, but never together with Qin Gang's visit.
    assert premise_gaps("Why did Qin Gang cancel his 2023 visit to Tokyo?", passages) == ["cancel"]


def test_inflected_forms_state_the_premise() -> None:
    passages = [passage("Wang Yi cancelled a planned meeting with Hayashi in Cambodia.")]
    assert premise_gaps("Why did Wang Yi cancel the meeting with Hayashi in Cambodia?", passages) == []
    opposed = [passage("China voiced strong opposition to the release of treated water from Fukushima.")]
    assert premise_gaps("Why did China oppose the release of treated water from Fukushima?", opposed) == []


def test_year_may_come_from_the_article_date() -> None:
    dated = [passage("Iwaya visited Beijing for talks with Wang Yi.", date="2024-12-25")]
    assert premise_gaps("Why did Iwaya visit Beijing in 2024?", dated) == []
    assert premise_gaps("Why did Iwaya visit Beijing in 2019?", dated) == ["2019"]


def test_a_short_name_counts_when_its_article_gives_the_full_name() -> None:
    short = [passage("Wang cancelled a planned meeting with Hayashi in Cambodia.")]
    full_name_elsewhere = {"a.txt": frozenset({"wang", "yi", "cancelled", "hayashi"})}
    question = "Why did Wang Yi cancel the meeting with Hayashi in Cambodia?"
    assert premise_gaps(question, short, full_name_elsewhere) == []
    assert premise_gaps(question, short, {"a.txt": frozenset({"wang"})}) == ["yi"]


def test_a_person_named_only_in_another_passage_is_a_gap() -> None:
    passages = [passage("Xi Jinping and Shigeru Ishiba met last month in Peru."),
                passage("Takeshi Iwaya met Premier Li Qiang in Beijing.", file="b.txt")]
    gaps = premise_gaps("What did Takeshi Iwaya and President Xi Jinping discuss when they met in Beijing?",
                        passages)
    assert gaps  # no single passage has both Iwaya and Xi meeting in Beijing


# --- through Assistant.ask with the extractive fake model -------------------------------------------

@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    corpus = tmp_path_factory.mktemp("premise") / "articles"
    shutil.copytree(REPO / "articles", corpus)
    s = Settings.from_env(environ={}, corpus_dir=str(corpus), index_dir=str(corpus.parent / "index"),
                          embedder="fake:hash", llm="fake:extractive")
    build_index(s.corpus_dir, settings=s)
    return s


def test_false_premise_is_declined_without_calling_the_model(settings: Settings) -> None:
    model = get_llm(settings)
    before = len(model.requests)
    answer = Assistant(settings).ask("Why did Qin Gang cancel his 2023 visit to Tokyo?")
    assert answer.declined
    assert answer.unsupported_premise == ["cancel"]
    assert answer.answer.startswith(DECLINE_TEXT) and '"cancel"' in answer.answer
    assert answer.sources, "a decline still lists the closest passages"
    assert len(model.requests) == before
    assert answer.to_dict()["unsupported_premise"] == ["cancel"]


def test_stated_premise_is_answered_by_the_model(settings: Settings) -> None:
    model = get_llm(settings)
    before = len(model.requests)
    answer = Assistant(settings).ask("Why did Wang Yi cancel the planned meeting with Hayashi in Cambodia?")
    assert answer.unsupported_premise == []
    assert len(model.requests) == before + 1
    assert not answer.declined
    assert any(c.file.startswith("002_") for c in answer.citations)


def test_a_what_question_may_word_its_verb_differently_but_a_why_question_may_not() -> None:
    passages = [passage("China said Japan's tighter export controls were aimed at chip manufacturing equipment.")]
    assert premise_gaps("What did Japan's tighter export controls target according to China?", passages) == []
    assert premise_gaps("Why did Japan's tighter export controls target China?", passages) == ["target"]
    # Two missing words are too many even for a what-question.
    assert premise_gaps("What did Japan's tighter export controls target in Brazil?", passages) == ["target", "brazil"]
