"""Copies counted once, measured on the BBC gold questions: prompt slots saved, and answers with
grouping on and off.

    ASSISTANT_CORPUS=../shared/corpora/bbc ASSISTANT_INDEX_DIR=/path/idx \\
        python benchmarks/bench_grouping.py --out benchmarks/results/grouping-YYYYMMDD.json [--answers]

For every question of `bbc_dev.jsonl` and `bbc_test.jsonl`: the searched passages (the 20 the
answer step starts from) with grouping on and off; slots that copies took with grouping off; the
gold-file hit in the top 5; and whether the prompt's sources differ. Only a question whose prompt
differs can get a different answer (the model runs at temperature 0 on the same prompt), so with
`--answers` the default model answers just those questions both ways, scored by the eval's rule
(the gold answer or an alias in the answer, not declined).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    from assistant.answering.ask import Assistant
    from assistant.evaluate.dataset import load_dataset
    from assistant.evaluate.metrics import contains_answer
    from assistant.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="")
    parser.add_argument("--answers", action="store_true")
    parser.add_argument("--limit", type=int, default=0)
    args = parser.parse_args()
    cases = [c for name in ("bbc_dev.jsonl", "bbc_test.jsonl")
             for c in load_dataset(REPO / "evals" / "datasets" / name)]
    cases = cases[: args.limit] if args.limit else cases
    on = Assistant(Settings.from_env(group_copies=True))
    off = Assistant(Settings.from_env(group_copies=False))
    group_of = on.retriever._current().group_of
    rows = []
    for case in cases:
        a, b = on.gather(case.question), off.gather(case.question)
        seen: dict[str, set[str]] = {}
        copies_in_off = 0
        for p in b.searched:
            rep = group_of.get(p.file)
            if rep is None:
                continue
            key = " ".join(p.text.split())[:200]
            if key in seen.setdefault(rep, set()):
                copies_in_off += 1
            seen[rep].add(key)
        gold = set(case.sources)
        rows.append({"id": case.id, "answerable": case.answerable,
                     "copy_slots_off": copies_in_off,
                     "searched_off": len(b.searched), "searched_on": len(a.searched),
                     "gold_top5_on": bool(gold & {p.file for p in a.searched[:5]} |
                                          gold & {f for p in a.searched[:5] for f in p.copies}),
                     "gold_top5_off": bool(gold & {p.file for p in b.searched[:5]}),
                     "prompt_differs": [(s.file, s.start) for s in a.sources] != [(s.file, s.start) for s in b.sources]})
    differ = [r for r in rows if r["prompt_differs"]]
    result = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "questions": len(rows),
              "copy_groups": len(on.retriever._current().groups), "searched_per_question": on.settings.retrieval.search_chunks,
              "questions_with_copies_in_searched_off": sum(r["copy_slots_off"] > 0 for r in rows),
              "copy_slots_off_total": sum(r["copy_slots_off"] for r in rows),
              "gold_top5_on": sum(r["gold_top5_on"] for r in rows if r["answerable"]),
              "gold_top5_off": sum(r["gold_top5_off"] for r in rows if r["answerable"]),
              "answerable": sum(r["answerable"] for r in rows),
              "prompt_differs": len(differ), "rows": rows}
    if args.answers and differ:
        by_id = {c.id: c for c in cases}
        answered = []
        for r in differ:
            case = by_id[r["id"]]
            outcome = {}
            for name, bot in (("on", on), ("off", off)):
                ans = bot.ask(case.question)
                golds = [case.answer, *case.aliases]
                outcome[name] = {"declined": ans.declined, "answer": ans.answer[:300],
                                 "correct": (not ans.declined and contains_answer(ans.answer, golds))
                                 if case.answerable else ans.declined}
            answered.append({"id": r["id"], **outcome})
            print(json.dumps(answered[-1]), flush=True)
        result["answers"] = answered
        result["correct_on"] = sum(a["on"]["correct"] for a in answered)
        result["correct_off"] = sum(a["off"]["correct"] for a in answered)
    print(json.dumps({k: v for k, v in result.items() if k not in ("rows", "answers")}, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
