"""Saved web pages and RSS/Atom feeds: article text without boilerplate, page dates, feed items as articles."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from assistant.reading import html_text
from assistant.indexing.build import build_index
from assistant.reading.loaders import SkipFile, load_document, load_documents
from assistant.search.retrieval import search
from assistant.settings import Settings
from assistant.indexing.store import locate, open_collection, read_manifest
from conftest import TEST_DATA

WEB = TEST_DATA / "web"
BRIDGE = WEB / "harbour_bridge.html"
FEED_ITEM = r"local_news\.rss#[0-9a-f]{12}"

BOILERPLATE = (
    "We use cookies", "Accept all", "Manage preferences",  # cookie banner
    "Subscribe from 1 a week", "Weather", "Local news",  # header, navigation, breadcrumbs
    "Share on Facebook", "Share on X", "Copy link",  # share buttons
    "Related stories", "Ring road roadworks", "Container terminal expansion",  # related links
    "Get the morning briefing", "Sign up",  # newsletter form
    "42 comments", "Took them long enough", "see you all at the bakery",  # comments
    "Privacy policy", "All rights reserved", "Contact the newsroom",  # footer
    "dataLayer", "NewsArticle", "Advertisement",  # scripts, JSON-LD, ad slot
)
STORY = (
    "The Alder Harbour bridge reopened to traffic on Thursday morning, six months after engineers found "
    "corroded cables beneath its eastern span.",
    "Council leader Ines Barrow said the repairs had cost 4.2 million pounds",
    "A temporary weight limit of 18 tonnes will remain in place until load tests are completed in May",
    "The harbour ferry, which ran extra sailings while the bridge was shut, will return to its winter "
    "timetable from Monday.",
)


def _load(path: Path, meta: dict[str, str] | None = None) -> Any:
    return load_document(path, path.name, 1_000_000, meta)


def _settings(tmp_path: Path, corpus: Path) -> Settings:
    return Settings.from_env(environ={}, corpus_dir=str(corpus), index_dir=str(tmp_path / "index"),
                             embedder="fake:hash")


def _stored(settings: Settings) -> dict[str, tuple[str, dict[str, Any]]]:
    got = open_collection(locate(settings), create=False).get(include=["documents", "metadatas"])
    return {i: (d, m) for i, d, m in zip(got["ids"], got["documents"], got["metadatas"])}


# --- pages ---------------------------------------------------------------------------------------------

def test_news_page_keeps_the_story_in_paragraphs_and_drops_the_boilerplate() -> None:
    doc = _load(BRIDGE)
    assert doc.kind == "html"
    for sentence in STORY:
        assert sentence in doc.text, sentence
    for chrome in BOILERPLATE:
        assert chrome not in doc.text, chrome
    paragraphs = doc.text.split("\n\n")
    assert paragraphs[0] == "Alder Harbour bridge reopens after six-month repair"
    assert "Weight limit stays for now" in paragraphs  # a subheading is a paragraph of its own
    assert all(p.strip() == p and "\n" not in p for p in paragraphs)


def test_title_and_publication_date_come_from_the_page() -> None:
    doc = _load(BRIDGE)
    assert doc.title == "Alder Harbour bridge reopens after six-month repair"  # og:title, not "... | site"
    assert doc.date == "2024-03-14"  # published, not modified (15th) nor a comment's date (16th)


def test_a_date_only_in_a_time_element_is_found_and_a_page_without_one_has_none() -> None:
    ferry = _load(WEB / "ferry_timetable.htm")
    assert ferry.date == "2023-11-02" and ferry.title == "Winter ferry timetable returns on Monday"
    assert "Season tickets bought before November" in ferry.text and "Advertise with us" not in ferry.text
    lighthouse = _load(WEB / "lighthouse_open_day.html")
    assert lighthouse.date == "" and lighthouse.date_epoch == 0
    assert "212 steps of the Gull Point lighthouse" in lighthouse.text and "Privacy" not in lighthouse.text


def test_metadata_json_values_win_over_the_page() -> None:
    doc = _load(BRIDGE, meta={"date": "2024-03-20", "title": "Bridge reopens"})
    assert (doc.date, doc.title) == ("2024-03-20", "Bridge reopens")


def test_the_same_bytes_always_give_the_same_text(tmp_path: Path) -> None:
    copy = tmp_path / "copy.html"
    copy.write_bytes(BRIDGE.read_bytes())
    assert _load(BRIDGE).text == _load(BRIDGE).text == _load(copy).text


def test_hidden_text_never_reaches_the_extracted_text(tmp_path: Path) -> None:
    page = tmp_path / "hidden.html"
    hidden = ('<div style="display:none">HIDDEN-A</div><p hidden>HIDDEN-B</p><span aria-hidden="true">HIDDEN-C</span>'
              '<p style="font-size:0">HIDDEN-D</p><template><p>HIDDEN-E</p></template><noscript>HIDDEN-F</noscript>')
    page.write_text(BRIDGE.read_text(encoding="utf-8").replace("<h2>", hidden + "<h2>"), encoding="utf-8")
    text = _load(page).text
    assert STORY[2] in text
    assert not [m for m in "ABCDEF" if f"HIDDEN-{m}" in text]


def test_when_trafilatura_finds_nothing_the_plain_walk_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    import trafilatura

    monkeypatch.setattr(trafilatura, "bare_extraction", lambda *a, **k: None)
    doc = _load(BRIDGE)
    assert STORY[0] in doc.text and doc.date == "2024-03-14"
    # The walk drops scripts, navigation and footers too, but not a cookie banner or comments.
    for chrome in ("dataLayer", "NewsArticle", "Subscribe from 1 a week", "Related stories", "All rights reserved"):
        assert chrome not in doc.text, chrome


def test_a_page_without_article_text_is_skipped_with_its_reason(tmp_path: Path) -> None:
    page = tmp_path / "empty.html"
    page.write_text("<html><head><title>Home</title><script>var a = 1;</script></head>"
                    "<body><nav><a href='/'>Home</a></nav><footer>Copyright</footer></body></html>")
    with pytest.raises(SkipFile, match="no article text found in the page"):
        _load(page)


def test_a_page_that_is_only_a_web_address_is_not_fetched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import htmldate.utils
    import trafilatura.downloads

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("tried to fetch a URL")

    monkeypatch.setattr(htmldate.utils, "fetch_url", no_network)
    monkeypatch.setattr(trafilatura.downloads, "fetch_url", no_network)
    page = tmp_path / "link.html"
    page.write_text("https://www.coastalherald.example/local/harbour-bridge-reopens")
    try:
        _load(page)
    except SkipFile:
        pass


def test_article_text_returns_text_title_date() -> None:
    text, title, date = html_text.article_text(BRIDGE.read_text(encoding="utf-8"))
    assert STORY[0] in text and title.startswith("Alder Harbour bridge") and date == "2024-03-14"


# --- feeds ---------------------------------------------------------------------------------------------

def test_rss_items_become_articles_with_title_date_link_and_plain_text() -> None:
    docs = load_documents(WEB / "local_news.rss", "local_news.rss", 1_000_000)
    assert [d.title for d in docs] == ["Alder Harbour bridge reopens after six-month repair",
                                       "Quay Street traders count the cost of closure",
                                       "Gull Point lighthouse to open its lamp room"]
    assert [d.date for d in docs] == ["2024-03-14", "2024-03-12", "2024-03-10"]
    assert docs[1].link == "https://www.coastalherald.example/business/quay-street-traders"
    assert all(d.kind == "feed" and d.text.startswith(d.title + "\n\n") for d in docs)
    assert len({d.file for d in docs}) == 3 and all(re.fullmatch(FEED_ITEM, d.file) for d in docs)
    # HTML is stripped (tags, entities and the script), the full content is preferred to the summary.
    assert "corroded cables beneath" in docs[0].text and "<" not in "".join(d.text for d in docs)
    assert "extra ferry sailings had kept some customers coming" in docs[1].text and "alert" not in docs[1].text


def test_atom_entries_take_published_or_else_updated_dates() -> None:
    docs = load_documents(WEB / "council_updates.atom", "news/council_updates.atom", 1_000_000)
    assert [(d.title, d.date) for d in docs] == [("Recycling collections move to Tuesdays", "2024-02-19"),
                                                 ("Harbour car park fees frozen", "2024-01-30")]
    assert all(d.file.startswith("news/council_updates.atom#") for d in docs)
    assert "The council said the freeze would help businesses" in docs[1].text


def test_item_names_are_stable_and_a_single_item_loads_by_name(tmp_path: Path) -> None:
    before = load_documents(WEB / "local_news.rss", "local_news.rss", 1_000_000)
    feed = tmp_path / "local_news.rss"
    feed.write_text(_with_new_item(WEB / "local_news.rss"), encoding="utf-8")
    after = load_documents(feed, "local_news.rss", 1_000_000)
    assert [d.file for d in after][1:] == [d.file for d in before]  # the new item renames none
    item = load_document(tmp_path / before[1].file, before[1].file, 1_000_000)
    assert item == after[2]


@pytest.mark.parametrize(("name", "reason"), [
    ("broken_feed.xml", r"^not an RSS/Atom feed: line 4, column \d+: undefined entity"),
    ("sitemap.xml", r"^not an RSS/Atom feed: no RSS or Atom root element$"),
])
def test_files_that_are_not_feeds_are_skipped_with_the_reason(name: str, reason: str) -> None:
    with pytest.raises(SkipFile, match=reason):
        load_documents(WEB / name, name, 1_000_000)


def test_a_feed_without_items_is_skipped(tmp_path: Path) -> None:
    feed = tmp_path / "empty.rss"
    feed.write_text('<?xml version="1.0"?><rss version="2.0"><channel><title>Nothing yet</title></channel></rss>')
    with pytest.raises(SkipFile, match="feed has no items"):
        load_documents(feed, feed.name, 1_000_000)


# --- indexing ------------------------------------------------------------------------------------------

def _with_new_item(feed: Path) -> str:
    new = """<item>
      <title>Harbour festival returns in June</title>
      <link>https://www.coastalherald.example/local/harbour-festival</link>
      <guid isPermaLink="false">coastalherald-2024-0316-festival</guid>
      <pubDate>Sat, 16 Mar 2024 11:00:00 +0000</pubDate>
      <description>The harbour festival, with its tall ships and seafood market, returns on the second weekend of June.</description>
    </item>
    <item>"""
    return feed.read_text(encoding="utf-8").replace("<item>", new, 1)


def test_the_folder_indexes_with_bad_files_skipped_and_quotes_are_slices_of_the_stored_texts(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(WEB, corpus)
    settings = _settings(tmp_path, corpus)
    report = build_index(corpus, settings=settings)
    skipped = {s.file: s.reason for s in report.skipped}
    assert set(skipped) == {"broken_feed.xml", "sitemap.xml"}
    assert all(r.startswith("not an RSS/Atom feed: ") for r in skipped.values())
    assert report.added == 5  # three pages and two feeds: items are not files
    loc = locate(settings)
    files = read_manifest(loc)["files"]  # type: ignore[index]
    real = {rel for rel, e in files.items() if "part_of" not in e}
    assert real == {"harbour_bridge.html", "ferry_timetable.htm", "lighthouse_open_day.html", "local_news.rss",
                    "council_updates.atom"}
    texts = {name: path for e in files.values() for name, path in (e.get("texts") or {}).items()}
    assert len(texts) == 3 + 3 + 2  # every page and every item has its extracted text stored
    stored = _stored(settings)
    assert report.chunks == len(stored) == sum(len(e["ids"]) for e in files.values())
    for cid, (document, meta) in stored.items():
        text = (loc.root / texts[meta["file"]]).read_text(encoding="utf-8")
        assert text[meta["start"]:meta["end"]] == document, cid
        assert files[meta["file"]]["hash"] == meta["file_hash"]  # what retrieval checks
        assert cid in files[meta["file"]]["ids"]
    assert _load(corpus / "harbour_bridge.html").text == (loc.root / texts["harbour_bridge.html"]).read_text("utf-8")


def test_feed_lifecycle_add_item_then_remove_feed(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(WEB / "lighthouse_open_day.html", corpus)
    feed = corpus / "local_news.rss"
    shutil.copy(WEB / "local_news.rss", feed)
    settings = _settings(tmp_path, corpus)
    loc = locate(settings)

    first = build_index(corpus, settings=settings)
    assert (first.added, first.removed) == (2, 0)
    files = read_manifest(loc)["files"]  # type: ignore[index]
    items = files["local_news.rss"]["items"]
    assert len(items) == 3 and files["local_news.rss"]["ids"] == []
    assert all(files[name]["part_of"] == "local_news.rss" for name in items)
    old_ids = {name: files[name]["ids"] for name in items}
    assert set(items) <= {m["file"] for _, m in _stored(settings).values()}

    feed.write_text(_with_new_item(WEB / "local_news.rss"), encoding="utf-8")
    second = build_index(corpus, settings=settings)
    assert (second.added, second.updated, second.removed, second.unchanged) == (0, 1, 0, 1)
    files = read_manifest(loc)["files"]  # type: ignore[index]
    new_items = files["local_news.rss"]["items"]
    assert len(new_items) == 4 and set(items) < set(new_items)
    assert {name: files[name]["ids"] for name in items} == old_ids  # old items keep their chunk ids
    by_file = {m["file"]: m for _, m in _stored(settings).values()}
    (added,) = set(new_items) - set(items)
    assert by_file[added]["link"] == "https://www.coastalherald.example/local/harbour-festival"
    assert by_file[added]["title"] == "Harbour festival returns in June" and by_file[added]["date"] == "2024-03-16"
    hits = search("tall ships seafood market festival", settings, k=3)
    assert hits and hits[0].file == added

    feed.unlink()
    third = build_index(corpus, settings=settings)
    assert (third.removed, third.unchanged) == (1, 1)
    files = read_manifest(loc)["files"]  # type: ignore[index]
    assert list(files) == ["lighthouse_open_day.html"]
    assert {m["file"] for _, m in _stored(settings).values()} == {"lighthouse_open_day.html"}
    assert sorted(p.name for p in (loc.root / "texts").iterdir()) == \
        [Path(files["lighthouse_open_day.html"]["texts"]["lighthouse_open_day.html"]).name]


def test_search_returns_a_feed_item_under_its_item_name(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(WEB, corpus)
    settings = _settings(tmp_path, corpus)
    build_index(corpus, settings=settings)
    hits = search("Quay Street traders survey traders' association", settings, k=5)
    feed_hits = [h for h in hits if h.file.startswith("local_news.rss#")]
    assert feed_hits and re.fullmatch(FEED_ITEM, feed_hits[0].file)
    assert feed_hits[0].title == "Quay Street traders count the cost of closure" and feed_hits[0].date == "2024-03-12"
    item = load_document(corpus / feed_hits[0].file, feed_hits[0].file, settings.index.max_file_bytes)
    assert item.text[feed_hits[0].start:feed_hits[0].end] == feed_hits[0].text


def test_a_feed_that_turns_bad_keeps_its_items(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    feed = corpus / "local_news.rss"
    shutil.copy(WEB / "local_news.rss", feed)
    settings = _settings(tmp_path, corpus)
    build_index(corpus, settings=settings)
    before = read_manifest(locate(settings))["files"]  # type: ignore[index]
    feed.write_bytes((WEB / "broken_feed.xml").read_bytes())
    report = build_index(corpus, settings=settings)
    assert [s.file for s in report.skipped] == ["local_news.rss"]
    assert "previous version kept" in report.skipped[0].reason and report.removed == 0
    assert read_manifest(locate(settings))["files"] == before  # type: ignore[index]


def test_a_file_filter_on_a_feed_covers_its_items(tmp_path: Path) -> None:
    from assistant.search.retrieval import Filters

    corpus = tmp_path / "corpus"
    shutil.copytree(WEB, corpus)
    settings = _settings(tmp_path, corpus)
    build_index(corpus, settings=settings)
    hits = search("Quay Street traders", settings, k=5, filters=Filters(files=("local_news.rss",)))
    assert hits and all(h.file.startswith("local_news.rss#") for h in hits)
