"""Prompt-budget sweep: how few evidence tokens keep answers correct, and what each costs.

Run:  HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_budget.py [--budgets 300,450,600] [--every 4] [--out FILE]

On the sample corpus with the default models, for each budget (`evidence_tokens`, the evidence
put into the prompt, in tokens of about four characters) it asks every N-th question of evals/datasets/sample.jsonl
through `Assistant.ask` and reports, per budget: prompt tokens per model call (the model's own usage
count), end-to-end latency p50/p95, correct answers (`contains_answer` on answerable questions, the
decline flag on unanswerable ones), wrong answers given, and the process's peak RSS.

Budgets run one after another (outer loop), not interleaved per question: llama.cpp keeps the last
prompt in its cache, and two budgets of one question share their first sources, so interleaving
would time the second budget on a warm prompt. The models are loaded by a warm-up question first.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

# The answering benchmark's dataset, warm-up question, scoring and RSS reading, so both score alike.
from bench_answer import DATASET, WARM_UP, peak_rss_mb, score


def one_budget(settings: Any, budget: int, cases: list[dict[str, Any]], metrics: Any) -> dict[str, Any]:
    """Ask every case with this prompt budget; return the summary and the per-case records."""
    from assistant.answering.ask import Assistant

    bot = Assistant(settings.with_(evidence_tokens=budget))
    records = []
    for case in cases:
        t0 = time.perf_counter()
        answer = bot.ask(case["question"])
        latency = time.perf_counter() - t0
        correct = score(case, answer, Path(settings.index.corpus_dir), metrics)["correct"]
        records.append({"id": case["id"], "type": case["type"], "budget": budget, "correct": bool(correct),
                        "declined": answer.declined, "latency_s": latency, "prompt_tokens": answer.prompt_tokens,
                        "answer": answer.answer})
        print(f"budget {budget} {case['id']}: {latency:.1f}s {answer.prompt_tokens} tok "
              f"{'ok' if correct else 'WRONG'}", file=sys.stderr)
    asked = [r["prompt_tokens"] for r in records if r["prompt_tokens"]]
    lat = metrics.latency_summary([r["latency_s"] for r in records])
    return {
        "budget": budget, "n": len(records),
        "correct": sum(r["correct"] for r in records),
        "wrong_answers": sum(1 for r in records if not r["declined"] and not r["correct"]),
        "declined": sum(r["declined"] for r in records),
        "model_calls": len(asked),
        "prompt_tokens_mean": sum(asked) / len(asked) if asked else 0.0,
        "prompt_tokens_max": max(asked, default=0),
        "latency_p50": lat["p50"], "latency_p95": lat["p95"],
        "peak_rss_mb": peak_rss_mb(),
        "records": records,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default="300,450,600", help="comma-separated token budgets")
    parser.add_argument("--every", type=int, default=4, help="take every N-th question of the gold set")
    parser.add_argument("--index-dir", default=None, help="index folder (default: ./index or ASSISTANT_INDEX_DIR)")
    parser.add_argument("--out", default=None, help="write summaries and per-case records as JSON here")
    args = parser.parse_args()

    from assistant.answering.ask import Assistant
    from assistant.evaluate import metrics
    from assistant.indexing.build import build_index, index_exists
    from assistant.settings import Settings

    settings = Settings.from_env(index_dir=args.index_dir)
    if not index_exists(settings):
        build_index(settings.index.corpus_dir, settings=settings)
    rows = [json.loads(line) for line in DATASET.read_text(encoding="utf-8").splitlines() if line.strip()]
    cases = rows[:: args.every]
    Assistant(settings).ask(WARM_UP)
    started, load_start = time.strftime("%Y-%m-%d %H:%M:%S"), os.getloadavg()
    results = [one_budget(settings, int(b), cases, metrics) for b in args.budgets.split(",")]
    meta = {"started": started, "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "llm": settings.model.llm,
            "embedder": settings.index.embedder, "cases": [c["id"] for c in cases], "loadavg_start": load_start,
            "loadavg_end": os.getloadavg(), "cpus": os.cpu_count(), "n_threads": settings.model.n_threads}

    lines = ["| sentences in prompt | prompt tokens per call, mean / max | latency p50 / p95 | correct | "
             "wrong answers given | declined | peak RSS |", "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['budget']} | {r['prompt_tokens_mean']:.0f} / {r['prompt_tokens_max']} | "
                     f"{r['latency_p50']:.1f} s / {r['latency_p95']:.1f} s | {r['correct']}/{r['n']} | "
                     f"{r['wrong_answers']}/{r['n']} | {r['declined']}/{r['n']} | {r['peak_rss_mb']:.0f} MB |")
    print("\n".join(lines))
    print(json.dumps({"meta": meta, "budgets": [{k: v for k, v in r.items() if k != "records"} for r in results]},
                     indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps({"meta": meta, "budgets": results}, ensure_ascii=False, indent=1),
                                  encoding="utf-8")


if __name__ == "__main__":
    main()
