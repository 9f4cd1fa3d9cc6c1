"""Shared fixtures: a temp copy of the sample corpus, offline settings with a temp index, the CLI."""

from __future__ import annotations

import os

# Offline before anything imports huggingface_hub / transformers.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

import shutil  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Iterator, Sequence  # noqa: E402

import pytest  # noqa: E402

from assistant.settings import Settings  # noqa: E402
from caches import clear_process_caches  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SAMPLE_ARTICLES = REPO / "articles"
TEST_DATA = Path(__file__).resolve().parent / "data"


def _assistant_env_names() -> list[str]:
    return [name for name in os.environ
            if name.startswith("ASSISTANT_") or name in ("OPENAI_API_KEY", "OPENAI_BASE_URL")]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No ASSISTANT_* / OPENAI_* variables from the developer's shell leak into the test."""
    for name in _assistant_env_names():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return monkeypatch


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A writable copy of the five sample articles (and their metadata.json)."""
    target = tmp_path / "articles"
    shutil.copytree(SAMPLE_ARTICLES, target)
    return target


@pytest.fixture
def index_dir(tmp_path: Path) -> Path:
    """A fresh, empty folder for indexes."""
    return tmp_path / "index"


@pytest.fixture
def settings(corpus: Path, index_dir: Path) -> Settings:
    """Offline settings: the word-hashing fake embedder, a temp index, the temp corpus."""
    return Settings.from_env(environ={}, corpus_dir=str(corpus), index_dir=str(index_dir),
                             embedder="fake:hash")


def indexed_plain_folder(src: Path, tmp_path: Path, **settings: Any) -> Settings:
    """A user's folder: a copy of `src` without metadata.json, indexed with the fake embedder
    (fake:extractive model unless `settings` say otherwise)."""
    from assistant.indexing.build import build_index

    corpus = tmp_path / src.name
    shutil.copytree(src, corpus, ignore=shutil.ignore_patterns("metadata.json"))
    s = Settings.from_env(environ={}, corpus_dir=str(corpus), index_dir=str(tmp_path / "index"),
                          **{"embedder": "fake:hash", "llm": "fake:extractive", **settings})
    build_index(s.index.corpus_dir, settings=s)
    return s


def built_sample(tmp_path_factory: pytest.TempPathFactory, name: str) -> Settings:
    """Offline settings (fake embedder, fake:extractive model) over a temp copy of the sample, indexed once."""
    from assistant.indexing.build import build_index

    root = tmp_path_factory.mktemp(name)
    shutil.copytree(SAMPLE_ARTICLES, root / "articles")
    settings = Settings.from_env(environ={}, corpus_dir=str(root / "articles"), index_dir=str(root / "index"),
                                 embedder="fake:hash", llm="fake:extractive")
    build_index(settings.index.corpus_dir, settings=settings)
    return settings


@pytest.fixture
def cli_env(clean_env: pytest.MonkeyPatch, corpus: Path, index_dir: Path) -> pytest.MonkeyPatch:
    """Environment for CLI runs: fake embedder, temp index dir, temp corpus as the default path."""
    clean_env.setenv("ASSISTANT_EMBEDDER", "fake:hash")
    clean_env.setenv("ASSISTANT_INDEX_DIR", str(index_dir))
    clean_env.setenv("ASSISTANT_CORPUS", str(corpus))
    return clean_env


class RecordingEmbedder:
    """The fake:hash embedder, recording every call's batch size (an empty list: nothing embedded)."""

    def __init__(self) -> None:
        from assistant.backends.fakes import FakeEmbedder

        self._inner = FakeEmbedder("hash")
        self.model_id = "fake:hash"
        self.batches: list[int] = []
        self.texts: list[str] = []

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed like fake:hash and remember what was asked."""
        self.batches.append(len(texts))
        self.texts.extend(texts)
        return self._inner.embed(texts)


@pytest.fixture
def recording_embedder() -> RecordingEmbedder:
    """An embedder that records what it is asked, for `build_index(..., embedder=...)` (queries still
    use the settings' fake)."""
    return RecordingEmbedder()


@pytest.fixture
def fresh_caches() -> Iterator[None]:
    """Start and end a test with no cached models, retrievers or Chroma clients."""
    clear_process_caches()
    yield
    clear_process_caches()
