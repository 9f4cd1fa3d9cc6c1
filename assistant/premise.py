"""Premise checks: a question that takes something for granted ("Why did Qin Gang cancel his
visit?") is only answered when some retrieved passage states what it takes for granted."""

from __future__ import annotations

import os
import re
from typing import Mapping, Sequence

from .citations import date_words, name_runs
from .text_utils import content_terms, stem, tokens
from .types import Passage

# Question forms whose words after the opening are asserted, not asked: "why did X do Y",
# "how has X done Y", "what did X and Y agree". Questions such as "who", "when" or "which"
# carry their subject as the thing asked, so they are not checked here.
_PREMISE_FORM = re.compile(r"^\s*(?:(?P<why>why\b(?:\s+(?:did|does|do|has|have|had|is|was|were|are)\b)?|"
                           r"how\s+(?:did|does|do|has|have|had|is|was|were|are)\b)|"
                           r"what\s+(?:did|does|do|has|have|had)\b)", re.I)
# In "what did X target?" the verb names the relation asked about, which an article may word
# differently ("aimed at"): one missing word is allowed there, none after "why" or "how".
_WHAT_TOLERANCE = 1
# Verbs of speech and the like: a passage reports what was said in its own words, so these
# are not required to appear ("What did X say about Y" asks for the saying).
_SPEECH = frozenset(stem(w) for w in (
    "say", "said", "describe", "state", "mention", "report", "comment", "discuss", "express", "note",
    "call", "explain", "think", "tell", "told", "talk", "find", "found", "show", "reveal", "announce",
    "claim", "suggest", "indicate", "ask", "reply", "warn"))
# Words that frame a premise rather than state it ("Why did Japan plan to raise...", "Why was the
# visit notable?"): articles say "will raise" or never grade their own news.
_FRAMING = frozenset(stem(w) for w in (
    "plan", "intend", "expect", "seek", "try", "want", "hope", "decide", "important", "significant",
    "notable", "key", "main", "actually", "really"))


def _asserted(question: str) -> tuple[list[str], int]:
    """The stemmed words a question asserts, and how many of them a passage may lack."""
    match = _PREMISE_FORM.match(question)
    if not match:
        return [], 0
    terms = [t for t in dict.fromkeys(content_terms(question[match.end():]))
             if t not in _SPEECH and t not in _FRAMING]
    return terms, 0 if match.group("why") else _WHAT_TOLERANCE


def premise_terms(question: str) -> list[str]:
    """The stemmed content words a premise-bearing question asserts ([] for other questions)."""
    return _asserted(question)[0]


def _same_word(term: str, words: set[str]) -> bool:
    """The term or an inflection of it: 'cancel' ~ 'cancelled', 'oppose' ~ 'opposition'."""
    if term in words:
        return True
    for word in words:
        shorter = min(len(term), len(word))
        if shorter >= 4 and len(os.path.commonprefix([term, word])) >= max(4, shorter - 2):
            return True
    return False


def _name_parts(question: str) -> dict[str, set[str]]:
    """Each word of a multi-word name in the question mapped to the name's other words ('yi' -> {'wang'})."""
    runs = [[stem(part) for part in run] for run in name_runs(question)]
    return {part: set(run) - {part} for run in runs for part in run}


def premise_gaps(question: str, passages: Sequence[Passage],
                 article_words: Mapping[str, frozenset[str]] | None = None) -> list[str]:
    """Words the question asserts that no single retrieved passage contains ([] when one does,
    or when the question asserts nothing). A passage may name a person by one part of the name
    when its article gives the rest ("Wang" for "Wang Yi")."""
    terms, allowed = _asserted(question)
    if not terms or not passages:
        return []
    names = _name_parts(question)
    articles: dict[str, set[str]] = {}  # each file's stemmed words, built only when a name needs them

    def in_article(term: str, file: str) -> bool:
        if file not in articles:
            articles[file] = {stem(w) for w in (article_words or {}).get(file, frozenset())}
        return term in articles[file]

    best: list[str] | None = None
    for passage in passages:
        words = set(content_terms(f"{passage.text} {date_words(passage.date)}"))
        missing = []
        for term in terms:
            if _same_word(term, words):
                continue
            others = names.get(term, set())
            if others and any(o in words for o in others) and in_article(term, passage.file):
                continue
            missing.append(term)
        if best is None or len(missing) < len(best):
            best = missing
        if len(missing) <= allowed:
            return []
    # Report the question's own spelling of each missing word ("cancel", not the stem).
    spelled = {stem(t): t for t in reversed(tokens(question))}
    return [spelled.get(t, t) for t in best or []]
