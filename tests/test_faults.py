"""Faults: a failing model server, a Chroma server that dies, a killed indexer, a full disk.

Each fault ends in an AssistantError that names what to fix, transient faults are retried, and the
previous index keeps answering.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator

import pytest
from loopback import LoopbackServer, QuietHandler
from prompt_format import prompt_sources

import assistant.indexing.build as indexing
import assistant.indexing.store as store
from assistant.answering.ask import Assistant
from assistant.errors import AssistantError, BackendUnavailableError, StoreError
from assistant.indexing.build import build_index
from assistant.indexing.files import file_digest, make_chunks
from assistant.reading.loaders import load_document, read_metadata
from assistant.search.retrieval import search
from assistant.settings import Settings
from assistant.indexing.store import locate, open_collection, read_manifest

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "articles"
ASTELLAS = "Which pharmaceutical company employed the senior employee detained in Beijing?"
BOUND = 60.0  # seconds any wait in this module may take at most


pytestmark = pytest.mark.usefixtures("fresh_caches")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_index_whole(settings: Settings, corpus: Path) -> dict[str, Any]:
    """Every file the manifest names has all its chunks (exact slices), and nothing else is stored."""
    loc = locate(settings)
    manifest = read_manifest(loc) or {"files": {}}
    stored = open_collection(loc, create=False).get(include=["documents", "metadatas"])
    by_id = {i: (d, m) for i, d, m in zip(stored["ids"], stored["documents"], stored["metadatas"])}
    metadata = read_metadata(corpus)
    for rel, entry in manifest["files"].items():
        meta = metadata.get(rel)
        doc = load_document(corpus / rel, rel, settings.index.max_file_bytes, meta)
        chunks = make_chunks(rel, doc.text, entry["hash"], doc.title, doc.date, settings)
        assert [c.id for c in chunks] == entry["ids"], f"{rel}: chunk list differs"
        for chunk in chunks:
            assert chunk.id in by_id, f"{rel}: chunk {chunk.chunk_no} missing"
            assert by_id[chunk.id][0] == doc.text[chunk.start:chunk.end]
    return manifest


@pytest.fixture(scope="module")
def sample_index(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("faults")
    corpus = root / "articles"
    shutil.copytree(SAMPLES, corpus)
    settings = Settings.from_env(environ={}, corpus_dir=str(corpus), index_dir=str(root / "idx"),
                                 embedder="fake:hash", llm="fake:extractive")
    build_index(corpus, settings=settings)
    return settings


# --- a scripted OpenAI-compatible server on loopback -----------------------------------------------------

def _completion(text: str) -> dict[str, Any]:
    return {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}}


def _extractive(body: dict[str, Any]) -> str:
    """Answer like a decent model: the first source sentence mentioning Astellas, with its label."""
    prompt = body["messages"][-1]["content"]
    for label, _file, _date, text in prompt_sources(prompt):
        for sentence in re.split(r"(?<=[.!?])\s+", text):
            if "Astellas" in sentence:
                return f"{sentence} [{label}]"
    return "NOT_IN_SOURCES"


class ModelServer(LoopbackServer):
    """POST /v1/chat/completions answered by `script(n, body)`: (status, payload) or 'slow' or raw bytes."""

    def __init__(self, script: Callable[[int, dict[str, Any]], Any]) -> None:
        self.script = script
        self.requests = 0
        self.release = threading.Event()
        owner = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                owner.requests += 1
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                reply = owner.script(owner.requests, body)
                if reply == "slow":
                    owner.release.wait(BOUND)  # bounded; released at teardown
                    return
                if reply == "sse-then-drop":
                    # One event, then the connection dies before the promised body is complete.
                    event = json.dumps({"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m",
                                        "choices": [{"index": 0, "delta": {"content": "Astellas"},
                                                     "finish_reason": None}]})
                    data = f"data: {event}\n\n".encode()
                    self.send_response(200)
                    self.send_header("content-type", "text/event-stream")
                    self.send_header("content-length", str(len(data) + 500))
                    self.end_headers()
                    self.wfile.write(data)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if isinstance(reply, bytes):
                    status, data = 200, reply
                else:
                    status, payload = reply
                    data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)


        self.serve(Handler)



def _remote(settings: Settings, url: str, **changes: Any) -> Assistant:
    return Assistant(settings.with_(llm="openai-compatible:m", openai_base_url=url, **changes))


def test_unreachable_model_server_is_a_backend_error_naming_the_url_setting(sample_index: Settings) -> None:
    url = f"http://127.0.0.1:{_free_port()}/v1"  # nothing listens there
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError) as info:
        _remote(sample_index, url, max_retries=1, request_timeout=2.0).ask(ASTELLAS)
    message = str(info.value)
    assert "ASSISTANT_OPENAI_BASE_URL" in message and "127.0.0.1" in message
    assert "cannot reach" in message and "after 2 tries" in message
    assert time.monotonic() - started < BOUND


def test_slow_model_server_times_out_with_a_message_naming_the_timeout_setting(sample_index: Settings) -> None:
    with ModelServer(lambda n, body: "slow") as server:
        with pytest.raises(BackendUnavailableError) as info:
            _remote(sample_index, server.url, max_retries=1, request_timeout=0.5).ask(ASTELLAS)
        assert server.requests == 2, "a timeout is retried once with max_retries=1"
    assert "ASSISTANT_REQUEST_TIMEOUT" in str(info.value) and "0.5 s" in str(info.value)


def test_model_server_failing_with_500_is_retried_then_reported(sample_index: Settings) -> None:
    with ModelServer(lambda n, body: (500, {"error": {"message": "engine exploded"}})) as server:
        with pytest.raises(BackendUnavailableError) as info:
            _remote(sample_index, server.url, max_retries=2).ask(ASTELLAS)
        assert server.requests == 3
    assert "HTTP 500" in str(info.value) and "after 3 tries" in str(info.value)
    assert "engine exploded" in str(info.value)


def test_model_server_503_then_ok_is_retried_and_answers(sample_index: Settings) -> None:
    kinds: list[str] = []

    def script(n: int, body: dict[str, Any]) -> Any:
        # A choose() request asks for log-probabilities; the gate offers NONE, the support check yes/no.
        messages = body["messages"]
        if not body.get("logprobs"):
            kind, reply = "answer", _extractive(body)
        elif "NONE" in messages[-1]["content"]:
            kind = "gate"
            reply = next(label[1:] for label, _f, _d, text in prompt_sources(messages[-2]["content"])
                         if "Astellas" in text)
        else:
            kind, reply = "support", "yes"
        kinds.append(kind)
        if n == 1:
            return 503, {"error": {"message": "loading"}}
        payload = _completion(reply)
        if kind != "answer":
            top = [{"token": reply, "logprob": -0.05, "bytes": None}]
            payload["choices"][0]["logprobs"] = {"content": [{**top[0], "top_logprobs": top}]}
        return 200, payload

    with ModelServer(script) as server:
        answer = _remote(sample_index, server.url, max_retries=2).ask(ASTELLAS)
        # Four requests: the gate (503), the gate retried, the answer, and one support check for the
        # answer's single cited sentence.
        assert server.requests == 4
    assert kinds == ["gate", "gate", "answer", "support"]
    assert not answer.declined and "Astellas" in answer.answer
    assert {c.file for c in answer.citations} <= set(os.listdir(sample_index.index.corpus_dir))
    assert [(v.name, v.passed) for v in answer.verdicts if v.name in ("answerable", "supported")] == \
        [("answerable", True), ("supported", True)]


def test_model_server_stream_failure_is_a_backend_error(sample_index: Settings) -> None:
    with ModelServer(lambda n, body: (500, {"error": {"message": "stream broke"}})) as server:
        with pytest.raises(BackendUnavailableError, match="ASSISTANT_OPENAI_BASE_URL"):
            list(_remote(sample_index, server.url, max_retries=0).stream(ASTELLAS))
        assert server.requests == 1


def test_model_server_dropping_the_connection_mid_stream_is_a_backend_error(sample_index: Settings) -> None:
    with ModelServer(lambda n, body: "sse-then-drop") as server:
        with pytest.raises(BackendUnavailableError, match="ASSISTANT_OPENAI_BASE_URL"):
            list(_remote(sample_index, server.url, max_retries=0).stream(ASTELLAS))


@pytest.mark.parametrize("reply", [b"this is not json", b'{"unexpected": true}',
                                   json.dumps({"id": "x", "object": "chat.completion", "created": 0,
                                               "model": "m", "choices": []}).encode()],
                         ids=["not-json", "wrong-shape", "no-choices"])
def test_garbage_from_the_model_server_is_an_assistant_error_or_a_decline(sample_index: Settings,
                                                                           reply: bytes) -> None:
    with ModelServer(lambda n, body: reply) as server:
        try:
            answer = _remote(sample_index, server.url, max_retries=0).ask(ASTELLAS)
        except AssistantError as exc:
            assert "ASSISTANT_OPENAI_BASE_URL" in str(exc), str(exc)
            return
    assert answer.declined, "garbage must not become an answer"


# --- a Chroma server that dies mid-run ----------------------------------------------------------------

def _chroma_cli() -> str | None:
    beside = Path(sys.executable).parent / "chroma"
    return str(beside) if beside.exists() else shutil.which("chroma")


class ChromaServer:
    """`chroma run` on a loopback port; start/stop at will, keeping its data folder."""

    def __init__(self, data: Path, port: int) -> None:
        self.data, self.port = data, port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        chroma = _chroma_cli()
        assert chroma is not None
        log = (self.data / "server.log").open("ab")
        self.proc = subprocess.Popen([chroma, "run", "--path", str(self.data / "db"), "--host", "127.0.0.1",
                                      "--port", str(self.port)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + BOUND
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"chroma exited: {(self.data / 'server.log').read_text(errors='replace')[-800:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/v2/heartbeat", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        pytest.fail("chroma server gave no heartbeat in time")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=BOUND)
        self.proc = None


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[ChromaServer]:
    if _chroma_cli() is None:
        pytest.skip("the `chroma` command is not installed")
    server = ChromaServer(tmp_path, _free_port())
    server.start()
    try:
        yield server
    finally:
        server.kill()


def test_chroma_server_down_mid_run_is_a_store_error_naming_the_url_and_recovers_on_restart(
        chroma_server: ChromaServer, tmp_path: Path) -> None:
    corpus = tmp_path / "articles"
    shutil.copytree(SAMPLES, corpus)
    settings = Settings.from_env(environ={}, corpus_dir=str(corpus), index_dir=str(tmp_path / "idx"),
                                 embedder="fake:hash", llm="fake:extractive", chroma_url=chroma_server.url,
                                 collection="faults")
    build_index(corpus, settings=settings)
    assistant = Assistant(settings)
    assert "Astellas" in assistant.ask(ASTELLAS).answer

    chroma_server.kill()
    for attempt in (lambda: assistant.ask(ASTELLAS), lambda: search(ASTELLAS, settings),
                    lambda: build_index(corpus, settings=settings)):
        with pytest.raises(StoreError) as info:
            attempt()
        assert "ASSISTANT_CHROMA_URL" in str(info.value) and chroma_server.url in str(info.value)

    chroma_server.start()
    assert "Astellas" in assistant.ask(ASTELLAS).answer
    assert search(ASTELLAS, settings)


# --- the indexer killed mid-run -------------------------------------------------------------------------

_INDEXER = textwrap.dedent('''
    import os, sys, time
    os.environ["HF_HUB_OFFLINE"] = "1"
    import assistant.indexing.build as indexing
    from assistant.backends.fakes import FakeEmbedder
    from assistant.settings import Settings

    corpus, index_dir, marker, stop_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

    class Stalling(FakeEmbedder):
        """fake:hash that signals, then hangs, on its stop_at-th call (the parent kills us there)."""
        calls = 0

        def embed(self, texts):
            Stalling.calls += 1
            if Stalling.calls == stop_at:
                open(marker, "w").write(str(os.getpid()))
                time.sleep(600)
            return super().embed(texts)

    indexing.get_embedder = lambda settings: Stalling("hash")
    settings = Settings.from_env(environ={}, corpus_dir=corpus, index_dir=index_dir, embedder="fake:hash",
                                 chunk_size=200, chunk_overlap=40)
    report = indexing.build_index(corpus, settings=settings)
    print(report.added, report.chunks)
''')


def test_indexer_killed_mid_run_leaves_the_previous_index_answering_and_a_rerun_completes(tmp_path: Path) -> None:
    corpus = tmp_path / "articles"
    shutil.copytree(SAMPLES, corpus)
    index_dir = tmp_path / "idx"
    script = tmp_path / "indexer.py"
    script.write_text(_INDEXER, encoding="utf-8")
    marker = tmp_path / "stalled"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}
    run = [sys.executable, str(script), str(corpus), str(index_dir), str(marker)]
    # The previous index, built by another process (as a user's earlier run would be).
    first = subprocess.run(run + ["0"], env=env, capture_output=True, text=True, timeout=BOUND * 3)
    assert first.returncode == 0, first.stderr[-2000:]
    # Many new files: several commit groups, so the kill lands after one group is committed.
    for n in range(40):
        src = sorted(SAMPLES.glob("*.txt"))[n % 5]
        # Every sentence marked: a chunk text seen before in the run is not embedded again.
        text = src.read_text(encoding="utf-8").replace(". ", f" (copy {n}). ")
        (corpus / f"copy_{n:02d}.txt").write_text(f"Copy {n}.\n\n" + text, "utf-8")
    proc = subprocess.Popen(run + ["7"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + BOUND * 3
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()[1].decode(errors="replace")[-2000:]
            assert time.monotonic() < deadline, "the indexer never reached the stall point"
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=BOUND)
    assert proc.returncode == -signal.SIGKILL

    settings = Settings.from_env(environ={}, corpus_dir=str(corpus), index_dir=str(index_dir),
                                 embedder="fake:hash", llm="fake:extractive", chunk_size=200, chunk_overlap=40)
    manifest = assert_index_whole(settings, corpus)
    assert {p.name for p in SAMPLES.glob("*.txt")} <= set(manifest["files"])
    assert len(manifest["files"]) < 45, "the kill came too late to test anything"
    answer = Assistant(settings).ask(ASTELLAS)
    assert not answer.declined and "Astellas" in answer.answer

    report = build_index(corpus, settings=settings)  # the lock died with the process
    manifest = assert_index_whole(settings, corpus)
    assert len(manifest["files"]) == 45 and report.chunks == sum(len(e["ids"]) for e in manifest["files"].values())
    stored = open_collection(locate(settings), create=False).get(include=[])["ids"]
    assert sorted(stored) == sorted(i for e in manifest["files"].values() for i in e["ids"]), "orphan chunks"


# --- disk full ---------------------------------------------------------------------------------------

def _disk_full(*args: Any, **kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class _FullCollection:
    """A Chroma collection whose writes fail the way a full disk makes them fail."""

    def __init__(self, inner: Any, error: Exception) -> None:
        self._inner, self._error = inner, error

    def upsert(self, **kwargs: Any) -> None:
        raise self._error

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _changed_corpus(settings: Settings) -> tuple[Path, dict[str, Any]]:
    corpus = Path(settings.index.corpus_dir)
    before = read_manifest(locate(settings)) or {}
    target = corpus / "001_e2d5a160401ece19.txt"
    target.write_text(target.read_text(encoding="utf-8") + "\n\nA late paragraph about the summit in Hiroshima.",
                      encoding="utf-8")
    (corpus / "new_article.txt").write_text("Hayashi and Qin discussed the hotline again. " * 5, encoding="utf-8")
    return corpus, before


@pytest.fixture
def fresh_index(tmp_path: Path) -> Settings:
    corpus = tmp_path / "articles"
    shutil.copytree(SAMPLES, corpus)
    settings = Settings.from_env(environ={}, corpus_dir=str(corpus), index_dir=str(tmp_path / "idx"),
                                 embedder="fake:hash", llm="fake:extractive")
    build_index(corpus, settings=settings)
    return settings


@pytest.mark.parametrize("fault", ["manifest-rename", "manifest-write", "upsert-oserror", "upsert-sqlite"])
def test_disk_full_while_writing_is_a_store_error_and_the_previous_index_still_answers(
        fresh_index: Settings, monkeypatch: pytest.MonkeyPatch, fault: str) -> None:
    settings = fresh_index
    corpus, before = _changed_corpus(settings)
    loc = locate(settings)
    with monkeypatch.context() as patch:
        if fault == "manifest-rename":
            patch.setattr(store, "os", SimpleNamespace(**{**vars(os), "replace": _disk_full}))
        elif fault == "manifest-write":
            patch.setattr(indexing, "write_json_atomic", _disk_full)
        else:
            error: Exception = (OSError(errno.ENOSPC, "No space left on device") if fault == "upsert-oserror"
                                else sqlite3.OperationalError("database or disk is full"))
            real_open = indexing.open_collection
            patch.setattr(indexing, "open_collection",
                          lambda loc, create: _FullCollection(real_open(loc, create), error))
        with pytest.raises(StoreError) as info:
            build_index(corpus, settings=settings)
    message = str(info.value)
    assert "disk full" in message and "previous index is unchanged" in message, message
    assert read_manifest(loc) == before, "the manifest changed although the run failed"
    assert not list(loc.root.glob(".manifest.json.*")), "a temporary manifest was left behind"
    answer = Assistant(settings).ask(ASTELLAS)
    assert not answer.declined and "Astellas" in answer.answer
    assert "new_article.txt" not in {p.file for p in search("hotline Hayashi Qin", settings, k=10)}

    build_index(corpus, settings=settings)  # space is back
    manifest = assert_index_whole(settings, corpus)
    assert "new_article.txt" in manifest["files"]
    assert manifest["files"]["001_e2d5a160401ece19.txt"]["hash"] == file_digest(
        corpus / "001_e2d5a160401ece19.txt", read_metadata(corpus).get("001_e2d5a160401ece19.txt"))
