"""The eval's view of the checks: decline reasons, ablations and threshold sweeps from traced runs,
and gold conversations run as chats."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from assistant.evaluate.ablation import REDECIDABLE

from assistant.evaluate.ablation import Config, ablations, decide, fire_counts, score, sweep
from assistant.evaluate.runner import run_eval
from assistant.indexing.build import build_index
from assistant.settings import Settings

BBC = Path(__file__).resolve().parent / "data" / "bbc"


def _record(answerable: bool, p_none: float, sentences: list[tuple[str, float]], golds: list[str],
            entities: bool = True, question: str = "What did Claxton win in Birmingham?") -> dict[str, Any]:
    verdicts = [{"name": "entities", "passed": entities, "score": 1.0 if entities else 0.0},
                {"name": "answerable", "passed": p_none < 0.3, "score": p_none}]
    verdicts += [{"name": "supported", "passed": p >= 0.5, "score": p, "subject": s} for s, p in sentences]
    return {"question": question, "answerable": answerable, "golds": golds, "verdicts": verdicts, "traced": True}


def test_switching_a_check_off_re_decides_from_the_recorded_verdicts() -> None:
    rec = _record(True, 0.6, [("Claxton won the AAAs title.", 0.9)], ["AAAs title"])
    shipped = Config(frozenset(), 0.3, 0.5)
    assert decide(rec, shipped) == (True, "")
    assert decide(rec, Config(frozenset({"answerable"}), 0.3, 0.5)) == (False, "Claxton won the AAAs title.")
    # A withheld sentence comes back when the support check is off.
    two = _record(True, 0.1, [("Claxton won the AAAs title.", 0.9), ("She retired.", 0.2)], ["AAAs title"])
    assert decide(two, shipped)[1] == "Claxton won the AAAs title."
    assert decide(two, Config(frozenset({"supported"}), 0.3, 0.5))[1] == "Claxton won the AAAs title. She retired."
    # A sentence with a made-up figure is withheld unless the numbers check is off.
    rec = _record(True, 0.1, [("Claxton won the AAAs title.", 0.9), ("She won 40,000 pounds.", 0.9)], ["AAAs title"])
    rec["verdicts"] += [{"name": "numbers", "passed": True, "score": None, "subject": "Claxton won the AAAs title."},
                        {"name": "numbers", "passed": False, "score": 0.0, "subject": "She won 40,000 pounds."}]
    assert decide(rec, shipped)[1] == "Claxton won the AAAs title."
    assert decide(rec, Config(frozenset({"numbers"}), 0.3, 0.5))[1] == "Claxton won the AAAs title. She won 40,000 pounds."
    # An answer cited from articles that never name the question's subject declines unless that check is off.
    rec = _record(True, 0.1, [("Claxton won the AAAs title.", 0.9)], ["AAAs title"])
    rec["verdicts"].append({"name": "subject", "passed": False, "score": 0.0, "subject": ""})
    assert decide(rec, shipped) == (True, "")
    assert decide(rec, Config(frozenset({"subject"}), 0.3, 0.5)) == (False, "Claxton won the AAAs title.")


def test_the_gate_sweep_trades_wrong_declines_for_declined_unanswerables() -> None:
    records = [_record(True, 0.1, [("Claxton won the AAAs title.", 0.9)], ["AAAs title"]),
               _record(True, 0.4, [("Claxton won the AAAs title.", 0.9)], ["AAAs title"]),
               _record(False, 0.35, [("Claxton won in Madrid.", 0.9)], [])]
    rows = {r["gate_none_max"]: r for r in sweep(records, 0.5, steps=[0.3, 0.5])}
    assert rows[0.3]["correct"] == 0.5 and rows[0.3]["wrong_decline"] == 0.5 and rows[0.3]["correct_decline"] == 1.0
    assert rows[0.5]["correct"] == 1.0 and rows[0.5]["answered_unanswerable"] == 1
    names = [tuple(r["off"]) for r in ablations(records, 0.3, 0.5)]
    assert names[0] == () and ("answerable",) in names and len(names[-1]) == len(REDECIDABLE) and "cite" not in names[-1]
    assert fire_counts(records)["answerable"] == {"ran": 3, "failed": 2}
    assert score(records, Config(frozenset(), 0.3, 0.5))["n_unanswerable"] == 1


def test_the_kind_ablation_re_decides_with_each_reading_of_the_question() -> None:
    from assistant.evaluate.ablation import kinds

    # "What was the fine...?" asks for an amount by its head noun, which only the parse reads;
    # read without the noun, or by its first word, any content answers.
    no_figure = _record(False, 0.1, [("The regulator fined the bank for mis-selling.", 0.9)], [],
                        question="What was the fine imposed on the bank?")
    rows = {r["kind"]: r for r in kinds([no_figure], Config(frozenset(), 0.3, 0.5))}
    assert rows["parse"]["correct_decline"] == 1.0  # no amount: the answer-type check declines
    assert rows["parse_no_nouns"]["correct_decline"] == 0.0 and rows["first_word"]["correct_decline"] == 0.0


@pytest.fixture
def bbc_settings(tmp_path: Path, fresh_caches: None) -> Settings:
    corpus = tmp_path / "bbc"
    shutil.copytree(BBC, corpus)
    s = Settings.from_env(environ={}, corpus_dir=str(corpus), index_dir=str(tmp_path / "index"),
                          embedder="fake:hash", llm="fake:extractive")
    build_index(corpus, settings=s)
    return s


def test_a_bbc_eval_run_reports_decline_reasons_ablations_sweeps_and_chats(bbc_settings: Settings,
                                                                           tmp_path: Path) -> None:
    gold = tmp_path / "gold.jsonl"
    gold.write_text("\n".join(json.dumps(c) for c in [
        {"id": "b1", "question": "What time did Sarah Claxton set to win the AAAs 60m hurdles title?",
         "answer": "7.96 seconds", "aliases": ["7.96"], "sources": ["sport/001.txt"],
         "evidence": ["The 25-year-old has already smashed the British record over 60m hurdles twice this season, "
                      "setting a new mark of 7.96 seconds to win the AAAs title."], "type": "how_many",
         "answerable": True},
        {"id": "b2", "question": "Which horse won the Grand National at Aintree?", "answer": "", "sources": [],
         "evidence": [], "type": "off_topic", "answerable": False},
    ]) + "\n", encoding="utf-8")
    chats = tmp_path / "chats.jsonl"
    chats.write_text(json.dumps({"id": "c1", "turns": [
        {"question": "Who did Carlos Moya beat to win the Davis Cup for Spain?", "answer": "Andy Roddick",
         "aliases": ["Roddick"], "sources": ["sport/466.txt"], "type": "who", "answerable": True,
         "evidence": ["Spain won the Davis Cup for the second time in their history when Carlos Moya beat the "
                      "USA's Andy Roddick in the fourth rubber in Seville."]},
        {"question": "And where was the final played?", "answer": "Seville", "sources": ["sport/466.txt"],
         "type": "single", "answerable": True,
         "evidence": ["Spain won the Davis Cup for the second time in their history when Carlos Moya beat the "
                      "USA's Andy Roddick in the fourth rubber in Seville."]}]}) + "\n", encoding="utf-8")

    report = run_eval(gold, settings=bbc_settings, runs_dir=tmp_path / "runs", conversations=chats)

    summary = report.summary
    assert summary["n"] == 2, "chat turns are reported apart from the question set"
    assert summary["chat"]["n"] == 2 and summary["chat"]["n_conversations"] == 1
    chat_records = [r for r in report.cases if r["chat"]]
    assert chat_records[1]["standalone_question"], "the follow-up was rewritten"
    assert sum(summary["decline_reasons"].values()) == summary["n_declined"]
    assert {row["off"][0] for row in summary["ablation"] if len(row["off"]) == 1} == \
        {"entities", "answerable", "numbers", "supported", "addresses", "picked", "subject"}
    assert len(summary["sweep_gate"]) == 20 and len(summary["sweep_support"]) == 20
    markdown = (report.run_dir / "report.md").read_text(encoding="utf-8")
    assert "## Ablation" in markdown and "## Decline reasons and checks" in markdown and "## Chat conversations" in markdown
    assert (report.run_dir / "tradeoff.png").stat().st_size > 1000
    assert all(r["traced"] for r in report.cases)


def test_the_identity_check_names_each_case_and_field_that_changed(tmp_path: Path) -> None:
    from assistant.evaluate.identical import main

    case = {"id": "b-1", "answer": "Claxton won [S1].", "declined": False, "decline_reason": "", "draft": "",
            "notes": [], "verdicts": [{"name": "answerable", "passed": True, "score": 0.1}],
            "citations": [{"label": "S1", "file": "sport/001.txt", "start": 0, "end": 40}], "latency_s": 1.0}
    moved = {**case, "citations": [{"label": "S1", "file": "sport/001.txt", "start": 5, "end": 40}], "latency_s": 9.0}
    for name, rows in (("a", [case]), ("b", [{**case, "latency_s": 2.0}]), ("c", [moved])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "cases.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main([str(tmp_path / "a"), str(tmp_path / "b")]) == 0  # timings are not behaviour
    assert main([str(tmp_path / "a"), str(tmp_path / "c")]) == 1


def test_the_decline_rule_is_fitted_on_the_signals_together() -> None:
    from assistant.evaluate.declines import cross_validated, fit, rates, signals

    right = [_record(True, 0.1 + 0.01 * i, [("Claxton won the AAAs title.", 0.9)], ["AAAs title"]) for i in range(10)]
    # Unanswerable: the gate is unsure and the names are not all found, yet the support check says yes.
    wrong = [_record(False, 0.5 + 0.01 * i, [("Claxton won in Madrid.", 0.9)], [], entities=False) for i in range(10)]
    for r in wrong:
        r["verdicts"][0]["passed"] = True  # the entities check alone would not decline them
        r["verdicts"][0]["score"] = 0.5
    records = right + wrong
    s = signals(wrong[0])
    assert s["gate_none"] == 0.5 and s["entity_share"] == 0.5 and s["support_min"] == 0.9
    model, t = fit(records, max_wrong_declines=0.0)
    answers = [bool(p >= t) for p in model.predict_proba([[signals(r)[f] for f in signals(r)] for r in records])[:, 1]]
    scored = rates(records, answers)
    assert scored["correct"] == 1.0 and scored["wrong_declines"] == 0.0 and scored["unanswerable_declined"] == 1.0
    assert rates(records, cross_validated(records, 0.0))["crag"] > rates(records, [True] * 20)["crag"]
