"""Cold start: a large index's store opens on a background thread while the manifest is parsed."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.indexing import store
from assistant.indexing.build import build_index
from assistant.search.retrieval import search
from assistant.settings import Settings

SEAFOOD_FILES = {"003_f17476cd56e4653e.txt", "004_749f0bb3dcd254b9.txt"}


@pytest.fixture
def cold(monkeypatch: pytest.MonkeyPatch, fresh_caches: None) -> pytest.MonkeyPatch:
    """Every manifest counts as large; no client, handle or prewarm is left from before."""
    monkeypatch.setattr(store, "PREWARM_MANIFEST_BYTES", 0)
    monkeypatch.setattr(store, "_PREWARMED", set())
    return monkeypatch


def _drop_open_stores() -> None:
    store._CLIENTS.clear()
    store.forget_handles()
    store._LOCAL_CACHE.clear()


def test_reading_a_large_manifest_opens_the_store_on_another_thread(
        corpus: Path, settings: Settings, cold: pytest.MonkeyPatch) -> None:
    build_index(corpus, settings=settings)
    _drop_open_stores()
    store._PREWARMED.clear()
    started: list[store.threading.Thread] = []
    real = store.prewarm
    cold.setattr(store, "prewarm", lambda loc: started.append(real(loc)) or started[-1])
    loc = store.locate(settings)
    assert store.read_manifest(loc)["files"]
    assert len(started) == 1 and started[0] is not None
    started[0].join(timeout=60)
    key = (str(loc.chroma_path.resolve()), loc.collection)
    assert key in store._HANDLES  # opened (and queried) before any search asked
    store._LOCAL_CACHE.clear()
    store.read_manifest(loc)
    assert len(started) == 2 and started[1] is None  # once per process
    hits = search("seafood import ban", settings, k=3)
    assert hits[0].file in SEAFOOD_FILES


def test_a_prewarm_that_fails_leaves_the_error_to_the_search(corpus: Path, settings: Settings,
                                                            cold: pytest.MonkeyPatch) -> None:
    build_index(corpus, settings=settings)
    _drop_open_stores()
    loc = store.locate(settings)

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("store unavailable")

    cold.setattr(store, "_open_collection", refuse)
    thread = store.prewarm(loc)
    assert thread is not None
    thread.join(timeout=60)  # no exception escapes the thread
    with pytest.raises(RuntimeError, match="store unavailable"):
        store.open_collection(loc, create=False)
    cold.undo()
    _drop_open_stores()
    assert search("seafood import ban", settings, k=3)[0].file in SEAFOOD_FILES
