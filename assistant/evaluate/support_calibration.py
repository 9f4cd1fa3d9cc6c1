"""Calibrate the citation support checker (`support_judge.supports`, the eval's ALCE judge) against hand labels."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from . import support_judge as citations
from ..answering.citations import lexical_support
from .support_judge import EmbedFn, missing_critical, supports
from ..labels import LABEL
from ..errors import InputError
from ..settings import REPO_DIR

DEFAULT_LABELS = REPO_DIR / "evals" / "support_labels.jsonl"
# The grid tried around the shipped thresholds; the lexical floor matters alone (no embedder),
# the semantic floor only when an embedder is given.
LEXICAL_GRID = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
SEMANTIC_GRID = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.9)


@dataclass(frozen=True)
class LabelledPair:
    """One hand-labelled (sentence, passage) pair: does the passage support the sentence?"""

    id: str
    sentence: str
    passage: str
    supported: bool
    note: str = ""


@dataclass(frozen=True)
class _Features:
    """What `supports()` decides on, computed once so thresholds can be swept cheaply."""

    missing: bool
    lexical: float
    cosine: float | None


def load_labels(path: str | Path | None = None) -> list[LabelledPair]:
    """Read the labelled pairs (JSONL with id, sentence, passage, supported)."""
    path = Path(path) if path else DEFAULT_LABELS
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(f"{path}: support labels not found; pass the path of a JSONL file of "
                         "{{sentence, passage, supported}} pairs") from None
    pairs: list[LabelledPair] = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            pairs.append(LabelledPair(id=str(obj.get("id", lineno)), sentence=obj["sentence"],
                                      passage=obj["passage"], supported=bool(obj["supported"]),
                                      note=str(obj.get("note", ""))))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InputError(f"{path}:{lineno}: not a labelled pair ({type(exc).__name__}: {exc}); "
                             "each line needs sentence, passage and supported") from None
    if not pairs:
        raise InputError(f"{path}: no labelled pairs found")
    return pairs


def _features(pairs: Sequence[LabelledPair], embed: EmbedFn | None) -> list[_Features]:
    cosines: list[float | None] = [None] * len(pairs)
    if embed is not None:
        # One batch for every text: the checker itself embeds pair by pair, which is slower
        # but gives the same vectors.
        texts = [t for p in pairs for t in (LABEL.sub(" ", p.sentence), p.passage)]
        vectors = embed(texts)
        cosines = [citations._cosine(vectors[2 * i], vectors[2 * i + 1]) for i in range(len(pairs))]
    return [_Features(missing=bool(missing_critical(p.sentence, p.passage)),
                      lexical=lexical_support(p.sentence, p.passage), cosine=c)
            for p, c in zip(pairs, cosines)]


def _decide(f: _Features, lexical_min: float, semantic_min: float | None) -> bool:
    # Mirrors support_judge.supports(); test_support_calibration pins that the two agree.
    if f.missing:
        return False
    if f.lexical >= lexical_min:
        return True
    if semantic_min is None or f.cosine is None:
        return False
    return f.cosine >= semantic_min


def agreement(predicted: Sequence[bool], gold: Sequence[bool]) -> dict[str, Any]:
    """Accuracy, precision, recall, F1, Cohen's kappa and the confusion matrix ("supported" is positive)."""
    tp = sum(p and g for p, g in zip(predicted, gold))
    fp = sum(p and not g for p, g in zip(predicted, gold))
    fn = sum(g and not p for p, g in zip(predicted, gold))
    tn = sum(not p and not g for p, g in zip(predicted, gold))
    n = tp + fp + fn + tn
    accuracy = (tp + tn) / n if n else 0.0
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    # Chance agreement from the marginals: how often two raters with these rates agree by luck.
    expected = ((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)) / (n * n) if n else 0.0
    kappa = (accuracy - expected) / (1 - expected) if expected < 1 else 0.0
    return {"n": n, "accuracy": accuracy, "precision": precision, "recall": recall, "f1": f1,
            "kappa": kappa, "confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn}}


def calibrate(labels_path: str | Path | None = None, embed: EmbedFn | None = None) -> dict[str, Any]:
    """Score `supports()` on the labels at the shipped thresholds, and sweep alternative thresholds.

    Returns `current` (shipped thresholds, with the embedder if one is given),
    `current_lexical_only` (no embedder), `sweep` (every setting tried, best first by
    kappa then accuracy), `best` and `best_lexical_only`, plus the misjudged pair ids.
    """
    pairs = load_labels(labels_path)
    gold = [p.supported for p in pairs]
    feats = _features(pairs, embed)
    current_pred = [supports(p.sentence, p.passage, embed) for p in pairs]
    lexical_pred = [supports(p.sentence, p.passage, None) for p in pairs]

    def score(lexical_min: float, semantic_min: float | None) -> dict[str, Any]:
        pred = [_decide(f, lexical_min, semantic_min) for f in feats]
        return {"lexical_min": lexical_min, "semantic_min": semantic_min, "embedder": semantic_min is not None,
                **agreement(pred, gold)}

    sweep = [score(lex, None) for lex in LEXICAL_GRID]
    if embed is not None:
        sweep += [score(lex, sem) for lex in LEXICAL_GRID for sem in SEMANTIC_GRID]
    # Kappa first: it corrects for the balance of the labels; ties go to the stricter setting.
    sweep.sort(key=lambda s: (-round(s["kappa"], 9), -round(s["accuracy"], 9),
                              -s["lexical_min"], -(s["semantic_min"] or 0.0)))
    current = {"lexical_min": citations.LEXICAL_MIN, "semantic_min": citations.SEMANTIC_MIN if embed else None,
               "embedder": embed is not None, **agreement(current_pred, gold)}
    return {
        "labels": str(Path(labels_path) if labels_path else DEFAULT_LABELS),
        "n": len(pairs),
        "n_supported": sum(gold),
        "current": current,
        "current_lexical_only": {"lexical_min": citations.LEXICAL_MIN, "semantic_min": None, "embedder": False,
                                 **agreement(lexical_pred, gold)},
        "best": sweep[0],
        "best_lexical_only": next(s for s in sweep if not s["embedder"]),
        "sweep": sweep,
        "misjudged": [p.id for p, got in zip(pairs, current_pred) if got != p.supported],
        "replica_agrees": all(_decide(f, citations.LEXICAL_MIN, citations.SEMANTIC_MIN if embed else None) == got
                              for f, got in zip(feats, current_pred)),
    }
