"""The curated public API: names in `assistant.__all__` are pinned, and importing the package stays light."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import assistant

PUBLIC = [
    "Answer", "Assistant", "AssistantError", "BackendUnavailableError", "ChatSession", "Citation",
    "ConfigError", "Filters", "IndexLockedError", "IndexNotBuiltError", "IndexReport", "InputError",
    "ModelFileError", "Passage", "Settings", "StoreError", "ask", "build_index", "run_eval", "search",
]
HEAVY = ("torch", "chromadb", "llama_index", "xllamacpp", "sentence_transformers", "transformers", "openai")


def test_all_is_pinned() -> None:
    assert sorted(assistant.__all__) == sorted(PUBLIC)
    assert len(set(assistant.__all__)) == len(assistant.__all__)


def test_the_answering_entry_points_import_from_the_package() -> None:
    from assistant import Answer, Assistant, ask
    from assistant.answering.ask import Assistant as CoreAssistant
    from assistant.answering.ask import ask as core_ask
    from assistant.types import Answer as CoreAnswer

    assert Assistant is CoreAssistant and ask is core_ask and Answer is CoreAnswer
    assert callable(ask) and Assistant.ask and Assistant.stream


def test_every_public_name_resolves() -> None:
    for name in assistant.__all__:
        assert getattr(assistant, name) is not None, name


def test_an_unknown_attribute_is_an_attribute_error() -> None:
    try:
        assistant.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def _modules_after(code: str) -> list[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, env=env, check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_assistant_does_not_import_torch_chromadb_or_llama_index() -> None:
    loaded = _modules_after("import assistant")
    assert [m for m in loaded if m.split(".")[0] in HEAVY] == []


def test_naming_the_public_classes_stays_light_too() -> None:
    loaded = _modules_after("from assistant import Answer, Settings, Citation, Passage, AssistantError")
    assert [m for m in loaded if m.split(".")[0] in HEAVY] == []
