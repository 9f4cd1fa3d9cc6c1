"""The subject check re-run on recorded eval runs (no chat model): which answers would it decline?

    python -m assistant.evaluate.subject_ablation RUN_DIR [RUN_DIR ...] --corpus FOLDER [--labels L,L] [--out F]

For every answered question of a run (`cases.jsonl`), the articles the answer cites are read from
the corpus folder and `checks.subject_cited` is asked whether they name the people, organisations
and events of the question (`--labels` sets the NER labels required, to compare choices). A run
made before the check existed shows what the check would have changed; the answers are the run's,
so a decline it adds is a right answer lost or a wrong one (or an answer to a question to decline)
stopped, and nothing else moves.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..answering.checks import subject_cited, understand
from ..answering.checks.rules import SUBJECT


def run(runs: list[str], corpus: Path, labels: frozenset[str] = SUBJECT) -> dict[str, Any]:
    """The cases the check would decline, and the counts by what the answer was."""
    rows, counts = [], {"right_answer": 0, "wrong_answer": 0, "answered_to_decline": 0}
    declined = dict(counts)
    for run_dir in runs:
        for record in map(json.loads, (Path(run_dir) / "cases.jsonl").read_text(encoding="utf-8").splitlines()):
            if record.get("chat") or record["declined"]:
                continue
            texts = [(corpus / f).read_text(encoding="utf-8", errors="replace") for f in record.get("cited_files", [])]
            verdict = subject_cited(understand(record["question"]), texts, required=labels)
            kind = ("answered_to_decline" if not record["answerable"]
                    else "right_answer" if record["correct"] else "wrong_answer")
            counts[kind] += 1
            if not verdict.passed:
                declined[kind] += 1
                rows.append({"run": Path(run_dir).name, "id": record["id"], "was": kind, "reason": verdict.reason})
    return {"labels": sorted(labels), "answered": counts, "declined_by_the_check": declined, "rows": rows}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--corpus", required=True, help="the folder the runs' files are relative to")
    parser.add_argument("--labels", default="", help="NER labels required, comma-separated (default: the shipped set)")
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    labels = frozenset(x.strip() for x in args.labels.split(",") if x.strip()) or SUBJECT
    result = run(args.runs, Path(args.corpus), labels)
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}))
    for row in result["rows"]:
        print(f"  {row['run'][:40]} {row['id']} ({row['was']}): {row['reason']}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
