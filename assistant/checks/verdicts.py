"""A verdict: one decision about one answer, with its score and a reason a user can read."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Verdict:
    """The outcome of one check: `passed` False declines (or withholds a sentence, for `supported`)."""

    name: str
    passed: bool
    score: float | None
    reason: str
    # The threshold the score was compared with (None for checks without one).
    threshold: float | None = None
    # For per-sentence checks: the sentence judged.
    subject: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Serialise for `--json` and eval records."""
        out = asdict(self)
        if self.score is not None:
            out["score"] = round(self.score, 4)
        return out
