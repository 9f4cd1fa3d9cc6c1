"""ChatSession: follow-ups are rewritten into stand-alone questions before retrieval, history is
windowed, /reset forgets, and each turn streams text before its Answer."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Callable, Iterator

import pytest

import assistant.answering
import assistant.chat
from assistant.answering import Assistant, Evidence
from assistant.backends import _LLM_CACHE
from assistant.backends.fakes import FakeChatModel
from assistant.chat import MAX_TURN_CHARS, ChatSession
from assistant.indexing import build_index
from assistant.retrieval import Filters
from assistant.settings import Settings
from assistant.types import Answer

REPO = Path(__file__).resolve().parent.parent
HAYASHI_Q = "What did Foreign Minister Yoshimasa Hayashi announce on Friday?"
IWAYA_Q = "How did Takeshi Iwaya describe the meetings with Li Qiang and Wang Yi?"
FOLLOW_UP = "and who did he meet?"


class RewritingModel(FakeChatModel):
    """fake:extractive for answers; rewrites follow-ups with a script, recording each rewrite prompt."""

    def __init__(self, rewrite: Callable[[str], str]) -> None:
        super().__init__("scripted")
        self.rewrite = rewrite
        self.rewrite_prompts: list[str] = []

    def _reply(self, messages: list[dict[str, str]]) -> str:
        prompt = messages[-1]["content"]
        if prompt.startswith("Rewrite"):
            self.requests.append(messages)
            self.rewrite_prompts.append(prompt)
            return self.rewrite(prompt)
        return super()._reply(messages)


def resolve_he(prompt: str) -> str:
    """Replace 'he' with the full name of the last person the conversation asked about."""
    history = prompt.split("Conversation:", 1)[1].split("\nQuestion:", 1)[0]
    names = re.findall(r"(Yoshimasa Hayashi|Takeshi Iwaya)", history)
    question = re.search(r"^Question:\s*(.+)$", prompt, re.M).group(1)
    if not names:
        return question
    return question[0].upper() + question[1:].replace(" he ", f" {names[-1]} ")


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("chat")
    shutil.copytree(REPO / "articles", root / "articles")
    s = Settings.from_env(environ={}, corpus_dir=str(root / "articles"), index_dir=str(root / "index"),
                          embedder="fake:hash", llm="fake:extractive")
    build_index(s.corpus_dir, settings=s)
    return s


@pytest.fixture
def install(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[RewritingModel], RewritingModel]]:
    _LLM_CACHE.clear()

    def use(model: RewritingModel) -> RewritingModel:
        monkeypatch.setattr(assistant.answering, "get_llm", lambda settings, on_message=None: model)
        monkeypatch.setattr(assistant.chat, "get_llm", lambda settings, on_message=None: model)
        return model

    yield use
    _LLM_CACHE.clear()


class RecordingAssistant(Assistant):
    """The real Assistant, remembering the question each retrieval was run with."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.retrieved_for: list[str] = []

    def gather(self, question: str, filters: Filters | None = None) -> Evidence:
        self.retrieved_for.append(question)
        return super().gather(question, filters)


def test_a_follow_up_is_rewritten_into_a_standalone_question_before_retrieval(settings: Settings, install) -> None:
    model = install(RewritingModel(resolve_he))
    bot = RecordingAssistant(settings)
    session = ChatSession(bot)

    first = session.ask(HAYASHI_Q)
    assert not first.declined
    assert model.rewrite_prompts == [], "a first question has nothing to lean on"

    second = session.ask(FOLLOW_UP)
    assert bot.retrieved_for == [HAYASHI_Q, "And who did Yoshimasa Hayashi meet?"]
    assert second.standalone_question == "And who did Yoshimasa Hayashi meet?"
    assert second.question == FOLLOW_UP
    assert HAYASHI_Q in model.rewrite_prompts[0] and FOLLOW_UP in model.rewrite_prompts[0]
    assert not second.declined and "Qin Gang" in second.answer


def test_history_in_the_rewrite_prompt_is_windowed_to_history_turns(settings: Settings, install) -> None:
    model = install(RewritingModel(resolve_he))
    session = ChatSession(RecordingAssistant(settings.with_(history_turns=1)))
    session.ask(HAYASHI_Q)
    session.ask(IWAYA_Q)
    session.ask(FOLLOW_UP)

    prompt = model.rewrite_prompts[-1]
    assert IWAYA_Q in prompt and HAYASHI_Q not in prompt
    assert session.turns[-1].standalone == "And who did Takeshi Iwaya meet?"


def test_with_a_wider_window_the_rewrite_prompt_holds_earlier_turns(settings: Settings, install) -> None:
    model = install(RewritingModel(resolve_he))
    session = ChatSession(Assistant(settings.with_(history_turns=2)))
    session.ask(HAYASHI_Q)
    session.ask(IWAYA_Q)
    session.ask(FOLLOW_UP)

    assert HAYASHI_Q in model.rewrite_prompts[-1] and IWAYA_Q in model.rewrite_prompts[-1]


def test_each_turn_in_the_rewrite_prompt_is_cut_to_a_bounded_length(settings: Settings, install) -> None:
    model = install(RewritingModel(resolve_he))
    session = ChatSession(Assistant(settings))
    long_question = HAYASHI_Q + " Please answer carefully" + " and in detail" * 60 + "."
    session.ask(long_question)
    session.ask(FOLLOW_UP)

    history = model.rewrite_prompts[-1].split("Conversation:", 1)[1].split("\nQuestion:", 1)[0]
    for line in history.strip().splitlines():
        assert len(line.split(": ", 1)[1]) <= MAX_TURN_CHARS


def test_reset_forgets_the_conversation_so_nothing_is_rewritten(settings: Settings, install) -> None:
    model = install(RewritingModel(resolve_he))
    bot = RecordingAssistant(settings)
    session = ChatSession(bot)
    session.ask(HAYASHI_Q)
    session.reset()

    assert session.turns == [] and session.last_answer is None
    session.ask(FOLLOW_UP)
    assert model.rewrite_prompts == []
    assert bot.retrieved_for[-1] == FOLLOW_UP


def test_a_question_that_leans_on_nothing_is_not_rewritten(settings: Settings, install) -> None:
    model = install(RewritingModel(resolve_he))
    session = ChatSession(Assistant(settings))
    session.ask(HAYASHI_Q)
    answer = session.ask(IWAYA_Q)

    assert model.rewrite_prompts == []
    assert answer.standalone_question == IWAYA_Q


def test_a_rewrite_that_answers_instead_of_asking_falls_back_to_the_previous_question(settings: Settings,
                                                                                     install) -> None:
    install(RewritingModel(lambda prompt: "Hayashi met Qin Gang in Beijing."))
    bot = RecordingAssistant(settings)
    session = ChatSession(bot)
    session.ask(HAYASHI_Q)
    session.ask(FOLLOW_UP)

    assert FOLLOW_UP in bot.retrieved_for[-1] and HAYASHI_Q in bot.retrieved_for[-1]


def test_a_turn_streams_text_deltas_then_its_answer_and_is_remembered(settings: Settings, install) -> None:
    install(RewritingModel(resolve_he))
    session = ChatSession(Assistant(settings))
    events = list(session.stream(HAYASHI_Q))

    assert len([e for e in events if isinstance(e, str)]) >= 3
    assert isinstance(events[-1], Answer) and all(isinstance(e, str) for e in events[:-1])
    assert session.last_answer is events[-1]
    assert [t.question for t in session.turns] == [HAYASHI_Q]
    assert session.turns[0].answer == events[-1].answer
