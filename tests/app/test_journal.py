"""The durable journal: seqs, commits in a worker thread, acks, the counted size policy,
history, files and schema, a real full disk (tmpfs), real kill -9 of a writer process, and a
model-based property test of the policy."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import select
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from ncap.journal import (
    RETENTION_CHECK_S,
    SCHEMA_VERSION,
    Entry,
    Journal,
    JournalError,
    JournalFull,
)

REPO = Path(__file__).resolve().parents[2]
T0 = 1_800_000_000.0  # the fake clock's start (2027-01-15)
DAY = 86400.0
WAIT_S = 10.0


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def datetime(self, age_s: float = 0.0) -> datetime:
        return datetime.fromtimestamp(self.now - age_s, UTC)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "journal.sqlite"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def journal(path: Path, clock: FakeClock) -> AsyncIterator[Journal]:
    journal = Journal(path, clock=clock)
    try:
        yield journal
    finally:
        journal.close()


@contextlib.contextmanager
def write_lock_held(path: Path) -> Iterator[None]:
    """Another connection holds SQLite's write lock: the journal's commit waits in its worker."""
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        yield
        blocker.execute("ROLLBACK")
    finally:
        blocker.close()


def reading(journal: Journal, clock: FakeClock, value: str = "1", *, age_s: float = 0.0) -> int:
    return journal.append("reading", "env", "temperature", value, "°C", clock.datetime(age_s))


def seqs(entries: list[Entry]) -> list[int]:
    return [entry.seq for entry in entries]


# -- appending, committing, seqs --------------------------------------------------------------


async def test_append_hands_out_seqs_at_once_and_pending_sees_only_committed(
    journal: Journal, clock: FakeClock
) -> None:
    first = [reading(journal, clock, str(n)) for n in range(3)]
    assert first == [1, 2, 3]
    assert journal.pending(0, 10) == []
    assert journal.committed_seq == 0
    assert await journal.commit() == 3
    assert seqs(journal.pending(0, 10)) == [1, 2, 3]
    assert seqs(journal.pending(1, 1)) == [2]
    assert reading(journal, clock) == 4
    assert seqs(journal.pending(0, 10)) == [1, 2, 3]


async def test_entries_round_trip_with_utc_microsecond_timestamps(journal: Journal) -> None:
    local = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    extra = json.dumps({"id": 7, "state": "raised", "message": "temperature above 30"})
    journal.append("reading", "env", "temperature", "21.50", "°C", local)
    journal.append("event", "door", "open", "true", None, local, '{"edge": "rising"}')
    journal.append("alarm", "env", "temperature", "31.2", "°C", local, extra)
    await journal.commit()
    got = journal.pending(0, 10)
    utc = datetime(2026, 3, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert got == [
        Entry(1, "reading", "env", "temperature", "21.50", "°C", utc),
        Entry(2, "event", "door", "open", "true", None, utc, '{"edge": "rising"}'),
        Entry(3, "alarm", "env", "temperature", "31.2", "°C", utc, extra),
    ]
    assert all(entry.timestamp.tzinfo is UTC for entry in got)


async def test_bad_kind_and_naive_timestamps_are_refused(journal: Journal) -> None:
    with pytest.raises(ValueError, match="kind"):
        journal.append("note", "n", "f", "1", None, datetime.now(UTC))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timezone-aware"):
        journal.append("reading", "n", "f", "1", None, datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        journal.history("n", None, datetime(2026, 1, 1))
    assert journal.stats().appended == 0


async def test_seqs_continue_after_restart_even_when_every_row_was_deleted(
    path: Path, clock: FakeClock
) -> None:
    journal = Journal(path, clock=clock, history_s=DAY)
    for _ in range(5):
        reading(journal, clock, age_s=2 * DAY)  # older than the history: expires once acked
    await journal.commit()
    assert journal.ack(range(1, 6)) == 5
    await journal.commit()
    assert journal.stats().entries == 0
    journal.close()

    journal = Journal(path, clock=clock)
    try:
        assert journal.committed_seq == 5
        assert reading(journal, clock) == 6
        assert await journal.commit() == 6
        assert seqs(journal.pending(0, 10)) == [6]
    finally:
        journal.close()


async def test_close_commits_what_is_left_and_a_closed_journal_refuses_work(
    path: Path, clock: FakeClock
) -> None:
    journal = Journal(path, clock=clock)
    reading(journal, clock)
    journal.close()
    journal.close()  # a second close does nothing
    with pytest.raises(JournalError, match="closed"):
        reading(journal, clock)
    with pytest.raises(JournalError, match="closed"):
        await journal.commit()
    with pytest.raises(JournalError, match="closed"):
        journal.pending(0, 1)
    journal = Journal(path, clock=clock)
    try:
        assert seqs(journal.pending(0, 10)) == [1]
    finally:
        journal.close()


async def test_on_commit_is_told_the_committed_seq(path: Path, clock: FakeClock) -> None:
    told: list[int] = []
    journal = Journal(path, clock=clock, on_commit=told.append)
    try:
        reading(journal, clock)
        reading(journal, clock)
        await journal.commit()
        await journal.commit()  # nothing new: not told again
        assert told == [2]
    finally:
        journal.close()


# -- commits in a worker thread ---------------------------------------------------------------


async def test_commit_writes_in_a_worker_while_the_loop_goes_on_appending(
    path: Path, journal: Journal, clock: FakeClock
) -> None:
    reading(journal, clock)
    await journal.commit()
    reading(journal, clock)
    with write_lock_held(path):
        commit = asyncio.create_task(journal.commit())
        for _ in range(5):
            await asyncio.sleep(0)  # let the commit reach its worker thread
        # The write waits for SQLite's lock in the worker; the loop is free meanwhile.
        assert not commit.done()
        assert reading(journal, clock) == 3  # goes into the next batch
        assert seqs(journal.pending(0, 10)) == [1]  # reads do not wait for the writer
        assert journal.stats().batched == 2
    assert await asyncio.wait_for(commit, WAIT_S) == 2
    assert journal.stats().batched == 1
    assert await journal.commit() == 3


async def test_a_cancelled_commit_still_completes_and_later_commits_keep_seq_order(
    path: Path, journal: Journal, clock: FakeClock
) -> None:
    reading(journal, clock)
    with write_lock_held(path):
        first = asyncio.create_task(journal.commit())
        for _ in range(5):
            await asyncio.sleep(0)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        reading(journal, clock)
        second = asyncio.create_task(journal.commit())  # waits for the first write
        for _ in range(5):
            await asyncio.sleep(0)
        assert not second.done()
    assert await asyncio.wait_for(second, WAIT_S) == 2
    assert seqs(journal.pending(0, 10)) == [1, 2]
    assert journal.stats().committed == 2


async def test_run_commits_in_the_background_and_what_is_left_on_cancel(
    journal: Journal, clock: FakeClock
) -> None:
    committer = asyncio.create_task(journal.run(interval_s=0.01))
    try:
        seq = reading(journal, clock)
        async with asyncio.timeout(WAIT_S):
            while journal.committed_seq < seq:
                await asyncio.sleep(0.01)  # polling for an outcome, bounded by the timeout
        last = reading(journal, clock)
    finally:
        committer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await committer
    assert journal.committed_seq == last
    assert journal.stats().batched == 0


# -- acks -------------------------------------------------------------------------------------


async def test_ack_counts_newly_acked_entries_and_hides_them_at_once(
    path: Path, journal: Journal, clock: FakeClock
) -> None:
    for _ in range(4):
        reading(journal, clock)
    await journal.commit()
    uncommitted = reading(journal, clock)
    assert journal.ack([1, 2, 2, 99, uncommitted]) == 2  # unknown and uncommitted: ignored
    assert journal.ack([1, 2]) == 0
    assert seqs(journal.pending(0, 10)) == [3, 4]
    assert journal.stats().depth == 2
    assert journal.stats().acked == 2
    await journal.commit()
    assert journal.ack([2]) == 0  # now acknowledged on disk
    assert seqs(journal.pending(0, 10)) == [3, 4, 5]
    journal.close()
    reopened = Journal(path, clock=clock)
    try:
        assert seqs(reopened.pending(0, 10)) == [3, 4, 5]
        assert reopened.stats().depth == 3
        assert reopened.stats().entries == 5
    finally:
        reopened.close()


async def test_pending_skips_acked_entries_and_still_fills_its_limit(
    journal: Journal, clock: FakeClock
) -> None:
    for _ in range(10):
        reading(journal, clock)
    await journal.commit()
    journal.ack([2, 3, 4, 6])
    assert seqs(journal.pending(0, 4)) == [1, 5, 7, 8]
    assert seqs(journal.pending(5, 100)) == [7, 8, 9, 10]
    assert journal.pending(10, 5) == []
    assert journal.pending(0, 0) == []


# -- size policy --------------------------------------------------------------------------------


async def test_full_journal_deletes_acked_entries_then_oldest_readings_never_alarms(
    path: Path, clock: FakeClock
) -> None:
    journal = Journal(path, clock=clock, max_entries=4)
    reading(journal, clock)  # 1
    reading(journal, clock)  # 2
    journal.append("alarm", "env", "temperature", "31", "°C", clock.datetime(), "{}")  # 3
    journal.append("event", "door", "open", "true", None, clock.datetime())  # 4
    await journal.commit()
    journal.ack([2])
    await journal.commit()
    reading(journal, clock)  # 5
    reading(journal, clock)  # 6
    await journal.commit()
    # 6 rows > 4: the acked 2 goes, then the oldest unacked reading 1 (counted).
    assert seqs(journal.pending(0, 10)) == [3, 4, 5, 6]
    assert journal.stats().dropped_readings == 1
    reading(journal, clock)  # 7: the alarm (3) is skipped, the event (4) goes
    await journal.commit()
    assert seqs(journal.pending(0, 10)) == [3, 5, 6, 7]
    stats = journal.stats()
    assert (stats.entries, stats.depth, stats.dropped_readings) == (4, 4, 2)
    journal.close()

    journal = Journal(path, clock=clock, max_entries=4)
    try:
        assert journal.stats().dropped_readings == 2  # counted over the file's lifetime
    finally:
        journal.close()


async def test_unacknowledged_alarms_alone_may_exceed_max_entries(
    path: Path, clock: FakeClock
) -> None:
    journal = Journal(path, clock=clock, max_entries=2)
    try:
        for n in range(4):
            journal.append("alarm", "env", "t", str(n), None, clock.datetime(), "{}")
        reading(journal, clock)
        await journal.commit()
        assert [entry.kind for entry in journal.pending(0, 10)] == ["alarm"] * 4
        assert journal.stats().dropped_readings == 1
        journal.ack([1, 2])  # acknowledged alarms may go
        await journal.commit()
        assert seqs(journal.pending(0, 10)) == [3, 4]
        assert journal.stats().entries == 2
    finally:
        journal.close()


async def test_ack_during_the_commit_that_drops_the_entry_is_not_a_drop(
    path: Path, clock: FakeClock
) -> None:
    journal = Journal(path, clock=clock, max_entries=5)
    try:
        for _ in range(5):
            reading(journal, clock)
        await journal.commit()
        for _ in range(3):
            reading(journal, clock)
        with write_lock_held(path):
            commit = asyncio.create_task(journal.commit())  # will drop 1, 2 and 3
            for _ in range(5):
                await asyncio.sleep(0)
            assert journal.ack([1]) == 1  # delivered while that commit is under way
        await asyncio.wait_for(commit, WAIT_S)
        stats = journal.stats()
        assert (stats.dropped_readings, stats.depth, stats.entries) == (2, 5, 5)
        assert seqs(journal.pending(0, 10)) == [4, 5, 6, 7, 8]
    finally:
        journal.close()
    journal = Journal(path, clock=clock, max_entries=5)
    try:
        assert journal.stats().dropped_readings == 2  # the corrected counter reached the disk
    finally:
        journal.close()


async def test_retention_deletes_only_acknowledged_entries_older_than_the_history(
    path: Path, clock: FakeClock
) -> None:
    journal = Journal(path, clock=clock, history_s=DAY)
    try:
        old_acked = reading(journal, clock, age_s=2 * DAY)
        old_unacked = reading(journal, clock, age_s=2 * DAY)
        young_acked = reading(journal, clock, age_s=DAY / 2)
        old_alarm = journal.append("alarm", "env", "t", "1", None, clock.datetime(2 * DAY))
        await journal.commit()
        journal.ack([old_acked, young_acked, old_alarm])
        await journal.commit()
        since = clock.datetime(10 * DAY)
        assert seqs(journal.history("env", None, since)) == [old_unacked, young_acked]
        assert journal.stats().dropped_readings == 0
        clock.now += DAY  # the young one ages out while the journal is idle
        await journal.commit()  # nothing to write, but retention is due
        assert seqs(journal.history("env", None, since - timedelta(days=1))) == [old_unacked]
        assert seqs(journal.pending(0, 10)) == [old_unacked]
    finally:
        journal.close()


async def test_an_idle_commit_checks_retention_at_most_every_interval(
    path: Path, clock: FakeClock
) -> None:
    journal = Journal(path, clock=clock, history_s=DAY)
    try:
        seq = reading(journal, clock, age_s=DAY - RETENTION_CHECK_S / 4)
        await journal.commit()
        journal.ack([seq])
        await journal.commit()
        clock.now += RETENTION_CHECK_S / 2  # now older than the history, but the last
        await journal.commit()  # retention check was only half an interval ago
        assert journal.stats().entries == 1
        clock.now += RETENTION_CHECK_S / 2
        await journal.commit()
        assert journal.stats().entries == 0
    finally:
        journal.close()


# -- history ------------------------------------------------------------------------------------


async def test_history_returns_committed_readings_of_a_node_in_time_order(
    journal: Journal, clock: FakeClock
) -> None:
    journal.append("reading", "env", "temperature", "20", "°C", clock.datetime(7200))
    journal.append("reading", "env", "temperature", "22", "°C", clock.datetime(60))
    journal.append("reading", "env", "humidity", "40", "%", clock.datetime(1800))
    journal.append("reading", "env", "temperature", "21", "°C", clock.datetime(1200))
    journal.append("reading", "pump", "temperature", "50", "°C", clock.datetime(60))
    journal.append("alarm", "env", "temperature", "22", "°C", clock.datetime(60), "{}")
    journal.append("event", "env", "temperature", "x", None, clock.datetime(60))
    await journal.commit()
    journal.ack([4])  # acknowledged readings stay for history
    journal.append("reading", "env", "temperature", "23", "°C", clock.datetime())  # not committed
    hour_ago = clock.datetime(3600)
    assert [e.value for e in journal.history("env", "temperature", hour_ago)] == ["21", "22"]
    assert [e.value for e in journal.history("env", None, hour_ago)] == ["40", "21", "22"]
    assert journal.history("nobody", None, hour_ago) == []


# -- files and schema ---------------------------------------------------------------------------


async def test_files_are_private_whatever_the_umask(path: Path, clock: FakeClock) -> None:
    old_umask = os.umask(0o022)
    try:
        journal = Journal(path, clock=clock)
        try:
            reading(journal, clock)
            await journal.commit()
            names = [path.name + suffix for suffix in ("", "-wal", "-shm", ".lock")]
            modes = {name: (path.parent / name).stat().st_mode & 0o777 for name in names}
            assert modes == dict.fromkeys(names, 0o600)
        finally:
            journal.close()
    finally:
        os.umask(old_umask)


def test_a_wider_existing_file_is_tightened(path: Path) -> None:
    path.touch(mode=0o644)
    path.chmod(0o644)
    Journal(path).close()
    assert path.stat().st_mode & 0o777 == 0o600


def test_wal_mode_schema_version_and_one_writer_at_a_time(path: Path) -> None:
    journal = Journal(path)
    try:
        with pytest.raises(JournalError, match="open elsewhere"):
            Journal(path)
        db = sqlite3.connect(path)
        try:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        finally:
            db.close()
    finally:
        journal.close()


def test_unknown_schema_versions_and_foreign_files_are_refused(tmp_path: Path) -> None:
    future = tmp_path / "future.sqlite"
    Journal(future).close()
    db = sqlite3.connect(future)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(JournalError, match="schema version"):
        Journal(future)

    foreign = tmp_path / "foreign.sqlite"
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE t (x)")
    db.close()
    with pytest.raises(JournalError, match="not a journal"):
        Journal(foreign)

    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database, not at all" * 200)
    with pytest.raises(JournalError, match=r"garbage\.sqlite"):
        Journal(garbage)


# -- a real full disk -------------------------------------------------------------------------


@pytest.fixture
def tiny_fs() -> Iterator[Path]:
    """A 1 MiB tmpfs mounted for this test (needs root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mountpoint = Path(tempfile.mkdtemp(prefix="ncap-journal-full-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if mounted.returncode != 0:
        mountpoint.rmdir()
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True, timeout=30)
        mountpoint.rmdir()


async def fill_until_full(journal: Journal, clock: FakeClock, per_commit: int) -> JournalFull:
    for _ in range(1000):
        for _ in range(per_commit):
            reading(journal, clock, "x" * 40)
        try:
            await journal.commit()
        except JournalFull as full:
            return full
    raise AssertionError("the disk never filled up")


def integrity(path: Path) -> str:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        db.close()


async def test_a_full_disk_raises_journal_full_keeps_the_batch_and_corrupts_nothing(
    tiny_fs: Path, clock: FakeClock
) -> None:
    filler = tiny_fs / "filler"
    filler.write_bytes(b"\0" * 256 * 1024)
    path = tiny_fs / "journal.sqlite"
    journal = Journal(path, clock=clock)
    try:
        full = await fill_until_full(journal, clock, per_commit=500)
        assert "disk is full" in str(full)
        assert str(path) in str(full)
        committed = journal.committed_seq
        assert committed > 0
        assert journal.stats().batched == 500
        assert integrity(path) == "ok"
        assert seqs(journal.pending(0, committed + 10)) == list(range(1, committed + 1))

        for _ in range(100):  # the loop goes on appending while the disk is full
            reading(journal, clock)
        with pytest.raises(JournalFull):
            await journal.commit()
        assert journal.committed_seq == committed

        filler.unlink()  # space comes back: everything that waited is written, in order
        assert await journal.commit() == committed + 600
        assert journal.stats().batched == 0
    finally:
        with contextlib.suppress(JournalFull):
            journal.close()
    journal = Journal(path, clock=clock)
    try:
        everything = journal.pending(0, 100_000)
        assert seqs(everything) == list(range(1, committed + 601))
        assert journal.stats().dropped_readings == 0
    finally:
        journal.close()
    assert integrity(path) == "ok"


async def test_while_the_disk_is_full_memory_is_bounded_by_dropping_oldest_readings(
    tiny_fs: Path, clock: FakeClock
) -> None:
    filler = tiny_fs / "filler"
    filler.write_bytes(b"\0" * 256 * 1024)
    path = tiny_fs / "journal.sqlite"
    journal = Journal(path, clock=clock, max_memory_entries=100)
    try:
        await fill_until_full(journal, clock, per_commit=50)
        committed = journal.committed_seq
        waiting = list(range(committed + 1, committed + 51))
        alarm = journal.append("alarm", "env", "t", "99", None, clock.datetime(), "{}")
        newer = [reading(journal, clock) for _ in range(100)]
        stats = journal.stats()
        assert stats.dropped_readings == 50  # the 50 that waited are the oldest
        assert stats.batched == 101
        filler.unlink()
        await journal.commit()
        kept = seqs(journal.pending(committed, 1000))
        assert kept == sorted([alarm, *newer])
        assert not set(waiting) & set(kept)
        assert journal.stats().dropped_readings == 50
    finally:
        with contextlib.suppress(JournalFull):
            journal.close()


# -- kill -9 ------------------------------------------------------------------------------------

WRITER = """
import asyncio, sys
from datetime import UTC, datetime
from pathlib import Path
from ncap.journal import Journal

async def main() -> None:
    journal = Journal(Path(sys.argv[1]))
    print("ready", journal.committed_seq, flush=True)
    while True:
        now = datetime.now(UTC)
        for n in range(300):
            journal.append("reading", "env", "temperature", str(n), "C", now)
        journal.append("alarm", "env", "temperature", "x", None, now, "{}")
        print(await journal.commit(), flush=True)
        journal.ack(entry.seq for entry in journal.pending(0, 100))

asyncio.run(main())
"""


class LineReader:
    """Complete lines from a child's stdout, with a deadline (no sleeps)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self._fd = proc.stdout.fileno()
        self._buffer = b""

    def lines(self, count: int, timeout_s: float) -> list[str]:
        out: list[str] = []
        end = time.monotonic() + timeout_s
        while len(out) < count:
            line, sep, rest = self._buffer.partition(b"\n")
            if sep:
                out.append(line.decode())
                self._buffer = rest
                continue
            remaining = end - time.monotonic()
            ready, _, _ = select.select([self._fd], [], [], max(remaining, 0))
            if not ready:
                raise AssertionError(f"the writer printed {len(out)} of {count} lines in time")
            chunk = os.read(self._fd, 65536)
            if not chunk:
                raise AssertionError("the writer exited early")
            self._buffer += chunk
        return out

    def rest(self) -> list[str]:
        """The complete lines left after the child is dead (EOF)."""
        while chunk := os.read(self._fd, 65536):
            self._buffer += chunk
        return [line.decode() for line in self._buffer.split(b"\n")[:-1]]


def kill_9(proc: subprocess.Popen[bytes]) -> None:
    pidfd = os.pidfd_open(proc.pid)
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        ready, _, _ = select.select([pidfd], [], [], WAIT_S)
        assert ready, "the writer did not die"
    finally:
        os.close(pidfd)
    proc.wait(timeout=WAIT_S)


def test_kill_9_loses_nothing_committed_and_seqs_never_go_back(path: Path) -> None:
    rng = random.Random(0x7E57)
    reported: list[int] = []
    for _ in range(10):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, cwd=REPO
        )
        try:
            reader = LineReader(proc)
            ready = reader.lines(1, WAIT_S)[0].split()
            assert ready[0] == "ready"
            assert int(ready[1]) >= max(reported, default=0)  # never backwards
            commits = reader.lines(rng.randint(0, 12), WAIT_S)
            # Jitter spreads the kill over appending, committing and fsyncing (it waits for
            # nothing: whatever state the writer is in is fine).
            time.sleep(rng.uniform(0, 0.006))
            kill_9(proc)
            commits += reader.rest()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=WAIT_S)
            assert proc.stdout is not None
            proc.stdout.close()
        new = [int(line) for line in commits]
        assert new == sorted(new)
        assert all(seq > max(reported, default=0) for seq in new)
        reported += new

        assert integrity(path) == "ok"
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            count, lowest, highest = db.execute(
                "SELECT count(*), min(seq), max(seq) FROM entries"
            ).fetchone()
        finally:
            db.close()
        if reported:
            # Every reported commit is there, and nothing is missing below it.
            assert highest >= reported[-1]
            assert (lowest, count) == (1, highest)
    assert len(reported) > 10


# -- the policy as a model ----------------------------------------------------------------------

HISTORY_S = 7 * DAY


class JournalMachine(RuleBasedStateMachine):
    """Random appends, commits, acks, clock jumps and restarts against a plain model."""

    MAX_ENTRIES = 5
    MAX_MEMORY = 4

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="ncap-journal-model-"))
        self.path = self.dir / "journal.sqlite"
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock()
        self.journal = self._open()
        self.next_seq = 1
        self.memory: list[int] = []  # readings and events waiting, oldest first
        self.memory_alarms: list[int] = []
        self.kinds: dict[int, str] = {}
        self.ts: dict[int, float] = {}
        self.db: dict[int, bool] = {}  # seq -> acked on disk
        self.acks_new: set[int] = set()
        self.dropped = 0
        self.stored_dropped = 0
        self.last_flight = float("-inf")
        self.appended = self.committed = self.acked = self.dropped_in_memory = 0
        self.ever_acked: set[int] = set()

    def _open(self) -> Journal:
        return Journal(
            self.path,
            max_entries=self.MAX_ENTRIES,
            history_s=HISTORY_S,
            max_memory_entries=self.MAX_MEMORY,
            clock=self.clock,
        )

    def teardown(self) -> None:
        self.journal.close()
        self.loop.close()
        for child in self.dir.iterdir():
            child.unlink()
        self.dir.rmdir()

    # The model of one commit, mirroring the documented policy.
    def _model_commit(self) -> None:
        now = self.clock.now
        due = now - self.last_flight >= RETENTION_CHECK_S
        stale = self.dropped != self.stored_dropped
        if not (self.memory or self.memory_alarms or self.acks_new or due or stale):
            return
        self.last_flight = now
        for seq in self.memory + self.memory_alarms:
            self.db[seq] = False
        self.committed += len(self.memory) + len(self.memory_alarms)
        self.memory, self.memory_alarms = [], []
        for seq in self.acks_new:
            self.db[seq] = True
        self.acks_new = set()
        for seq in [s for s, acked in self.db.items() if acked and self.ts[s] < now - HISTORY_S]:
            del self.db[seq]
        excess = len(self.db) - self.MAX_ENTRIES
        for seq in sorted(s for s, acked in self.db.items() if acked)[: max(excess, 0)]:
            del self.db[seq]
            excess -= 1
        unacked = sorted(s for s, acked in self.db.items() if not acked and self.kinds[s] != "a")
        for seq in unacked[: max(excess, 0)]:
            del self.db[seq]
            self.dropped += 1
        self.stored_dropped = self.dropped

    @initialize()
    def start(self) -> None:
        pass

    @rule(
        batch=st.lists(
            st.tuples(st.sampled_from(["reading", "event", "alarm"]), st.booleans()),
            min_size=1,
            max_size=6,
        )
    )
    def append(self, batch: list[tuple[str, bool]]) -> None:
        for kind, old in batch:
            self._append(kind, old)

    def _append(self, kind: str, old: bool) -> None:
        age = HISTORY_S + DAY if old else 0.0
        seq = self.journal.append(
            kind,  # type: ignore[arg-type]
            "env",
            "temperature",
            "1",
            "C",
            self.clock.datetime(age),
            "{}" if kind == "alarm" else None,
        )
        assert seq == self.next_seq
        self.next_seq += 1
        self.appended += 1
        self.kinds[seq] = kind[0]
        self.ts[seq] = self.clock.now - age
        if kind == "alarm":
            self.memory_alarms.append(seq)
        else:
            self.memory.append(seq)
            if len(self.memory) > self.MAX_MEMORY:
                self.memory.pop(0)
                self.dropped += 1
                self.dropped_in_memory += 1

    @rule()
    def commit(self) -> None:
        self.loop.run_until_complete(self.journal.commit())
        self._model_commit()

    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        # Mostly seqs the journal holds, some it does not (acked, dropped, unknown).
        known = [*sorted(self.db), 0, self.next_seq, self.next_seq + 1]
        chosen = data.draw(st.lists(st.sampled_from(known), max_size=6))
        expected = {s for s in chosen if s in self.db and not self.db[s]} - self.acks_new
        assert self.journal.ack(chosen) == len(expected)
        self.acks_new |= expected
        self.ever_acked |= expected
        self.acked += len(expected)

    # Steps that never add up to exactly the history, so no entry sits on the cutoff.
    @rule(seconds=st.sampled_from([1000.0, 112_320.0, 691_200.0]))
    def time_passes(self, seconds: float) -> None:
        self.clock.now += seconds

    @rule()
    def restart(self) -> None:
        self.journal.close()
        self._model_commit()
        self.journal = self._open()
        self.last_flight = float("-inf")
        self.appended = self.committed = self.acked = self.dropped_in_memory = 0

    @rule(after=st.integers(0, 40), limit=st.integers(0, 8))
    def pending_window(self, after: int, limit: int) -> None:
        expected = sorted(s for s, acked in self.db.items() if not acked and s > after)
        expected = [s for s in expected if s not in self.acks_new][:limit]
        assert seqs(self.journal.pending(after, limit)) == expected

    @invariant()
    def matches_the_model(self) -> None:
        unacked = sorted(s for s, acked in self.db.items() if not acked and s not in self.acks_new)
        pending = self.journal.pending(0, 1000)
        assert seqs(pending) == unacked  # ascending, committed, unacknowledged
        assert all(entry.kind[0] == self.kinds[entry.seq] for entry in pending)
        readings = sorted(s for s in self.db if self.kinds[s] == "r")
        history = self.journal.history("env", None, datetime(1970, 1, 2, tzinfo=UTC))
        assert sorted(seqs(history)) == readings
        stats = self.journal.stats()
        assert stats.depth == len(unacked)
        assert stats.entries == len(self.db)
        assert stats.batched == len(self.memory) + len(self.memory_alarms)
        assert stats.dropped_readings == self.dropped
        assert stats.last_seq == self.next_seq - 1
        assert stats.acked == self.acked
        assert stats.appended == stats.committed + stats.batched + self.dropped_in_memory
        assert stats.committed == self.committed

    @invariant()
    def alarms_are_never_dropped(self) -> None:
        on_disk = {entry.seq for entry in self.journal.pending(0, 1000)}
        for seq, kind in self.kinds.items():
            if kind == "a" and seq not in self.memory_alarms and seq not in self.ever_acked:
                assert seq in on_disk


JournalMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestJournalPolicy = JournalMachine.TestCase
