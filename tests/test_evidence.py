"""Evidence selection: passages under a token budget, and the recall measure that needs no chat model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import indexed_plain_folder

from assistant.search import evidence
from assistant.answering.ask import Assistant
from assistant.evaluate.dataset import EvalCase
from assistant.evaluate.evidence import case_row, file_texts, measure, summarise
from assistant.search.evidence import Article, Budget, Scored, Sentence, select, sources_of
from assistant.settings import Settings
from assistant.types import Passage

TESTS = Path(__file__).resolve().parent
BBC = TESTS / "data" / "bbc"
SAMPLE = TESTS.parent / "articles"


@pytest.fixture
def bbc(tmp_path: Path, fresh_caches: None) -> Settings:
    return indexed_plain_folder(BBC, tmp_path)


@pytest.fixture
def sample(tmp_path: Path, fresh_caches: None) -> Settings:
    return indexed_plain_folder(SAMPLE, tmp_path)


def _case(cid: str, question: str, answer: str, source: str, evidence_: list[str], kind: str = "single") -> EvalCase:
    return EvalCase(id=cid, question=question, answer=answer, aliases=[], sources=[source], evidence=evidence_,
                    type=kind, answerable=True)


# -- the article text and its sentences -------------------------------------------------------------
def test_overlapping_chunks_stitch_into_the_file_text() -> None:
    text = "One sentence here. Two sentence there. Three is last."
    chunks = [Passage("f.txt", 0, 38, text[0:38], 0.0), Passage("f.txt", 19, 53, text[19:53], 0.0)]
    article = Article.from_chunks(chunks)
    assert article.segments == ((0, text),)
    assert [s.text for s in article.sentences()] == ["One sentence here.", "Two sentence there.", "Three is last."]
    assert article.full_text() == text


def test_a_gap_the_cleaner_removed_is_never_bridged_by_a_passage() -> None:
    text = "Kept first part. Removed block. Kept second part."
    chunks = [Passage("f.txt", 0, 16, text[0:16], 0.0), Passage("f.txt", 32, 49, text[32:49], 0.0)]
    article = Article.from_chunks(chunks)
    sentences = article.sentences()
    items = [Scored(s, score=1.0 - n) for n, s in enumerate(sentences)]
    runs = select(items, {"f.txt": article}, Budget(tokens=100, after=1))
    # Two separate passages: the removed block between them is not stored text.
    assert [[s.text for s in run] for run in runs] == [["Kept first part."], ["Kept second part."]]
    with pytest.raises(ValueError):
        article.text(0, 49)


def _article(n: int) -> Article:
    text = " ".join(f"Sentence number {i} says something." for i in range(n))
    return Article.from_chunks([Passage("a.txt", 0, len(text), text, 0.0, title="Headline")])


def test_each_pick_brings_the_sentence_after_it_and_adjacent_picks_merge() -> None:
    article = _article(10)
    sents = article.sentences()
    items = [Scored(sents[4], score=2.0), Scored(sents[5], score=1.5), Scored(sents[8], score=1.0)]
    runs = select(items, {"a.txt": article}, Budget(tokens=1000, after=1))
    assert [[s.position for s in run] for run in runs] == [[4, 5, 6], [8, 9]]
    sources = sources_of(runs, {"a.txt": article})
    assert [s.label for s in sources] == ["S1", "S2"]
    assert sources[0].text == article.text(sents[4].start, sents[6].end)
    assert sources[0].title == "Headline"


def test_a_long_pick_comes_without_the_sentence_after_it_when_the_pair_passes_the_cap() -> None:
    short = "Nine consulates will close. They include Dallas and Boston. Staff will move."
    long = ("The ministers met for three hours in the capital on Sunday and discussed a long list of "
            "matters that had strained relations between the two governments for a year. They agreed on more talks.")
    for text, expected in ((short, [[0, 1]]), (long, [[0]])):
        article = Article.from_chunks([Passage("a.txt", 0, len(text), text, 0.0)])
        sents = article.sentences()
        runs = select([Scored(sents[0], score=1.0)], {"a.txt": article}, Budget(tokens=1000, after=1, after_max_tokens=30))
        assert [[s.position for s in run] for run in runs] == expected
        # Without a cap the follower always comes.
        uncapped = select([Scored(sents[0], score=1.0)], {"a.txt": article}, Budget(tokens=1000, after=1))
        assert [[s.position for s in run] for run in uncapped] == [[0, 1]]


def test_the_budget_is_counted_in_tokens_and_the_best_sentence_always_goes_in() -> None:
    article = _article(30)
    sents = article.sentences()
    items = [Scored(s, score=-n) for n, s in enumerate(sents)]
    for budget in (5, 60, 200):
        runs = select(items, {"a.txt": article}, Budget(tokens=budget, after=1))
        spent = sum(evidence.tokens_of(s.text) + 1 for run in runs for s in run)
        assert runs and (spent <= budget or sum(len(r) for r in runs) == 1)
    assert sum(len(r) for r in select(items, {"a.txt": article}, Budget(tokens=200))) > \
        sum(len(r) for r in select(items, {"a.txt": article}, Budget(tokens=60)))


def test_a_second_file_gets_its_best_sentence_in_before_more_of_the_first() -> None:
    first, second = _article(12), Article.from_chunks([Passage("b.txt", 0, 30, "The other half of the answer.", 0.0)])
    a, b = first.sentences(), second.sentences()
    items = [Scored(s, score=5.0 - n * 0.1) for n, s in enumerate(a)] + [Scored(b[0], score=4.0)]
    items.sort(key=lambda i: -i.score)
    budget = Budget(tokens=50, after=0, new_file_bonus=1.0)
    runs = select(items, {"a.txt": first, "b.txt": second}, budget)
    assert any(run[0].file == "b.txt" for run in runs)
    without = select(items, {"a.txt": first, "b.txt": second}, Budget(tokens=50, after=0))
    assert not any(run[0].file == "b.txt" for run in without)


# -- the recall measure, on both corpora -----------------------------------------------------------
def test_evidence_recall_finds_the_answer_sentence_in_the_prompt_on_the_plain_sample(sample: Settings) -> None:
    sentence = ("The meeting comes as Japan presses for the release of a senior employee of Japanese "
                "pharmaceutical firm Astellas Pharma, detained in Beijing in March on suspicion of engaging in "
                "espionage, putting further strain on bilateral ties.")
    case = _case("s1", "Which company employed the Japanese businessman detained in Beijing?", "Astellas",
                 "001_e2d5a160401ece19.txt", [sentence])
    rows = measure(Assistant(sample), [case])
    assert len(rows) == 1 and rows[0].all_in and rows[0].answer_in
    assert 0 < rows[0].tokens <= sample.evidence.tokens + 120  # the evidence plus headings and question


def test_evidence_recall_counts_a_missing_sentence_as_missing_on_bbc(bbc: Settings) -> None:
    bot = Assistant(bbc)
    question = "How fast did Sarah Claxton run the 60m hurdles?"
    sources = bot.gather(question).sources
    texts = file_texts(bbc.index.corpus_dir, sources)
    shown = next(iter(texts.values()))
    inside = sources[0].text.split(". ")[0]
    outside = "This sentence is not in any article of the folder."
    row = case_row(_case("b1", question, "x", sources[0].file, [inside, outside]), sources, texts)
    assert row.found == 1 and row.any_in and not row.all_in
    assert shown  # the file text the offsets point into was read
    summary = summarise([row])
    assert summary["all_in"] == 0.0 and summary["any_in"] == 1.0 and summary["by_type"]["single"]["n"] == 1


def _one_case_gold(bbc: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A one-case gold file (a BBC headline asked as a question) and the environment naming the index."""
    raw = (BBC / "sport" / "101.txt").read_text(encoding="utf-8")
    first = raw.strip().splitlines()[0]
    data = tmp_path / "gold.jsonl"
    data.write_text(json.dumps({"id": "x1", "question": first + "?", "answer": "x", "sources": ["sport/101.txt"],
                                "evidence": [first], "type": "single", "answerable": True}) + "\n",
                    encoding="utf-8")
    for key, value in {"ASSISTANT_CORPUS": bbc.index.corpus_dir, "ASSISTANT_INDEX_DIR": bbc.index.index_dir,
                       "ASSISTANT_EMBEDDER": bbc.index.embedder, "ASSISTANT_LLM": bbc.model.llm}.items():
        monkeypatch.setenv(key, value)
    return data


def test_the_measure_runs_from_the_command_line_and_writes_its_rows(bbc: Settings, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from assistant.evaluate.evidence import main

    data = _one_case_gold(bbc, tmp_path, monkeypatch)
    out = tmp_path / "recall.json"
    main(["--dataset", str(data), "--set", "evidence_tokens=300", "--out", str(out)])
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written["summary"]["n"] == 1 and len(written["rows"]) == 1
    assert written["rows"][0]["tokens"] > 0


def test_the_heading_names_the_file_its_headline_and_date() -> None:
    from assistant.answering.ask import source_heading
    from assistant.labels import Source

    assert source_heading(Source("S1", "a.txt", 0, 1, "x", date="2024-12-25", title="Talks  resume")) == \
        'a.txt "Talks resume", published 2024-12-25:'
    assert source_heading(Source("S1", "a.txt", 0, 1, "x")) == "a.txt, publication date unknown:"


def test_sentences_are_plain_dataclasses() -> None:
    s = Sentence("a.txt", 0, 5, "Hello", 0)
    assert s.position == 0 and s.file == "a.txt"


def test_the_measure_sweeps_a_setting_into_a_curve(bbc: Settings, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from assistant.evaluate.evidence import main

    data = _one_case_gold(bbc, tmp_path, monkeypatch)
    out = tmp_path / "curve.json"
    main(["--dataset", str(data), "--sweep", "evidence_tokens=60,400", "--out", str(out)])
    curve = json.loads(out.read_text(encoding="utf-8"))["sweep"]
    assert [p["evidence_tokens"] for p in curve] == ["60", "400"]
    assert curve[0]["tokens_median"] < curve[1]["tokens_median"]
