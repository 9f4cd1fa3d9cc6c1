"""The citation support checker agrees with hand labels at least as well as when it was calibrated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.backends.fakes import FakeEmbedder
from assistant.errors import InputError
from assistant.evaluate.support_calibration import agreement, calibrate, load_labels

# Measured 2026-11-25 (commit 825e715) on evals/support_labels.jsonl (149 pairs, 75 supported) at the
# shipped thresholds (LEXICAL_MIN 0.5, SEMANTIC_MIN 0.6): without an embedder accuracy 0.725,
# kappa 0.449, F1 0.748; with local:all-MiniLM-L6-v2 accuracy 0.718, kappa 0.436. The floors
# leave room for about four pairs to flip; a checker change that loses more fails the build.
MIN_ACCURACY = 0.70
MIN_KAPPA = 0.40
MIN_F1 = 0.72


@pytest.fixture(scope="module")
def lexical() -> dict:
    """Calibration of the checker without an embedder (its deterministic core)."""
    return calibrate()


def test_checker_agreement_with_labels_stays_above_floor(lexical: dict) -> None:
    current = lexical["current"]
    assert current["n"] == 149
    assert current["accuracy"] >= MIN_ACCURACY, current
    assert current["kappa"] >= MIN_KAPPA, current
    assert current["f1"] >= MIN_F1, current


def test_checker_with_embedder_stays_above_floor() -> None:
    # The fake embedder stands in for the real one: the semantic path must not make things worse.
    current = calibrate(embed=FakeEmbedder().embed)["current"]
    assert current["embedder"] and current["accuracy"] >= MIN_ACCURACY and current["kappa"] >= MIN_KAPPA


def test_threshold_sweep_replays_the_checker_exactly(lexical: dict) -> None:
    # The sweep re-implements supports() on cached features; it must decide the same at the shipped values.
    assert lexical["replica_agrees"]
    shipped = next(s for s in lexical["sweep"] if s["lexical_min"] == lexical["current"]["lexical_min"])
    assert shipped["confusion"] == lexical["current"]["confusion"]
    assert lexical["best"]["kappa"] >= lexical["current"]["kappa"]


def test_confusion_matrix_and_kappa_arithmetic() -> None:
    scores = agreement([True, True, False, False, True], [True, False, False, True, True])
    assert scores["confusion"] == {"tp": 2, "fp": 1, "fn": 1, "tn": 1}
    assert scores["accuracy"] == pytest.approx(0.6)
    assert scores["precision"] == pytest.approx(2 / 3) and scores["recall"] == pytest.approx(2 / 3)
    # Chance agreement: 0.6*0.6 + 0.4*0.4 = 0.52; kappa = (0.6 - 0.52) / 0.48.
    assert scores["kappa"] == pytest.approx(0.08 / 0.48)
    assert agreement([True, False], [True, False])["kappa"] == pytest.approx(1.0)


def test_bad_label_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_text(json.dumps({"sentence": "a", "passage": "b", "supported": True}) + "\n{\"sentence\": 1}\n")
    with pytest.raises(InputError, match=r"labels.jsonl:2: not a labelled pair"):
        load_labels(path)
