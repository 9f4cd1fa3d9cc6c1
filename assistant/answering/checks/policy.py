"""The answer policy in one place: which checks run, in what order, which ones judge a single
sentence (a failure withholds that sentence) and which decline the answer, and when to stop early.

`Judge` runs the checks in three stages around the model's draft:

  before    retrieval found something -> entities_found -> answerable (and disagreement, which
            adds a note to the prompt)
  cite      a sentence of the draft with no label (or a label whose source does not carry it)
            gets the source that carries it (`cite.labels_for`)
  claims    per sentence of the draft: numbers_found -> supported
  after     addresses (and, traced, addresses on the whole draft) -> subject (the cited articles
            name what the question is about) -> picked (when switched on)

With `trace` every check runs even after one has declined (an eval then measures each check on
and off from one run); the decision is the same. `Settings.checks_off` switches a check off.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from ...backends.base import ChatModel, Message
from ...settings import Settings
from ...types import Check, Choice
from ...labels import Source
from .cite import labels_for
from .judge import answerable, pick, supported
from .question import Question
from .rules import Disagreement, addresses, disagreement, entities_found, numbers_found, picked, subject_cited
from .verdicts import Verdict

# Checks that judge one sentence: a failure withholds that sentence, not the answer.
PER_SENTENCE = frozenset({Check.NUMBERS, Check.SUPPORTED})


@dataclass
class Judged:
    """The verdicts gathered while answering, the gate's reply and what is said beside the answer."""

    verdicts: list[Verdict] = field(default_factory=list)
    gate: Choice | None = None
    disagreement: Disagreement | None = None
    notes: list[str] = field(default_factory=list)

    def first_failure(self) -> Verdict | None:
        """The verdict that declines the answer (per-sentence failures only withhold their sentence)."""
        return next((v for v in self.verdicts if not v.passed and v.name not in PER_SENTENCE), None)

    def decline_reason(self) -> Verdict | None:
        """The verdict a decline reports: the first that declines, else the first that failed."""
        return self.first_failure() or next((v for v in self.verdicts if not v.passed), None)


@dataclass
class Claims:
    """The draft's cited sentences sorted by the per-sentence checks."""

    kept: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


class Judge:
    """Runs the checks a question's answer must pass, in order, for one set of settings and model."""

    def __init__(self, settings: Settings, llm: ChatModel, *, trace: bool = False, ner: bool = False) -> None:
        self.settings = settings
        self.llm = llm
        self.trace = trace
        self.ner = ner  # the figure check reads NER entities: off when NER is off or not installed

    def on(self, name: str) -> bool:
        """Is this check switched on?"""
        return name not in self.settings.checks.checks_off

    def stops(self, judged: Judged) -> bool:
        """Decline now, without running what is left? (Never in a traced run.)"""
        return judged.first_failure() is not None and not self.trace

    # -- before generation -----------------------------------------------------------
    def before(self, q: Question, sources: Sequence[Source], searched: Sequence[object],
               messages: list[Message]) -> Judged:
        """The checks before the model writes: is there evidence, are the question's entities in
        it, can it answer; and do the sources disagree on the value asked for (`judged.disagreement`,
        which the prompt then notes)."""
        judged = Judged()
        if not sources:
            judged.verdicts.append(Verdict(Check.RETRIEVAL, False, 0.0, "no passage matched the question"))
            return judged
        if self.on(Check.ENTITIES):
            judged.verdicts.append(entities_found(q, searched))  # type: ignore[arg-type]
        if self.on(Check.ANSWERABLE) and (judged.first_failure() is None or self.trace):
            verdict, judged.gate = answerable(self.llm, messages, sources, self.settings.checks.gate_none_max)
            judged.verdicts.append(verdict)
            judged.disagreement = disagreement(q, sources, judged.gate, self.settings.checks.conflict_min_p)
        return judged

    # -- after generation -------------------------------------------------------------
    def model_declined(self, judged: Judged) -> None:
        """The model wrote the decline sentinel (or nothing)."""
        judged.verdicts.append(Verdict(Check.MODEL_DECLINED, False, None,
                                       "the model wrote that the sources do not say"))

    def cite(self, q: Question, sentence: str, labels: Sequence[str], sources: Sequence[Source],
             judged: Judged) -> list[str]:
        """Labels to add to a draft sentence that cites no source, or one that does not carry it."""
        if not self.on(Check.CITE):
            return []
        added = labels_for(q, sentence, labels, sources, self.ner, self.settings.checks.cite_overlap_min)
        if added:
            judged.verdicts.append(Verdict(Check.CITE, True, None, f"{', '.join(added)} carries it, added to "
                                           f"{'its labels' if labels else 'a sentence with no label'}",
                                           subject=sentence))
        return added

    def claim(self, q: Question, sentence: str, labels: Sequence[str], messages: list[Message], raw: str,
              sources: Sequence[Source], judged: Judged) -> bool:
        """May this sentence of the draft stay? Its figures must be in a source, and the sources it
        cites must state it."""
        refuse = False
        if self.on(Check.NUMBERS) and self.ner:
            verdict = numbers_found(q, sentence, sources, list(labels))
            judged.verdicts.append(verdict)
            refuse = not verdict.passed
        # A made-up figure needs no model call, except in a traced run (every check on every sentence).
        if self.on(Check.SUPPORTED) and (not refuse or self.trace):
            verdict = supported(self.llm, messages, raw, sentence, labels, self.settings.checks.support_min)
            judged.verdicts.append(verdict)
            refuse = refuse or not verdict.passed
        return not refuse

    def states(self, messages: list[Message], sentence: str, plain: str, label: str) -> bool:
        """Does the source behind `label` state this sentence (the support check alone)?"""
        return supported(self.llm, messages, sentence, plain, [label], self.settings.checks.support_min).passed

    def after(self, q: Question, claims: Claims, draft: str, messages: list[Message],
              sources: Sequence[Source], judged: Judged, cited_texts: Sequence[str] = ()) -> None:
        """The checks on what is left of the answer: something supported is left, it gives what
        was asked for, the articles it cites (`cited_texts`) name what the question is about, and
        (when switched on) it names what the model picks from the sources."""
        if self.trace and self.on(Check.ADDRESSES):
            # The answer-type verdict on the draft too, so an ablation without the support check can be scored.
            v = addresses(q, draft)
            judged.verdicts.append(Verdict(Check.ADDRESSES_DRAFT, True, v.score, v.reason))
        if not claims.kept:
            judged.verdicts.append(Verdict(Check.SUPPORTED_ANY, False, 0.0,
                                           "no sentence of the answer is stated by the source it cites "
                                           "(or every one gives a figure no source states)"))
            return
        kept = " ".join(claims.kept)
        if self.on(Check.ADDRESSES):
            judged.verdicts.append(addresses(q, kept))
        if self.on(Check.SUBJECT) and self.ner and (judged.first_failure() is None or self.trace):
            judged.verdicts.append(subject_cited(q, cited_texts))
        if self.settings.checks.pick_check and self.on(Check.PICKED) and (judged.first_failure() is None or self.trace):
            choice = pick(self.llm, messages, q, sources, self.settings.checks.pick_max_options)
            judged.verdicts.append(picked(q, kept, choice, self.settings.checks.pick_none_max))

