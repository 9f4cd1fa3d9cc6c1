"""`assistant timeline`: dated events in order, event date apart from article date, planned apart
from happened, each event a verbatim cited sentence."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from assistant.answering.ask import Assistant
from assistant.interfaces.cli import app
from assistant.indexing.build import build_index
from assistant.settings import Settings
from assistant.news.timeline import placeable, resolve_date
from conftest import TEST_DATA

runner = CliRunner()
TOPIC = "Hayashi Qin Gang meeting visit Beijing"


@pytest.mark.parametrize("expression, article, planned, expected", [
    ("April 2", "2023-05", False, ("2023-04-02", "day")),  # an article dated only to its month
    ("April 1", "2023-03-31", True, ("2023-04-01", "day")),
    ("November", "2023-03-31", False, ("2022-11", "month")),  # the closest November: the one before
    ("May", "2023-03-31", False, ("2023-05", "month")),  # the closest May: the one after
    ("last month", "2023-05-10", False, ("2023-04", "month")),
    ("Friday", "2023-03-31", False, ("2023-03-31", "day")),  # the article's own weekday
    ("Wednesday", "2024-12-27", False, ("2024-12-25", "day")),
    ("Monday", "2023-05-12", True, ("2023-05-15", "day")),  # planned: the next one
    ("next year", "2023-05-10", True, ("2024", "year")),
    ("December 2004", "", False, ("2004-12", "month")),  # undated article, but the text names a year
    ("the summer of 2022", "", False, ("2022", "year")),
])
def test_event_dates_are_resolved_against_the_article_date(expression: str, article: str, planned: bool,
                                                           expected: tuple[str, str]) -> None:
    assert resolve_date(expression, article, planned) == expected


def test_what_cannot_be_placed_is_not_guessed() -> None:
    assert resolve_date("April 2", "", False) is None  # no year, no article date
    assert resolve_date("yesterday", "2023-05", False) is None  # article dated only to the month
    assert not placeable("two years", True) and not placeable("Wednesday", False)


@pytest.fixture
def sample(settings: Settings, corpus: Path) -> Settings:
    build_index(corpus, settings=settings)
    return settings.with_(llm="fake:extractive")


def test_a_timeline_orders_cited_events_and_keeps_planned_apart_from_happened(sample: Settings, corpus: Path) -> None:
    timeline = Assistant(sample).timeline(TOPIC)
    events = timeline.events
    assert events and [e.start for e in events] == sorted(e.start for e in events)
    for e in events:
        for c in e.citations:
            assert (corpus / c.file).read_text(encoding="utf-8")[c.start:c.end] == c.quote
            assert " ".join(c.quote.split()) == e.event or c is not e.citations[0]
    # "During their meeting on April 2" in an article of May 2023, and "intends to meet ... on April 1"
    # in one of 31 March 2023: two events, each with its own date (the status comes from the model;
    # the fake calls a sentence planned when it speaks of intentions).
    met = next(e for e in events if e.date == "2023-04-02")
    assert met.citations[0].file.startswith("000_") and met.article_date == "2023-05"
    planned = next(e for e in events if e.date == "2023-04-01")
    assert planned.status == "planned" and planned.citations[0].file.startswith("001_")
    assert planned.article_date == "2023-03-31"


def test_since_and_until_apply_to_event_dates(sample: Settings) -> None:
    events = Assistant(sample).timeline(TOPIC, since="2023-01-01", until="2023-06-30").events
    assert events and all("2023-01" <= e.date[:7] <= "2023-06" for e in events)
    with pytest.raises(Exception, match="not a date"):
        Assistant(sample).timeline(TOPIC, since="soon")


def test_timeline_json_from_the_cli(cli_env: pytest.MonkeyPatch) -> None:
    cli_env.setenv("ASSISTANT_LLM", "fake:extractive")
    result = runner.invoke(app, ["timeline", TOPIC, "--json"])
    assert result.exit_code == 0, result.output
    events = json.loads(result.stdout)
    assert events and set(events[0]) >= {"date", "precision", "event", "citations"}
    assert all(c["quote"] and c["end"] > c["start"] for e in events for c in e["citations"])
    human = runner.invoke(app, ["timeline", TOPIC])
    assert "2023-04-02" in human.output and "(planned)" in human.output


def test_an_undated_folder_places_only_events_that_name_their_year(tmp_path: Path, index_dir: Path) -> None:
    folder = tmp_path / "bbc"
    shutil.copytree(TEST_DATA / "bbc", folder)
    settings = Settings.from_env(environ={}, corpus_dir=str(folder), index_dir=str(index_dir),
                                 embedder="fake:hash", llm="fake:extractive")
    build_index(folder, settings=settings)
    timeline = Assistant(settings).timeline("TimeWarner results profits")
    assert timeline.events and all(e.article_date == "" for e in timeline.events)
    assert {e.date for e in timeline.events} >= {"2003", "2005"}  # the years the article names
    assert all(e.precision == "year" or e.date_text[-4:].isdigit() for e in timeline.events)
    # "the three months to December" and the like: no year, no publication date, so not placed.
    assert any("could not be placed" in n for n in timeline.notes)


def test_timeline_scoring_matches_by_meaning_and_dates_at_the_gold_precision() -> None:
    from assistant.backends.fakes import FakeEmbedder
    from assistant.evaluate.timelines import Predicted, date_right, parse_listing, score

    assert date_right("2023-04-02", "2023-04") and not date_right("2023", "2023-04-02")
    gold = [{"date": "2023-04-02", "precision": "day", "event": "Hayashi met Qin Gang in Beijing.",
             "evidence": [{"file": "000.txt", "quote": "During their meeting on April 2, Hayashi asked Qin to visit Japan"}]},
            {"date": "2025", "precision": "year", "event": "Wang Yi is to visit Japan.", "evidence": []}]
    predicted = [Predicted("2023-04-02", "During their meeting on April 2, Hayashi asked Qin to visit Japan."),
                 Predicted("2024", "Wang Yi is to visit Japan."),
                 Predicted("2019", "The economic dialogue was last held in 2019.")]
    result = score(predicted, gold, FakeEmbedder().embed)
    assert (result["matched"], result["predicted"], result["gold"]) == (2, 3, 2)
    assert result["precision"] == 2 / 3 and result["recall"] == 1.0 and result["date_accuracy"] == 0.5
    listing = parse_listing("Here are the events:\n- 2023-04-02: Hayashi met Qin.\n2025 – Wang to visit.\nno date here")
    assert [(p.date, p.event) for p in listing] == [("2023-04-02", "Hayashi met Qin."), ("2025", "Wang to visit.")]


def test_eval_timelines_writes_a_report(cli_env: pytest.MonkeyPatch, corpus: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from assistant.evaluate import timelines

    monkeypatch.setitem(timelines.CORPORA, "sample", corpus)
    gold = tmp_path / "gold.jsonl"
    gold.write_text(json.dumps({"id": "tl-test", "corpus": "sample", "topic": TOPIC, "events": [
        {"date": "2023-04-02", "precision": "day", "event": "Hayashi and Qin met in Beijing.", "status": "happened",
         "evidence": [{"file": "000_ab41fa749cc5eede.txt",
                       "quote": "During their meeting on April 2, Hayashi asked Qin to visit Japan"}]}]}) + "\n")
    cli_env.setenv("ASSISTANT_LLM", "fake:extractive")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["eval", "--timelines", str(gold)])
    assert result.exit_code == 0, result.output
    assert "tl-test" in result.output and "recall 1.000" in result.output
    assert list((tmp_path / "evals" / "runs").glob("*_timelines_*/result.json"))
