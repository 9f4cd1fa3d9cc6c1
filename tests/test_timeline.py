"""`assistant timeline`: dated events in order, event date apart from article date, planned apart
from happened, each event a verbatim cited sentence."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from assistant.answering.ask import Assistant
from assistant.news.timeline import build_timeline
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


def timeline_of(settings: Settings, topic: str, **kw: str):  # type: ignore[no-untyped-def]
    """The timeline as the CLI builds it: the Assistant's models handed to build_timeline."""
    bot = Assistant(settings)
    return build_timeline(bot.retriever, bot.llm, topic, **kw)


def test_a_timeline_orders_cited_events_and_keeps_planned_apart_from_happened(sample: Settings, corpus: Path) -> None:
    timeline = timeline_of(sample, TOPIC)
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
    events = timeline_of(sample, TOPIC, since="2023-01-01", until="2023-06-30").events
    # A month or day inside the range; a year-precision event ("later this year" in a 2023 article)
    # overlaps it.
    assert events and all("2023-01" <= e.date[:7] <= "2023-06" or e.date == "2023" for e in events)
    with pytest.raises(Exception, match="not a date"):
        timeline_of(sample, TOPIC, since="soon")


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
    timeline = timeline_of(settings, "TimeWarner results profits")
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


def test_an_undated_article_gets_its_year_from_this_year_or_next_year_beside_a_year() -> None:
    from assistant.news.timeline import infer_year

    # The sample articles' own words (read as a plain folder, they carry no date).
    assert infer_year(["Qin Gang is expected to visit Japan later this year as 2023 marks the 45th anniversary "
                       "of the treaty.", "The ministers met on April 2."]) == "2023"
    assert infer_year(["Wang Yi is set to visit Japan next year for the dialogue, which will be held in 2025."]) == "2024"
    assert infer_year(["Beijing is eager to make this year's 45th anniversary of the signing of the 1978 "
                       "treaty an opportunity."]) == "2023"
    assert infer_year(["The treaty was signed in 1978.", "They met in December 2019."]) == ""  # no anchor: unknown
    # The year most sentences give wins.
    assert infer_year(["Sales rose this year, to 2004's record.", "Last year, in 2003, they fell.",
                       "This year 2004 looks better."]) == "2004"


@pytest.mark.parametrize("expression,planned,expected", [
    ("April 1", True, ("2023-04-01", "day")),
    ("December", False, ("2023-12", "month")),
    ("later this year", True, ("2023", "year")),
    ("next year", True, ("2024", "year")),
    ("Wednesday", False, None),  # a weekday needs the article's day
    ("two years", False, None),  # a duration is no date
])
def test_an_article_known_only_to_its_year_places_months_and_relative_years(expression: str, planned: bool,
                                                                            expected: tuple[str, str] | None) -> None:
    assert resolve_date(expression, "2023", planned) == expected


@pytest.mark.parametrize("expression,article,expected", [
    ("later this year", "2023-05", ("2023", "year")),
    ("early next year", "2024-12-25", ("2025", "year")),
    ("last year", "2023-03-31", ("2022", "year")),
])
def test_this_next_and_last_year_are_the_article_year_and_its_neighbours(expression: str, article: str,
                                                                       expected: tuple[str, str]) -> None:
    assert resolve_date(expression, article, planned=False) == expected


def test_the_date_a_sentence_reports_comes_before_a_date_it_mentions_in_passing() -> None:
    from assistant.backends.ner import entities
    from assistant.news.timeline import reported_date

    sentence = ("Hayashi intends to meet his counterpart in Beijing on April 1, the first visit by a Japanese "
                "foreign minister to China since December 2019.")
    dates = [e for e in entities(sentence) if e.label == "DATE"]
    assert [e.text for e in dates] == ["April 1", "December 2019"]
    assert reported_date(sentence, dates)[0].text == "April 1"
    # The date of a relative clause ("who took office in ...") is not what the sentence reports.
    relative = "Qin Gang, who took office in December 2022, met Hayashi in Beijing on April 2."
    dates = [e for e in entities(relative) if e.label == "DATE"]
    assert len(dates) == 2 and reported_date(relative, dates)[0].text.endswith("April 2")
