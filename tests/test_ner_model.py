"""The NER model is a third-party upload: its installed files must match the pinned digest."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from assistant.backends import ner
from assistant.errors import ModelFileError


def test_the_installed_ner_package_matches_its_pinned_digest() -> None:
    root = Path(importlib.import_module(ner.PACKAGE).__file__).parent
    assert ner.package_digest(root) == ner.PACKAGE_SHA256


def test_one_changed_byte_changes_the_digest(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights").write_bytes(b"abc")
    before = ner.package_digest(tmp_path)
    (tmp_path / "model" / "weights").write_bytes(b"abd")
    assert ner.package_digest(tmp_path) != before


def test_a_package_that_does_not_match_the_pin_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ner, "PACKAGE_SHA256", "0" * 64)
    with pytest.raises(ModelFileError, match="does not match its pinned hash.*force-reinstall"):
        ner._load()
