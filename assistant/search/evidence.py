"""Select evidence: sentences picked by meaning and keywords, each kept inside its passage.

The model can only be right about what it is shown, and every prompt token costs time, so evidence
is a budget in tokens. Sentences of the retrieved chunks are scored (dense similarity to the
question, the IDF-weighted share of the question's terms they hold, their chunk's rank, their
neighbours' similarity); the best are taken in order, each with the sentence after it (the answer
often follows the sentence that names the event: "Nine consulates..." then "They include...") and,
budget allowing, the one before; adjacent picks merge into one passage, and each file's headline
and date head its passages. Weights are fitted on the BBC dev split with
`python -m assistant.evaluate.evidence` (evals/README.md).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace
from typing import Sequence

from ..indexing.chunking import split_sentences
from ..labels import Source
from ..settings import EvidenceSettings
from .injection import addresses_the_assistant
from ..text_utils import content_terms
from ..types import Passage


@dataclass(frozen=True)
class Article:
    """The stored text of one file: its chunks stitched into segments of verbatim text."""

    file: str
    title: str
    date: str
    segments: tuple[tuple[int, str], ...]  # (offset in the file, text), in order, not overlapping

    @classmethod
    def from_chunks(cls, chunks: Sequence[Passage]) -> "Article":
        """Stitch overlapping chunks of one file (verbatim slices) into maximal segments."""
        ordered = sorted(chunks, key=lambda c: c.start)
        segments: list[list] = []
        for c in ordered:
            if segments and c.start <= segments[-1][0] + len(segments[-1][1]):
                start, text = segments[-1]
                end = start + len(text)
                if c.end > end:
                    segments[-1][1] = text + c.text[end - c.start:]
            else:
                segments.append([c.start, c.text])
        first = ordered[0] if ordered else None
        return cls(file=first.file if first else "", title=first.title if first else "",
                   date=first.date if first else "", segments=tuple((s, t) for s, t in segments))

    def sentences(self) -> tuple["Sentence", ...]:
        """Every sentence of the stored text, in order, with offsets into the file (split once per
        article: the retriever keeps articles across questions)."""
        return self._sentences

    @functools.cached_property
    def _sentences(self) -> tuple["Sentence", ...]:
        out: list[Sentence] = []
        for offset, text in self.segments:
            for span in split_sentences(text):
                out.append(Sentence(self.file, offset + span.start, offset + span.end, text[span.start:span.end],
                                    len(out)))
        return tuple(out)

    def full_text(self) -> str:
        """The file's text as far as it is stored (gaps, where cleaning removed a block, as spaces)."""
        if not self.segments:
            return ""
        offset, text = self.segments[-1]
        out = [" "] * (offset + len(text))
        for offset, text in self.segments:
            out[offset:offset + len(text)] = text
        return "".join(out)

    def text(self, start: int, end: int) -> str:
        """The verbatim text of [start, end), which must lie inside one segment."""
        for offset, text in self.segments:
            if offset <= start and end <= offset + len(text):
                return text[start - offset:end - offset]
        raise ValueError(f"{self.file}[{start}:{end}] is not stored text")


@dataclass(frozen=True)
class Sentence:
    """One sentence of an article."""

    file: str
    start: int
    end: int
    text: str
    position: int  # index among the article's sentences


@dataclass
class Scored:
    """A candidate sentence with the features its score is made of."""

    sentence: Sentence
    features: dict[str, float] = field(default_factory=dict)
    score: float = 0.0


# Feature weights of the sentence score: the setting `evidence_weights` (a logistic model fitted on BBC
# dev; evals/README.md).
WEIGHTS: dict[str, float] = dict(EvidenceSettings.weights)


def features(sentences: Sequence[Sentence], sims: Sequence[float], question_terms: dict[str, float],
             chunk_rank: dict[tuple[str, int], int], file_rank: dict[str, int] | None = None) -> list[Scored]:
    """The features of each candidate sentence (sims: its dense similarity to the question)."""
    total = sum(question_terms.values()) or 1.0
    by_pos = {(s.file, s.position): sim for s, sim in zip(sentences, sims)}
    out = []
    for s, sim in zip(sentences, sims):
        terms = set(content_terms(s.text))
        coverage = sum(w for t, w in question_terms.items() if t in terms) / total
        neighbours = [by_pos.get((s.file, s.position + d)) for d in (-1, 1)]
        neighbour = max((n for n in neighbours if n is not None), default=sim)
        rank = chunk_rank.get((s.file, s.position))
        frank = (file_rank or {}).get(s.file, 10)
        out.append(Scored(s, {"dense": sim, "coverage": coverage,
                              "chunk_rank": 1.0 / (1.0 + rank) if rank is not None else 0.0,
                              "in_chunk": 1.0 if rank is not None else 0.0, "file_rank": 1.0 / (1.0 + frank),
                              "neighbour": neighbour, "lead": 1.0 if s.position <= 1 else 0.0}))
    return out


def score(items: list[Scored], weights: dict[str, float] | None = None) -> list[Scored]:
    """Score candidates by the weighted features (a logit), best first."""
    w = weights or WEIGHTS
    for item in items:
        item.score = w.get("bias", 0.0) + sum(w.get(k, 0.0) * v for k, v in item.features.items())
    return sorted(items, key=lambda i: -i.score)


def tokens_of(text: str, chars_per_token: float = EvidenceSettings.chars_per_token) -> int:
    """Estimated prompt tokens of a text (`chars_per_token`: the setting `evidence_chars_per_token`)."""
    return math.ceil(len(text) / chars_per_token)


@dataclass(frozen=True)
class Budget:
    """How many evidence tokens to spend, and how much context each pick carries."""

    tokens: int = 450
    after: int = 1  # sentences after each pick
    before: int = 0  # sentences before each pick (added only while the budget lasts)
    max_files: int = 4
    new_file_bonus: float = 0.0  # logit added to the best sentence of each file after the first
    # A following sentence comes with its pick only when the two fit in this many tokens: long
    # sentences (the sample's run to ~40 tokens each, BBC's ~25) would double a pick's cost.
    after_max_tokens: int = 0  # 0: no cap
    chars_per_token: float = EvidenceSettings.chars_per_token


def select(ranked: Sequence[Scored], articles: dict[str, Article], budget: Budget) -> list[list[Sentence]]:
    """Spend the budget on the best sentences with their context; returns runs of adjacent
    sentences (one passage each), best run first."""
    by_file = {f: a.sentences() for f, a in articles.items()}
    chosen: dict[str, set[int]] = {}
    order: list[tuple[str, int]] = []  # (file, position) of picks, best first
    spent = 0
    files_used: list[str] = []
    if budget.new_file_bonus and ranked:
        # A second article often holds the other half of the answer: the best sentence of each file
        # after the top one moves up.
        seen = {ranked[0].sentence.file}
        boosted = []
        for item in ranked:
            first = item.sentence.file not in seen
            seen.add(item.sentence.file)
            boosted.append((item.score + (budget.new_file_bonus if first else 0.0), item))
        ranked = [item for _, item in sorted(boosted, key=lambda b: -b[0])]
    for item in ranked:
        s = item.sentence
        if s.file not in files_used and len(files_used) >= budget.max_files:
            continue
        sentences = by_file.get(s.file, [])
        have = chosen.setdefault(s.file, set())
        # A pick already in as another pick's context still brings its own context after it.
        followers = range(s.position + 1, min(s.position + budget.after + 1, len(sentences)))
        wanted = [s.position] + [p for p in followers if _pair_fits(s, sentences[p], budget)]
        wanted = [p for p in wanted if 0 <= p < len(sentences) and p not in have and _usable(sentences[p])]
        if not wanted:
            continue
        cost = sum(tokens_of(sentences[p].text, budget.chars_per_token) + 1 for p in wanted)
        if s.file not in files_used:
            # the heading line: file, headline, date
            cost += tokens_of(articles[s.file].title, budget.chars_per_token) + 12
        if spent + cost > budget.tokens:
            if not order:
                # the best sentence always goes in
                wanted, cost = [s.position], tokens_of(s.text, budget.chars_per_token)
            else:
                continue
        if s.position in have:
            wanted = [p for p in wanted if p != s.position]
        have.update(wanted)
        spent += cost
        order.append((s.file, s.position))
        if s.file not in files_used:
            files_used.append(s.file)
    for back in range(1, budget.before + 1):
        for file, pos in order:
            p = pos - back
            sentences = by_file[file]
            if p >= 0 and p not in chosen[file] and _usable(sentences[p]):
                cost = tokens_of(sentences[p].text, budget.chars_per_token) + 1
                if spent + cost <= budget.tokens:
                    chosen[file].add(p)
                    spent += cost
    runs: list[tuple[int, list[Sentence]]] = []
    rank = {key: n for n, key in enumerate(order)}
    for file, positions in chosen.items():
        sentences = by_file[file]
        run: list[Sentence] = []
        for p in sorted(positions):
            if run and (p != run[-1].position + 1 or not _adjacent(articles[file], run[-1], sentences[p])):
                runs.append((_best(run, rank), run))
                run = []
            run.append(sentences[p])
        if run:
            runs.append((_best(run, rank), run))
    runs.sort(key=lambda r: r[0])
    return [run for _, run in runs]


def _pair_fits(pick: Sentence, follower: Sentence, budget: Budget) -> bool:
    """May `follower` come as context after this pick: no cap, or the two fit in it?"""
    cap, per = budget.after_max_tokens, budget.chars_per_token
    return not cap or tokens_of(pick.text, per) + tokens_of(follower.text, per) <= cap


def _best(run: list[Sentence], rank: dict[tuple[str, int], int]) -> int:
    return min((rank.get((s.file, s.position), 10**6) for s in run), default=10**6)


def _usable(s: Sentence) -> bool:
    # A sentence written to steer the model (planted instructions) is never evidence.
    return not addresses_the_assistant(s.text)


def _adjacent(article: Article, a: Sentence, b: Sentence) -> bool:
    """Two consecutive sentences of one stored segment (not across a removed block)."""
    try:
        article.text(a.start, b.end)
    except ValueError:
        return False
    return True


def sources_of(runs: list[list[Sentence]], articles: dict[str, Article], time_order: bool = False) -> list[Source]:
    """Labelled sources, one per run; one file's runs sit together (files in the order of their
    best run, or by date for a time question), in article order within a file."""
    file_order: dict[str, int] = {}
    for n, run in enumerate(runs):
        file_order.setdefault(run[0].file, n)
    if time_order:
        dated = sorted(file_order, key=lambda f: (articles[f].date or "9999", file_order[f]))
        file_order = {f: n for n, f in enumerate(dated)}
    ordered = sorted(runs, key=lambda r: (file_order[r[0].file], r[0].start))
    out = []
    for n, run in enumerate(ordered, 1):
        a = articles[run[0].file]
        start, end = run[0].start, run[-1].end
        out.append(Source(label=f"S{n}", file=a.file, start=start, end=end, text=a.text(start, end),
                          date=a.date, title=a.title))
    return out


def relabel(sources: Sequence[Source]) -> list[Source]:
    """The same sources in this order, labelled S1, S2, ... again."""
    return [replace(s, label=f"S{n}") for n, s in enumerate(sources, 1)]
