"""Read the answer prompt's sources back: each file heading ('FILE "HEADLINE", published DATE:') and the
labelled passages under it ("[S1] text"). Fakes and tests use it to see what the model was shown."""

from __future__ import annotations

import re

_HEADING = re.compile(r'^(\S[^\n]*?)(?: "[^\n]*")?(?:, published ([0-9-]+)|, publication date unknown)?:$')
_PASSAGE = re.compile(r"^\[(S\d+)\] (.+)$")


def prompt_sources(prompt: str) -> list[tuple[str, str, str, str]]:
    """(label, file, date or '', text) of every labelled passage, each under its file's heading."""
    lines = prompt.split("\n")
    start = lines.index("Sources:") + 1 if "Sources:" in lines else 0
    found: list[tuple[str, str, str, str]] = []
    file = date = ""
    for line in lines[start:]:
        if not line.strip():
            break
        passage = _PASSAGE.match(line)
        heading = None if passage else _HEADING.match(line)
        if passage:
            assert file, f"passage {passage.group(1)} has no file heading above it"
            found.append((passage.group(1), file, date, passage.group(2)))
        elif heading:
            file, date = heading.group(1), heading.group(2) or ""
    return found
