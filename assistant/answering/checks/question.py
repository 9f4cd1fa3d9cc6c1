"""Understand a question once: its kind, its named entities (from NER) and what an answer must hold."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

from ...backends import ner
from ...backends.ner import Entity

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
    """who / when / how_many / why / how / where / yes_no / what, from the interrogative form alone
    (the fallback when the parser is not installed: the first matching form wins)."""
    for kind, pattern in _KINDS:
        if pattern.search(text):
            return kind
    return "what"


# What the head noun of "which/what N" asks for: nouns of the question language, not of any corpus.
_NOUN_KINDS = {
    "when": {"date", "day", "year", "month", "week", "decade", "century"},
    "how_many": {"percentage", "share", "proportion", "number", "amount", "sum", "price", "figure", "score",
                 "total", "cost", "fee", "rate", "value", "level", "margin", "size", "age", "fine"},
    "who": {"person", "man", "woman", "company", "firm", "team", "club", "player", "minister", "group",
            "organisation", "organization", "band", "singer", "actor", "actress", "people",
            "country", "nation", "party", "body"},
    "where": {"city", "place", "venue", "town", "region", "location", "stadium", "ground"},
}
_WH = {"WDT", "WP", "WP$", "WRB"}
_RELATIVE = {"relcl", "acl"}
_SUBORDINATE = {"advcl", "csubj", "ccomp"}
_AUX_FIRST = {"is", "are", "was", "were", "do", "does", "did", "has", "have", "had", "can", "could", "will",
              "would", "should"}


def parsed_kind(tokens: Sequence[ner.Token], nouns: bool = True) -> str:
    """The kind from the parse: the wh-word of the main clause (not one inside "When X relaunched...,"
    or "the minister who..."), read with its head noun ("which year", "what price") or adjective
    ("how many"). `nouns=False` ignores the head noun (an ablation of `_NOUN_KINDS`)."""
    def chain(i: int) -> list[int]:
        out = [i]
        while tokens[out[-1]].head != out[-1] and len(out) < len(tokens):
            out.append(tokens[out[-1]].head)
        return out

    whs = [i for i, t in enumerate(tokens) if t.tag in _WH]

    def inside(i: int, deps: set[str]) -> bool:
        return any(tokens[j].dep in deps for j in chain(i)[:-1])

    # A wh-word inside a relative clause ("the minister who...") never asks the question. One inside
    # an adverbial clause ("When X relaunched..., what...?") gives way to another wh-word, if there is
    # one: with a single wh-word, a clause label is more likely the small parser's mistake.
    main = [i for i in whs if not inside(i, _RELATIVE)]
    if len(main) > 1:
        main = [i for i in main if not inside(i, _SUBORDINATE)] or main
    if not whs or not main:
        first = tokens[0].text.lower() if tokens else ""
        if first in ("and", "but", "so", "then") and len(tokens) > 1:
            first = tokens[1].text.lower()
        return "yes_no" if first in _AUX_FIRST else "what"
    i = main[0]
    word = tokens[i].text.lower()
    head = tokens[tokens[i].head]
    if word in ("when", "where", "why"):
        return word
    if word == "how":
        return "how_many" if head.tag in ("JJ", "RB", "JJR", "RBR") and tokens[i].head != i else "how"
    if word in ("who", "whom"):
        return "who"
    if word == "whose":
        return "what"  # "Whose network...": the answer is a possessor named any way, not a type to check
    # what / which: the noun they ask about ("which year", "what was the price of").
    noun = head.text.lower() if tokens[i].dep == "det" else ""
    if not noun and (word == "which" or tokens[i].tag == "WDT"):
        # The small parser sometimes attaches "which" to the verb: take the noun right after it.
        for t in tokens[i + 1:i + 5]:
            if t.tag.startswith(("VB", "MD")) or t.tag in (".", ","):
                break
            if t.tag in ("NN", "NNS"):
                noun = t.text.lower()
                break
    if not noun:
        root = next((t for t in tokens if t.dep == "ROOT"), None)
        if root is not None and root.text.lower() in ("is", "was", "are", "were"):
            subj = [t for t in tokens if tokens[t.head] is root and t.dep in ("nsubj", "attr") and t.tag in ("NN", "NNS")]
            noun = subj[0].text.lower() if subj else ""
            if noun in ("name", "names") and nouns:
                return "who"  # "What is the name of the reporter...?" asks for a name
    for kind, words in _NOUN_KINDS.items():
        if nouns and noun in words:
            return kind
    return "what"


def understand(text: str, use_ner: bool = True) -> Question:
    """Parse the question once: kind (from the dependency parse when spaCy is installed) and named
    entities (none when NER is off or not installed)."""
    entities = ner.entities(text) if use_ner and ner.available() else ()
    kind = parsed_kind(ner.parse(text)) if use_ner and ner.available() else question_kind(text)
    return Question(text=text, kind=kind, entities=tuple(entities))
