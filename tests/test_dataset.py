"""The sample gold set and support labels are well formed; bad lines fail with their line number."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from assistant.errors import InputError
from assistant.evaluate.dataset import QUESTION_TYPES, EvalCase, load_dataset, validate_evidence

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "evals" / "datasets" / "sample.jsonl"
LABELS = REPO / "evals" / "support_labels.jsonl"
CORPUS = REPO / "articles"


@pytest.fixture(scope="module")
def cases() -> list[EvalCase]:
    return load_dataset(SAMPLE)


def test_sample_dataset_has_enough_cases_of_each_kind(cases: list[EvalCase]) -> None:
    counts = Counter(c.type for c in cases)
    assert len(cases) >= 60
    assert counts["unanswerable"] >= 10
    assert counts["false_premise"] >= 5
    assert set(counts) == QUESTION_TYPES


def test_sample_ids_are_unique(cases: list[EvalCase]) -> None:
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids))


def test_sample_evidence_is_verbatim_in_gold_sources(cases: list[EvalCase]) -> None:
    assert validate_evidence(cases, CORPUS) == []


def test_sample_uses_every_article_as_a_source(cases: list[EvalCase]) -> None:
    used = {s for c in cases for s in c.sources}
    assert used == {p.name for p in CORPUS.glob("*.txt")}


def test_unanswerable_cases_have_no_gold(cases: list[EvalCase]) -> None:
    for case in cases:
        if case.type == "unanswerable":
            assert not case.answerable and case.golds == [] and case.sources == [] and case.evidence == []
        else:
            assert case.answerable and case.golds and case.sources and case.evidence


def _good_line(**changes: Any) -> str:
    obj: dict[str, Any] = {
        "id": "q1", "question": "Who?", "answer": "Wang Yi", "aliases": [], "sources": ["a.txt"],
        "evidence": ["Wang Yi went."], "type": "who", "answerable": True,
    }
    obj.update(changes)
    return json.dumps(obj)


def _write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "set.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ('{"id": "q2", "question": ', "invalid JSON"),
        ("[1, 2]", "JSON object"),
        (_good_line(id="q2", answerable="yes"), "'answerable' must be a bool"),
        (_good_line(id="q2", type="trivia"), "unknown type 'trivia'"),
        (_good_line(id="q2", evidence="Wang Yi went."), "'evidence' must be a list"),
        (_good_line(id="q2", evidence=["ok", 3]), "list of strings"),
        (_good_line(id="q2", alias=["x"]), "unknown field(s) alias"),
        (_good_line(id="q2", type="unanswerable", answerable=False), "unanswerable case must have"),
        (_good_line(id="q2", answer=""), "non-empty 'answer'"),
        (_good_line(id="q1"), "duplicate id 'q1'"),
    ],
)
def test_malformed_line_raises_input_error_with_line_number(tmp_path: Path, bad_line: str, message: str) -> None:
    # Line 2 is blank (skipped) so the bad line is line 3.
    path = _write(tmp_path, [_good_line(), "", bad_line])
    with pytest.raises(InputError) as info:
        load_dataset(path)
    assert f"{path}:3:" in str(info.value)
    assert message in str(info.value)


def test_missing_field_is_named(tmp_path: Path) -> None:
    obj = json.loads(_good_line())
    del obj["sources"]
    with pytest.raises(InputError, match=r":1: .*missing required field 'sources'"):
        load_dataset(_write(tmp_path, [json.dumps(obj)]))


def test_missing_or_empty_file_raises_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        load_dataset(tmp_path / "nope.jsonl")
    with pytest.raises(InputError, match="no cases"):
        load_dataset(_write(tmp_path, [""]))


def test_validate_evidence_reports_non_verbatim_text_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("Wang Yi went to Tokyo.", encoding="utf-8")
    good = load_dataset(_write(tmp_path, [_good_line(evidence=["Wang Yi went to Tokyo."])]))
    assert validate_evidence(good, tmp_path) == []
    bad = load_dataset(_write(tmp_path, [
        _good_line(evidence=["Wang Yi went to Osaka."]),
        _good_line(id="q2", sources=["missing.txt"]),
    ]))
    problems = validate_evidence(bad, tmp_path)
    assert any(p.startswith("q1: evidence not found verbatim") for p in problems)
    assert any("q2: source file 'missing.txt' not found" in p for p in problems)


def test_support_labels_are_verbatim_balanced_and_unique() -> None:
    rows = [json.loads(line) for line in LABELS.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(rows) >= 110
    assert len({r["id"] for r in rows}) == len(rows)
    supported = sum(r["supported"] for r in rows)
    assert 0.4 <= supported / len(rows) <= 0.6
    texts = {p.name: p.read_text(encoding="utf-8") for p in CORPUS.glob("*.txt")}
    for row in rows:
        assert set(row) == {"id", "sentence", "passage", "file", "supported", "note"}, row["id"]
        assert isinstance(row["supported"], bool), row["id"]
        assert row["passage"] in texts[row["file"]], row["id"]
