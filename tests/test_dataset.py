"""The sample and BBC gold sets and the support labels are well formed; bad lines fail with their line number."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from assistant.errors import InputError
from assistant.evaluate.dataset import (QUESTION_TYPES, Conversation, EvalCase, load_conversations, load_dataset,
                                        validate_evidence)

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "evals" / "datasets" / "sample.jsonl"
LABELS = REPO / "evals" / "support_labels.jsonl"
CORPUS = REPO / "articles"
DATASETS = REPO / "evals" / "datasets"
BBC_CORPUS = REPO.parent / "shared" / "corpora" / "bbc"
BBC_SPLITS = {"dev": DATASETS / "bbc_dev.jsonl", "test": DATASETS / "bbc_test.jsonl"}
BBC_CHAT_SPLITS = {"dev": DATASETS / "bbc_chat_dev.jsonl", "test": DATASETS / "bbc_chat_test.jsonl"}
# The kinds the sample set was written with (it predates how_many, why, confuser and off_topic).
SAMPLE_TYPES = frozenset({"single", "multi", "span", "when", "who", "conflict", "unanswerable", "false_premise"})
# Every kind each BBC split must hold, so dev and test measure the same things.
BBC_TYPES = frozenset({"single", "multi", "when", "who", "how_many", "why", "conflict", "confuser", "unanswerable",
                       "off_topic", "false_premise"})


@pytest.fixture(scope="module")
def cases() -> list[EvalCase]:
    return load_dataset(SAMPLE)


def test_sample_dataset_has_enough_cases_of_each_of_its_kinds(cases: list[EvalCase]) -> None:
    counts = Counter(c.type for c in cases)
    assert len(cases) >= 60
    assert counts["unanswerable"] >= 10
    assert counts["false_premise"] >= 5
    assert SAMPLE_TYPES <= QUESTION_TYPES
    assert set(counts) == SAMPLE_TYPES


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


# --- the BBC gold set: a dev split to tune on and a held-out test split --------------------------
# The test split is read only through these assertions; failure messages name ids and counts, not text.


@pytest.fixture(scope="module")
def bbc() -> dict[str, list[EvalCase]]:
    return {split: load_dataset(path) for split, path in BBC_SPLITS.items()}


@pytest.fixture(scope="module")
def bbc_chats() -> dict[str, list[Conversation]]:
    return {split: load_conversations(path) for split, path in BBC_CHAT_SPLITS.items()}


def _needs_bbc_corpus() -> None:
    if not BBC_CORPUS.is_dir():
        pytest.skip(f"the BBC corpus is not at {BBC_CORPUS}")


def test_bbc_dev_and_test_splits_share_no_question_id(bbc: dict[str, list[EvalCase]]) -> None:
    dev, test = ({c.id for c in bbc[split]} for split in ("dev", "test"))
    assert dev and test
    shared = sorted(dev & test)
    assert len(shared) == 0, f"ids in both splits: {shared[:10]}"


def test_bbc_splits_together_hold_at_least_200_questions(bbc: dict[str, list[EvalCase]]) -> None:
    assert len(bbc["dev"]) + len(bbc["test"]) >= 200


@pytest.mark.parametrize("split", ["dev", "test"])
def test_each_bbc_split_covers_every_question_type(bbc: dict[str, list[EvalCase]], split: str) -> None:
    missing = sorted(BBC_TYPES - {c.type for c in bbc[split]})
    assert missing == [], f"bbc {split} has no case of type(s) {missing}"


@pytest.mark.parametrize("split", ["dev", "test"])
def test_bbc_evidence_is_verbatim_in_the_bbc_corpus(bbc: dict[str, list[EvalCase]], split: str) -> None:
    _needs_bbc_corpus()
    problems = validate_evidence(bbc[split], BBC_CORPUS)
    bad_ids = sorted({p.split(":", 1)[0] for p in problems})
    assert len(problems) == 0, f"bbc {split}: {len(problems)} evidence problem(s) in cases {bad_ids}"


def test_bbc_chat_sets_hold_at_least_20_conversations_of_two_or_three_turns(
        bbc_chats: dict[str, list[Conversation]]) -> None:
    conversations = [c for split in ("dev", "test") for c in bbc_chats[split]]
    assert len(conversations) >= 20
    assert len({c.id for c in conversations}) == len(conversations), "a conversation id is used twice"
    lengths = {c.id: len(c.turns) for c in conversations if not 2 <= len(c.turns) <= 3}
    assert lengths == {}, f"conversations outside 2-3 turns: {lengths}"


@pytest.mark.parametrize("split", ["dev", "test"])
def test_bbc_chat_evidence_is_verbatim_in_each_turns_sources(bbc_chats: dict[str, list[Conversation]],
                                                             split: str) -> None:
    _needs_bbc_corpus()
    turns = [turn for conversation in bbc_chats[split] for turn in conversation.turns]
    problems = validate_evidence(turns, BBC_CORPUS)
    bad_ids = sorted({p.split(":", 1)[0] for p in problems})
    assert len(problems) == 0, f"bbc chat {split}: {len(problems)} evidence problem(s) in turns {bad_ids}"
