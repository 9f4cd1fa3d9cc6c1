"""Read RSS and Atom files: every item becomes its own article, named "<feed file>#<item key>"."""

from __future__ import annotations

import hashlib
import io
import re
import time
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from ..dates import iso_date
from ..errors import SkipFile

FEED_SUFFIXES = (".xml", ".rss", ".atom")
KEY_CHARS = 12
_ITEM_NAME = re.compile(rf"#[0-9a-f]{{{KEY_CHARS}}}(?:-\d+)?\Z")


@dataclass(frozen=True)
class FeedItem:
    """One item of a feed: its stable key, title, link, ISO date and plain text."""

    key: str
    title: str
    link: str
    date: str
    text: str


def item_name(feed_rel: str, key: str) -> str:
    """The citation name of a feed item."""
    return f"{feed_rel}#{key}"


def feed_of(name: str) -> str:
    """The feed file an item name belongs to, or "" when `name` is not an item name.

    A real file cannot look like one: its suffix (".xml#...") is not a supported type."""
    match = _ITEM_NAME.search(name)
    feed = name[:match.start()] if match else ""
    return feed if PurePosixPath(feed).suffix.lower() in FEED_SUFFIXES else ""


def parse_feed(raw: bytes) -> list[FeedItem]:
    """The items of an RSS/Atom document that have text; raises SkipFile when it is no feed."""
    import feedparser


    parsed = feedparser.parse(io.BytesIO(raw))  # bytes, never a URL: nothing is fetched
    entries = list(parsed.get("entries") or [])
    if not entries:
        if parsed.get("bozo"):
            raise SkipFile(f"not an RSS/Atom feed: {_reason(parsed.get('bozo_exception'))}")
        if not parsed.get("version"):
            raise SkipFile("not an RSS/Atom feed: no RSS or Atom root element")
        raise SkipFile("RSS/Atom feed has no items")
    items: list[FeedItem] = []
    keys: set[str] = set()
    for entry in entries:
        title = " ".join(str(entry.get("title") or "").split())
        body = _body(entry)
        if not (title or body):
            continue
        link = str(entry.get("link") or "")
        # The id (or link) names an item, so new items added to the feed never rename old ones.
        identity = str(entry.get("id") or link or f"{title}\0{body}")
        key = base = hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()[:KEY_CHARS]
        while key in keys:  # a feed repeating an id: later copies get -2, -3, ...
            key = f"{base}-{len([k for k in keys if k.startswith(base)]) + 1}"
        keys.add(key)
        text = "\n\n".join(part for part in (title, body) if part)
        items.append(FeedItem(key=key, title=title, link=link, date=_date(entry), text=text))
    if not items:
        raise SkipFile("RSS/Atom feed has no items with text")
    return items


def _reason(exc: Any) -> str:
    text = re.sub(r"^<unknown>:(\d+):(\d+):\s*", r"line \1, column \2: ", " ".join(str(exc or "").split()))
    return text[:200] or "unreadable XML"


def _body(entry: Any) -> str:
    # Full content (content:encoded, Atom <content>) when present, else the summary.
    content = [c for c in entry.get("content") or [] if str(c.get("value") or "").strip()]
    detail = content[0] if content else (entry.get("summary_detail") or {"value": entry.get("summary") or ""})
    value, kind = str(detail.get("value") or ""), str(detail.get("type") or "text/html")
    if "html" in kind or "<" in value:
        from .html_text import html_to_text

        return html_to_text(f"<html><body>{value}</body></html>")[0]
    return "\n\n".join(" ".join(p.split()) for p in re.split(r"\n\s*\n", value) if p.strip())


def _date(entry: Any) -> str:
    # feedparser parses RFC 822 and ISO dates into UTC struct_time; a date it could not read is kept
    # as text for the loader's own date parser.
    for field in ("published", "updated", "created"):
        parsed = entry.get(f"{field}_parsed")
        if parsed:
            return time.strftime("%Y-%m-%d", parsed)
    for field in ("published", "updated"):
        if entry.get(field):

            return iso_date(str(entry[field]))
    return ""
