"""Citations belong to the code: map the [S#] labels of a draft to file, offsets and quote.

Loose label spellings are normalised, lead-ins ("According to [S1], ...") moved to the end, labels
that were not handed out dropped. Which source carries a sentence that cites none is a check's
decision (`checks.cite`), handed in as `cite`; nothing here judges support.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from ..labels import LABEL, Source, strip_labels
from ..sentences import answer_sentences, split_sentences
from ..text_utils import content_terms
from ..types import Citation

# Filler a model adds around labels ("according to source [S1]"): removed with the label.
_FILLER = re.compile(r",?\s*\(?(?:according to|as stated in|as mentioned in|as per|as reported in|from|see)"
                     r"(?:\s+(?:the\s+)?(?:sources?|articles?))?\)?(?=\s*[.!?]?$)", re.I)

# (sentence without labels, the labels it cites) -> labels to add to it.
CiteFn = Callable[[str, list[str]], list[str]]


def lexical_support(sentence: str, passage: str) -> float:
    """Share of the sentence's content words found in the passage."""
    terms = set(content_terms(LABEL.sub(" ", sentence)))
    if not terms:
        return 0.0
    found = set(content_terms(passage))
    return len(terms & found) / len(terms)


def best_quote(sentence: str, source: Source) -> tuple[int, int, str]:
    """The sentence of the source that best matches the answer sentence, with file offsets."""
    spans = split_sentences(source.text)
    if not spans:
        return source.start, source.end, source.text
    best = max(spans, key=lambda s: (lexical_support(sentence, source.text[s.start:s.end]), -s.start))
    return source.start + best.start, source.start + best.end, source.text[best.start:best.end]


@dataclass
class Resolution:
    """The answer after label resolution: its text, citations, and the sentences with and without a label."""

    text: str
    citations: list[Citation] = field(default_factory=list)
    uncited: list[str] = field(default_factory=list)
    cited_sentences: list[str] = field(default_factory=list)  # every sentence that carries a label


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


# Lead-ins that wrap labels: "According to [S1], ...", "Source [S2] states that ...".
_LEAD_IN = re.compile(r"^\s*(?:(?:according to|as (?:stated|reported|mentioned) in|based on|per)\s+(?:the\s+)?"
                      r"(?:sources?\s*)?(?P<a>(?:\[S\d+\]\s*(?:,|and)?\s*)+),?"
                      r"|(?:the\s+)?sources?\s*(?P<b>(?:\[S\d+\]\s*(?:,|and)?\s*)+)\s*(?:states?|says?|confirms?|"
                      r"mentions?|reports?|shows?|notes?)\s+(?:that\s+)?)\s*", re.I)


def _move_lead_in(sentence: str) -> str:
    """'According to [S1], Japan will ...' -> 'Japan will ... [S1]'."""
    m = _LEAD_IN.match(sentence)
    if not m or not sentence[m.end():].strip():
        return sentence
    labels = "".join(f"[S{n}]" for n in LABEL.findall(m.group("a") or m.group("b")))
    rest = sentence[m.end():]
    return rest[:1].upper() + rest[1:] + " " + labels


def _unfinished(sentence: str) -> bool:
    """A last sentence cut off by the answer's token limit: no closing punctuation and no label
    ("... went for £10,000 [S1]. The Jimi Hend")."""
    return not LABEL.search(sentence) and not sentence.rstrip().endswith((".", "!", "?", '"', "”", "'", ")"))


def resolve(answer: str, sources: list[Source], cite: CiteFn | None = None) -> Resolution:
    """Resolve labels to citations (file, offsets, the best-matching quote) and drop unknown labels.
    `cite` may add labels to a sentence (a citation it adds is marked `inferred`); a sentence left
    with no label is `uncited`."""
    answer = normalize_labels(answer)
    by_label = {s.label: s for s in sources}
    out = Resolution(text="")
    seen: set[tuple[str, int, int, str]] = set()
    sentences_out: list[str] = []
    sentences = answer_sentences(answer)
    for i, sentence in enumerate(sentences):
        if i and i == len(sentences) - 1 and _unfinished(sentence):
            continue  # the draft ran out of tokens mid-sentence: not a claim
        sentence = _move_lead_in(sentence)
        known = [lab for lab in dict.fromkeys(f"S{n}" for n in LABEL.findall(sentence)) if lab in by_label]
        plain = strip_labels(sentence).strip()
        plain = re.sub(r"\s+([.,;!?])", r"\1", re.sub(r"\s{2,}", " ", plain))
        plain = _FILLER.sub("", plain.rstrip(".!?")).strip() + (plain[-1] if plain and plain[-1] in ".!?" else "")
        if not re.search(r"[A-Za-z0-9]", plain):
            continue  # a sentence that was only labels
        added = [lab for lab in (cite(plain, known) if cite else []) if lab in by_label and lab not in known]
        if not known and not added:
            out.uncited.append(plain)
            sentences_out.append(plain)
            continue
        for lab in known + added:
            start, end, quote = best_quote(plain, by_label[lab])
            key = (lab, start, end, by_label[lab].file)
            if key not in seen:
                seen.add(key)
                out.citations.append(Citation(label=lab, file=by_label[lab].file, start=start, end=end,
                                              quote=quote, inferred=not known or lab in added))
        body = plain[:-1] if plain.endswith((".", "!", "?")) else plain
        stop = plain[-1] if plain.endswith((".", "!", "?")) else "."
        sentences_out.append(f"{body} {''.join(f'[{lab}]' for lab in known + added)}{stop}")
        out.cited_sentences.append(sentences_out[-1])
    out.text = " ".join(sentences_out)
    return out
