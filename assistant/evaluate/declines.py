"""One decline rule from all the signals together, fitted on a traced dev run (no model calls).

    python -m assistant.evaluate.declines RUN [RUN ...] [--test RUN ...] [--max-wrong-declines 0.05]

Each traced case gives its signals: the gate's P(NONE), the pick's P(NONE) and whether the pick
disagrees with the draft, the lowest and mean support P(yes) over the draft's sentences, the share
of the question's names found in the passages, and whether the draft gives the kind of thing
asked. The label is whether answering beats declining: an answerable question whose draft (its
unsupported sentences withheld, every whole-answer check off) is right. A logistic regression (scikit-learn) turns the signals into P(right); the
rule answers when P(right) reaches a threshold, chosen as the highest whose wrong declines stay
within the limit. Rates are cross-validated on the dev runs (five folds), so the fitted rule is
not scored on the cases it was fitted on, and compared with the shipped checks re-decided from the
same records. `--test` scores the rule fitted on all dev cases on other runs: a report, not a fit.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any, Sequence

from . import metrics as m
from .ablation import Config, decide, traced
from ..types import Check

FEATURES = ("gate_none", "pick_none", "pick_disagrees", "support_min", "support_mean", "entity_share",
            "addresses", "numbers_failed")


def signals(record: dict[str, Any]) -> dict[str, float]:
    """The decline signals of one traced case (see the module docstring)."""
    def first(name: str) -> dict[str, Any] | None:
        return next((v for v in record.get("verdicts", []) if v["name"] == name), None)

    support = [float(v["score"] or 0.0) for v in record.get("verdicts", []) if v["name"] == Check.SUPPORTED]
    gate, pick, ents, addr = first(Check.ANSWERABLE), first(Check.PICKED), first(Check.ENTITIES), first(Check.ADDRESSES)
    pick_none = float(pick["score"]) if pick and pick.get("score") is not None else 0.0
    return {
        "gate_none": float(gate["score"]) if gate and gate.get("score") is not None else 1.0,
        "pick_none": pick_none,
        "pick_disagrees": float(bool(pick and not pick["passed"] and pick.get("subject") not in ("", "NONE", None))),
        "support_min": min(support) if support else 0.0,
        "support_mean": sum(support) / len(support) if support else 0.0,
        "entity_share": float(ents["score"]) if ents and ents.get("score") is not None else 1.0,
        "addresses": float(addr["passed"]) if addr else 0.0,
        "numbers_failed": float(any(not v["passed"] for v in record.get("verdicts", []) if v["name"] == Check.NUMBERS)),
    }


# The checks that decline a whole answer; the rule stands in for them. The per-sentence checks
# (a figure no source states, a sentence its source does not support) still withhold sentences.
WHOLE = frozenset({"entities", "answerable", "addresses", "subject", "picked"})


def _kept(record: dict[str, Any]) -> tuple[bool, str]:
    """The draft with its unsupported sentences withheld (declined when none is left); computed once."""
    if "_kept" not in record:
        record["_kept"] = decide(record, Config(WHOLE, 1.1, 0.5))
    return record["_kept"]


def draft_right(record: dict[str, Any]) -> bool:
    """Is the draft, its unsupported sentences withheld, a right answer to an answerable question?"""
    if not record["answerable"]:
        return False
    declined, text = _kept(record)
    return not declined and (m.exact_match(text, record["golds"]) == 1.0 or m.contains_answer(text, record["golds"]))


def withheld_all(record: dict[str, Any]) -> bool:
    """Do the per-sentence checks withhold every sentence (a decline whatever the rule says)?"""
    return _kept(record)[0]


def rates(records: Sequence[dict[str, Any]], answers: Sequence[bool]) -> dict[str, Any]:
    """Correct, wrong declines, wrong answers (of answerable), declined unanswerable, and CRAG."""
    correct = wrong_decline = wrong_answer = declined_un = 0
    for r, answered in zip(records, answers):
        if r["answerable"]:
            if not answered:
                wrong_decline += 1
            elif draft_right(r):
                correct += 1
            else:
                wrong_answer += 1
        else:
            declined_un += int(not answered)
    na = sum(r["answerable"] for r in records) or 1
    nu = sum(not r["answerable"] for r in records) or 1
    un_answered = sum(not r["answerable"] for r in records) - declined_un
    return {"correct": round(correct / na, 3), "wrong_declines": round(wrong_decline / na, 3),
            "wrong_answers": round(wrong_answer / na, 3), "unanswerable_declined": round(declined_un / nu, 3),
            "crag": round((correct - wrong_answer - un_answered) / max(1, len(records)), 3), "n": len(records)}


def _matrix(records: Sequence[dict[str, Any]]) -> list[list[float]]:
    return [[found[f] for f in FEATURES] for found in map(signals, records)]


def fit(records: Sequence[dict[str, Any]], max_wrong_declines: float,
        base: Sequence[bool] | None = None) -> tuple[Any, float]:
    """The fitted model and the highest threshold whose wrong declines on these records stay within
    the limit. With `base` (the shipped checks' answers), the rule only adds declines to them."""
    from sklearn.linear_model import LogisticRegression

    y = [int(draft_right(r)) for r in records]
    model = LogisticRegression(C=1.0, max_iter=1000).fit(_matrix(records), y)
    p = model.predict_proba(_matrix(records))[:, 1]
    base = list(base) if base is not None else [not withheld_all(r) for r in records]
    best = 0.0
    for t in sorted(set(round(float(x), 4) for x in p)):
        answers = [q >= t and b for q, b in zip(p, base)]
        if rates(records, answers)["wrong_declines"] <= max_wrong_declines:
            best = t
    return model, best


def cross_validated(records: Sequence[dict[str, Any]], max_wrong_declines: float, folds: int = 5,
                    base: Sequence[bool] | None = None) -> list[bool]:
    """Each case decided by a rule fitted on the other folds (added to `base` when given)."""
    base = list(base) if base is not None else [not withheld_all(r) for r in records]
    answers: list[bool] = [True] * len(records)
    for k in range(folds):
        held = [i for i in range(len(records)) if i % folds == k]
        rest = [i for i in range(len(records)) if i % folds != k]
        model, t = fit([records[i] for i in rest], max_wrong_declines, [base[i] for i in rest])
        p = model.predict_proba(_matrix([records[i] for i in held]))[:, 1]
        for i, q in zip(held, p):
            answers[i] = bool(q >= t) and base[i]
    return answers


def cross_validated_p(records: Sequence[dict[str, Any]], folds: int = 5) -> list[float]:
    """Each case's P(right) from a model fitted on the other folds."""
    from sklearn.linear_model import LogisticRegression

    p = [0.0] * len(records)
    for k in range(folds):
        held = [i for i in range(len(records)) if i % folds == k]
        rest = [records[i] for i in range(len(records)) if i % folds != k]
        model = LogisticRegression(C=1.0, max_iter=1000).fit(_matrix(rest), [int(draft_right(r)) for r in rest])
        for i, q in zip(held, model.predict_proba(_matrix([records[i] for i in held]))[:, 1]):
            p[i] = float(q)
    return p


def curve(records: Sequence[dict[str, Any]], base: Sequence[bool], steps: int = 20) -> list[dict[str, Any]]:
    """The shipped checks plus "decline when the cross-validated P(right) is below t", t swept."""
    p = cross_validated_p(records)
    return [{"t": round(t / steps, 2), **rates(records, [q >= t / steps and b for q, b in zip(p, base)])}
            for t in range(steps + 1)]


def shipped(records: Sequence[dict[str, Any]], settings: dict[str, Any], pick: bool) -> list[bool]:
    """The checks as shipped (pick check on or off), re-decided from the records."""
    off = frozenset() if pick else frozenset({"picked"})
    config = Config(off, settings.get("gate_none_max", 0.3), settings.get("support_min", 0.5),
                    settings.get("pick_none_max", 0.5))
    return [not decide(r, config)[0] for r in records]


def _load(run: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    path = Path(run)
    with open(path / "cases.jsonl", encoding="utf-8") as f:
        records = traced(json.loads(line) for line in f if line.strip())
    settings = json.loads((path / "settings.json").read_text()) if (path / "settings.json").exists() else {}
    return [r for r in records if not r.get("error")], settings


def report(dev_runs: Sequence[str], test_runs: Sequence[str], max_wrong_declines: float) -> str:
    """A markdown table: shipped checks (pick off, on) and the fitted rule, on dev (cross-validated) and test."""
    dev, settings = [], {}
    for run in dev_runs:
        records, settings = _load(run)
        dev += records
    lines = ["| split | rule | correct | wrong declines | wrong answers | unanswerable declined | CRAG | n |",
             "|---|---|---|---|---|---|---|---|"]

    def row(split: str, name: str, r: dict[str, Any]) -> None:
        lines.append(f"| {split} | {name} | {r['correct']} | {r['wrong_declines']} | {r['wrong_answers']} | "
                     f"{r['unanswerable_declined']} | {r['crag']} | {r['n']} |")

    row("dev", "shipped checks, pick off", rates(dev, shipped(dev, settings, False)))
    row("dev", "shipped checks, pick on", rates(dev, shipped(dev, settings, True)))
    row("dev", "fitted rule (5-fold cross-validated)", rates(dev, cross_validated(dev, max_wrong_declines)))
    base = shipped(dev, settings, False)
    row("dev", "shipped (pick off) + fitted rule (5-fold)", rates(dev, cross_validated(dev, max_wrong_declines,
                                                                                       base=base)))
    model, t = fit(dev, max_wrong_declines)
    added, t_added = fit(dev, max_wrong_declines, base)
    for run in test_runs:
        test, test_settings = _load(run)
        p = model.predict_proba(_matrix(test))[:, 1]
        p_added = added.predict_proba(_matrix(test))[:, 1]
        test_base = shipped(test, test_settings, False)
        row(Path(run).name, "shipped checks, pick off", rates(test, test_base))
        row(Path(run).name, "shipped checks, pick on", rates(test, shipped(test, test_settings, True)))
        row(Path(run).name, "fitted rule (fitted on all dev)",
            rates(test, [bool(q >= t) and not withheld_all(r) for q, r in zip(p, test)]))
        row(Path(run).name, "shipped (pick off) + fitted rule (all dev)",
            rates(test, [bool(q >= t_added) and b for q, b in zip(p_added, test_base)]))
    lines += ["", "The pick check on, its P(NONE) threshold swept (a pick the answer does not give declines at any "
              "threshold), on dev:", "", "| pick_none_max | correct | wrong declines | wrong answers | "
              "unanswerable declined | CRAG |", "|---|---|---|---|---|---|"]
    for x in (0.2, 0.3, 0.4, 0.5, 0.7, 1.01):
        config = Config(frozenset(), settings.get("gate_none_max", 0.3), settings.get("support_min", 0.5), x)
        r = rates(dev, [not decide(rec, config)[0] for rec in dev])
        lines.append(f"| {x} | {r['correct']} | {r['wrong_declines']} | {r['wrong_answers']} | "
                     f"{r['unanswerable_declined']} | {r['crag']} |")
    lines += ["", "The shipped checks (pick off) plus a decline when the cross-validated P(right) < t, on dev:", "",
              "| t | correct | wrong declines | wrong answers | unanswerable declined | CRAG |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['t']} | {r['correct']} | {r['wrong_declines']} | {r['wrong_answers']} | "
              f"{r['unanswerable_declined']} | {r['crag']} |" for r in curve(dev, base)]
    weights = ", ".join(f"{f} {w:+.2f}" for f, w in zip(FEATURES, model.coef_[0]))
    lines += ["", f"Fitted on all {len(dev)} dev cases: intercept {model.intercept_[0]:+.2f}; {weights}; "
              f"answer when P(right) >= {t:.3f} (logit {math.log(t / (1 - t)) if 0 < t < 1 else float('nan'):+.2f})."]
    weights = ", ".join(f"{f} {w:+.2f}" for f, w in zip(FEATURES, added.coef_[0]))
    lines += ["", f"Added to the shipped checks: intercept {added.intercept_[0]:+.2f}; {weights}; "
              f"decline also when P(right) < {t_added:.3f}."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("runs", nargs="+", help="traced dev run folders")
    parser.add_argument("--test", nargs="*", default=[], help="run folders to score the rule on (a report)")
    parser.add_argument("--max-wrong-declines", type=float, default=0.05)
    args = parser.parse_args(argv)
    print(report(args.runs, args.test, args.max_wrong_declines))


if __name__ == "__main__":
    main()
