"""Wire copy counted once: near-duplicate files form a copy group, retrieval gives the group one
slot, answers cite one representative and list the other files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from assistant.indexing import copies
from assistant.answering.ask import Assistant
from assistant.interfaces.cli import app
from assistant.indexing.build import build_index
from assistant.search.retrieval import search
from assistant.settings import Settings
from conftest import TEST_DATA

ORIGINAL = "business/001.txt"


@pytest.fixture
def wire(tmp_path: Path) -> Path:
    """The 10-file BBC subset plus a byte-identical copy and a retitled, lightly edited copy of one story."""
    folder = tmp_path / "bbc"
    shutil.copytree(TEST_DATA / "bbc", folder)
    text = (folder / ORIGINAL).read_text(encoding="utf-8")
    (folder / "wire").mkdir()
    (folder / "wire" / "agency-copy.txt").write_text(text, encoding="utf-8")
    lines = text.splitlines()
    edited = ["Rewritten headline for the same story"] + lines[1:]
    edited[-1] = edited[-1] + " The company declined to comment further."
    (folder / "wire" / "edited-copy.txt").write_text("\n".join(edited) + "\n", encoding="utf-8")
    return folder


def _settings(folder: Path, index_dir: Path, **extra: object) -> Settings:
    return Settings.from_env(environ={}, corpus_dir=str(folder), index_dir=str(index_dir), embedder="fake:hash",
                             llm="fake:extractive", **extra)


def _story_words(folder: Path) -> str:
    body = (folder / ORIGINAL).read_text(encoding="utf-8").split()
    return " ".join(body[12:24])


def test_copies_form_one_group_and_index_json_reports_it(wire: Path, index_dir: Path,
                                                         clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ASSISTANT_EMBEDDER", "fake:hash")
    clean_env.setenv("ASSISTANT_INDEX_DIR", str(index_dir))
    result = CliRunner().invoke(app, ["index", str(wire), "--json"])
    assert result.exit_code == 0, result.output
    groups = json.loads(result.output)["copy_groups"]
    # The subset's own byte-identical BBC pair is found too (tests/data/BBC_SUBSET.md).
    assert groups == [[ORIGINAL, "wire/agency-copy.txt", "wire/edited-copy.txt"],
                      ["entertainment/129.txt", "entertainment/261.txt"]]


def test_search_gives_a_copy_group_one_slot_and_names_the_copies(wire: Path, index_dir: Path) -> None:
    settings = _settings(wire, index_dir)
    build_index(wire, settings=settings)
    query = _story_words(wire)
    hits = search(query, settings, k=5)
    story = [h for h in hits if h.file in (ORIGINAL, "wire/agency-copy.txt", "wire/edited-copy.txt")]
    texts = [" ".join(h.text.split()) for h in story]
    assert len(texts) == len(set(texts)), "the same passage took two slots"
    assert story and set(story[0].copies) | {story[0].file} == {ORIGINAL, "wire/agency-copy.txt",
                                                                "wire/edited-copy.txt"}
    ungrouped = _settings(wire, index_dir, group_copies=False)
    plain = search(query, ungrouped, k=5)
    assert sum(h.file.startswith("wire/") or h.file == ORIGINAL for h in plain) > len(story)


def test_an_answer_cites_one_copy_lists_the_others_and_counts_one_source(wire: Path, index_dir: Path) -> None:
    settings = _settings(wire, index_dir, checks_off=frozenset({"entities", "addresses"}))
    build_index(wire, settings=settings)
    first = (wire / ORIGINAL).read_text(encoding="utf-8").splitlines()
    sentence = next(line for line in first[1:] if len(line.split()) > 12).split(". ")[0]
    answer = Assistant(settings).ask(f"What happened: {sentence}?")
    assert not answer.declined, answer.decline_reason
    story = {ORIGINAL, "wire/agency-copy.txt", "wire/edited-copy.txt"}
    cited = [c for c in answer.citations if c.file in story]
    assert cited and all(set(c.copies) | {c.file} == story for c in cited)
    assert answer.independent_sources == len({min((c.file, *c.copies)) for c in answer.citations})
    assert any("independent source" in note for note in answer.notes)
    assert answer.to_dict()["citations"][0]["copies"]


def test_only_the_identical_bbc_pair_is_grouped_in_the_subset() -> None:
    folder = TEST_DATA / "bbc"
    vocab: dict[str, int] = {}
    from assistant.text_utils import content_terms

    texts = [p.read_text(encoding="utf-8", errors="replace") for p in sorted(folder.rglob("*.txt"))]
    sigs = np.stack([copies.signature([vocab.setdefault(w, len(vocab)) for w in content_terms(t)]) for t in texts])
    names = [str(p.relative_to(folder)) for p in sorted(folder.rglob("*.txt"))]
    group = copies.groups(sigs).tolist()
    together = [n for n, g in zip(names, group) if group.count(g) > 1]
    assert together == ["entertainment/129.txt", "entertainment/261.txt"]


def test_signatures_estimate_jaccard_similarity() -> None:
    base = list(range(400))
    same = copies.signature(base)
    assert (copies.signature(list(base)) == same).all()
    half = copies.signature(base[:200] + list(range(1000, 1200)))
    estimate = float(np.mean(half == same))
    assert 0.15 < estimate < 0.55  # true Jaccard of the shingle sets is 198/600 = 0.33
    assert len(set(copies.groups(np.stack([same, same, half])).tolist())) == 2
