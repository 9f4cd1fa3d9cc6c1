"""Dates at the bottom layer: ISO publication dates, parsed from what articles and feeds state,
and their epoch seconds for filters and ordering."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from .text_utils import MONTHS


def date_to_epoch(date: str) -> int:
    """Convert an ISO date (YYYY-MM-DD...) to epoch seconds, 0 when empty or invalid."""
    if not date:
        return 0
    # Partial dates (YYYY-MM, YYYY) stand for their first day.
    padded = (date[:10] + "-01-01"[len(date[:10]) - 4:]) if len(date[:10]) in (4, 7) else date[:10]
    try:
        parsed = datetime.fromisoformat(padded)
    except ValueError:
        return 0
    return int(parsed.replace(tzinfo=timezone.utc).timestamp())


_DATE_LINE = re.compile(
    r"^(?:published|updated|posted|date)\s*[:\-]?\s*(?:on\s+)?(.{6,40})$", re.I | re.M)


# A wire dateline opening a paragraph: "BEIJING, April 2, 2023 (Reuters) -", "LONDON, 5 March 2005 -".
_WIRE_DATELINE = re.compile(
    r"^[A-Z][A-Z .'’-]{1,40},\s+((?:[A-Z][a-z]+\.?\s+\d{1,2},?|\d{1,2}\s+[A-Z][a-z]+\.?,?)\s+\d{4})\b", re.M)


def date_in_text(text: str) -> str:
    """The publication date an article states in its opening (a "Published:" line or a wire
    dateline), as YYYY-MM-DD; "" when none. A date mentioned in the story does not count."""
    match = _DATE_LINE.search(text[:2000])
    if match and iso_date(match.group(1)):
        return iso_date(match.group(1))
    wire = _WIRE_DATELINE.search(text[:2000])
    return iso_date(wire.group(1)) if wire else ""


def iso_date(value: str) -> str:
    """"2023-04-02", "April 2, 2023", "Sunday, 2 April 2023" -> "2023-04-02"; "" when not a full date.
    Hand-written for these three forms: dateparser (used for relative dates in timelines) also
    reads "2" or "May" alone as dates, which would give articles publication dates they do not state."""
    value = value.strip().rstrip(".")
    iso = re.match(r"(\d{4})-(\d{2})-(\d{2})", value)
    if iso:
        return _ymd(iso.group(1), int(iso.group(2)), iso.group(3))
    words = re.match(r"(?:[A-Za-z]+,?\s+)?([A-Za-z]+)\.?\s+(\d{1,2}),?\s+(\d{4})", value)
    if words and _month(words.group(1)):
        return _ymd(words.group(3), _month(words.group(1)), words.group(2))
    words = re.match(r"(?:[A-Za-z]+,?\s+)?(\d{1,2})\s+([A-Za-z]+)\.?,?\s+(\d{4})", value)
    if words and _month(words.group(2)):
        return _ymd(words.group(3), _month(words.group(2)), words.group(1))
    return ""


def _month(word: str) -> int:
    # Full names and the usual abbreviations ("Dec", "Sept"); 0 when not a month.
    word = word.lower()
    if len(word) < 3:
        return 0
    return next((n for n, name in enumerate(MONTHS, 1) if name.startswith(word)), 0)


def _ymd(year: str, month: int, day: str) -> str:
    value = f"{int(year):04d}-{month:02d}-{int(day):02d}"
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return ""
    return value


def date_words(date: str) -> str:
    """'2024-12-25' -> '25 December 2024' (partial dates give what they have)."""
    parts = date.split("-")
    if not parts or not parts[0].isdigit():
        return ""
    words = [parts[0]]
    if len(parts) > 1 and parts[1].isdigit() and 1 <= int(parts[1]) <= 12:
        words.insert(0, MONTHS[int(parts[1]) - 1].capitalize())
    if len(parts) > 2 and parts[2][:2].isdigit():
        words.insert(0, str(int(parts[2][:2])))
    return " ".join(words)
