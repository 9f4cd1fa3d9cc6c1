"""Joining and verifying the local GGUF model shipped as part packages."""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import os
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from assistant.backends import model_files  # noqa: E402
from assistant.backends.model_files import (  # noqa: E402
    KNOWN_MODELS,
    ModelSpec,
    ensure_model_file,
    find_part_files,
    join_parts,
)
from assistant.errors import BackendUnavailableError, ConfigError, ModelFileError  # noqa: E402

PART_BYTES = [b"GGUF" + b"a" * 1000, b"b" * 3000, b"c" * 17]
JOINED_SHA = hashlib.sha256(b"".join(PART_BYTES)).hexdigest()
WRONG_SHA = "0" * 64


def _write_parts(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, data in enumerate(PART_BYTES, start=1):
        path = folder / f"part{i:02d}.bin"
        path.write_bytes(data)
        paths.append(path)
    return paths


@pytest.fixture
def fake_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, list[Path], list[int]]:
    """A known model named 'tiny' whose part discovery returns local files and counts its calls."""
    parts = _write_parts(tmp_path / "parts")
    calls: list[int] = []
    spec = ModelSpec(name="tiny", packages=("tiny-part1", "tiny-part2", "tiny-part3"), version="1.0",
                     sha256=JOINED_SHA)
    monkeypatch.setitem(KNOWN_MODELS, "tiny", spec)

    def fake_find(s: ModelSpec) -> list[Path]:
        calls.append(1)
        return parts

    monkeypatch.setattr(model_files, "find_part_files", fake_find)
    return "tiny", parts, calls


def test_correct_checksum_creates_joined_file_without_temp_leftovers(tmp_path: Path) -> None:
    parts = _write_parts(tmp_path / "parts")
    dest = tmp_path / "out" / "model.gguf"
    assert join_parts(parts, dest, JOINED_SHA) == dest
    assert dest.read_bytes() == b"".join(PART_BYTES)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["model.gguf", "model.gguf.sha256"]


def test_wrong_checksum_is_refused_and_leaves_no_file(tmp_path: Path) -> None:
    parts = _write_parts(tmp_path / "parts")
    dest = tmp_path / "out" / "model.gguf"
    with pytest.raises(ModelFileError) as info:
        join_parts(parts, dest, WRONG_SHA, label="local model 'tiny'", fix="pip install 'assistant[local]'")
    message = str(info.value)
    assert "local model 'tiny' failed its checksum" in message
    assert f"expected sha256 {WRONG_SHA}" in message and f"got {JOINED_SHA}" in message
    assert "pip install 'assistant[local]'" in message
    assert list(dest.parent.iterdir()) == []


def test_ensure_joins_once_and_reuses_the_verified_file(fake_model, tmp_path: Path) -> None:
    name, _, calls = fake_model
    messages: list[str] = []
    path = ensure_model_file(name, tmp_path / "cache", on_message=messages.append)
    assert path == tmp_path / "cache" / "models" / "tiny.gguf"
    assert path.read_bytes() == b"".join(PART_BYTES)
    assert len(calls) == 1
    assert any("Preparing local model tiny" in m and "(one time)" in m for m in messages)
    mtime = path.stat().st_mtime_ns

    messages.clear()
    assert ensure_model_file(name, tmp_path / "cache", on_message=messages.append) == path
    assert len(calls) == 1, "a verified file must not be joined again"
    assert messages == [], "the marker must spare re-hashing an unchanged file"
    assert path.stat().st_mtime_ns == mtime


def test_changed_model_file_is_rehashed_and_rebuilt_when_corrupt(fake_model, tmp_path: Path) -> None:
    name, _, calls = fake_model
    path = ensure_model_file(name, tmp_path / "cache")
    with open(path, "ab") as out:
        out.write(b"junk")
    messages: list[str] = []
    assert ensure_model_file(name, tmp_path / "cache", on_message=messages.append) == path
    assert path.read_bytes() == b"".join(PART_BYTES)
    assert len(calls) == 2
    assert any("Verifying" in m for m in messages)


def test_touched_but_intact_model_file_is_rehashed_not_rejoined(fake_model, tmp_path: Path) -> None:
    name, _, calls = fake_model
    path = ensure_model_file(name, tmp_path / "cache")
    later = time.time() + 10
    os.utime(path, (later, later))
    messages: list[str] = []
    ensure_model_file(name, tmp_path / "cache", on_message=messages.append)
    assert len(calls) == 1
    assert any("Verifying" in m for m in messages)


def test_missing_part_package_names_exactly_the_packages_to_install() -> None:
    spec = ModelSpec(name="ghost", packages=("assistant-test-no-such-part1", "assistant-test-no-such-part2"),
                     version="9.9", sha256=WRONG_SHA)
    with pytest.raises(BackendUnavailableError) as info:
        find_part_files(spec)
    message = str(info.value)
    assert "pip install 'assistant[local]'" in message
    assert "'assistant-test-no-such-part1==9.9' 'assistant-test-no-such-part2==9.9'" in message


def test_unknown_model_name_is_a_config_error_listing_known_models(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        ensure_model_file("llama-9000", tmp_path)
    assert "qwen2.5-coder-1.5b" in str(info.value) and "qwen2.5-coder-0.5b" in str(info.value)


def test_missing_gguf_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        ensure_model_file(str(tmp_path / "nope.gguf"), tmp_path)


def test_existing_gguf_path_is_used_as_is(tmp_path: Path) -> None:
    model = tmp_path / "mine.gguf"
    model.write_bytes(b"GGUF" + b"\0" * 100)
    assert ensure_model_file(str(model), tmp_path / "cache") == model.resolve()
    assert not (tmp_path / "cache").exists()


def test_gguf_path_with_a_bad_header_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "fake.gguf"
    model.write_bytes(b"<html>not a model</html>")
    with pytest.raises(ModelFileError, match="not a GGUF"):
        ensure_model_file(str(model), tmp_path)


def _installed(spec: ModelSpec) -> bool:
    try:
        return all(metadata.version(p) == spec.version for p in spec.packages)
    except metadata.PackageNotFoundError:
        return False


SMALL = KNOWN_MODELS["qwen2.5-coder-0.5b"]


@pytest.mark.skipif(not _installed(SMALL), reason="qwen2.5-coder-0.5b part packages not installed")
def test_real_small_model_parts_are_found_in_order() -> None:
    parts = find_part_files(SMALL)
    assert [p.name for p in parts] == [f"part{i:02d}.bin" for i in range(1, 7)]


@pytest.mark.skipif(not _installed(SMALL), reason="qwen2.5-coder-0.5b part packages not installed")
def test_real_small_model_joins_and_verifies(tmp_path: Path) -> None:
    messages: list[str] = []
    path = ensure_model_file(SMALL.name, tmp_path, on_message=messages.append)
    assert model_files.sha256_file(path) == SMALL.sha256
    assert path.read_bytes()[:4] == b"GGUF"
    assert any("(one time)" in m for m in messages)
    started = time.perf_counter()
    assert ensure_model_file(SMALL.name, tmp_path) == path
    assert time.perf_counter() - started < 1.0, "an unchanged verified file must not be re-hashed"
