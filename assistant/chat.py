"""Multi-turn sessions: follow-ups are rewritten into stand-alone questions before retrieval."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from .answering import Assistant
from .backends import get_llm
from .prompts import render
from .types import Answer

MAX_TURN_CHARS = 400


@dataclass
class Turn:
    """One exchange of the conversation."""

    question: str
    standalone: str
    answer: str


class ChatSession:
    """A conversation over the index; history is windowed so prompts stay within the model's context."""

    def __init__(self, assistant: Assistant) -> None:
        self.assistant = assistant
        self.turns: list[Turn] = []
        self.last_answer: Answer | None = None

    def reset(self) -> None:
        """Forget the conversation."""
        self.turns.clear()
        self.last_answer = None

    def needs_rewrite(self, question: str) -> bool:
        """Every question after the first is rewritten with the history (a stand-alone one comes back unchanged)."""
        return bool(self.turns)

    def rewrite_messages(self, question: str) -> list[dict[str, str]]:
        """The prompt that turns a follow-up into a stand-alone question (last turns only)."""
        window = self.turns[-self.assistant.settings.history_turns:]
        history = "\n".join(
            f"User: {t.standalone[:MAX_TURN_CHARS]}\nAssistant: {t.answer[:MAX_TURN_CHARS]}" for t in window)
        return [{"role": "user", "content": render("rewrite", history=history, question=question)}]

    def standalone(self, question: str) -> str:
        """The question to retrieve with: rewritten when it is a follow-up."""
        if not self.needs_rewrite(question):
            return question
        llm = get_llm(self.assistant.settings)
        reply = llm.complete(self.rewrite_messages(question), max_tokens=60, temperature=0.0).text
        rewritten = reply.strip().splitlines()[0].strip().strip('"') if reply.strip() else ""
        # Guard against a model that answers instead of rewriting, or returns nothing useful.
        if not rewritten or len(rewritten) > 3 * len(question) + 200 or not rewritten.endswith("?"):
            previous = self.turns[-1].standalone[:MAX_TURN_CHARS]
            return f"{question} (following up on: {previous})"
        return rewritten

    def ask(self, question: str) -> Answer:
        """Answer a turn of the conversation."""
        answer: Answer | None = None
        for event in self.stream(question):
            if isinstance(event, Answer):
                answer = event
        assert answer is not None
        return answer

    def stream(self, question: str, standalone: str | None = None) -> Iterator[str | Answer]:
        """Yield text deltas, then the final Answer, for one turn (`standalone`: an already rewritten question)."""
        standalone = standalone or self.standalone(question)
        for event in self.assistant.stream(standalone):
            if isinstance(event, Answer):
                event.question = question
                event.standalone_question = standalone
                self.turns.append(Turn(question, standalone, event.answer))
                self.last_answer = event
            yield event
