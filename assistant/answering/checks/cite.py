"""Which sources carry a sentence of the draft that the model left without a label, or cited to a
source that does not carry it alone. Small models often drop labels, and often cite one of two
passages a sentence merges.

A set of sources carries a sentence when every figure written in digits and every month the
sentence gives is in them (dates and numbers are what answers get wrong, so the question's own
never count; "the two other executives" repeats a question's words, and the support check, not
this one, judges whether a number in words is right), every name
(NER: people, organisations, places, events) it gives is in them or in the question, and they
hold at least `cite_overlap_min` (a checks setting; half) of its content words.
"""

from __future__ import annotations

import re
from typing import Sequence

from ...backends import ner
from ...labels import Source, blank_labels
from ...settings import CheckSettings
from ...text_utils import MONTHS, content_terms
from ..citations import lexical_support
from .question import TOPICAL, Question
from .rules import figures

_MONTH = re.compile(r"\b(" + "|".join(sorted(MONTHS, key=len, reverse=True)) + r")\b", re.I)


def carried(q: Question, sentence: str, cited: Sequence[Source], use_ner: bool,
            overlap_min: float = CheckSettings.cite_overlap_min) -> bool:
    """Do these sources together carry the sentence (its figures, months and names, and `overlap_min`
    of its content words; the setting `cite_overlap_min`)?"""
    text = " ".join(s.evidence for s in cited)
    plain = blank_labels(sentence)
    if not figures(plain, digits_only=True) <= figures(text):
        return False
    entities = ner.entities(plain) if use_ner else ()
    # Months a date in the sentence names (with NER, only inside dates: "may" is also a verb).
    months = ({m for e in entities if e.label in ("DATE", "TIME") for m in _months(e.text)} if use_ner
              else _months(plain) - {"may"})
    if not months <= _months(text):
        return False
    words = set(content_terms(text)) | set(content_terms(q.text))
    for e in entities:
        terms = set(content_terms(e.text))
        if e.label in TOPICAL and terms and not terms <= words:
            return False
    return lexical_support(plain, text) >= overlap_min


def _months(text: str) -> set[str]:
    return {m.lower() for m in _MONTH.findall(text)}


def labels_for(q: Question, sentence: str, labels: Sequence[str], sources: Sequence[Source],
               use_ner: bool, overlap_min: float = CheckSettings.cite_overlap_min) -> list[str]:
    """Labels to add to a sentence: for one that cites nothing, the source (or pair of sources)
    that carries it; for one whose cited sources do not carry it, another source that completes
    them. Empty when none does."""
    by_label = {s.label: s for s in sources}
    if labels:
        cited = [by_label[lab] for lab in labels if lab in by_label]
        if carried(q, sentence, cited, use_ner, overlap_min):
            return []
        return next(([o.label] for o in sources if o.label not in labels and carried(q, sentence, cited + [o], use_ner, overlap_min)),
                    [])
    ranked = sorted(sources, key=lambda s: -lexical_support(sentence, s.text))
    for s in ranked:
        if carried(q, sentence, [s], use_ner, overlap_min):
            return [s.label]
    # Small models merge two passages into one sentence (names from one, the date from another).
    for i, first in enumerate(ranked[:3]):
        for second in ranked[i + 1:]:
            if carried(q, sentence, [first, second], use_ner, overlap_min):
                return [first.label, second.label]
    return []
