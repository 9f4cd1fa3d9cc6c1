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
    lines += checks_markdown(summary)
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


def _config_name(row: dict[str, Any]) -> str:
    return "shipped (all checks)" if not row["off"] else ("all checks off" if len(row["off"]) > 1
                                                           else f"without `{row['off'][0]}`")


def checks_markdown(summary: dict[str, Any]) -> list[str]:
    """Decline reasons, checks fired, ablations, threshold sweeps and chat turns."""
    lines: list[str] = []
    if summary.get("decline_reasons") is not None:
        lines += ["", "## Decline reasons and checks", "",
                  "| decline reason | cases |", "|---|---|"]
        lines += [f"| `{k}` | {v} |" for k, v in summary["decline_reasons"].items()] or ["| (none) | 0 |"]
        lines += ["", "| check | ran | failed |", "|---|---|---|"]
        lines += [f"| `{k}` | {v['ran']} | {v['failed']} |" for k, v in summary.get("check_fired", {}).items()]
        unrelated = summary.get("answered_from_unrelated_article", [])
        lines += ["", f"Answers citing no gold file (or answering an unanswerable question): {len(unrelated)}"
                  + (f" ({', '.join(unrelated)})" if unrelated else "")]
    columns = "| {} | {} | {} | {} | {} | {} |"
    head = ["| configuration | correct | wrong declines | wrong answers | unanswerable declined | unanswerable answered |",
            "|---|---|---|---|---|---|"]
    if summary.get("ablation"):
        lines += ["", "## Ablation (re-decided from this traced run's verdicts; no model calls)", "",
                  "Each row switches checks off; rates are over answerable (correct, wrong declines, wrong answers) "
                  "and unanswerable questions.", "", *head]
        for row in summary["ablation"]:
            lines.append(columns.format(_config_name(row), fmt(row["correct"]), fmt(row["wrong_decline"]),
                                        fmt(row["wrong_answer"]), fmt(row["correct_decline"]),
                                        row["answered_unanswerable"]))
    for key, name in (("sweep_gate", "gate_none_max"), ("sweep_support", "support_min")):
        if summary.get(key):
            lines += ["", f"## Trade-off: `{name}` swept, the other threshold fixed", "",
                      head[0].replace("configuration", name), head[1]]
            for row in summary[key]:
                lines.append(columns.format(row[name], fmt(row["correct"]), fmt(row["wrong_decline"]),
                                            fmt(row["wrong_answer"]), fmt(row["correct_decline"]),
                                            row["answered_unanswerable"]))
    chat = summary.get("chat")
    if chat:
        d = chat["decline"]
        lines += ["", "## Chat conversations", "",
                  f"- {chat['n_conversations']} conversations, {chat['n']} turns (follow-ups rewritten from the history)",
                  f"- correct (answerable turns): {fmt(chat['correct'])}; follow-up turns only: {fmt(chat['follow_up_correct'])}",
                  f"- unanswerable turns declined: {fmt(d['correct_decline_rate'])}; answerable turns declined: "
                  f"{fmt(d['wrong_decline_rate'])}"]
    return lines


def write_tradeoff(summary: dict[str, Any], path: Path) -> bool:
    """The decline-threshold curve (correct, wrong declines, wrong answers, unanswerable declined) as PNG."""
    rows = summary.get("sweep_gate")
    if not rows:
        return False
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    xs = [r["gate_none_max"] for r in rows]
    for key, label in (("correct", "correct (answerable)"), ("wrong_decline", "wrong declines"),
                       ("wrong_answer", "wrong answers"), ("correct_decline", "unanswerable declined")):
        ax.plot(xs, [r[key] for r in rows], marker="o", markersize=3, label=label)
    chosen = summary.get("run", {}).get("gate_none_max")
    if chosen is not None:
        ax.axvline(float(chosen), color="grey", linestyle="--", linewidth=0.8, label=f"shipped {chosen}")
    ax.set_xlabel("decline when P(NONE) ≥ gate_none_max")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    ax.set_title("Decline threshold trade-off", fontsize=10)
    fig.tight_layout()
    fig.savefig(str(path))
    return True


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
