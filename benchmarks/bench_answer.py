"""Answering benchmark: our `Assistant` against stock LlamaIndex `CitationQueryEngine`, side by side.

Run:  HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_answer.py [--limit 20] [--out results.json]

In one process, on the sample corpus with the default models (embedder and 1.5B GGUF, shared by both
systems through the backend registry), it
  1. indexes the sample articles into a temp folder (or uses --index-dir);
  2. warms both systems up on a question outside the set (model load is not charged to a case),
     reading the peak RSS after ours alone and again after the stock engine is built and has run;
  3. for each of --limit questions from evals/datasets/sample.jsonl, picked deterministically
     round-robin over the question types (so answerable and unanswerable cases are mixed):
       - ours:  `Assistant.stream(q)`: end-to-end latency, time to the first text the user sees,
                the final Answer; prompt tokens are then read from the model's usage report by
                re-sending the same messages with max_tokens=1 (the prompt is in llama.cpp's cache,
                so this costs little and does not change the timed run);
       - stock: `StockCitationEngine(settings).ask(q)`: end-to-end latency, the Answer and the
                prompt tokens its LLM calls reported;
     the two systems alternate per question, so load from other users of the machine hits both;
  4. scores correctness (`contains_answer` on answerable cases, `declined` on unanswerable ones),
     citations (has one, cited files in the gold files, quote verbatim in the file) and prints a
     Markdown table (plus per-case JSON with --out).

Prompt caching: llama.cpp keeps the last prompt's KV cache in its one slot, and earlier prompts in a
host-memory cache (`cache_ram_mib`, 8192 MiB by default in xllamacpp 2026.10). Probed on 2026-12-02:
after an unrelated prompt, a prompt opening with our system message took its first 97 tokens from
that cache. So although the systems alternate, each reuses its own fixed opening (our system
message; the stock template's instructions) as it would when used alone; the passages and the
question, which change with every question, are always read afresh. Identical prompts never repeat
within a system, except our token count (see 3.), which runs after the timed call.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

REPO = Path(__file__).resolve().parent.parent
DATASET = REPO / "evals" / "datasets" / "sample.jsonl"
WARM_UP = "Who is Wang Yi?"
# How a stock answer says the sources do not hold the answer (it has no decline flag of its own).
_REFUSAL = re.compile(r"(do(es)? not|don't|doesn't) (say|mention|provide|contain|specify|state|include)|"
                      r"not (mentioned|provided|specified|stated|available|included)|no information|"
                      r"cannot be determined|(is|are) not (known|given)|unable to (answer|determine)|"
                      r"i (do not|don't) know", re.I)


def select_cases(limit: int) -> list[dict[str, Any]]:
    """Round-robin over question types (in order of first appearance), each type in file order."""
    rows = [json.loads(line) for line in DATASET.read_text(encoding="utf-8").splitlines() if line.strip()]
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_type[row["type"]].append(row)
    picked: list[dict[str, Any]] = []
    depth = 0
    while len(picked) < min(limit, len(rows)):
        for kind in by_type:
            if depth < len(by_type[kind]) and len(picked) < limit:
                picked.append(by_type[kind][depth])
        depth += 1
    return picked


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def verbatim(citation: Any, corpus: Path) -> bool:
    path = corpus / citation.file
    if not citation.file or not path.is_file():
        return False
    return path.read_text(encoding="utf-8")[citation.start:citation.end] == citation.quote and bool(citation.quote)


def score(case: dict[str, Any], answer: Any, corpus: Path, metrics: Any) -> dict[str, Any]:
    """Correctness and citation checks for one answer."""
    golds = [case["answer"], *case.get("aliases", [])]
    text = answer.answer or ""
    record: dict[str, Any] = {"id": case["id"], "type": case["type"], "answerable": case["answerable"],
                              "declined": bool(answer.declined), "answer": text,
                              "citations": [c.to_dict() for c in answer.citations]}
    if case["answerable"]:
        record["correct"] = (not answer.declined) and metrics.contains_answer(text, golds)
    else:
        record["correct"] = bool(answer.declined)
        record["refused_in_words"] = bool(answer.declined) or bool(_REFUSAL.search(text))
    answered = not answer.declined
    record["cited"] = answered and bool(answer.citations)
    files = [c.file for c in answer.citations]
    if case["answerable"] and answered:
        precision, recall = metrics.citation_file_precision_recall(files, case["sources"])
        record["cite_precision"], record["cite_recall"] = precision, recall
    record["verbatim"] = [verbatim(c, corpus) for c in answer.citations]
    return record


def failed(case: dict[str, Any], exc: Exception, seconds: float) -> dict[str, Any]:
    """The record of a case whose answer raised: wrong, uncited, with the error kept."""
    return {"id": case["id"], "type": case["type"], "answerable": case["answerable"], "declined": False,
            "answer": "", "citations": [], "correct": False, "refused_in_words": False, "cited": False,
            "cite_precision": 0.0, "cite_recall": 0.0, "verbatim": [], "latency_s": seconds, "ttft_s": None,
            "prompt_tokens": 0, "error": f"{type(exc).__name__}: {exc}"}


def run_ours(bot: Any, question: str) -> tuple[Any, float, float, int]:
    """(answer, latency, time to first visible text, prompt tokens) for our Assistant."""
    from assistant.backends import get_llm

    t0 = time.perf_counter()
    first = None
    answer = None
    for event in bot.stream(question):
        if isinstance(event, str):
            if first is None and event.strip():
                first = time.perf_counter() - t0
        else:
            answer = event
    latency = time.perf_counter() - t0
    prompt_tokens = 0
    if "generate_s" in answer.timings:  # the model was asked (not declined by the evidence gate)
        evidence = bot.gather(question)
        messages = bot.messages(question, evidence.sources)
        prompt_tokens = get_llm(bot.settings).complete(messages, max_tokens=1).prompt_tokens
    return answer, latency, first if first is not None else latency, prompt_tokens


def run_stock(engine: Any, question: str) -> tuple[Any, float]:
    t0 = time.perf_counter()
    answer = engine.ask(question)
    return answer, time.perf_counter() - t0


def summarise(records: list[dict[str, Any]], metrics: Any) -> dict[str, Any]:
    answerable = [r for r in records if r["answerable"]]
    unanswerable = [r for r in records if not r["answerable"]]
    answered = [r for r in answerable if not r["declined"]]
    lat = metrics.latency_summary([r["latency_s"] for r in records])
    out: dict[str, Any] = {
        "n": len(records),
        "errors": sum(1 for r in records if r.get("error")),
        "latency_p50": lat["p50"], "latency_p95": lat["p95"], "latency_mean": lat["mean"],
        "correct": sum(r["correct"] for r in records),
        "answerable_correct": sum(r["correct"] for r in answerable), "answerable": len(answerable),
        "unanswerable_declined": sum(r["correct"] for r in unanswerable), "unanswerable": len(unanswerable),
        "unanswerable_refused_in_words": sum(r["refused_in_words"] for r in unanswerable),
        "answered": len(answered),
        # Answers given that are not correct (an unanswerable question answered counts): what declining avoids.
        "wrong_answers": sum(1 for r in records if not r["declined"] and not r["correct"]),
        "answered_with_citation": sum(r["cited"] for r in answered),
        "cite_precision": (sum(r["cite_precision"] for r in answered) / len(answered)) if answered else 0.0,
        "cite_recall": (sum(r["cite_recall"] for r in answered) / len(answered)) if answered else 0.0,
        "citations": sum(len(r["verbatim"]) for r in records),
        "verbatim": sum(sum(r["verbatim"]) for r in records),
        "prompt_tokens_mean": (sum(r["prompt_tokens"] for r in records) / len(records)),
        "prompt_tokens_mean_when_asked": (
            sum(r["prompt_tokens"] for r in records if r["prompt_tokens"]) /
            max(1, sum(1 for r in records if r["prompt_tokens"]))),
    }
    ttft = [r["ttft_s"] for r in records if r.get("ttft_s") is not None]
    if ttft:
        out["ttft_p50"] = metrics.latency_summary(ttft)["p50"]
        out["ttft_p95"] = metrics.latency_summary(ttft)["p95"]
        asked = [r["ttft_s"] for r in records if r.get("ttft_s") is not None and r["prompt_tokens"]]
        if asked:
            out["ttft_p50_when_asked"] = metrics.latency_summary(asked)["p50"]
    return out


def markdown(ours: dict[str, Any], stock: dict[str, Any], meta: dict[str, Any]) -> str:
    def pct(a: int, b: int) -> str:
        return f"{a}/{b} ({100 * a / b:.0f}%)" if b else "–"

    rows = [
        ("End-to-end latency, median", f"{ours['latency_p50']:.1f} s", f"{stock['latency_p50']:.1f} s"),
        ("End-to-end latency, p95", f"{ours['latency_p95']:.1f} s", f"{stock['latency_p95']:.1f} s"),
        ("Time to first token, median (all / model asked)",
         f"{ours['ttft_p50']:.1f} s / {ours.get('ttft_p50_when_asked', float('nan')):.1f} s",
         "not streamed (≈ its latency)"),
        ("Time to first token, p95", f"{ours['ttft_p95']:.1f} s", "–"),
        ("Prompt tokens per question, mean (all / model asked)",
         f"{ours['prompt_tokens_mean']:.0f} / {ours['prompt_tokens_mean_when_asked']:.0f}",
         f"{stock['prompt_tokens_mean']:.0f} / {stock['prompt_tokens_mean_when_asked']:.0f}"),
        ("Correct, all questions", pct(ours["correct"], ours["n"]), pct(stock["correct"], stock["n"])),
        ("Answerable: contains the gold answer", pct(ours["answerable_correct"], ours["answerable"]),
         pct(stock["answerable_correct"], stock["answerable"])),
        ("Wrong answers given (not declined, not correct), all questions", pct(ours["wrong_answers"], ours["n"]),
         pct(stock["wrong_answers"], stock["n"])),
        ("Unanswerable: declined (flag)", pct(ours["unanswerable_declined"], ours["unanswerable"]),
         pct(stock["unanswerable_declined"], stock["unanswerable"])),
        ("Unanswerable: declined or says so in words", pct(ours["unanswerable_refused_in_words"], ours["unanswerable"]),
         pct(stock["unanswerable_refused_in_words"], stock["unanswerable"])),
        ("Answered (answerable) with ≥1 citation", pct(ours["answered_with_citation"], ours["answered"]),
         pct(stock["answered_with_citation"], stock["answered"])),
        ("Cited-file precision / recall vs gold files",
         f"{ours['cite_precision']:.2f} / {ours['cite_recall']:.2f}",
         f"{stock['cite_precision']:.2f} / {stock['cite_recall']:.2f}"),
        ("Citation quotes verbatim in the file", pct(ours["verbatim"], ours["citations"]),
         pct(stock["verbatim"], stock["citations"])),
        ("Crashed (exception instead of an answer)", pct(ours["errors"], ours["n"]), pct(stock["errors"], stock["n"])),
        ("Peak RSS of the process", f"{meta['rss_ours_mb']:.0f} MB (ours alone)",
         f"{meta['rss_both_mb']:.0f} MB (after adding stock)"),
    ]
    lines = ["| | ours (`Assistant`) | stock LlamaIndex `CitationQueryEngine` |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    ratio = ours["latency_p50"] / stock["latency_p50"] if stock["latency_p50"] else float("nan")
    lines.append("")
    lines.append(f"Median latency ratio ours/stock: **{ratio:.2f}** (goal ≤ 0.33).")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=20, help="questions from the sample gold set")
    parser.add_argument("--index-dir", default=None, help="index folder (default: a fresh temp folder)")
    parser.add_argument("--out", default=None, help="write per-case records and summaries as JSON here")
    args = parser.parse_args()

    from assistant.answering.ask import Assistant
    from assistant.evaluate.baseline import StockCitationEngine
    from assistant.evaluate import metrics
    from assistant.indexing.build import build_index, index_exists
    from assistant.settings import Settings

    index_dir = args.index_dir or tempfile.mkdtemp(prefix="bench-answer-")
    settings = Settings.from_env(index_dir=index_dir)
    corpus = Path(settings.index.corpus_dir)
    load_start = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    if not index_exists(settings):
        build_index(settings.index.corpus_dir, settings=settings)
    cases = select_cases(args.limit)
    print(f"{len(cases)} cases: " + ", ".join(f"{c['id']}({c['type']})" for c in cases), file=sys.stderr)

    bot = Assistant(settings)
    t0 = time.perf_counter()
    run_ours(bot, WARM_UP)
    warm_ours = time.perf_counter() - t0
    rss_ours = peak_rss_mb()
    t0 = time.perf_counter()
    engine = StockCitationEngine(settings)
    run_stock(engine, WARM_UP)
    warm_stock = time.perf_counter() - t0
    rss_both = peak_rss_mb()

    ours_records: list[dict[str, Any]] = []
    stock_records: list[dict[str, Any]] = []
    loads: list[float] = []
    for n, case in enumerate(cases, 1):
        q = case["question"]
        t0 = time.perf_counter()
        try:
            answer, latency, ttft, ptoks = run_ours(bot, q)
            rec = score(case, answer, corpus, metrics)
            rec.update(latency_s=latency, ttft_s=ttft, prompt_tokens=ptoks)
        except Exception as exc:  # a crash is a failed answer, not the end of the run
            rec = failed(case, exc, time.perf_counter() - t0)
        ours_records.append(rec)
        t0 = time.perf_counter()
        try:
            s_answer, s_latency = run_stock(engine, q)
            srec = score(case, s_answer, corpus, metrics)
            srec.update(latency_s=s_latency, ttft_s=None, prompt_tokens=s_answer.prompt_tokens)
        except Exception as exc:
            srec = failed(case, exc, time.perf_counter() - t0)
        stock_records.append(srec)
        if args.out:
            with open(args.out + ".cases.jsonl", "a", encoding="utf-8") as log:
                log.write(json.dumps({"ours": rec, "stock": srec}, ensure_ascii=False) + "\n")
        loads.append(os.getloadavg()[0])
        print(f"[{n}/{len(cases)}] {case['id']} {case['type']}: ours {rec['latency_s']:.1f}s "
              f"{rec.get('error') or ('ok' if rec['correct'] else 'WRONG')} | stock {srec['latency_s']:.1f}s "
              f"{srec.get('error') or ('ok' if srec['correct'] else 'WRONG')} | load {loads[-1]:.1f}",
              file=sys.stderr)

    ours = summarise(ours_records, metrics)
    stock = summarise(stock_records, metrics)
    meta = {
        "started": started, "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cases": [c["id"] for c in cases], "llm": settings.model.llm, "embedder": settings.index.embedder,
        "n_threads": settings.model.n_threads, "cpus": os.cpu_count(), "platform": platform.platform(),
        "loadavg_start": load_start, "loadavg_during_mean": sum(loads) / len(loads) if loads else None,
        "loadavg_during_max": max(loads) if loads else None, "loadavg_end": os.getloadavg(),
        "warm_up_ours_s": warm_ours, "warm_up_stock_s": warm_stock,
        "rss_ours_mb": rss_ours, "rss_both_mb": rss_both, "rss_end_mb": peak_rss_mb(),
    }
    table = markdown(ours, stock, meta)
    print(table)
    print(json.dumps({"meta": meta, "ours": ours, "stock": stock}, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps({"meta": meta, "ours": ours, "stock": stock,
                                              "ours_cases": ours_records, "stock_cases": stock_records},
                                             ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
