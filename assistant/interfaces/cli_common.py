"""What every command shares: the error boundary, settings from the environment and flags, the
progress bar and the filters."""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable, Optional, TypeVar

import typer

from ..errors import AssistantError

F = TypeVar("F", bound=Callable[..., Any])


def _err(message: str) -> None:
    typer.echo(message, err=True)


def boundary(func: F) -> F:
    """The one error boundary: AssistantError becomes a message and an exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except AssistantError as exc:
            _err(f"error: {exc}")
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            _err("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _settings(**overrides: Any) -> Any:
    from ..settings import Settings

    return Settings.from_env(**overrides)


def _progress_callback(label: str = "indexing") -> tuple[Callable[[int, int, str], None] | None, Callable[[], None]]:
    # A bar only on a terminal: pipes and CI logs stay clean.
    if not sys.stderr.isatty():
        return None, lambda: None
    from rich.progress import Progress

    progress = Progress(transient=True)
    task = progress.add_task(label, total=None)
    progress.start()

    def update(done: int, total: int, name: str) -> None:
        progress.update(task, completed=done, total=total, description=f"{label} {name[:40]}")

    return update, progress.stop


def _parse_filters(files: Optional[list[str]], since: Optional[str], until: Optional[str]) -> Any:
    from ..search.retrieval import Filters

    return Filters(files=tuple(files or ()), date_from=since or "", date_to=until or "")


IndexDir = typer.Option(None, "--index-dir", help="Where indexes live (default ./index, or ASSISTANT_INDEX_DIR).")
FileOnly = typer.Option(None, "--file", help="Only this file (repeatable).")
Since = typer.Option(None, "--since", help="Only articles dated on/after YYYY-MM-DD.")
Until = typer.Option(None, "--until", help="Only articles dated on/before YYYY-MM-DD.")
