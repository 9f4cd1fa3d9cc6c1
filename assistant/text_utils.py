"""Small text helpers shared by retrieval, citations and the fakes: tokens and stopwords."""

from __future__ import annotations

import re
from typing import Any

STOPWORDS = frozenset("""
a an the and or but if of to in on at by for with from as is are was were be been being it its
this that these those he she they them his her their our we you your i me my do does did done
what which who whom whose when where why how whats there here than then so not no yes can could
would should will shall may might must have has had having about into over after before under
again further once all any both each few more most other some such only own same too very just
also said says say tell told according up down out off during while until against between
""".split())

# Month names in calendar order, lower case.
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september",
          "october", "november", "december")

_TOKEN = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)?")


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens with possessives stripped."""
    return [t[:-2] if t.endswith(("'s", "’s")) else t for t in _TOKEN.findall(text.lower())]


_STEMMER: Any = None


def stem(token: str) -> str:
    """The Snowball (Porter 2) English stem of a lower-case token, from PyStemmer."""
    return _stemmer().stemWord(token)


def _stemmer() -> Any:
    global _STEMMER
    if _STEMMER is None:
        import Stemmer

        _STEMMER = Stemmer.Stemmer("english")
    return _STEMMER


def content_terms(text: str) -> list[str]:
    """Stemmed tokens without stopwords."""
    return _stemmer().stemWords([t for t in tokens(text) if t not in STOPWORDS])


def clip(text: str, limit: int) -> str:
    """Whitespace-collapsed text cut at a word boundary to at most `limit` characters, '…' marking a cut."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut and not text[limit - 1].isspace():
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:") + "…"


def jaccard(a: set[str] | frozenset[str], b: set[str] | frozenset[str]) -> float:
    """|a & b| / |a | b|: the share of terms two texts have in common; 0.0 when both are empty
    (texts with no terms are not alike)."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0
