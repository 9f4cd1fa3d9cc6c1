"""Understand a question once: its kind, its named entities (from NER) and what an answer must hold."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..backends import ner
from ..backends.ner import Entity

# What kind of entity answers each kind of question (spaCy labels).
WANTS: dict[str, frozenset[str]] = {
    "who": frozenset({"PERSON", "ORG", "GPE"}),
    "when": frozenset({"DATE", "TIME"}),
    "how_many": frozenset({"CARDINAL", "MONEY", "PERCENT", "QUANTITY", "ORDINAL"}),
}
# Entities that name what a question is about (dates and numbers are what answers supply).
TOPICAL = frozenset({"PERSON", "ORG", "GPE", "NORP", "FAC", "LOC", "PRODUCT", "EVENT", "WORK_OF_ART", "LAW"})

# A follow-up may open with a conjunction: "And who did he meet?"
_OPEN = r"^\W*(?:(?:and|but|so|then)\s+)?"
_DURATION = re.compile(r"\bhow (old|long)\b", re.I)
# English interrogative forms: grammar of the question language, not words of any corpus.
_KINDS = (
    ("how_many", re.compile(r"\bhow (many|much|long|old|far|big|high|fast)\b|\bwhat (percentage|share|proportion|"
                            r"number|amount|sum|price|figure|score)\b", re.I)),
    ("when", re.compile(_OPEN + r"(when\b|(on|in|by) (what|which) (date|day|year|month)\b|(what|which) (date|day|year|month)\b)", re.I)),
    ("who", re.compile(_OPEN + r"(who|whom|whose)\b|\bwhat (is|was|were|are) the names? of\b|\b(which|what) (\w+ ){0,2}(person|man|woman|company|firm|team|club|player|"
                       r"minister|group|organisation|organization|band|singer|actor|actress)\b", re.I)),
    ("why", re.compile(_OPEN + r"why\b|\bwhat (was|is|were|are) the reasons?\b|\bfor what reason\b", re.I)),
    ("how", re.compile(_OPEN + r"how\b", re.I)),
    ("where", re.compile(_OPEN + r"where\b|\b(in|at) which (city|country|place|venue)\b", re.I)),
    ("yes_no", re.compile(_OPEN + r"(is|are|was|were|do|does|did|has|have|had|can|could|will|would|should)\b", re.I)),
)


# Questions about the present state of things: English tense and time words (grammar of the
# question language, not words of any corpus). "Has China lifted the ban?", "Who is minister now?"
_CURRENT = re.compile(r"\b(latest|now|currently|current|still|yet|so far|to date|these days|most recent|"
                      r"at present|any ?more|nowadays)\b|" + _OPEN + r"(has|have)\b", re.I)


@dataclass(frozen=True)
class Question:
    """A question as every check reads it."""

    text: str
    kind: str
    entities: tuple[Entity, ...] = field(default=())

    @property
    def wants(self) -> frozenset[str]:
        """Entity labels an answer to this kind of question must contain (empty: any content)."""
        wants = WANTS.get(self.kind, frozenset())
        if self.kind == "how_many" and _DURATION.search(self.text):
            wants |= {"DATE", "TIME"}  # spaCy tags ages and spans ("18 years", "three weeks") as DATE
        return wants

    @property
    def topics(self) -> tuple[str, ...]:
        """Names the question is about (people, organisations, places, events), as written."""
        return tuple(dict.fromkeys(e.text for e in self.entities if e.label in TOPICAL))

    @property
    def current(self) -> bool:
        """True for a question about how things stand now (the newest evidence should win); a
        question that names its own date is about that date instead."""
        return bool(_CURRENT.search(self.text)) and not self.dates

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
