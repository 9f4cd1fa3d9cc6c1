"""Decisions made by the chat model itself: a constrained one-token reply and its probability."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from ...backends.base import ChatModel, Message
from ...labels import Source
from ...labels import number
from ..prompts import render
from ...types import Check, Choice
from .verdicts import Verdict

if TYPE_CHECKING:
    from .question import Question

NONE = "NONE"
YES, NO = "yes", "no"


def gate_options(sources: Sequence[Source]) -> list[str]:
    """Source numbers (single tokens for the model) and NONE."""
    return [number(s.label) for s in sources] + [NONE]


def gate_messages(messages: list[Message], sources: Sequence[Source]) -> list[Message]:
    """The answer prompt with the gate question after it (so both share the cached prefix)."""
    numbers = ", ".join(gate_options(sources)[:-1])
    last = messages[-1]
    return [*messages[:-1], {"role": last["role"], "content": last["content"] + "\n" + render("gate", numbers=numbers)}]


def answerable(llm: ChatModel, messages: list[Message], sources: Sequence[Source],
               none_max: float) -> tuple[Verdict, Choice]:
    """Can these sources answer? Declines when the model's P(NONE) reaches `none_max`."""
    choice = llm.choose(gate_messages(messages, sources), gate_options(sources))
    p_none = choice.p(NONE)
    best = max((o for o in choice.probs if o != NONE), key=choice.p, default="")
    if p_none >= none_max:
        reason = f"the model judged that no source states the answer (P(NONE) = {p_none:.2f} ≥ {none_max:.2f})"
    else:
        reason = f"source S{best} states the answer (P(NONE) = {p_none:.2f} < {none_max:.2f})"
    return Verdict(Check.ANSWERABLE, p_none < none_max, p_none, reason, none_max), choice


def support_messages(messages: list[Message], raw_answer: str, sentence: str, labels: Sequence[str]) -> list[Message]:
    """The answer conversation followed by the support question (the prefix stays cached)."""
    cited = " and ".join(f"[{lab}]" for lab in labels)
    return [*messages, {"role": "assistant", "content": raw_answer},
            {"role": "user", "content": render("support", sentence=sentence, labels=cited)}]


def supported(llm: ChatModel, messages: list[Message], raw_answer: str, sentence: str,
              labels: Sequence[str], yes_min: float) -> Verdict:
    """Do the cited sources state this sentence? Passes when P(yes) reaches `yes_min`."""
    choice = llm.choose(support_messages(messages, raw_answer, sentence, labels), [YES, NO])
    p_yes = choice.p(YES)
    cited = ", ".join(labels)
    reason = (f"{cited} states it (P(yes) = {p_yes:.2f})" if p_yes >= yes_min
              else f"{cited} does not state it (P(yes) = {p_yes:.2f} < {yes_min:.2f})")
    return Verdict(Check.SUPPORTED, p_yes >= yes_min, p_yes, reason, yes_min, subject=sentence)


# What a pick asks for, by question kind.
PICK_WHAT = {"who": "name", "when": "date", "how_many": "number", "where": "place"}
PICK_LABELS = {"where": frozenset({"GPE", "LOC", "FAC"})}


def pick_options(question: "Question", sources: Sequence[Source], max_options: int = 24) -> list[str]:
    """The entities of the kind asked for in the sources (NER), minus those the question names."""
    from ...backends import ner

    wants = PICK_LABELS.get(question.kind) or question.wants
    asked = {e.text.lower() for e in question.entities}
    seen: dict[str, str] = {}
    for s in sources:
        for e in ner.entities(s.text):
            text = " ".join(e.text.split())
            if e.label in wants and text.lower() not in asked and text.lower() not in seen and '"' not in text:
                seen[text.lower()] = text
    return list(seen.values())[:max_options]


def pick(llm: ChatModel, messages: list[Message], question: "Question", sources: Sequence[Source],
         max_options: int = 24) -> Choice | None:
    """The model's pick, under a grammar, of the entity of the sources that answers (or NONE);
    None when the question asks for no kind of entity or the sources hold none of that kind."""
    what = PICK_WHAT.get(question.kind)
    options = pick_options(question, sources, max_options) if what else []
    if not options:
        return None
    last = messages[-1]
    asked = [*messages[:-1], {"role": last["role"], "content": last["content"] + "\n" + render("pick", what=what)}]
    return llm.choose(asked, [*options, NONE])
