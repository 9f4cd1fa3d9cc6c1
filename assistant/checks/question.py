"""Understand a question once: its kind, its named entities (from NER) and what an answer must hold."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..backends import ner
from ..backends.ner import Entity

# What kind of entity answers each kind of question (spaCy labels).
WANTS: dict[str, frozenset[str]] = {
    "who": frozenset({"PERSON", "ORG", "NORP", "GPE"}),
    "when": frozenset({"DATE", "TIME"}),
    "how_many": frozenset({"CARDINAL", "MONEY", "PERCENT", "QUANTITY", "ORDINAL"}),
}
# Entities that name what a question is about (dates and numbers are what answers supply).
TOPICAL = frozenset({"PERSON", "ORG", "GPE", "NORP", "FAC", "LOC", "PRODUCT", "EVENT", "WORK_OF_ART", "LAW"})

# English interrogative forms: grammar of the question language, not words of any corpus.
_KINDS = (
    ("how_many", re.compile(r"\bhow (many|much|long|old|far|big|high|fast)\b|\bwhat (percentage|share|proportion|"
                            r"number|amount|sum|price|figure|score)\b", re.I)),
    ("when", re.compile(r"^\W*(when\b|(on|in|by) (what|which) (date|day|year|month)\b|(what|which) (date|day|year|month)\b)", re.I)),
    ("who", re.compile(r"^\W*(who|whom|whose)\b|\b(which|what) (person|man|woman|company|firm|team|club|player|"
                       r"minister|group|organisation|organization|band|singer|actor|actress)\b", re.I)),
    ("why", re.compile(r"^\W*why\b|\bwhat (was|is|were|are) the reasons?\b|\bfor what reason\b", re.I)),
    ("how", re.compile(r"^\W*how\b", re.I)),
    ("where", re.compile(r"^\W*where\b|\b(in|at) which (city|country|place|venue)\b", re.I)),
    ("yes_no", re.compile(r"^\W*(is|are|was|were|do|does|did|has|have|had|can|could|will|would|should)\b", re.I)),
)


@dataclass(frozen=True)
class Question:
    """A question as every check reads it."""

    text: str
    kind: str
    entities: tuple[Entity, ...] = field(default=())

    @property
    def wants(self) -> frozenset[str]:
        """Entity labels an answer to this kind of question must contain (empty: any content)."""
        return WANTS.get(self.kind, frozenset())

    @property
    def topics(self) -> tuple[str, ...]:
        """Names the question is about (people, organisations, places, events), as written."""
        return tuple(dict.fromkeys(e.text for e in self.entities if e.label in TOPICAL))

    @property
    def dates(self) -> tuple[str, ...]:
        """Date expressions the question states ("in August 2022")."""
        return tuple(e.text for e in self.entities if e.label in ("DATE", "TIME"))


def question_kind(text: str) -> str:
    """who / when / how_many / why / how / where / yes_no / what."""
    for kind, pattern in _KINDS:
        if pattern.search(text):
            return kind
    return "what"


def understand(text: str, use_ner: bool = True) -> Question:
    """Parse the question once: kind and named entities (none when NER is off or not installed)."""
    entities = ner.entities(text) if use_ner and ner.available() else ()
    return Question(text=text, kind=question_kind(text), entities=tuple(entities))
