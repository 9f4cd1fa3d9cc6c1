"""Client-server mode: index into and search a real `chroma run` server (ASSISTANT_CHROMA_URL)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
from typer.testing import CliRunner

from assistant.interfaces.cli import app
from assistant.errors import IndexLockedError, StoreError
from assistant.indexing.build import build_index
from assistant.search.retrieval import search
from assistant.settings import Settings
from assistant.indexing.store import locate, open_collection, read_manifest, server_manifest

HEARTBEAT_TIMEOUT = 60.0


def _chroma_cli() -> str | None:
    beside = Path(sys.executable).parent / "chroma"
    return str(beside) if beside.exists() else shutil.which("chroma")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Chroma server on a free local port, stopped after the module."""
    chroma = _chroma_cli()
    if chroma is None:
        pytest.skip("the `chroma` command is not installed")
    port = _free_port()
    data = tmp_path_factory.mktemp("chroma-server")
    log = (data / "server.log").open("wb")
    server = subprocess.Popen([chroma, "run", "--path", str(data / "db"), "--host", "127.0.0.1",
                               "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + HEARTBEAT_TIMEOUT
        while True:
            if server.poll() is not None:
                pytest.fail(f"chroma server exited: {(data / 'server.log').read_text(errors='replace')[-1000:]}")
            try:
                with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"chroma server gave no heartbeat within {HEARTBEAT_TIMEOUT:.0f}s")
            time.sleep(0.2)
        yield url
    finally:
        server.kill()
        server.wait(timeout=30)
        log.close()


def _server_settings(url: str, index_dir: Path, corpus: Path, collection: str) -> Settings:
    # One collection per test: tests share the server, as different users would.
    return Settings.from_env(environ={}, chroma_url=url, index_dir=str(index_dir), corpus_dir=str(corpus),
                             embedder="fake:hash", collection=collection)


def test_index_and_search_through_a_chroma_server(chroma_url: str, corpus: Path, index_dir: Path) -> None:
    settings = _server_settings(chroma_url, index_dir, corpus, "server-basic")
    report = build_index(corpus, settings=settings)
    assert report.added == 5
    remote = open_collection(locate(settings), create=False)
    assert remote.count() == report.chunks
    assert not (Path(report.index_path) / "chroma").exists()  # vectors live on the server
    hits = search("seafood import ban", settings, k=3)
    assert hits[0].file.startswith(("003_", "004_"))
    again = build_index(corpus, settings=settings)
    assert (again.added, again.unchanged, again.chunks) == (0, 5, report.chunks)


def test_changed_and_deleted_files_are_updated_on_the_server(chroma_url: str, corpus: Path,
                                                             index_dir: Path) -> None:
    settings = _server_settings(chroma_url, index_dir, corpus, "server-incremental")
    build_index(corpus, settings=settings)
    (corpus / "002_0c11952fb06d513a.txt").unlink()
    changed = corpus / "003_f17476cd56e4653e.txt"
    changed.write_text(changed.read_text(encoding="utf-8") + "\nA ferry route to Shanghai will reopen.\n",
                       encoding="utf-8")
    report = build_index(corpus, settings=settings)
    assert (report.removed, report.updated, report.unchanged) == (1, 1, 3)
    got = open_collection(locate(settings), create=False).get(include=["metadatas"])
    assert len(got["ids"]) == report.chunks
    assert "002_0c11952fb06d513a.txt" not in {m["file"] for m in got["metadatas"]}


def test_two_index_folders_on_one_server_share_one_index(chroma_url: str, corpus: Path, tmp_path: Path) -> None:
    # Two machines (two index folders) pointing at one `chroma run`: the manifest lives on the
    # server, so the second sees what the first indexed, and later updates, without indexing.
    first = _server_settings(chroma_url, tmp_path / "machine-a", corpus, "server-shared")
    second = _server_settings(chroma_url, tmp_path / "machine-b", corpus, "server-shared")
    report = build_index(corpus, settings=first)
    assert not locate(first).manifest_path.exists()  # no local manifest: the server's is the only one
    assert read_manifest(locate(second))["files"].keys() == read_manifest(locate(first))["files"].keys()
    assert search("seafood import ban", second, k=1)[0].file.startswith(("003_", "004_"))
    (corpus / "panda.txt").write_text("The zoo in Wakayama said its giant pandas will stay ten more years.\n")
    build_index(corpus, settings=first)
    assert search("giant pandas Wakayama zoo", second, k=1)[0].file == "panda.txt"
    # The second machine's re-index of the same folder finds nothing to do.
    again = build_index(corpus, settings=second)
    assert (again.added, again.updated, again.removed, again.unchanged) == (0, 0, 0, 6)
    assert again.chunks == report.chunks + 1


def test_concurrent_indexers_on_one_server_one_fails_clearly(chroma_url: str, corpus: Path, tmp_path: Path) -> None:
    first = _server_settings(chroma_url, tmp_path / "machine-a", corpus, "server-lease")
    second = _server_settings(chroma_url, tmp_path / "machine-b", corpus, "server-lease")
    build_index(corpus, settings=first)
    before = read_manifest(locate(second))
    holder = "pid 1 on machine-a, started now"
    lease = server_manifest(locate(first))
    lease.acquire(holder)
    try:
        (corpus / "panda.txt").write_text("The zoo in Wakayama said its giant pandas will stay ten more years.\n")
        with pytest.raises(IndexLockedError, match="machine-a"):
            build_index(corpus, settings=second)
        assert read_manifest(locate(second))["files"] == before["files"]  # nothing half-written
    finally:
        lease.release(holder)
    assert build_index(corpus, settings=second).added == 1  # once the lease is back, it runs


def test_a_lease_left_by_a_killed_indexer_expires(chroma_url: str, corpus: Path, tmp_path: Path) -> None:
    settings = _server_settings(chroma_url, tmp_path / "machine-a", corpus, "server-stale-lease")
    server_manifest(locate(settings)).acquire("pid 9 on a machine that died", ttl=-1.0)
    assert build_index(corpus, settings=settings).added == 5


def test_cli_uses_assistant_chroma_url(chroma_url: str, corpus: Path, index_dir: Path,
                                       clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ASSISTANT_CHROMA_URL", chroma_url)
    clean_env.setenv("ASSISTANT_EMBEDDER", "fake:hash")
    clean_env.setenv("ASSISTANT_INDEX_DIR", str(index_dir))
    clean_env.setenv("ASSISTANT_COLLECTION", "server-cli")
    runner = CliRunner()
    result = runner.invoke(app, ["index", str(corpus), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["added"] == 5
    result = runner.invoke(app, ["search", "seafood import ban", "--json", "--k", "1"])
    assert json.loads(result.output)[0]["file"].startswith(("003_", "004_"))


def test_server_down_is_a_store_error_naming_the_variable(corpus: Path, index_dir: Path) -> None:
    settings = _server_settings(f"http://127.0.0.1:{_free_port()}", index_dir, corpus, "nobody-home")
    with pytest.raises(StoreError, match="ASSISTANT_CHROMA_URL") as caught:
        build_index(corpus, settings=settings)
    assert "cannot use the Chroma server" in str(caught.value)


def test_server_down_exits_6_from_the_cli(corpus: Path, index_dir: Path, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ASSISTANT_CHROMA_URL", f"http://127.0.0.1:{_free_port()}")
    clean_env.setenv("ASSISTANT_EMBEDDER", "fake:hash")
    clean_env.setenv("ASSISTANT_INDEX_DIR", str(index_dir))
    result = CliRunner().invoke(app, ["index", str(corpus)])
    assert result.exit_code == 6
    assert "ASSISTANT_CHROMA_URL" in result.output and "Traceback" not in result.output


def test_a_single_node_chroma_run_is_probed_for_sparse_bm25_and_bm25s_is_used(
        chroma_url: str, corpus: Path, index_dir: Path) -> None:
    from assistant.indexing import store

    settings = _server_settings(chroma_url, index_dir, corpus, "server-probe")
    build_index(corpus, settings=settings)
    assert store.sparse_supported(locate(settings)) is False  # found by trying, not assumed
    from assistant.backends.cache import CACHE

    client = CACHE.peek("chroma client", (chroma_url,))
    assert "server-probe-" + locate(settings).fingerprint + "-sparse-probe" not in [c.name for c in client.list_collections()]
    assert search("seafood import ban", settings, k=1)[0].file.startswith(("003_", "004_"))


def test_pages_and_feed_items_keep_their_manifest_entries_on_the_server(chroma_url: str, tmp_path: Path) -> None:
    from conftest import TEST_DATA

    folder = tmp_path / "web"
    shutil.copytree(TEST_DATA / "web", folder)
    settings = _server_settings(chroma_url, tmp_path / "machine-a", folder, "server-web")
    build_index(folder, settings=settings)
    files = read_manifest(locate(_server_settings(chroma_url, tmp_path / "machine-b", folder, "server-web")))["files"]
    assert files["local_news.rss"]["items"] and all(files[i]["part_of"] == "local_news.rss"
                                                      for i in files["local_news.rss"]["items"])
    assert files["harbour_bridge.html"]["texts"]
    again = build_index(folder, settings=settings)
    assert again.added == again.updated == again.removed == 0
