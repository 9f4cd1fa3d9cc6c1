"""Latest-first evaluation: questions about how things stand now.

    python -m assistant.evaluate.latest evals/datasets/latest.jsonl [--out FILE]

Runs the gold cases whose corpus is the configured one (ASSISTANT_CORPUS) and scores each answer:
`correct` (it holds a gold answer and is not declined; for an unanswerable case, it is declined),
`as_of_right` (it opens "As of <date>" and that date states the gold `as_of` at the gold precision:
"25 December 2024" is right for a gold "2024-12", "December 2024" is not for a gold "2024-12-25"),
`newest_cited` (the newest file is cited), `older_cited` (an older file that said otherwise is cited)
and `note_right` (the expected note is there: "stale" or "undated"). A score that does not apply to
a case is None and is left out of its rate. See evals/datasets/LATEST.md.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..settings import Settings
from ..text_utils import MONTHS
from ..types import Answer

REPO = Path(__file__).resolve().parent.parent.parent
CORPORA = {"sample": REPO / "articles", "bbc": REPO.parent / "shared" / "corpora" / "bbc"}
NOTES = {"stale": "The newest article in the folder is from",
         "undated": "The articles carry no publication dates"}
SCORES = ("correct", "as_of_right", "newest_cited", "older_cited", "note_right")
REQUIRED = {"id": str, "corpus": str, "question": str, "answers": list, "unanswerable": bool}
_AS_OF = re.compile(r"^\s*As of (?:(\d{1,2}) )?(?:(" + "|".join(MONTHS) + r") )?(\d{4})\b", re.I)
_ISO = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")


def load_cases(path: str | Path) -> list[dict[str, Any]]:
    """Gold cases, one JSON object per line; a malformed line raises InputError naming it."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"cannot read gold cases {path}: {exc}") from None
    cases: list[dict[str, Any]] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            case = json.loads(line)
        except ValueError as exc:
            raise InputError(f"{path}:{n}: not JSON ({exc})") from None
        problems = [f"{k} must be a {t.__name__}" for k, t in REQUIRED.items() if not isinstance(case.get(k), t)]
        if case.get("corpus") not in CORPORA:
            problems.append(f"corpus must be one of {', '.join(CORPORA)}")
        if not case.get("unanswerable") and not case.get("answers"):
            problems.append("an answerable case needs answers")
        if case.get("as_of") is not None and not _ISO.match(str(case["as_of"])):
            problems.append("as_of must be YYYY, YYYY-MM or YYYY-MM-DD")
        if case.get("expect_note") not in (None, *NOTES):
            problems.append(f"expect_note must be one of {', '.join(NOTES)}")
        if problems:
            raise InputError(f"{path}:{n}: {'; '.join(problems)}")
        cases.append(case)
    return cases


def stated_as_of(text: str) -> str:
    """The ISO date an answer's opening "As of <date>" states ("" when it has none)."""
    match = _AS_OF.match(text)
    if not match:
        return ""
    day, month, year = match.groups()
    if not month:
        return year
    iso = f"{year}-{MONTHS.index(month.lower()) + 1:02d}"
    return f"{iso}-{int(day):02d}" if day else iso


def date_right(stated: str, gold: str) -> bool:
    """The stated date gives the gold date at least as precisely as the gold does."""
    return len(stated) >= len(gold) and stated[: len(gold)] == gold


def score_case(case: dict[str, Any], answer: Answer) -> dict[str, bool | None]:
    """Score one answer against its gold case (None: the score does not apply)."""
    answered = not answer.declined
    text = answer.answer.lower()
    if case.get("unanswerable"):
        correct = not answered
    else:
        correct = answered and any(a.lower() in text for a in case["answers"])
    cited = {c.file for c in answer.citations} | {f for c in answer.citations for f in c.copies}
    as_of = case.get("as_of")
    newest = [f for f in [case.get("newest_file"), *case.get("newest_also", [])] if f]
    older = case.get("older_files") or []
    note = case.get("expect_note")
    return {
        "correct": correct,
        "as_of_right": None if not as_of else answered and date_right(stated_as_of(answer.answer), as_of),
        "newest_cited": None if not newest else answered and any(f in cited for f in newest),
        "older_cited": None if not older else answered and any(f in cited for f in older),
        # The notes come with an answer; a decline carries none, so the note is not scored then.
        "note_right": None if not note or not answered else any(NOTES[note] in n for n in answer.notes),
    }


def rates(results: list[dict[str, Any]]) -> dict[str, float | None]:
    """Share of true values per score, over the cases where it applies (None: no such case)."""
    out: dict[str, float | None] = {}
    for key in SCORES:
        values = [r[key] for r in results if r[key] is not None]
        out[key] = sum(values) / len(values) if values else None
    return out


def run(path: str | Path, settings: Settings) -> dict[str, Any]:
    """Ask every gold case of the configured corpus; per-case scores and the rates."""
    from ..answering.ask import Assistant

    corpus = Path(settings.index.corpus_dir).resolve()
    cases = [c for c in load_cases(path) if Path(CORPORA[c["corpus"]]).resolve() == corpus]
    if not cases:
        raise InputError(f"no gold case in {path} is about the corpus {corpus} (set ASSISTANT_CORPUS)")
    assistant = Assistant(settings)
    results = []
    for case in cases:
        answer = assistant.ask(case["question"])
        results.append({"id": case["id"], "question": case["question"], **score_case(case, answer),
                        "answer": answer.answer, "declined": answer.declined,
                        "cited": sorted({c.file for c in answer.citations}), "notes": answer.notes})
    return {"corpus": str(corpus), "n": len(results), **rates(results), "cases": results}


def _mark(value: bool | None) -> str:
    return "-" if value is None else ("✓" if value else "✗")


def main() -> None:
    """Command line: run, print per-case results and the rates, optionally save the result."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("gold")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    result = run(args.gold, Settings.from_env())
    print("  ".join(f"{k:>12}" for k in ("id", *SCORES)))
    for r in result["cases"]:
        print("  ".join([f"{r['id']:>12}", *(f"{_mark(r[k]):>12}" for k in SCORES)]) + f"  {r['answer'][:100]!r}")
    print(json.dumps({k: v for k, v in result.items() if k != "cases"}, indent=1))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
