"""Write path: read, clean, chunk and embed a folder of articles into Chroma, incrementally."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from ..backends import get_embedder
from .chunking import chunk_text, content_hash
from ..reading.cleaning import guess_title, keep_spans
from ..dates import date_to_epoch
from ..errors import AssistantError, BackendUnavailableError, IndexLockedError, InputError, SkipFile, StoreError
from ..reading.feeds import FEED_SUFFIXES, feed_of
from ..reading.loaders import (METADATA_FILE, PLAIN_KINDS, Document, check_file, load_documents,
                      read_metadata)
from ..settings import Settings
from . import keyword
from .store import (IndexLocation, locate, manifest_version, open_collection, read_manifest, server_manifest,
                    store_error, write_json_atomic)
from ..types import Chunk, IndexReport, SkippedFile

ProgressFn = Callable[[int, int, str], None]
# Files are committed to the store in groups: a crash loses at most one group's work.
GROUP_CHUNKS = 256


@dataclass
class _Pending:
    rel: str
    file_hash: str
    chunks: list[Chunk]
    is_update: bool
    items: dict[str, str] = field(default_factory=dict)  # feed item name -> its own hash
    links: dict[str, str] = field(default_factory=dict)  # feed item name -> its link
    texts: dict[str, str] = field(default_factory=dict)  # document name -> its stored text (texts/...)


def walk_corpus(root: Path, exclude: Iterable[Path] = ()) -> Iterator[tuple[Path, str, str | None]]:
    """Yield (path, relative name, skip reason or None); never leaves the corpus root.

    Folders in `exclude` (the index itself, when it lives inside the corpus) are not entered.
    """
    root_real = root.resolve()
    excluded = {Path(p).resolve() for p in exclude}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for dirname in list(dirnames):
            full = Path(dirpath) / dirname
            if full.is_symlink():
                dirnames.remove(dirname)
                yield full, _printable(full.relative_to(root).as_posix()), "symlinked folder not followed"
            elif excluded and full.resolve() in excluded:
                dirnames.remove(dirname)
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if rel == METADATA_FILE:
                continue
            if _printable(rel) != rel:
                # Chroma, JSON and the terminal need text: a name with undecodable bytes stops them all.
                yield path, _printable(rel), "file name is not valid UTF-8; rename the file"
                continue
            if path.is_symlink():
                try:
                    target = path.resolve()
                except (OSError, RuntimeError):  # a symlink loop (RuntimeError before Python 3.13)
                    yield path, rel, "symlink loop, not followed"
                    continue
                if not target.is_relative_to(root_real):
                    yield path, rel, "symlink pointing outside the corpus folder"
                    continue
            yield path, rel, None


def _printable(rel: str) -> str:
    """A file name as text: bytes that are not UTF-8 (kept by the OS as surrogates) become U+FFFD."""
    return rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def file_digest(path: Path, meta: dict[str, str] | None) -> str:
    """Hash of a file's bytes plus its metadata entry (a new date re-indexes the file)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    if meta:
        h.update(json.dumps(meta, sort_keys=True).encode())
    return h.hexdigest()


def chunk_id(rel: str, file_hash: str, chunk_no: int) -> str:
    """Stable id: the same file content always yields the same ids."""
    return hashlib.sha256(f"{rel}\0{file_hash}\0{chunk_no}".encode()).hexdigest()[:32]


def make_chunks(rel: str, text: str, file_hash: str, title: str, date: str, settings: Settings) -> list[Chunk]:
    """Clean and chunk a document's text into Chunk records."""
    spans = keep_spans(text)
    title = title or guess_title(text, spans) or Path(rel).stem
    epoch = date_to_epoch(date)
    return [
        Chunk(id=chunk_id(rel, file_hash, n), file=rel, text=raw.text, start=raw.start, end=raw.end,
              chunk_no=n, title=title, date=date, date_epoch=epoch, content_hash=content_hash(raw.text))
        for n, raw in enumerate(chunk_text(text, settings.chunk_size, settings.chunk_overlap, spans=spans))
    ]


class IndexLock:
    """An exclusive, non-blocking lock on an index folder that names its holder."""

    def __init__(self, root: Path) -> None:
        self.path = root / ".lock"
        self._fh: Any = None

    def __enter__(self) -> "IndexLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(self.path, "a+", encoding="utf-8")
        except OSError as exc:
            raise StoreError(
                f"cannot write the index folder {self.path.parent} ({exc.strerror or exc}); "
                "choose a writable folder with --index-dir or ASSISTANT_INDEX_DIR") from None
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise IndexLockedError(
                f"another indexing run is writing {self.path.parent} ({holder}); "
                "wait for it to finish, then run `assistant index` again") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}")
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            self._fh.seek(0)
            self._fh.truncate()
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()


def lock_held(root: Path) -> bool:
    """True while an indexing run holds the folder's lock (a reader then keeps the last keyword index)."""
    try:
        fh = open(root / ".lock", "r", encoding="utf-8")
    except OSError:
        return False
    with fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        return False


@contextmanager
def _server_lease(loc: IndexLocation) -> Iterator[Callable[[], None]]:
    # On a Chroma server several machines may index at once: one lease on the server decides.
    if not loc.chroma_url:
        yield lambda: None
        return
    holder = f"pid {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}"
    manifest = server_manifest(loc)
    manifest.acquire(holder)
    try:
        yield lambda: manifest.renew(holder)
    finally:
        manifest.release(holder)


def _save_manifest(loc: IndexLocation, data: dict[str, Any]) -> None:
    data = {**data, "version": manifest_version(data.get("files", {}))}
    if loc.chroma_url:
        server_manifest(loc).write(data)
        return
    try:
        write_json_atomic(loc.manifest_path, data)
    except OSError as exc:
        raise store_error(exc, loc) from None


def build_index(path: str | Path | None = None, settings: Settings | None = None,
                progress: ProgressFn | None = None) -> IndexReport:
    """Index a folder of articles incrementally and return what changed."""
    settings = settings or Settings.from_env()
    root = Path(path) if path is not None else Path(settings.corpus_dir)
    if not root.exists():
        raise InputError(f"path not found: {root} (give a folder of .txt, .md, .html or .pdf articles)")
    if not root.is_dir():
        raise InputError(f"{root} is a file, not a folder: give the folder that holds the articles")
    started = time.perf_counter()
    loc = locate(settings)
    with IndexLock(loc.root), _server_lease(loc) as renew:
        report = _run(root, settings, loc, progress, renew)
    report.seconds = time.perf_counter() - started
    return report


def _run(root: Path, settings: Settings, loc: IndexLocation, progress: ProgressFn | None,
         renew: Callable[[], None]) -> IndexReport:
    report = IndexReport(index_path=str(loc.root))
    interrupted_before = _is_dirty(loc)  # a run killed mid-way may have left chunks no manifest names
    manifest = read_manifest(loc) or {}
    files: dict[str, Any] = dict(manifest.get("files", {}))
    metadata = read_metadata(root)
    collection = open_collection(loc, create=True)
    base_manifest = {"fingerprint": loc.fingerprint, "embedder": settings.embedder,
                     "chunk_size": settings.chunk_size, "chunk_overlap": settings.chunk_overlap,
                     "corpus": str(root.resolve())}
    seen: set[str] = set()
    candidates = list(walk_corpus(root, exclude=[Path(settings.index_dir)]))
    pending: list[_Pending] = []
    pending_chunks = 0
    embedder = None

    def flush() -> None:
        nonlocal pending, pending_chunks, embedder
        if not pending:
            return
        embedder = embedder or get_embedder(settings)
        _mark_dirty(loc)
        _commit(collection, embedder, pending, files, loc, base_manifest, settings)
        renew()
        for item in pending:
            report.embedded_chunks += len(item.chunks)
        pending, pending_chunks = [], 0

    for done, (path, rel, reason) in enumerate(candidates, 1):
        if progress:
            progress(done, len(candidates), rel)
        if reason:
            report.skipped.append(SkippedFile(rel, reason))
            continue
        meta = metadata.get(rel)
        old = files.get(rel)
        try:
            # Type and size first: a huge video or a FIFO must not be read just to be skipped.
            check_file(path, settings.max_file_bytes)
            try:
                digest = file_digest(path, meta)
            except OSError as exc:
                raise SkipFile(f"cannot be read ({exc.strerror or exc})") from None
            if old and old.get("hash") == digest:
                seen.add(rel)
                report.unchanged += 1
                continue
            item = _load_pending(path, rel, meta, digest, bool(old), settings, loc)
        except SkipFile as exc:
            reason_text = str(exc)
            if old:
                seen.add(rel)  # the previous good version stays searchable
                reason_text += "; previous version kept in the index"
            report.skipped.append(SkippedFile(rel, reason_text))
            continue
        seen.add(rel)
        if old:
            report.updated += 1
        else:
            report.added += 1
        pending.append(item)
        pending_chunks += len(item.chunks)
        if pending_chunks >= GROUP_CHUNKS:
            flush()
    flush()
    # A feed's item entries go with their feed; they are never files of their own.
    removed = [rel for rel, entry in files.items() if _owner(rel, entry) not in seen]
    removed_ids = [i for rel in removed for i in files[rel].get("ids", [])]
    report.removed = sum(1 for rel in removed if _owner(rel, files[rel]) == rel)
    for rel in removed:
        del files[rel]
    _save_manifest(loc, {**base_manifest, "files": files})
    _delete_ids(collection, removed_ids, loc)
    if removed_ids or interrupted_before:
        # Chunks the manifest does not name (removed files, old versions, a run killed before its
        # manifest flip) are invisible to readers; deleting them keeps the store tidy.
        _mark_dirty(loc)
        _collect_garbage(collection, files, loc)
    _clear_dirty(loc)
    _tidy_texts(loc, files)
    kw = ensure_keyword_index(loc, files, collection)
    report.copy_groups = [[rep] + [f for f in members if f != rep] for rep, members in sorted(kw.copy_groups().items())]
    report.chunks = sum(len(entry.get("ids", [])) for entry in files.values())
    return report


def _load_pending(path: Path, rel: str, meta: dict[str, str] | None, digest: str, is_update: bool,
                  settings: Settings, loc: IndexLocation) -> _Pending:
    """Load and chunk one file (every item of a feed) and save the text of non-plain documents."""
    item = _Pending(rel, digest, [], is_update)
    for doc in load_documents(path, rel, settings.max_file_bytes, meta):
        # A feed item's hash is its own content's, so the items a feed keeps keep their chunk ids.
        doc_hash = digest if doc.file == rel else _doc_digest(doc)
        chunks = make_chunks(doc.file, doc.text, doc_hash, doc.title, doc.date, settings)
        if not chunks:
            continue
        item.chunks.extend(chunks)
        if doc.file != rel:
            item.items[doc.file], item.links[doc.file] = doc_hash, doc.link
        if doc.kind not in PLAIN_KINDS:
            item.texts[doc.file] = save_text(loc, doc.file, doc_hash, doc.text)
    if not item.chunks:
        raise SkipFile("no article text left after cleaning")
    return item


def _doc_digest(doc: Document) -> str:
    return hashlib.sha256(json.dumps([doc.file, doc.title, doc.date, doc.link, doc.text]).encode()).hexdigest()


def _owner(rel: str, entry: dict[str, Any]) -> str:
    """The real file a manifest entry belongs to: its feed for a feed item, else itself."""
    return entry.get("part_of") or feed_of(rel) or rel


def _items_of(files: dict[str, Any], rel: str) -> list[str]:
    """Names of the feed item entries a feed file owns in the manifest (none for other files)."""
    if Path(rel).suffix.lower() not in FEED_SUFFIXES:
        return []
    return [name for name, entry in files.items() if name != rel and _owner(name, entry) == rel]


def _text_path(name: str, doc_hash: str) -> str:
    # One file per document version: a reader of the previous manifest keeps its own text.
    key = hashlib.sha256(f"{name}\0{doc_hash}".encode("utf-8", "surrogateescape")).hexdigest()
    return f"texts/{key}.txt"


def save_text(loc: IndexLocation, name: str, doc_hash: str, text: str) -> str:
    """Store the extracted text chunk offsets point into; returns its path relative to the index."""
    rel = _text_path(name, doc_hash)
    path = loc.root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise store_error(exc, loc) from None
        raise
    return rel


def _tidy_texts(loc: IndexLocation, files: dict[str, Any]) -> None:
    # Texts of versions the manifest no longer names (updated or removed files, killed runs).
    folder = loc.root / "texts"
    if not folder.is_dir():
        return
    keep = {_text_path(rel, entry.get("hash", "")) for rel, entry in files.items()}
    keep |= {p for entry in files.values() for p in (entry.get("texts") or {}).values()}
    for path in folder.iterdir():
        if f"texts/{path.name}" not in keep:
            path.unlink(missing_ok=True)


def _mark_dirty(loc: IndexLocation) -> None:
    loc.root.mkdir(parents=True, exist_ok=True)
    (loc.root / ".dirty").touch()


def _is_dirty(loc: IndexLocation) -> bool:
    return (loc.root / ".dirty").exists()


def _clear_dirty(loc: IndexLocation) -> None:
    try:
        (loc.root / ".dirty").unlink()
    except FileNotFoundError:
        pass


def manifest_ids(files: dict[str, Any]) -> list[str]:
    """Every chunk id the manifest names, in its order."""
    return [i for entry in files.values() for i in entry.get("ids", [])]


def stored_chunks(collection: Any, ids: list[str], loc: IndexLocation,
                  batch: int = 1000) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(id, text, metadata) of these chunks, read from the store in batches."""
    for n in range(0, len(ids), batch):
        try:
            got = collection.get(ids=ids[n:n + batch], include=["documents", "metadatas"])
        except Exception as exc:
            raise store_error(exc, loc) from None
        yield from zip(got["ids"], got["documents"], got["metadatas"])


def ensure_keyword_index(loc: IndexLocation, files: dict[str, Any], collection: Any = None) -> keyword.KeywordIndex:
    """The keyword index for this manifest: loaded from disk, or built from the last one plus the
    stored texts of the chunks it lacks (all of them when there is no last one)."""
    version = manifest_version(files)
    found = keyword.load(loc.root, version)
    if found is not None:
        return found
    collection = collection if collection is not None else open_collection(loc, create=False)
    previous = keyword.load(loc.root)
    known = previous.rows() if previous is not None else {}
    wanted = manifest_ids(files)
    missing = {i: None for i in wanted if i not in known}
    fetched = {cid: (text, meta) for cid, text, meta in
               stored_chunks(collection, list(missing), loc)}

    def rows() -> Iterator[tuple[str, str | None, dict[str, Any] | None]]:
        for cid in wanted:
            if cid in fetched:
                yield cid, fetched[cid][0], fetched[cid][1]
            elif cid in known:
                yield cid, None, None
            # else: named by the manifest but not in the store (a broken store); left out

    return keyword.build(loc.root, version, rows(), previous=previous)


def _collect_garbage(collection: Any, files: dict[str, Any], loc: IndexLocation, page: int = 5000) -> None:
    valid = set(manifest_ids(files))
    stray: list[str] = []
    offset = 0
    try:
        while True:
            got = collection.get(include=[], limit=page, offset=offset)["ids"]
            stray.extend(i for i in got if i not in valid)
            if len(got) < page:
                break
            offset += page
    except Exception as exc:
        raise store_error(exc, loc) from None
    _delete_ids(collection, stray, loc)


def _commit(collection: Any, embedder: Any, pending: list[_Pending], files: dict[str, Any],
            loc: IndexLocation, base_manifest: dict[str, Any], settings: Settings) -> None:
    # Order matters for crash safety: new chunks go in first (readers ignore them until the
    # manifest names their file hash), then the manifest flips, then old chunks are deleted.
    chunks = [c for item in pending for c in item.chunks]
    texts = [c.text for c in chunks]
    vectors = _embed_sorted(embedder, texts, settings.embed_batch_size)
    file_hash = {item.rel: item.file_hash for item in pending}
    file_hash.update({name: h for item in pending for name, h in item.items.items()})
    links = {name: link for item in pending for name, link in item.links.items() if link}
    metadatas = [{"file": c.file, "title": c.title, "date": c.date, "date_epoch": c.date_epoch,
                  "start": c.start, "end": c.end, "chunk_no": c.chunk_no, "content_hash": c.content_hash,
                  "file_hash": file_hash[c.file], **({"link": links[c.file]} if c.file in links else {})}
                 for c in chunks]
    try:
        for i in range(0, len(chunks), 1000):
            collection.upsert(ids=[c.id for c in chunks[i:i + 1000]], embeddings=vectors[i:i + 1000],
                              documents=texts[i:i + 1000], metadatas=metadatas[i:i + 1000])
    except AssistantError:
        raise
    except Exception as exc:
        raise store_error(exc, loc) from None
    stale: list[str] = []
    for item in pending:
        old = files.get(item.rel)
        new_ids = [c.id for c in item.chunks]
        if old:
            stale.extend(i for i in old.get("ids", []) if i not in set(new_ids))
        for name in _items_of(files, item.rel):  # a feed's previous items go with it
            stale.extend(i for i in files.pop(name).get("ids", []) if i not in set(new_ids))
        by_file: dict[str, list[str]] = {}
        for c in item.chunks:
            by_file.setdefault(c.file, []).append(c.id)
        files[item.rel] = {"hash": item.file_hash, "ids": by_file.get(item.rel, [])}
        if item.items:
            # A feed: each item gets an entry of its own (what retrieval checks chunks against).
            files[item.rel]["items"] = list(item.items)
            for name, item_hash in item.items.items():
                files[name] = {"hash": item_hash, "ids": by_file.get(name, []), "part_of": item.rel}
        if item.texts:
            files[item.rel]["texts"] = dict(item.texts)
    _save_manifest(loc, {**base_manifest, "files": files})
    _delete_ids(collection, stale, loc)


def _embed_sorted(embedder: Any, texts: list[str], batch: int) -> list[list[float]]:
    # Batches of similar length pad less: the model's cost is batch size x longest text.
    order = sorted(range(len(texts)), key=lambda n: -len(texts[n]))
    vectors: list[list[float]] = [[] for _ in texts]
    for i in range(0, len(order), batch):
        part = order[i:i + batch]
        got = embedder.embed([texts[n] for n in part])
        if len(got) != len(part):
            raise BackendUnavailableError(f"the embedder returned {len(got)} vectors for {len(part)} texts; "
                             "check the embedder (ASSISTANT_EMBEDDER)")
        for n, vector in zip(part, got):
            vectors[n] = list(vector)
    return vectors


def _delete_ids(collection: Any, ids: list[str], loc: IndexLocation) -> None:
    if not ids:
        return
    try:
        for i in range(0, len(ids), 1000):
            collection.delete(ids=ids[i:i + 1000])
    except Exception as exc:
        raise store_error(exc, loc) from None


def index_exists(settings: Settings) -> bool:
    """True when an index with files has been built for these settings."""
    try:
        manifest = read_manifest(locate(settings))
    except StoreError:
        return False
    return bool(manifest and manifest.get("files"))
