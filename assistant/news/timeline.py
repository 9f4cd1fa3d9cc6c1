"""Cited story timelines: dated events across the articles, in date order.

For a topic, the retriever's passages are split into sentences; a sentence becomes an event when
the NER model finds a date expression in it that can be placed in time. The event date is kept
apart from the article date: "on April 2" in an article of May 2023 is 2023-04-02, and relative
expressions ("last month", "Wednesday", "next year") are resolved against the publication date by
`dateparser`. Without a publication date only expressions that name their year are placed, at the
precision they state. The chat model judges, under a grammar, whether the sentence is about the
topic at all and whether what it reports had happened or was planned (one constrained reply per
sentence; its probabilities are kept). Each event is its source sentence, cited verbatim with its
offsets; the same event reported by several files (or their copies) is one event citing them all."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..backends.base import ChatModel
from ..indexing.chunking import split_sentences
from ..dates import date_to_epoch
from ..errors import InputError
from ..answering.prompts import render
from ..text_utils import MONTHS, content_terms, jaccard
from ..types import Citation, Passage

if TYPE_CHECKING:
    from ..search.retrieval import Retriever

OPTIONS = ("HAPPENED", "PLANNED", "NO")
PRECISIONS = ("day", "week", "month", "year")
_YEAR = re.compile(r"\b(1[89]\d\d|20\d\d)\b")
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_ANCHORS = ("yesterday", "today", "tomorrow", "last", "next", "this", "ago", "earlier", "later")


@dataclass
class TimelineEvent:
    """One dated event: its date at a stated precision, what happened, and where it is said."""

    date: str  # ISO, cut to the precision: 2023-04-02, 2023-04, 2023
    precision: str  # day, week, month or year
    event: str
    status: str  # happened or planned
    citations: list[Citation] = field(default_factory=list)
    article_date: str = ""  # publication date of the first cited article ("" when unknown)
    date_text: str = ""  # the words the date was read from
    p_topic: float = 0.0

    @property
    def start(self) -> date:
        """First day of the event's period."""
        return date.fromisoformat((self.date + "-01-01")[:10] if len(self.date) < 10 else self.date)

    def to_dict(self) -> dict[str, Any]:
        """Serialise for `--json` output."""
        return {"date": self.date, "precision": self.precision, "event": self.event, "status": self.status,
                "article_date": self.article_date, "date_text": self.date_text,
                "citations": [c.to_dict() for c in self.citations]}


@dataclass
class Timeline:
    """A topic's events in date order, and what could not be placed."""

    topic: str
    events: list[TimelineEvent] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Serialise (the CLI's `--json` prints `events` only, as a list)."""
        return {"topic": self.topic, "events": [e.to_dict() for e in self.events], "notes": self.notes}


def placeable(expression: str, has_base: bool, year_only: bool = False) -> bool:
    """Whether a DATE entity can be placed in time: it names a year, or (with a publication date to
    resolve against) a month, a weekday or a relative anchor. Durations ("two years") cannot. With
    only the article's year (`year_only`), a month or "this/next/last year" can; a weekday cannot."""
    words = set(re.findall(r"[a-z]+", expression.lower()))
    if _YEAR.search(expression):
        return True
    if year_only:
        return _fits_a_year(expression, words)
    return has_base and bool(words & (set(MONTHS) | set(_WEEKDAYS) | set(_ANCHORS)))


def resolve_date(expression: str, article_date: str, planned: bool) -> tuple[str, str] | None:
    """(ISO date cut to its precision, precision) for a date expression, or None when it cannot be placed.

    A year named in the text wins. Otherwise the article's date is the base: a month (and day)
    without a year is put in the year that brings it closest to the article's date ("in November"
    in a March article is the November before, "in May" the May after); a weekday is the article's
    own day when it matches, else the one before it (after it, for a planned event); relative words
    ("last month", "next year") go to `dateparser` with the article's date as its base."""
    from dateparser.date import DateDataParser

    base_day = datetime.fromisoformat(article_date[:10]) if len(article_date) >= 10 else None
    base = base_day or (datetime.fromisoformat(article_date[:7] + "-01") if len(article_date) >= 7 else None)
    words = set(re.findall(r"[a-z]+", expression.lower()))
    if base is None and len(article_date) == 4 and not _YEAR.search(expression):
        return _in_year(expression, words, int(article_date), planned)
    relative = _RELATIVE_YEAR.search(expression)
    if base is not None and relative and not _YEAR.search(expression) and not words & set(MONTHS):
        # "later this year", "early next year": the year, which dateparser does not read.
        return str(base.year + _YEAR_OFFSET[relative.group(1).lower()]), "year"
    if not placeable(expression, base is not None):
        return None
    text = re.sub(r"^(the|on|in|at|by|from|since|until|during)\s+", "", expression.strip(), flags=re.I)
    settings: dict[str, Any] = {"PREFER_DAY_OF_MONTH": "first", "RETURN_TIME_AS_PERIOD": True,
                                "PREFER_DATES_FROM": "future" if planned else "past"}
    has_year = bool(_YEAR.search(expression))
    if not has_year and base is not None:
        settings["RELATIVE_BASE"] = base
        if not words & set(_ANCHORS):
            weekday = next((n for n, d in enumerate(_WEEKDAYS) if d in words), None)
            if weekday is not None and not words & set(MONTHS):
                if base_day is None:
                    return None
                shift = (weekday - base_day.weekday()) % 7
                when = base_day if shift == 0 else base_day + timedelta(days=shift if planned else shift - 7)
                return when.strftime("%Y-%m-%d"), "day"
    data = DateDataParser(languages=["en"], settings=settings).get_date_data(text)
    if data is None or data.date_obj is None:
        year = _YEAR.search(expression)  # "the summer of 2022": at least its year
        return (year.group(1), "year") if year else None
    when, period = data.date_obj, data.period or "day"
    period = "day" if period == "time" else period
    if not has_year and base is not None and words & set(MONTHS) and not words & set(_ANCHORS):
        candidates = [when.replace(year=y) for y in (base.year - 1, base.year, base.year + 1)
                      if not (when.month == 2 and when.day == 29)]
        when = min(candidates, key=lambda c: (abs((c - base).days), c < base if planned else c > base))
    if base_day is None and not has_year and period in ("day", "week") and not words & set(MONTHS):
        return None  # "yesterday" in an article dated only to its month
    if period == "week":
        monday = when - timedelta(days=when.weekday())
        return monday.strftime("%Y-%m-%d"), "week"
    fmt = {"day": "%Y-%m-%d", "month": "%Y-%m", "year": "%Y"}.get(period, "%Y-%m-%d")
    return when.strftime(fmt), period if period in PRECISIONS else "day"


_RELATIVE_YEAR = re.compile(r"\b(this|next|last|the coming|the previous) year\b", re.I)
_YEAR_OFFSET = {"this": 0, "next": 1, "the coming": 1, "last": -1, "the previous": -1}
# "the 45th anniversary of the signing of the 1978 treaty": that year plus 45.
_ANNIVERSARY = re.compile(r"\b(\d{1,3})(?:st|nd|rd|th) anniversary of\b[^.;]{0,60}?\b(1[89]\d\d|20\d\d)\b", re.I)


def _in_year(expression: str, words: set[str], year: int, planned: bool) -> tuple[str, str] | None:
    """Place an expression in an article known only to its year (inferred from its text): a month
    (and day) is in that year, "this/next/last year" is that year or the one beside it. A weekday
    or "yesterday" needs the day, so it stays unplaced."""
    if not _fits_a_year(expression, words):
        return None
    relative = _RELATIVE_YEAR.search(expression)
    if relative:
        return str(year + _YEAR_OFFSET[relative.group(1).lower()]), "year"
    return resolve_date(f"{expression} {year}", "", planned)


def _fits_a_year(expression: str, words: set[str]) -> bool:
    """"this/next/last year", or a month (and day) not tied to another anchor ("last May")."""
    return bool(_RELATIVE_YEAR.search(expression)) or bool(words & set(MONTHS)) and not words & (set(_ANCHORS) - {"this"})


def infer_year(sentences: list[str]) -> str:
    """An undated article's year, from what its own text says: a sentence that says "this year"
    (or "next year", "last year") and names one year beside it dates the article; a year given as
    an anniversary ("this year's 45th anniversary of the 1978 treaty") counts as the year it
    falls in. The year most sentences give, or "" when none does."""
    votes: dict[int, int] = {}
    for sentence in sentences:
        relative = _RELATIVE_YEAR.findall(sentence)
        if len(relative) != 1:
            continue
        offset = _YEAR_OFFSET[relative[0].lower()]
        # "this year's 45th anniversary of the 1978 treaty": the anniversary is the year meant.
        years = {int(m.group(2)) + int(m.group(1)) for m in _ANNIVERSARY.finditer(sentence)}
        if not years:
            years = {int(y) for y in _YEAR.findall(sentence)}
        if len(years) == 1:
            year = next(iter(years)) - offset
            votes[year] = votes.get(year, 0) + 1
    return str(max(votes, key=lambda y: (votes[y], y))) if votes else ""


def reported_date(sentence: str, dates: list[Any]) -> list[Any]:
    """The sentence's date expressions, the one the sentence reports first: the date closest (in
    the parse) to the main verb, so "meet ... on April 1, the first visit since December 2019"
    is about April 1. Falls back to the order of the text when the parser is not installed."""
    if len(dates) < 2:
        return dates
    try:
        from ..backends.ner import parse

        tokens = parse(sentence)
    except Exception:  # noqa: BLE001 - the parse only orders the candidates
        return dates

    def depth(entity: Any) -> int:
        inside = [n for n, t in enumerate(tokens) if entity.start <= t.idx < entity.end]
        if not inside:
            return len(tokens)
        best = len(tokens)
        for n in inside:
            steps, seen = 0, set()
            while tokens[n].head != n and n not in seen:
                seen.add(n)
                n, steps = tokens[n].head, steps + 1
            best = min(best, steps)
        return best

    return sorted(dates, key=lambda e: (depth(e), e.start))


def _overlaps(event: TimelineEvent, since: str, until: str) -> bool:
    from ..search.retrieval import _period_end

    start = date_to_epoch(event.date)
    end = _period_end(event.date)
    if since and end < date_to_epoch(since):
        return False
    if until and start > _period_end(until):
        return False
    return True


def _same_event(a: TimelineEvent, b: TimelineEvent, same_min: float) -> bool:
    if (a.date, a.precision, a.status) != (b.date, b.precision, b.status):
        return False
    x, y = set(content_terms(a.event)), set(content_terms(b.event))
    return jaccard(x, y) >= same_min or bool({c.file for c in a.citations} & {
        f for c in b.citations for f in (c.file, *c.copies)})


def build_timeline(retriever: "Retriever", llm: ChatModel, topic: str, since: str = "", until: str = "") -> Timeline:
    """The dated events of a topic across the indexed articles (see the module docstring)."""
    from ..backends.ner import entities
    from ..search.retrieval import Filters

    topic = topic.strip()
    if not topic:
        raise InputError("the topic is empty: name a story, e.g. `assistant timeline \"seafood import ban\"`")
    Filters(date_from=since, date_to=until)  # the same date checks as --since/--until elsewhere
    settings = retriever.settings
    passages: list[Passage] = retriever.search(topic, k=settings.timeline.chunks)
    undated = [p.file for p in passages if not p.date]
    articles = retriever.articles(undated) if undated else {}
    years = {f: infer_year([s.text for s in a.sentences()]) for f, a in articles.items()}
    timeline = Timeline(topic)
    seen: set[tuple[str, int]] = set()
    unplaced = 0
    for p in passages:
        for span in split_sentences(p.text):
            key = (p.file, p.start + span.start)
            if key in seen:
                continue
            seen.add(key)
            sentence = p.text[span.start:span.end]
            dates = reported_date(sentence, [e for e in entities(sentence) if e.label == "DATE"])
            if not dates or len(content_terms(sentence)) < 4:
                continue
            base = p.date or years.get(p.file, "")
            if not any(placeable(e.text, bool(base), year_only=bool(base) and not p.date) for e in dates):
                unplaced += 1
                continue
            note = f"Article date: {p.date}." if p.date else "Article date: unknown."
            choice = llm.choose([{"role": "user", "content": render(
                "timeline_event", topic=topic, article_date=note, sentence=" ".join(sentence.split()))}], OPTIONS)
            p_topic = 1.0 - choice.probs.get("NO", 0.0)
            if choice.option == "NO" or p_topic < settings.timeline.topic_min:  # P(about the topic) = 1 - P(NO)
                continue
            planned = choice.option == "PLANNED"
            placed, used = next(((r, e) for e in dates if (r := resolve_date(e.text, base, planned))), (None, None))
            if placed is None or used is None:
                unplaced += 1
                continue
            citation = Citation(label=f"T{len(timeline.events) + 1}", file=p.file, start=p.start + span.start,
                                end=p.start + span.end, quote=sentence, copies=p.copies)
            event = TimelineEvent(date=placed[0], precision=placed[1], event=" ".join(sentence.split()),
                                  status="planned" if planned else "happened", citations=[citation],
                                  article_date=p.date, date_text=used.text, p_topic=p_topic)
            if since or until:
                if not _overlaps(event, since, until):
                    continue
            twin = next((e for e in timeline.events if _same_event(e, event, settings.timeline.same_event_min)), None)
            if twin is not None:
                twin.citations.append(citation)
            else:
                timeline.events.append(event)
    timeline.events.sort(key=lambda e: (e.start, PRECISIONS.index(e.precision), e.citations[0].file))
    for n, e in enumerate(timeline.events, 1):
        e.citations = [replace(c, label=f"T{n}") for c in e.citations]
    if unplaced:
        timeline.notes.append(f"{unplaced} dated sentence{'s' if unplaced > 1 else ''} could not be placed in time "
                              "(no year stated, and no publication date precise enough to resolve it against).")
    if not timeline.events:
        timeline.notes.append("No dated events about this topic were found in the articles.")
    return timeline
