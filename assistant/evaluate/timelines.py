"""Timeline evaluation: event precision and recall, and date accuracy at the gold precision.

    python -m assistant.evaluate.timelines evals/datasets/timelines.jsonl [--baseline] [--out DIR]

Runs the gold stories whose corpus is the configured one (ASSISTANT_CORPUS). A predicted event
matches a gold event when their texts mean the same: the embedder's cosine similarity between the
predicted text and the gold event, or any gold quote, reaches MATCH_MIN; matching is one-to-one,
best pairs first. Both systems are scored by this same rule. A matched event's date is right when
it states the gold date at the gold precision ("2023-04-02" for a gold "2023-04" is right; "2023"
for a gold "2023-04-02" is not).

The baseline is stock LlamaIndex `CitationQueryEngine` on the same index and models, asked a plain
"list the events with dates" prompt, its lines parsed for a leading date."""

from __future__ import annotations

import argparse
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..settings import Settings

MATCH_MIN = 0.6
REPO = Path(__file__).resolve().parent.parent.parent
CORPORA = {"sample": REPO / "articles", "bbc": REPO.parent / "shared" / "corpora" / "bbc"}
BASELINE_PROMPT = ("List the dated events about {topic} that the sources report, one per line, each line as "
                   "'DATE: event', with DATE written YYYY-MM-DD, or YYYY-MM or YYYY when the day or month "
                   "is not known. Only events the sources state.")
_LINE_DATE = re.compile(r"^\W*(\d{4}(?:-\d{2}(?:-\d{2})?)?)\s*[:\-–—]\s*(.+)$")


@dataclass
class Predicted:
    """One event as a system gave it."""

    date: str
    event: str
    files: list[str] = field(default_factory=list)


def load_stories(path: str | Path) -> list[dict[str, Any]]:
    """Gold timelines, one JSON object per line (see evals/datasets/TIMELINES.md)."""
    try:
        rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read gold timelines {path}: {exc}") from None
    for row in rows:
        if not row.get("events") or not row.get("topic"):
            raise InputError(f"{path}: story {row.get('id')!r} needs a topic and events")
    return rows


def date_right(predicted: str, gold: str) -> bool:
    """The prediction states the gold date at least as precisely as the gold does."""
    return len(predicted) >= len(gold) and predicted[: len(gold)] == gold


def score(predicted: list[Predicted], gold: list[dict[str, Any]], embed: Any) -> dict[str, Any]:
    """Precision, recall and date accuracy of predicted events against gold events."""
    if not predicted or not gold:
        return {"predicted": len(predicted), "gold": len(gold), "matched": 0, "precision": 0.0,
                "recall": 0.0, "date_accuracy": 0.0, "pairs": []}
    gold_texts = [[g["event"]] + [e["quote"] for e in g.get("evidence", [])] for g in gold]
    flat = [t for texts in gold_texts for t in texts]
    vectors = embed([p.event for p in predicted] + flat)
    pv, gv = vectors[: len(predicted)], vectors[len(predicted):]
    owner = [n for n, texts in enumerate(gold_texts) for _ in texts]
    sims: list[tuple[float, int, int]] = []
    for i, a in enumerate(pv):
        best: dict[int, float] = {}
        for j, b in enumerate(gv):
            s = sum(x * y for x, y in zip(a, b))
            best[owner[j]] = max(best.get(owner[j], -1.0), s)
        sims.extend((s, i, g) for g, s in best.items() if s >= MATCH_MIN)
    used_p: set[int] = set()
    used_g: set[int] = set()
    pairs = []
    for s, i, g in sorted(sims, reverse=True):
        if i in used_p or g in used_g:
            continue
        used_p.add(i)
        used_g.add(g)
        pairs.append({"predicted": predicted[i].event[:160], "predicted_date": predicted[i].date,
                      "gold": gold[g]["event"], "gold_date": gold[g]["date"], "similarity": round(s, 3),
                      "date_right": date_right(predicted[i].date, gold[g]["date"])})
    matched = len(pairs)
    return {"predicted": len(predicted), "gold": len(gold), "matched": matched,
            "precision": matched / len(predicted), "recall": matched / len(gold),
            "date_accuracy": (sum(p["date_right"] for p in pairs) / matched) if matched else 0.0,
            "pairs": pairs}


def parse_listing(text: str) -> list[Predicted]:
    """Events from a 'DATE: event' listing (lines without a leading date are left out)."""
    out = []
    for line in text.splitlines():
        match = _LINE_DATE.match(line.strip())
        if match:
            out.append(Predicted(match.group(1), match.group(2).strip()))
    return out


def about(story: dict[str, Any], corpus: Path) -> bool:
    """Is this gold story about the folder? Its named corpus is the folder, or the folder holds
    every file its evidence quotes (the sample's articles copied to a plain folder, say)."""
    if CORPORA.get(story["corpus"], Path(story["corpus"])).resolve() == corpus:
        return True
    files = {e["file"] for event in story["events"] for e in event.get("evidence", [])}
    return bool(files) and all((corpus / f).is_file() for f in files)


def run(path: str | Path, settings: Settings, baseline: bool = False, record: str | Path | None = None,
        replay: str | Path | None = None, replay_fallback: bool = False) -> dict[str, Any]:
    """Score every gold story of the configured corpus; returns the per-story and overall results.
    `record`/`replay` as for `run_eval`: the model's topic-and-status replies to a file, or from it
    (a date-resolution change is then measured without the model)."""
    from ..answering.ask import Assistant
    from ..backends.recorded import model_for_eval
    from ..news.timeline import build_timeline

    corpus = Path(settings.index.corpus_dir).resolve()
    stories = [s for s in load_stories(path) if about(s, corpus)]
    if not stories:
        raise InputError(f"no gold timeline in {path} is about the corpus {corpus} (set ASSISTANT_CORPUS)")
    assistant = Assistant(settings, llm=model_for_eval(settings, record, replay, replay_fallback))
    embed = assistant.retriever.embed_texts
    engine = None
    if baseline:
        from .baseline import StockCitationEngine

        engine = StockCitationEngine(settings.with_(max_answer_tokens=400))
    results = []
    for story in stories:
        t0 = time.perf_counter()
        if engine is None:
            timeline = build_timeline(assistant.retriever, assistant.llm, story["topic"])
            predicted = [Predicted(e.date, e.event, [c.file for c in e.citations]) for e in timeline.events]
            raw = json.dumps([e.to_dict() for e in timeline.events])
        else:
            answer = engine.ask(BASELINE_PROMPT.format(topic=story["topic"]))
            predicted = parse_listing(answer.answer)
            raw = answer.answer
        result = score(predicted, story["events"], embed)
        results.append({"id": story["id"], "topic": story["topic"], "seconds": time.perf_counter() - t0,
                        **result, "raw": raw})
    total_pred = sum(r["predicted"] for r in results)
    total_gold = sum(r["gold"] for r in results)
    matched = sum(r["matched"] for r in results)
    right = sum(sum(p["date_right"] for p in r["pairs"]) for r in results)
    return {"engine": "llamaindex:CitationQueryEngine" if baseline else "assistant.timeline",
            "corpus": str(corpus), "match_min": MATCH_MIN, "stories": results,
            "precision": matched / total_pred if total_pred else 0.0,
            "recall": matched / total_gold if total_gold else 0.0,
            "date_accuracy": right / matched if matched else 0.0}


def write_report(result: dict[str, Any], runs_dir: str | Path = "evals/runs") -> Path:
    """A run folder with the raw result and a Markdown table per story."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    engine = "baseline" if result["engine"].startswith("llamaindex") else "assistant"
    folder = Path(runs_dir) / f"{stamp}_timelines_{Path(result['corpus']).name}_{engine}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "result.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    lines = [f"# Timeline evaluation: {result['engine']} on {result['corpus']}", "",
             f"Match: embedder cosine >= {result['match_min']} with the gold event or one of its quotes, one-to-one.", "",
             "| story | predicted | gold | matched | precision | recall | date accuracy | seconds |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["stories"]:
        lines.append(f"| {r['id']} | {r['predicted']} | {r['gold']} | {r['matched']} | {r['precision']:.2f} | "
                     f"{r['recall']:.2f} | {r['date_accuracy']:.2f} | {r['seconds']:.0f} |")
    lines += ["", f"Overall: precision {result['precision']:.3f}, recall {result['recall']:.3f}, "
              f"date accuracy {result['date_accuracy']:.3f}.", ""]
    for r in result["stories"]:
        lines += [f"## {r['id']} ({r['topic']})", ""]
        lines += [f"- {'✓' if p['date_right'] else '✗'} {p['predicted_date']} vs gold {p['gold_date']}: "
                  f"{p['gold']} (sim {p['similarity']})" for p in r["pairs"]]
        lines.append("")
    (folder / "report.md").write_text("\n".join(lines), encoding="utf-8")
    return folder


def main() -> None:
    """Command line: run and print (and optionally save) the timeline evaluation."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("gold")
    parser.add_argument("--baseline", action="store_true")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    result = run(args.gold, Settings.from_env(), baseline=args.baseline)
    summary = {k: v for k, v in result.items() if k != "stories"}
    summary["stories"] = [{k: r[k] for k in ("id", "predicted", "gold", "matched", "precision", "recall",
                                             "date_accuracy", "seconds")} for r in result["stories"]]
    print(json.dumps(summary, indent=1))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
