"""Gold question sets: load and validate JSONL files (schema in evals/datasets/SCHEMA.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..errors import InputError

QUESTION_TYPES: frozenset[str] = frozenset(
    {"single", "multi", "span", "when", "who", "how_many", "why", "conflict", "confuser", "unanswerable",
     "off_topic", "false_premise"}
)
# Types whose right response is a decline: the story is there but not the fact, or no story at all.
UNANSWERABLE_TYPES: frozenset[str] = frozenset({"unanswerable", "off_topic"})

_REQUIRED: dict[str, type] = {
    "id": str,
    "question": str,
    "answer": str,
    "sources": list,
    "evidence": list,
    "type": str,
    "answerable": bool,
}
_OPTIONAL: dict[str, type] = {"aliases": list, "notes": str}


@dataclass(frozen=True)
class EvalCase:
    """One gold question with its answer, accepted aliases, source files and evidence."""

    id: str
    question: str
    answer: str
    sources: list[str]
    evidence: list[str]
    type: str
    answerable: bool
    aliases: list[str] = field(default_factory=list)
    notes: str = ""

    @property
    def golds(self) -> list[str]:
        """The answer followed by its aliases, blanks dropped: what answer metrics compare against."""
        return [g for g in [self.answer, *self.aliases] if g.strip()]


def _check_fields(obj: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    unknown = sorted(set(obj) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        allowed = ", ".join([*_REQUIRED, *_OPTIONAL])
        problems.append(f"unknown field(s) {', '.join(unknown)} (allowed: {allowed})")
    for name, typ in {**_REQUIRED, **_OPTIONAL}.items():
        if name not in obj:
            if name in _REQUIRED:
                problems.append(f"missing required field '{name}'")
            continue
        value = obj[name]
        # bool is a subclass of int, and "answerable": 1 is almost surely a mistake.
        if not isinstance(value, typ) or (typ is not bool and isinstance(value, bool)):
            problems.append(f"field '{name}' must be a {typ.__name__}, got {type(value).__name__}")
        elif typ is list and not all(isinstance(v, str) for v in value):
            problems.append(f"field '{name}' must be a list of strings")
    if problems:
        return problems

    if not obj["id"].strip():
        problems.append("field 'id' is empty")
    if not obj["question"].strip():
        problems.append("field 'question' is empty")
    if obj["type"] not in QUESTION_TYPES:
        problems.append(f"unknown type '{obj['type']}' (known: {', '.join(sorted(QUESTION_TYPES))})")
    if any(not e.strip() for e in obj["evidence"]):
        problems.append("field 'evidence' holds an empty string")
    if obj["answerable"]:
        if obj["type"] in UNANSWERABLE_TYPES:
            problems.append(f"type '{obj['type']}' needs \"answerable\": false")
        if not obj["answer"].strip():
            problems.append("answerable case needs a non-empty 'answer'")
        if not obj["sources"]:
            problems.append("answerable case needs at least one file in 'sources'")
        if not obj["evidence"]:
            problems.append("answerable case needs at least one 'evidence' string")
    else:
        if obj["type"] not in UNANSWERABLE_TYPES:
            problems.append(f"\"answerable\": false is only allowed with types {', '.join(sorted(UNANSWERABLE_TYPES))}, "
                            f"not '{obj['type']}'")
        if obj["answer"] or obj["sources"] or obj["evidence"]:
            problems.append("unanswerable case must have answer \"\", sources [] and evidence []")
    return problems


def _json_lines(path: Path, what: str) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """(file:line, line number, object) for each non-blank line of a JSONL file."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(f"{path}: {what} file not found") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read {what} ({exc.strerror})") from None
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise InputError(f"{where}: each line must be a JSON object, got {type(obj).__name__}")
        yield where, lineno, obj


def load_dataset(path: str | Path) -> list[EvalCase]:
    """Read a JSONL gold set, raising InputError naming file:line and the problem."""
    path = Path(path)
    cases: list[EvalCase] = []
    first_line: dict[str, int] = {}
    for where, lineno, obj in _json_lines(path, "dataset"):
        problems = _check_fields(obj)
        if problems:
            raise InputError(f"{where}: " + "; ".join(problems))
        if obj["id"] in first_line:
            raise InputError(f"{where}: duplicate id '{obj['id']}' (first used on line {first_line[obj['id']]})")
        first_line[obj["id"]] = lineno
        cases.append(EvalCase(**obj))
    if not cases:
        raise InputError(f"{path}: no cases found; write one JSON object per line")
    return cases


def validate_evidence(cases: Sequence[EvalCase], corpus_dir: str | Path) -> list[str]:
    """Problems where a source file is missing or an evidence string is not verbatim in any gold source."""
    corpus = Path(corpus_dir)
    texts: dict[str, str | None] = {}
    problems: list[str] = []
    for case in cases:
        available: list[str] = []
        for source in case.sources:
            if source not in texts:
                try:
                    texts[source] = (corpus / source).read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError):
                    texts[source] = None
            text = texts[source]
            if text is None:
                problems.append(f"{case.id}: source file '{source}' not found or unreadable in {corpus}")
            else:
                available.append(text)
        for sentence in case.evidence:
            if not any(sentence in text for text in available):
                problems.append(f"{case.id}: evidence not found verbatim in {case.sources}: {sentence[:80]!r}")
    return problems


@dataclass(frozen=True)
class Conversation:
    """A gold chat: turns asked in order, follow-ups leaning on the ones before."""

    id: str
    turns: list[EvalCase]
    notes: str = ""


def load_conversations(path: str | Path) -> list[Conversation]:
    """Read a JSONL file of conversations ({"id", "turns": [case without id, ...], "notes"})."""
    path = Path(path)
    out: list[Conversation] = []
    for where, _lineno, obj in _json_lines(path, "conversations"):
        if not isinstance(obj.get("id"), str) or not isinstance(obj.get("turns"), list) \
                or set(obj) - {"id", "turns", "notes"} or len(obj["turns"]) < 2:
            raise InputError(f"{where}: a conversation is {{\"id\": str, \"turns\": [at least 2 cases], \"notes\"}}")
        turns = []
        for n, turn in enumerate(obj["turns"], start=1):
            case = {"id": f"{obj['id']}.t{n}", **{k: v for k, v in turn.items() if k != "id"}}
            problems = _check_fields(case) if isinstance(turn, dict) else ["a turn must be a JSON object"]
            if problems:
                raise InputError(f"{where} turn {n}: " + "; ".join(problems))
            turns.append(EvalCase(**case))
        out.append(Conversation(obj["id"], turns, obj.get("notes", "")))
    if not out:
        raise InputError(f"{path}: no conversations found; write one JSON object per line")
    return out
