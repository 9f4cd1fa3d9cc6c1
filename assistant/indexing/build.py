"""Write path: read, clean, chunk and embed a folder of articles into Chroma, incrementally.

Reading (files.py) runs one file ahead of the rest on a background thread, embedding runs here in
length-sorted batches, and each commit group is written to the store while the next one embeds
(pipeline.py). Crash safety is unchanged: a group's chunks go in before the manifest names them."""

from __future__ import annotations

import time
from array import array
from pathlib import Path
from typing import Any, Callable, Iterator

from ..backends import get_embedder
from ..errors import AssistantError, BackendUnavailableError, InputError, SkipFile, StoreError
from ..reading.loaders import check_file, read_metadata
from ..settings import Settings
from ..types import IndexReport, SkippedFile
from . import keyword
from .chunking import content_hash
from .files import _Pending, _items_of, _load_pending, _owner, _tidy_texts, file_digest, walk_corpus
from .locks import IndexLock, _server_lease
from .pipeline import Meter, ProgressFn, Writer, read_ahead
from .store import (IndexLocation, locate, manifest_version, open_collection, read_manifest, server_manifest,
                    store_error, write_json_atomic)


# Files are committed to the store in groups: a crash loses at most one group's work. Each group is
# one embedding call sequence and one Chroma upsert call sequence (of up to 1,000 chunks each).
GROUP_CHUNKS = 512
# Vectors of distinct chunk texts kept for the rest of a run (about 3 kB each), to embed a repeat once.
MEMO_MAX = 20_000


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
                progress: ProgressFn | None = None, *, embedder: Any = None) -> IndexReport:
    """Index a folder of articles incrementally and return what changed (with the embedder the settings
    name, or the one handed in: any object with `embed(texts) -> vectors`)."""
    settings = settings or Settings.from_env()
    root = Path(path) if path is not None else Path(settings.index.corpus_dir)
    if not root.exists():
        raise InputError(f"path not found: {root} (give a folder of .txt, .md, .html or .pdf articles)")
    if not root.is_dir():
        raise InputError(f"{root} is a file, not a folder: give the folder that holds the articles")
    started = time.perf_counter()
    loc = locate(settings)
    with IndexLock(loc.root), _server_lease(loc) as renew:
        report = _run(root, settings, loc, progress, renew, embedder)
    report.seconds = time.perf_counter() - started
    return report


def _run(root: Path, settings: Settings, loc: IndexLocation, progress: ProgressFn | None,
         renew: Callable[[], None], embedder: Any) -> IndexReport:
    report = IndexReport(index_path=str(loc.root))
    interrupted_before = _is_dirty(loc)  # a run killed mid-way may have left chunks no manifest names
    manifest = read_manifest(loc) or {}
    files: dict[str, Any] = dict(manifest.get("files", {}))
    old_hashes = {rel: entry.get("hash") for rel, entry in files.items()}  # what the reader compares to
    metadata = read_metadata(root)
    collection = open_collection(loc, create=True)
    base_manifest = {"fingerprint": loc.fingerprint, "embedder": settings.index.embedder,
                     "chunk_size": settings.index.chunk_size, "chunk_overlap": settings.index.chunk_overlap,
                     "corpus": str(root.resolve())}
    seen: set[str] = set()
    candidates = list(walk_corpus(root, exclude=[Path(settings.index.index_dir)]))
    meter = Meter(progress, len(candidates))
    pending: list[_Pending] = []
    pending_chunks = 0
    writer = Writer()
    memo: dict[str, array] = {}

    def read(candidate: tuple[Path, str, str | None]) -> tuple[str, Any]:
        # On the reader thread: everything up to the chunks, nothing that touches `files`.
        path, rel, reason = candidate
        if reason:
            return "skip", reason
        meta = metadata.get(rel)
        try:
            # Type and size first: a huge video or a FIFO must not be read just to be skipped.
            check_file(path, settings.index.max_file_bytes)
            try:
                digest = file_digest(path, meta)
            except OSError as exc:
                raise SkipFile(f"cannot be read ({exc.strerror or exc})") from None
            if old_hashes.get(rel) == digest:
                return "unchanged", None
            return "item", _load_pending(path, rel, meta, digest, rel in old_hashes, settings, loc)
        except SkipFile as exc:
            return "skip", str(exc)

    def flush() -> None:
        nonlocal pending, pending_chunks, embedder
        if not pending:
            return
        embedder = embedder or get_embedder(settings)
        group, count = pending, pending_chunks
        pending, pending_chunks = [], 0
        meter.start_group()
        vectors = _embed_sorted(embedder, [c.text for item in group for c in item.chunks],
                                settings.index.embed_batch_size, memo)
        meter.embedding(count)

        def write() -> None:
            _mark_dirty(loc)
            _write_group(collection, group, vectors, files, loc, base_manifest)
            renew()

        writer.submit(write)  # written while the next group is read and embedded
        report.embedded_chunks += count

    try:
        for done, ((_path, rel, _reason), (kind, value)) in enumerate(
                zip(candidates, read_ahead(candidates, read)), 1):
            if kind == "skip":
                if rel in old_hashes and _reason is None:
                    seen.add(rel)  # the previous good version stays searchable
                    value += "; previous version kept in the index"
                report.skipped.append(SkippedFile(rel, value))
            elif kind == "unchanged":
                seen.add(rel)
                report.unchanged += 1
            else:
                seen.add(rel)
                if value.is_update:
                    report.updated += 1
                else:
                    report.added += 1
                pending.append(value)
                pending_chunks += len(value.chunks)
            meter.file(done, rel, len(value.chunks) if kind == "item" else 0)
            if pending_chunks >= GROUP_CHUNKS:
                flush()
        flush()
        writer.wait()
    finally:
        writer.close()
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
    kw = ensure_keyword_index(loc, files, settings, collection)
    report.copy_groups = [[rep] + [f for f in members if f != rep] for rep, members in sorted(kw.copy_groups().items())]
    report.chunks = sum(len(entry.get("ids", [])) for entry in files.values())
    return report


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


def ensure_keyword_index(loc: IndexLocation, files: dict[str, Any], settings: Settings,
                         collection: Any = None) -> keyword.KeywordIndex:
    """The keyword index for this manifest: loaded from disk, or built from the last one plus the
    stored texts of the chunks it lacks (all of them when there is no last one); `settings.index`
    says how copies are grouped."""
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

    index = settings.index
    return keyword.build(loc.root, version, rows(), previous=previous, num_perm=index.copies_num_perm,
                         bands=index.copies_bands, threshold=index.copies_threshold)


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
    """Embed one group and write it (the two steps `_run` overlaps, in one call)."""
    vectors = _embed_sorted(embedder, [c.text for item in pending for c in item.chunks],
                            settings.index.embed_batch_size)
    _write_group(collection, pending, vectors, files, loc, base_manifest)


def _write_group(collection: Any, pending: list[_Pending], vectors: list[list[float]], files: dict[str, Any],
                 loc: IndexLocation, base_manifest: dict[str, Any]) -> None:
    # Order matters for crash safety: new chunks go in first (readers ignore them until the
    # manifest names their file hash), then the manifest flips, then old chunks are deleted.
    chunks = [c for item in pending for c in item.chunks]
    texts = [c.text for c in chunks]
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


def _embed_sorted(embedder: Any, texts: list[str], batch: int,
                  memo: dict[str, array] | None = None) -> list[list[float]]:
    """Vectors of `texts`, each distinct text embedded once: a text already in `memo` (this run's
    earlier groups; wire copies and reposts repeat whole chunks) is not embedded again. Batches go
    longest first, so each batch pads little (the model's cost is batch size x longest text)."""
    memo = {} if memo is None else memo
    vectors: list[list[float]] = [[] for _ in texts]
    todo: dict[str, list[int]] = {}
    for n, text in enumerate(texts):
        known = memo.get(content_hash(text))
        if known is not None:
            vectors[n] = known.tolist()
        else:
            todo.setdefault(text, []).append(n)
    unique = sorted(todo, key=len, reverse=True)
    for i in range(0, len(unique), batch):
        part = unique[i:i + batch]
        got = embedder.embed(part)
        if len(got) != len(part):
            raise BackendUnavailableError(f"the embedder returned {len(got)} vectors for {len(part)} texts; "
                                          "check the embedder (ASSISTANT_EMBEDDER)")
        for text, vector in zip(part, got):
            vector = list(vector)
            for n in todo[text]:
                vectors[n] = vector
            if len(memo) < MEMO_MAX:
                memo[content_hash(text)] = array("d", vector)
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
