"""ChatSession: every follow-up is rewritten into a stand-alone question before retrieval, history
is windowed, /reset forgets, and each turn streams text before its Answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import built_sample

from assistant.answering.ask import Assistant, Evidence
from assistant.backends import get_llm
from assistant.backends.fakes import QueueChatModel
from assistant.answering.chat import ChatSession
from assistant.answering.checks import Question
from assistant.search.retrieval import Filters
from assistant.settings import Settings
from assistant.types import Answer

REPO = Path(__file__).resolve().parent.parent
HAYASHI_Q = "What did Foreign Minister Yoshimasa Hayashi announce on Friday?"
IWAYA_Q = "How did Takeshi Iwaya describe the meetings with Li Qiang and Wang Yi?"
FOLLOW_UP = "and who did he meet?"
HAYASHI_STANDALONE = "And who did Yoshimasa Hayashi meet?"
IWAYA_STANDALONE = "And who did Takeshi Iwaya meet?"
# Queued model replies. The checks that ask the model (answerable, supported) are off in these
# tests, so each turn makes exactly: one rewrite (every turn after the first), then one answer.
HAYASHI_A = "Hayashi announced a plan to visit Beijing for talks with Qin Gang [S1]."
IWAYA_A = "Iwaya described the meetings as candid [S1]."
MET_A = "He met Chinese Foreign Minister Qin Gang [S1]."


@pytest.fixture(scope="module")
def corpus_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The sample corpus indexed once with the fake embedder; the behavioural fake:extractive model."""
    return built_sample(tmp_path_factory, "chat")


@pytest.fixture
def settings(corpus_settings: Settings, fresh_caches: None) -> Settings:
    """The queue fake, with the model-judged checks off: these tests are about rewriting, not the checks."""
    return corpus_settings.with_(llm="fake:queue", checks_off=frozenset({"answerable", "supported", "picked"}))


@pytest.fixture
def model(settings: Settings) -> QueueChatModel:
    """The queue model the Assistant and the ChatSession get from get_llm (one per process and settings)."""
    llm = get_llm(settings)
    assert isinstance(llm, QueueChatModel)
    llm.reset()
    return llm


def rewrite_prompts(model: QueueChatModel) -> list[str]:
    return [m[-1]["content"] for m in model.requests if m[-1]["content"].startswith("Rewrite")]


def answer_prompts(model: QueueChatModel) -> list[str]:
    return [m[-1]["content"] for m in model.requests if not m[-1]["content"].startswith("Rewrite")]


def history_of(prompt: str) -> str:
    """The conversation part of a rewrite prompt."""
    return prompt.split("Conversation:", 1)[1].split("\nQuestion:", 1)[0]


class RecordingAssistant(Assistant):
    """The real Assistant, remembering the question each retrieval was run with."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.retrieved_for: list[str] = []

    def gather(self, question: str | Question, filters: Filters | None = None) -> Evidence:
        self.retrieved_for.append(question.text if isinstance(question, Question) else question)
        return super().gather(question, filters)


def test_a_follow_up_is_rewritten_into_a_standalone_question_before_retrieval(settings: Settings,
                                                                             model: QueueChatModel) -> None:
    bot = RecordingAssistant(settings)
    session = ChatSession(bot)

    model.enqueue(HAYASHI_A)
    first = session.ask(HAYASHI_Q)
    assert not first.declined
    assert rewrite_prompts(model) == [], "a first question has nothing to lean on"

    model.enqueue(HAYASHI_STANDALONE, MET_A)
    second = session.ask(FOLLOW_UP)
    assert bot.retrieved_for == [HAYASHI_Q, HAYASHI_STANDALONE]
    assert second.standalone_question == HAYASHI_STANDALONE
    assert second.question == FOLLOW_UP
    [rewrite] = rewrite_prompts(model)
    assert HAYASHI_Q in history_of(rewrite) and f"Assistant: {first.answer}" in history_of(rewrite)
    assert rewrite.rstrip().endswith(f"Question: {FOLLOW_UP}\nStand-alone question:")
    # The model answers the rewritten question, from passages retrieved for it.
    answer_prompt = answer_prompts(model)[-1]
    assert f"Question: {HAYASHI_STANDALONE}" in answer_prompt and "Qin Gang" in answer_prompt
    assert not second.declined and second.answer.startswith("He met Chinese Foreign Minister Qin Gang [S1]")
    assert not model.replies, "each turn made one rewrite and one answer call"


def test_history_in_the_rewrite_prompt_is_windowed_to_history_turns(settings: Settings,
                                                                    model: QueueChatModel) -> None:
    session = ChatSession(RecordingAssistant(settings.with_(history_turns=1)))
    model.enqueue(HAYASHI_A, IWAYA_Q, IWAYA_A, IWAYA_STANDALONE, MET_A)
    hayashi = session.ask(HAYASHI_Q)
    iwaya = session.ask(IWAYA_Q)
    session.ask(FOLLOW_UP)

    history = history_of(rewrite_prompts(model)[-1])
    assert IWAYA_Q in history and iwaya.answer in history
    assert HAYASHI_Q not in history and hayashi.answer not in history
    assert session.turns[-1].standalone == IWAYA_STANDALONE


def test_with_a_wider_window_the_rewrite_prompt_holds_earlier_turns(settings: Settings,
                                                                    model: QueueChatModel) -> None:
    session = ChatSession(Assistant(settings.with_(history_turns=2)))
    model.enqueue(HAYASHI_A, IWAYA_Q, IWAYA_A, IWAYA_STANDALONE, MET_A)
    session.ask(HAYASHI_Q)
    session.ask(IWAYA_Q)
    session.ask(FOLLOW_UP)

    history = history_of(rewrite_prompts(model)[-1])
    assert HAYASHI_Q in history and IWAYA_Q in history


def test_each_turn_in_the_rewrite_prompt_is_cut_to_a_bounded_length(settings: Settings,
                                                                    model: QueueChatModel) -> None:
    session = ChatSession(Assistant(settings))
    long_question = HAYASHI_Q + " Please answer carefully" + " and in detail" * 60 + "."
    long_answer = "Hayashi announced a plan to visit Beijing" + ", and he said so again" * 30 + " [S1]."
    model.enqueue(long_answer, HAYASHI_STANDALONE, MET_A)
    first = session.ask(long_question)
    cut = settings.answer.history_turn_chars
    assert len(long_question) > cut and len(first.answer) > cut
    session.ask(FOLLOW_UP)

    lines = history_of(rewrite_prompts(model)[-1]).strip().splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == ["User", "Assistant"]
    for line in lines:
        assert len(line.split(": ", 1)[1]) <= cut


def test_reset_forgets_the_conversation_so_nothing_is_rewritten(settings: Settings, model: QueueChatModel) -> None:
    bot = RecordingAssistant(settings)
    session = ChatSession(bot)
    model.enqueue(HAYASHI_A)
    session.ask(HAYASHI_Q)
    session.reset()

    assert session.turns == [] and session.last_answer is None
    model.enqueue(MET_A)
    session.ask(FOLLOW_UP)
    assert rewrite_prompts(model) == []
    assert bot.retrieved_for[-1] == FOLLOW_UP
    assert not model.replies, "the question after /reset went straight to answering"


def test_a_follow_up_that_already_stands_alone_is_still_rewritten_and_retrieval_uses_the_rewrite(
        settings: Settings, model: QueueChatModel) -> None:
    bot = RecordingAssistant(settings)
    session = ChatSession(bot)
    model.enqueue(HAYASHI_A, IWAYA_Q, IWAYA_A)  # the rewriter repeats a stand-alone question unchanged
    session.ask(HAYASHI_Q)
    answer = session.ask(IWAYA_Q)

    [rewrite] = rewrite_prompts(model)
    assert HAYASHI_Q in history_of(rewrite) and f"Question: {IWAYA_Q}" in rewrite
    assert bot.retrieved_for == [HAYASHI_Q, IWAYA_Q]
    assert answer.standalone_question == IWAYA_Q and answer.question == IWAYA_Q
    assert not model.replies


@pytest.mark.parametrize("bad_rewrite", [
    "Hayashi met Qin Gang in Beijing.",
    "",
    "Who did Hayashi meet" + " and where and when" * 60 + "?",
], ids=["answers-instead", "empty", "far-too-long"])
def test_a_rewrite_that_is_not_a_usable_question_falls_back_to_the_previous_question(
        settings: Settings, model: QueueChatModel, bad_rewrite: str) -> None:
    bot = RecordingAssistant(settings)
    session = ChatSession(bot)
    model.enqueue(HAYASHI_A, bad_rewrite, MET_A)
    session.ask(HAYASHI_Q)
    second = session.ask(FOLLOW_UP)

    assert len(rewrite_prompts(model)) == 1
    assert bot.retrieved_for[-1] != bad_rewrite
    # The pronoun is resolved against the last turn by NER, and the result reads as a question.
    assert bot.retrieved_for[-1] == "Who did Yoshimasa Hayashi meet?"
    assert second.standalone_question == bot.retrieved_for[-1]


@pytest.mark.parametrize("question, last_q, last_a, expected", [
    ("And what did he push for there?", "When did Hayashi meet Qin Gang in Beijing?",
     "Hayashi met Qin Gang in Beijing on April 2 [S3].", "What did Hayashi push for in Beijing?"),
    # BBC-style: a person named in the last question.
    ("Who replaced him?", "Why did David Moyes leave?", "", "Who replaced David Moyes?"),
    # Nothing to resolve against: the words stay.
    ("What did she say?", "What was the weather like?", "", "What did she say?"),
])
def test_without_a_usable_rewrite_pronouns_are_resolved_against_the_last_turn(
        question: str, last_q: str, last_a: str, expected: str) -> None:
    from assistant.answering.chat import resolve_references

    assert resolve_references(question, last_q, last_a) == expected


def test_a_turn_given_its_standalone_question_is_not_rewritten_again(settings: Settings,
                                                                   model: QueueChatModel) -> None:
    bot = RecordingAssistant(settings)
    session = ChatSession(bot)
    model.enqueue(HAYASHI_A, MET_A)
    session.ask(HAYASHI_Q)
    events = list(session.stream(FOLLOW_UP, standalone=HAYASHI_STANDALONE))

    assert rewrite_prompts(model) == []
    assert bot.retrieved_for[-1] == HAYASHI_STANDALONE
    answer = events[-1]
    assert isinstance(answer, Answer)
    assert answer.question == FOLLOW_UP and answer.standalone_question == HAYASHI_STANDALONE
    assert session.turns[-1].standalone == HAYASHI_STANDALONE


def test_a_turn_streams_text_deltas_then_its_answer_and_is_remembered(corpus_settings: Settings,
                                                                     fresh_caches: None) -> None:
    # fake:extractive answers from the retrieved sources, with every check on.
    session = ChatSession(Assistant(corpus_settings))
    events = list(session.stream(HAYASHI_Q))

    assert len([e for e in events if isinstance(e, str)]) >= 3
    assert isinstance(events[-1], Answer) and all(isinstance(e, str) for e in events[:-1])
    assert not events[-1].declined
    assert session.last_answer is events[-1]
    assert [t.question for t in session.turns] == [HAYASHI_Q]
    assert session.turns[0].answer == events[-1].answer
