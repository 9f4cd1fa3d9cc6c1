"""The names check with and without nationalities (NORP) required, on a gold set (no chat model).

    python -m assistant.evaluate.names_ablation --dataset evals/datasets/bbc_test.jsonl [--out F]

For every case the question is searched as `ask` searches it, and the names check is run twice:
as shipped (nationalities and groups not required) and with them required, as before. A case whose
verdict differs is counted by whether it should be answered or declined: a decline the shipped
rule removes is a gain on an answerable question and a loss on one to decline.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..answering.ask import Assistant
from ..answering.checks import entities_found, understand
from ..answering.checks.question import TOPICAL
from ..settings import Settings
from .dataset import load_dataset


def run(dataset: str, settings: Settings) -> dict[str, Any]:
    """Per-case verdicts both ways, and the counts of cases whose verdict differs."""
    bot = Assistant(settings)
    rows = []
    for case in load_dataset(dataset):
        q = understand(case.question, use_ner=settings.checks.ner)
        searched = bot.gather(q).searched
        shipped = entities_found(q, searched).passed
        before = entities_found(q, searched, required=TOPICAL).passed
        rows.append({"id": case.id, "answerable": case.answerable, "shipped_passes": shipped,
                     "norp_required_passes": before})
    changed = [r for r in rows if r["shipped_passes"] != r["norp_required_passes"]]
    return {"n": len(rows), "changed": len(changed),
            "answerable_no_longer_declined": sum(r["answerable"] for r in changed),
            "to_decline_no_longer_declined": sum(not r["answerable"] for r in changed), "rows": rows}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    result = run(args.dataset, Settings.from_env())
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
