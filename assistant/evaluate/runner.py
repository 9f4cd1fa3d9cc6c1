"""Batch evaluation: ask every gold question once, score it, and write a run folder."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

from ..errors import AssistantError, InputError
from ..settings import REPO_DIR, Settings
from ..indexing.store import fingerprint, write_json_atomic
from ..types import Answer, Citation, Passage
from . import metrics as m
from .dataset import Conversation, EvalCase, load_conversations, load_dataset
from .scoring import alce_scores, score_case

DEFAULT_DATASET = REPO_DIR / "evals" / "datasets" / "sample.jsonl"
RETRIEVE_K = 10
ProgressFn = Callable[[int, int, str], None]

class Engine(Protocol):
    """What the runner needs from a question-answering system."""

    def ask(self, question: str) -> Answer:
        """Answer one question."""
        ...


@dataclass
class EvalReport:
    """A finished run: headline summary, per-case records, the markdown report and its folder."""

    summary: dict[str, Any]
    cases: list[dict[str, Any]] = field(default_factory=list)
    markdown: str = ""
    run_dir: Path = Path(".")


def default_dataset() -> Path:
    """The sample gold set shipped in the checkout (evals/datasets/sample.jsonl)."""
    if not DEFAULT_DATASET.is_file():
        raise InputError(f"default dataset {DEFAULT_DATASET} not found (it ships with the source checkout): "
                         "pass one with `assistant eval --dataset path/to/gold.jsonl`")
    return DEFAULT_DATASET


# Headline metrics: (key, label, the cases it averages over).
HEADLINE: list[tuple[str, str, str]] = [
    ("file_hit@5", "File hit@5", "answerable"),
    ("file_recall@5", "File recall@5", "answerable"),
    ("file_mrr@10", "File MRR@10", "answerable"),
    ("file_ndcg@10", "File nDCG@10", "answerable"),
    ("passage_hit@5", "Evidence passage hit@5", "answerable"),
    ("evidence_recall@5", "Evidence recall@5", "answerable"),
    ("correct", "Correct answers", "answerable"),
    ("em", "Exact match", "answerable"),
    ("f1", "Token F1", "answerable"),
    ("contains", "Contains gold", "answerable"),
    ("cites_gold", "Answers citing a gold file", "answered answerable"),
    ("citation_precision", "Citation precision (file)", "answered answerable"),
    ("citation_recall", "Citation recall (file)", "answered answerable"),
    ("alce_recall", "ALCE citation recall", "answered"),
    ("alce_precision", "ALCE citation precision", "answered"),
    ("correct_decline", "Correct declines", "unanswerable"),
    ("wrong_decline", "Wrong declines (lower is better)", "answerable"),
    ("crag", "CRAG score", "all"),
]


def case_value(record: dict[str, Any], key: str) -> float | None:
    """One case's value of a headline metric, or None when the metric does not cover the case."""
    if key == "correct_decline":
        return None if record["answerable"] else float(record["declined"])
    if key in ("wrong_decline", "correct"):
        if not record["answerable"]:
            return None
        return float(record["declined"] if key == "wrong_decline" else record["correct"])
    value = record.get(key)
    return None if value is None else float(value)


def _values(records: Sequence[dict[str, Any]], key: str) -> list[float]:
    return [v for v in (case_value(r, key) for r in records) if v is not None]


def summarise(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Means with 95% bootstrap CIs, decline scores, latency and token use over the case records."""
    headline: dict[str, Any] = {}
    for key, label, over in HEADLINE:
        values = _values(records, key)
        if values:
            mean, low, high = m.bootstrap_ci(values)
            headline[key] = {"label": label, "over": over, "n": len(values), "mean": mean, "low": low, "high": high}
        else:
            headline[key] = {"label": label, "over": over, "n": 0, "mean": None, "low": None, "high": None}
    extra = {}
    for key in ("file_hit@1", "file_hit@3", "file_recall@1", "file_recall@3", "passage_hit@1",
                "passage_hit@3", "passage_mrr@10"):
        values = _values(records, key)
        extra[key] = sum(values) / len(values) if values else None
    by_type: dict[str, dict[str, Any]] = {}
    for r in records:
        t = by_type.setdefault(r["type"], {"n": 0, "correct": 0, "declined": 0})
        t["n"] += 1
        t["correct"] += int(r["correct"])
        t["declined"] += int(r["declined"])
    latencies = [r["latency_s"] for r in records]
    first = [r["timings"]["first_token_s"] for r in records if "first_token_s" in r["timings"]]
    called = [r["prompt_tokens"] for r in records if r["prompt_tokens"]]
    tokens = ({"n_calls": len(called), "mean": sum(called) / len(called), "p95": m.latency_summary(called)["p95"]}
              if called else {"n_calls": 0, "mean": None, "p95": None})
    return {
        "n": len(records),
        "n_answerable": sum(r["answerable"] for r in records),
        "n_unanswerable": sum(not r["answerable"] for r in records),
        "n_declined": sum(r["declined"] for r in records),
        "n_errors": sum(bool(r.get("error")) for r in records),
        "n_worded_declines": sum(r["worded_decline"] and not r["declined"] for r in records),
        "headline": headline,
        "retrieval_extra": extra,
        "decline": m.decline_scores([{"answerable": r["answerable"], "declined": r["declined"],
                                      "correct": r["correct"]} for r in records]),
        "latency_s": m.latency_summary(latencies) if latencies else None,
        "first_token_s": m.latency_summary(first) if first else None,
        "prompt_tokens": tokens,
        "by_type": {k: {**v, "accuracy": v["correct"] / v["n"]} for k, v in sorted(by_type.items())},
    }


def _run_dir(runs_dir: str | Path, settings: Settings, baseline: bool) -> Path:
    root = Path(runs_dir)
    name = f"{time.strftime('%Y%m%d-%H%M%S')}_{fingerprint(settings)}{'_baseline' if baseline else ''}"
    path, n = root / name, 1
    while path.exists():  # two runs started in the same second keep separate folders
        n += 1
        path = root / f"{name}-{n}"
    try:
        path.mkdir(parents=True)
    except OSError as exc:
        raise InputError(f"cannot create the run folder {path} ({exc.strerror}); "
                         "run from a writable directory or pass runs_dir") from None
    return path


def _engine(settings: Settings, baseline: bool, record: str | Path | None = None, replay: str | Path | None = None,
            replay_fallback: bool = False) -> tuple[Engine, Callable[[str, int], list[Passage]], str]:
    from ..indexing.build import build_index, index_exists
    from ..search.retrieval import get_retriever

    if not index_exists(settings):
        build_index(settings.index.corpus_dir, settings=settings)
    if baseline:
        from .baseline import StockCitationEngine

        stock = StockCitationEngine(settings)
        return stock, stock.retrieve, "llamaindex:CitationQueryEngine"
    from ..answering.ask import Assistant

    retriever = get_retriever(settings)
    from ..backends.recorded import model_for_eval

    llm = model_for_eval(settings, record, replay, replay_fallback)
    # Traced: every check runs on every case, so the report can switch each off afterwards.
    return (Assistant(settings, trace=True, llm=llm, retriever=retriever), lambda q, k: retriever.search(q, k=k),
            "assistant")


def _warm_up(settings: Settings, embed: Callable[[Sequence[str]], list[list[float]]], replay: bool = False) -> None:
    # Load both models before the clock starts, so the first case is not charged for loading.
    from ..backends import get_llm

    embed(["warm up"])
    if settings.model.llm.startswith("local:") and not replay:  # remote models have nothing to load; spare the API call
        get_llm(settings).complete([{"role": "user", "content": "Say OK."}], max_tokens=2)


def _chat_items(engine: Engine, conversations: list[Conversation], baseline: bool
                ) -> Iterator[tuple[EvalCase, Callable[[str], Answer], bool]]:
    """Each turn of each conversation, asked through one chat session per conversation."""
    if baseline or not conversations:
        return  # the stock engine has no conversation memory: chats are ours only
    from ..answering.chat import ChatSession

    for conversation in conversations:
        session = ChatSession(engine)  # type: ignore[arg-type]
        for turn in conversation.turns:
            yield turn, session.ask, True


def run_eval(dataset: str | Path | None = None, settings: Settings | None = None, limit: int | None = None,
             baseline: bool = False, progress: ProgressFn | None = None,
             runs_dir: str | Path = "evals/runs", conversations: str | Path | None = None,
             record: str | Path | None = None, replay: str | Path | None = None,
             replay_fallback: bool = False) -> EvalReport:
    """Evaluate the assistant (or the stock LlamaIndex baseline) on a gold set and write a run folder.

    `record` writes every chat-model request and reply to a file; `replay` answers from such a file
    instead of a model, and a case whose prompts differ from the recording gets an error row (with
    `replay_fallback`, the requests the recording lacks go to the model instead)."""
    if (record or replay) and baseline:
        raise InputError("--record and --replay are for our engine, not the stock baseline")
    from ..search.retrieval import get_retriever

    settings = settings or Settings.from_env()
    path = Path(dataset) if dataset else default_dataset()
    cases = load_dataset(path)
    if limit is not None:
        if limit < 1:
            raise InputError(f"--limit {limit}: give a positive number of cases")
        cases = cases[:limit]
    chats = load_conversations(conversations) if conversations else []
    engine, retrieve, engine_name = _engine(settings, baseline, record, replay, replay_fallback)
    retriever = get_retriever(settings)
    embed = retriever.embed_texts
    chunks = retriever.all_chunks()
    dates = {c.file: c.date for c in chunks}
    _warm_up(settings, embed, replay=bool(replay))
    run_dir = _run_dir(runs_dir, settings, baseline)
    write_json_atomic(run_dir / "settings.json", {**settings.public_dict(), "engine": engine_name,
                                                  "dataset": str(path), "limit": limit,
                                                  "conversations": str(conversations or "")})
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    records: list[dict[str, Any]] = []
    items = [(case, engine.ask, False) for case in cases] + list(_chat_items(engine, chats, baseline))
    with open(run_dir / "cases.jsonl", "w", encoding="utf-8") as out:
        for n, (case, ask, chat) in enumerate(items, 1):
            t0 = time.perf_counter()
            error = ""
            try:
                answer = ask(case.question)
            except AssistantError:
                raise  # a setup problem (model missing, store down) fails every case alike
            except Exception as exc:  # noqa: BLE001 - one engine bug must not lose an hour-long run
                error = f"{type(exc).__name__}: {exc}"
                answer = Answer(question=case.question, answer="", declined=False)
            latency = time.perf_counter() - t0
            relevant = {c.chunk_id for c in chunks if case.evidence and m.passage_relevant(c.text, case.evidence)}
            query = answer.standalone_question or case.question
            record = score_case(case, answer, latency, retrieve(query, RETRIEVE_K), relevant, dates, embed)
            record.update(error=error, chat=chat, traced=engine_name == "assistant")
            records.append(record)
            # One line per finished case: a killed run still shows how far it got.
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            out.flush()
            if progress:
                progress(n, len(items), case.id)
    run = {"name": run_dir.name, "engine": engine_name, "llm": settings.model.llm, "embedder": settings.index.embedder,
           "fingerprint": fingerprint(settings), "dataset": str(path), "limit": limit,
           "conversations": str(conversations or ""), "gate_none_max": settings.checks.gate_none_max,
           "support_min": settings.checks.support_min, "checks_off": sorted(settings.checks.checks_off),
           "started": started, "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    if replay:  # how many requests the recording lacked: 0 means every prompt was the recorded one
        run.update(replay=str(replay), replay_misses=len(getattr(engine.llm, "misses", [])))
    summary, markdown = _write_results(run_dir, records, run, embed)
    return EvalReport(summary=summary, cases=records, markdown=markdown, run_dir=run_dir)


def rejudge_run(run_dir: str | Path, settings: Settings | None = None) -> EvalReport:
    """Re-score a finished run's stored answers with the current citation judge (no model is asked).

    Only the judge-dependent numbers change (ALCE scores and the support checker's agreement);
    `settings` must name the run's index, whose embedder the judge uses.
    """
    from ..search.retrieval import get_retriever

    run_dir = Path(run_dir)
    settings = settings or Settings.from_env()
    retriever = get_retriever(settings)
    dates = {c.file: c.date for c in retriever.all_chunks()}
    try:
        records = [json.loads(line) for line in (run_dir / "cases.jsonl").read_text(encoding="utf-8").splitlines()
                   if line.strip()]
        old = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{run_dir} is not a finished run folder ({exc}); give one written by `assistant eval`") from None
    for r in records:
        answer = Answer(question=r["question"], answer=r["answer"], declined=r["declined"],
                        citations=[Citation(**c) for c in r["citations"]])
        r.update(alce_scores(answer, dates, retriever.embed_texts))
    (run_dir / "cases.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                                         encoding="utf-8")
    run = {**old.get("run", {}), "rejudged": time.strftime("%Y-%m-%d %H:%M:%S")}
    summary, markdown = _write_results(run_dir, records, run, retriever.embed_texts)
    return EvalReport(summary=summary, cases=records, markdown=markdown, run_dir=run_dir)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def check_summary(records: Sequence[dict[str, Any]], run: dict[str, Any]) -> dict[str, Any]:
    """Decline reasons, how often each check fired, answers from unrelated articles, and (for a
    traced run) each check switched off and the decline threshold swept."""
    from . import ablation

    reasons: dict[str, int] = {}
    for r in records:
        if r["declined"]:
            key = r.get("decline_reason") or "unknown"
            reasons[key] = reasons.get(key, 0) + 1
    unrelated = [r["id"] for r in records if not r["declined"] and r["cited_files"]
                 and (not r["answerable"] or not set(r["cited_files"]) & set(r["gold_sources"]))]
    out: dict[str, Any] = {"decline_reasons": dict(sorted(reasons.items())), "check_fired": ablation.fire_counts(records),
                           "answered_from_unrelated_article": unrelated}
    traced = ablation.traced(records)
    if traced and run.get("gate_none_max") is not None:
        gate, support = float(run["gate_none_max"]), float(run["support_min"])
        out["ablation"] = ablation.ablations(traced, gate, support)
        out["sweep_gate"] = ablation.sweep(traced, support)
        out["sweep_support"] = ablation.sweep(traced, support, name="support_min", fixed_gate=gate)
    return out


def _write_results(run_dir: Path, records: list[dict[str, Any]], run: dict[str, Any],
                   embed: Callable[[Sequence[str]], list[list[float]]]) -> tuple[dict[str, Any], str]:
    from .report import render_markdown, write_chart, write_tradeoff
    from .support_calibration import calibrate

    questions = [r for r in records if not r.get("chat")]
    summary = summarise(questions)
    summary.update(check_summary(questions, run))
    chat = [r for r in records if r.get("chat")]
    if chat:
        summary["chat"] = {"n": len(chat), "n_conversations": len({r["id"].rsplit(".", 1)[0] for r in chat}),
                           "decline": m.decline_scores([{"answerable": r["answerable"], "declined": r["declined"],
                                                         "correct": r["correct"]} for r in chat]),
                           "correct": _mean([float(r["correct"]) for r in chat if r["answerable"]]),
                           "follow_up_correct": _mean([float(r["correct"]) for r in chat
                                                       if r["answerable"] and not r["id"].endswith(".t1")])}
    checker = calibrate(embed=embed)["current"]
    summary["support_checker"] = {k: checker[k] for k in ("lexical_min", "semantic_min", "n", "accuracy", "precision",
                                                          "recall", "f1", "kappa", "confusion")}
    summary["run"] = run
    markdown = render_markdown(summary, records)
    write_json_atomic(run_dir / "summary.json", summary)
    (run_dir / "report.md").write_text(markdown, encoding="utf-8")
    write_chart(summary, run_dir / "chart.png")
    write_tradeoff(summary, run_dir / "tradeoff.png")
    return summary, markdown
