"""ask(): understand -> retrieve -> select evidence -> prompt -> judge -> generate -> resolve -> judge.

Every answer comes from here. The decisions (can the sources answer, is each sentence supported,
does the answer give what was asked) live in `assistant.answering.checks`; this module runs them in order
and records their verdicts on the Answer.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from datetime import datetime
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from . import checks
from ..search import evidence
from ..backends import get_llm
from ..backends.base import ChatModel
from .checks import Question
from .citations import normalize_labels, resolve
from ..labels import Source
from ..dates import date_to_epoch
from ..search.injection import addresses_the_assistant
from ..labels import labels_in, strip_labels
from .notes import compose, quote_if_only_labels
from .prompts import render
from ..search.retrieval import Filters, Retriever, get_retriever
from ..settings import Settings
from ..text_utils import content_terms
from ..types import Check, Answer, Passage

SENTINEL = "NOT_IN_SOURCES"
DECLINE_TEXT = "The articles don't say."
_TIME_WORDS = re.compile(r"\b(when|latest|most recent|newest|last|first|earliest|date|year|month)\b", re.I)

MessageFn = Callable[[str], None]


class Revision(str):
    """A streamed event that replaces everything streamed before it (the checked answer's text)."""

_AUTO_BUILD_LOCK = threading.Lock()


@dataclass
class Evidence:
    """What retrieval found for a question: the labelled sources and the passages behind them."""

    question: Question
    sources: list[Source]
    passages: list[Passage]
    searched: list[Passage] = field(default_factory=list)


class Assistant:
    """The answering core, configured once and reusable across questions and threads.

    With `trace=True` every stage runs even after a check declines (the eval uses this to measure
    each check on and off from one run); the Answer is the same, with the draft kept."""

    def __init__(self, settings: Settings | None = None, on_message: MessageFn | None = None,
                 trace: bool = False, *, llm: ChatModel | None = None, retriever: Retriever | None = None) -> None:
        """`llm` and `retriever` are the models to use; each left out is built from the settings
        (and shared by every Assistant of the process with the same settings)."""
        self.settings = settings or Settings.from_env()
        self._on_message = on_message or (lambda _msg: None)
        self._retriever = retriever
        self._llm = llm
        self.trace = trace

    @property
    def llm(self) -> ChatModel:
        """The chat model: the one handed in, else the process's one for these settings."""
        if self._llm is None:
            self._llm = get_llm(self.settings, self._on_message)
        return self._llm

    # -- retrieval -----------------------------------------------------------------
    @property
    def retriever(self) -> Retriever:
        """The hybrid retriever; builds the sample index on first use when none exists."""
        if self._retriever is None:
            from ..indexing.build import build_index, index_exists

            # Many threads may ask the first question at once: one builds, the others wait.
            with _AUTO_BUILD_LOCK:
                if not index_exists(self.settings):
                    corpus = self.settings.index.corpus_dir
                    self._on_message(f"No index yet: building one from {corpus} (first run only)...")
                    build_index(corpus, settings=self.settings)
            self._retriever = get_retriever(self.settings)
        return self._retriever

    def understand(self, question: str) -> Question:
        """The question's kind and named entities, read once for every check."""
        return checks.understand(question, use_ner=self.settings.checks.ner)

    def gather(self, question: str | Question, filters: Filters | None = None) -> Evidence:
        """Retrieve passages and spend the evidence budget on the sentences that matter, in context."""
        q = question if isinstance(question, Question) else self.understand(question)
        retriever = self.retriever
        searched = retriever.search(q.text, k=self.settings.retrieval.search_chunks, filters=filters)
        passages = searched[:self.settings.retrieval.candidate_chunks]
        ranked = self.rank_sentences(q, passages)
        if not ranked:
            return Evidence(q, [], passages, searched)
        articles = retriever.articles([p.file for p in passages])
        runs = evidence.select(ranked, articles, self.budget(q))
        sources = evidence.sources_of(runs, articles, time_order=bool(_TIME_WORDS.search(q.text)) and not q.current)
        if q.current:
            # How things stand now: newer articles go first in the prompt.
            sources = evidence.relabel(sorted(sources, key=lambda s: -date_to_epoch(s.date)))
        return Evidence(q, sources, passages, searched)

    def budget(self, q: Question | None = None) -> evidence.Budget:
        """The evidence budget these settings give for this kind of question: a why or how question
        needs what follows the event (`evidence.after_explain` sentences), a name or date does not."""
        explain = q is not None and q.kind in ("why", "how")
        e = self.settings.evidence
        return evidence.Budget(tokens=e.tokens, after=e.after_explain if explain else e.after, before=e.before,
                               max_files=e.files, new_file_bonus=e.new_file_bonus,
                               after_max_tokens=e.after_max_tokens, chars_per_token=e.chars_per_token)

    def rank_sentences(self, q: Question, passages: list[Passage]) -> list[evidence.Scored]:
        """The sentences of the retrieved chunks, scored for this question, best first."""
        retriever = self.retriever
        articles = retriever.articles([p.file for p in passages])
        file_rank = {f: n for n, f in enumerate(dict.fromkeys(p.file for p in passages))}
        chunk_rank: dict[tuple[str, int], int] = {}
        for n, p in enumerate(passages):
            article = articles.get(p.file)
            for sent in article.sentences() if article is not None else []:
                if sent.start < p.end and sent.end > p.start:
                    chunk_rank.setdefault((sent.file, sent.position), n)
        # Every sentence of the best files is a candidate (the answer is often a sentence or two past
        # the chunk that matched), and every sentence of the other retrieved chunks; a fragment of
        # few content words (a stray code or byline left by a planted line) is not.
        whole = set(list(file_rank)[:self.settings.retrieval.candidate_files])
        candidates = [sent for f in file_rank if f in articles for sent in articles[f].sentences()
                      if (f in whole or (sent.file, sent.position) in chunk_rank)
                      and len(content_terms(sent.text)) >= self.settings.evidence.sentence_min_terms
                      and not addresses_the_assistant(sent.text)]
        if not candidates:
            return []
        q_vec = retriever.embed_query(q.text)
        vectors = retriever.embed_texts([c.text for c in candidates])
        sims = [sum(a * b for a, b in zip(q_vec, v)) for v in vectors]
        items = evidence.features(candidates, sims, retriever.idf(set(content_terms(q.text))), chunk_rank, file_rank)
        ranked = evidence.score(items, dict(self.settings.evidence.weights))
        if q.current:
            epochs = [date_to_epoch(articles[i.sentence.file].date) for i in ranked]
            dated = [e for e in epochs if e]
            if dated and max(dated) > min(dated):
                low, span = min(dated), max(dated) - min(dated)
                for item, e in zip(ranked, epochs):
                    item.score += self.settings.retrieval.recency_weight * (e - low) / span if e else 0.0
                ranked.sort(key=lambda i: -i.score)
        return ranked

    # -- prompting -----------------------------------------------------------------
    @staticmethod
    def messages(question: str, sources: list[Source], note: str = "") -> list[dict[str, str]]:
        """The chat messages for a question and its labelled sources."""
        lines = []
        for n, s in enumerate(sources):
            if n == 0 or sources[n - 1].file != s.file:
                lines.append(source_heading(s))
            lines.append(f"[{s.label}] {' '.join(s.text.split())}")
        if note:
            lines.append(note)
        return [
            {"role": "system", "content": render("answer_system")},
            {"role": "user", "content": render("answer_user", sources="\n".join(lines), question=question.strip())},
        ]

    def staleness_notes(self) -> list[str]:
        """For a question about now: say when the folder's newest article is older than "now"."""
        newest = self.retriever.newest_date()
        if not newest:
            return ["The articles carry no publication dates, so the folder cannot tell which report is the "
                    "newest or how current this answer is."]
        age = (datetime.now().date() - datetime.fromisoformat(newest[:10].ljust(10, "-")[:7] + "-01").date()).days
        if age > self.settings.retrieval.stale_days:
            return [f"The newest article in the folder is from {newest}; anything since then is not covered."]
        return []

    def provenance(self, files: list[str], model_id: str) -> dict[str, Any]:
        """What a reader needs to check this answer later (`assistant verify`)."""
        from .provenance import provenance
        from ..indexing.store import read_manifest

        return provenance(self.settings, read_manifest(self.retriever.loc) or {}, files, model_id)

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

    @functools.cached_property
    def _ner(self) -> bool:
        """NER is on and installed (the figure check reads its entities)."""
        from ..backends import ner

        return self.settings.checks.ner and ner.available()

    def judge(self, llm: ChatModel | None = None) -> checks.Judge:
        """The checks every answer passes, for these settings and this model."""
        return checks.Judge(self.settings, llm or self.llm, trace=self.trace, ner=self._ner)

    def _run(self, question: str, filters: Filters | None, streaming: bool) -> Iterator[str | Answer]:
        t0 = time.perf_counter()
        question = question.strip()
        if not question:
            from ..errors import InputError

            raise InputError("the question is empty: ask something about the articles")
        q = self.understand(question)
        evidence = self.gather(q, filters)
        timings = {"retrieve_s": time.perf_counter() - t0}
        judge = self.judge()
        messages = self.messages(question, evidence.sources)
        judged = judge.before(q, evidence.sources, evidence.searched, messages)
        if not evidence.sources:
            yield from self._emit(self._declined(question, evidence, judged, timings, t0), streaming)
            return
        if judged.disagreement:
            messages = self.messages(question, evidence.sources,
                                     render("conflict", values=judged.disagreement.describe()))
        timings["judge_s"] = time.perf_counter() - t0 - timings["retrieve_s"]
        declined_early = judged.first_failure() is not None
        if judge.stops(judged):
            yield from self._emit(self._declined(question, evidence, judged, timings, t0), streaming)
            return
        t1 = time.perf_counter()
        raw, usage = "", (0, 0)
        if streaming and not declined_early:
            parts: list[str] = []
            for chunk in self._stream_draft(messages, parts, timings, t0):
                yield chunk
            raw = "".join(parts)
        else:
            completion = judge.llm.complete(messages, max_tokens=self.settings.answer.max_answer_tokens,
                                            temperature=self.settings.answer.temperature)
            raw, usage = completion.text, (completion.prompt_tokens, completion.completion_tokens)
        timings["generate_s"] = time.perf_counter() - t1
        answer = self._finish(q, raw, messages, judge, evidence, judged, timings, t0)
        answer.prompt_tokens, answer.completion_tokens = usage
        if streaming:
            shown = raw.strip()
            label_only = not re.search(r"[A-Za-z0-9]", strip_labels(normalize_labels(shown)))
            if declined_early:
                yield answer.answer
            elif answer.declined or label_only or answer.unsupported_sentences or answer.uncited_sentences \
                    or judged.disagreement is not None:
                # What was streamed is not the answer (a decline, a quote made from labels, or
                # sentences withheld or added by the checks): the final text follows, marked as a
                # Revision so a screen can replace the draft (a plain text consumer appends it).
                yield Revision(("\n" if shown and not shown.startswith(SENTINEL) else "") + answer.answer)
        yield answer

    def _stream_draft(self, messages: list[dict[str, str]], parts: list[str], timings: dict[str, float],
                      t0: float) -> Iterator[str]:
        """Stream the model's draft into `parts`, holding output back while it could still be the
        decline sentinel."""
        buffered = ""
        for delta in self.llm.stream(messages, max_tokens=self.settings.answer.max_answer_tokens,
                                     temperature=self.settings.answer.temperature):
            timings.setdefault("first_token_s", time.perf_counter() - t0)
            parts.append(delta)
            so_far = "".join(parts).lstrip()
            if SENTINEL.startswith(so_far) or so_far.startswith(SENTINEL):
                continue
            chunk, buffered = so_far[len(buffered):], so_far
            if chunk:
                yield chunk

    @staticmethod
    def _emit(answer: Answer, streaming: bool) -> Iterator[str | Answer]:
        if streaming:
            yield answer.answer
        yield answer

    def _cited_texts(self, kept: list[str], evidence: Evidence) -> list[str]:
        """The stored text of each article the kept sentences cite (for the subject check)."""
        by_label = {s.label: s.file for s in evidence.sources}
        files = [by_label[lab] for sentence in kept for lab in labels_in(sentence) if lab in by_label]
        return [a.full_text() for a in self.retriever.articles(files).values()] if files else []

    def _declined(self, question: str, evidence: Evidence, judged: checks.Judged, timings: dict[str, float],
                  t0: float, draft: str = "") -> Answer:
        timings["total_s"] = time.perf_counter() - t0
        failure = judged.decline_reason()
        reason = failure.name if failure else "model_declined"
        text = DECLINE_TEXT
        if failure is not None and failure.name == Check.ENTITIES:
            text += f" {failure.reason[0].upper()}{failure.reason[1:]}."
        return Answer(question=question, answer=text, declined=True, sources=evidence.passages[:3],
                      timings=timings, decline_reason=reason, verdicts=judged.verdicts, draft=draft,
                      notes=judged.notes)

    def _finish(self, q: Question, raw: str, messages: list[dict[str, str]], judge: checks.Judge,
                evidence: Evidence, judged: checks.Judged, timings: dict[str, float], t0: float) -> Answer:
        question = q.text
        text = raw.strip()
        if not text or text.startswith(SENTINEL) or text.replace(SENTINEL, "").strip(" .") == "":
            judge.model_declined(judged)
            return self._declined(question, evidence, judged, timings, t0)
        text = quote_if_only_labels(q, text.replace(SENTINEL, "").strip(), evidence.sources,
                                    self.settings.checks.quote_wants_bonus)
        resolution = resolve(text, evidence.sources,
                             cite=lambda sentence, labels: judge.cite(q, sentence, labels, evidence.sources, judged))
        t2 = time.perf_counter()
        claims = checks.Claims()
        seen: set[str] = set()
        for sentence in resolution.cited_sentences:
            key = " ".join(strip_labels(sentence).lower().split())
            if key in seen:
                continue  # a small model sometimes repeats a sentence word for word
            seen.add(key)
            ok = judge.claim(q, _plain(sentence), labels_in(sentence), messages, raw, evidence.sources, judged)
            (claims.kept if ok else claims.refused).append(sentence)
        timings["support_s"] = time.perf_counter() - t2
        draft = " ".join(resolution.cited_sentences)
        judge.after(q, claims, draft, messages, evidence.sources, judged, self._cited_texts(claims.kept, evidence))
        if judged.first_failure() is not None:
            return self._declined(question, evidence, judged, timings, t0, draft=draft)
        composed = compose(q, claims.kept, resolution.citations, evidence.sources,
                           {p.file: p.copies for p in evidence.searched if p.copies}, judged.disagreement,
                           judged.gate, lambda sentence, label: judge.states(messages, sentence, _plain(sentence), label),
                           self.settings.checks.conflict_min_p, self.staleness_notes, self.settings.checks.as_of_same_min)
        judged.notes.extend(composed.notes)
        timings["total_s"] = time.perf_counter() - t0
        cited_files = {c.file for c in composed.citations}
        sources = [p for p in evidence.passages if p.file in cited_files] or evidence.passages[:3]
        withheld = [_plain(s) for s in claims.refused]  # only what the figure and support checks refused
        return Answer(question=question, answer=composed.text, declined=False, citations=composed.citations,
                      sources=sources, timings=timings, unsupported_sentences=withheld,
                      uncited_sentences=resolution.uncited, verdicts=judged.verdicts, draft=draft,
                      notes=judged.notes, independent_sources=composed.independent,
                      provenance=self.provenance([c.file for c in composed.citations], judge.llm.model_id))


def _plain(sentence: str) -> str:
    """A sentence without its labels, with no space left before its final stop."""
    return re.sub(r"\s+([.,;:!?])", r"\1", strip_labels(sentence)).strip()


def source_heading(source: Source) -> str:
    """The line above a file's labelled passages in the prompt: its filename, headline and date."""
    title = f' "{" ".join(source.title.split())}"' if source.title else ""
    when = f"published {source.date}" if source.date else "publication date unknown"
    return f"{source.file}{title}, {when}:"


_DEFAULT: dict[Any, Assistant] = {}


def ask(question: str, settings: Settings | None = None, filters: Filters | None = None) -> Answer:
    """Answer one question with the default (or given) settings."""
    settings = settings or Settings.from_env()
    assistant = _DEFAULT.setdefault(settings, Assistant(settings))
    return assistant.ask(question, filters=filters)
