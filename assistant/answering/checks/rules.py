"""Checks that read named entities (NER), not capitalisation or word lists."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

from ...backends import ner
from ...indexing.chunking import split_sentences
from ...labels import Source
from ...labels import blank_labels, number
from ...text_utils import content_terms
from ...types import Check, Choice, Passage
from .question import TOPICAL, Question
from .verdicts import Verdict

_NUMBER = re.compile(r"\d")
# Entity labels whose text carries a figure an answer may state (spaCy tags ages and spans as DATE).
NUMERIC = frozenset({"CARDINAL", "MONEY", "PERCENT", "QUANTITY", "DATE", "TIME"})
# English number words and scale words: the grammar of numbers, not words of any corpus.
_UNITS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
          "sixteen seventeen eighteen nineteen").split()
_TENS = {w: 10 * (i + 2) for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())}
_WORD_VALUES = {**{w: i for i, w in enumerate(_UNITS)}, **_TENS, "hundred": 100, "dozen": 12}
_SCALES = {"thousand": 1e3, "k": 1e3, "million": 1e6, "m": 1e6, "mn": 1e6, "billion": 1e9, "bn": 1e9,
           "trillion": 1e12, "tn": 1e12}
# A figure: digits (with an ordinal or plural ending: "21st", "1960s") or number words, then an
# optional scale word ("1.2bn", "3 million").
_FIGURE = re.compile(r"(?:(\d+(?:,\d{3})*(?:\.\d+)?)(?:st|nd|rd|th|s)?|\b((?:" + "|".join(_TENS) + r")-(?:"
                     + "|".join(_UNITS[1:10]) + r")|(?:" + "|".join(_WORD_VALUES) + r"))\b)(?:\s*("
                     + "|".join(_SCALES) + r")\b)?", re.I)
# Question kinds whose answers are values that can disagree across reports.
COMPARABLE = frozenset({"when", "how_many"})


# The entity labels the names check requires. Nationalities and groups (NORP) are not: the text
# often names the place instead ("Belgian" in the question, "Belgium" in the article), and a
# spelling variant alone must not decline a question.
REQUIRED = TOPICAL - {"NORP"}


def entities_found(question: Question, passages: Sequence[Passage], required: frozenset[str] = REQUIRED) -> Verdict:
    """Is every name the question is about (NER labels in `required`: people, organisations,
    places, events) in some passage?"""
    topics = _names(question, required)
    if not topics:
        return Verdict(Check.ENTITIES, True, None, "the question names no entity to look for")
    missing = _unmentioned(topics, [p.text for p in passages], whole=True)
    score = 1.0 - len(missing) / len(topics)
    if missing:
        names = ", ".join(f'"{t}"' for t in missing)
        return Verdict(Check.ENTITIES, False, score, f"no retrieved passage mentions {names}")
    return Verdict(Check.ENTITIES, True, score, "every name in the question appears in the passages")


# The names the articles an answer cites must mention: the question's people, organisations, events,
# places built by people, works, products and laws. Places and nationalities are not required: an
# article names them in other ways ("UK" and "Britain"), and on half of BBC dev requiring places too
# declined one more right answer and stopped no more wrong ones (evals/reports/20261207_subject_check/).
SUBJECT = TOPICAL - {"NORP", "GPE", "LOC"}


def subject_cited(question: Question, cited_texts: Sequence[str], required: frozenset[str] = SUBJECT) -> Verdict:
    """Do the articles the answer cites mention the names the question is about? A name of which no
    cited article holds a single word (a surname alone counts, so a spelling variant of a first name
    does not decline) means the answer was taken from a story about something else: "Qin Gang" as
    the minister at a 2024 visit, cited from a 2023 article that never names the 2024 visitor."""
    topics = _names(question, required)
    if not topics or not cited_texts:
        return Verdict(Check.SUBJECT, True, None, "the question names no person, organisation or event to look for")
    missing = _unmentioned(topics, cited_texts, whole=False)
    score = 1.0 - len(missing) / len(topics)
    if missing:
        names = ", ".join(f'"{t}"' for t in missing)
        return Verdict(Check.SUBJECT, False, score, f"no article the answer cites mentions {names}")
    return Verdict(Check.SUBJECT, True, score, "the cited articles mention every name the question is about")


def _names(question: Question, labels: frozenset[str]) -> tuple[str, ...]:
    """The question's names with these NER labels, each once, in order."""
    return tuple(dict.fromkeys(e.text for e in question.entities if e.label in labels))


def _unmentioned(names: Sequence[str], texts: Sequence[str], whole: bool) -> list[str]:
    """The names these texts do not mention, by stemmed content words: every word of the name
    (`whole`) or at least one of them. A name of no content word is never missing."""
    words = set().union(*(set(content_terms(t)) for t in texts)) if texts else set()
    return [n for n in names if (terms := set(content_terms(n)))
            and not (terms <= words if whole else terms & words)]


def figures(text: str, digits_only: bool = False) -> set[float]:
    """The numeric values a text states: "26,500" and "1.2bn" and "two" and "twenty-five", each as
    written and, with a scale word, scaled too ("1.2bn" gives 1.2 and 1.2e9). `digits_only` leaves
    out numbers written as words."""
    out: set[float] = set()
    for m in _FIGURE.finditer(text):
        if digits_only and not m.group(1):
            continue
        raw = (m.group(1) or m.group(2)).lower()
        if m.group(1):
            value = float(raw.replace(",", ""))
        elif "-" in raw:
            tens, unit = raw.split("-")
            value = float(_TENS[tens] + _UNITS.index(unit))
        else:
            value = float(_WORD_VALUES[raw])
        out.add(round(value, 6))
        if m.group(3):
            out.add(round(value * _SCALES[m.group(3).lower()], 6))
    return out


def numbers_found(question: Question, sentence: str, sources: Sequence[Source],
                  labels: Sequence[str] = ()) -> Verdict:
    """Is every figure the sentence states (NER: counts, money, percentages, quantities, dates and
    spans of time) in a source it cites (any source when it cites none), or in the question? A
    figure found there neither was made up or taken from a source the sentence does not cite."""
    stated = [(e.text, values) for e in _entities(sentence) if e.label in NUMERIC and (values := figures(e.text))]
    if not stated:
        return Verdict(Check.NUMBERS, True, None, "the sentence states no figure", subject=sentence)
    cited = [s for s in sources if s.label in labels] or list(sources)
    known = figures(question.text).union(*(figures(s.evidence) for s in cited))
    missing = [text for text, values in stated if not values & known]
    score = 1.0 - len(missing) / len(stated)
    if missing:
        names = ", ".join(f'"{t}"' for t in missing)
        return Verdict(Check.NUMBERS, False, score, f"no cited source states {names}", subject=sentence)
    return Verdict(Check.NUMBERS, True, score, "every figure it states is in a source it cites", subject=sentence)


def _entities(text: str) -> tuple[ner.Entity, ...]:
    """The named entities of an answer's text, its [S#] labels blanked out."""
    return ner.entities(blank_labels(text))


def _answer_entities(text: str, question: Question) -> list[ner.Entity]:
    """The answer's entities that the question does not already name: "Astellas Pharma Inc." in an
    answer is the question's "Astellas Pharma" written longer, not a new name."""
    asked = [set(_words(e.text)) for e in question.entities]
    return [e for e in _entities(text)
            if not any(a and (a <= set(_words(e.text)) or set(_words(e.text)) <= a) for a in asked)]


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def addresses(question: Question, answer: str) -> Verdict:
    """Does the answer hold what the question asks for (a date for "when", a name for "who", a number
    for "how many"), by the NER labels of its entities?"""
    wants = question.wants
    if not wants:
        return Verdict(Check.ADDRESSES, True, None, f"a {question.kind} question takes any content")
    found = [e for e in _answer_entities(answer, question) if e.label in wants]
    if question.kind == "how_many" and not found and _NUMBER.search(blank_labels(answer)):
        found = [ner.Entity("number", "CARDINAL", 0, 0)]
    if found:
        return Verdict(Check.ADDRESSES, True, 1.0, f"gives {found[0].text!r} ({found[0].label}) for a {question.kind} question")
    want = {"who": "a name", "when": "a date", "how_many": "a number"}.get(question.kind, "an answer")
    return Verdict(Check.ADDRESSES, False, 0.0, f"the answer gives no {want}, which a {question.kind} question asks for")


@dataclass(frozen=True)
class Disagreement:
    """Sources that give different values for what is asked: label -> the values it gives."""

    values: dict[str, tuple[str, ...]]
    # value -> "happened" or "planned", as the parse of the value's sentence reads it (`value_status`).
    status: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """'[S1] gives "April 2" (happened); [S3] gives "April 1" (planned)'."""
        return "; ".join(f"[{lab}] gives " + " and ".join(f'"{v}"' + (f" ({self.status[v]})" if v in self.status else "")
                                                        for v in vals)
                         for lab, vals in self.values.items())


def disagreement(question: Question, sources: Sequence[Source], gate: Choice | None,
                 min_p: float) -> Disagreement | None:
    """Two sources from different files that the gate both thinks answer, giving different values of
    the kind asked (dates for when, numbers for how many), each read as planned or happened. Names
    are not compared: two sentences naming different people usually report different facts, not
    one fact two ways. Only values with a figure are compared ("April 2", "2023", "40"): "Friday"
    or "later this year" cannot be told from another date without the article's calendar."""
    if gate is None or question.kind not in COMPARABLE:
        return None
    by_label = {s.label: s for s in sources}
    likely = sorted((f"S{o}" for o, p in gate.probs.items() if o != "NONE" and p >= min_p and f"S{o}" in by_label),
                    key=lambda lab: -gate.p(number(lab)))
    values: dict[str, tuple[str, ...]] = {}
    files: set[str] = set()
    status: dict[str, str] = {}
    for lab in likely:
        text = by_label[lab].text
        found = [e for e in _answer_entities(text, question) if e.label in question.wants and _NUMBER.search(e.text)]
        vals = tuple(dict.fromkeys(e.text for e in found))
        if vals:
            values[lab] = vals
            files.add(by_label[lab].file)
            for e in found:
                status.setdefault(e.text, value_status(_sentence_at(text, e.start), e.text))
    if len(values) < 2 or len(files) < 2:
        return None
    sets = [set(v.lower() for v in vals) for vals in values.values()]
    if all(s == sets[0] for s in sets[1:]):
        return None
    return Disagreement(values, status)


def _sentence_at(text: str, offset: int) -> str:
    """The sentence of a text that holds the character offset."""
    return next((text[sp.start:sp.end] for sp in split_sentences(text) if sp.start <= offset < sp.end), text)


def value_status(sentence: str, value: str) -> str:
    """Does the sentence give the value as something that happened or as something planned? Read
    from the parse, walking from the value up its heads: a verb still to come (a bare infinitive,
    "intends to meet him on April 1", or one with a modal, "will make a trip from Monday") makes
    it "planned"; a past-tense verb reached first ("during their meeting on April 2, he asked")
    makes it "happened", as does reaching the root with neither."""
    tokens = ner.parse(sentence)
    at = sentence.find(value)
    i = next((n for n, t in enumerate(tokens) if t.idx >= at), None) if at >= 0 else None
    seen: set[int] = set()
    while i is not None and i not in seen:
        seen.add(i)
        token = tokens[i]
        if token.tag == "VBD":
            return "happened"
        if token.tag == "VB" or any(t.tag == "MD" and t.head == i for t in tokens):
            return "planned"
        i = token.head
    return "happened"


def pick_agrees(pick: str, answer: str, question: Question) -> bool:
    """Does the answer give the picked entity? The same words, a part of the name ("Hayashi" for
    "Yoshimasa Hayashi"), or for dates and numbers the same figures ("£10" and "10 pounds")."""
    plain = blank_labels(answer).lower()
    if " ".join(pick.lower().split()) in " ".join(plain.split()):
        return True
    if question.kind in COMPARABLE:
        mine = figures(pick)
        return bool(mine) and mine <= figures(plain)
    names = [w for w in re.findall(r"[\w'’-]+", pick.lower()) if len(w) > 2 and w not in ("the", "and")]
    words = set(re.findall(r"[\w'’-]+", plain))
    return any(w in words for w in names)


def picked(question: Question, answer: str, choice: Choice | None, none_max: float) -> Verdict:
    """Is the answer's key entity the one the model picks from the sources, under a grammar, for the
    thing asked (or does the model pick NONE)? A swapped name, date or number is the typical error of
    a small model, and a yes/no support question to the same model does not catch it."""
    if choice is None:
        return Verdict(Check.PICKED, True, None, "the question asks for no name, date or number the sources hold")
    p_none = choice.p("NONE")
    if choice.option == "NONE" or p_none >= none_max:
        return Verdict(Check.PICKED, p_none < none_max, p_none,
                       f"asked for the answer alone, the model picks NONE (P(NONE) = {p_none:.2f})", none_max,
                       subject="NONE")
    if pick_agrees(choice.option, answer, question):
        return Verdict(Check.PICKED, True, p_none, f"the answer gives {choice.option!r}, the model's pick from the sources",
                       none_max, subject=choice.option)
    return Verdict(Check.PICKED, False, p_none, f"asked for the answer alone, the model picks {choice.option!r}, "
                   "which the answer does not give", none_max, subject=choice.option)
