"""Citations belong to the code: map [S#] labels to verbatim quotes, check support, infer missing ones."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ..sentences import answer_sentences, split_sentences
from ..dates import date_words
from ..labels import LABEL, strip_labels
from ..text_utils import MONTHS, STOPWORDS, content_terms, tokens
from ..types import Citation

_WORD = re.compile(r"[A-Za-z][A-Za-z'’.-]*|\d[\d,.]*")
# Filler a model adds around labels ("according to source [S1]"): removed with the label.
_FILLER = re.compile(r",?\s*\(?(?:according to|as stated in|as mentioned in|as per|as reported in|from|see)"
                     r"(?:\s+(?:the\s+)?(?:sources?|articles?))?\)?(?=\s*[.!?]?$)", re.I)
# Capitalised words that carry no identity (corporate suffixes, titles, sentence glue).
NOT_NAMES = {"inc", "ltd", "co", "corp", "mr", "mrs", "ms", "the", "minister", "foreign", "president",
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
        """The text a claim may rest on: the passage plus its publication date in words, and the
        years that "next year", "last year" and "this year" mean for an article of that date."""
        extra = [date_words(self.date)]
        if self.date[:4].isdigit():
            year = int(self.date[:4])
            for word, offset in (("next", 1), ("last", -1), ("this", 0)):
                if re.search(rf"\b{word} year\b", self.text, re.I):
                    extra.append(str(year + offset))
        return " ".join([self.text, *extra]).strip()


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


def lexical_support(sentence: str, passage: str) -> float:
    """Share of the sentence's content words found in the passage."""
    terms = set(content_terms(LABEL.sub(" ", sentence)))
    if not terms:
        return 0.0
    found = set(content_terms(passage))
    return len(terms & found) / len(terms)


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


def best_quote(sentence: str, source: Source) -> tuple[int, int, str]:
    """The sentence of the source that best matches the answer sentence, with file offsets."""
    spans = split_sentences(source.text)
    if not spans:
        return source.start, source.end, source.text
    best = max(spans, key=lambda s: (lexical_support(sentence, source.text[s.start:s.end]), -s.start))
    return source.start + best.start, source.start + best.end, source.text[best.start:best.end]


def _infer_sources(sentence: str, sources: list[Source], check: Callable[[str, list[Source]], bool]) -> list[str]:
    """Labels of the source (or pair of sources) that together support an uncited sentence."""
    ranked = sorted(sources, key=lambda s: -lexical_support(sentence, s.text))
    for s in ranked:
        if check(sentence, [s]):
            return [s.label]
    # Small models merge two passages into one sentence (names from one, the date from another).
    for i, first in enumerate(ranked[:3]):
        for second in ranked[i + 1:]:
            if check(sentence, [first, second]):
                return [first.label, second.label]
    return []


def given_terms(question: str) -> frozenset[str]:
    """The names a question states itself, with the parts of compounds ("japan-china")."""
    terms = critical_terms(question) | {w.lower() for w in _WORD.findall(question) if w[:1].isupper()}
    terms |= {part for t in terms for part in t.split("-") if part}
    # Dates and numbers are what answers get wrong: those must come from the sources.
    return frozenset(t for t in terms if not t[0].isdigit() and t not in MONTHS)


@dataclass
class Resolution:
    """The answer after label resolution: cleaned text, citations and flagged sentences."""

    text: str
    citations: list[Citation] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    uncited: list[str] = field(default_factory=list)
    dropped_labels: list[str] = field(default_factory=list)
    sentences: int = 0
    supported: list[str] = field(default_factory=list)  # the cited, supported sentences of `text`
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


def resolve(answer: str, sources: list[Source], embed: EmbedFn | None = None, question: str = "",
            article_words: dict[str, frozenset[str]] | None = None) -> Resolution:
    """Resolve labels to citations, drop unknown labels, infer missing ones, flag unsupported sentences.

    With the question, names and numbers it states need no source (see missing_critical); with
    `article_words` (file -> its words) a short form of a name matches its full form."""
    answer = normalize_labels(answer)
    by_label = {s.label: s for s in sources}
    given = given_terms(question) if question else frozenset()
    words = article_words or {}

    def check(sentence: str, cited: list[Source]) -> bool:
        text = " ".join(s.evidence for s in cited)
        names = frozenset().union(*(words.get(s.file, frozenset()) for s in cited))
        return supports(sentence, text, embed, given, names)

    out = Resolution(text="")
    seen: set[tuple[str, int, int, str]] = set()
    sentences_out: list[str] = []
    for sentence in answer_sentences(answer):
        sentence = _move_lead_in(sentence)
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
            matched = _infer_sources(plain, sources, check)
            if not matched:
                out.uncited.append(plain)
                sentences_out.append(plain)
                continue
            known, inferred = matched, True
        cited = [by_label[lab] for lab in known]
        supported = check(plain, cited)
        extra: list[str] = []
        if not supported:
            # Small models often cite the wrong one of two passages: when another handed-out
            # source completes the support, cite it too (marked inferred).
            for other in sources:
                if other.label not in known and check(plain, cited + [other]):
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
        out.cited_sentences.append(sentences_out[-1])
        if supported:
            out.supported.append(sentences_out[-1])
    out.text = " ".join(sentences_out)
    return out
