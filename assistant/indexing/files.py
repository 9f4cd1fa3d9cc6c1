"""Reading side of the indexer: walk the folder, hash, clean and chunk files, keep extracted texts."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..dates import date_to_epoch
from ..errors import SkipFile
from ..reading.cleaning import guess_title, keep_spans
from ..reading.feeds import FEED_SUFFIXES, feed_of
from ..reading.loaders import METADATA_FILE, PLAIN_KINDS, Document, load_documents
from ..settings import Settings
from ..types import Chunk
from .chunking import chunk_text, content_hash
from .store import IndexLocation, store_error


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
    spans = keep_spans(text, settings.index.clean_prose_min_chars, settings.index.clean_ui_min_hits)
    title = title or guess_title(text, spans) or Path(rel).stem
    epoch = date_to_epoch(date)
    return [
        Chunk(id=chunk_id(rel, file_hash, n), file=rel, text=raw.text, start=raw.start, end=raw.end,
              chunk_no=n, title=title, date=date, date_epoch=epoch, content_hash=content_hash(raw.text))
        for n, raw in enumerate(chunk_text(text, settings.index.chunk_size, settings.index.chunk_overlap, spans=spans))
    ]


def _load_pending(path: Path, rel: str, meta: dict[str, str] | None, digest: str, is_update: bool,
                  settings: Settings, loc: IndexLocation) -> _Pending:
    """Load and chunk one file (every item of a feed) and save the text of non-plain documents."""
    item = _Pending(rel, digest, [], is_update)
    for doc in load_documents(path, rel, settings.index.max_file_bytes, meta):
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
