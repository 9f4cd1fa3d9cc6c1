"""One explicit, process-wide cache of what is slow to build: chat models, retrievers (with their
embedder and keyword index) and Chroma handles. Each entry is keyed by its kind and the settings
that build it, so a changed setting builds a new one and never reuses a stale one.

The core does not need it: `Assistant(settings, llm=..., retriever=...)` takes its models as
arguments. The registry (`get_llm`, `get_retriever`) and the store fill it, and `clear()` empties it.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, TypeVar

T = TypeVar("T")


class Cache:
    """Built objects by (kind, settings...) key; thread-safe, one build per key."""

    def __init__(self) -> None:
        self._items: dict[tuple[Any, ...], Any] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, kind: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(kind, threading.Lock())

    def get(self, kind: str, key: tuple[Any, ...], build: Callable[[], T]) -> T:
        """The cached object for this key, built (once, while other threads of the kind wait) if missing."""
        full = (kind, *key)
        found = self._items.get(full)
        if found is not None:
            return found  # type: ignore[no-any-return]
        with self._lock(kind):
            if full not in self._items:
                self._items[full] = build()
            return self._items[full]  # type: ignore[no-any-return]

    def peek(self, kind: str, key: tuple[Any, ...]) -> Any:
        """The cached object, or None (nothing is built)."""
        return self._items.get((kind, *key))

    def put(self, kind: str, key: tuple[Any, ...], value: Any) -> None:
        self._items[(kind, *key)] = value

    def pop(self, kind: str, key: tuple[Any, ...]) -> Any:
        return self._items.pop((kind, *key), None)

    def clear(self, kind: str | None = None, where: Callable[[tuple[Any, ...]], bool] | None = None) -> None:
        """Forget every entry (of one kind; whose key satisfies `where`)."""
        for full in list(self._items):
            if (kind is None or full[0] == kind) and (where is None or where(full[1:])):
                self._items.pop(full, None)

    def keys(self, kind: str) -> list[tuple[Any, ...]]:
        return [full[1:] for full in list(self._items) if full[0] == kind]


CACHE = Cache()
