"""Per-process caches the tests reset so one test's models, retrievers or Chroma clients never leak into another."""

from __future__ import annotations

import assistant.backends as backends
import assistant.search.retrieval as retrieval
import assistant.indexing.store as store


def clear_process_caches() -> None:
    """Forget cached chat models, retrievers and Chroma clients."""
    backends._LLM_CACHE.clear()
    retrieval._RETRIEVERS.clear()
    store._CLIENTS.clear()
    store._HANDLES.clear()
    store._SERVER_MANIFESTS.clear()
    store._LOCAL_CACHE.clear()
