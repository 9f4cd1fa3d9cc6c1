"""The evaluation runner end to end: fake models, a real index in a temp dir, a real run folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.errors import InputError
from assistant.evaluate.compare import compare_runs
from assistant.evaluate.runner import HEADLINE, EvalReport, rejudge_run, run_eval
from assistant.evaluate.scoring import alce_sentences, cited_labels, prediction_text
from assistant.indexing.build import build_index
from assistant.settings import Settings
from assistant.types import Answer, Citation

REPO = Path(__file__).resolve().parent.parent
DATASET = REPO / "evals" / "datasets" / "sample.jsonl"
SECRET = "sk-test-SECRET"


@pytest.fixture
def eval_settings(clean_env: pytest.MonkeyPatch, corpus: Path, index_dir: Path) -> Settings:
    """fake:hash + fake:extractive over a temp index of the sample articles, with an API key in the env."""
    clean_env.setenv("OPENAI_API_KEY", SECRET)
    settings = Settings.from_env(corpus_dir=str(corpus), index_dir=str(index_dir), embedder="fake:hash",
                                 llm="fake:extractive")
    assert settings.model.openai_api_key == SECRET
    build_index(corpus, settings=settings)
    return settings


def _mixed_dataset(tmp_path: Path) -> Path:
    # The first eight cases are all answerable; add two unanswerable ones so declines are scored.
    lines = [line for line in DATASET.read_text(encoding="utf-8").splitlines() if line.strip()]
    unanswerable = [line for line in lines if '"answerable": false' in line][:2]
    path = tmp_path / "gold.jsonl"
    path.write_text("\n".join(lines[:6] + unanswerable) + "\n", encoding="utf-8")
    return path


def _run(settings: Settings, tmp_path: Path, **kwargs: object) -> EvalReport:
    seen: list[tuple[int, int, str]] = []
    report = run_eval(kwargs.pop("dataset", None), settings=settings, runs_dir=tmp_path / "runs",
                      progress=lambda done, total, cid: seen.append((done, total, cid)), **kwargs)  # type: ignore[arg-type]
    assert [s[0] for s in seen] == list(range(1, len(report.cases) + 1))
    return report


def test_run_writes_complete_run_folder_without_secrets(eval_settings: Settings, tmp_path: Path) -> None:
    report = _run(eval_settings, tmp_path, limit=8)
    run = report.run_dir
    assert run.parent == tmp_path / "runs" and run.name.endswith("_" + report.summary["run"]["fingerprint"])
    for name in ("settings.json", "cases.jsonl", "summary.json", "report.md", "chart.png"):
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
        assert SECRET not in (run / name).read_text(encoding="utf-8", errors="ignore"), name
    assert (run / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    settings_json = json.loads((run / "settings.json").read_text())
    assert settings_json["llm"] == "fake:extractive" and settings_json["openai_api_key"] == "set"
    cases = [json.loads(line) for line in (run / "cases.jsonl").read_text().splitlines()]
    assert len(cases) == 8 == len(report.cases) and [c["id"] for c in cases] == [f"q00{i}" for i in range(1, 9)]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["n"] == 8 and set(summary["headline"]) == {key for key, _, _ in HEADLINE}
    for key in ("file_hit@5", "file_mrr@10", "correct", "f1", "alce_recall", "crag"):
        metric = summary["headline"][key]
        assert metric["low"] <= metric["mean"] <= metric["high"], key
    assert summary["latency_s"]["p50"] <= summary["latency_s"]["p95"]
    assert 0.0 <= summary["support_checker"]["kappa"] <= 1.0
    assert report.markdown == (run / "report.md").read_text() and "Headline metrics" in report.markdown


def test_case_records_hold_answer_citations_and_every_metric(eval_settings: Settings, tmp_path: Path) -> None:
    report = _run(eval_settings, tmp_path, dataset=_mixed_dataset(tmp_path))
    by_id = {c["id"]: c for c in report.cases}
    answered = [c for c in report.cases if c["answerable"] and not c["declined"]]
    assert answered, "the extractive fake answers some of the first questions"
    for case in answered:
        assert case["citations"] and all(c["file"].endswith(".txt") for c in case["citations"])
        for key in ("file_hit@1", "file_recall@3", "file_ndcg@10", "passage_hit@5", "em", "f1", "contains",
                    "citation_precision", "citation_recall", "alce_recall", "alce_precision", "latency_s"):
            assert case[key] is not None, key
    q001 = by_id["q001"]
    assert q001["correct"] and "Astellas" in q001["prediction"] and q001["file_hit@5"] == 1.0
    unanswerable = [c for c in report.cases if not c["answerable"]]
    assert len(unanswerable) == 2
    for case in unanswerable:
        assert case["file_hit@5"] is None and case["em"] is None
        assert case["correct"] == case["declined"] and case["crag"] == (1 if case["declined"] else -1)
    decline = report.summary["decline"]
    assert decline["n_unanswerable"] == 2 and decline["n_answerable"] == 6


def test_compare_runs_lists_metric_changes_and_flips(eval_settings: Settings, tmp_path: Path) -> None:
    first = _run(eval_settings, tmp_path, limit=6)
    second = _run(eval_settings, tmp_path, limit=8)
    assert first.run_dir != second.run_dir
    text = compare_runs(first.run_dir, second.run_dir)
    assert first.run_dir.name in text and second.run_dir.name in text
    assert "| File hit@5 |" in text and "CRAG score" in text and "latency p50" in text
    assert "paired 95% CI of change" in text
    assert "2 question(s) are in only one run" in text
    # Same deterministic models on the same questions: nothing flips.
    assert "## correct → wrong (0)" in text and "## wrong → correct (0)" in text


def test_compare_runs_rejects_a_folder_without_summary(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a finished run folder"):
        compare_runs(tmp_path, tmp_path)


def test_missing_dataset_is_a_clear_input_error(eval_settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="dataset file not found"):
        run_eval(tmp_path / "nope.jsonl", settings=eval_settings, runs_dir=tmp_path / "runs")


def test_eval_cli_prints_report_and_run_folder(eval_settings: Settings, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from assistant.interfaces.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ASSISTANT_EMBEDDER", "fake:hash")
    monkeypatch.setenv("ASSISTANT_LLM", "fake:extractive")
    monkeypatch.setenv("ASSISTANT_INDEX_DIR", eval_settings.index.index_dir)
    monkeypatch.setenv("ASSISTANT_CORPUS", eval_settings.index.corpus_dir)
    result = CliRunner().invoke(app, ["eval", "--limit", "3", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["n"] == 3 and SECRET not in result.output
    assert len(list((tmp_path / "evals" / "runs").iterdir())) == 1


def test_alce_labels_are_read_in_either_engine_style() -> None:
    assert cited_labels("Tokyo [S1] and Beijing [2, 3].") == ["S1", "S2", "S3"]
    assert cited_labels("See [Source 4].") == ["S4"]
    assert prediction_text("Astellas Pharma [S1] [2].") == "Astellas Pharma."


def test_alce_sentences_pair_each_sentence_with_its_own_quote_and_the_article_date() -> None:
    answer = Answer(question="q", declined=False,
                    answer="Hayashi visited Beijing [S1]. Qin agreed to visit Japan [S1]. Tokyo said so [S9].",
                    citations=[Citation("S1", "a.txt", 0, 24, "Hayashi visited Beijing."),
                               Citation("S1", "a.txt", 30, 60, "Qin said he would visit Japan.")])
    pairs = alce_sentences(answer, {"a.txt": "2023-04-02"})
    assert pairs[0] == ("Hayashi visited Beijing.", ["Hayashi visited Beijing. 2 April 2023"])
    assert pairs[1] == ("Qin agreed to visit Japan.", ["Qin said he would visit Japan. 2 April 2023"])
    # A label with no resolved citation supports nothing: the sentence counts against recall.
    assert pairs[2] == ("Tokyo said so.", [])


def test_an_engine_crash_on_one_question_is_recorded_and_the_run_goes_on(
        eval_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from assistant.answering.ask import Assistant

    real_ask = Assistant.ask

    def flaky(self: Assistant, question: str, filters: object = None) -> Answer:
        if "Brussels" in question or "NATO" in question:
            raise IndexError("string index out of range")
        return real_ask(self, question)

    monkeypatch.setattr(Assistant, "ask", flaky)
    report = _run(eval_settings, tmp_path, limit=3)
    by_id = {c["id"]: c for c in report.cases}
    assert by_id["q002"]["error"] == "IndexError: string index out of range"
    assert not by_id["q002"]["correct"] and by_id["q002"]["crag"] == -1
    assert by_id["q001"]["error"] == "" and report.summary["n_errors"] == 1
    assert "error: IndexError" in report.markdown


def test_label_only_lines_cite_the_sentence_they_belong_to() -> None:
    citations = [Citation("S1", "a.txt", 0, 9, "Tokyo met."), Citation("S2", "b.txt", 0, 10, "Seoul met.")]
    after = Answer(question="q", declined=False, answer="Tokyo met.\n[S1]\nSeoul met [S2].", citations=citations)
    assert [passages for _, passages in alce_sentences(after, {})] == [["Tokyo met."], ["Seoul met."]]
    heading = Answer(question="q", declined=False, answer="Source 2:\nSeoul met.", citations=citations)
    assert alce_sentences(heading, {}) == [("Seoul met.", ["Seoul met."])]


def test_rejudge_keeps_answers_and_rewrites_the_judged_numbers(eval_settings: Settings, tmp_path: Path) -> None:
    report = _run(eval_settings, tmp_path, limit=4)
    before = [(c["id"], c["answer"], c["file_mrr@10"]) for c in report.cases]
    again = rejudge_run(report.run_dir, settings=eval_settings)
    assert [(c["id"], c["answer"], c["file_mrr@10"]) for c in again.cases] == before
    assert again.summary["headline"]["alce_recall"] == report.summary["headline"]["alce_recall"]
    assert "re-judged" in (report.run_dir / "report.md").read_text()
    assert json.loads((report.run_dir / "summary.json").read_text())["run"]["name"] == report.run_dir.name


def test_a_recorded_run_replays_identically_and_a_changed_prompt_is_caught(
        eval_settings: Settings, tmp_path: Path) -> None:
    from assistant.evaluate.identical import differences, _cases

    gold, recording = _mixed_dataset(tmp_path), tmp_path / "calls.jsonl"
    recorded = run_eval(gold, settings=eval_settings, runs_dir=tmp_path / "a", record=recording)
    assert recording.stat().st_size > 0
    replayed = run_eval(gold, settings=eval_settings, runs_dir=tmp_path / "b", replay=recording)
    assert differences(_cases(recorded.run_dir), _cases(replayed.run_dir)) == []
    assert not any(r["error"] for r in replayed.cases)

    # A change that alters the prompts (less evidence): the cases that reach the model miss the recording.
    smaller = eval_settings.with_(evidence_tokens=120)
    changed = run_eval(gold, settings=smaller, runs_dir=tmp_path / "c", replay=recording)
    missed = [r for r in changed.cases if "ReplayMiss" in r["error"]]
    assert missed and differences(_cases(recorded.run_dir), _cases(changed.run_dir))
    assert changed.summary["run"]["replay_misses"] >= len(missed)
    # With the fallback, what the recording lacks goes to the model: no case fails.
    complete = tmp_path / "complete.jsonl"
    mixed = run_eval(gold, settings=smaller, runs_dir=tmp_path / "d", replay=recording, replay_fallback=True,
                     record=complete)
    assert not any(r["error"] for r in mixed.cases) and mixed.summary["run"]["replay_misses"] >= len(missed)
    # Recorded as well, the mixed run's file holds every reply it used: it replays with no miss.
    again = run_eval(gold, settings=smaller, runs_dir=tmp_path / "e", replay=complete)
    assert again.summary["run"]["replay_misses"] == 0
    assert differences(_cases(mixed.run_dir), _cases(again.run_dir)) == []
    assert replayed.summary["run"]["replay_misses"] == 0


def test_replay_refuses_the_baseline_and_a_file_that_is_not_a_recording(eval_settings: Settings,
                                                                          tmp_path: Path) -> None:
    from assistant.backends.recorded import ReplayChatModel

    with pytest.raises(InputError):
        run_eval(_mixed_dataset(tmp_path), settings=eval_settings, runs_dir=tmp_path, baseline=True,
                 replay=tmp_path / "x.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n", encoding="utf-8")
    with pytest.raises(InputError, match="not a recording"):
        ReplayChatModel(bad)


def test_identical_reports_a_changed_verdict_unless_that_check_is_ignored(tmp_path: Path) -> None:
    from assistant.evaluate.identical import main

    base = {"id": "c1", "answer": "A [S1].", "declined": False, "verdicts": [{"name": "supported", "passed": True}],
            "citations": [{"label": "S1", "file": "f.txt", "start": 0, "end": 5}]}
    added = dict(base, verdicts=base["verdicts"] + [{"name": "cite", "passed": True, "subject": "A."}])
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text(json.dumps(base) + "\n" + json.dumps(dict(base, id="c2")) + "\n", encoding="utf-8")
    second.write_text(json.dumps(added) + "\n", encoding="utf-8")
    assert main([str(first), str(second)]) == 1  # c2 missing, c1's verdicts differ
    assert main([str(first), str(second), "--common"]) == 1  # the added verdict still differs
    assert main([str(first), str(second), "--common", "--ignore-verdict", "cite"]) == 0
    changed = dict(added, answer="B [S1].")
    second.write_text(json.dumps(changed) + "\n", encoding="utf-8")
    assert main([str(first), str(second), "--common", "--ignore-verdict", "cite"]) == 1


def test_a_recorded_stream_replays_as_far_as_it_was_read_and_a_failed_one_is_not_recorded(tmp_path: Path) -> None:
    from assistant.backends.fakes import QueueChatModel
    from assistant.backends.recorded import RecordingChatModel, ReplayChatModel, ReplayMiss

    path, messages = tmp_path / "calls.jsonl", [{"role": "user", "content": "q"}]
    recording = RecordingChatModel(QueueChatModel().enqueue("one two three"), path)
    stream = recording.stream(messages, max_tokens=8)
    first = next(stream)
    stream.close()  # the reader stopped after one delta
    assert list(ReplayChatModel(path).stream(messages, max_tokens=8)) == [first]
    broken = RecordingChatModel(QueueChatModel(), path)  # nothing queued: the model fails
    with pytest.raises(AssertionError):
        list(broken.stream([{"role": "user", "content": "other"}], max_tokens=8))
    with pytest.raises(ReplayMiss):
        list(ReplayChatModel(path).stream([{"role": "user", "content": "other"}], max_tokens=8))
