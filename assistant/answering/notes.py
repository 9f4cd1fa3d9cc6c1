"""What is said beside an answer: a reply of labels only turned into its quote, the other values
sources give for what it states (planned versus what happened, or another report's figure), the
date an answer about now is true as of, and the notes on undated sources. Each addition carries
its citation."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Callable, Sequence

from . import checks
from .checks import Question
from .citations import lexical_support, normalize_labels
from ..labels import Source
from ..dates import date_to_epoch, date_words
from ..labels import blank_labels, labels_in, number, strip_labels
from ..settings import CheckSettings
from ..sentences import split_sentences
from ..text_utils import content_terms, jaccard
from ..types import Choice, Citation


def quote_if_only_labels(question: Question, text: str, sources: list[Source],
                         wants_bonus: float = CheckSettings.quote_wants_bonus) -> str:
    """A reply that is only labels ("[Source: S1]") points at a source without saying anything:
    answer with the sentence of those sources that best matches the question, quoted verbatim
    (`wants_bonus`: the setting `quote_wants_bonus`)."""
    text = normalize_labels(text)
    if re.search(r"[A-Za-z0-9]", strip_labels(text)):
        return text
    by_label = {s.label: s for s in sources}
    chosen = [by_label[lab] for lab in labels_in(text) if lab in by_label]
    scored = []
    for n, src in enumerate(chosen):
        for span in split_sentences(src.text):
            quote = src.text[span.start:span.end]
            # A sentence holding the kind of entity asked for (a name for who, a date for when) is the answer.
            bonus = wants_bonus if question.wants and checks.addresses(question, quote).passed else 0.0
            scored.append((lexical_support(question.text, quote) + bonus, -n, -span.start, quote, src.label))
    if not scored:
        return ""
    *_, quote, label = max(scored)
    return f"{' '.join(quote.split()).rstrip('.')} [{label}]."


def value_quote(source: Source, values: Sequence[str]) -> tuple[str, Citation]:
    """The first sentence of a source that gives one of the values (else the whole source), and its citation."""
    span = next((sp for sp in split_sentences(source.text)
                 if any(v in source.text[sp.start:sp.end] for v in values)), None)
    start, end = (span.start, span.end) if span else (0, len(source.text))
    quote = source.text[start:end]
    citation = Citation(label=source.label, file=source.file, start=source.start + start,
                        end=source.start + end, quote=quote)
    return " ".join(quote.split()), citation


def reconcile(found: checks.Disagreement, sentences: list[str], sources: list[Source],
              states: Callable[[str, str], bool], kind: str = "") -> tuple[list[str], list[tuple[str, Citation]]]:
    """The answer beside the other values the sources give for what it states.

    The answer's value is the first disagreeing value it gives, from a source it cites if any. For
    every other source it does not cite, each of its values (two at most) is put in the answer's
    sentence in place of the answer's value, under that source's label; `states(sentence, label)`
    (the support check) says whether that source states the result. If none does, the source
    reports something else and is left out. If one does:
    - the answer's value planned and this one happened: the answer gives what happened, and the plan
      is noted, "It had been planned for April 1 [S3].";
    - the answer's value happened and this one planned: the plan is noted the same way;
    - otherwise its sentence is quoted: 'Another source differs: "..." [S2].'
    Returns the answer's sentences and the notes to add, each with its citation (a rewrite's new
    citation comes with an empty sentence)."""
    by_label = {s.label: s for s in sources}
    text = " ".join(sentences)
    low = text.lower()
    cited = set(labels_in(text))
    given = sorted(((lab, v) for lab, vals in found.values.items() for v in vals if v.lower() in low),
                   key=lambda lv: lv[0] not in cited)
    if not given:
        return sentences, []
    label, value = given[0]
    at = next(i for i, s in enumerate(sentences) if value.lower() in s.lower())
    sentence = sentences[at]
    out, added = list(sentences), []

    def put(other: str, other_label: str) -> str:
        swapped = re.sub(re.escape(value), other, sentence, flags=re.I)
        return " ".join(blank_labels(swapped).split()).rstrip(" .") + f" [{other_label}]."

    def plan_note(plan: str, plan_label: str) -> tuple[str, Citation]:
        said = f"It had been planned for {plan}" if kind == "when" else f"The figure planned was {plan}"
        return f"{said} [{plan_label}].", value_quote(by_label[plan_label], [plan])[1]

    rewritten = False
    for other_label, values in found.values.items():
        if other_label in cited or other_label == label:
            continue
        for other in [v for v in values if v.lower() not in low][:2]:
            candidate = put(other, other_label)
            if not states(candidate, other_label):
                continue
            quote, citation = value_quote(by_label[other_label], [other])
            mine, theirs = found.status.get(value), found.status.get(other)
            if mine == "planned" and theirs == "happened" and not rewritten:
                out[at] = candidate
                added += [("", citation), plan_note(value, label)]
                rewritten = True
            elif mine == "happened" and theirs == "planned":
                added.append(plan_note(other, other_label))
            else:
                added.append((f'Another source differs: "{quote}" [{other_label}].', citation))
            break
    return out, added


def as_of(answer: str, citations: list[Citation], sources: list[Source], gate: Choice | None,
          min_p: float, same_min: float = CheckSettings.as_of_same_min) -> tuple[str, list[tuple[str, Citation]]]:
    """For a question about now: open with the date the answer is true as of (its newest cited
    article), and quote what an older article the gate also found answer-bearing said instead
    (unless its content words share `same_min` Jaccard with the cited text: the setting `as_of_same_min`)."""
    dates = {s.label: s.date for s in sources}
    cited = [c for c in citations if f"[{c.label}]" in answer and dates.get(c.label)]
    if not cited:
        return answer, []
    newest = max(cited, key=lambda c: date_to_epoch(dates[c.label]))
    when = dates[newest.label]
    text = f"As of {date_words(when)} [{newest.label}]: {answer}"
    earlier: list[tuple[str, Citation]] = []
    probs = gate.probs if gate is not None else {}
    cited_terms = set(content_terms(" ".join(c.quote for c in cited)))
    for s in sources:
        if not s.date or date_to_epoch(s.date) >= date_to_epoch(when) or f"[{s.label}]" in text:
            continue
        if probs.get(number(s.label), 0.0) < min_p:
            continue
        mine = set(content_terms(s.text))
        if jaccard(mine, cited_terms) >= same_min:
            continue  # the older article says the same
        quote = s.text
        citation = Citation(label=s.label, file=s.file, start=s.start, end=s.end, quote=quote)
        earlier.append((f'Earlier, in {date_words(s.date)}, an article said: "{" ".join(quote.split())}" [{s.label}].',
                        citation))
        break
    return text, earlier


def undated_notes(answer: str, sources: list[Source]) -> list[str]:
    """For a when-question: the cited files whose publication date is unknown (so a day without a year is open)."""
    cited = set(labels_in(answer))
    files = list(dict.fromkeys(s.file for s in sources if s.label in cited and not s.date))
    return [f"{f} gives no publication date, so the year of a date it states without one is unknown." for f in files]


@dataclass
class Composed:
    """The answer as it is shown: its text, its citations, the notes beside it and how many
    independent sources (copies counted once) carry it."""

    text: str
    citations: list[Citation]
    notes: list[str]
    independent: int


def compose(q: Question, kept: list[str], citations: list[Citation], sources: list[Source],
            copies_of: dict[str, tuple[str, ...]], found: checks.Disagreement | None, gate: Choice | None,
            states: Callable[[str, str], bool], conflict_min_p: float,
            staleness: Callable[[], list[str]], as_of_same_min: float = CheckSettings.as_of_same_min) -> Composed:
    """Join the kept sentences and add what is said beside them: the other values sources give
    (`reconcile`), for a when-question the sources that carry no date, for a question about now
    the date it is true as of and how stale the folder is, and a note when copies of one article
    carry the cited text. Only citations the final text uses are kept."""
    notes: list[str] = []
    added: list[tuple[str, Citation]] = []
    if found:
        kept, added = reconcile(found, kept, sources, states, q.kind)
        kept.extend(sentence for sentence, _ in added if sentence)
    text = " ".join(kept)
    if q.kind == "when":
        notes.extend(undated_notes(text, sources))
    if q.current:
        text, earlier = as_of(text, citations, sources, gate, conflict_min_p, as_of_same_min)
        if earlier:
            text += " " + " ".join(sentence for sentence, _ in earlier)
        added.extend(earlier)
        notes.extend(staleness())
    used = [c for c in citations if f"[{c.label}]" in text]
    used += [c for _, c in added if c not in used]
    used = [replace(c, copies=copies_of.get(c.file, ())) for c in used]
    independent = len({min((c.file, *c.copies)) for c in used})
    carried = len({c.file for c in used} | {f for c in used for f in c.copies})
    if carried > independent:
        notes.append(f"Confirmed by {independent} independent source{'s' if independent > 1 else ''}; "
                     f"{carried} files carry the cited text (copies are counted once).")
    return Composed(text, used, notes, independent)
