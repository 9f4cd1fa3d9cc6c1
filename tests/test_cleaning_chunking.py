"""Cleaning keeps article prose only; chunks are sentence-aware, overlapping, verbatim slices."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from assistant.indexing import store
from assistant.indexing.chunking import chunk_text, split_sentences
from assistant.reading.cleaning import clean_text, keep_spans
from assistant.settings import Settings
from conftest import SAMPLE_ARTICLES

NIKKEI = SAMPLE_ARTICLES / "001_e2d5a160401ece19.txt"
BOILERPLATE = [
    "Icon", "Chevron", "Artboard", "Created with Sketch", "Sponsored Content", "commissioned by",
    "Discover the all new Nikkei Asia app", "offline reading", "breaking news alerts",
    "Customize your reading", "Nikkei Asian Review", "Celebrate our next chapter",
    "Free access for everyone", "Find out more",
]


def _read(path: Path) -> str:
    return path.read_bytes().decode("utf-8")


def test_web_boilerplate_of_the_nikkei_article_never_reaches_a_chunk() -> None:
    text = _read(NIKKEI)
    chunks = chunk_text(text, 700, 150)
    assert chunks
    for chunk in chunks:
        for phrase in BOILERPLATE:
            assert phrase.lower() not in chunk.text.lower(), (phrase, chunk.text[:80])
    joined = " ".join(c.text for c in chunks)
    # The story itself survives, first and last paragraphs included.
    assert "Hayashi intends to meet his counterpart in Beijing on April 1" in joined
    assert "second straight year that Hayashi attends a NATO foreign ministerial meeting" in joined


def test_photo_caption_credit_line_is_dropped_but_story_kept() -> None:
    text = _read(SAMPLE_ARTICLES / "000_ab41fa749cc5eede.txt")
    cleaned = clean_text(text)
    assert "Qin Gang. (Kyodo)" not in cleaned
    assert "he is willing to visit Japan" in cleaned


def test_advertisement_slot_between_paragraphs_drops_only_that_line() -> None:
    text = ("The ministers met in Tokyo on Monday.\n\nAdvertisement\n\n"
            "They agreed to meet again in spring.\n\nNo date was set.\n")
    cleaned = clean_text(text)
    assert "Advertisement" not in cleaned
    assert "They agreed to meet again in spring." in cleaned
    assert "No date was set." in cleaned


def test_sponsored_block_is_dropped_until_article_prose_returns() -> None:
    prose = "The talks covered trade, fisheries and security, " * 6
    text = f"Opening paragraph of the story.\n\nSponsored Content\n\nBuy our app now.\n\n{prose.strip()}\n"
    cleaned = clean_text(text)
    assert "Buy our app" not in cleaned and "Sponsored" not in cleaned
    assert "Opening paragraph" in cleaned and "The talks covered trade" in cleaned


def test_markdown_front_matter_is_not_chunked() -> None:
    text = "---\ntitle: A title\ndate: 2024-03-14\n---\n\nThe story starts here. It goes on.\n"
    chunks = chunk_text(text, 200, 50)
    assert [c.text for c in chunks] == ["The story starts here. It goes on."]
    assert text[chunks[0].start:chunks[0].end] == chunks[0].text


def test_keep_spans_never_jump_over_removed_text() -> None:
    text = _read(NIKKEI)
    for start, end in keep_spans(text):
        assert "Sponsored Content" not in text[start:end]
        assert "Icon" not in text[start:end]


@pytest.mark.parametrize("path", sorted(SAMPLE_ARTICLES.glob("*.txt")), ids=lambda p: p.name[:3])
def test_chunks_are_verbatim_slices_within_size(path: Path) -> None:
    text = _read(path)
    chunks = chunk_text(text, 700, 150)
    assert chunks
    for chunk in chunks:
        assert text[chunk.start:chunk.end] == chunk.text
        assert len(chunk.text) <= 700
        assert chunk.text == chunk.text.strip()


def test_chunks_start_and_end_on_sentence_boundaries_and_overlap() -> None:
    text = _read(SAMPLE_ARTICLES / "002_0c11952fb06d513a.txt")
    sentences = split_sentences(text)
    starts = {s.start for s in sentences}
    ends = {s.end for s in sentences}
    chunks = chunk_text(text, 400, 150)
    assert len(chunks) > 3
    for chunk in chunks:
        assert chunk.start in starts and chunk.end in ends
    overlaps = [a.end - b.start for a, b in zip(chunks, chunks[1:]) if b.start < a.end]
    assert overlaps, "neighbouring chunks should share a sentence"
    assert all(0 < o <= 150 for o in overlaps)


def test_chunk_size_setting_changes_the_chunking() -> None:
    text = _read(SAMPLE_ARTICLES / "001_e2d5a160401ece19.txt")
    small, large = chunk_text(text, 300, 50), chunk_text(text, 1500, 50)
    assert len(small) > len(large)
    assert max(len(c.text) for c in small) <= 300


def test_abbreviations_and_initials_do_not_end_sentences() -> None:
    text = "Mr. Hayashi met U.S. officials at 9 a.m. on Friday. Talks went well."
    got = [text[s.start:s.end] for s in split_sentences(text)]
    assert got == ["Mr. Hayashi met U.S. officials at 9 a.m. on Friday.", "Talks went well."]


def test_sentence_longer_than_a_chunk_is_cut_at_whitespace() -> None:
    text = " ".join(f"word{n}" for n in range(400))  # one 'sentence' of ~2,800 characters
    chunks = chunk_text(text, 500, 100)
    assert len(chunks) >= 6
    for chunk in chunks:
        assert len(chunk.text) <= 500 and text[chunk.start:chunk.end] == chunk.text
        assert not chunk.text.startswith(" ") and re.fullmatch(r"[\w ]+", chunk.text)


def test_cleaning_version_is_part_of_the_index_fingerprint(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings.from_env(environ={}, embedder="fake:hash")
    before = store.fingerprint(settings)
    monkeypatch.setattr(store, "CLEANING_VERSION", store.CLEANING_VERSION + "-next")
    assert store.fingerprint(settings) != before


_WORDS = st.sampled_from(["Tokyo", "said", "the", "Mr.", "U.S.", "talks", "on", "Friday", "ban",
                          "“quoted.”", "seafood", "(Kyodo)", "Advertisement", "e.g.", "x"])
_SEPS = st.sampled_from([" ", " ", " ", ". ", "! ", "? ", "\n", "\n\n", "\r\n", "  ", "\t"])


@hsettings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(_WORDS, _SEPS), min_size=0, max_size=300),
       st.integers(min_value=100, max_value=400), st.integers(min_value=0, max_value=99))
def test_any_text_chunks_into_verbatim_bounded_ordered_slices(pairs: list[tuple[str, str]],
                                                               size: int, overlap: int) -> None:
    text = "".join(w + s for w, s in pairs)
    chunks = chunk_text(text, size, overlap)
    for chunk in chunks:
        assert text[chunk.start:chunk.end] == chunk.text
        assert 0 < len(chunk.text) <= size
    assert [c.start for c in chunks] == sorted(c.start for c in chunks)
    # Every kept character is in some chunk (whitespace between chunks aside).
    covered = set()
    for chunk in chunks:
        covered.update(range(chunk.start, chunk.end))
    for start, end in keep_spans(text):
        for n in range(start, end):
            assert n in covered or text[n].isspace(), (n, text[start:end])


def test_answers_are_split_by_the_same_splitter_with_their_labels_kept() -> None:
    from assistant.sentences import answer_sentences

    assert answer_sentences("Claxton won the title [S1]. She won £40,000. [S2]") == [
        "Claxton won the title [S1].", "She won £40,000. [S2]"]
    # Another engine's labels stay with their sentence; a figure opening a sentence starts a new one;
    # an abbreviation does not end one; a list item's number stays with its item.
    assert answer_sentences("Sales rose. [2] 150,000 tickets went. [Source 1, Source 2]") == [
        "Sales rose. [2]", "150,000 tickets went. [Source 1, Source 2]"]
    assert answer_sentences("He was ambassador to the U.S. before 2023 [S3].") == [
        "He was ambassador to the U.S. before 2023 [S3]."]
    assert answer_sentences("1. **Qin Gang** - minister\n2. **Wang Wenbin** - spokesman") == [
        "1. **Qin Gang** - minister", "2. **Wang Wenbin** - spokesman"]
