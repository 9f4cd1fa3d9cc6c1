"""Deterministic fakes with behaviour, for tests: vectors that carry word signal, and a model
that answers from the sources it is given (and declines when they do not match)."""

from __future__ import annotations

import hashlib
import math
import re
from collections import deque
from typing import Callable, Iterator, Sequence

from ..sentences import split_sentences
from ..text_utils import content_terms
from ..types import Choice, Completion

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
        self.requests: list[list[dict[str, str]]] = []  # complete/stream calls
        self.choice_requests: list[list[dict[str, str]]] = []  # choose calls (the checks)
        # Consulted before the queue: (messages, options) -> an option, or None to take the queue's next.
        self.rule: Callable[[list[dict[str, str]], Sequence[str]], str | None] | None = None

    def _reply(self, messages: list[dict[str, str]]) -> str:
        self.requests.append(messages)
        return self._reply_to(messages[-1]["content"])

    @staticmethod
    def _reply_to(prompt: str) -> str:
        if prompt.startswith("Rewrite"):
            # Follow-up rewriting: return the last line's question unchanged plus the prior subject.
            match = _QUESTION.search(prompt)
            return match.group(1).strip() if match else ""
        match = _QUESTION.search(prompt)
        question = set(content_terms(match.group(1))) if match else set()
        best, best_overlap = None, 0
        for label, text in _SOURCE.findall(prompt):
            for sentence in (text[sp.start:sp.end] for sp in split_sentences(text)):
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
        yield from _words(self._reply(messages))

    def choose(self, messages: list[dict[str, str]], options: Sequence[str]) -> Choice:
        """Judge by word overlap: the best-matching source label (or NONE), or yes/no for support."""
        self.choice_requests.append(messages)
        first = next((m["content"] for m in messages if m["role"] == "user"), "")
        sources = dict(_SOURCE.findall(first))
        if "PLANNED" in options:
            # Timeline events: about the topic when they share a content word; planned when the
            # sentence speaks of the future (a stand-in for the model's judgment).
            topic = re.search(r"^Timeline topic: (.+)$", first, re.M)
            sentence = re.search(r'^Sentence from the article: "(.+)"$', first, re.M)
            words = set(content_terms(sentence.group(1))) if sentence else set()
            about = bool(topic and words & set(content_terms(topic.group(1))))
            future = bool(sentence and re.search(r"\b(will|plans? to|intends? to|to visit|scheduled|expected)\b", sentence.group(1)))
            pick = "NO" if not about else "PLANNED" if future else "HAPPENED"
            return Choice(option=pick, probs={o: 0.9 if o == pick else 0.05 for o in options})
        if "NONE" in options and not all(o.isdigit() for o in options if o != "NONE"):
            # The answer's key entity: the first option found in the source sentence the extractive
            # answer would quote (NONE when it would decline).
            reply = self._reply_to(first)
            pick = next((o for o in options if o != "NONE" and o in reply), "NONE") if reply != SENTINEL else "NONE"
            rest = (1.0 - 0.9) / max(1, len(options) - 1)
            return Choice(option=pick, probs={o: 0.9 if o == pick else rest for o in options})
        if "NONE" in options:
            match = _QUESTION.search(first)
            question = set(content_terms(match.group(1))) if match else set()
            scored = [(len(question & set(content_terms(text))), label) for label, text in sources.items()
                      if label in options]
            best = max(scored, default=(0, "NONE"))
            pick = best[1] if best[0] >= 2 else "NONE"
            rest = (1.0 - 0.9) / max(1, len(options) - 1)
            return Choice(option=pick, probs={o: 0.9 if o == pick else rest for o in options})
        # Support: the share of the claim's content words that its cited sources contain.
        last = messages[-1]["content"]
        claim = re.search(r'"(.+)"', last, re.S)
        cited = re.findall(r"\bS(\d+)\b", last.split('"')[-1] if '"' in last else last)
        words = set(content_terms(claim.group(1))) if claim else set()
        found = set().union(*(set(content_terms(sources.get(n, ""))) for n in cited)) if cited else set()
        share = len(words & found) / len(words) if words else 0.0
        yes = options[0]
        return Choice(option=yes if share >= 0.6 else options[-1],
                      probs={yes: share, options[-1]: 1.0 - share})


def _words(text: str) -> Iterator[str]:
    for i, word in enumerate(text.split(" ")):
        yield word if i == 0 else " " + word


class QueueChatModel:
    """A chat model that replies with what a test enqueued, in order (like simonw/llm's MockModel).

    `enqueue("text")` queues replies for `complete`/`stream`; `enqueue_choice("S1", 0.8)` queues a
    constrained reply for `choose` (the option gets probability p, the rest share 1 - p). Every
    request is kept in `requests`. Running out of queued replies fails loudly. `rule`, when set,
    answers `choose` by content first (a test's stand-in for a model that reads the prompt)."""

    def __init__(self, model: str = "queue") -> None:
        self.model_id = f"fake:{model or 'queue'}"
        self.replies: deque[str] = deque()
        self.choices: deque[tuple[str, float]] = deque()
        self.requests: list[list[dict[str, str]]] = []  # complete/stream calls
        self.choice_requests: list[list[dict[str, str]]] = []  # choose calls (the checks)
        # Consulted before the queue: (messages, options) -> an option, or None to take the queue's next.
        self.rule: Callable[[list[dict[str, str]], Sequence[str]], str | None] | None = None

    def enqueue(self, *replies: str) -> "QueueChatModel":
        """Queue text replies, answered in order."""
        self.replies.extend(replies)
        return self

    def enqueue_choice(self, option: str, p: float = 1.0) -> "QueueChatModel":
        """Queue one constrained reply with the model's probability of it."""
        self.choices.append((option, p))
        return self

    def reset(self) -> None:
        """Drop queued replies and recorded requests."""
        self.replies.clear()
        self.choices.clear()
        self.rule = None
        self.requests.clear()
        self.choice_requests.clear()

    def _next(self, messages: list[dict[str, str]]) -> str:
        self.requests.append(messages)
        if not self.replies:
            raise AssertionError(f"QueueChatModel: no reply queued for: {messages[-1]['content'][:200]!r}")
        return self.replies.popleft()

    def complete(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float = 0.0,
                 stop: list[str] | None = None) -> Completion:
        """The next queued reply."""
        text = self._next(messages)
        return Completion(text=text, prompt_tokens=sum(len(m["content"].split()) for m in messages),
                          completion_tokens=len(text.split()))

    def stream(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float = 0.0,
               stop: list[str] | None = None) -> Iterator[str]:
        """The next queued reply, word by word."""
        yield from _words(self._next(messages))

    def choose(self, messages: list[dict[str, str]], options: Sequence[str]) -> Choice:
        """The next queued choice; it must be one of the options offered."""
        self.choice_requests.append(messages)
        ruled = self.rule(messages, options) if self.rule else None
        if ruled is not None:
            return Choice(option=ruled, probs={o: 1.0 if o == ruled else 0.0 for o in options})
        if not self.choices:
            raise AssertionError(f"QueueChatModel: no choice queued among {list(options)}")
        option, p = self.choices.popleft()
        if option not in options:
            raise AssertionError(f"QueueChatModel: queued choice {option!r} is not among {list(options)}")
        rest = (1.0 - p) / max(1, len(options) - 1)
        return Choice(option=option, probs={o: p if o == option else rest for o in options})
