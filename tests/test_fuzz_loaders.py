"""Loaders and chunker under fuzzing: bad input never crashes a run and never leaves half a file indexed."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest
from caches import clear_process_caches
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from assistant.indexing.chunking import chunk_text
from assistant.reading.cleaning import keep_spans
from assistant.indexing.build import build_index
from assistant.indexing.files import file_digest, make_chunks
from assistant.reading.loaders import SkipFile, load_document, read_metadata
from assistant.settings import Settings
from assistant.indexing.store import locate, open_collection, read_manifest

SAMPLES = Path(__file__).resolve().parent.parent / "articles"
SUFFIXES = (".txt", ".md", ".html", ".htm", ".pdf")
PROSE = ("Japanese Foreign Minister Yoshimasa Hayashi met Chinese Foreign Minister Qin Gang in Beijing. "
         "They discussed the detained employee of Astellas Pharma and the Group of Seven summit. ")
FUZZ = hsettings(max_examples=40, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(autouse=True, scope="module")
def _fresh_caches() -> Iterator[None]:
    yield
    clear_process_caches()


def assert_index_whole(settings: Settings, corpus: Path) -> dict[str, Any]:
    """Every file the manifest names has all its chunks, each the exact slice of the file's text."""
    loc = locate(settings)
    manifest = read_manifest(loc) or {"files": {}}
    stored = open_collection(loc, create=False).get(include=["documents", "metadatas"])
    by_id = {i: (d, m) for i, d, m in zip(stored["ids"], stored["documents"], stored["metadatas"])}
    metadata = read_metadata(corpus)
    for rel, entry in manifest["files"].items():
        path = corpus / rel
        meta = metadata.get(rel)
        assert file_digest(path, meta) == entry["hash"], f"{rel}: manifest hash is not the file's"
        doc = load_document(path, rel, settings.index.max_file_bytes, meta)
        expected = make_chunks(rel, doc.text, entry["hash"], doc.title, doc.date, settings)
        assert [c.id for c in expected] == entry["ids"], f"{rel}: chunk list differs from a fresh chunking"
        for chunk in expected:
            assert chunk.id in by_id, f"{rel}: chunk {chunk.chunk_no} missing from the store"
            document, stored_meta = by_id[chunk.id]
            assert document == chunk.text == doc.text[chunk.start:chunk.end], f"{rel}: chunk text is not a slice"
            assert stored_meta["file"] == rel and stored_meta["file_hash"] == entry["hash"]
            assert (stored_meta["start"], stored_meta["end"]) == (chunk.start, chunk.end)
    return manifest


# --- strategies ------------------------------------------------------------------------------------

TEXT = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=400)
ENCODINGS = st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "latin-1", "cp1252",
                             "shift_jis", "utf-32"])


@st.composite
def file_bytes(draw: Any) -> bytes:
    """Random bytes, text in odd encodings, mixtures, BOMs, NULs, HTML and PDF look-alikes."""
    kind = draw(st.sampled_from(["binary", "encoded", "mixed", "html", "pdfish", "prose"]))
    if kind == "binary":
        return draw(st.binary(max_size=2000))
    if kind == "encoded":
        text = draw(TEXT) + PROSE * draw(st.integers(0, 3))
        return text.encode(draw(ENCODINGS), errors="replace")
    if kind == "mixed":
        parts = draw(st.lists(st.tuples(TEXT, ENCODINGS), min_size=1, max_size=4))
        return b"".join(t.encode(enc, errors="replace") for t, enc in parts)
    if kind == "html":
        depth = draw(st.integers(0, 300))
        inner = draw(TEXT) + PROSE
        tag = draw(st.sampled_from(["div", "p", "span", "section", "b", "nav"]))
        closed = draw(st.booleans())
        return (f"<html><head><title>{draw(TEXT)}</title></head><body>" + f"<{tag}>" * depth + inner
                + (f"</{tag}>" * depth if closed else "")).encode("utf-8", errors="replace")
    if kind == "pdfish":
        return b"%PDF-1." + draw(st.binary(max_size=1500))
    return (PROSE * draw(st.integers(1, 5)) + draw(TEXT)).encode("utf-8", errors="replace")


# --- loaders -------------------------------------------------------------------------------------------

@FUZZ
@given(raw=file_bytes(), suffix=st.sampled_from(SUFFIXES))
def test_loading_any_bytes_gives_text_or_a_skip_reason(tmp_path_factory: pytest.TempPathFactory, raw: bytes,
                                                       suffix: str) -> None:
    path = tmp_path_factory.mktemp("load") / f"article{suffix}"
    path.write_bytes(raw)
    try:
        doc = load_document(path, path.name, 5_000_000)
    except SkipFile as exc:
        assert str(exc).strip(), "a skip needs a reason"
        return
    assert isinstance(doc.text, str) and doc.text.strip()


# --- chunker -------------------------------------------------------------------------------------------

CHUNK_TEXT = st.lists(st.one_of(
    TEXT,
    st.sampled_from(["\n", "\n\n", "\r\n", "\u2028", "\x0c", " ", ". ", "Mr. ", "U.S. ", "! ", "?\" ", "Advertisement\n"]),
    st.builds(lambda n: "x" * n, st.integers(1, 3000)),
    st.builds(lambda n: "word " * n, st.integers(1, 800)),
), max_size=30).map("".join)


@FUZZ
@given(text=CHUNK_TEXT, size=st.integers(100, 1200), overlap_share=st.floats(0, 0.9))
def test_every_chunk_is_a_verbatim_slice_within_size_and_no_kept_text_is_lost(text: str, size: int,
                                                                              overlap_share: float) -> None:
    overlap = int(size * overlap_share)
    chunks = chunk_text(text, size, overlap)
    covered = bytearray(len(text))
    last_start = -1
    for chunk in chunks:
        assert 0 <= chunk.start < chunk.end <= len(text)
        assert chunk.text == text[chunk.start:chunk.end]
        assert len(chunk.text) <= size
        assert chunk.start >= last_start, "chunks go forward through the text"
        last_start = chunk.start
        covered[chunk.start:chunk.end] = b"\x01" * (chunk.end - chunk.start)
    for start, end in keep_spans(text):
        for i in range(start, end):
            assert covered[i] or text[i].isspace(), f"kept character {text[i]!r} at {i} is in no chunk"


def test_a_one_megabyte_single_line_is_chunked_quickly_and_verbatim() -> None:
    text = ("word " * 210_000).strip()
    chunks = chunk_text(text, 700, 150)
    assert chunks and all(c.text == text[c.start:c.end] and len(c.text) <= 700 for c in chunks)
    assert chunks[-1].end == len(text)


# --- whole indexing runs -----------------------------------------------------------------------------

def _hostile_corpus(root: Path) -> tuple[set[str], set[str]]:
    """Write a corpus of bad and odd files; return (files that must index, files that must be skipped)."""
    root.mkdir()
    shutil.copy(SAMPLES / "000_ab41fa749cc5eede.txt", root / "000_ab41fa749cc5eede.txt")
    good = {"000_ab41fa749cc5eede.txt"}
    files: dict[str, bytes] = {
        "utf16_bom.txt": (PROSE * 3).encode("utf-16"),
        "utf16_be_bom.txt": b"\xfe\xff" + (PROSE * 3).encode("utf-16-be"),
        "latin1.txt": ("Le ministre japonais a rencontré son homologue à Pékin. " + PROSE).encode("latin-1"),
        "one_mb_line.txt": ("Hayashi " * 131_072).encode(),
        "deep_5000.html": ("<html><body>" + "<div>" * 5000 + PROSE + "</div>" * 5000 + "</body></html>").encode(),
        "deep_unclosed.html": ("<html><body>" + "<div><span>" * 5000 + PROSE).encode(),
        "crlf_and_separators.md": ("---\ntitle: T\n---\r\n" + PROSE + "\u2028" + PROSE + "\x0c" + PROSE).encode(),
        "late_nul.txt": (PROSE * 100).encode()[:9000] + b"\x00" + (PROSE * 10).encode(),
    }
    bad: dict[str, bytes] = {
        "random.txt": bytes(range(256)) * 20,
        "utf16_no_bom.txt": (PROSE * 3).encode("utf-16-le"),
        "mixed_encodings.txt": "Tōkyō ".encode() + "café crème ".encode("latin-1") + bytes(range(128, 160)) * 4,
        "controls.txt": b"\x01\x02\x03abc" * 200,
        "empty.md": b"",
        "blank.txt": b" \n\t\n ",
        "broken.pdf": b"%PDF-1.4\n" + bytes(range(256)) * 8,
        "scripts_only.html": b"<html><head><script>var a = 1;</script></head><body><nav>Home</nav></body></html>",
        "photo.png": b"\x89PNG\r\n\x1a\n" + bytes(300),
        "too_big.txt": b"a" * 3_000_000,
    }
    for name, data in {**files, **bad}.items():
        (root / name).write_bytes(data)
    return good | set(files), set(bad)


def test_indexing_hostile_files_completes_reports_each_skip_and_leaves_no_partial_file(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    must_index, must_skip = _hostile_corpus(corpus)
    settings = Settings.from_env(environ={}, corpus_dir=str(corpus), index_dir=str(tmp_path / "idx"),
                                 embedder="fake:hash", max_file_bytes=2_000_000)
    report = build_index(corpus, settings=settings)
    skipped = {s.file: s.reason for s in report.skipped}
    assert set(skipped) == must_skip, skipped
    assert all(reason.strip() for reason in skipped.values())
    manifest = assert_index_whole(settings, corpus)
    assert set(manifest["files"]) == must_index


@pytest.fixture(scope="module")
def fuzz_index(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Path]:
    # One corpus and index for all examples: each example rewrites the corpus, so the runs are
    # incremental (adds, updates and removals under fuzzed input).
    root = tmp_path_factory.mktemp("fuzzidx")
    corpus = root / "corpus"
    corpus.mkdir()
    settings = Settings.from_env(environ={}, corpus_dir=str(corpus), index_dir=str(root / "idx"),
                                 embedder="fake:hash", chunk_size=200, chunk_overlap=40)
    return settings, corpus


NAMES = st.text(alphabet="abcdefghij_-0123456789", min_size=1, max_size=8)


@hsettings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.data_too_large])
@given(files=st.dictionaries(st.tuples(NAMES, st.sampled_from(SUFFIXES)), file_bytes(), min_size=1, max_size=4),
       keep_sample=st.booleans())
def test_fuzzed_corpus_is_indexed_whole_or_skipped_never_in_part(fuzz_index: tuple[Settings, Path],
                                                                 files: dict[tuple[str, str], bytes],
                                                                 keep_sample: bool) -> None:
    settings, corpus = fuzz_index
    for old in corpus.iterdir():
        old.unlink()
    if keep_sample:
        shutil.copy(SAMPLES / "001_e2d5a160401ece19.txt", corpus / "001_e2d5a160401ece19.txt")
    for (stem, suffix), data in files.items():
        (corpus / f"{stem}{suffix}").write_bytes(data)
    report = build_index(corpus, settings=settings)
    manifest = assert_index_whole(settings, corpus)
    skipped = {s.file for s in report.skipped}
    on_disk = {p.name for p in corpus.iterdir()}
    assert set(manifest["files"]) | skipped == on_disk, "a file was neither indexed nor reported skipped"
    assert not set(manifest["files"]) & skipped
    assert report.chunks == sum(len(e["ids"]) for e in manifest["files"].values())
    if keep_sample:
        assert "001_e2d5a160401ece19.txt" in manifest["files"]


def test_file_that_turns_bad_keeps_its_previous_version_searchable(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    article = corpus / "article.txt"
    article.write_text(PROSE * 3, encoding="utf-8")
    settings = Settings.from_env(environ={}, corpus_dir=str(corpus), index_dir=str(tmp_path / "idx"),
                                 embedder="fake:hash")
    build_index(corpus, settings=settings)
    before = read_manifest(locate(settings))["files"]["article.txt"]  # type: ignore[index]
    article.write_bytes(bytes(range(256)) * 10)
    report = build_index(corpus, settings=settings)
    assert any(s.file == "article.txt" and "previous version kept" in s.reason for s in report.skipped)
    manifest = read_manifest(locate(settings)) or {}
    assert manifest["files"]["article.txt"] == before
    stored = open_collection(locate(settings), create=False).get(ids=before["ids"])
    assert sorted(stored["ids"]) == sorted(before["ids"])
