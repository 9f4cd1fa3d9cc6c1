"""Read article files (.txt, .md, .html, .pdf, RSS/Atom) into text with title and date, or say why not."""

from __future__ import annotations

import json
import logging
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from ..dates import date_in_text, date_to_epoch, iso_date
from ..errors import SkipFile
from .feeds import FEED_SUFFIXES, feed_of, item_name, parse_feed

SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf") + FEED_SUFFIXES
# Kinds whose text is the file itself; others (HTML, PDF, feed items) keep a copy of their text.
PLAIN_KINDS = ("txt", "md")
METADATA_FILE = "metadata.json"


@dataclass(frozen=True)
class Document:
    """A readable article: `text` is what offsets point into (the file itself for .txt/.md).

    For a feed item `file` is "<feed file>#<key>" and `link` its web address."""

    file: str
    text: str
    kind: str
    title: str = ""
    date: str = ""
    link: str = ""

    @property
    def date_epoch(self) -> int:
        """Publication date as seconds since the epoch (0 when unknown)."""
        return date_to_epoch(self.date)


def read_metadata(root: Path) -> dict[str, dict[str, str]]:
    """Read the optional `metadata.json` at the corpus root: {relative file: {date, title}}."""
    path = root / METADATA_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    files = data.get("files", data) if isinstance(data, dict) else {}
    return {k: v for k, v in files.items() if isinstance(v, dict)}


def decode_text(raw: bytes) -> str:
    """Decode bytes as text, refusing binary data and undecodable bytes."""
    if not raw.strip():
        raise SkipFile("empty file")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text = raw.decode("utf-16")
        except UnicodeDecodeError:
            raise SkipFile("invalid UTF-16 text") from None
    else:
        if b"\x00" in raw[:8192]:
            raise SkipFile("binary content (NUL bytes), not text")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = _decode_legacy(raw)
    controls = sum(1 for ch in text if ord(ch) < 32 and ch not in "\n\r\t\f")
    if controls > max(2, len(text) // 100):
        raise SkipFile("does not look like text (too many control characters)")
    if not text.strip():
        raise SkipFile("empty file")
    return text


def _decode_legacy(raw: bytes) -> str:
    # Windows-1252 is the usual non-UTF-8 encoding of news text; accept it only when the
    # high bytes read like letters and punctuation, else the file is noise.
    try:
        text = raw.decode("cp1252")
    except UnicodeDecodeError:
        raise SkipFile("not valid UTF-8 and not readable as Windows-1252 text") from None
    high = [ch for ch in text if ord(ch) > 127]
    if len(high) > max(8, len(text) // 20):
        raise SkipFile("not valid UTF-8 (too many undecodable bytes)")
    return text


def check_file(path: Path, max_bytes: int) -> None:
    """Cheap checks before a file is read or hashed: type, regular file, size; raises SkipFile."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise SkipFile(f"unsupported file type '{suffix or path.name}'")
    try:
        info = path.stat()
    except OSError as exc:
        raise SkipFile(f"cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        raise SkipFile("not a regular file")  # a FIFO or device would block or never end
    if info.st_size == 0:
        raise SkipFile("empty file")
    if info.st_size > max_bytes:
        raise SkipFile(_too_large(info.st_size, max_bytes))


def _too_large(size: int, max_bytes: int) -> str:
    return f"larger than the size limit ({size} > {max_bytes} bytes; raise ASSISTANT_MAX_FILE_BYTES)"


def load_documents(path: Path, rel: str, max_bytes: int, meta: dict[str, str] | None = None) -> list[Document]:
    """The articles of one file: one per item of an RSS/Atom feed, else just the file's own.

    Raises SkipFile with the reason when the file gives none. A feed's metadata.json date is
    used only for items that carry no date of their own."""
    if path.suffix.lower() not in FEED_SUFFIXES:
        return [load_document(path, rel, max_bytes, meta)]
    fallback = iso_date((meta or {}).get("date", "")) or (meta or {}).get("date", "")
    return [Document(file=item_name(rel, item.key), text=item.text, kind="feed", title=item.title,
                     date=item.date or fallback, link=item.link)
            for item in parse_feed(_read(path, max_bytes))]


def _read(path: Path, max_bytes: int) -> bytes:
    check_file(path, max_bytes)
    try:
        with path.open("rb") as fh:
            raw = fh.read(max_bytes + 1)  # the file may have grown since it was checked
    except OSError as exc:
        raise SkipFile(f"cannot be read ({exc.strerror or exc})") from None
    if len(raw) > max_bytes:
        raise SkipFile(f"larger than the size limit (grew past {max_bytes} bytes while being read; "
                       "raise ASSISTANT_MAX_FILE_BYTES)")
    return raw


def load_document(path: Path, rel: str, max_bytes: int, meta: dict[str, str] | None = None) -> Document:
    """Load one file, or one feed item named "<feed file>#<key>"; raises SkipFile with the reason
    when it cannot be indexed."""
    suffix = path.suffix.lower()
    if feed_of(rel) and not path.exists():
        feed = path.with_name(path.name[:path.name.rindex("#")])
        found = [d for d in load_documents(feed, feed_of(rel), max_bytes, meta) if d.file == rel]
        if not found:
            raise SkipFile("the feed no longer has this item")
        return found[0]
    if suffix in FEED_SUFFIXES:
        raise SkipFile("an RSS/Atom feed holds several articles: read it with load_documents")
    raw = _read(path, max_bytes)
    meta = meta or {}
    if suffix in (".html", ".htm"):
        from .html_text import article_text
        try:
            text, title, date = article_text(decode_text(raw))
            date = iso_date(date)
        except RecursionError:
            raise SkipFile("HTML nested too deeply to parse") from None
        if not text.strip():
            raise SkipFile("no article text found in the page")
        kind = "html"
    elif suffix == ".pdf":
        text, title, date = _pdf_text(raw)
        kind = "pdf"
    else:
        text = decode_text(raw)
        title, date = _front_matter(text) if suffix != ".txt" else ("", "")
        kind = "md" if suffix != ".txt" else "txt"
    if not text.strip():
        raise SkipFile("no article text found")
    date = meta.get("date") or date or date_in_text(text)
    title = meta.get("title") or title
    return Document(file=rel, text=text, kind=kind, title=title, date=date)


_FRONT = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.S)


def _front_matter(text: str) -> tuple[str, str]:
    match = _FRONT.match(text)
    if not match:
        return "", ""
    fields = dict(
        (k.strip().lower(), v.strip().strip("\"'"))
        for k, _, v in (line.partition(":") for line in match.group(1).splitlines()) if v
    )
    return fields.get("title", ""), iso_date(fields.get("date", ""))


def _pdf_text(raw: bytes) -> tuple[str, str, str]:
    import io

    try:
        from pypdf import PdfReader
    except ImportError:
        raise SkipFile("PDF support needs pypdf: pip install pypdf") from None
    # pypdf logs warnings about broken files; unconfigured, Python would print them on stderr
    # (into `--json` pipes). The skip reason already says what is wrong.
    logger = logging.getLogger("pypdf")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    try:
        reader = PdfReader(io.BytesIO(raw))
        pages = [page.extract_text() or "" for page in reader.pages]
        title = str((reader.metadata or {}).get("/Title") or "")
    except Exception as exc:  # pypdf raises many types on broken files
        raise SkipFile(f"unreadable PDF ({type(exc).__name__})") from None
    return "\n\n".join(p.strip() for p in pages if p.strip()), title, ""
