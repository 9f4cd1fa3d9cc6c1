"""`assistant index` and `assistant search` through the real CLI (typer's runner)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from assistant.interfaces.cli import app
from assistant.indexing.build import IndexLock
from assistant.settings import Settings
from assistant.indexing.store import fingerprint, locate
from conftest import SAMPLE_ARTICLES

runner = CliRunner()
REPORT_KEYS = ["added", "updated", "removed", "unchanged", "chunks", "skipped", "copy_groups"]
BAR_CHARACTERS = ("━", "█", "▏", "%|", "\r", "\x1b[")


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_index_json_prints_exactly_the_report_and_nothing_else(cli_env: pytest.MonkeyPatch, corpus: Path) -> None:
    (corpus / "sub").mkdir()
    (corpus / "sub" / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (corpus / "sub" / "broken.pdf").write_bytes(b"%PDF-1.4\nnot really a pdf\n")  # pypdf would log warnings
    result = invoke("index", str(corpus), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)  # stdout and stderr together: pure JSON, no progress bar
    assert list(report) == REPORT_KEYS
    assert report["added"] == 5 and report["chunks"] > 5
    assert report["skipped"] == [{"file": "sub/broken.pdf", "reason": "unreadable PDF (PdfStreamError)"},
                                 {"file": "sub/photo.png", "reason": "unsupported file type '.png'"}]
    assert not any(ch in result.output for ch in BAR_CHARACTERS)


def test_index_json_in_a_pipe_writes_only_json_and_nothing_on_stderr(corpus: Path, index_dir: Path) -> None:
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.4\nnot really a pdf\n")  # pypdf logs warnings about it
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    env.update(ASSISTANT_EMBEDDER="fake:hash", ASSISTANT_INDEX_DIR=str(index_dir), HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, "-m", "assistant.interfaces.cli", "index", str(corpus), "--json"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no progress bar and no library logging when not on a terminal
    assert json.loads(done.stdout)["skipped"][0]["file"] == "broken.pdf"


def test_second_index_run_reports_everything_unchanged(cli_env: pytest.MonkeyPatch, corpus: Path) -> None:
    first = json.loads(invoke("index", str(corpus), "--json").output)
    again = json.loads(invoke("index", str(corpus), "--json").output)
    assert again == {"added": 0, "updated": 0, "removed": 0, "unchanged": 5, "chunks": first["chunks"],
                     "skipped": [], "copy_groups": []}  # the five sample articles are five stories


def test_index_without_path_uses_the_sample_corpus(clean_env: pytest.MonkeyPatch, index_dir: Path) -> None:
    clean_env.setenv("ASSISTANT_EMBEDDER", "fake:hash")
    result = invoke("index", "--index-dir", str(index_dir), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["added"] == len(list(SAMPLE_ARTICLES.glob("*.txt"))) == 5
    result = invoke("search", "seafood import ban", "--index-dir", str(index_dir), "--json", "--k", "1")
    assert json.loads(result.output)[0]["file"].startswith(("003_", "004_"))


def test_index_human_output_lists_skipped_files(cli_env: pytest.MonkeyPatch, corpus: Path) -> None:
    (corpus / "notes.docx").write_bytes(b"PK\x03\x04")
    (corpus / "empty.txt").write_bytes(b"")
    result = invoke("index", str(corpus))
    assert result.exit_code == 0, result.output
    assert "5 added" in result.output
    assert "skipped empty.txt: empty file" in result.output
    assert "skipped notes.docx: unsupported file type '.docx'" in result.output


def test_missing_path_exits_2_with_a_clear_message(cli_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    result = invoke("index", str(tmp_path / "no-such-folder"))
    assert result.exit_code == 2
    assert "error: path not found:" in result.output and "no-such-folder" in result.output
    assert "Traceback" not in result.output


def test_file_instead_of_a_folder_exits_2(cli_env: pytest.MonkeyPatch, corpus: Path) -> None:
    result = invoke("index", str(corpus / "001_e2d5a160401ece19.txt"))
    assert result.exit_code == 2 and "is a file, not a folder" in result.output


def test_index_dir_option_decides_where_the_index_lives(cli_env: pytest.MonkeyPatch, corpus: Path,
                                                        tmp_path: Path) -> None:
    chosen = tmp_path / "chosen"
    assert invoke("index", str(corpus), "--index-dir", str(chosen), "--json").exit_code == 0
    fp = fingerprint(Settings.from_env(environ={}, embedder="fake:hash"))
    assert (chosen / fp / "manifest.json").is_file() and (chosen / fp / "chroma").is_dir()
    result = invoke("search", "seafood import ban", "--index-dir", str(chosen), "--json")
    assert result.exit_code == 0 and json.loads(result.output)


def test_assistant_index_dir_variable_decides_where_the_index_lives(cli_env: pytest.MonkeyPatch, corpus: Path,
                                                                    tmp_path: Path) -> None:
    chosen = tmp_path / "from-env"
    cli_env.setenv("ASSISTANT_INDEX_DIR", str(chosen))
    assert invoke("index", str(corpus), "--json").exit_code == 0
    fp = fingerprint(Settings.from_env(environ={}, embedder="fake:hash"))
    assert (chosen / fp / "manifest.json").is_file()
    assert json.loads(invoke("search", "seafood", "--json").output)


def test_index_defaults_to_index_folder_in_the_working_directory(clean_env: pytest.MonkeyPatch, corpus: Path,
                                                                 tmp_path: Path) -> None:
    clean_env.setenv("ASSISTANT_EMBEDDER", "fake:hash")
    clean_env.chdir(tmp_path)
    assert invoke("index", str(corpus), "--json").exit_code == 0
    fp = fingerprint(Settings.from_env(environ={}, embedder="fake:hash"))
    assert (tmp_path / "index" / fp / "chroma").is_dir()


def test_search_shows_file_score_offsets_and_text(cli_env: pytest.MonkeyPatch, corpus: Path) -> None:
    invoke("index", str(corpus))
    result = invoke("search", "seafood import ban", "--k", "2")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len([line for line in lines if line[:2] in ("1.", "2.")]) == 2
    first = lines[0]
    assert first.startswith("1. 00") and " score " in first
    start, end = (int(x) for x in first.split("[")[1].split("]")[0].split(":"))
    assert end > start
    assert "seafood" in result.output.lower()


def test_search_json_is_a_list_of_file_score_start_end_text(cli_env: pytest.MonkeyPatch, corpus: Path) -> None:
    invoke("index", str(corpus))
    result = invoke("search", "seafood import ban", "--json", "--k", "3")
    assert result.exit_code == 0, result.output
    hits = json.loads(result.output)
    assert len(hits) == 3
    for hit in hits:
        assert list(hit) == ["file", "score", "start", "end", "text"]
        text = (corpus / hit["file"]).read_bytes().decode("utf-8")
        assert text[hit["start"]:hit["end"]] == hit["text"]
    assert hits[0]["file"].startswith(("003_", "004_"))
    assert hits[0]["score"] >= hits[-1]["score"]


def test_search_before_indexing_says_how_to_build_the_index(cli_env: pytest.MonkeyPatch) -> None:
    result = invoke("search", "seafood")
    assert result.exit_code == 3
    assert "index not built" in result.output and "assistant index" in result.output


def test_search_with_an_invalid_date_exits_2(cli_env: pytest.MonkeyPatch, corpus: Path) -> None:
    invoke("index", str(corpus))
    result = invoke("search", "seafood", "--since", "last week")
    assert result.exit_code == 2 and "--since 'last week' is not a date" in result.output


def test_search_since_filter_keeps_only_newer_articles(cli_env: pytest.MonkeyPatch, corpus: Path) -> None:
    invoke("index", str(corpus))
    hits = json.loads(invoke("search", "Japan China talks", "--json", "--k", "20", "--since", "2024-01-01").output)
    assert hits and {h["file"][:3] for h in hits} <= {"003", "004"}


def test_index_while_another_run_holds_the_lock_exits_4_naming_it(cli_env: pytest.MonkeyPatch, corpus: Path,
                                                                  index_dir: Path) -> None:
    settings = Settings.from_env(environ={}, embedder="fake:hash", index_dir=str(index_dir))
    with IndexLock(locate(settings).root):
        result = invoke("index", str(corpus))
    assert result.exit_code == 4
    assert f"pid {os.getpid()}" in result.output and "another indexing run" in result.output


def test_openai_embedder_without_key_exits_2_naming_the_variable(cli_env: pytest.MonkeyPatch, corpus: Path) -> None:
    cli_env.setenv("ASSISTANT_EMBEDDER", "openai:text-embedding-3-small")
    result = invoke("index", str(corpus))
    assert result.exit_code == 2 and "OPENAI_API_KEY is not set" in result.output


def test_openai_compatible_embedder_without_url_exits_2_naming_the_variable(cli_env: pytest.MonkeyPatch,
                                                                            corpus: Path) -> None:
    cli_env.setenv("ASSISTANT_EMBEDDER", "openai-compatible:nomic-embed-text")
    result = invoke("index", str(corpus))
    assert result.exit_code == 2 and "ASSISTANT_OPENAI_BASE_URL" in result.output


def test_unwritable_index_dir_exits_6_naming_the_setting(cli_env: pytest.MonkeyPatch, corpus: Path,
                                                          tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = invoke("index", str(corpus), "--index-dir", str(blocker / "index"))
    assert result.exit_code == 6
    assert "cannot write the index folder" in result.output and "--index-dir" in result.output
    assert "Traceback" not in result.output
