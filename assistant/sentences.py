"""The one sentence splitter, at the bottom layer: indexing, evidence, citations, cleaning and the
fake models all cut text with it. Hand-written rather than spaCy's sentencizer or pySBD because
every span must be an exact [start, end) slice of the source (offsets are what citations point
at) and it must run on every article at indexing speed; it is a regex with an abbreviation list."""

from __future__ import annotations

import re
from dataclasses import dataclass

_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "sen", "rep", "gov", "gen", "lt", "col", "st", "jr", "sr",
    "inc", "ltd", "co", "corp", "no", "vs", "etc", "jan", "feb", "mar", "apr", "jun", "jul", "aug",
    "sep", "sept", "oct", "nov", "dec", "u.s", "u.k", "u.n", "e.g", "i.e", "a.m", "p.m",
}
# A sentence ends at . ! ? (optionally followed by closing quotes/brackets) before whitespace.
_END = re.compile(r"[.!?][\"'”’)\]]*(?=\s)")
_NEXT_CHAR = re.compile(r"\s*(\S)")


@dataclass(frozen=True)
class Span:
    """A [start, end) slice of the source text."""

    start: int
    end: int


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[Span]:
    """Split text[start:end] into sentence spans; line breaks also end sentences."""
    end = len(text) if end is None else end
    spans: list[Span] = []
    for line in re.finditer(r"[^\n]+", text[start:end]):
        ls, le = start + line.start(), start + line.end()
        cursor = ls
        for match in _END.finditer(text, ls, le):
            # Look back a word's length only: slicing from `cursor` is quadratic on long lines.
            word = re.search(r"([\w.]+)[.!?][\"'”’)\]]*$", text[max(cursor, match.start() - 40):match.end()])
            if word and text[match.start()] == "." and (
                    word.group(1).lower() in _ABBREVIATIONS or (len(word.group(1)) == 1 and word.group(1).isalpha())):
                continue
            nxt = _NEXT_CHAR.match(text, match.end(), le)
            if nxt and nxt.group(1).islower():
                continue
            _append(text, spans, cursor, match.end())
            cursor = match.end()
        _append(text, spans, cursor, le)
    return spans


def _append(text: str, spans: list[Span], s: int, e: int) -> None:
    while s < e and text[s].isspace():
        s += 1
    while e > s and text[e - 1].isspace():
        e -= 1
    if e > s:
        spans.append(Span(s, e))


# An answer's labels ("... title [S1]. Next ...", "... title. [S1] Next ...") close the sentence before them.
_AFTER_LABEL = re.compile(r"(?<=\])\s+(?=[A-Z0-9\"“])")
# Bracketed labels of any engine's style: "[S1]", "[2]", "[Source 1, Source 2]".
_LABEL_ONLY = re.compile(r"\[[^\]\n]{0,80}\]")
_MARKER = re.compile(r"\d{1,3}[.)]")


def answer_sentences(text: str) -> list[str]:
    """Split an answer into sentences, keeping trailing labels with their sentence: the sentence
    splitter, then a cut after a label that a capital follows; a piece holding only labels joins the
    sentence before it."""
    text = text.strip()
    pieces = [p for sp in split_sentences(text) for p in _AFTER_LABEL.split(text[sp.start:sp.end])]
    out: list[str] = []
    marker = ""
    for part in (p.strip() for p in pieces if p and p.strip()):
        if _MARKER.fullmatch(part):
            marker = f"{marker}{part} "  # a list item's number opens the item that follows it
        elif out and not marker and not re.search(r"[A-Za-z0-9]", _LABEL_ONLY.sub("", part)):
            out[-1] = f"{out[-1]} {part}"
        else:
            out.append(marker + part)
            marker = ""
    return out + ([marker.strip()] if marker else [])
