"""Citation labels at the bottom layer: "[S3]" in an answer is source S3, option "3" to a gate."""

from __future__ import annotations

import re

LABEL = re.compile(r"\[S(\d+)\]")


def strip_labels(text: str) -> str:
    """Remove every [S#] label, including one spelled around another ("[S[S1]9]")."""
    while True:
        stripped = LABEL.sub("", text)
        if stripped == text:
            return stripped
        text = stripped


def blank_labels(text: str) -> str:
    """The text with each [S#] label replaced by a space (offsets of the words around them kept apart)."""
    return LABEL.sub(" ", text)


def labels_in(text: str) -> list[str]:
    """The labels a text cites, as "S<n>", once each, in order."""
    return [f"S{n}" for n in dict.fromkeys(LABEL.findall(text))]


def number(label: str) -> str:
    """"S3" -> "3": the option a constrained reply uses for a source."""
    return label[1:] if label[:1] == "S" else label
