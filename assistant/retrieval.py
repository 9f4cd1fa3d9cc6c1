"""Read path: hybrid retrieval (dense vectors from Chroma fused with BM25 by reciprocal rank)."""

from __future__ import annotations

import math
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

from .backends import get_embedder
from .errors import IndexNotBuiltError, InputError, StoreError
from .settings import Settings
from .store import IndexLocation, locate, open_collection, read_manifest, store_error
from .text_utils import content_terms
from .types import Passage


@dataclass(frozen=True)
class Filters:
    """Optional restrictions: filenames and a publication-date range (ISO dates, inclusive)."""

    files: tuple[str, ...] = ()
    date_from: str = ""
    date_to: str = ""

    def __post_init__(self) -> None:
        from .loaders import date_to_epoch

        for name, value in (("since", self.date_from), ("until", self.date_to)):
            # A date that does not parse would silently filter nothing (or everything).
            if value and not date_to_epoch(value):
                raise InputError(f"--{name} {value!r} is not a date: use YYYY-MM-DD, YYYY-MM or YYYY")

    def where(self) -> dict[str, Any] | None:
        """The Chroma `where` clause for these filters."""
        from .loaders import date_to_epoch

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

    def accepts(self, meta: dict[str, Any]) -> bool:
        """Apply the same filters in Python (for the keyword side)."""
        from .loaders import date_to_epoch

        if self.files and meta.get("file") not in self.files:
            return False
        epoch = int(meta.get("date_epoch") or 0)
        if self.date_from and epoch < date_to_epoch(self.date_from):
            return False
        if self.date_to and not (0 < epoch <= _period_end(self.date_to)):
            return False
        return True


def _period_end(date: str) -> int:
    """Last second of the day, month or year an ISO date names (inclusive end of a range)."""
    from .loaders import date_to_epoch

    day = date[:10]
    if len(day) == 4 and day.isdigit():
        following = f"{int(day) + 1:04d}-01-01"
    elif len(day) == 7:
        year, month = int(day[:4]), int(day[5:7])
        following = f"{year + month // 12:04d}-{month % 12 + 1:02d}-01"
    else:
        return date_to_epoch(date) + 86399
    return date_to_epoch(following) - 1


class BM25:
    """Okapi BM25 over stemmed content words."""

    def __init__(self, docs: list[str], k1: float = 1.5, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.terms = [Counter(content_terms(d)) for d in docs]
        self.lengths = [sum(t.values()) for t in self.terms]
        self.avg = (sum(self.lengths) / len(self.lengths)) if self.lengths else 0.0
        df: Counter[str] = Counter()
        for t in self.terms:
            df.update(t.keys())
        n = len(docs)
        self.idf = {term: math.log(1 + (n - f + 0.5) / (f + 0.5)) for term, f in df.items()}

    def scores(self, query: str) -> list[float]:
        """BM25 score of every document for the query."""
        q = content_terms(query)
        out = []
        for tf, length in zip(self.terms, self.lengths):
            score = 0.0
            for term in q:
                f = tf.get(term)
                if f:
                    norm = self.k1 * (1 - self.b + self.b * length / (self.avg or 1))
                    score += self.idf.get(term, 0.0) * f * (self.k1 + 1) / (f + norm)
            out.append(score)
        return out


@dataclass
class _Snapshot:
    version: str
    ids: list[str]
    texts: list[str]
    metas: list[dict[str, Any]]
    bm25: BM25


class Retriever:
    """Hybrid retriever over one index; keeps the keyword index in memory between questions."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loc: IndexLocation = locate(settings)
        self._embedder: Any = None
        self._snapshot: _Snapshot | None = None
        self._lock = threading.Lock()

    def _manifest(self) -> dict[str, Any]:
        manifest = read_manifest(self.loc)
        if not manifest or not manifest.get("files"):
            raise IndexNotBuiltError(
                f"index not built for these settings (looked in {self.loc.root}): run `assistant index articles/`")
        return manifest

    def _current(self) -> tuple[_Snapshot, dict[str, str]]:
        manifest = self._manifest()
        valid = {rel: entry["hash"] for rel, entry in manifest["files"].items()}
        version = str(sorted(valid.items()))
        with self._lock:
            if self._snapshot is None or self._snapshot.version != version:
                collection = open_collection(self.loc, create=False)
                try:
                    got = collection.get(include=["documents", "metadatas"])
                except Exception as exc:
                    raise store_error(exc, self.loc) from None
                rows = [(i, d, m) for i, d, m in zip(got["ids"], got["documents"], got["metadatas"])
                        if valid.get(m.get("file")) == m.get("file_hash")]
                self._snapshot = _Snapshot(version, [r[0] for r in rows], [r[1] for r in rows],
                                           [r[2] for r in rows], BM25([r[1] for r in rows]))
            return self._snapshot, valid

    def embed_query(self, text: str) -> list[float]:
        """Embed a query with the index's embedder."""
        return self.embed_texts([text])[0]

    def embed_texts(self, texts: list[str] | tuple[str, ...]) -> list[list[float]]:
        """Embed texts with the index's embedder (sentences for evidence selection and support checks)."""
        if self._embedder is None:
            self._embedder = get_embedder(self.settings)
        return self._embedder.embed(list(texts))

    def idf(self) -> dict[str, float]:
        """Inverse document frequency of each stemmed term over the live chunks."""
        snap, _ = self._current()
        return snap.bm25.idf

    def search(self, query: str, k: int | None = None, filters: Filters | None = None) -> list[Passage]:
        """Top-k passages by reciprocal-rank fusion of dense and BM25 rankings."""
        k = k or self.settings.top_k
        filters = filters or Filters()
        snap, valid = self._current()
        if not snap.ids:
            return []
        position = {cid: n for n, cid in enumerate(snap.ids)}
        dense = self._dense(query, filters, valid)
        keyword_scores = snap.bm25.scores(query)
        keyword = sorted((n for n in range(len(snap.ids))
                          if keyword_scores[n] > 0 and filters.accepts(snap.metas[n])),
                         key=lambda n: -keyword_scores[n])[: self.settings.bm25_k]
        fused: dict[int, float] = {}
        for rank, cid in enumerate(dense):
            if cid in position:
                fused[position[cid]] = fused.get(position[cid], 0.0) + 1.0 / (self.settings.rrf_k + rank + 1)
        for rank, n in enumerate(keyword):
            fused[n] = fused.get(n, 0.0) + 1.0 / (self.settings.rrf_k + rank + 1)
        best = sorted(fused, key=lambda n: (-fused[n], snap.ids[n]))[:k]
        return [self._passage(snap, n, fused[n]) for n in best]

    def _dense(self, query: str, filters: Filters, valid: dict[str, str]) -> list[str]:
        vector = self.embed_query(query)
        collection = open_collection(self.loc, create=False)
        try:
            result = collection.query(query_embeddings=[vector], n_results=self.settings.dense_k * 2,
                                      where=filters.where(), include=["metadatas"])
        except Exception as exc:
            raise store_error(exc, self.loc) from None
        ids, metas = result["ids"][0], result["metadatas"][0]
        return [i for i, m in zip(ids, metas) if valid.get(m.get("file")) == m.get("file_hash")][: self.settings.dense_k]

    @staticmethod
    def _passage(snap: _Snapshot, n: int, score: float) -> Passage:
        m = snap.metas[n]
        return Passage(file=m["file"], start=int(m["start"]), end=int(m["end"]), text=snap.texts[n],
                       score=score, chunk_id=snap.ids[n], title=m.get("title", ""), date=m.get("date", ""))

    def all_chunks(self) -> list[Passage]:
        """Every live chunk of the index (for sentence-level selection and evaluation)."""
        snap, _ = self._current()
        return [self._passage(snap, n, 0.0) for n in range(len(snap.ids))]


_RETRIEVERS: dict[tuple, Retriever] = {}
_RETRIEVERS_LOCK = threading.Lock()


def get_retriever(settings: Settings) -> Retriever:
    """One retriever per index configuration in this process."""
    key = (settings.index_dir, settings.chroma_url, settings.collection, settings.embedder,
           settings.chunk_size, settings.chunk_overlap, settings.dense_k, settings.bm25_k, settings.rrf_k)
    with _RETRIEVERS_LOCK:
        if key not in _RETRIEVERS:
            _RETRIEVERS[key] = Retriever(settings)
        return _RETRIEVERS[key]


def search(query: str, settings: Settings | None = None, k: int | None = None,
           filters: Filters | None = None) -> list[Passage]:
    """Retrieval only (no language model): the top passages for a query."""
    settings = settings or Settings.from_env()
    try:
        return get_retriever(settings).search(query, k=k, filters=filters)
    except StoreError as exc:
        if "does not exist" in str(exc) or "NotFound" in str(exc):
            raise IndexNotBuiltError(
                f"index not built for these settings: run `assistant index articles/`") from None
        raise
