"""Journal benchmarks: appends/s, commit latency per batch size, the sustained pipeline with the
group commit loop (and how long the event loop ever stalls meanwhile), backlog drain, bytes/entry.

    .venv/bin/python bench/journal.py [--runs 5] [--dir DIR] [--seconds 3]

Every figure is the median of --runs runs, each on a fresh journal in DIR (default: the system
temp directory; commits fsync, so the filesystem and disk matter: use the target's storage).

(a) append: ``Journal.append`` of 200 000 readings into the in-memory batch, no commit.
(b) commit: batches of 100 / 1000 / 10 000 readings, ``await commit()`` wall time, 40 commits
    per run (median and 90th percentile over all commits).
(c) saturated: appends as fast as the loop allows (yielding every 1000) for --seconds while
    ``run(0.05)`` commits in its worker thread, then the final commit; committed readings/s
    (appends and commits share one core through the GIL).
(f) paced: 20 000 readings/s offered (the issue's per-core target) for --seconds, ``run(0.05)``
    committing: the process's CPU time over wall time (the journal's share of a core, pacing
    included), and in separate runs the event loop's worst stall (a 1 ms ticker's overshoot).
(d) drain: 100 000 committed readings, then ``pending(after, 250)`` + ``ack`` per batch and a
    commit every 8 batches (the publisher's batch_max and window), until the backlog is empty.
(e) size: bytes on disk per entry at 100 000 entries, after a checkpoint (close).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ncap.journal import Journal  # noqa: E402

NODES = [f"node{n}" for n in range(10)]
FIELDS = [f"field{n}" for n in range(10)]


def _fill(journal: Journal, count: int, start: int = 0) -> None:
    now = datetime.now(UTC)
    for n in range(start, start + count):
        journal.append("reading", NODES[n % 10], FIELDS[n // 10 % 10], f"{n % 1000}.5", "°C", now)


def _run_in(directory: Path, bench: Callable[[Path], Coroutine[Any, Any, Any]]) -> Any:
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        return asyncio.run(bench(Path(tmp) / "journal.sqlite"))


async def _appends_per_second(path: Path) -> float:
    journal = Journal(path, max_memory_entries=1_000_000)
    try:
        count = 200_000
        started = time.perf_counter()
        _fill(journal, count)
        return count / (time.perf_counter() - started)
    finally:
        journal.close()


def _commit_latencies(batch: int) -> Callable[[Path], Coroutine[Any, Any, list[float]]]:
    async def bench(path: Path) -> list[float]:
        journal = Journal(path)
        try:
            times = []
            for n in range(40):
                _fill(journal, batch, n * batch)
                started = time.perf_counter()
                await journal.commit()
                times.append(time.perf_counter() - started)
            return times
        finally:
            journal.close()

    return bench


def _saturated(seconds: float) -> Callable[[Path], Coroutine[Any, Any, float]]:
    async def bench(path: Path) -> float:
        # Large bounds: this measures throughput, not the size policy.
        journal = Journal(path, max_entries=100_000_000, max_memory_entries=100_000_000)
        committer = asyncio.create_task(journal.run(0.05))
        try:
            started = time.perf_counter()
            appended = 0
            while time.perf_counter() - started < seconds:
                _fill(journal, 1000, appended)
                appended += 1000
                await asyncio.sleep(0)
            committer.cancel()
            await asyncio.gather(committer, return_exceptions=True)
            elapsed = time.perf_counter() - started
            stats = journal.stats()
            assert stats.committed == appended
            assert stats.dropped_readings == 0
            return appended / elapsed
        finally:
            journal.close()

    return bench


def _paced(
    seconds: float, rate: int, *, tick: bool
) -> Callable[[Path], Coroutine[Any, Any, tuple[float, float]]]:
    async def bench(path: Path) -> tuple[float, float]:
        journal = Journal(path)
        worst_stall = 0.0
        stop = False

        async def ticker() -> None:
            nonlocal worst_stall
            while not stop:
                before = time.perf_counter()
                await asyncio.sleep(0.001)
                worst_stall = max(worst_stall, time.perf_counter() - before - 0.001)

        # The ticker costs CPU itself: CPU is measured in runs without it.
        ticking = asyncio.create_task(ticker() if tick else asyncio.sleep(0))
        committer = asyncio.create_task(journal.run(0.05))
        try:
            chunk = rate // 100  # every 10 ms
            started = time.perf_counter()
            cpu_started = time.process_time()
            appended = 0
            while (elapsed := time.perf_counter() - started) < seconds:
                due = int(elapsed * rate)
                if due > appended:
                    _fill(journal, due - appended, appended)
                    appended = due
                await asyncio.sleep(chunk / rate)
            cpu = time.process_time() - cpu_started
            elapsed = time.perf_counter() - started
            stop = True
            await ticking
            committer.cancel()
            await asyncio.gather(committer, return_exceptions=True)
            assert journal.stats().committed == appended
            return cpu / elapsed, worst_stall
        finally:
            journal.close()

    return bench


async def _drain(path: Path) -> float:
    journal = Journal(path, max_memory_entries=1_000_000)
    try:
        _fill(journal, 100_000)
        await journal.commit()
        started = time.perf_counter()
        after = 0
        batches = 0
        while batch := journal.pending(after, 250):
            after = batch[-1].seq
            journal.ack(entry.seq for entry in batch)
            batches += 1
            if batches % 8 == 0:
                await journal.commit()
        await journal.commit()
        assert journal.stats().depth == 0
        return 100_000 / (time.perf_counter() - started)
    finally:
        journal.close()


async def _bytes_per_entry(path: Path) -> float:
    journal = Journal(path, max_memory_entries=1_000_000)
    _fill(journal, 100_000)
    await journal.commit()
    journal.close()
    return path.stat().st_size / 100_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    runs = range(args.runs)
    print(f"journal benchmarks in {args.dir}, median of {args.runs} runs")

    appends = statistics.median(_run_in(args.dir, _appends_per_second) for _ in runs)
    print(f"(a) append: {appends:,.0f} appends/s ({1e6 / appends:.2f} µs each)")

    for batch in (100, 1000, 10_000):
        times = sorted(t for _ in runs for t in _run_in(args.dir, _commit_latencies(batch)))
        median = statistics.median(times)
        p90 = times[int(len(times) * 0.9)]
        print(
            f"(b) commit of {batch:>6,} rows: median {median * 1e3:6.2f} ms, p90 {p90 * 1e3:6.2f} "
            f"ms ({batch / median:,.0f} rows/s)"
        )

    rate = statistics.median(_run_in(args.dir, _saturated(args.seconds)) for _ in runs)
    print(f"(c) saturated, appends + run(0.05) on one loop: {rate:,.0f} readings/s committed")

    cpu = statistics.median(
        _run_in(args.dir, _paced(args.seconds, 20_000, tick=False))[0] for _ in runs
    )
    stall = statistics.median(
        _run_in(args.dir, _paced(args.seconds, 20_000, tick=True))[1] for _ in runs
    )
    print(
        f"(f) 20 000 readings/s offered: the journal costs {cpu:.1%} of a core (process CPU, "
        f"all threads); worst event-loop stall {stall * 1e3:.2f} ms"
    )

    drain = statistics.median(_run_in(args.dir, _drain) for _ in runs)
    print(f"(d) drain: {drain:,.0f} entries/s (pending 250 + ack, commit every 8 batches)")

    size = statistics.median(_run_in(args.dir, _bytes_per_entry) for _ in runs)
    print(f"(e) size: {size:.0f} bytes per entry on disk at 100 000 entries")


if __name__ == "__main__":
    main()
