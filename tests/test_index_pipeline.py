"""The indexer's overlap helpers: reading ahead on a thread, writing groups in order, the meter."""

from __future__ import annotations

import threading
import time

import pytest

from assistant.indexing.pipeline import Meter, Writer, read_ahead


def test_read_ahead_keeps_order_and_works_on_another_thread() -> None:
    threads: set[str] = set()

    def work(n: int) -> int:
        threads.add(threading.current_thread().name)
        time.sleep(0.001 * (n % 3))
        return n * n

    assert list(read_ahead(range(50), work, depth=4)) == [n * n for n in range(50)]
    assert threading.current_thread().name not in threads


def test_read_ahead_runs_ahead_of_a_slow_consumer() -> None:
    started: list[int] = []

    def work(n: int) -> int:
        started.append(n)
        return n

    results = read_ahead(range(10), work, depth=5)
    assert next(results) == 0
    time.sleep(0.2)  # the consumer "embeds"; the reader fills its window meanwhile
    assert len(started) >= 5
    assert list(results) == list(range(1, 10))


def test_read_ahead_raises_at_the_failing_item_and_stops_reading() -> None:
    done: list[int] = []

    def work(n: int) -> int:
        if n == 3:
            raise ValueError("bad file")
        done.append(n)
        return n

    got = []
    with pytest.raises(ValueError, match="bad file"):
        for value in read_ahead(range(100), work, depth=4):
            got.append(value)
    assert got == [0, 1, 2] and len(done) < 20


def test_writer_runs_groups_in_order_and_surfaces_an_error_at_the_next_submit() -> None:
    order: list[int] = []
    writer = Writer()
    writer.submit(lambda: (time.sleep(0.05), order.append(1)))
    writer.submit(lambda: order.append(2))  # waits for the first group
    writer.wait()
    assert order == [1, 2]
    writer.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        writer.submit(lambda: order.append(3))
    writer.close()
    assert order == [1, 2]


def test_meter_names_rate_and_time_left_once_embedding_started() -> None:
    seen: list[tuple[int, int, str]] = []
    meter = Meter(lambda done, total, name: seen.append((done, total, name)), total_files=10)
    meter.file(1, "a.txt", chunks=50)
    assert seen[-1] == (1, 10, "a.txt")
    meter.start_group()
    meter.embed_started -= 2.0  # two seconds of embedding for the first 50 chunks
    meter.embedding(50)
    meter.file(2, "b.txt", chunks=50)
    name = seen[-1][2]
    assert name.endswith(" · b.txt") and "chunks/s" in name
    rate = int(name.split()[0])
    assert 20 <= rate <= 26  # 50 chunks in about 2 s
    minutes, seconds = name.split(", ")[1].split()[0].split(":")
    assert 16 <= int(minutes) * 60 + int(seconds) <= 20  # 450 more chunks at about 25/s
