"""Remove web boilerplate (icon/navigation lines, captions, sponsored and app-promotion blocks).

Cleaning never rewrites text: it returns the spans of the original text to keep, so every
chunk is a verbatim slice of the file and a quote can be shown exactly.
"""

from __future__ import annotations

import re

from ..settings import IndexSettings

# Bump when the rules change: the version is part of the index fingerprint.
CLEANING_VERSION = "5"  # 5: HTML pages read with trafilatura; RSS/Atom items are articles

_UI_WORDS = re.compile(
    r"Icon|Chevron|Artboard|Created with Sketch|PathLayer|Path Layer|ArrowIcon|Facebook|LinkedIn|"
    r"Twitter|WhatsApp|Pinterest|Reddit|Share this|Print|Mail", re.I)
# A line that opens a trailing promotional block: everything after it is dropped until a
# paragraph long enough to be article prose appears again.
_PROMO_START = re.compile(
    r"^\s*(Sponsored Content|Related (Articles|Stories|Coverage)|Read more:?|"
    r"Recommended( for you)?|Most (Read|Popular)|Discover the all[- ]new .*app|Download (our|the) app.*|"
    r"Sign up for .*newsletter.*|Subscribe( now)?( to .*)?)\s*$", re.I)
_PROMO_LINE = re.compile(
    r"(About Sponsored Content|This content was commissioned by|Sign up for|Subscribe to|"
    r"Download the app|Free access for everyone|Find out more|Click here)", re.I)
# Ad slots sit between paragraphs of the story: drop the line only, not what follows it.
_AD_LINE = re.compile(r"^\s*(Advertisement|ADVERTISEMENT|Ad|Story continues below( this)? advertisement)\s*$", re.I)
# YAML front matter of Markdown files is metadata (read by the loader), not prose.
_FRONT_MATTER = re.compile(r"\A\ufeff?---[ \t]*\r?\n.*?\r?\n---[ \t]*(\r?\n|\Z)", re.S)
_CAPTION_CREDIT = re.compile(r"\((Kyodo|Reuters|AP|AFP|Xinhua|Getty Images|EPA|Bloomberg|File photo)\)\s*$", re.I)


def _is_ui_line(line: str, min_hits: int) -> bool:
    hits = len(_UI_WORDS.findall(line))
    sentence_like = re.search(r"[a-z]{3,}[.!?](\s|$)", line) and len(line.split()) > 6
    return hits >= min_hits and not sentence_like


def _is_caption(line: str) -> bool:
    return len(line) < 200 and bool(_CAPTION_CREDIT.search(line))


def keep_spans(text: str, prose_min: int = IndexSettings.clean_prose_min_chars,
               ui_min_hits: int = IndexSettings.clean_ui_min_hits) -> list[tuple[int, int]]:
    """Return [start, end) spans of `text` that hold article prose, in order (`prose_min` and
    `ui_min_hits`: the settings `clean_prose_min_chars` and `clean_ui_min_hits`).

    Consecutive kept lines merge into one span, so a span never jumps over removed text.
    """
    spans: list[tuple[int, int]] = []
    in_promo = False
    front = _FRONT_MATTER.match(text)
    pos = front.end() if front else 0
    current: list[int] | None = None
    for raw_line in text[pos:].splitlines(keepends=True):
        start, end = pos, pos + len(raw_line)
        pos = end
        line = raw_line.strip()
        if not line:
            continue  # blank lines neither break nor start a span
        drop = False
        if in_promo:
            if len(line) >= prose_min:
                in_promo = False
            else:
                drop = True
        if not drop and _PROMO_START.match(line):
            in_promo, drop = True, True
        if not drop:
            drop = (_is_ui_line(line, ui_min_hits) or _is_caption(line) or bool(_AD_LINE.match(line))
                    or bool(_PROMO_LINE.search(line) and len(line) < prose_min))
        if drop:
            if current:
                spans.append((current[0], current[1]))
            current = None
            continue
        lead = len(raw_line) - len(raw_line.lstrip())
        tail = len(raw_line.rstrip())
        if current is None:
            current = [start + lead, start + tail]
        else:
            current[1] = start + tail
    if current:
        spans.append((current[0], current[1]))
    return spans


def clean_text(text: str) -> str:
    """The kept prose joined by blank lines (for display and tests)."""
    return "\n\n".join(text[s:e] for s, e in keep_spans(text))


def guess_title(text: str, spans: list[tuple[int, int]]) -> str:
    """A title: the first short heading-like line of the kept text, else its first sentence."""
    lines = [line for s, e in spans[:3] for line in text[s:e].splitlines() if line.strip()][:3]
    for line in lines:
        words = line.split()
        if 4 <= len(words) <= 20 and not line.rstrip().endswith((".", "”", '"')):
            return line.strip()
    if not spans:
        return ""
    first = text[spans[0][0]:spans[0][1]]
    sentence = re.split(r"(?<=[.!?])\s", first, maxsplit=1)[0]
    return sentence[:120].strip()
