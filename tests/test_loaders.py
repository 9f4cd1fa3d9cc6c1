"""Loading files: supported types, titles and dates, unreadable files and what the walk sees."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

from assistant.indexing.build import walk_corpus
from assistant.reading.loaders import SkipFile, date_to_epoch, load_document, read_metadata
from conftest import SAMPLE_ARTICLES, TEST_DATA

MIXED = TEST_DATA / "mixed"


def _load(path: Path, max_bytes: int = 1_000_000, meta: dict | None = None):
    return load_document(path, path.name, max_bytes, meta)


def test_walk_is_recursive_with_relative_posix_names(tmp_path: Path) -> None:
    shutil.copytree(MIXED, tmp_path / "c")
    names = [rel for _, rel, reason in walk_corpus(tmp_path / "c") if reason is None]
    assert names == ["report.md", "extra/notes.docx", "extra/photo.png", "extra/scan.pdf", "web/page.html"]


def test_walk_skips_hidden_files_and_the_metadata_file(tmp_path: Path) -> None:
    shutil.copytree(SAMPLE_ARTICLES, tmp_path / "c")
    (tmp_path / "c" / ".DS_Store").write_text("x")
    (tmp_path / "c" / ".git").mkdir()
    (tmp_path / "c" / ".git" / "HEAD.txt").write_text("ref")
    names = [rel for _, rel, _ in walk_corpus(tmp_path / "c")]
    assert names == sorted(p.name for p in SAMPLE_ARTICLES.glob("*.txt"))


def test_symlink_pointing_outside_the_corpus_is_skipped_with_reason(tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("Private notes that must never be indexed.")
    root = tmp_path / "c"
    root.mkdir()
    (root / "a.txt").write_text("An article about talks.")
    (root / "leak.txt").symlink_to(outside)
    (root / "inside.txt").symlink_to(root / "a.txt")
    (root / "linked_dir").symlink_to(tmp_path, target_is_directory=True)
    found = {rel: reason for _, rel, reason in walk_corpus(root)}
    assert found["leak.txt"] == "symlink pointing outside the corpus folder"
    assert found["linked_dir"] == "symlinked folder not followed"
    assert found["a.txt"] is None and found["inside.txt"] is None
    assert not any(rel.startswith("linked_dir/") for rel in found)


def test_walk_does_not_enter_an_excluded_folder(tmp_path: Path) -> None:
    root = tmp_path / "c"
    (root / "index" / "abc").mkdir(parents=True)
    (root / "index" / "abc" / "manifest.txt").write_text("not an article")
    (root / "a.txt").write_text("An article.")
    names = [rel for _, rel, _ in walk_corpus(root, exclude=[root / "index"])]
    assert names == ["a.txt"]


def test_txt_text_is_the_file_itself_with_date_from_metadata() -> None:
    path = SAMPLE_ARTICLES / "003_f17476cd56e4653e.txt"
    meta = read_metadata(SAMPLE_ARTICLES)[path.name]
    doc = _load(path, meta=meta)
    assert doc.text == path.read_bytes().decode("utf-8")
    assert doc.kind == "txt" and doc.date == "2024-12-25"
    assert doc.date_epoch == date_to_epoch("2024-12-25") > 0


def test_partial_metadata_dates_become_the_first_day_of_the_period() -> None:
    assert date_to_epoch("2023-05") == date_to_epoch("2023-05-01")
    assert date_to_epoch("2024") == date_to_epoch("2024-01-01")
    assert date_to_epoch("") == 0 and date_to_epoch("soon") == 0


def test_dateline_in_the_text_gives_the_publication_date(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("Published: Dec. 25, 2024\n\nChina and Japan agreed to talk. A date in 2019 is not it.\n")
    assert _load(path).date == "2024-12-25"
    path.write_text("China and Japan agreed on December 3, 2024 to talk.\n")
    assert _load(path).date == ""  # a date inside the story is not a dateline


def test_markdown_front_matter_gives_title_and_date() -> None:
    doc = _load(MIXED / "report.md")
    assert doc.kind == "md"
    assert doc.title == "Coast guard talks resume" and doc.date == "2024-03-14"


def test_html_keeps_the_article_and_drops_scripts_navigation_and_hidden_parts() -> None:
    doc = _load(MIXED / "web" / "page.html")
    assert doc.kind == "html"
    assert doc.title == "Panda loan extended for ten years"
    assert doc.date == "2024-06-02"
    assert "giant pandas will stay for another ten years" in doc.text
    for dropped in ("TRACKING_SCRIPT_TEXT", "STYLE_RULE_TEXT", "NAVIGATION_MENU_TEXT", "SITE_HEADER_TEXT",
                    "HIDDEN_STYLE_TEXT", "HIDDEN_ATTRIBUTE_TEXT", "ARIA_HIDDEN_TEXT", "HTML_COMMENT_TEXT",
                    "SIDEBAR_TEXT", "FOOTER_TEXT", "INLINE_SCRIPT_TEXT"):
        assert dropped not in doc.text, dropped


def test_html_text_written_straight_into_a_div_is_kept() -> None:
    doc = _load(MIXED / "web" / "page.html")
    assert "the oldest panda, a female born in 2000, is in good health." in doc.text
    assert "Visitor numbers doubled after the announcement." in doc.text
    # The article's own headline (inside <article><header>) is part of the text.
    assert doc.text.startswith("Panda loan extended for ten years")


def test_html_date_in_words_is_normalised(tmp_path: Path) -> None:
    path = tmp_path / "p.html"
    path.write_text('<html><head><meta name="date" content="Dec 25, 2024"></head>'
                    "<body><p>China and Japan agreed to talk.</p></body></html>")
    assert _load(path).date == "2024-12-25"


def test_pdf_text_and_title_are_extracted() -> None:
    doc = _load(MIXED / "extra" / "scan.pdf")
    assert doc.kind == "pdf" and doc.title == "Joint seawater testing"
    assert "Fisheries ministers from Tokyo and Beijing met in Dalian." in doc.text


def test_windows_1252_text_is_read(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes("The minister\u2019s visit to Beijing went well, officials said.".encode("cp1252"))
    assert "minister\u2019s visit" in _load(path).text


@pytest.mark.parametrize(("content", "reason"), [
    (b"", "empty file"),
    (b"  \n\n \t\n", "empty file"),
    (b"\x7fELF\x02\x01\x01\x00\x00\x00" + bytes(range(256)) * 4, "binary content"),
    (bytes(range(128, 256)) * 40, "not valid UTF-8"),
    ("Plain text ".encode() + bytes(range(1, 9)) * 30, "too many control characters"),
])
def test_unreadable_text_files_are_refused_with_a_reason(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "article.txt"
    path.write_bytes(content)
    with pytest.raises(SkipFile, match=reason):
        _load(path)


def test_file_over_the_size_limit_is_refused_naming_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_text("A sentence about talks. " * 100)
    with pytest.raises(SkipFile, match=r"larger than the size limit .*ASSISTANT_MAX_FILE_BYTES"):
        _load(path, max_bytes=1000)


def test_unsupported_type_is_refused_with_its_suffix() -> None:
    with pytest.raises(SkipFile, match=r"unsupported file type '\.png'"):
        _load(MIXED / "extra" / "photo.png")


def test_broken_pdf_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"%PDF-1.4\nthis is not a real pdf at all\n")
    with pytest.raises(SkipFile, match="PDF"):
        _load(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_named_txt_is_skipped_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    outcome: list[str] = []

    def load() -> None:
        try:
            _load(fifo)
        except SkipFile as exc:
            outcome.append(str(exc))

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(5)
    if worker.is_alive():  # unblock the reader so the thread can end
        with open(fifo, "w"):
            pass
    assert outcome == ["not a regular file"]


def test_a_wire_dateline_gives_the_publication_date_and_a_story_date_does_not(tmp_path: Path) -> None:
    path = tmp_path / "wire.txt"
    path.write_text("Japan, China meet\n\nBEIJING, April 2, 2023 (Reuters) - The ministers met on Sunday.\n")
    assert _load(path).date == "2023-04-02"
    path.write_text("Davis Cup\n\nLONDON, 5 March 2005 - Spain won.\n")
    assert _load(path).date == "2005-03-05"
    # A BBC-style file states no date: the story's own dates are not its publication date.
    path.write_text("Claxton hunting first major medal\n\nThe championships take place on 5-6 March 2005.\n")
    assert _load(path).date == ""
