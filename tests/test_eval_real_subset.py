"""The evaluation runner on a small subset with the real default local model (CI runs it)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from assistant.evaluate.dataset import load_dataset
from assistant.evaluate.runner import run_eval
from assistant.indexing.build import build_index
from assistant.settings import REPO_DIR, Settings

pytestmark = pytest.mark.real_model
# Deterministic picks: two single-source facts the model answered correctly in the full run,
# and one question the articles cannot answer.
PICKS = ("Which company employed the senior Japanese employee detained in China",
         "What name does Beijing use for the Senkaku Islands?",
         "What is the name of the Astellas Pharma employee detained in Beijing")


def test_real_model_subset_runs_end_to_end_and_scores_its_answers(tmp_path: Path) -> None:
    cases = [c for c in load_dataset(REPO_DIR / "evals/datasets/sample.jsonl")
             if any(c.question.startswith(p) for p in PICKS)]
    assert len(cases) == 3
    subset = tmp_path / "subset.jsonl"
    lines = {json.loads(line)["id"]: line for line in
             (REPO_DIR / "evals/datasets/sample.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()}
    subset.write_text("\n".join(lines[c.id] for c in cases) + "\n", encoding="utf-8")
    corpus = tmp_path / "articles"
    shutil.copytree(REPO_DIR / "articles", corpus)
    settings = Settings.from_env(index_dir=str(tmp_path / "idx"), corpus_dir=str(corpus),
                                 embedder="local:all-MiniLM-L6-v2", llm="local:qwen2.5-coder-1.5b")
    build_index(corpus, settings=settings)

    report = run_eval(subset, settings=settings, runs_dir=tmp_path / "runs")

    assert {p.name for p in report.run_dir.iterdir()} >= {"settings.json", "cases.jsonl", "summary.json",
                                                          "report.md", "chart.png"}
    records = [json.loads(line) for line in (report.run_dir / "cases.jsonl").read_text().splitlines()]
    assert len(records) == 3
    answerable = [r for r in records if r["answerable"]]
    # Retrieval finds a gold file for both answerable questions, and at least one is answered right.
    assert sum(r["correct"] for r in answerable) >= 1, [r["answer"] for r in answerable]
    unanswerable = [r for r in records if not r["answerable"]]
    # An unanswerable case scores correct exactly when it is declined; the model answers this one
    # ("...is a senior employee") without naming anyone, and the code's who/name check declines it.
    assert [(r["declined"], r["correct"]) for r in unanswerable] == [(True, True)], unanswerable
    assert report.summary["latency_s"]["p50"] > 0 and report.summary["prompt_tokens"]["mean"] > 0
