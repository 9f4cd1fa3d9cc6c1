"""The keyword side of hybrid retrieval: a bm25s index saved beside the Chroma store.

One folder per manifest version (`<index>/keyword/<version>/`), written to a temp folder and
renamed into place, so a reader sees a whole index or none. Per chunk it keeps the chunk id, its
file and its publication date; file hashes say which chunks the current manifest still names, so
an index a few files behind the manifest stays usable (its stale chunks are masked out) while the
next one is built. Corpus-wide statistics (document frequencies) come from here too, so nothing on
the query path reads every chunk."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from . import copies
from ..text_utils import content_terms

FORMAT = "3"
K1, B = 1.5, 0.75
CURRENT = "CURRENT"


@dataclass
class KeywordIndex:
    """A loaded keyword index: bm25s scores plus, per chunk, its id, file and date."""

    path: Path
    version: str
    bm25: Any
    ids: np.ndarray  # bytes, one per chunk
    file_no: np.ndarray  # int32 index into `files`
    epochs: np.ndarray  # int64 publication date (0 = unknown)
    files: list[str]
    hashes: list[str]
    signatures: np.ndarray | None = None
    representative: np.ndarray | None = None  # per file: row of its copy group's representative
    _df: np.ndarray | None = None
    _offsets: np.ndarray | None = None
    _flat: np.ndarray | None = None
    _masks: dict[str, np.ndarray] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def size(self) -> int:
        """Number of chunks."""
        return int(self.ids.shape[0])

    def live_mask(self, valid: dict[str, str], key: str) -> np.ndarray:
        """1.0 for chunks whose file still has the hash the manifest names (cached per manifest version)."""
        with self._lock:
            mask = self._masks.get(key)
            if mask is None:
                file_ok = np.array([valid.get(f) == h for f, h in zip(self.files, self.hashes)], dtype=bool)
                mask = file_ok[self.file_no] if self.size else np.zeros(0, dtype=bool)
                self._masks = {key: mask}
            return mask

    def search(self, query: str, k: int, live: np.ndarray, files: tuple[str, ...] = (),
               epoch_from: int = 0, epoch_to: int = 0) -> list[tuple[str, float]]:
        """Top-k (chunk id, BM25 score) among live chunks passing the filters; only scores > 0."""
        token_ids = self.bm25.get_tokens_ids(content_terms(query))
        if not token_ids or not self.size:
            return []
        mask = live
        if files:
            wanted = np.array([n for n, f in enumerate(self.files) if f in set(files)], dtype=np.int32)
            mask = mask & np.isin(self.file_no, wanted)
        if epoch_from:
            mask = mask & (self.epochs >= epoch_from)
        if epoch_to:
            mask = mask & (self.epochs > 0) & (self.epochs <= epoch_to)
        scores = np.nan_to_num(self.bm25.get_scores_from_ids(token_ids, weight_mask=mask.astype(np.float32)))
        k = min(k, scores.shape[0])
        top = np.argpartition(-scores, k - 1)[:k] if k < scores.shape[0] else np.arange(scores.shape[0])
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self.ids[n].decode(), float(scores[n])) for n in top if scores[n] > 0]

    def copy_groups(self) -> dict[str, list[str]]:
        """Groups of files carrying the same article: representative -> all its files (2 or more)."""
        out: dict[str, list[str]] = {}
        if self.representative is None:
            return out
        for n, rep in enumerate(self.representative.tolist()):
            out.setdefault(self.files[rep], []).append(self.files[n])
        return {rep: sorted(members) for rep, members in out.items() if len(members) > 1}

    def rows(self) -> dict[str, int]:
        """Row number of each chunk id."""
        return {cid.decode(): n for n, cid in enumerate(self.ids)}

    def vocab(self) -> dict[str, int]:
        """The token ids this index was built with (kept for the next, incremental build)."""
        return json.loads((self.path / "vocab.json").read_text(encoding="utf-8"))

    def tokens(self, row: int) -> list[int]:
        """The token ids of one chunk."""
        offsets = np.load(self.path / "offsets.npy", mmap_mode="r") if self._offsets is None else self._offsets
        flat = np.load(self.path / "tokens.npy", mmap_mode="r") if self._flat is None else self._flat
        self._offsets, self._flat = offsets, flat
        return flat[int(offsets[row]):int(offsets[row + 1])].tolist()

    def idf(self, terms: Iterable[str]) -> dict[str, float]:
        """Okapi IDF of each stemmed term present in the index (absent terms are left out)."""
        if self._df is None:
            self._df = np.diff(np.asarray(self.bm25.scores["indptr"]))
        n = self.size
        out = {}
        for term in terms:
            tid = self.bm25.vocab_dict.get(term)
            if tid is not None and term:
                df = int(self._df[tid])
                out[term] = math.log(1 + (n - df + 0.5) / (df + 0.5))
        return out

    def max_idf(self) -> float:
        """The IDF of a term seen in one chunk (what an unseen term is worth at most)."""
        n = self.size
        return math.log(1 + (n - 0.5) / 1.5) if n else 1.0


def keyword_root(index_root: Path) -> Path:
    """Folder holding the keyword indexes of one index."""
    return index_root / "keyword"


def build(index_root: Path, version: str, rows: Iterable[tuple[str, str | None, dict[str, Any] | None]],
          previous: KeywordIndex | None = None, *, num_perm: int, bands: int, threshold: float) -> KeywordIndex:
    """Build and save the keyword index for a manifest version from (chunk id, text, metadata) rows.

    A row whose text is None is a chunk of `previous`: its tokens and metadata are reused from
    there, so a changed file costs the tokenising of its own chunks only. `num_perm`, `bands` and
    `threshold` group the copies (the index settings `copies_*`; assistant/indexing/copies.py)."""
    import bm25s

    ids: list[bytes] = []
    file_no: list[int] = []
    epochs: list[int] = []
    files: dict[str, int] = {}
    hashes: list[str] = []
    corpus: list[list[int]] = []
    # Token ids as we go (ints take far less memory than token strings); the previous index's ids
    # stay valid, so its token lists are reused as they are.
    vocab: dict[str, int] = dict(previous.vocab()) if previous is not None else {}
    rows_of = previous.rows() if previous is not None else {}
    for cid, text, meta in rows:
        if text is None and previous is not None:
            row = rows_of[cid]
            n = int(previous.file_no[row])
            meta = {"file": previous.files[n], "file_hash": previous.hashes[n], "date_epoch": int(previous.epochs[row])}
            tokens = previous.tokens(row)
        else:
            tokens = [vocab.setdefault(t, len(vocab)) for t in content_terms(text or "")]
        assert meta is not None
        rel = meta["file"]
        if rel not in files:
            files[rel] = len(files)
            hashes.append(str(meta.get("file_hash", "")))
        ids.append(cid.encode())
        file_no.append(files[rel])
        epochs.append(int(meta.get("date_epoch") or 0))
        corpus.append(tokens)
    bm25 = bm25s.BM25(k1=K1, b=B)
    if corpus:
        from bm25s.tokenization import Tokenized

        with np.errstate(invalid="ignore", divide="ignore"):  # a corpus of token-less chunks scores 0, not NaN
            bm25.index(Tokenized(ids=corpus, vocab=vocab), show_progress=False)
    signatures = _signatures(corpus, file_no, list(files), hashes, previous, num_perm)
    lengths = np.fromiter((len(t) for t in corpus), dtype=np.int64, count=len(corpus))
    offsets = np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(lengths)])
    flat = np.fromiter((t for doc in corpus for t in doc), dtype=np.int32, count=int(offsets[-1]))
    empty = not corpus
    del corpus
    root = keyword_root(index_root)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".build-"))
    try:
        if not empty:
            bm25.save(str(tmp / "bm25"), show_progress=False)
        np.save(tmp / "ids.npy", np.array(ids, dtype="S64"))
        np.save(tmp / "file_no.npy", np.array(file_no, dtype=np.int32))
        np.save(tmp / "epochs.npy", np.array(epochs, dtype=np.int64))
        np.save(tmp / "tokens.npy", flat)
        np.save(tmp / "signatures.npy", signatures)
        np.save(tmp / "groups.npy", _representatives(list(files), copies.groups(signatures, bands, threshold)))
        np.save(tmp / "offsets.npy", offsets)
        with open(tmp / "vocab.json", "w", encoding="utf-8") as fh:
            json.dump(vocab, fh)
        with open(tmp / "meta.json", "w", encoding="utf-8") as fh:
            json.dump({"format": FORMAT, "version": version, "chunks": len(ids), "files": list(files),
                       "hashes": hashes}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        final = root / version
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _write_current(root, version)
    _prune(root, keep=version)
    return load(index_root, version)  # type: ignore[return-value]


def _signatures(corpus: list[list[int]], file_no: list[int], files: list[str], hashes: list[str],
                previous: KeywordIndex | None, num_perm: int) -> np.ndarray:
    """MinHash signature of each file (its chunks' tokens in order); unchanged files keep theirs."""
    reuse: dict[tuple[str, str], np.ndarray] = {}
    if previous is not None and previous.signatures is not None:
        reuse = {(f, h): previous.signatures[n] for n, (f, h) in enumerate(zip(previous.files, previous.hashes))}
    per_file: list[list[int]] = [[] for _ in files]
    for tokens, n in zip(corpus, file_no):
        if (files[n], hashes[n]) not in reuse:
            per_file[n].extend(tokens)
    out = np.empty((len(files), num_perm), dtype=np.uint32)
    for n, (rel, digest) in enumerate(zip(files, hashes)):
        old = reuse.get((rel, digest))
        out[n] = old if old is not None else copies.signature(per_file[n], num_perm)
    return out


def _representatives(files: list[str], group: np.ndarray) -> np.ndarray:
    """For each file, the row of its group's representative (the group's first file by name)."""
    best: dict[int, int] = {}
    for n, g in enumerate(group.tolist()):
        if g not in best or files[n] < files[best[g]]:
            best[g] = n
    return np.array([best[g] for g in group.tolist()], dtype=np.int32)


def _write_current(root: Path, version: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=root, prefix=".current-")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(version)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, root / CURRENT)


def _prune(root: Path, keep: str) -> None:
    # Older versions go; a reader that still has one open keeps its memory maps (POSIX unlink).
    for entry in root.iterdir():
        if entry.is_dir() and entry.name != keep:
            shutil.rmtree(entry, ignore_errors=True)


def current_version(index_root: Path) -> str | None:
    """The version of the newest complete keyword index, or None."""
    try:
        return (keyword_root(index_root) / CURRENT).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def load(index_root: Path, version: str | None = None) -> KeywordIndex | None:
    """Load a saved keyword index (memory-mapped): `version`, or the newest one; None when absent."""
    import bm25s

    version = version or current_version(index_root)
    if not version:
        return None
    path = keyword_root(index_root) / version
    try:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            return None
        ids = np.load(path / "ids.npy", mmap_mode="r")
        file_no = np.load(path / "file_no.npy", mmap_mode="r")
        epochs = np.load(path / "epochs.npy", mmap_mode="r")
        if meta["chunks"]:
            bm25 = bm25s.BM25.load(str(path / "bm25"), mmap=True, show_progress=False)
        else:
            bm25 = bm25s.BM25(k1=K1, b=B)
            bm25.vocab_dict = {}
            bm25.scores = {"indptr": np.zeros(1, dtype=np.int64)}
        signatures = np.load(path / "signatures.npy")
        representative = np.load(path / "groups.npy")
    except (OSError, ValueError, KeyError):
        return None
    return KeywordIndex(path=path, version=meta["version"], bm25=bm25, ids=ids, file_no=file_no,
                        epochs=epochs, files=meta["files"], hashes=meta["hashes"], signatures=signatures,
                        representative=representative)
