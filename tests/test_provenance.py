"""Provenance on every answer, and `assistant verify` re-checking saved quotes against the files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from assistant.interfaces.cli import app

runner = CliRunner()
QUESTION = "Which Japanese company employed the detained businessman?"


@pytest.fixture
def saved(cli_env: pytest.MonkeyPatch, corpus: Path, tmp_path: Path) -> tuple[Path, dict]:
    cli_env.setenv("ASSISTANT_LLM", "fake:extractive")
    result = runner.invoke(app, ["ask", QUESTION, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["citations"], data
    path = tmp_path / "answer.json"
    path.write_text(result.stdout, encoding="utf-8")
    return path, data


def _verify(path: Path, *extra: str) -> tuple[int, dict]:
    result = runner.invoke(app, ["verify", str(path), "--json", *extra])
    return result.exit_code, json.loads(result.stdout)


def test_an_answer_records_what_it_rests_on(saved: tuple[Path, dict], corpus: Path) -> None:
    _, data = saved
    record = data["provenance"]
    assert Path(record["corpus"]) == corpus.resolve()
    assert record["embedder"] == "fake:hash" and record["model"] == "fake:extractive"
    assert set(record["files"]) == {c["file"] for c in data["citations"]}


def test_verify_passes_while_the_files_are_unchanged(saved: tuple[Path, dict]) -> None:
    code, report = _verify(saved[0])
    assert code == 0 and report["ok"] and all(c["status"] == "ok" for c in report["checks"])
    assert report["changed_files"] == []
    text = runner.invoke(app, ["verify", str(saved[0])]).output
    assert "verified" in text and "NOT" not in text


def test_verify_reports_a_moved_quote_with_its_new_offsets(saved: tuple[Path, dict], corpus: Path) -> None:
    path, data = saved
    cited = corpus / data["citations"][0]["file"]
    cited.write_text("Editor's note: this story was updated.\n" + cited.read_text(encoding="utf-8"), encoding="utf-8")
    code, report = _verify(path)
    assert code == 1 and not report["ok"]
    first = report["checks"][0]
    assert first["status"] == "moved" and first["now_start"] == data["citations"][0]["start"] + 39
    assert data["citations"][0]["file"] in report["changed_files"]


def test_verify_reports_changed_and_missing_files(saved: tuple[Path, dict], corpus: Path) -> None:
    path, data = saved
    quote = data["citations"][0]["quote"]
    cited = corpus / data["citations"][0]["file"]
    cited.write_text(cited.read_text(encoding="utf-8").replace(quote, "This sentence was withdrawn."), encoding="utf-8")
    assert _verify(path)[1]["checks"][0]["status"] == "changed"
    cited.unlink()
    code, report = _verify(path)
    assert code == 1 and report["checks"][0]["status"] == "missing"


def test_verify_against_another_folder_and_bad_input(saved: tuple[Path, dict], tmp_path: Path) -> None:
    elsewhere = runner.invoke(app, ["verify", str(saved[0]), "--corpus", str(tmp_path / "nowhere")])
    assert elsewhere.exit_code != 0 and "--corpus" in elsewhere.output
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    result = runner.invoke(app, ["verify", str(broken)])
    assert result.exit_code != 0 and "not an answer saved as JSON" in result.output and "Traceback" not in result.output
