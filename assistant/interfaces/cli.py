"""Command line: prints, parses and picks exit codes; everything else lives in the library."""

from __future__ import annotations

import json
import sys
from typing import Any, Optional

import typer

from ..text_utils import clip
from .cli_common import FileOnly, IndexDir, Since, Until, _err, _parse_filters, _progress_callback, _settings, boundary
from .cli_eval import eval_app

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Answer questions about a folder of news articles, with citations.")
app.add_typer(eval_app, name="eval")



@app.command()
@boundary
def index(
    path: Optional[str] = typer.Argument(None, help="Folder of articles (default: the sample corpus)."),
    index_dir: Optional[str] = IndexDir,
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Clean, chunk and embed a folder of articles into the index (incremental)."""
    from ..indexing.build import build_index

    settings = _settings(index_dir=index_dir)
    update, stop = _progress_callback()
    try:
        report = build_index(path, settings=settings, progress=update)
    finally:
        stop()
    if as_json:
        typer.echo(json.dumps(report.to_dict()))
        return
    typer.echo(f"indexed {path or settings.index.corpus_dir} into {report.index_path}: {report.added} added, "
               f"{report.updated} updated, {report.removed} removed, {report.unchanged} unchanged; "
               f"{report.chunks} chunks in the index")
    for skipped in report.skipped:
        typer.echo(f"  skipped {skipped.file}: {skipped.reason}")


@app.command("search")
@boundary
def search_cmd(
    text: str = typer.Argument(..., help="What to look for."),
    k: int = typer.Option(5, "--k", help="How many passages."),
    file: Optional[list[str]] = FileOnly,
    since: Optional[str] = Since,
    until: Optional[str] = Until,
    index_dir: Optional[str] = IndexDir,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show the top passages for a query (retrieval only, no language model)."""
    from ..search.retrieval import search

    passages = search(text, _settings(index_dir=index_dir), k=k, filters=_parse_filters(file, since, until))
    if as_json:
        typer.echo(json.dumps([p.to_dict() for p in passages], ensure_ascii=False))
        return
    if not passages:
        typer.echo("no passages found")
    for n, p in enumerate(passages, 1):
        typer.echo(f"{n}. {p.file} [{p.start}:{p.end}] score {p.score:.4f}")
        typer.echo("   " + clip(p.text, 400))
        if p.copies:
            typer.echo(f"   (copy: the same article is in {', '.join(p.copies)})")


def _print_answer(answer: Any) -> None:
    typer.echo(answer.answer)
    _print_reason_and_notes(answer)
    if answer.declined and answer.sources:
        typer.echo("\nClosest passages:")
        for p in answer.sources[:3]:
            typer.echo(f"  - {p.file} [{p.start}:{p.end}]: {clip(p.text, 200)}")
    if answer.citations:
        typer.echo("\nSources:")
        for c in answer.citations:
            mark = " (inferred)" if c.inferred else ""
            typer.echo(f"  [{c.label}] {c.file} [{c.start}:{c.end}]{mark}: \"{' '.join(c.quote.split())}\"")
            if c.copies:
                typer.echo(f"       also carried by: {', '.join(c.copies)}")
    _print_withheld(answer)


def _print_reason_and_notes(answer: Any) -> None:
    if answer.declined and answer.decline_reason:
        verdict = next((v for v in answer.verdicts if v.name == answer.decline_reason), None)
        why = f": {verdict.reason}" if verdict is not None else ""
        typer.secho(f"(declined by the `{answer.decline_reason}` check{why})", dim=True)
    for note in answer.notes:
        typer.secho(f"Note: {note}", dim=True)


def _print_withheld(answer: Any) -> None:
    withheld = list(answer.unsupported_sentences) + list(answer.uncited_sentences)
    if withheld and not answer.declined:
        typer.echo("\nWithheld from the answer (no source supports it):")
        for sentence in withheld:
            typer.echo(f"  ! {sentence}")


@app.command()
@boundary
def ask(
    question: str = typer.Argument(..., help="The question."),
    llm: Optional[str] = typer.Option(None, "--llm", help="Chat model, e.g. local:qwen2.5-coder-0.5b, openai:gpt-4o-mini."),
    file: Optional[list[str]] = FileOnly,
    since: Optional[str] = Since,
    until: Optional[str] = Until,
    index_dir: Optional[str] = IndexDir,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Answer a question from the indexed articles, with citations (through `assistant serve` when one runs)."""
    from .client import ask_via_server, find_server

    settings = _settings(index_dir=index_dir, llm=llm)
    url = find_server(settings, llm=llm)
    if url:
        answer = ask_via_server(url, question, files=file or (), since=since or "", until=until or "",
                                token=settings.server.token)
    else:
        from ..answering.ask import Assistant

        answer = Assistant(settings, on_message=_err).ask(question, filters=_parse_filters(file, since, until))
    if as_json:
        typer.echo(json.dumps(answer.to_dict(), ensure_ascii=False))
    else:
        _print_answer(answer)


@app.command()
@boundary
def chat(
    llm: Optional[str] = typer.Option(None, "--llm", help="Chat model."),
    index_dir: Optional[str] = IndexDir,
) -> None:
    """A conversation in the terminal: /sources, /reset, /exit. Reads one question per line from a pipe."""
    from .client import RemoteChat, find_server

    interactive = sys.stdin.isatty()
    settings = _settings(index_dir=index_dir, llm=llm)
    url = find_server(settings, llm=llm)
    session: Any
    if url:
        session = RemoteChat(url, token=settings.server.token)
    else:
        from ..answering.ask import Assistant
        from ..answering.chat import ChatSession

        session = ChatSession(Assistant(settings, on_message=_err))
    from ..answering.ask import Revision
    if interactive:
        typer.echo("Ask about the articles. Commands: /sources /reset /exit")
    while True:
        try:
            line = input("> " if interactive else "")
        except EOFError:
            break
        line = line.strip()
        if not line:
            continue
        if line in ("/exit", "/quit"):
            break
        if line == "/reset":
            session.reset()
            typer.echo("(history cleared)")
            continue
        if line == "/sources":
            last = session.last_answer
            if last is None:
                typer.echo("(no answer yet)")
            else:
                for p in last.sources:
                    typer.echo(f"  - {p.file} [{p.start}:{p.end}]: {clip(p.text, 200)}")
            continue
        if not interactive:
            typer.echo(f"> {line}")
        answer = None
        streamed = []
        if url:
            # The server answers whole turns (rewriting follow-ups itself): shown once checked.
            answer = session.ask(line)
            if answer.standalone_question and answer.standalone_question != line:
                typer.secho(f"  ({answer.standalone_question})", dim=True)
            streamed.append(answer.answer)
            typer.echo(answer.answer, nl=False)
        else:
            standalone = session.standalone(line)
            if standalone != line:
                # The follow-up as it was searched, so the user sees what was asked.
                typer.secho(f"  ({standalone})", dim=True)
            screen = _Draft(live=sys.stdout.isatty())
            for event in session.stream(line, standalone=standalone):
                if isinstance(event, Revision):
                    screen.replace(event.lstrip("\n"))
                elif isinstance(event, str):
                    screen.write(event)
                else:
                    answer = event
            screen.finish()
        typer.echo("")
        if answer is not None:
            _print_reason_and_notes(answer)
            for c in answer.citations:
                typer.echo(f"  [{c.label}] {c.file}: \"{clip(c.quote, 160)}\"")
            _print_withheld(answer)


class _Draft:
    """The answer as it streams: on a terminal, a draft the checks change is erased and replaced;
    elsewhere (a pipe) nothing is shown until the checked answer is known, so nothing prints twice."""

    def __init__(self, live: bool) -> None:
        self.live = live
        self.text = ""

    def write(self, delta: str) -> None:
        self.text += delta
        if self.live:
            typer.echo(delta, nl=False)

    def replace(self, text: str) -> None:
        if self.live and self.text:
            import shutil

            width = max(20, shutil.get_terminal_size().columns)
            rows = sum(max(1, -(-len(part) // width)) for part in self.text.split("\n"))
            # Back to the first row of the draft, then clear to the end of the screen.
            # Written raw: typer.echo strips control sequences when it thinks the output is not a terminal.
            sys.stdout.write("\r" + (f"\x1b[{rows - 1}F" if rows > 1 else "") + "\x1b[J")
            sys.stdout.flush()
        self.text = text
        if self.live:
            typer.echo(text, nl=False)

    def finish(self) -> None:
        if not self.live:
            typer.echo(self.text, nl=False)


@app.command()
@boundary
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; not loopback needs a token."),
    port: int = typer.Option(8765, "--port", help="Port (0: any free one)."),
    token: Optional[str] = typer.Option(None, "--token", help="Bearer token clients must send "
                                        "(default ASSISTANT_SERVER_TOKEN)."),
    index_dir: Optional[str] = IndexDir,
    llm: Optional[str] = typer.Option(None, "--llm", help="Chat model to load."),
) -> None:
    """Serve answers over HTTP (/v1/ask and OpenAI-compatible /v1/chat/completions), models loaded once."""
    from .server import serve as run

    settings = _settings(index_dir=index_dir, llm=llm)
    run(settings, host=host, port=port, token=settings.server.token if token is None else token)


@app.command()
@boundary
def timeline(
    topic: str = typer.Argument(..., help="The story, e.g. \"seafood import ban\"."),
    since: Optional[str] = typer.Option(None, "--since", help="Only events on/after YYYY-MM-DD."),
    until: Optional[str] = typer.Option(None, "--until", help="Only events on/before YYYY-MM-DD."),
    llm: Optional[str] = typer.Option(None, "--llm", help="Chat model."),
    index_dir: Optional[str] = IndexDir,
    as_json: bool = typer.Option(False, "--json", help="Print the events as a JSON list."),
) -> None:
    """Dated events about a topic across the articles, in date order, each with its cited quote."""
    from ..answering.ask import Assistant
    from ..news.timeline import build_timeline

    assistant = Assistant(_settings(index_dir=index_dir, llm=llm), on_message=_err)
    result = build_timeline(assistant.retriever, assistant.llm, topic, since=since or "", until=until or "")
    if as_json:
        typer.echo(json.dumps([e.to_dict() for e in result.events], ensure_ascii=False))
        return
    for e in result.events:
        mark = " (planned)" if e.status == "planned" else ""
        shown = e.date if e.precision == "day" else f"{e.date} ({e.precision})"
        typer.echo(f"{shown}{mark}  {clip(e.event, 240)}")
        for c in e.citations:
            also = f"; also in {', '.join(c.copies)}" if c.copies else ""
            dated = f", article of {e.article_date}" if e.article_date and c is e.citations[0] else ""
            typer.echo(f"    [{c.file} {c.start}:{c.end}{dated}{also}]")
    for note in result.notes:
        typer.secho(f"Note: {note}", dim=True)


@app.command()
@boundary
def verify(
    answer_file: str = typer.Argument(..., help="An answer saved with `assistant ask --json`."),
    corpus: Optional[str] = typer.Option(None, "--corpus", help="Folder the answer came from (default: as recorded)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Re-check that every quote of a saved answer still sits at its offsets in the current files."""
    from ..answering.provenance import load_answer, verify as run_verify

    report = run_verify(load_answer(answer_file), corpus, _settings())
    if as_json:
        typer.echo(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        for c in report.checks:
            typer.echo(f"[{c.label}] {c.file} [{c.start}:{c.end}]: {c.status}" + (f" ({c.detail})" if c.detail else ""))
        for rel in report.changed_files:
            typer.echo(f"changed since the answer: {rel}")
        for note in report.notes:
            typer.echo(f"note: {note}")
        typer.echo("verified: every quote is where the answer says" if report.ok else "NOT verified")
    if not report.ok:
        raise typer.Exit(1)


def main() -> None:
    """Console entry point."""
    app()


if __name__ == "__main__":
    main()
