"""Load: many questions at once through one shared Assistant, and a long chat that stays bounded."""

from __future__ import annotations

import re
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Union

import pytest

from assistant.answering.ask import Assistant
from assistant.backends import get_llm
from assistant.backends.fakes import FakeChatModel, QueueChatModel
from assistant.answering.chat import ChatSession
from assistant.indexing.build import build_index
from assistant.settings import Settings
from assistant.types import Answer

SAMPLES = Path(__file__).resolve().parent.parent / "articles"
# (question, file the answer must cite, words the answer must contain) for the fake models.
QUESTIONS = [
    ("Which pharmaceutical company employed the senior employee detained in Beijing?", "001", "Astellas"),
    ("Where will the Group of Seven summit be hosted by Japan?", "001", "Hiroshima"),
    ("What did China impose on seafood imports from Japan?", "003", "ban"),
    ("Which Japanese foreign minister made his maiden trip to Beijing?", "003", "Iwaya"),
    ("What did the Genron NPO survey find about Japanese impressions of China?", "002", "90 per cent"),
    ("Which anniversary of the Peace and Friendship Treaty does 2023 mark?", "000", "45th"),
    ("What did Japan announce about its national security strategy?", "002", "unprecedented"),
    ("How much will Japan increase its military budget by fiscal 2027?", "002", "2 per cent"),
    ("Who is the Chinese foreign ministry spokesman who said contact was ongoing?", "002", "Wang Wenbin"),
    ("Where did Xi and Kishida have their first in-person meeting?", "002", "Thailand"),
    ("What did Iwaya say about building a personal relationship?", "004", "personal relationship"),
    ("What did Mao Ning say about Hayashi's visit?", "001", "attaches importance"),
    ("What visa changes did Japan make for Chinese visitors?", "004", "visa"),
    ("Where did Xi Jinping and Shigeru Ishiba meet?", "004", "Ishiba"),
    ("Who did Iwaya meet in Beijing besides Wang Yi?", "004", "Li Qiang"),
    ("What is China's position as a trading partner of Japan?", "004", "largest trading partner"),
    ("What did Tokyo raise about attacks on Japanese citizens?", "003", "attacks"),
    ("What did the two ministers discuss about Ukraine and North Korea?", "003", "North Korea"),
    ("What did Hayashi say about the Belgian capital Brussels and NATO?", "001", "Brussels"),
    ("What did Japan's tighter export controls target according to China?", "000", "chip"),
]


pytestmark = pytest.mark.usefixtures("fresh_caches")


def _settings(tmp_path: Path) -> Settings:
    corpus = tmp_path / "articles"
    if not corpus.exists():
        shutil.copytree(SAMPLES, corpus)
    # The expected words were written for the selection where every pick brings the sentence after it:
    # with the hash embedder's meaningless ranking, "Li Qiang" reaches the prompt only as such context
    # (the real embedder ranks that sentence itself). What is tested here is concurrency.
    return Settings.from_env(environ={}, corpus_dir=str(corpus), index_dir=str(tmp_path / "idx"),
                             embedder="fake:hash", llm="fake:extractive", evidence_after_max_tokens=0)


def _check(answer: Answer, file_prefix: str, words: str) -> None:
    assert not answer.declined, answer.question
    assert any(c.file.startswith(file_prefix) for c in answer.citations), (answer.question, answer.citations)
    assert words in answer.answer, (answer.question, answer.answer)


def _at_once(assistant: Assistant, questions: list[str]) -> list[Any]:
    barrier = threading.Barrier(len(questions))

    def one(question: str) -> Any:
        barrier.wait(timeout=60)
        try:
            return assistant.ask(question)
        except Exception as exc:  # reported, not raised inside the pool
            return exc

    with ThreadPoolExecutor(max_workers=len(questions)) as pool:
        return list(pool.map(one, questions))


def test_twenty_questions_at_once_on_a_shared_assistant_all_answer_correctly(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    build_index(settings.index.corpus_dir, settings=settings)
    assistant = Assistant(settings)
    serial = [assistant.ask(q) for q, _, _ in QUESTIONS]
    for answer, (_, prefix, words) in zip(serial, QUESTIONS):
        _check(answer, prefix, words)
    results = _at_once(assistant, [q for q, _, _ in QUESTIONS])
    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, errors[:3]
    for answer, expected in zip(results, serial):
        assert answer.answer == expected.answer and answer.citations == expected.citations


def test_twenty_first_questions_at_once_build_the_missing_index_once_and_all_answer(tmp_path: Path) -> None:
    assistant = Assistant(_settings(tmp_path))  # no index yet: the first questions build it
    results = _at_once(assistant, [QUESTIONS[0][0]] * 20)
    errors = [f"{type(r).__name__}: {r}" for r in results if isinstance(r, Exception)]
    assert not errors, f"{len(errors)} of 20 failed, e.g. {errors[0]}"
    for answer in results:
        _check(answer, "001", "Astellas")


# --- a long chat ---------------------------------------------------------------------------------

FIRST = "Which pharmaceutical company employed the senior employee detained in Beijing?"
FOLLOW_UPS = [
    "What did Hayashi say about it?",
    "And what did they plan to discuss there?",
    "Why was he detained?",
    "What did the Chinese side say about that?",
]  # a conversation that keeps leaning on what came before


# A rewriter that answers instead of rewriting, every time: the session falls back on the previous question.
BAD_REWRITE = "Sure. The detained employee worked for a drug maker"
QUEUED_ANSWER = "The detained employee worked for Astellas Pharma in Beijing [S1]."

Model = Union[FakeChatModel, QueueChatModel]


def _size(messages: list[dict[str, str]]) -> int:
    return sum(len(m["content"]) for m in messages)


def _is_rewrite(messages: list[dict[str, str]]) -> bool:
    return messages[-1]["content"].startswith("Rewrite")


class TurnRecord:
    """One chat turn's answer and the prompts the model was sent for it."""

    def __init__(self, session: ChatSession, model: Model, question: str) -> None:
        if isinstance(model, QueueChatModel):
            model.reset()  # what one turn did not use never leaks into the next
            model.enqueue(*([BAD_REWRITE] if session.turns else []), QUEUED_ANSWER)
        seen = len(model.requests)
        self.answer = session.ask(question)
        sent = model.requests[seen:]
        self.rewrite_sizes = [_size(m) for m in sent if _is_rewrite(m)]
        self.answer_prompts = ["\n".join(x["content"] for x in m) for m in sent if not _is_rewrite(m)]


def _fifty_turns(settings: Settings) -> tuple[ChatSession, Model, list[TurnRecord]]:
    model = get_llm(settings)
    assert isinstance(model, (FakeChatModel, QueueChatModel))
    session = ChatSession(Assistant(settings))
    turns = [TurnRecord(session, model, FIRST if n == 0 else FOLLOW_UPS[(n - 1) % len(FOLLOW_UPS)]) for n in range(50)]
    return session, model, turns


def _assert_bounded(session: ChatSession, turns: list[TurnRecord]) -> None:
    assert len(session.turns) == 50
    assert all(len(t.rewrite_sizes) == (0 if n == 0 else 1) for n, t in enumerate(turns)), \
        "every turn after the first is rewritten once"
    rewrite = [t.rewrite_sizes[0] for t in turns[1:]]  # rewrite[0] is turn 2's, with one turn of history
    # At most history_turns turns of history, each side cut to history_turn_chars, on top of turn 2's prompt...
    answer = session.assistant.settings.answer
    window = answer.history_turns * (2 * answer.history_turn_chars + len("User: \nAssistant: \n"))
    assert max(rewrite) <= rewrite[0] + window, f"rewrite prompt grew from {rewrite[0]} to {max(rewrite)} chars"
    # ...and once the window is full (well before turn 12) it stops growing.
    assert max(rewrite[-10:]) <= max(rewrite[10:20]), \
        f"rewrite prompt still growing: {max(rewrite[10:20])} chars at turns 12-21, {max(rewrite[-10:])} at 41-50"
    question_5, question_50 = (len(turns[n].answer.standalone_question) for n in (4, 49))
    assert question_50 <= max(question_5, 100) * 3, \
        f"the question sent to retrieval grew from {question_5} to {question_50} chars"
    answer_sizes = [len(p) for t in turns for p in t.answer_prompts]
    assert len(answer_sizes) >= 10
    assert max(answer_sizes[-10:]) <= max(answer_sizes[:10]) * 2, "answer prompt keeps growing"


def test_fifty_turn_chat_keeps_prompts_bounded_and_still_answers(tmp_path: Path) -> None:
    settings = _settings(tmp_path)  # fake:extractive: rewrites by repeating the question, answers from sources
    build_index(settings.index.corpus_dir, settings=settings)
    session, model, turns = _fifty_turns(settings)
    _assert_bounded(session, turns)

    final = TurnRecord(session, model, FIRST).answer
    assert not final.declined and "Astellas" in final.answer
    last_follow_up = TurnRecord(session, model, "Where was the employee detained?").answer
    assert re.search(r"Beijing", last_follow_up.answer) or last_follow_up.declined


def test_fifty_turn_chat_whose_rewriter_answers_instead_keeps_prompts_bounded_and_retrieves_for_the_question(
        tmp_path: Path) -> None:
    # fake:queue: every rewrite is an answer, not a question, so each turn falls back on the one before.
    settings = _settings(tmp_path).with_(llm="fake:queue", checks_off=frozenset({"answerable", "supported", "picked"}))
    build_index(settings.index.corpus_dir, settings=settings)
    session, model, turns = _fifty_turns(settings)
    _assert_bounded(session, turns)
    assert all(BAD_REWRITE not in t.answer.standalone_question for t in turns)

    final = TurnRecord(session, model, FIRST)
    assert FIRST in final.answer.standalone_question
    assert not final.answer.declined and len(final.answer_prompts) == 1
    assert "Astellas" in final.answer_prompts[0], "after fifty turns the first question still retrieves its passage"
    last_follow_up = TurnRecord(session, model, "Where was the employee detained?")
    assert last_follow_up.answer.declined or "Beijing" in last_follow_up.answer_prompts[0]
