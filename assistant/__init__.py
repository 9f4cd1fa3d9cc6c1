"""assistant: answers questions about a folder of news articles, citing file and passage."""

from __future__ import annotations

from typing import Any

from .errors import (AssistantError, BackendUnavailableError, ConfigError, IndexLockedError,
                     IndexNotBuiltError, InputError, ModelFileError, StoreError)
from .settings import Settings
from .types import Answer, Citation, IndexReport, Passage

__all__ = [
    "Answer", "Assistant", "AssistantError", "BackendUnavailableError", "ChatSession", "Citation",
    "ConfigError", "Filters", "IndexLockedError", "IndexNotBuiltError", "IndexReport", "InputError",
    "ModelFileError", "Passage", "Settings", "StoreError", "ask", "build_index", "run_eval", "search",
]

# Heavy parts load on first use so `import assistant` (and `assistant --help`) stays fast.
_LAZY = {
    "Assistant": ("answering.ask", "Assistant"),
    "ask": ("answering.ask", "ask"),
    "ChatSession": ("answering.chat", "ChatSession"),
    "build_index": ("indexing.build", "build_index"),
    "search": ("search.retrieval", "search"),
    "Filters": ("search.retrieval", "Filters"),
    "run_eval": ("evaluate.runner", "run_eval"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'assistant' has no attribute {name!r}")
