"""Latest first: questions about how things stand now prefer the newest dated evidence, say the
date they are true as of, quote an older article that said otherwise, and say when the folder is
older than "now"; a newer or corrected copy of a story takes the older one's slot."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from assistant.answering.ask import Assistant
from assistant.backends import get_llm
from assistant.backends.fakes import QueueChatModel
from assistant.answering.checks import understand
from assistant.indexing.build import build_index
from assistant.search.retrieval import search
from assistant.settings import Settings
from conftest import TEST_DATA

OLD = "In May 2023 officials said China's ban on Japanese seafood imports remains in force for now."
NEW = "China agreed in December 2024 to resume imports of Japanese seafood after new safety checks."


@pytest.mark.parametrize("question, current", [
    ("Has China lifted its ban on Japanese seafood?", True),
    ("Who is Japan's foreign minister now?", True),
    ("What is the latest on the seafood dispute?", True),
    ("Is the ban still in force?", True),
    ("When did Hayashi visit Beijing in April 2023?", False),  # names its own date
    ("Who did Hayashi meet in Beijing?", False),
])
def test_questions_about_now_are_recognised(question: str, current: bool) -> None:
    assert understand(question, use_ner=True).current is current


@pytest.fixture
def dated(tmp_path: Path, index_dir: Path) -> Settings:
    folder = tmp_path / "news"
    folder.mkdir()
    (folder / "old.txt").write_text(f"Seafood ban stays\n\n{OLD} Fishermen in Fukushima were disappointed.\n")
    (folder / "new.txt").write_text(f"Seafood trade to resume\n\n{NEW} Exporters in Hokkaido welcomed it.\n")
    (folder / "metadata.json").write_text(json.dumps({"files": {"old.txt": {"date": "2023-05-10"},
                                                                 "new.txt": {"date": "2024-12-20"}}}))
    settings = Settings.from_env(environ={}, corpus_dir=str(folder), index_dir=str(index_dir), embedder="fake:hash",
                                 llm="fake:queue", checks_off=frozenset({"entities", "addresses", "picked"}))
    build_index(folder, settings=settings)
    return settings


def test_a_question_about_now_is_answered_as_of_the_newest_article_and_quotes_the_older(dated: Settings) -> None:
    bot = Assistant(dated)
    evidence = bot.gather("Has China lifted its ban on Japanese seafood imports?")
    labels = {s.file: s.label for s in evidence.sources}
    assert evidence.sources[0].file == "new.txt"  # newest first in the prompt
    model = get_llm(dated)
    assert isinstance(model, QueueChatModel)
    model.reset()
    model.enqueue_choice(labels["new.txt"].lstrip("S"), 0.6)  # the gate: both sources bear on it
    model.enqueue(f"China agreed to resume imports of Japanese seafood [{labels['new.txt']}].")
    model.enqueue_choice("yes", 0.95)
    answer = bot.ask("Has China lifted its ban on Japanese seafood imports?")
    assert not answer.declined, answer.decline_reason
    assert answer.answer.startswith(f"As of 20 December 2024 [{labels['new.txt']}]: ")
    assert "Earlier, in 10 May 2023, an article said" in answer.answer and f"[{labels['old.txt']}]" in answer.answer
    assert {c.file for c in answer.citations} == {"new.txt", "old.txt"}
    assert any("newest article in the folder is from 2024-12-20" in n for n in answer.notes)


def test_an_undated_folder_says_it_cannot_tell_what_is_newest(tmp_path: Path, index_dir: Path) -> None:
    folder = tmp_path / "bbc"
    shutil.copytree(TEST_DATA / "bbc", folder)
    settings = Settings.from_env(environ={}, corpus_dir=str(folder), index_dir=str(index_dir),
                                 embedder="fake:hash", llm="fake:extractive", checks_off=frozenset({"addresses"}))
    build_index(folder, settings=settings)
    bot = Assistant(settings)
    assert any("carry no publication dates" in n for n in bot.staleness_notes())
    answer = bot.ask("Who is the Everton manager now?")
    assert not answer.declined, answer.decline_reason
    assert not answer.answer.startswith("As of")
    assert any("carry no publication dates" in n for n in answer.notes)


def test_a_newer_or_corrected_copy_takes_the_older_copys_slot(tmp_path: Path, index_dir: Path) -> None:
    folder = tmp_path / "copies"
    folder.mkdir()
    story = ("Port officials said the new ferry terminal in Osaka will open to passengers next spring. "
             "The terminal cost 40 billion yen and took three years to build. Ferries to Shanghai and Busan "
             "will use it, and the city expects a million passengers a year.")
    (folder / "a-old.txt").write_text(f"Ferry terminal to open\n\n{story}\n")
    (folder / "b-new.txt").write_text(f"Ferry terminal to open\n\n{story} It will open in April.\n")
    (folder / "c-other.txt").write_text("Rail strike ends\n\nTrain drivers in Leeds ended their strike after a pay deal.\n")
    (folder / "metadata.json").write_text(json.dumps({"files": {"a-old.txt": {"date": "2024-01-05"},
                                                                 "b-new.txt": {"date": "2024-02-01"}}}))
    settings = Settings.from_env(environ={}, corpus_dir=str(folder), index_dir=str(index_dir), embedder="fake:hash")
    build_index(folder, settings=settings)
    hits = [h for h in search("ferry terminal Osaka passengers", settings, k=3) if h.file != "c-other.txt"]
    assert [h.file for h in hits] == ["b-new.txt"] and hits[0].copies == ("a-old.txt",)
    (folder / "metadata.json").unlink()  # undated: the copy marked as corrected wins instead
    (folder / "a-old.txt").write_text(f"Ferry terminal to open\n\nCorrection: the cost was 40 billion yen.\n{story}\n")
    build_index(folder, settings=settings)
    hits = [h for h in search("ferry terminal Osaka passengers cost", settings, k=3) if h.file != "c-other.txt"]
    assert [h.file for h in hits] == ["a-old.txt"]
