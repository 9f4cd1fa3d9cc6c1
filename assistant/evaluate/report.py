"""Render a run's summary as markdown and as a bar chart with confidence intervals."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence


def fmt(value: float | None, digits: int = 3) -> str:
    """A number for a table cell ("–" when undefined)."""
    return "–" if value is None else f"{value:.{digits}f}"


def ci_text(metric: dict[str, Any]) -> str:
    """'0.812 [0.731, 0.884]' for a headline metric."""
    if metric.get("mean") is None:
        return "–"
    return f"{metric['mean']:.3f} [{metric['low']:.3f}, {metric['high']:.3f}]"


def render_markdown(summary: dict[str, Any], records: Sequence[dict[str, Any]]) -> str:
    """The report.md of a run: headline table with 95% CIs, declines, latency, tokens, failures."""
    run = summary.get("run", {})
    lines = [f"# Evaluation run {run.get('name', '')}", ""]
    lines += [f"- engine: `{run.get('engine', '')}`; chat model `{run.get('llm', '')}`; "
              f"embedder `{run.get('embedder', '')}` (index {run.get('fingerprint', '')})",
              f"- dataset: `{run.get('dataset', '')}`"
              + (f" (first {run['limit']} cases)" if run.get("limit") else ""),
              f"- {summary['n']} cases: {summary['n_answerable']} answerable, {summary['n_unanswerable']} "
              f"unanswerable; {summary['n_declined']} declined"
              + (f"; **{summary['n_errors']} failed with an exception** (scored wrong)" if summary.get("n_errors") else ""),
              f"- {run.get('started', '')} → {run.get('finished', '')}"
              + (f"; citations re-judged {run['rejudged']} with the current checker (answers unchanged)"
                 if run.get("rejudged") else ""), ""]
    lines += ["## Headline metrics (mean, 95% bootstrap CI)", "",
              "| metric | value [95% CI] | over | n |", "|---|---|---|---|"]
    for key, metric in summary["headline"].items():
        lines.append(f"| {metric['label']} (`{key}`) | {ci_text(metric)} | {metric['over']} | {metric['n']} |")
    d = summary["decline"]
    lines += ["", "## Declines (CRAG-style: +1 correct, 0 declined, −1 wrong)", "",
              f"- correct-decline rate (unanswerable declined): {fmt(d['correct_decline_rate'])}",
              f"- wrong-decline rate (answerable declined): {fmt(d['wrong_decline_rate'])}",
              f"- accuracy {fmt(d['accuracy'])}, hallucination {fmt(d['hallucination_rate'])}, "
              f"missing {fmt(d['missing_rate'])}, CRAG score {fmt(d['crag_score'])}",
              f"- answers that say in words that the sources lack the answer, without declining: "
              f"{summary['n_worded_declines']} (informational; scoring uses the decline flag)", ""]
    lat, first, tok = summary["latency_s"], summary.get("first_token_s"), summary["prompt_tokens"]
    lines += ["## Cost", ""]
    if lat:
        lines.append(f"- latency per question: p50 {lat['p50']:.2f} s, p95 {lat['p95']:.2f} s, mean {lat['mean']:.2f} s"
                     " (models loaded before the first case)")
    if first:
        lines.append(f"- time to first token: p50 {first['p50']:.2f} s, p95 {first['p95']:.2f} s")
    lines.append(f"- prompt tokens per model call: mean {fmt(tok['mean'], 0)}, p95 {fmt(tok['p95'], 0)} "
                 f"({tok['n_calls']} of {summary['n']} questions called the model)")
    sc = summary.get("support_checker")
    if sc:
        lines += ["", "## Support checker (judge of ALCE citation metrics)", "",
                  f"Agreement with {sc['n']} hand labels at LEXICAL_MIN={sc['lexical_min']}, "
                  f"SEMANTIC_MIN={sc['semantic_min']}: accuracy {sc['accuracy']:.3f}, precision "
                  f"{sc['precision']:.3f}, recall {sc['recall']:.3f}, F1 {sc['f1']:.3f}, "
                  f"Cohen's kappa {sc['kappa']:.3f}."]
    lines += ["", "## Retrieval detail", "", "| metric | mean |", "|---|---|"]
    lines += [f"| {k} | {fmt(v)} |" for k, v in summary["retrieval_extra"].items()]
    lines += ["", "## By question type", "", "| type | n | correct | declined | accuracy |", "|---|---|---|---|---|"]
    lines += [f"| {t} | {v['n']} | {v['correct']} | {v['declined']} | {v['accuracy']:.2f} |"
              for t, v in summary["by_type"].items()]
    wrong = [r for r in records if not r["correct"]]
    lines += ["", f"## Cases not scored correct ({len(wrong)})", "",
              "| id | type | outcome | gold | answer |", "|---|---|---|---|---|"]
    for r in wrong:
        outcome = "declined" if r["declined"] else ("answered (should decline)" if not r["answerable"] else "wrong")
        if r.get("error"):
            outcome = f"error: {r['error'][:60]}"
        gold = r["golds"][0] if r["golds"] else "(decline)"
        lines.append(f"| {r['id']} | {r['type']} | {outcome} | {_cell(gold)} | {_cell(r['answer'], 160)} |")
    return "\n".join(lines) + "\n"


def _cell(text: str, limit: int = 60) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def write_chart(summary: dict[str, Any], path: Path) -> None:
    """Bar chart of the headline metrics with 95% CI error bars (PNG)."""
    # The object API with an explicit Agg canvas: no pyplot, so no global backend or GUI state.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    items = [(k, v) for k, v in summary["headline"].items() if v.get("mean") is not None]
    labels = [v["label"] for _, v in items]
    means = [v["mean"] for _, v in items]
    errors = [[v["mean"] - v["low"] for _, v in items], [v["high"] - v["mean"] for _, v in items]]
    fig = Figure(figsize=(11, 5.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    colors = ["#4C72B0" if not k.startswith(("correct_decline", "wrong_decline", "crag")) else "#DD8452"
              for k, _ in items]
    ax.bar(range(len(items)), means, yerr=errors, capsize=3, color=colors)
    ax.set_xticks(range(len(items)))
    ax.set_xticklabels(labels, rotation=40, ha="right", fontsize=8)
    ax.set_ylim(min(0.0, min(means, default=0.0) - 0.1), 1.05)
    ax.axhline(0, color="black", linewidth=0.6)
    run = summary.get("run", {})
    ax.set_title(f"{run.get('engine', '')} · {run.get('llm', '')} · n={summary['n']} (95% bootstrap CI)", fontsize=10)
    fig.tight_layout()
    fig.savefig(str(path))
