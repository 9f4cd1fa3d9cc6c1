"""A verdict: one decision about one answer (the class lives in `assistant.types`, beside the
Answer that carries it)."""

from __future__ import annotations

from ...types import Verdict

__all__ = ["Verdict"]
