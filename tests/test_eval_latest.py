"""The latest-first evaluation: scoring of hand-built answers, the gold cases against the articles,
and one run on the sample with fake models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from assistant.answering.checks import understand
from assistant.errors import InputError
from assistant.evaluate import latest
from assistant.evaluate.latest import SCORES, load_cases, run, score_case, stated_as_of
from assistant.indexing.build import build_index
from assistant.settings import Settings
from assistant.types import Answer, Citation

REPO = Path(__file__).resolve().parent.parent
GOLD = REPO / "evals" / "datasets" / "latest.jsonl"
BBC = REPO.parent / "shared" / "corpora" / "bbc"
NEW, OLD = "004_749f0bb3dcd254b9.txt", "000_ab41fa749cc5eede.txt"
STALE = "The newest article in the folder is from 2024-12-25; anything since then is not covered."
UNDATED = ("The articles carry no publication dates, so the folder cannot tell which report is the newest "
           "or how current this answer is.")
CASE: dict[str, Any] = {"id": "t1", "corpus": "sample", "question": "Has China lifted its seafood ban?",
                        "answers": ["may lift the ban"], "newest_file": NEW, "as_of": "2024-12",
                        "older_files": [OLD], "expect_note": "stale", "unanswerable": False}


def _answer(text: str, files: tuple[str, ...] = (NEW,), notes: tuple[str, ...] = (STALE,),
            declined: bool = False) -> Answer:
    cites = [Citation(f"S{n}", f, 0, 10, "quote") for n, f in enumerate(files, 1)]
    return Answer(question="q", answer=text, declined=declined, citations=cites, notes=list(notes))


def test_a_right_answer_scores_on_every_count() -> None:
    answer = _answer("As of December 2024 [S1]: China may lift the ban in 2025 [S1]. Earlier, in May 2023, "
                     'an article said: "..." [S2].', files=(NEW, OLD))
    assert score_case(CASE, answer) == {"correct": True, "as_of_right": True, "newest_cited": True,
                                        "older_cited": True, "note_right": True}


@pytest.mark.parametrize("text, gold, right", [
    ("As of 25 December 2024 [S1]: x", "2024-12", True),   # more precise than the gold is right
    ("As of December 2024 [S1]: x", "2024-12", True),
    ("As of December 2024 [S1]: x", "2024-12-25", False),  # month only, the gold names the day
    ("As of 25 December 2024 [S1]: x", "2024-12-25", True),
    ("As of 24 December 2024 [S1]: x", "2024-12-25", False),
    ("As of November 2024 [S1]: x", "2024-12", False),
    ("As of May 2023 [S1]: x", "2023-05", True),
    ("As of 2024 [S1]: x", "2024-12", False),
    ("China may lift the ban [S1]. As of December 2024.", "2024-12", False),  # must open with it
])
def test_as_of_is_right_at_the_gold_precision(text: str, gold: str, right: bool) -> None:
    assert score_case({**CASE, "as_of": gold}, _answer(text))["as_of_right"] is right


def test_as_of_words_parse_back_to_iso() -> None:
    assert stated_as_of("As of 5 May 2023 [S2]: ...") == "2023-05-05"
    assert stated_as_of("As of March 2023 [S1]: ...") == "2023-03"
    assert stated_as_of("As of 2024 [S1]: ...") == "2024"
    assert stated_as_of("China may lift the ban.") == ""


def test_wrong_answer_missing_note_and_older_newest_citation() -> None:
    answer = _answer("As of May 2023 [S1]: Japan will urge Beijing to lift its ban [S1].", files=(OLD,), notes=())
    assert score_case(CASE, answer) == {"correct": False, "as_of_right": False, "newest_cited": False,
                                        "older_cited": True, "note_right": False}


def test_undated_note_and_not_applicable_scores() -> None:
    case = {"id": "b", "corpus": "bbc", "question": "Who is the home secretary now?", "answers": ["Charles Clarke"],
            "newest_file": None, "as_of": None, "expect_note": "undated", "unanswerable": False}
    right = score_case(case, _answer("Home Secretary Charles Clarke said so [S1].", ("politics/040.txt",),
                                     (UNDATED,)))
    assert right == {"correct": True, "as_of_right": None, "newest_cited": None, "older_cited": None,
                     "note_right": True}
    assert score_case(case, _answer("Charles Clarke [S1].", notes=(STALE,)))["note_right"] is False


def test_declines() -> None:
    unanswerable = {**CASE, "answers": [], "newest_file": None, "as_of": None, "older_files": [],
                    "unanswerable": True}
    decline = _answer("The articles don't say.", files=(), notes=(), declined=True)
    assert score_case(unanswerable, decline) == {"correct": True, "as_of_right": None, "newest_cited": None,
                                                 "older_cited": None, "note_right": None}
    assert score_case(unanswerable, _answer("As of December 2024 [S1]: it may [S1]."))["correct"] is False
    missed = score_case(CASE, decline)
    assert missed == {"correct": False, "as_of_right": False, "newest_cited": False, "older_cited": False,
                      "note_right": None}
    # An answer that holds the gold string but is flagged declined is not correct.
    assert score_case(CASE, _answer("As of December 2024: may lift the ban", declined=True))["correct"] is False


def test_a_malformed_case_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(CASE) + "\n" + json.dumps({**CASE, "corpus": "elsewhere"}) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.jsonl:2: corpus"):
        load_cases(path)


def _text(corpus: str, file: str) -> str:
    root = REPO / "articles" if corpus == "sample" else BBC
    return (root / file).read_text(encoding="utf-8", errors="replace")


def test_every_gold_case_parses_and_its_facts_are_in_the_named_files() -> None:
    cases = load_cases(GOLD)
    metadata = json.loads((REPO / "articles" / "metadata.json").read_text(encoding="utf-8"))["files"]
    assert len({c["id"] for c in cases}) == len(cases)
    for corpus in ("sample", "bbc"):
        mine = [c for c in cases if c["corpus"] == corpus]
        assert len([c for c in mine if not c["unanswerable"]]) >= 8
        assert 2 <= len([c for c in mine if c["unanswerable"]]) <= 3
    for case in cases:
        assert understand(case["question"], use_ner=True).current, case["id"]
        assert case["expect_note"] == ("stale" if case["corpus"] == "sample" else "undated"), case["id"]
        if case["corpus"] == "bbc" and not BBC.is_dir():
            continue
        for ev in case["evidence"]:
            assert ev["quote"] in _text(case["corpus"], ev["file"]), (case["id"], ev["file"])
        if case["unanswerable"]:
            assert not case["answers"] and case["newest_file"] is None and case["as_of"] is None, case["id"]
            continue
        quotes = " ".join(ev["quote"] for ev in case["evidence"]).lower()
        assert any(a.lower() in quotes for a in case["answers"]), case["id"]
        if case["corpus"] == "bbc":
            assert case["newest_file"] is None and case["as_of"] is None and not case.get("older_files")
            continue
        newest = case["newest_file"]
        assert (REPO / "articles" / newest).is_file(), case["id"]
        assert metadata[newest]["date"].startswith(case["as_of"]), case["id"]
        assert any(a.lower() in _text("sample", newest).lower() for a in case["answers"]), case["id"]
        for other in case.get("newest_also", []):
            assert metadata[other]["date"].startswith(case["as_of"]), case["id"]
        for older in case.get("older_files", []):
            gold = metadata[newest]["date"]
            assert metadata[older]["date"][: len(gold)] <= gold, (case["id"], older)


def test_run_on_the_sample(corpus: Path, index_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(latest.CORPORA, "sample", corpus)
    settings = Settings.from_env(environ={}, corpus_dir=str(corpus), index_dir=str(index_dir), embedder="fake:hash",
                                 llm="fake:extractive")
    build_index(corpus, settings=settings)
    result = run(GOLD, settings)
    assert result["n"] == len([c for c in load_cases(GOLD) if c["corpus"] == "sample"])
    assert set(SCORES) <= set(result)
    assert all(v is None or 0.0 <= v <= 1.0 for v in (result[k] for k in SCORES))
    assert {r["id"] for r in result["cases"]} == {c["id"] for c in load_cases(GOLD) if c["corpus"] == "sample"}
