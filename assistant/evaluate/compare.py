"""Compare two evaluation runs: every headline metric A -> B, and the questions that flipped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..settings import REPO_DIR
from .report import ci_text, fmt
from .metrics import bootstrap_ci
from .runner import HEADLINE, case_value


def find_run(run: str | Path) -> Path:
    """A run folder given as a path, or as a name under evals/runs/ or evals/reports/."""
    path = Path(run)
    candidates = [path, Path("evals/runs") / path, REPO_DIR / "evals" / "runs" / path,
                  REPO_DIR / "evals" / "reports" / path]
    for candidate in candidates:
        if (candidate / "summary.json").is_file():
            return candidate
    raise InputError(f"{run}: not a finished run folder (no summary.json); give a folder written by "
                     "`assistant eval`, e.g. evals/runs/<name>")


def _load(run: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]] | None]:
    try:
        summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{run / 'summary.json'} is unreadable ({exc}); re-run `assistant eval`") from None
    cases_path = run / "cases.jsonl"
    if not cases_path.is_file():
        return summary, None  # committed reports keep the summary only
    cases: dict[str, dict[str, Any]] = {}
    for line in cases_path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            cases[record["id"]] = record
    return summary, cases


def _change(a: float | None, b: float | None, digits: int = 3) -> str:
    if a is None or b is None:
        return "–"
    return f"{b - a:+.{digits}f}"


def _paired(key: str, cases_a: dict[str, dict[str, Any]] | None, cases_b: dict[str, dict[str, Any]] | None) -> str:
    # Same questions on both sides: bootstrap the per-question differences, which is far
    # tighter than comparing two independent intervals. An interval excluding 0 is a real change.
    if cases_a is None or cases_b is None:
        return "(needs cases.jsonl)"
    diffs = []
    for cid, x in cases_a.items():
        y = cases_b.get(cid)
        if y is not None:
            va, vb = case_value(x, key), case_value(y, key)
            if va is not None and vb is not None:
                diffs.append(vb - va)
    if not diffs:
        return "–"
    _mean, low, high = bootstrap_ci(diffs)
    mark = " *" if low > 0 or high < 0 else ""
    return f"[{low:+.3f}, {high:+.3f}]{mark}"


def compare_runs(run_a: str | Path, run_b: str | Path) -> str:
    """A markdown comparison of run A and run B: metric changes with both CIs, then flipped questions."""
    path_a, path_b = find_run(run_a), find_run(run_b)
    sum_a, cases_a = _load(path_a)
    sum_b, cases_b = _load(path_b)
    ra, rb = sum_a.get("run", {}), sum_b.get("run", {})
    lines = [f"# {path_a.name} → {path_b.name}", "",
             f"- A: `{ra.get('engine', '?')}` with `{ra.get('llm', '?')}`, {sum_a['n']} cases",
             f"- B: `{rb.get('engine', '?')}` with `{rb.get('llm', '?')}`, {sum_b['n']} cases", "",
             "| metric | A [95% CI] | B [95% CI] | change | paired 95% CI of change |", "|---|---|---|---|---|"]
    # summary.json is written with sorted keys; show metrics in the report's order.
    keys = [k for k, _, _ in HEADLINE if k in sum_a["headline"]]
    keys += sorted(k for k in sum_a["headline"] if k not in keys)
    for key in keys:
        ma, mb = sum_a["headline"][key], sum_b["headline"].get(key)
        if mb is None:
            continue
        lines.append(f"| {ma['label']} | {ci_text(ma)} | {ci_text(mb)} | {_change(ma['mean'], mb['mean'])} "
                     f"| {_paired(key, cases_a, cases_b)} |")
    for name, key in (("latency p50 (s)", "p50"), ("latency p95 (s)", "p95")):
        a, b = (sum_a.get("latency_s") or {}).get(key), (sum_b.get("latency_s") or {}).get(key)
        lines.append(f"| {name} | {fmt(a, 2)} | {fmt(b, 2)} | {_change(a, b, 2)} | |")
    a, b = sum_a["prompt_tokens"].get("mean"), sum_b["prompt_tokens"].get("mean")
    lines.append(f"| prompt tokens per call (mean) | {fmt(a, 0)} | {fmt(b, 0)} | {_change(a, b, 0)} | |")
    lines += ["", "Paired CI: bootstrap of per-question differences over the questions both runs score for that "
              "metric (e.g. citation metrics only where both answered). `*`: it excludes 0, so the change is "
              "unlikely to be noise.", ""]
    if cases_a is None or cases_b is None:
        lines.append("(per-question flips need cases.jsonl in both folders; committed reports keep only summaries)")
        return "\n".join(lines) + "\n"
    common = [cid for cid in cases_a if cid in cases_b]
    only = len(cases_a) + len(cases_b) - 2 * len(common)
    if only:
        lines += [f"{only} question(s) are in only one run; flips compare the {len(common)} shared ones.", ""]
    groups: dict[str, list[str]] = {"correct → wrong": [], "wrong → correct": [],
                                    "answered → declined": [], "declined → answered": []}
    for cid in common:
        x, y = cases_a[cid], cases_b[cid]
        if x["correct"] and not y["correct"]:
            groups["correct → wrong"].append(cid)
        elif y["correct"] and not x["correct"]:
            groups["wrong → correct"].append(cid)
        if not x["declined"] and y["declined"]:
            groups["answered → declined"].append(cid)
        elif x["declined"] and not y["declined"]:
            groups["declined → answered"].append(cid)
    for title, ids in groups.items():
        lines += [f"## {title} ({len(ids)})", ""]
        for cid in ids:
            x, y = cases_a[cid], cases_b[cid]
            gold = x["golds"][0] if x["golds"] else "(decline)"
            lines.append(f"- {cid} ({x['type']}): {x['question']}  \n  gold: {gold}  \n"
                         f"  A: {_short(x['answer'])}  \n  B: {_short(y['answer'])}")
        lines.append("")
    return "\n".join(lines)


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
