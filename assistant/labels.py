"""Citation labels at the bottom layer: "[S3]" in an answer is source S3, option "3" to a gate; a
`Source` is the labelled passage a label stands for."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .dates import date_words

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


@dataclass(frozen=True)
class Source:
    """A labelled passage handed to the model: a verbatim span of one file."""

    label: str
    file: str
    start: int
    end: int
    text: str
    date: str = ""
    title: str = ""

    @property
    def evidence(self) -> str:
        """The text a claim may rest on: the passage plus its publication date in words, and the
        years that "next year", "last year" and "this year" mean for an article of that date."""
        extra = [date_words(self.date)]
        if self.date[:4].isdigit():
            year = int(self.date[:4])
            for word, offset in (("next", 1), ("last", -1), ("this", 0)):
                if re.search(rf"\b{word} year\b", self.text, re.I):
                    extra.append(str(year + offset))
        return " ".join([self.text, *extra]).strip()
