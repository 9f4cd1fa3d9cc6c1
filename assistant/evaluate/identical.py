"""Are two eval runs the same answers? For a refactor that must not change behaviour.

    python -m assistant.evaluate.identical RUN_A RUN_B [--ignore-verdict NAME ...] [--common]

Compares, case by case (by id), the answer, whether and why it declined, the draft, every
verdict (name, passed, score to 6 places, subject), every citation (label, file, offsets) and the
notes. Prints each case that differs and the field, and exits 1 if any does; timings are ignored.
`--ignore-verdict NAME` leaves out verdicts of a check the second run added (a named change);
`--common` compares only the cases both runs hold (a run cut short).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

FIELDS = ("answer", "declined", "decline_reason", "draft", "notes", "error")


def _cases(run: str | Path) -> dict[str, dict[str, Any]]:
    path = Path(run)
    path = path / "cases.jsonl" if path.is_dir() else path
    with open(path, encoding="utf-8") as f:
        return {r["id"]: r for r in map(json.loads, f) if r.get("id")}


def _verdicts(record: dict[str, Any], ignore: frozenset[str] = frozenset()) -> list[tuple[Any, ...]]:
    return [(v.get("name"), v.get("passed"), None if v.get("score") is None else round(float(v["score"]), 6),
             v.get("subject")) for v in record.get("verdicts", []) if v.get("name") not in ignore]


def _citations(record: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(c.get("label"), c.get("file"), c.get("start"), c.get("end")) for c in record.get("citations", [])]


def differences(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]], ignore: frozenset[str] = frozenset(),
                common: bool = False) -> list[tuple[str, str]]:
    """(case id, field) for every field that differs, and (unless `common`) cases found in one run only."""
    out = [] if common else ([(i, "missing from the second run") for i in a if i not in b]
                             + [(i, "missing from the first run") for i in b if i not in a])
    for i in (i for i in a if i in b):
        x, y = a[i], b[i]
        out += [(i, f) for f in FIELDS if x.get(f) != y.get(f)]
        if _verdicts(x, ignore) != _verdicts(y, ignore):
            out.append((i, "verdicts"))
        if _citations(x) != _citations(y):
            out.append((i, "citations"))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m assistant.evaluate.identical",
                                     description="Are two eval runs the same answers?")
    parser.add_argument("run_a")
    parser.add_argument("run_b")
    parser.add_argument("--ignore-verdict", action="append", default=[], metavar="NAME",
                        help="leave out the verdicts of this check (repeatable)")
    parser.add_argument("--common", action="store_true", help="compare only the cases both runs hold")
    args = parser.parse_args(argv)
    a, b = _cases(args.run_a), _cases(args.run_b)
    diff = differences(a, b, frozenset(args.ignore_verdict), args.common)
    for case, field in diff:
        print(f"{case}: {field} differs" if "missing" not in field else f"{case}: {field}")
    print(f"{len(a)} and {len(b)} cases; {len({c for c, _ in diff})} differ")
    return 1 if diff else 0


if __name__ == "__main__":
    raise SystemExit(main())
