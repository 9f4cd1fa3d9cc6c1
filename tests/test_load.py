"""Load: many questions at once through one shared Assistant, and a long chat that stays bounded."""

from __future__ import annotations

import re
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import pytest

import assistant.answering as answering
import assistant.chat as chat
from assistant.answering import Assistant
from assistant.backends.fakes import FakeChatModel
from assistant.chat import ChatSession
from assistant.indexing import build_index
from assistant.settings import Settings
from assistant.types import Answer, Completion

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
    return Settings.from_env(environ={}, corpus_dir=str(corpus), index_dir=str(tmp_path / "idx"),
                             embedder="fake:hash", llm="fake:extractive")


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
    build_index(settings.corpus_dir, settings=settings)
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


class RecordingModel:
    """fake:extractive that records prompt sizes; optionally a rewriter that answers instead of rewriting."""

    def __init__(self, bad_rewriter: bool = False) -> None:
        self.inner = FakeChatModel("extractive")
        self.model_id = self.inner.model_id
        self.bad_rewriter = bad_rewriter
        self.rewrite_prompts: list[int] = []
        self.answer_prompts: list[int] = []

    def _note(self, messages: list[dict[str, str]]) -> bool:
        size = sum(len(m["content"]) for m in messages)
        rewrite = messages[-1]["content"].startswith("Rewrite")
        (self.rewrite_prompts if rewrite else self.answer_prompts).append(size)
        return rewrite

    def complete(self, messages: list[dict[str, str]], **kwargs: Any) -> Completion:
        if self._note(messages) and self.bad_rewriter:
            return Completion(text="Sure. The detained employee worked for a drug maker")
        return self.inner.complete(messages, **kwargs)

    def stream(self, messages: list[dict[str, str]], **kwargs: Any) -> Iterator[str]:
        self._note(messages)
        return self.inner.stream(messages, **kwargs)


@pytest.mark.parametrize("bad_rewriter", [False, True], ids=["rewrites", "rewriter-answers-instead"])
def test_fifty_turn_chat_keeps_prompts_bounded_and_still_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 bad_rewriter: bool) -> None:
    settings = _settings(tmp_path)
    build_index(settings.corpus_dir, settings=settings)
    model = RecordingModel(bad_rewriter)
    monkeypatch.setattr(chat, "get_llm", lambda s, on_message=None: model)
    monkeypatch.setattr(answering, "get_llm", lambda s, on_message=None: model)
    session = ChatSession(Assistant(settings))
    sizes: dict[int, tuple[int, int]] = {}
    for turn in range(1, 51):
        answer = session.ask(FIRST if turn == 1 else FOLLOW_UPS[(turn - 2) % len(FOLLOW_UPS)])
        sizes[turn] = (model.rewrite_prompts[-1] if model.rewrite_prompts else 0,
                       len(answer.standalone_question))
    rewrite_5, question_5 = sizes[5]
    rewrite_50, question_50 = sizes[50]
    assert 0 < rewrite_50 <= rewrite_5 * 1.5 + 200, f"rewrite prompt grew from {rewrite_5} to {rewrite_50} chars"
    assert question_50 <= max(question_5, 100) * 3, \
        f"the question sent to retrieval grew from {question_5} to {question_50} chars"
    assert max(model.answer_prompts[-10:]) <= max(model.answer_prompts[:10]) * 2, "answer prompt keeps growing"
    assert len(session.turns) == 50
    final = session.ask(FIRST)
    assert not final.declined and "Astellas" in final.answer
    last_follow_up = session.ask("Where was the employee detained?")
    assert re.search(r"Beijing", last_follow_up.answer) or last_follow_up.declined
