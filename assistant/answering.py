"""ask(): retrieve -> select evidence -> prompt -> generate -> resolve citations. Every answer comes from here."""

from __future__ import annotations

import math
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from .backends import get_llm
from .chunking import split_sentences
from .citations import LABEL, NOT_NAMES, Source, lexical_support, normalize_labels, resolve, strip_labels
from .errors import IndexNotBuiltError
from .injection import addresses_the_assistant
from .premise import premise_gaps, premise_terms
from .prompts import render
from .retrieval import Filters, Retriever, get_retriever
from .settings import Settings
from .text_utils import MONTHS, STOPWORDS, content_terms, stem, tokens
from .types import Answer, Passage

SENTINEL = "NOT_IN_SOURCES"
DECLINE_TEXT = "The articles don't say."
# Evidence gate. On the 92-question gold set, coverage and similarity overlap heavily between
# answerable and unanswerable questions (the on-topic unanswerable ones reach similarity
# 0.60-0.81), so the gate is kept lenient: it declines none of them there and fires only for
# questions far from the corpus. Names absent from every article and the post-generation
# checks (support, answer type) do the rest.
MIN_COVERAGE = 0.3
MIN_SIMILARITY = 0.55
CANDIDATE_CHUNKS = 6
PREMISE_CHUNKS = 20
_HOW_MANY = re.compile(r"\b(how (many|much|long|old)|what (percentage|share|proportion|number|per ?cent))\b", re.I)
_WHEN = re.compile(r"^\s*(when\b|(on|in) what (date|day|year|month)|(in )?(which|what) (year|month|date))", re.I)
_NUMBER = re.compile(r"\d|\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|dozen|hundred|"
                     r"thousand|million|billion|half|quarter|per ?cent|percent|first|second|third)\b", re.I)
_DATE = re.compile(r"\b(19|20)\d\d\b|\b(january|february|march|april|may|june|july|august|september|october|"
                   r"november|december|monday|tuesday|wednesday|thursday|friday|saturday|sunday|spring|summer|"
                   r"autumn|winter|year|month|week|today|yesterday|tomorrow|ago|since|earlier|later)\b", re.I)
_WHAT_DAY = re.compile(r"\b(what|which) (date|day)\b|\bexact date\b", re.I)
_WEEKDAY = re.compile(r"\b(monday|tuesday|wednesday|thursday|friday|saturday|sunday)\b", re.I)
_WHERE = re.compile(r"^\s*(where|(in|at) which|which (country|city|place))\b", re.I)
_WHO = re.compile(r"^\s*(who|whom|whose)\b|\bwhat (is|was|were|are) the names?\b|^\s*name\b", re.I)
_TIME_WORDS = re.compile(r"\b(when|latest|most recent|newest|last|first|earliest|date|year|month)\b", re.I)

MessageFn = Callable[[str], None]
_AUTO_BUILD_LOCK = threading.Lock()


@dataclass
class Evidence:
    """What retrieval found for a question, and whether it can hold an answer."""

    sources: list[Source]
    passages: list[Passage]
    coverage: float
    similarity: float

    unknown_names: tuple[str, ...] = ()

    @property
    def answerable(self) -> bool:
        """True when the selected sentences cover the question well enough to try answering."""
        if not self.sources or self.unknown_names:
            return False
        return self.coverage >= MIN_COVERAGE or self.similarity >= MIN_SIMILARITY


class Assistant:
    """The answering core, configured once and reusable across questions and threads."""

    def __init__(self, settings: Settings | None = None, on_message: MessageFn | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self._on_message = on_message or (lambda _msg: None)
        self._retriever: Retriever | None = None

    # -- retrieval -----------------------------------------------------------------
    @property
    def retriever(self) -> Retriever:
        """The hybrid retriever; builds the sample index on first use when none exists."""
        if self._retriever is None:
            from .indexing import build_index, index_exists

            # Many threads may ask the first question at once: one builds, the others wait.
            with _AUTO_BUILD_LOCK:
                if not index_exists(self.settings):
                    self._on_message(f"No index yet: building one from {self.settings.corpus_dir} (first run only)...")
                    build_index(self.settings.corpus_dir, settings=self.settings)
            self._retriever = get_retriever(self.settings)
        return self._retriever

    def gather(self, question: str, filters: Filters | None = None) -> Evidence:
        """Retrieve passages and pick the few sentences that matter for the prompt."""
        retriever = self.retriever
        passages = retriever.search(question, k=CANDIDATE_CHUNKS, filters=filters)
        if not passages:
            return Evidence([], [], 0.0, 0.0)
        candidates: dict[tuple[str, int], tuple[Passage, int, int, str]] = {}
        for p in passages:
            for s in split_sentences(p.text):
                key = (p.file, p.start + s.start)
                # A sentence written to steer the model (planted instructions) is never evidence.
                if addresses_the_assistant(p.text[s.start:s.end]):
                    continue
                if key not in candidates and len(content_terms(p.text[s.start:s.end])) >= 3:
                    candidates[key] = (p, p.start + s.start, p.start + s.end, p.text[s.start:s.end])
        items = list(candidates.values())
        if not items:
            return Evidence([], passages, 0.0, 0.0)
        q_vec = retriever.embed_query(question)
        vectors = retriever.embed_texts([it[3] for it in items])
        sims = [sum(a * b for a, b in zip(q_vec, v)) for v in vectors]
        idf = retriever.idf()
        q_terms = set(content_terms(question))
        max_idf = max(idf.values(), default=1.0)
        weight = {t: idf.get(t, max_idf) for t in q_terms}
        total = sum(weight.values()) or 1.0
        years = set(re.findall(r"\b(?:19|20)\d\d\b", question))
        scored = []
        for item, sim in zip(items, sims):
            terms = set(content_terms(item[3]))
            cov = sum(w for t, w in weight.items() if t in terms) / total
            # A year named in the question favours articles published that year.
            dated = 0.25 if years and item[0].date[:4] in years else 0.0
            scored.append((sim + 0.5 * cov + dated, item))
        scored.sort(key=lambda x: -x[0])
        chosen = [it for _, it in scored[: self.settings.max_context_sentences]]
        chosen_terms = set().union(*(set(content_terms(it[3])) for it in chosen))
        coverage = sum(w for t, w in weight.items() if t in chosen_terms) / total
        sources = self._group(chosen, question)
        # A name the question hinges on that no article mentions at all cannot be answered.
        unknown = tuple(sorted(name for name in _proper_names(question)
                               if all(stem(part) not in idf for part in name.split("-"))))
        return Evidence(sources, passages, coverage, max(sims), unknown)

    def premise_gaps(self, question: str, filters: Filters | None = None) -> list[str]:
        """Words the question takes for granted that no passage states (see premise.py)."""
        if not premise_terms(question):
            return []
        # Wider than the prompt's passages (whose ranking it extends: they are its first
        # CANDIDATE_CHUNKS): the premise may be stated in a chunk the answer does not need.
        wider = self.retriever.search(question, k=PREMISE_CHUNKS, filters=filters)
        return premise_gaps(question, wider, self.retriever.article_words())

    def _group(self, chosen: list[tuple[Passage, int, int, str]], question: str) -> list[Source]:
        # Adjacent sentences of one file merge into one labelled source, in reading order.
        rank = {(it[0].file, it[1]): n for n, it in enumerate(chosen)}
        by_file: dict[str, list[tuple[Passage, int, int, str]]] = {}
        for it in chosen:
            by_file.setdefault(it[0].file, []).append(it)
        groups: list[list[tuple[Passage, int, int, str]]] = []
        for items in by_file.values():
            items.sort(key=lambda it: it[1])
            current = [items[0]]
            for it in items[1:]:
                prev = current[-1]
                gap = it[0].text[max(0, prev[2] - it[0].start): max(0, it[1] - it[0].start)] \
                    if prev[0].chunk_id == it[0].chunk_id else "x"
                if prev[0].chunk_id == it[0].chunk_id and not gap.strip():
                    current.append(it)
                else:
                    groups.append(current)
                    current = [it]
            groups.append(current)
        if _TIME_WORDS.search(question):
            groups.sort(key=lambda g: (g[0][0].date or "9999", g[0][1]))
        else:
            groups.sort(key=lambda g: min(rank[(it[0].file, it[1])] for it in g))
        # One file's passages sit together, files in the order of their first passage above (best
        # rank, or earliest date for a time question), so the prompt names each file and date once.
        # A heading like "002_0c11952fb06d513a.txt, 2022-12-16" is about 34 tokens; on every passage
        # it was 40% of the question-specific prompt. Grouped, the 92 gold questions' prompts are 63
        # tokens shorter (evals/README.md); a heading per run of consecutive passages, keeping
        # rank order, saved less and did no better.
        file_order: dict[str, int] = {}
        for n, group in enumerate(groups):
            file_order.setdefault(group[0][0].file, n)
        groups.sort(key=lambda g: file_order[g[0][0].file])
        sources = []
        for n, group in enumerate(groups, 1):
            p = group[0][0]
            start, end = group[0][1], group[-1][2]
            text = p.text[start - p.start: end - p.start]
            sources.append(Source(label=f"S{n}", file=p.file, start=start, end=end, text=text,
                                  date=p.date, title=p.title))
        return sources

    # -- prompting -----------------------------------------------------------------
    @staticmethod
    def messages(question: str, sources: list[Source]) -> list[dict[str, str]]:
        """The chat messages for a question and its labelled sources."""
        lines = []
        for n, s in enumerate(sources):
            if n == 0 or sources[n - 1].file != s.file:
                lines.append(source_heading(s))
            lines.append(f"[{s.label}] {' '.join(s.text.split())}")
        note = conflicting_dates(question, sources)
        if note:
            lines.append(note)
        return [
            {"role": "system", "content": render("answer_system")},
            {"role": "user", "content": render("answer_user", sources="\n".join(lines), question=question.strip())},
        ]

    # -- answering -----------------------------------------------------------------
    def ask(self, question: str, filters: Filters | None = None) -> Answer:
        """Answer a question with citations (or decline, listing the closest passages)."""
        answer: Answer | None = None
        for event in self._run(question, filters, streaming=False):
            if isinstance(event, Answer):
                answer = event
        assert answer is not None
        return answer

    def stream(self, question: str, filters: Filters | None = None) -> Iterator[str | Answer]:
        """Yield the answer text as it is generated, then the final Answer object."""
        yield from self._run(question, filters, streaming=True)

    def _run(self, question: str, filters: Filters | None, streaming: bool) -> Iterator[str | Answer]:
        t0 = time.perf_counter()
        question = question.strip()
        if not question:
            from .errors import InputError

            raise InputError("the question is empty: ask something about the articles")
        evidence = self.gather(question, filters)
        t1 = time.perf_counter()
        timings = {"retrieve_s": t1 - t0}
        # "Why did X cancel Y?" when no passage says X cancelled Y: the premise is not in the articles.
        gaps = self.premise_gaps(question, filters) if evidence.answerable else []
        if not evidence.answerable or gaps:
            answer = self._declined(question, evidence, timings, t0, premise=gaps)
            if streaming:
                yield answer.answer
            yield answer
            return
        llm = get_llm(self.settings, self._on_message)
        messages = self.messages(question, evidence.sources)
        prompt_tokens = completion_tokens = 0
        if streaming:
            parts: list[str] = []
            buffered = ""
            first = None
            for delta in llm.stream(messages, max_tokens=self.settings.max_answer_tokens,
                                    temperature=self.settings.temperature):
                if first is None:
                    first = time.perf_counter()
                parts.append(delta)
                # Hold output back while it could still be the decline sentinel.
                so_far = "".join(parts).lstrip()
                if SENTINEL.startswith(so_far) or so_far.startswith(SENTINEL):
                    continue
                chunk = so_far[len(buffered):]
                buffered = so_far
                if chunk:
                    yield chunk
            raw = "".join(parts)
            timings["first_token_s"] = (first or time.perf_counter()) - t0
        else:
            completion = llm.complete(messages, max_tokens=self.settings.max_answer_tokens,
                                      temperature=self.settings.temperature)
            raw = completion.text
            prompt_tokens, completion_tokens = completion.prompt_tokens, completion.completion_tokens
        t2 = time.perf_counter()
        timings["generate_s"] = t2 - t1
        answer = self._finish(question, raw, evidence, timings, t0)
        answer.prompt_tokens, answer.completion_tokens = prompt_tokens, completion_tokens
        shown = raw.strip()
        if streaming and (answer.declined or not re.search(r"[A-Za-z0-9]", strip_labels(normalize_labels(shown)))):
            # What was streamed is not the answer (a decline, or labels the code turned into a quote).
            yield ("\n" if shown and not shown.startswith(SENTINEL) else "") + answer.answer
        yield answer

    def _declined(self, question: str, evidence: Evidence, timings: dict[str, float], t0: float,
                  premise: list[str] | None = None) -> Answer:
        timings["total_s"] = time.perf_counter() - t0
        text = DECLINE_TEXT
        if premise:
            words = ", ".join(f'"{w}"' for w in premise)
            text += f" No passage states what the question assumes: none mentions {words} with the rest of it."
        return Answer(question=question, answer=text, declined=True, sources=evidence.passages[:3],
                      timings=timings, unsupported_premise=list(premise or []))

    def _finish(self, question: str, raw: str, evidence: Evidence, timings: dict[str, float], t0: float) -> Answer:
        text = raw.strip()
        if not text or text.startswith(SENTINEL) or text.replace(SENTINEL, "").strip(" .") == "":
            return self._declined(question, evidence, timings, t0)
        text = quote_if_only_labels(question, text.replace(SENTINEL, "").strip(), evidence.sources)
        resolution = resolve(text, evidence.sources, embed=self.retriever.embed_texts, question=question,
                             article_words=self.retriever.article_words())
        # A claim no source supports is withheld (it stays listed in unsupported_sentences).
        kept = resolution.supported
        if not kept or not addresses_question(question, " ".join(kept)):
            # Nothing the model said is backed by the sources, or it does not answer what was asked.
            return self._declined(question, evidence, timings, t0)
        answer_text = " ".join(kept)
        timings["total_s"] = time.perf_counter() - t0
        citations = [c for c in resolution.citations if f"[{c.label}]" in answer_text]
        cited_files = {c.file for c in citations}
        sources = [p for p in evidence.passages if p.file in cited_files] or evidence.passages[:3]
        return Answer(question=question, answer=answer_text, declined=False, citations=citations,
                      sources=sources, timings=timings, unsupported_sentences=resolution.unsupported,
                      uncited_sentences=resolution.uncited)


def source_heading(source: Source) -> str:
    """The line above a file's labelled passages in the prompt: its filename and publication date."""
    return f"{source.file}, published {source.date}:" if source.date else f"{source.file}:"


def quote_if_only_labels(question: str, text: str, sources: list[Source]) -> str:
    """A reply that is only labels ("[Source: S1]") points at a source without saying anything:
    answer with the sentence of those sources that best matches the question, quoted verbatim."""
    text = normalize_labels(text)
    if re.search(r"[A-Za-z0-9]", strip_labels(text)):
        return text
    by_label = {s.label: s for s in sources}
    cited = [by_label[f"S{n}"] for n in dict.fromkeys(LABEL.findall(text)) if f"S{n}" in by_label]
    if not cited:
        return ""
    wants_name = bool(_WHO.search(question) or _WHERE.search(question))
    scored = []
    for n, src in enumerate(cited):
        for span in split_sentences(src.text):
            quote = src.text[span.start:span.end]
            # For who/where/which questions, a sentence naming something the question does not is the answer.
            bonus = 0.5 if wants_name and _new_names(question, quote) else 0.0
            scored.append((lexical_support(question, quote) + bonus, -n, -span.start, quote, src.label))
    if not scored:
        return ""
    *_, quote, label = max(scored)
    return f"{' '.join(quote.split()).rstrip('.')} [{label}]."


_DAY_DATE = re.compile(r"\b(?:(January|February|March|April|May|June|July|August|September|October|November|"
                       r"December) (\d{1,2})\b|(\d{1,2}) (January|February|March|April|May|June|July|August|"
                       r"September|October|November|December)\b)")


def conflicting_dates(question: str, sources: list[Source]) -> str:
    """For a 'when' question, a note naming the different dates the sources give (or '')."""
    if not _WHEN.search(question) and not re.search(r"\bdate\b", question, re.I):
        return ""
    found: dict[str, list[str]] = {}
    for s in sources:
        for m in _DAY_DATE.finditer(s.text):
            month, day = (m.group(1), m.group(2)) if m.group(1) else (m.group(4), m.group(3))
            found.setdefault(f"{month} {int(day)}", [])
            if s.label not in found[f"{month} {int(day)}"]:
                found[f"{month} {int(day)}"].append(s.label)
    files = {s.label: s.file for s in sources}
    if len(found) < 2 or len({files[labels[0]] for labels in found.values()}) < 2:
        return ""
    parts = ", ".join(f"{date} [{labels[0]}]" for date, labels in found.items())
    return f"Note: the sources give different dates ({parts}); say which is planned and which actual if they differ."


def _proper_names(question: str) -> list[str]:
    """Capitalised words inside the question (not its first word), e.g. 'Brazil', 'Olympics'."""
    words = re.findall(r"[A-Za-z][A-Za-z'’-]*", question)
    names = []
    for word in words[1:]:
        w = re.sub(r"['’]s$", "", word)
        # Acronyms (GDP, NATO) are often spelled out in articles, so they do not count.
        if w[0].isupper() and not w.isupper() and len(w) > 3 and w.lower() not in MONTHS:
            names.append(w.lower())
    return names


def _new_names(question: str, answer: str) -> set[str]:
    """Capitalised words of the answer that the question does not contain (candidate names)."""
    asked = {stem(t) for t in tokens(question)}
    out = set()
    for word in re.findall(r"[A-Za-z][A-Za-z'’-]*", answer):
        w = re.sub(r"['’]s$", "", word).lower()
        if (word[0].isupper() and w not in STOPWORDS and w not in NOT_NAMES and stem(w) not in asked
                and w not in MONTHS and not w.endswith("ese")):
            out.add(w)
    return out


def addresses_question(question: str, answer: str) -> bool:
    """Does the answer have the kind of content the question asks for (a number, a date, a name)?"""
    answer = re.sub(r"\[S\d+\]", " ", answer)
    if _HOW_MANY.search(question) and not _NUMBER.search(answer):
        return False
    if _WHEN.search(question) and not _DATE.search(answer):
        return False
    if _WHAT_DAY.search(question) and not _DAY_DATE.search(answer) and not _WEEKDAY.search(answer):
        return False
    if _WHO.search(question) and not _new_names(question, answer):
        return False
    return True


_DEFAULT: dict[Any, Assistant] = {}


def ask(question: str, settings: Settings | None = None, filters: Filters | None = None) -> Answer:
    """Answer one question with the default (or given) settings."""
    settings = settings or Settings.from_env()
    assistant = _DEFAULT.setdefault(settings, Assistant(settings))
    return assistant.ask(question, filters=filters)
