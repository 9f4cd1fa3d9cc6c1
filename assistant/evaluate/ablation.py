"""Each check on and off, and the decline threshold swept, from one traced run (no model calls).

A traced run (`Assistant(trace=True)`) runs every stage even after a check declines, and records
each verdict with its score. Re-deciding from those verdicts answers "what if this check were
off" and "what if the threshold were t" for every case at once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Iterable, Sequence

from ..backends.ner import parse
from ..answering.checks import Question, addresses, pick_agrees, question_kind, understand
from ..answering.checks.question import parsed_kind
from ..settings import CHECKS
from . import metrics as m
from ..types import Check


@dataclass(frozen=True)
class Config:
    """One way of deciding: which checks are off, and the two thresholds."""

    off: frozenset[str]
    gate_none_max: float
    support_min: float
    pick_none_max: float = 0.5
    # How the question's kind is read: "parse" (shipped), "parse_no_nouns" (the wh-word's head noun
    # ignored: `_NOUN_KINDS` ablated) or "first_word" (the interrogative form alone).
    kind: str = "parse"


def _verdicts(record: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [v for v in record.get("verdicts", []) if v["name"] == name]


def decide(record: dict[str, Any], config: Config, ner: bool = True) -> tuple[bool, str]:
    """(declined, answer text without labels) for one traced case under a configuration."""
    if any(not v["passed"] for v in _verdicts(record, Check.RETRIEVAL) + _verdicts(record, Check.MODEL_DECLINED)):
        return True, ""
    if Check.ENTITIES not in config.off and any(not v["passed"] for v in _verdicts(record, Check.ENTITIES)):
        return True, ""
    gate = _verdicts(record, Check.ANSWERABLE)
    if Check.ANSWERABLE not in config.off and gate and (gate[0]["score"] or 0.0) >= config.gate_none_max:
        return True, ""
    sentences = [(v["subject"], v["score"] or 0.0) for v in _verdicts(record, Check.SUPPORTED)]
    if not sentences:
        return True, ""
    made_up = set() if Check.NUMBERS in config.off else {v["subject"] for v in _verdicts(record, Check.NUMBERS) if not v["passed"]}
    kept = [s for s, p in sentences if (Check.SUPPORTED in config.off or p >= config.support_min) and s not in made_up]
    if not kept:
        return True, ""
    text = " ".join(kept)
    question = _understood(record["question"], config.kind, ner)
    if Check.ADDRESSES not in config.off and not addresses(question, text).passed:
        return True, ""
    # The subject verdict was taken on the sentences the shipped thresholds kept (as the pick's was).
    if Check.SUBJECT not in config.off and any(not v["passed"] for v in _verdicts(record, Check.SUBJECT)):
        return True, ""
    pick = _verdicts(record, Check.PICKED)
    if Check.PICKED not in config.off and pick and pick[0]["score"] is not None:
        if pick[0]["score"] >= config.pick_none_max:
            return True, ""
        if pick[0]["subject"] not in ("", "NONE") and not pick_agrees(pick[0]["subject"], text, question):
            return True, ""
    return False, text


def _understood(text: str, kind: str, ner: bool) -> Question:
    question = understand(text, use_ner=ner)
    if kind == "parse_no_nouns":
        return replace(question, kind=parsed_kind(parse(text), nouns=False))
    if kind == "first_word":
        return replace(question, kind=question_kind(text))
    return question


def kinds(records: Sequence[dict[str, Any]], config: Config) -> list[dict[str, Any]]:
    """The configuration scored with each way of reading the question's kind (only the answer-type
    and pick checks read it here; evidence selection's use of it needs a run of its own)."""
    return [{"kind": k, **score(records, replace(config, kind=k))} for k in ("parse", "parse_no_nouns", "first_word")]


def score(records: Sequence[dict[str, Any]], config: Config, ner: bool = True) -> dict[str, Any]:
    """Correct, wrong declines, correct declines and wrong answers under one configuration."""
    answerable = [r for r in records if r["answerable"]]
    unanswerable = [r for r in records if not r["answerable"]]
    correct = wrong_decline = wrong_answer = correct_decline = 0
    for r in records:
        declined, text = decide(r, config, ner)
        if r["answerable"]:
            if declined:
                wrong_decline += 1
            elif m.exact_match(text, r["golds"]) == 1.0 or m.contains_answer(text, r["golds"]):
                correct += 1
            else:
                wrong_answer += 1
        else:
            correct_decline += int(declined)
    na, nu = len(answerable) or 1, len(unanswerable) or 1
    return {"off": sorted(config.off), "gate_none_max": config.gate_none_max, "support_min": config.support_min,
            "correct": correct / na, "wrong_decline": wrong_decline / na, "wrong_answer": wrong_answer / na,
            "correct_decline": correct_decline / nu, "answered_unanswerable": len(unanswerable) - correct_decline,
            "n_answerable": len(answerable), "n_unanswerable": len(unanswerable)}


def traced(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records that carry verdicts of a traced run."""
    return [r for r in records if r.get("traced")]


# Checks a traced run can switch off afterwards. `cite` cannot: it decides which sentences of the
# draft reach the other checks at all, so its ablation is a run with ASSISTANT_CHECKS_OFF=cite.
REDECIDABLE = tuple(c for c in CHECKS if c != Check.CITE)


def ablations(records: Sequence[dict[str, Any]], gate_none_max: float, support_min: float) -> list[dict[str, Any]]:
    """The shipped configuration, each check off alone, and all off (of those a trace can re-decide)."""
    rows = [score(records, Config(frozenset(), gate_none_max, support_min))]
    rows += [score(records, Config(frozenset({c}), gate_none_max, support_min)) for c in REDECIDABLE]
    rows.append(score(records, Config(frozenset(REDECIDABLE), gate_none_max, support_min)))
    return rows


def sweep(records: Sequence[dict[str, Any]], support_min: float, steps: Sequence[float] | None = None,
          name: str = "gate_none_max", fixed_gate: float = 0.5) -> list[dict[str, Any]]:
    """The trade-off curve: one threshold swept, the other fixed."""
    steps = steps or [round(0.05 * i, 2) for i in range(1, 21)]
    if name == "gate_none_max":
        return [score(records, Config(frozenset(), t, support_min)) for t in steps]
    return [score(records, Config(frozenset(), fixed_gate, t)) for t in steps]


def fire_counts(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """How often each check ran and failed, over all cases."""
    out: dict[str, dict[str, int]] = {}
    for r in records:
        for v in r.get("verdicts", []):
            row = out.setdefault(v["name"], {"ran": 0, "failed": 0})
            row["ran"] += 1
            row["failed"] += int(not v["passed"])
    return dict(sorted(out.items()))
