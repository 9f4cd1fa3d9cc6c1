"""Evidence recall: is the gold evidence inside the prompt the assistant would send? No chat model.

For every answerable gold case, the question goes through `Assistant.gather` (retrieval and
evidence selection, exactly as `ask` does them) and the labelled sources are compared with the
gold `evidence` sentences by their character spans in the file: a gold sentence is in the prompt
when a source's span covers it. A case counts as found when all its evidence sentences are in
(`all`), or when at least one is (`any`). Prompt tokens are the evidence block's characters / 4
(headings included). It runs in about a minute per split, so every selection idea is tried here
before a full evaluation.

    python -m assistant.evaluate.evidence --dataset evals/datasets/bbc_dev.jsonl [--set evidence_tokens=600]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..labels import Source
from .dataset import EvalCase, load_dataset


@dataclass(frozen=True)
class EvidenceRow:
    """One case: how much of its gold evidence the prompt holds, and at what cost."""

    id: str
    type: str
    n_evidence: int
    found: int
    answer_in: bool
    tokens: int

    @property
    def all_in(self) -> bool:
        """Every gold evidence sentence is in the prompt."""
        return self.found == self.n_evidence

    @property
    def any_in(self) -> bool:
        """At least one gold evidence sentence is in the prompt."""
        return self.found > 0


def _norm(text: str) -> str:
    return " ".join(text.split())


def locate(evidence: str, sources: Sequence[Source], texts: dict[str, str]) -> bool:
    """Is this gold sentence inside one source's span of its file (or, failing an exact place in
    the stored text, inside one source's text with whitespace squeezed)?"""
    for s in sources:
        text = texts.get(s.file)
        if text is not None:
            at = text.find(evidence)
            while at >= 0:
                if s.start <= at and at + len(evidence) <= s.end:
                    return True
                at = text.find(evidence, at + 1)
        if _norm(evidence) in _norm(s.text):
            return True
    return False


def prompt_block(sources: Sequence[Source]) -> str:
    """The evidence block of the prompt, as the answer prompt lays it out."""
    from ..answering.ask import Assistant

    return Assistant.messages("", list(sources))[1]["content"]


def case_row(case: EvalCase, sources: Sequence[Source], texts: dict[str, str]) -> EvidenceRow:
    """Score one case's prompt sources against its gold evidence."""
    found = sum(1 for e in case.evidence if locate(e, sources, texts))
    golds = [case.answer, *case.aliases]
    gold_files = set(case.sources)
    answer_in = any(_norm(g).lower() in _norm(s.text).lower() for g in golds if g for s in sources
                    if s.file in gold_files)
    block = prompt_block(sources)
    return EvidenceRow(case.id, case.type, len(case.evidence), found, answer_in, len(block) // 4)


def file_texts(corpus_dir: str, sources: Sequence[Source]) -> dict[str, str]:
    """The text of each source's file as the loader reads it (offsets in sources point into it)."""
    from ..reading.loaders import load_document

    out = {}
    for f in {s.file for s in sources}:
        try:
            out[f] = load_document(Path(corpus_dir) / f, f, 50_000_000).text
        except Exception:  # noqa: BLE001 - a file that cannot be read is matched by text instead
            continue
    return out


def measure(assistant: Any, cases: Sequence[EvalCase]) -> list[EvidenceRow]:
    """Gather evidence for every answerable case and score it (no chat model is called)."""
    rows = []
    for case in cases:
        if not case.answerable or not case.evidence:
            continue
        ev = assistant.gather(case.question)
        rows.append(case_row(case, ev.sources, file_texts(assistant.settings.index.corpus_dir, ev.sources)))
    return rows


def training_rows(assistant: Any, cases: Sequence[EvalCase]) -> tuple[list[dict[str, float]], list[int], list[str]]:
    """Every candidate sentence of every answerable case with its features, labelled 1 when it
    overlaps a gold evidence sentence (for fitting `evidence.WEIGHTS`)."""
    from ..answering.checks import understand

    feats: list[dict[str, float]] = []
    labels: list[int] = []
    groups: list[str] = []
    for case in cases:
        if not case.answerable or not case.evidence:
            continue
        q = understand(case.question, use_ner=False)
        passages = assistant.retriever.search(q.text, k=20)[:assistant.settings.retrieval.candidate_chunks]
        ranked = assistant.rank_sentences(q, passages)
        texts = {f: a.full_text() for f, a in assistant.retriever.articles([p.file for p in passages]).items()}
        spans = []
        for e in case.evidence:
            for f, t in texts.items():
                at = t.find(e)
                if at >= 0:
                    spans.append((f, at, at + len(e)))
        for item in ranked:
            s = item.sentence
            hit = any(f == s.file and s.start < b and a < s.end for f, a, b in spans)
            feats.append(dict(item.features))
            labels.append(int(hit))
            groups.append(case.id)
    return feats, labels, groups


def fit(feats: Sequence[dict[str, float]], labels: Sequence[int]) -> dict[str, float]:
    """Logistic-regression weights over the features (scikit-learn, an evaluation-only dependency)."""
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        raise SystemExit("fitting needs scikit-learn: pip install scikit-learn") from None
    names = sorted(feats[0])
    model = LogisticRegression(C=1.0, max_iter=1000)
    model.fit([[f[n] for n in names] for f in feats], list(labels))
    weights = {n: round(float(w), 3) for n, w in zip(names, model.coef_[0])}
    weights["bias"] = round(float(model.intercept_[0]), 3)
    return weights


def summarise(rows: Sequence[EvidenceRow]) -> dict[str, Any]:
    """Recall (all / any / answer string) and tokens, overall and by question type."""
    def block(items: Sequence[EvidenceRow]) -> dict[str, Any]:
        n = len(items) or 1
        return {"n": len(items), "all_in": round(sum(r.all_in for r in items) / n, 3),
                "any_in": round(sum(r.any_in for r in items) / n, 3),
                "answer_in": round(sum(r.answer_in for r in items) / n, 3),
                "tokens_median": statistics.median([r.tokens for r in items]) if items else 0,
                "tokens_mean": round(sum(r.tokens for r in items) / n, 1)}

    out = block(rows)
    out["by_type"] = {t: block([r for r in rows if r.type == t]) for t in sorted({r.type for r in rows})}
    return out


def _overrides(pairs: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, _, raw = pair.partition("=")
        out[key] = float(raw) if "." in raw else int(raw)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: print (and optionally write) the evidence-recall summary for a gold set."""
    from ..answering.ask import Assistant
    from ..settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--set", action="append", default=[], help="a setting override, e.g. evidence_tokens=600")
    parser.add_argument("--sweep", default="", help="one setting over values, e.g. evidence_tokens=300,450,600")
    parser.add_argument("--fit", action="store_true", help="fit the sentence-score weights on this set and print them")
    parser.add_argument("--out", default=None, help="write the summary and per-case rows as JSON here")
    args = parser.parse_args(argv)
    settings = Settings.from_env().with_(**_overrides(args.set))
    cases = load_dataset(args.dataset)
    if args.fit:
        feats, labels, _ = training_rows(Assistant(settings), cases)
        print(json.dumps(fit(feats, labels)), f"({len(labels)} sentences, {sum(labels)} gold)")
        return
    if args.sweep:
        key, _, values = args.sweep.partition("=")
        curve = []
        for value in values.split(","):
            point = summarise(measure(Assistant(settings.with_(**_overrides([f"{key}={value}"]))), cases))
            curve.append({key: value, **{k: v for k, v in point.items() if k != "by_type"}})
            print(json.dumps(curve[-1]), flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps({"settings": args.set, "dataset": args.dataset, "sweep": curve},
                                                 indent=1), encoding="utf-8")
        return
    rows = measure(Assistant(settings), cases)
    summary = summarise(rows)
    print(json.dumps({k: v for k, v in summary.items() if k != "by_type"}))
    for t, b in summary["by_type"].items():
        print(f"  {t:14s} n={b['n']:3d} all={b['all_in']:.3f} any={b['any_in']:.3f} tok={b['tokens_median']}",
              file=sys.stderr)
    if args.out:
        Path(args.out).write_text(json.dumps({"settings": args.set, "dataset": args.dataset, "summary": summary,
                                              "rows": [r.__dict__ for r in rows]}, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
