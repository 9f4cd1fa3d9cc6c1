"""Loose label spellings from small models resolve like [S#]; numbers that are not labels stay."""

from __future__ import annotations

import pytest

from assistant.answering.citations import normalize_labels, resolve
from assistant.labels import Source

TEXT = "During their meeting on April 2, Hayashi asked Qin to visit Japan."


@pytest.mark.parametrize("loose, fixed", [
    ("Astellas [Source: S1].", "Astellas [S1]."),
    ("Astellas [Source 2].", "Astellas [S2]."),
    ("Astellas (S3).", "Astellas [S3]."),
    ("Astellas [S1, S2].", "Astellas [S1][S2]."),
])
def test_loose_label_spellings_become_standard_labels(loose: str, fixed: str) -> None:
    assert normalize_labels(loose) == fixed


def test_years_and_bare_numbers_in_brackets_are_not_labels() -> None:
    assert normalize_labels("in (2019) and [1].") == "in (2019) and [1]."


def test_source_colon_label_resolves_to_a_citation_instead_of_a_stray_sentence() -> None:
    src = Source("S1", "000_ab41fa749cc5eede.txt", 0, len(TEXT), TEXT)
    out = resolve(f"{TEXT[:-1]} [Source: S1].", [src])
    assert [c.label for c in out.citations] == ["S1"]
    assert "Source" not in out.text and out.text.endswith("[S1].")
