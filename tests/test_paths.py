"""Paths: indexing stays inside the corpus root, and citations name files relative to it."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from assistant.answering.ask import Assistant
from assistant.interfaces.cli import app
from assistant.indexing.build import build_index
from assistant.reading.loaders import load_document
from assistant.search.retrieval import get_retriever, search
from assistant.settings import Settings
from assistant.indexing.store import locate, read_manifest

SAMPLES = Path(__file__).resolve().parent.parent / "articles"
ASTELLAS = "Which pharmaceutical company employed the senior employee detained in Beijing?"
OUTSIDE = "Hayashi and Qin met in Beijing and agreed on the OUTSIDEFILE-4Z plan for the detained employee."
OUTSIDE_DIR = "Hayashi and Qin met in Beijing and agreed on the OUTSIDEDIR-8B plan for the detained employee."


pytestmark = pytest.mark.usefixtures("fresh_caches")


def _settings(corpus: Path, tmp_path: Path, **extra: object) -> Settings:
    return Settings.from_env(environ={}, corpus_dir=str(corpus), index_dir=str(tmp_path / "idx"),
                             embedder="fake:hash", llm="fake:extractive", **extra)


def _all_indexed_text(settings: Settings) -> str:
    return "\n".join(c.text for c in get_retriever(settings).all_chunks())


@pytest.fixture
def corpus_with_escapes(tmp_path: Path) -> Path:
    """Sample corpus plus symlinks that lead out of it: a file, a folder, loops, dangling links."""
    outside = tmp_path / "outside"
    (outside / "folder").mkdir(parents=True)
    (outside / "secret.txt").write_text(OUTSIDE, encoding="utf-8")
    (outside / "folder" / "inner.txt").write_text(OUTSIDE_DIR, encoding="utf-8")
    corpus = tmp_path / "articles"
    shutil.copytree(SAMPLES, corpus)
    os.symlink(outside / "secret.txt", corpus / "link_to_outside.txt")
    os.symlink("../outside/secret.txt", corpus / "relative_link_to_outside.txt")
    os.symlink(outside / "folder", corpus / "linked_folder")
    return corpus


def test_symlinks_leading_outside_the_corpus_are_skipped_not_followed(corpus_with_escapes: Path,
                                                                      tmp_path: Path) -> None:
    settings = _settings(corpus_with_escapes, tmp_path)
    report = build_index(corpus_with_escapes, settings=settings)
    skipped = {s.file: s.reason for s in report.skipped}
    assert "outside the corpus" in skipped["link_to_outside.txt"]
    assert "outside the corpus" in skipped["relative_link_to_outside.txt"]
    assert "not followed" in skipped["linked_folder"]
    indexed = set((read_manifest(locate(settings)) or {})["files"])
    assert indexed == {p.name for p in SAMPLES.glob("*.txt")}
    text = _all_indexed_text(settings)
    assert "OUTSIDEFILE-4Z" not in text and "OUTSIDEDIR-8B" not in text
    for passage in search("OUTSIDEFILE-4Z OUTSIDEDIR-8B plan", settings, k=10):
        assert "OUTSIDE" not in passage.text


def test_symlink_loops_and_dangling_links_are_reported_and_do_not_stop_the_run(tmp_path: Path) -> None:
    corpus = tmp_path / "articles"
    shutil.copytree(SAMPLES, corpus)
    os.symlink("loop_b.txt", corpus / "loop_a.txt")
    os.symlink("loop_a.txt", corpus / "loop_b.txt")
    os.symlink("self.txt", corpus / "self.txt")
    os.symlink("missing.txt", corpus / "dangling_inside.txt")
    os.symlink("/nonexistent/elsewhere.txt", corpus / "dangling_outside.txt")
    settings = _settings(corpus, tmp_path)
    report = build_index(corpus, settings=settings)
    skipped = {s.file: s.reason for s in report.skipped}
    assert {"loop_a.txt", "loop_b.txt", "self.txt", "dangling_inside.txt", "dangling_outside.txt"} <= set(skipped)
    assert all(reason.strip() for reason in skipped.values())
    assert report.added == 5


def test_file_name_that_is_not_utf8_is_skipped_with_a_reason_and_the_rest_indexed(tmp_path: Path) -> None:
    corpus = tmp_path / "articles"
    shutil.copytree(SAMPLES, corpus)
    raw_name = os.fsencode(corpus) + b"/caf\xe9_latin1_name.txt"
    with open(raw_name, "wb") as fh:
        fh.write(b"Hayashi met Qin in Beijing to discuss the detained employee of the company.\n")
    settings = _settings(corpus, tmp_path)
    report = build_index(corpus, settings=settings)
    assert report.added == 5
    assert len(report.skipped) == 1 and report.skipped[0].reason.strip()
    report.skipped[0].file.encode("utf-8")  # printable in the CLI and in --json output
    json.dumps(report.to_dict())


def test_citations_name_files_relative_to_the_corpus_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = tmp_path / "articles"
    nested = corpus / "2023" / "March"
    nested.mkdir(parents=True)
    shutil.copy(SAMPLES / "001_e2d5a160401ece19.txt", nested / "astellas story.txt")
    shutil.copy(SAMPLES / "000_ab41fa749cc5eede.txt", corpus / "000_ab41fa749cc5eede.txt")
    # The root is given through a detour and a relative path, as a user might type it.
    monkeypatch.chdir(tmp_path)
    detour = Path("articles") / "2023" / ".." / ".." / "articles"
    settings = _settings(detour, tmp_path)
    build_index(detour, settings=settings)
    answer = Assistant(settings).ask(ASTELLAS)
    assert answer.citations and not answer.declined
    for citation in answer.citations:
        path = Path(citation.file)
        assert not path.is_absolute() and ".." not in path.parts and "\\" not in citation.file
        assert citation.file in {"2023/March/astellas story.txt", "000_ab41fa749cc5eede.txt"}
        real = (corpus / path).resolve()
        assert real.is_relative_to(corpus.resolve())
        text = load_document(real, citation.file, settings.index.max_file_bytes).text
        assert text[citation.start:citation.end] == citation.quote
    for passage in answer.sources + search(ASTELLAS, settings, k=5):
        assert not Path(passage.file).is_absolute() and ".." not in Path(passage.file).parts


def test_cli_json_answer_cites_relative_names_when_the_root_is_a_symlink(tmp_path: Path,
                                                                        clean_env: pytest.MonkeyPatch) -> None:
    real = tmp_path / "real_articles"
    shutil.copytree(SAMPLES, real)
    corpus = tmp_path / "articles_link"
    os.symlink(real, corpus)  # the root itself may be a link: it is followed, nothing below it is
    clean_env.setenv("ASSISTANT_EMBEDDER", "fake:hash")
    clean_env.setenv("ASSISTANT_LLM", "fake:extractive")
    clean_env.setenv("ASSISTANT_INDEX_DIR", str(tmp_path / "idx"))
    clean_env.setenv("ASSISTANT_CORPUS", str(corpus))
    runner = CliRunner()
    indexed = runner.invoke(app, ["index", str(corpus), "--json"])
    assert indexed.exit_code == 0, indexed.output
    assert json.loads(indexed.stdout)["added"] == 5
    result = runner.invoke(app, ["ask", ASTELLAS, "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["citations"]
    for item in payload["citations"] + payload["sources"]:
        assert item["file"] in {p.name for p in SAMPLES.glob("*.txt")}


def test_index_folder_inside_the_corpus_is_not_indexed(tmp_path: Path) -> None:
    corpus = tmp_path / "articles"
    shutil.copytree(SAMPLES, corpus)
    settings = Settings.from_env(environ={}, corpus_dir=str(corpus), index_dir=str(corpus / "index"),
                                 embedder="fake:hash")
    build_index(corpus, settings=settings)
    report = build_index(corpus, settings=settings)  # the second run sees the Chroma files on disk
    assert report.unchanged == 5 and not report.skipped, report.to_dict()
