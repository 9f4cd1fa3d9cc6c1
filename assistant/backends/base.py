"""Backend protocols: what every embedder and chat model offers."""

from __future__ import annotations

from typing import Iterator, Protocol, Sequence

from ..types import Choice, Completion

Message = dict[str, str]


class Embedder(Protocol):
    """Turns texts into unit-length vectors."""

    model_id: str

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed a batch of texts (documents or queries)."""
        ...


class ChatModel(Protocol):
    """A chat model speaking OpenAI-style messages."""

    model_id: str

    def complete(self, messages: list[Message], *, max_tokens: int, temperature: float = 0.0,
                 stop: list[str] | None = None) -> Completion:
        """Return the whole reply with token usage."""
        ...

    def stream(self, messages: list[Message], *, max_tokens: int, temperature: float = 0.0,
               stop: list[str] | None = None) -> Iterator[str]:
        """Yield the reply as text deltas while it is generated."""
        ...

    def choose(self, messages: list[Message], options: Sequence[str]) -> Choice:
        """Reply with exactly one of `options`; return it with the model's probability of each."""
        ...
