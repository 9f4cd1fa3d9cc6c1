"""The indexer's overlap: files are read, cleaned and chunked by one background thread while the
caller embeds, and commit groups are written to the store by another; plus the progress meter."""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")
ProgressFn = Callable[[int, int, str], None]


def read_ahead(items: Iterable[T], work: Callable[[T], R], depth: int = 64) -> Iterator[R]:
    """`work(item)` for every item, in order, computed by one background thread at most `depth`
    items ahead of the consumer (embedding releases the GIL, so reading overlaps it). An exception
    from `work` is raised here, at its item; closing the iterator early cancels the rest."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="index-reader") as pool:
        source = iter(items)
        window: deque[Future[R]] = deque(pool.submit(work, item) for _, item in zip(range(depth), source))
        try:
            while window:
                future = window.popleft()
                for item in source:  # keep the window full
                    window.append(pool.submit(work, item))
                    break
                yield future.result()
        finally:
            for future in window:
                future.cancel()


class Writer:
    """Runs commit groups one at a time on a background thread, in order; `submit` waits for the
    previous group first (so at most one group is in flight and its error surfaces at once)."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="index-writer")
        self._last: Future[None] | None = None

    def submit(self, job: Callable[[], None]) -> None:
        self.wait()
        self._last = self._pool.submit(job)

    def wait(self) -> None:
        """Block until the group in flight is written; raise its error, if any."""
        last, self._last = self._last, None
        if last is not None:
            last.result()

    def close(self) -> None:
        """Wait for the group in flight (its error is dropped when another one is already raised)."""
        self._pool.shutdown(wait=True)


class Meter:
    """Progress once per file, naming chunks per second and the time left once embedding started."""

    def __init__(self, progress: ProgressFn | None, total_files: int) -> None:
        self.progress = progress
        self.total = total_files
        self.chunks_seen = 0
        self.embedded = 0
        self.embed_started: float | None = None

    def file(self, done: int, rel: str, chunks: int = 0) -> None:
        self.chunks_seen += chunks
        if self.progress is None:
            return
        status = self.status(done)
        self.progress(done, self.total, f"{status} · {rel}" if status else rel)

    def embedding(self, chunks: int) -> None:
        """Record that `chunks` more were embedded (the clock starts at the first group)."""
        now = time.perf_counter()
        if self.embed_started is None:
            self.embed_started = now - 1e-9
        self.embedded += chunks

    def start_group(self) -> None:
        if self.embed_started is None:
            self.embed_started = time.perf_counter()

    def status(self, done: int) -> str:
        """'41 chunks/s, 3:20 left' (empty before the first group is embedded)."""
        if self.embed_started is None or not self.embedded or not done:
            return ""
        rate = self.embedded / max(time.perf_counter() - self.embed_started, 1e-9)
        expected = self.chunks_seen / done * self.total  # chunks the whole folder will have, at this pace
        left = max(expected - self.embedded, 0.0) / rate
        return f"{rate:.0f} chunks/s, {int(left // 60)}:{int(left % 60):02d} left"
