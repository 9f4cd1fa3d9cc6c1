"""`assistant eval`: run the evaluation suite (or the gold timelines), or compare two runs."""

from __future__ import annotations

import json
from typing import Optional

import typer

from .cli_common import IndexDir, _progress_callback, _settings, boundary

eval_app = typer.Typer(add_completion=False, invoke_without_command=True, pretty_exceptions_enable=False,
                       help="Run the evaluation suite, or compare two runs.")


@eval_app.callback()
@boundary
def eval_run(
    ctx: typer.Context,
    dataset: Optional[str] = typer.Option(None, "--dataset", help="JSONL gold set (default: the sample set)."),
    llm: Optional[str] = typer.Option(None, "--llm", help="Chat model to evaluate."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N cases."),
    baseline: bool = typer.Option(False, "--baseline", help="Evaluate stock LlamaIndex CitationQueryEngine instead."),
    chat: Optional[str] = typer.Option(None, "--chat", help="JSONL gold conversations to run as chats too."),
    timelines: Optional[str] = typer.Option(None, "--timelines", help="JSONL gold timelines to score instead."),
    record: Optional[str] = typer.Option(None, "--record", help="Write every model request and reply to this file."),
    replay: Optional[str] = typer.Option(None, "--replay",
                                         help="Answer from a --record file instead of the model (identity checks)."),
    replay_fallback: bool = typer.Option(False, "--replay-fallback",
                                         help="With --replay: ask the model what the recording lacks."),
    index_dir: Optional[str] = IndexDir,
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Evaluate the assistant on a gold dataset and write a run folder under evals/runs/."""
    if ctx.invoked_subcommand is not None:
        return
    if timelines:
        from ..evaluate.timelines import run as run_timelines, write_report

        result = run_timelines(timelines, _settings(index_dir=index_dir, llm=llm), baseline=baseline,
                               record=record, replay=replay, replay_fallback=replay_fallback)
        folder = write_report(result)
        typer.echo(json.dumps({k: v for k, v in result.items() if k != "stories"}) if as_json
                   else (folder / "report.md").read_text(encoding="utf-8"))
        if not as_json:
            typer.echo(f"\nrun written to {folder}")
        return
    from ..evaluate.runner import run_eval

    settings = _settings(index_dir=index_dir, llm=llm)
    update, stop = _progress_callback("evaluating")
    try:
        report = run_eval(dataset, settings=settings, limit=limit, baseline=baseline, progress=update,
                          conversations=chat, record=record, replay=replay,
                          replay_fallback=replay_fallback)
    finally:
        stop()
    if as_json:
        typer.echo(json.dumps(report.summary, ensure_ascii=False))
    else:
        typer.echo(report.markdown)
        typer.echo(f"\nrun written to {report.run_dir}")


@eval_app.command("compare")
@boundary
def eval_compare(run_a: str = typer.Argument(...), run_b: str = typer.Argument(...)) -> None:
    """Print each metric's change between two runs, and the questions that flipped."""
    from ..evaluate.compare import compare_runs

    typer.echo(compare_runs(run_a, run_b))
