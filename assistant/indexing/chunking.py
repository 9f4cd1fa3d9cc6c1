"""Sentence-aware chunking with overlap; every chunk is a verbatim slice of the source text."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..reading.cleaning import keep_spans
from ..sentences import Span, split_sentences

__all__ = ["RawChunk", "Span", "chunk_text", "content_hash", "split_sentences"]

def _hard_split(text: str, span: Span, size: int) -> list[Span]:
    # A "sentence" longer than a chunk (a huge line) is cut at whitespace near the limit.
    out: list[Span] = []
    s = span.start
    while span.end - s > size:
        cut = text.rfind(" ", s + size // 2, s + size)
        cut = cut if cut > s else s + size
        out.append(Span(s, cut))
        s = cut
        while s < span.end and text[s].isspace():
            s += 1
    if span.end > s:
        out.append(Span(s, span.end))
    return out


@dataclass(frozen=True)
class RawChunk:
    """A chunk before it gets ids and metadata."""

    start: int
    end: int
    text: str


def chunk_text(text: str, size: int, overlap: int,
               spans: list[tuple[int, int]] | None = None) -> list[RawChunk]:
    """Clean and chunk `text`: sentences packed up to `size` chars, `overlap` chars repeated.

    `spans` are the kept spans of `text` when the caller already has them (see `keep_spans`).
    """
    chunks: list[RawChunk] = []
    for block_start, block_end in (keep_spans(text) if spans is None else spans):
        sentences: list[Span] = []
        for sentence in split_sentences(text, block_start, block_end):
            sentences.extend(_hard_split(text, sentence, size))
        i = 0
        while i < len(sentences):
            j = i
            while j + 1 < len(sentences) and sentences[j + 1].end - sentences[i].start <= size:
                j += 1
            s, e = sentences[i].start, sentences[j].end
            chunks.append(RawChunk(s, e, text[s:e]))
            if j + 1 >= len(sentences):
                break
            # Step back over trailing sentences that fit in the overlap budget.
            k = j + 1
            while k - 1 > i and sentences[j].end - sentences[k - 1].start <= overlap:
                k -= 1
            i = k
    return chunks


def content_hash(text: str) -> str:
    """Short content hash of a chunk's text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
