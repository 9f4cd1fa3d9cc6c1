"""Settings are frozen groups; every key keeps its environment name; code reads through the groups."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from assistant.backends import get_llm
from assistant.backends.cache import CACHE
from assistant.search.retrieval import get_retriever
from assistant.settings import GROUPS, KEYS, Settings

PACKAGE = Path(__file__).resolve().parent.parent / "assistant"


def test_every_key_belongs_to_one_group_and_keeps_its_environment_name() -> None:
    names = Settings.env_names()
    assert set(names) == set(KEYS) and len(KEYS) == sum(len(dataclasses.fields(g)) for g in GROUPS.values())
    # The names users already set, unchanged by the grouping.
    assert names["evidence_tokens"] == "ASSISTANT_EVIDENCE_TOKENS" and KEYS["evidence_tokens"] == ("evidence", "tokens")
    assert names["top_k"] == "ASSISTANT_TOP_K" and KEYS["top_k"] == ("retrieval", "top_k")
    assert names["server_queue_max"] == "ASSISTANT_SERVER_QUEUE_MAX" and KEYS["server_queue_max"] == ("server", "queue_max")
    assert names["corpus_dir"] == "ASSISTANT_CORPUS" and names["n_threads"] == "ASSISTANT_THREADS"
    assert names["openai_api_key"] == "OPENAI_API_KEY"


def test_the_environment_and_overrides_land_in_their_groups() -> None:
    s = Settings.from_env({"ASSISTANT_EVIDENCE_TOKENS": "450", "ASSISTANT_TOP_K": "7", "ASSISTANT_CHECKS_OFF": "numbers",
                           "ASSISTANT_SERVER_QUEUE_MAX": "9"}, gate_none_max=0.4)
    assert (s.evidence.tokens, s.retrieval.top_k, s.server.queue_max, s.checks.gate_none_max) == (450, 7, 9, 0.4)
    assert s.checks.checks_off == frozenset({"numbers"})
    # The flat key still reads, for callers of the Python API.
    assert s.evidence_tokens == 450 and s.top_k == 7
    with pytest.raises(AttributeError):
        _ = s.no_such_setting


def test_groups_are_frozen_and_with_changes_only_the_named_keys() -> None:
    s = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.evidence.tokens = 1  # type: ignore[misc]
    t = s.with_(evidence_tokens=300, top_k=None)
    assert t.evidence.tokens == 300 and s.evidence.tokens == 600
    assert t.retrieval is s.retrieval and t.model is s.model  # untouched groups are shared
    with pytest.raises(TypeError, match="unknown setting"):
        s.with_(evidence_budget=3)


def test_run_folders_get_every_key_flat_and_no_secret() -> None:
    s = Settings().with_(openai_api_key="sk-secret", server_token="tok")
    out = s.public_dict()
    assert set(out) == set(KEYS)
    assert out["openai_api_key"] == "set" and out["server_token"] == "set"
    assert "sk-secret" not in repr(s) and "tok" not in repr(s.server)


def test_models_and_retrievers_are_cached_by_their_groups(tmp_path: Path) -> None:
    CACHE.clear()
    base = Settings().with_(llm="fake:queue", index_dir=str(tmp_path))
    # Answer length is not the model's group: the same model object serves both.
    assert get_llm(base) is get_llm(base.with_(max_answer_tokens=40))
    # Decoding options are: another model.
    assert get_llm(base) is not get_llm(base.with_(speculative=True))
    assert get_retriever(base) is get_retriever(base.with_(evidence_tokens=100))
    assert get_retriever(base) is not get_retriever(base.with_(top_k=9))
    CACHE.clear()


def _flat_reads(tree: ast.AST) -> list[str]:
    """`settings.<key>` where <key> is not a group: a read that skips the groups."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in KEYS and node.attr not in GROUPS:
            value = node.value
            name = value.id if isinstance(value, ast.Name) else value.attr if isinstance(value, ast.Attribute) else ""
            if name in ("settings", "_settings"):
                out.append(f"{name}.{node.attr} (line {node.lineno})")
    return out


def test_the_package_reads_settings_through_their_groups() -> None:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if path.name == "settings.py":
            continue
        reads = _flat_reads(ast.parse(path.read_text(encoding="utf-8")))
        if reads:
            found[str(path.relative_to(PACKAGE))] = reads
    assert not found, found
    # The scan sees a flat read when there is one.
    assert _flat_reads(ast.parse("x = self.settings.top_k + settings.evidence.tokens")) == ["settings.top_k (line 1)"]
