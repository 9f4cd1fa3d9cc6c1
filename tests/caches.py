"""Per-process caches the tests reset so one test's models, retrievers or Chroma clients never leak into another."""

from __future__ import annotations

import assistant.indexing.store as store
from assistant.backends.cache import CACHE


def clear_process_caches() -> None:
    """Forget cached chat models, retrievers and Chroma clients."""
    CACHE.clear()
    store._CLIENTS.clear()
    store._HANDLES.clear()
    store._SERVER_MANIFESTS.clear()
    store._LOCAL_CACHE.clear()
