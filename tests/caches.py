"""Per-process caches the tests reset so one test's models, retrievers or Chroma clients never leak into another."""

from __future__ import annotations

from assistant.backends.cache import CACHE


def clear_process_caches() -> None:
    """Forget cached chat models, retrievers and Chroma clients."""
    CACHE.clear()
