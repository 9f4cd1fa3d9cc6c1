"""Read path: hybrid retrieval (dense vectors from Chroma fused with BM25 by reciprocal rank)."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, replace
from typing import Any, Iterable, Sequence

from ..backends import get_embedder
from ..backends.cache import CACHE
from ..dates import date_to_epoch
from ..errors import IndexNotBuiltError, InputError, StoreError
from ..settings import Settings
from ..indexing.store import IndexLocation, locate, manifest_version, open_collection, read_manifest, store_error
from ..text_utils import content_terms, jaccard
from ..types import Passage


@dataclass(frozen=True)
class Filters:
    """Optional restrictions: filenames and a publication-date range (ISO dates, inclusive)."""

    files: tuple[str, ...] = ()
    date_from: str = ""
    date_to: str = ""

    def __post_init__(self) -> None:

        for name, value in (("since", self.date_from), ("until", self.date_to)):
            # A date that does not parse would silently filter nothing (or everything).
            if value and not date_to_epoch(value):
                raise InputError(f"--{name} {value!r} is not a date: use YYYY-MM-DD, YYYY-MM or YYYY")

    def where(self) -> dict[str, Any] | None:
        """The Chroma `where` clause for these filters."""

        clauses: list[dict[str, Any]] = []
        if self.files:
            clauses.append({"file": {"$in": list(self.files)}})
        if self.date_from:
            clauses.append({"date_epoch": {"$gte": date_to_epoch(self.date_from)}})
        if self.date_to:
            clauses.append({"date_epoch": {"$lte": _period_end(self.date_to)}})
            clauses.append({"date_epoch": {"$gt": 0}})
        if not clauses:
            return None
        return clauses[0] if len(clauses) == 1 else {"$and": clauses}


# An editor's note that a story was revised: "Correction:", "Update:", "Updated:", "Clarification:".
_REVISED = re.compile(r"^\W*(correction|update|updated|clarification)\b", re.I | re.M)


def _supersedes(new: Passage, old: Passage) -> bool:
    """True when `new` is a later version of the same text: dated later, or marked as revised."""

    a, b = date_to_epoch(new.date), date_to_epoch(old.date)
    if a and b and a != b:
        return a > b
    return bool(_REVISED.search(new.text)) and not _REVISED.search(old.text)


def _period_end(date: str) -> int:
    """Last second of the day, month or year an ISO date names (inclusive end of a range)."""

    day = date[:10]
    if len(day) == 4 and day.isdigit():
        following = f"{int(day) + 1:04d}-01-01"
    elif len(day) == 7:
        year, month = int(day[:4]), int(day[5:7])
        following = f"{year + month // 12:04d}-{month % 12 + 1:02d}-01"
    else:
        return date_to_epoch(date) + 86399
    return date_to_epoch(following) - 1


@dataclass
class _State:
    version: str
    valid: dict[str, str]
    keyword: Any  # keyword.KeywordIndex | None
    chunks: int
    groups: dict[str, list[str]]  # copy-group representative -> its files
    group_of: dict[str, str]  # file in a copy group -> representative


class Retriever:
    """Hybrid retriever over one index: Chroma's dense query fused with the saved bm25s keyword index.

    Nothing here reads every chunk: the manifest says which file versions are live, the keyword
    index is memory-mapped from disk, and only the passages returned are fetched from the store."""

    def __init__(self, settings: Settings, *, embedder: Any = None) -> None:
        """A retriever over the index these settings locate; queries are embedded with the embedder
        the settings name, or the one handed in (it must be the one the index was built with)."""
        self.settings = settings
        self.loc: IndexLocation = locate(settings)
        self._embedder: Any = embedder
        self._state: _State | None = None
        self._lock = threading.Lock()
        self._articles: dict[tuple[str, str | None], Any] = {}

    def _manifest(self) -> dict[str, Any]:
        manifest = read_manifest(self.loc)
        if not manifest or not manifest.get("files"):
            raise IndexNotBuiltError(
                f"index not built for these settings (looked in {self.loc.root}): run `assistant index articles/`")
        return manifest

    def _current(self) -> _State:
        manifest = self._manifest()
        version = manifest.get("version") or manifest_version(manifest["files"])
        with self._lock:
            if self._state is None or self._state.version != version:
                files = manifest["files"]
                valid = {rel: entry["hash"] for rel, entry in files.items()}
                kw = self._keyword_index(version, files)
                groups = kw.copy_groups() if kw is not None else {}
                self._state = _State(version, valid, kw, sum(len(e.get("ids", [])) for e in files.values()),
                                     groups, {f: rep for rep, members in groups.items() for f in members})
            return self._state

    def _keyword_index(self, version: str, files: dict[str, Any]) -> Any:
        from ..indexing import keyword
        from ..indexing.build import ensure_keyword_index

        found = keyword.load(self.loc.root, version)
        if found is not None:
            return found
        if self._indexing_now():
            # Mid-run the manifest moves on every commit: keep the last whole keyword index (its
            # chunks of changed files are masked out) and let the run build the new one at its end.
            return keyword.load(self.loc.root)
        return ensure_keyword_index(self.loc, files, self.settings)

    def _indexing_now(self) -> bool:
        from ..indexing.locks import lock_held

        if self.loc.chroma_url:
            from ..indexing.store import server_manifest

            try:
                return server_manifest(self.loc).lease_held()
            except StoreError:
                return False
        return lock_held(self.loc.root)

    def embed_query(self, text: str) -> list[float]:
        """Embed a query with the index's embedder."""
        return self.embed_texts([text])[0]

    def embed_texts(self, texts: list[str] | tuple[str, ...]) -> list[list[float]]:
        """Embed texts with the index's embedder (sentences for evidence selection and support checks)."""
        if self._embedder is None:
            self._embedder = get_embedder(self.settings)
        return self._embedder.embed(list(texts))

    def idf(self, terms: Iterable[str]) -> dict[str, float]:
        """Inverse document frequency of stemmed terms over the chunks (from the keyword index);
        a term no chunk holds gets the highest IDF there is."""
        state = self._current()
        terms = list(terms)
        if state.keyword is None:
            return {t: 1.0 for t in terms}
        known = state.keyword.idf(terms)
        top = state.keyword.max_idf()
        return {t: known.get(t, top) for t in terms}

    def search(self, query: str, k: int | None = None, filters: Filters | None = None) -> list[Passage]:
        """Top-k passages by reciprocal-rank fusion of dense and BM25 rankings."""

        k = k or self.settings.retrieval.top_k
        filters = filters or Filters()
        state = self._current()
        if not state.chunks:
            return []
        if filters.files:
            # A feed file stands for its items ("feed.xml" -> "feed.xml#<item>").
            wanted = set(filters.files)
            items = tuple(name for name in state.valid if name.partition("#")[0] in wanted and "#" in name)
            if items:
                filters = replace(filters, files=tuple(filters.files) + items)
        if self._server_hybrid():
            return self._chroma_search(query, k, filters, state.valid)
        dense, found = self._dense(query, filters, state.valid)
        keyword_ids: list[str] = []
        if state.keyword is not None:
            live = state.keyword.live_mask(state.valid, state.version)
            hits = state.keyword.search(query, self.settings.retrieval.bm25_k, live, files=filters.files,
                                        epoch_from=date_to_epoch(filters.date_from) if filters.date_from else 0,
                                        epoch_to=_period_end(filters.date_to) if filters.date_to else 0)
            keyword_ids = [cid for cid, _ in hits]
        fused: dict[str, float] = {}
        for ranking in (dense, keyword_ids):
            for rank, cid in enumerate(ranking):
                fused[cid] = fused.get(cid, 0.0) + 1.0 / (self.settings.retrieval.rrf_k + rank + 1)
        # Every fused candidate (at most dense_k + bm25_k) is kept, so that after copies give up
        # their slots there are still k passages to return.
        best = sorted(fused, key=lambda cid: (-fused[cid], cid))
        if not (self.settings.retrieval.group_copies and state.group_of):
            best = best[: k * 2]
        missing = [cid for cid in best if cid not in found]
        if missing:
            found.update(self._fetch(missing, state.valid))
        out = [self._passage(cid, *found[cid], fused[cid]) for cid in best if cid in found]
        return self._one_slot_per_copy(out, state)[:k]

    def _one_slot_per_copy(self, passages: list[Passage], state: _State) -> list[Passage]:
        """Drop a passage when a better-ranked one is the same text in another file of its copy group;
        every kept passage of a group names the group's other files."""
        if not state.group_of:
            return passages
        kept: list[Passage] = []
        terms: list[set[str]] = []
        same_min = self.settings.retrieval.copy_same_text_min
        for p in passages:
            rep = state.group_of.get(p.file)
            mine = set(content_terms(p.text))
            if rep is not None:
                p = replace(p, copies=tuple(f for f in state.groups[rep] if f != p.file))
            twin = next((n for n, (q, seen) in enumerate(zip(kept, terms)) if rep is not None
                         and self.settings.retrieval.group_copies and state.group_of.get(q.file) == rep
                         and q.file != p.file and jaccard(mine, seen) >= same_min), None)
            if twin is None:
                kept.append(p)
                terms.append(mine)
            elif _supersedes(p, kept[twin]):
                # An updated version (newer, or marked as corrected) takes its copy's slot and rank.
                kept[twin] = replace(p, score=kept[twin].score)
                terms[twin] = mine
        return kept

    def _server_hybrid(self) -> bool:
        """True when the Chroma server ranks BM25 itself and the collection carries its sparse index."""
        from ..indexing.store import SPARSE_KEY, sparse_supported

        if not self.loc.chroma_url or not sparse_supported(self.loc):
            return False
        schema = getattr(open_collection(self.loc, create=False), "schema", None)
        return SPARSE_KEY in (getattr(schema, "keys", None) or {})

    def _chroma_search(self, query: str, k: int, filters: Filters, valid: dict[str, str]) -> list[Passage]:
        """Chroma's own hybrid ranking (distributed Chroma): dense and BM25 fused by RRF on the server."""
        from chromadb import K, Knn, Rrf, Search

        from ..indexing.store import SPARSE_KEY

        rank = Rrf([Knn(query=self.embed_query(query), return_rank=True, limit=self.settings.retrieval.dense_k * 2),
                    Knn(query=query, key=SPARSE_KEY, return_rank=True, limit=self.settings.retrieval.bm25_k * 2)],
                   k=self.settings.retrieval.rrf_k)
        plan = Search().rank(rank).limit(k * 2).select(K.DOCUMENT, K.METADATA, K.SCORE)
        where = filters.where()
        if where:
            plan = plan.where(where)
        try:
            rows = open_collection(self.loc, create=False).search(plan).rows()[0]
        except Exception as exc:
            raise store_error(exc, self.loc) from None
        out = [self._passage(r["id"], r["document"], r["metadata"], -float(r.get("score") or 0.0)) for r in rows
               if valid.get(r["metadata"].get("file")) == r["metadata"].get("file_hash")]
        return out[:k]

    def _dense(self, query: str, filters: Filters, valid: dict[str, str]
               ) -> tuple[list[str], dict[str, tuple[str, dict[str, Any]]]]:
        vector = self.embed_query(query)
        collection = open_collection(self.loc, create=False)
        try:
            result = collection.query(query_embeddings=[vector], n_results=self.settings.retrieval.dense_k * 2,
                                      where=filters.where(), include=["metadatas", "documents"])
        except Exception as exc:
            raise store_error(exc, self.loc) from None
        ranked: list[str] = []
        found: dict[str, tuple[str, dict[str, Any]]] = {}
        for cid, doc, meta in zip(result["ids"][0], result["documents"][0], result["metadatas"][0]):
            if valid.get(meta.get("file")) == meta.get("file_hash") and len(ranked) < self.settings.retrieval.dense_k:
                ranked.append(cid)
                found[cid] = (doc, meta)
        return ranked, found

    def _fetch(self, ids: list[str], valid: dict[str, str]) -> dict[str, tuple[str, dict[str, Any]]]:
        collection = open_collection(self.loc, create=False)
        try:
            got = collection.get(ids=ids, include=["documents", "metadatas"])
        except Exception as exc:
            raise store_error(exc, self.loc) from None
        return {cid: (doc, meta) for cid, doc, meta in zip(got["ids"], got["documents"], got["metadatas"])
                if valid.get(meta.get("file")) == meta.get("file_hash")}

    @staticmethod
    def _passage(cid: str, text: str, m: dict[str, Any], score: float) -> Passage:
        return Passage(file=m["file"], start=int(m["start"]), end=int(m["end"]), text=text, score=score,
                       chunk_id=cid, title=m.get("title", ""), date=m.get("date", ""))

    def newest_date(self) -> str:
        """Publication date of the newest dated chunk (from the keyword index), or "" when none is dated."""
        from datetime import datetime, timezone

        kw = self._current().keyword
        if kw is None or not kw.size:
            return ""
        newest = int(kw.epochs.max())
        return datetime.fromtimestamp(newest, tz=timezone.utc).strftime("%Y-%m-%d") if newest > 0 else ""

    def articles(self, files: Sequence[str]) -> dict[str, Any]:
        """The stored text of these files (`evidence.Article`), read by chunk id in one store call
        and kept for the life of the index version."""
        from .evidence import Article

        state = self._current()
        wanted = [f for f in dict.fromkeys(files) if (f, state.valid.get(f)) not in self._articles]
        if wanted:
            entries = self._manifest()["files"]
            ids = [i for f in wanted for i in entries.get(f, {}).get("ids", [])]
            found = self._fetch(ids, state.valid) if ids else {}
            by_file: dict[str, list[Passage]] = {}
            for cid, (text, meta) in found.items():
                by_file.setdefault(meta["file"], []).append(self._passage(cid, text, meta, 0.0))
            if len(self._articles) > 4096:
                self._articles.clear()
            for f in wanted:
                if by_file.get(f):
                    self._articles[(f, state.valid.get(f))] = Article.from_chunks(by_file[f])
        return {f: self._articles[(f, state.valid.get(f))] for f in files
                if (f, state.valid.get(f)) in self._articles}

    def all_chunks(self) -> list[Passage]:
        """Every live chunk of the index, read from the store in batches (evaluation only)."""
        from ..indexing.build import manifest_ids, stored_chunks

        manifest = self._manifest()
        collection = open_collection(self.loc, create=False)
        return [self._passage(cid, text, meta, 0.0)
                for cid, text, meta in stored_chunks(collection, manifest_ids(manifest["files"]), self.loc)]


def get_retriever(settings: Settings) -> Retriever:
    """One retriever per index configuration in this process."""
    key = (settings.index, settings.retrieval)  # the groups a retriever reads
    return CACHE.get("retriever", key, lambda: Retriever(settings))


def search(query: str, settings: Settings | None = None, k: int | None = None,
           filters: Filters | None = None) -> list[Passage]:
    """Retrieval only (no language model): the top passages for a query."""
    settings = settings or Settings.from_env()
    try:
        return get_retriever(settings).search(query, k=k, filters=filters)
    except StoreError as exc:
        if "does not exist" in str(exc) or "NotFound" in str(exc):
            raise IndexNotBuiltError(
                "index not built for these settings: run `assistant index articles/`") from None
        raise
