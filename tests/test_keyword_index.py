"""The bm25s keyword index: saved beside the store, in step with the manifest, crash-safe, and the
reason the query path never reads every chunk."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from assistant.indexing import build as indexing, keyword
from assistant.indexing.files import make_chunks
from assistant.indexing.build import IndexLock, build_index
from assistant.search.retrieval import Filters, get_retriever, search
from assistant.settings import Settings
from assistant.indexing.store import locate, manifest_version, open_collection, read_manifest
from assistant.text_utils import content_terms
from conftest import TEST_DATA

BBC = TEST_DATA / "bbc"


def _live_version(settings: Settings) -> str:
    return manifest_version(read_manifest(locate(settings))["files"])


def test_the_keyword_index_is_saved_for_the_manifest_version(corpus: Path, settings: Settings) -> None:
    build_index(corpus, settings=settings)
    root = locate(settings).root
    assert keyword.current_version(root) == _live_version(settings)
    loaded = keyword.load(root)
    assert loaded is not None and loaded.size == build_index(corpus, settings=settings).chunks


def test_an_unchanged_corpus_loads_the_keyword_index_instead_of_rebuilding(
        corpus: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    build_index(corpus, settings=settings)

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the keyword index was rebuilt for an unchanged corpus")

    monkeypatch.setattr(keyword, "build", refuse)
    build_index(corpus, settings=settings)
    get_retriever(settings)._state = None
    assert search("seafood import ban", settings, k=1)


def test_a_changed_file_is_searchable_by_its_new_words(corpus: Path, settings: Settings) -> None:
    build_index(corpus, settings=settings)
    assert not [p for p in search("zeppelin", settings, k=5) if "zeppelin" in p.text.lower()]
    target = corpus / "002_0c11952fb06d513a.txt"
    target.write_text(target.read_text(encoding="utf-8") + "\nA zeppelin flew over the harbour.\n", encoding="utf-8")
    build_index(corpus, settings=settings)
    retriever = get_retriever(settings)
    hits = retriever._current().keyword.search("zeppelin", 5, retriever._current().keyword.live_mask(
        retriever._current().valid, retriever._current().version))
    assert hits, "the new word is not in the keyword index"
    assert target.name in {p.file for p in search("zeppelin", settings, k=2)}


def test_the_query_path_never_reads_every_chunk(corpus: Path, settings: Settings,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    build_index(corpus, settings=settings)
    collection = open_collection(locate(settings), create=False)
    total = collection.count()
    original = type(collection).get
    sizes: list[int] = []

    def guarded(self: Any, ids: Any = None, *args: Any, **kwargs: Any) -> Any:
        if ids is None:
            raise AssertionError("collection.get() without ids reads every chunk")
        sizes.append(len(ids))
        return original(self, ids, *args, **kwargs)

    monkeypatch.setattr(type(collection), "get", guarded)
    retriever = get_retriever(settings)
    retriever._state = None  # as a new process would start
    for question in ("seafood import ban", "Which minister met Wang Yi?", "panda"):
        assert retriever.search(question, k=4)
    assert retriever.idf(content_terms("seafood minister zeppelin"))["zeppelin"] > 0
    assert all(n <= 2 * 4 for n in sizes) and max(sizes, default=0) < total


def test_a_crash_while_building_the_keyword_index_keeps_the_previous_one(
        corpus: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    build_index(corpus, settings=settings)
    root = locate(settings).root
    before = keyword.current_version(root)
    (corpus / "extra.txt").write_text("The harbour authority opened a new ferry terminal in Osaka.\n", encoding="utf-8")

    def crash(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("bm25s.BM25.save", crash)
    with pytest.raises(OSError):
        build_index(corpus, settings=settings)
    assert keyword.current_version(root) == before
    assert not [p for p in (root / "keyword").iterdir() if p.name.startswith(".build-")]
    monkeypatch.undo()
    # The manifest moved on (the file's chunks are committed): a reader rebuilds the keyword index.
    get_retriever(settings)._state = None
    assert search("ferry terminal Osaka harbour", settings, k=1)[0].file == "extra.txt"
    assert keyword.current_version(root) == _live_version(settings)


def test_mid_run_a_reader_keeps_the_last_keyword_index_and_masks_changed_files(
        corpus: Path, settings: Settings) -> None:
    build_index(corpus, settings=settings)
    root = locate(settings).root
    old = keyword.current_version(root)
    target = corpus / "003_f17476cd56e4653e.txt"
    target.write_text("A short replacement text about a football match in Leeds.\n", encoding="utf-8")
    # Commit the new version of the file the way a run does, but stop before its keyword build.
    with IndexLock(root):
        loc = locate(settings)
        manifest = read_manifest(loc)
        files = dict(manifest["files"])
        digest = indexing.file_digest(target, None)
        chunks = make_chunks(target.name, target.read_text(encoding="utf-8"), digest, "", "", settings)
        pending = [indexing._Pending(target.name, digest, chunks, True)]
        from assistant.backends import get_embedder

        indexing._commit(open_collection(loc, create=False), get_embedder(settings), pending, files, loc,
                         {k: v for k, v in manifest.items() if k not in ("files", "version")}, settings)
        retriever = get_retriever(settings)
        retriever._state = None
        state = retriever._current()
        assert state.keyword.version == old  # not rebuilt while the run holds the lock
        hits = search("seafood import ban", settings, k=4)
        assert all(p.file != target.name or "football" in p.text for p in hits)
        assert search("football match Leeds", settings, k=1)[0].file == target.name  # dense side has it
    assert keyword.current_version(root) == old
    build_index(corpus, settings=settings)
    assert keyword.current_version(root) == _live_version(settings)


def test_keyword_filters_apply_to_files_and_dates(corpus: Path, settings: Settings) -> None:
    build_index(corpus, settings=settings)
    only = "001_e2d5a160401ece19.txt"
    assert {p.file for p in search("China Japan minister", settings, k=6, filters=Filters(files=(only,)))} == {only}
    dated = search("China Japan minister", settings, k=6, filters=Filters(date_from="2024-01-01"))
    assert dated and all(p.date >= "2024" for p in dated)


def test_keyword_search_on_a_folder_without_metadata(tmp_path: Path, index_dir: Path) -> None:
    folder = tmp_path / "bbc"
    shutil.copytree(BBC, folder)
    settings = Settings.from_env(environ={}, corpus_dir=str(folder), index_dir=str(index_dir), embedder="fake:hash")
    build_index(folder, settings=settings)
    state = get_retriever(settings)._current()
    some_file = sorted(state.valid)[0]
    text = (folder / some_file).read_text(encoding="utf-8", errors="replace")
    words = " ".join(text.split()[5:12])
    top = state.keyword.search(words, 3, state.keyword.live_mask(state.valid, state.version))
    assert top and top[0][1] > 0


def test_stems_come_from_snowball() -> None:
    assert content_terms("banned bans banning") == content_terms("ban ban ban")
    assert content_terms("negotiations negotiated") == ["negoti", "negoti"]


def test_a_local_store_has_no_sparse_index_so_bm25s_ranks_keywords(corpus: Path, settings: Settings) -> None:
    from assistant.indexing.store import sparse_supported

    build_index(corpus, settings=settings)
    assert sparse_supported(locate(settings)) is False
    assert get_retriever(settings)._server_hybrid() is False


def test_where_the_server_ranks_bm25_itself_its_search_api_is_used(
        corpus: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch,
        request: pytest.FixtureRequest) -> None:
    # No distributed Chroma here: a stand-in collection records the plan and answers like one.
    import assistant.indexing.store as store

    build_index(corpus, settings=settings)
    retriever = get_retriever(settings)
    state = retriever._current()
    rel, digest = sorted(state.valid.items())[0]
    plans: list[Any] = []

    class Rows(dict):
        def rows(self) -> list[list[dict[str, Any]]]:
            return [[{"id": "x1", "document": "A ferry route reopened.", "score": -0.03,
                      "metadata": {"file": rel, "file_hash": digest, "start": 0, "end": 23}},
                     {"id": "x2", "document": "stale", "score": -0.02,
                      "metadata": {"file": rel, "file_hash": "old", "start": 0, "end": 5}}]]

    class Remote:
        schema = type("S", (), {"keys": {store.SPARSE_KEY: object()}})()

        def search(self, plan: Any) -> Rows:
            plans.append(plan)
            return Rows()

    manifest = read_manifest(locate(settings))
    monkeypatch.setattr("assistant.search.retrieval.read_manifest", lambda loc: manifest)
    monkeypatch.setattr(retriever.loc, "chroma_url", "http://chroma.example:8000")
    from assistant.backends.cache import CACHE

    CACHE.put("sparse", ("http://chroma.example:8000",), True)  # as if that server had said yes
    request.addfinalizer(lambda: CACHE.pop("sparse", ("http://chroma.example:8000",)))
    monkeypatch.setattr("assistant.search.retrieval.open_collection", lambda loc, create: Remote())
    hits = retriever.search("ferry route", k=3, filters=Filters(files=(rel,)))
    assert [h.chunk_id for h in hits] == ["x1"]  # the stale file version is dropped
    plan = plans[0].to_dict()
    assert plan["filter"] == {"file": {"$in": [rel]}}
    rank = str(plan["rank"])  # reciprocal-rank fusion of a dense and a sparse (BM25) kNN
    assert rank.count("$knn") == 2 and f"'key': '{store.SPARSE_KEY}'" in rank and "'query': 'ferry route'" in rank


def test_a_changed_file_tokenises_only_its_own_chunks(corpus: Path, settings: Settings,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    build_index(corpus, settings=settings)
    target = corpus / "004_749f0bb3dcd254b9.txt"
    target.write_text(target.read_text(encoding="utf-8") + "\nA zeppelin flew over the harbour.\n", encoding="utf-8")
    texts: list[str] = []
    real = keyword.content_terms
    monkeypatch.setattr(keyword, "content_terms", lambda text: texts.append(text) or real(text))
    report = build_index(corpus, settings=settings)
    own = len(read_manifest(locate(settings))["files"][target.name]["ids"])
    assert report.updated == 1 and len(texts) == own < report.chunks
    assert target.name in {p.file for p in search("zeppelin", settings, k=2)}


def test_one_jaccard_for_every_caller_and_empty_texts_are_not_alike() -> None:
    from assistant.text_utils import jaccard

    assert jaccard({"a", "b"}, {"b", "c"}) == 1 / 3
    assert jaccard(set(), set()) == 0.0 and jaccard({"a"}, set()) == 0.0
