"""Deterministic fakes with behaviour, for tests: vectors that carry word signal, and a model
that answers from the sources it is given (and declines when they do not match)."""

from __future__ import annotations

import hashlib
import math
import re
from typing import Iterator, Sequence

from ..text_utils import content_terms
from ..types import Completion

DIM = 256
SENTINEL = "NOT_IN_SOURCES"


class FakeEmbedder:
    """Hashes stemmed content words into a fixed-size unit vector: similar words, similar vectors."""

    def __init__(self, model: str = "hash") -> None:
        self.model_id = f"fake:{model or 'hash'}"
        self.calls = 0

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed each text as a normalised bag of hashed words."""
        self.calls += 1
        out = []
        for text in texts:
            vec = [0.0] * DIM
            for term in content_terms(text):
                h = int(hashlib.md5(term.encode()).hexdigest()[:8], 16)
                vec[h % DIM] += 1.0 if (h >> 12) & 1 else -1.0
            norm = math.sqrt(sum(v * v for v in vec)) or 1.0
            out.append([v / norm for v in vec])
        return out


_SOURCE = re.compile(r"^\[S(\d+)\] (.+)$", re.M)
_QUESTION = re.compile(r"^Question:\s*(.+)$", re.M)


class FakeChatModel:
    """Answers with the source sentence that best overlaps the question, cited by its label."""

    def __init__(self, model: str = "extractive") -> None:
        self.model_id = f"fake:{model or 'extractive'}"
        self.requests: list[list[dict[str, str]]] = []

    def _reply(self, messages: list[dict[str, str]]) -> str:
        self.requests.append(messages)
        prompt = messages[-1]["content"]
        if prompt.startswith("Rewrite"):
            # Follow-up rewriting: return the last line's question unchanged plus the prior subject.
            match = _QUESTION.search(prompt)
            return match.group(1).strip() if match else ""
        match = _QUESTION.search(prompt)
        question = set(content_terms(match.group(1))) if match else set()
        best, best_overlap = None, 0
        for label, text in _SOURCE.findall(prompt):
            for sentence in re.split(r"(?<=[.!?])\s+", text):
                overlap = len(question & set(content_terms(sentence)))
                if overlap > best_overlap:
                    best, best_overlap = (label, sentence.strip()), overlap
        if best is None or best_overlap < 2:
            return SENTINEL
        return f"{best[1]} [S{best[0]}]"

    def complete(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float = 0.0,
                 stop: list[str] | None = None) -> Completion:
        """Return the extractive reply with word counts as token usage."""
        text = self._reply(messages)
        prompt_words = sum(len(m["content"].split()) for m in messages)
        return Completion(text=text, prompt_tokens=prompt_words, completion_tokens=len(text.split()))

    def stream(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float = 0.0,
               stop: list[str] | None = None) -> Iterator[str]:
        """Yield the reply word by word."""
        text = self._reply(messages)
        for i, word in enumerate(text.split(" ")):
            yield word if i == 0 else " " + word
