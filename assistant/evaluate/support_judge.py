"""The eval's citation judge (ALCE citation recall and precision): does a passage support a
sentence? Lexical, with the names, numbers and dates of the sentence required verbatim; an
embedder may vouch for a paraphrase. Calibrated on hand labels (`support_calibration`).

It reads names by capital letters and words by overlap, which is why it only scores answers and
never decides one: the answer itself is judged by the model (`answering.checks`).
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

from ..answering.citations import lexical_support
from ..labels import LABEL
from ..text_utils import MONTHS, STOPWORDS, tokens

_WORD = re.compile(r"[A-Za-z][A-Za-z'’.-]*|\d[\d,.]*")
# Capitalised words that carry no identity (corporate suffixes, titles, sentence glue).
NOT_NAMES = {"inc", "ltd", "co", "corp", "mr", "mrs", "ms", "the", "minister", "foreign", "president",
             "premier", "prime", "according"}
# Thresholds calibrated on evals/support_labels.jsonl (see evals/README.md).
LEXICAL_MIN = 0.5
SEMANTIC_MIN = 0.6

EmbedFn = Callable[[Sequence[str]], list[list[float]]]


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
        elif word[0].isupper() and n > 0 and w not in STOPWORDS and w not in NOT_NAMES and len(w) > 2:
            out.add(re.sub(r"['’]s$", "", w))
    return out


def _words(passage: str) -> set[str]:
    """Every spelling of the passage's words that critical_terms() can produce."""
    words = set(tokens(passage)) | {t.rstrip(".,") for t in re.findall(r"\d[\d,.]*", passage)}
    # Also the words as critical_terms spells them ("tokyo-seoul", "u.s"), so a sentence supports itself.
    return words | {re.sub(r"['’]s$", "", w.strip(".,'’-").lower()) for w in _WORD.findall(passage)}


def name_runs(sentence: str) -> list[list[str]]:
    """Runs of adjacent capitalised words ("Qin Gang", "Yoshimasa Hayashi"), lower-cased."""
    runs: list[list[str]] = []
    current: list[str] = []
    for word in re.findall(r"\S+", LABEL.sub(" ", sentence)):
        bare = re.sub(r"['’]s$", "", word.strip(".,;:!?\"“”()'’")).lower()
        if word[:1].isupper() and bare and bare not in NOT_NAMES and bare not in STOPWORDS:
            current.append(bare)
            if re.search(r"[.,;:!?)\"”]$|['’]s$", word):
                runs.append(current)
                current = []
        else:
            if current:
                runs.append(current)
            current = []
    if current:
        runs.append(current)
    return [r for r in runs if len(r) > 1]


def missing_critical(sentence: str, passage: str, given: frozenset[str] = frozenset(),
                     article_words: frozenset[str] = frozenset()) -> set[str]:
    """Critical terms of the sentence that the passage lacks.

    `given` are terms the question itself states (a claim may repeat them without a source saying
    them again); `article_words` are the words of the cited articles, so that "Qin Gang" is matched
    by a passage that calls him "Qin" when his article names him in full elsewhere."""
    passage_words = _words(passage)

    def present(term: str) -> bool:
        return term in passage_words or term.replace(",", "") in passage_words or term in given

    missing = {t for t in critical_terms(sentence) if not present(t)}
    # "Japan-China" is there when both "Japan" and "China" are.
    missing = {t for t in missing if not ("-" in t and all(present(part) for part in t.split("-") if part))}
    if missing and article_words:
        for run in name_runs(sentence):
            if any(present(part) for part in run):
                missing -= {part for part in run if part in article_words}
    return missing


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    na = sum(x * x for x in a) ** 0.5
    nb = sum(y * y for y in b) ** 0.5
    return dot / (na * nb) if na and nb else 0.0


def supports(sentence: str, passage: str, embed: EmbedFn | None = None, given: frozenset[str] = frozenset(),
             article_words: frozenset[str] = frozenset()) -> bool:
    """Does the passage support the sentence? Names, numbers and dates must match verbatim (or be
    stated by the question, see missing_critical), and the wording must overlap (lexically, or by
    embedding similarity when an embedder is given)."""
    if missing_critical(sentence, passage, given, article_words):
        return False
    if lexical_support(sentence, passage) >= LEXICAL_MIN:
        return True
    if embed is None:
        return False
    a, b = embed([LABEL.sub(" ", sentence), passage])
    return _cosine(a, b) >= SEMANTIC_MIN


