"""Fit the check thresholds on traced dev runs: sweep each, print the trade-off as markdown.

    python -m assistant.evaluate.calibrate evals/runs/RUN_A [RUN_B ...] > evals/reports/calibration.md
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

from . import ablation
from .report import checks_markdown
from ..types import Check


def load_records(run_dirs: list[str]) -> list[dict[str, Any]]:
    """The question (not chat) records of one or more traced runs."""
    records: list[dict[str, Any]] = []
    for run in run_dirs:
        lines = (Path(run) / "cases.jsonl").read_text(encoding="utf-8").splitlines()
        records += [r for r in (json.loads(line) for line in lines if line.strip()) if not r.get("chat")]
    return records


def gate_scores(records: list[dict[str, Any]], answerable: bool) -> list[float]:
    """The gate's P(NONE) of each traced case of one class."""
    return [v["score"] for r in records if r["answerable"] == answerable
            for v in r.get("verdicts", []) if v["name"] == Check.ANSWERABLE and v["score"] is not None]


def main(argv: list[str]) -> str:
    """Markdown of the sweeps and score distributions over the given runs."""
    records = ablation.traced(load_records(argv))
    gate, support = 0.5, 0.5
    summary = {"ablation": ablation.ablations(records, gate, support), "sweep_gate": ablation.sweep(records, support),
               "sweep_support": ablation.sweep(records, support, name="support_min", fixed_gate=gate)}
    lines = [f"# Threshold calibration on {len(records)} traced cases", "",
             "Runs: " + ", ".join(f"`{Path(r).name}`" for r in argv), ""]
    for label, flag in (("answerable", True), ("unanswerable", False)):
        scores = gate_scores(records, flag)
        if scores:
            q = statistics.quantiles(scores, n=4) if len(scores) > 1 else [scores[0]] * 3
            lines.append(f"- gate P(NONE), {label} ({len(scores)}): min {min(scores):.2f}, quartiles "
                         f"{q[0]:.2f} / {q[1]:.2f} / {q[2]:.2f}, max {max(scores):.2f}")
    lines += checks_markdown(summary)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(main(sys.argv[1:]))
