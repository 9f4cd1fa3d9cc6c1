"""Multi-turn sessions: follow-ups are rewritten into stand-alone questions before retrieval."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator

from .ask import Assistant
from ..labels import blank_labels
from .prompts import render
from ..types import Answer



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
        answer = self.assistant.settings.answer
        cut = answer.history_turn_chars
        history = "\n".join(f"User: {t.standalone[:cut]}\nAssistant: {t.answer[:cut]}"
                            for t in self.turns[-answer.history_turns:])
        return [{"role": "user", "content": render("rewrite", history=history, question=question)}]

    def standalone(self, question: str) -> str:
        """The question to retrieve with: rewritten when it is a follow-up."""
        if not self.needs_rewrite(question):
            return question
        llm = self.assistant.llm
        max_tokens = self.assistant.settings.answer.rewrite_max_tokens
        reply = llm.complete(self.rewrite_messages(question), max_tokens=max_tokens, temperature=0.0).text
        rewritten = reply.strip().splitlines()[0].strip().strip('"') if reply.strip() else ""
        # Guard against a model that answers instead of rewriting, or returns nothing useful: then
        # the pronouns are resolved against the last turn by NER, and the question still reads as one.
        if not rewritten or len(rewritten) > 3 * len(question) + 200 or not rewritten.endswith("?"):
            last = self.turns[-1]
            return resolve_references(question, last.standalone, last.answer)
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


# Pronouns and place words, and the NER labels of what each can stand for (English grammar).
_REFERENCES = {
    "he": ("PERSON",), "him": ("PERSON",), "she": ("PERSON",), "his": ("PERSON",), "her": ("PERSON",),
    "they": ("ORG", "NORP", "GPE"), "them": ("ORG", "NORP", "GPE"), "their": ("ORG", "NORP", "GPE"),
    "it": ("ORG", "PRODUCT", "EVENT", "LAW", "WORK_OF_ART"), "its": ("ORG", "PRODUCT", "EVENT", "LAW", "WORK_OF_ART"),
    "there": ("GPE", "LOC", "FAC"),
}
_POSSESSIVE = {"his", "her", "their", "its"}


def resolve_references(question: str, last_question: str, last_answer: str = "") -> str:
    """A follow-up made stand-alone without the model: each pronoun (or "there") becomes a name of a
    fitting kind (spaCy NER) from the last turn, its question's names first, in the order written
    (the subject comes first), and an opening "And" goes. "And what did he push for there?" after
    "When did Hayashi meet Qin Gang in Beijing?" becomes "What did Hayashi push for in Beijing?".
    Two different pronouns never get the same name; unresolved words stay as they are."""
    from ..backends import ner

    names: list[ner.Entity] = []
    if ner.available():
        for text in (last_question, last_answer):
            names.extend(ner.entities(blank_labels(text)))
    given: dict[tuple[str, ...], str] = {}  # pronoun group -> the name it was given

    def swap(m: re.Match[str]) -> str:
        word = m.group(0)
        labels = _REFERENCES[word.lower()]
        group = labels
        if group not in given:
            used = set(given.values())
            given[group] = next((e.text for e in names if e.label in labels and e.text not in used), "")
        name = given[group]
        if not name:
            return word
        if word.lower() == "there":
            return f"in {name}"
        return f"{name}'s" if word.lower() in _POSSESSIVE else name

    text = re.sub(r"^\W*(and|but|so|then|also)\s+", "", question.strip(), flags=re.I)
    text = re.sub(r"\b(" + "|".join(_REFERENCES) + r")\b", swap, text, flags=re.I)
    text = re.sub(r"\bin in\b", "in", text)
    return text[:1].upper() + text[1:]
