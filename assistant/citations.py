"""Citations belong to the code: map [S#] labels to verbatim quotes, check support, infer missing ones."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Sequence

from .chunking import split_sentences
from .text_utils import MONTHS, STOPWORDS, content_terms, tokens
from .types import Citation

LABEL = re.compile(r"\[S(\d+)\]")
_WORD = re.compile(r"[A-Za-z][A-Za-z'’.-]*|\d[\d,.]*")
# Filler a model adds around labels ("according to source [S1]"): removed with the label.
_FILLER = re.compile(r",?\s*\(?(?:according to|as stated in|as mentioned in|as per|as reported in|from|see)"
                     r"(?:\s+(?:the\s+)?(?:sources?|articles?))?\)?(?=\s*[.!?]?$)", re.I)
# Capitalised words that carry no identity (corporate suffixes, titles, sentence glue).
_NOT_NAMES = {"inc", "ltd", "co", "corp", "mr", "mrs", "ms", "the", "minister", "foreign", "president",
              "premier", "prime", "according"}
# Thresholds calibrated on evals/support_labels.jsonl (see evals/README.md).
LEXICAL_MIN = 0.5
SEMANTIC_MIN = 0.6

EmbedFn = Callable[[Sequence[str]], list[list[float]]]


@dataclass(frozen=True)
class Source:
    """A labelled passage handed to the model: a verbatim span of one file."""

    label: str
    file: str
    start: int
    end: int
    text: str
    date: str = ""
    title: str = ""

    @property
    def evidence(self) -> str:
        """The text a claim may rest on: the passage plus its publication date in words."""
        return f"{self.text} {date_words(self.date)}".strip()


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


def critical_terms(sentence: str) -> set[str]:
    """Numbers, months and capitalised names: they must appear verbatim in a supporting passage."""
    out: set[str] = set()
    words = _WORD.findall(LABEL.sub(" ", sentence))
    for n, word in enumerate(words):
        w = word.strip(".,'’-").lower()
        if not w:
            continue
        if w[0].isdigit():
            out.add(w.rstrip(".,"))
        elif w in MONTHS:
            out.add(w)
        elif word[0].isupper() and n > 0 and w not in STOPWORDS and w not in _NOT_NAMES and len(w) > 2:
            out.add(re.sub(r"['’]s$", "", w))
    return out


def lexical_support(sentence: str, passage: str) -> float:
    """Share of the sentence's content words found in the passage."""
    terms = set(content_terms(LABEL.sub(" ", sentence)))
    if not terms:
        return 0.0
    found = set(content_terms(passage))
    return len(terms & found) / len(terms)


def missing_critical(sentence: str, passage: str) -> set[str]:
    """Critical terms of the sentence that the passage lacks."""
    passage_words = set(tokens(passage)) | {t.rstrip(".,") for t in re.findall(r"\d[\d,.]*", passage)}
    # Also the words as critical_terms spells them ("tokyo-seoul", "u.s"), so a sentence supports itself.
    passage_words |= {re.sub(r"['’]s$", "", w.strip(".,'’-").lower()) for w in _WORD.findall(passage)}
    return {t for t in critical_terms(sentence) if t not in passage_words and t.replace(",", "") not in passage_words}


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    na = sum(x * x for x in a) ** 0.5
    nb = sum(y * y for y in b) ** 0.5
    return dot / (na * nb) if na and nb else 0.0


def supports(sentence: str, passage: str, embed: EmbedFn | None = None) -> bool:
    """Does the passage support the sentence? Names, numbers and dates must match verbatim,
    and the wording must overlap (lexically, or by embedding similarity when an embedder is given)."""
    if missing_critical(sentence, passage):
        return False
    if lexical_support(sentence, passage) >= LEXICAL_MIN:
        return True
    if embed is None:
        return False
    a, b = embed([LABEL.sub(" ", sentence), passage])
    return _cosine(a, b) >= SEMANTIC_MIN


def strip_labels(text: str) -> str:
    """Remove every [S#] label, including one spelled around another ("[S[S1]9]")."""
    while True:
        stripped = LABEL.sub("", text)
        if stripped == text:
            return stripped
        text = stripped


def answer_sentences(text: str) -> list[str]:
    """Split an answer into sentences, keeping trailing labels with their sentence."""
    text = text.strip()
    if not text:
        return []
    parts = re.split(r"(?<=[.!?])\s+(?=[A-Z\"“])|(?<=\])\s+(?=[A-Z\"“])|\n+", text)
    out: list[str] = []
    for part in (p.strip() for p in parts if p and p.strip()):
        # A line holding only labels belongs to the sentence before it.
        if out and not re.search(r"[A-Za-z0-9]", LABEL.sub("", part)):
            out[-1] = f"{out[-1]} {part}"
        else:
            out.append(part)
    return out


def best_quote(sentence: str, source: Source) -> tuple[int, int, str]:
    """The sentence of the source that best matches the answer sentence, with file offsets."""
    spans = split_sentences(source.text)
    if not spans:
        return source.start, source.end, source.text
    best = max(spans, key=lambda s: (lexical_support(sentence, source.text[s.start:s.end]), -s.start))
    return source.start + best.start, source.start + best.end, source.text[best.start:best.end]


def _infer_sources(sentence: str, sources: list[Source], embed: EmbedFn | None) -> list[str]:
    """Labels of the source (or pair of sources) that together support an uncited sentence."""
    ranked = sorted(sources, key=lambda s: -lexical_support(sentence, s.text))
    for s in ranked:
        if supports(sentence, s.evidence, embed):
            return [s.label]
    # Small models merge two passages into one sentence (names from one, the date from another).
    for i, first in enumerate(ranked[:3]):
        for second in ranked[i + 1:]:
            if supports(sentence, f"{first.evidence} {second.evidence}", embed):
                return [first.label, second.label]
    return []


@dataclass
class Resolution:
    """The answer after label resolution: cleaned text, citations and flagged sentences."""

    text: str
    citations: list[Citation] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    uncited: list[str] = field(default_factory=list)
    dropped_labels: list[str] = field(default_factory=list)
    sentences: int = 0


# Label spellings small models produce instead of [S1]: [Source: S1], [Source 1], (S1), [S1, S2].
_LOOSE_LABEL = re.compile(r"[\[(]\s*(?:sources?\s*:?\s*)?((?:S?\d+\s*(?:,|and|;)?\s*)+)[\])]", re.I)


def normalize_labels(answer: str) -> str:
    """Rewrite loose label spellings into [S#] form (bare numbers only when prefixed 'Source')."""
    def fix(match: re.Match[str]) -> str:
        whole, body = match.group(0), match.group(1)
        if not re.search(r"S\d", body, re.I) and not re.match(r"[\[(]\s*sources?", whole, re.I):
            return whole  # "(2019)" or "[1]" is not a label
        return "".join(f"[S{n}]" for n in re.findall(r"\d+", body))
    return _LOOSE_LABEL.sub(fix, answer)


def resolve(answer: str, sources: list[Source], embed: EmbedFn | None = None) -> Resolution:
    """Resolve labels to citations, drop unknown labels, infer missing ones, flag unsupported sentences."""
    answer = normalize_labels(answer)
    by_label = {s.label: s for s in sources}
    out = Resolution(text="")
    seen: set[tuple[str, int, int, str]] = set()
    sentences_out: list[str] = []
    for sentence in answer_sentences(answer):
        labels = [f"S{n}" for n in LABEL.findall(sentence)]
        known = [lab for lab in dict.fromkeys(labels) if lab in by_label]
        out.dropped_labels.extend(lab for lab in labels if lab not in by_label)
        plain = strip_labels(sentence).strip()
        plain = re.sub(r"\s+([.,;!?])", r"\1", re.sub(r"\s{2,}", " ", plain))
        plain = _FILLER.sub("", plain.rstrip(".!?")).strip() + (plain[-1] if plain and plain[-1] in ".!?" else "")
        if not re.search(r"[A-Za-z0-9]", plain):
            continue  # a sentence that was only labels
        out.sentences += 1
        inferred = False
        if not known:
            matched = _infer_sources(plain, sources, embed)
            if not matched:
                out.uncited.append(plain)
                sentences_out.append(plain)
                continue
            known, inferred = matched, True
        cited_text = " ".join(by_label[lab].evidence for lab in known)
        supported = supports(plain, cited_text, embed)
        extra: list[str] = []
        if not supported:
            # Small models often cite the wrong one of two passages: when another handed-out
            # source completes the support, cite it too (marked inferred).
            for other in sources:
                if other.label not in known and supports(plain, cited_text + " " + other.evidence, embed):
                    extra, supported = [other.label], True
                    break
        if not supported:
            out.unsupported.append(plain)
        for lab in known + extra:
            start, end, quote = best_quote(plain, by_label[lab])
            key = (lab, start, end, by_label[lab].file)
            if key not in seen:
                seen.add(key)
                out.citations.append(Citation(label=lab, file=by_label[lab].file, start=start, end=end,
                                              quote=quote, inferred=inferred or lab in extra))
        body = plain[:-1] if plain.endswith((".", "!", "?")) else plain
        stop = plain[-1] if plain.endswith((".", "!", "?")) else "."
        sentences_out.append(f"{body} {''.join(f'[{lab}]' for lab in known + extra)}{stop}")
    out.text = " ".join(sentences_out)
    return out
