"""The gateway's durable journal of readings, events and alarms (SQLite, WAL).

Pure storage, no XMPP. Every entry gets a sequence number (``seq``) the moment it is appended;
entries leave the journal only after the server acknowledged them (:meth:`Journal.ack`) and
they aged out or the journal is full.

Write path. :meth:`Journal.append` only adds the entry to an in-memory batch and returns its
``seq`` at once. :meth:`Journal.commit` swaps the batch out and writes it, together with the acks
recorded since the last commit, in ONE transaction in a worker thread (``executemany``,
``synchronous=FULL``, so the WAL is fsynced before the commit returns); appends meanwhile fill
the next batch, and the asyncio loop never waits for the disk. :meth:`Journal.run` is the group
commit loop (one commit per ``interval_s``). Commits are strictly sequential, so the committed
entries are always exactly the seqs up to :attr:`Journal.committed_seq` (minus those dropped by
the size policy).

Sequence numbers are per journal file, strictly increasing and never reused by committed
entries: the highest seq ever handed to a commit is stored in the file, so after a restart the
next seq continues after it even when those rows were deleted since.

Durability: what survives what
------------------------------
*kill -9, OOM kill, crash of the process:* every entry whose commit completed (``commit()``
returned, ``committed_seq`` covers it). Lost: the in-memory batch, i.e. entries appended since
the last commit began (at most ``interval_s`` of readings plus the time one commit takes). Those
entries were never handed to anyone upstream, because :meth:`Journal.pending` only returns
committed entries, and their seqs may be handed out again after the restart. A commit that was
under way when the process died is in the file entirely or not at all (one transaction). Acks
recorded since the last commit are lost too: those entries are offered again by ``pending`` and
sent twice (at-least-once delivery, never a loss).

*Power cut or kernel crash:* the same. ``synchronous=FULL`` fsyncs the WAL at every commit, so
a completed commit is on the storage medium, and SQLite's atomic commit keeps the file
consistent. This assumes storage that honours flush requests; SD cards and USB sticks with a
volatile write cache may lose the last commits or worse, which no software can repair.

Size policy (counted, never silent)
-----------------------------------
* History retention: acknowledged entries whose timestamp is older than ``history_s`` are
  deleted (checked at every commit, and by :meth:`Journal.commit` at least every
  ``RETENTION_CHECK_S`` even when idle). Nothing unacknowledged is ever deleted by age.
* When the file holds more than ``max_entries``: acknowledged entries go first, oldest seq
  first; then the oldest unacknowledged readings and events, counted in ``dropped_readings``.
  Alarms are never dropped, so unacknowledged alarms alone may exceed ``max_entries``.
* Disk full (``SQLITE_FULL`` / ``ENOSPC`` / ``EDQUOT``): :meth:`Journal.commit` raises
  :class:`JournalFull`; the transaction is rolled back (nothing corrupted, nothing committed
  half) and the batch stays in memory to be retried by the next commit. Beyond
  ``max_memory_entries`` readings and events waiting in memory, the oldest of them are dropped
  (counted in ``dropped_readings``); alarms wait in memory without limit. The journal does not
  try to free space itself: on a full disk even a delete needs room in the WAL. Once space is
  freed, the next commit writes everything that waited, in order.

Files: the database and its ``-wal``/``-shm`` files are mode 0600 (SQLite gives the side files
the database's permission bits; they are also chmodded). One writer at a time: ``<path>.lock``
(also 0600) is ``flock``-ed while the journal is open, so a second gateway on the same file fails
at once instead of reusing seqs. (A separate file, because closing any descriptor of the
database itself would drop SQLite's POSIX locks on it.) Schema version in ``PRAGMA
user_version``.

Threads: call every method from one thread, the event loop's. The writes run in the loop's
default executor; reads (``pending``, ``ack``'s lookup, ``history``) use a second connection on
the calling thread and see only committed data, never waiting for a write (WAL).
"""

# SQL is assembled only from the constant fragments below; values are always bound parameters.
# ruff: noqa: S608

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from ncap.errors import NcapError
from ncap.files import open_private, sql_statements, tighten_sidecars

__all__ = [
    "RETENTION_CHECK_S",
    "SCHEMA_VERSION",
    "Entry",
    "Journal",
    "JournalError",
    "JournalFull",
    "JournalStats",
    "Kind",
]

_LOGGER = logging.getLogger(__name__)

SCHEMA_VERSION = 1
RETENTION_CHECK_S = 60.0
"""An idle journal still runs its retention at least this often (when ``commit`` is called)."""

# A stuck journal retries commits with a backoff up to this (the loop keeps appending).
_MAX_RETRY_INTERVAL_S = 5.0

Kind = Literal["reading", "event", "alarm"]
_KINDS: tuple[Kind, ...] = ("reading", "event", "alarm")
_KIND_CODES: dict[str, int] = {kind: code for code, kind in enumerate(_KINDS)}
_READING = _KIND_CODES["reading"]
_ALARM = _KIND_CODES["alarm"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

_SCHEMA = """
CREATE TABLE channels (
    id INTEGER PRIMARY KEY,
    node TEXT NOT NULL,
    field TEXT NOT NULL,
    unit TEXT
);
CREATE TABLE entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind INTEGER NOT NULL,          -- 0 reading, 1 event, 2 alarm
    channel INTEGER NOT NULL,       -- channels.id
    value TEXT NOT NULL,
    ts INTEGER NOT NULL,            -- microseconds since the epoch, UTC
    extra TEXT,
    acked INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX entries_by_ack ON entries(acked, seq);
CREATE INDEX entries_acked_ts ON entries(ts) WHERE acked = 1;
CREATE INDEX entries_history ON entries(channel, ts) WHERE kind = 0;
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO meta VALUES ('last_seq', 0), ('dropped_readings', 0);
"""

_INSERT_ENTRY = (
    "INSERT INTO entries(seq, kind, channel, value, ts, extra) VALUES (?, ?, ?, ?, ?, ?)"
)
_INSERT_CHANNEL = "INSERT INTO channels(id, node, field, unit) VALUES (?, ?, ?, ?)"
_ACK = "UPDATE entries SET acked = 1 WHERE seq = ? AND acked = 0"
_EXPIRE = "DELETE FROM entries INDEXED BY entries_acked_ts WHERE acked = 1 AND ts < ?"
_EVICT_ACKED = (
    "DELETE FROM entries WHERE seq IN "
    "(SELECT seq FROM entries WHERE acked = 1 ORDER BY seq LIMIT ?)"
)
_DROP_UNACKED = (
    "DELETE FROM entries WHERE seq IN "
    f"(SELECT seq FROM entries WHERE acked = 0 AND kind <> {_ALARM} ORDER BY seq LIMIT ?) "
    "RETURNING seq"
)
_SET_META = "UPDATE meta SET value = ? WHERE key = ?"
_COLUMNS = "seq, kind, channel, value, ts, extra"

# (seq, kind code, channel id, value, ts in µs, extra): the row as it is inserted.
_Row = tuple[int, int, int, str, int, str | None]
_ChannelKey = tuple[str, str, str | None]


class JournalError(NcapError):
    """The journal cannot be opened, read or written."""


class JournalFull(JournalError):
    """The disk (or quota) is full. Nothing was written; the batch waits in memory for a retry."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One committed reading, event or alarm."""

    seq: int
    kind: Kind
    node: str
    field: str
    value: str
    """The lexical value, as XEP-0323 sends it."""
    unit: str | None
    timestamp: datetime
    """Aware, UTC."""
    extra: str | None = None
    """JSON text for alarms and events (id, state, message, ...)."""


@dataclass(frozen=True, slots=True)
class JournalStats:
    """Counters for ``ncap status`` and the metrics endpoint."""

    appended: int
    """Entries appended since the journal was opened."""
    committed: int
    """Entries durably written since the journal was opened."""
    acked: int
    """Entries newly acknowledged since the journal was opened."""
    depth: int
    """Committed entries not acknowledged yet (the backlog)."""
    batched: int
    """Appended entries not committed yet (in memory, including a commit under way)."""
    entries: int
    """Rows in the journal file, acknowledged or not."""
    dropped_readings: int
    """Unacknowledged readings and events dropped by the size policy, over the file's lifetime."""
    size_bytes: int
    """The database and its WAL and shared-memory files, on disk."""
    last_seq: int
    """The highest seq handed out."""


@dataclass(slots=True, eq=False)
class _Outcome:
    acked: int  # rows whose ack flag this commit set
    deleted_acked: int  # acknowledged rows deleted (retention, size)
    dropped: list[int]  # unacknowledged readings/events deleted for max_entries


@dataclass(slots=True, eq=False)
class _Flight:
    """One commit: what it writes, and (filled in by the writer) how it went."""

    readings: deque[_Row]  # readings and events, ascending seq
    alarms: deque[_Row]
    acks: frozenset[int]
    channels: list[tuple[int, str, str, str | None]]
    last_seq: int  # every seq up to this is in this commit, an earlier one, or dropped
    dropped_total: int  # the counter to store, before this commit's own drops
    db_rows: int  # rows in the file before this commit
    cutoff_us: int  # acknowledged entries older than this expire
    done: bool = False
    abandoned: bool = False  # close() took over before the writer started
    settled: bool = False
    outcome: _Outcome | None = None
    error: JournalError | None = None
    rows_written: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.rows_written = len(self.readings) + len(self.alarms)


class Journal:
    """The durable journal; see the module docstring for the rules."""

    def __init__(
        self,
        path: Path,
        *,
        max_entries: int = 1_000_000,
        history_s: float = 7 * 86400,
        max_memory_entries: int = 100_000,
        clock: Callable[[], float] = time.time,
        on_commit: Callable[[int], None] | None = None,
    ) -> None:
        if max_entries < 1 or max_memory_entries < 1 or history_s <= 0:
            raise ValueError("max_entries, max_memory_entries and history_s must be positive")
        self._path = Path(path)
        self._max_entries = max_entries
        self._history_s = history_s
        self._max_memory = max_memory_entries
        self._clock = clock
        self._on_commit = on_commit

        self._batch: deque[_Row] = deque()  # readings and events waiting for a commit
        self._alarms: deque[_Row] = deque()  # alarms waiting (never dropped, so kept apart)
        self._acks_new: set[int] = set()  # acknowledged, not handed to a commit yet
        self._acks_flight: frozenset[int] = frozenset()  # acks the commit under way writes
        self._new_channels: list[tuple[int, str, str, str | None]] = []
        self._flight: _Flight | None = None
        self._flight_done: asyncio.Future[None] | None = None
        self._writer_lock = threading.Lock()
        self._closed = False
        self._appended = self._committed = self._acked = 0
        self._last_retention = float("-inf")

        self._lock_fd = -1
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        try:
            self._open()
        except BaseException:
            self._close_files()
            raise

    # -- opening and closing ----------------------------------------------------------------

    def _open(self) -> None:
        path = self._path
        try:
            self._lock_fd = open_private(path.with_name(path.name + ".lock"))
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.close(open_private(path))
        except BlockingIOError as err:
            raise JournalError(f"journal {path} is open elsewhere") from err
        except OSError as err:
            raise JournalError(f"cannot open journal {path}: {err}") from err
        try:
            # Autocommit mode: every transaction is opened explicitly.
            writer = self._writer = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=10.0
            )
            mode = writer.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise JournalError(f"journal {path}: SQLite refused WAL mode (got {mode})")
            writer.execute("PRAGMA synchronous=FULL")
            # Keep a checkpointed WAL from staying huge after a burst.
            writer.execute("PRAGMA journal_size_limit=16777216")
            self._prepare_schema(writer)
            reader = self._reader = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=10.0
            )
            reader.execute("PRAGMA query_only=ON")
            self._load_state(reader)
            tighten_sidecars(path)
        except sqlite3.Error as err:
            raise JournalError(f"journal {path}: {err}") from err

    def _prepare_schema(self, db: sqlite3.Connection) -> None:
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                if db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                    raise JournalError(f"{self._path} is a database, but not a journal")
                for statement in sql_statements(_SCHEMA):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            elif version != SCHEMA_VERSION:
                raise JournalError(
                    f"journal {self._path}: schema version {version}, "
                    f"this code knows {SCHEMA_VERSION}"
                )
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise

    def _load_state(self, db: sqlite3.Connection) -> None:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        highest = db.execute(
            "SELECT max(seq) FROM (SELECT max(seq) AS seq FROM entries "
            "UNION ALL SELECT seq FROM sqlite_sequence WHERE name = 'entries')"
        ).fetchone()[0]
        last_seq = max(int(meta["last_seq"]), int(highest or 0))
        self._next_seq = last_seq + 1
        self._committed_seq = last_seq
        self._dropped = self._dropped_stored = int(meta["dropped_readings"])
        self._channels: dict[int, _ChannelKey] = {}
        self._channel_ids: dict[_ChannelKey, int] = {}
        for channel_id, node, field_name, unit in db.execute(
            "SELECT id, node, field, unit FROM channels"
        ).fetchall():
            self._channels[channel_id] = (node, field_name, unit)
            self._channel_ids[(node, field_name, unit)] = channel_id
        self._next_channel = max(self._channels, default=0) + 1
        self._db_rows = int(db.execute("SELECT count(*) FROM entries").fetchone()[0])
        self._db_unacked = int(
            db.execute("SELECT count(*) FROM entries WHERE acked = 0").fetchone()[0]
        )

    def close(self) -> None:
        """Commit what is left (synchronously, blocking the caller) and close the files.

        When the last batch cannot be written, the files are closed all the same and
        :class:`JournalError` (:class:`JournalFull` for a full disk) is raised: that batch is
        lost. A second close does nothing.
        """
        if self._closed:
            return
        self._closed = True
        error: JournalError | None = None
        try:
            flight = self._flight
            if flight is not None:
                # A commit is under way in a worker thread: let it finish, or take it over if
                # the worker has not started yet.
                with self._writer_lock:
                    if not flight.done:
                        flight.abandoned = True
                self._settle(flight)
            final = self._take_flight()
            if final is not None:
                self._write(final)
                self._settle(final)
                error = final.error
        finally:
            self._close_files()
        if error is not None:
            raise error

    def _close_files(self) -> None:
        for db in (self._reader, self._writer):
            if db is not None:
                with contextlib.suppress(sqlite3.Error):
                    db.close()
        self._reader = self._writer = None
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def _check_open(self) -> None:
        if self._closed:
            raise JournalError(f"journal {self._path} is closed")

    # -- appending and committing -------------------------------------------------------------

    def append(
        self,
        kind: Kind,
        node: str,
        field: str,
        value: str,
        unit: str | None,
        timestamp: datetime,
        extra: str | None = None,
    ) -> int:
        """Add an entry to the in-memory batch and return its seq (never blocks).

        The entry is durable once a later :meth:`commit` returned. ``timestamp`` must be aware.
        """
        if self._closed:
            self._check_open()
        try:
            code = _KIND_CODES[kind]
            ts = (timestamp - _EPOCH) // _MICROSECOND
        except KeyError:
            raise ValueError(f"unknown journal entry kind {kind!r}") from None
        except TypeError:
            raise ValueError("journal timestamps must be timezone-aware") from None
        key = (node, field, unit)
        channel = self._channel_ids.get(key)
        if channel is None:
            channel = self._add_channel(key)
        seq = self._next_seq
        self._next_seq = seq + 1
        self._appended += 1
        if code == _ALARM:
            self._alarms.append((seq, code, channel, value, ts, extra))
        else:
            self._batch.append((seq, code, channel, value, ts, extra))
            if len(self._batch) > self._max_memory:
                self._trim_memory()
        return seq

    def _add_channel(self, key: _ChannelKey) -> int:
        channel = self._next_channel
        self._next_channel += 1
        self._channels[channel] = key
        self._channel_ids[key] = channel
        self._new_channels.append((channel, *key))
        return channel

    def _trim_memory(self) -> None:
        # Only while commits fail (disk full) or stall: the oldest readings/events go, counted.
        while len(self._batch) > self._max_memory:
            self._batch.popleft()
            self._dropped += 1

    async def commit(self) -> int:
        """Durably write the batch (and the acks recorded so far); return :attr:`committed_seq`.

        The write runs in a worker thread; appends go on into the next batch meanwhile. Commits
        are sequential: a commit waits for the one under way. Cancelling ``commit`` does not
        cancel the write, which completes (or fails and is retried) on its own.

        Raises :class:`JournalFull` when the disk is full (the batch stays in memory) and
        :class:`JournalError` on other storage errors.
        """
        self._check_open()
        while (earlier := self._flight_done) is not None:
            await asyncio.wait({earlier})
            if self._flight is not None and self._flight_done is earlier:
                self._settle(self._flight)
        self._check_open()  # closed while waiting
        flight = self._take_flight()
        if flight is None:
            return self._committed_seq
        loop = asyncio.get_running_loop()
        try:
            # A bare executor future, not a task: asyncio.run() cancels leftover tasks at
            # shutdown, and a write must never look cancelled while its thread still writes.
            done = loop.run_in_executor(None, self._write, flight)
        except BaseException:
            flight.abandoned = True
            self._settle(flight)
            raise
        self._flight_done = done
        done.add_done_callback(lambda _done: self._settle(flight))
        await asyncio.shield(done)
        self._settle(flight)
        if flight.error is not None:
            raise flight.error
        return self._committed_seq

    async def run(self, interval_s: float = 0.05) -> None:
        """Group commit loop: one commit every ``interval_s``. Cancel it to stop; it commits
        what is left first. It ends by itself when the journal is closed. A full disk is logged
        and retried with a backoff; other storage errors end the loop."""
        delay = interval_s
        disk_full = False
        try:
            while True:
                await asyncio.sleep(delay)
                if self._closed:
                    return
                try:
                    await self.commit()
                except JournalFull as err:
                    if not disk_full:
                        _LOGGER.error("%s", err)
                    disk_full = True
                    delay = min(delay * 2, max(interval_s, _MAX_RETRY_INTERVAL_S))
                    continue
                if disk_full:
                    _LOGGER.warning("journal %s: writing again after a full disk", self._path)
                disk_full = False
                delay = interval_s
        except asyncio.CancelledError:
            if not self._closed:
                try:
                    await self.commit()
                except JournalError as err:
                    _LOGGER.error("journal %s: last commit failed: %s", self._path, err)
            raise

    def _take_flight(self) -> _Flight | None:
        now = self._clock()
        retention_due = now - self._last_retention >= RETENTION_CHECK_S
        counter_stale = self._dropped != self._dropped_stored
        if not (self._batch or self._alarms or self._acks_new or retention_due or counter_stale):
            return None
        self._last_retention = now
        flight = _Flight(
            readings=self._batch,
            alarms=self._alarms,
            acks=frozenset(self._acks_new),
            channels=self._new_channels,
            last_seq=self._next_seq - 1,
            dropped_total=self._dropped,
            db_rows=self._db_rows,
            cutoff_us=int((now - self._history_s) * 1_000_000),
        )
        self._batch, self._alarms, self._new_channels = deque(), deque(), []
        self._acks_new = set()
        self._acks_flight = flight.acks
        self._flight = flight
        return flight

    def _write(self, flight: _Flight) -> None:
        """Run one commit's transaction (in a worker thread, or in close())."""
        with self._writer_lock:
            if flight.abandoned:
                return
            db = self._writer
            try:
                if db is None:
                    raise JournalError(f"journal {self._path} is closed")
                flight.outcome = self._transaction(db, flight)
            except JournalError as err:
                flight.error = err
            except (sqlite3.Error, OSError) as err:
                flight.error = self._storage_error(err, flight)
            finally:
                flight.done = True

    def _transaction(self, db: sqlite3.Connection, flight: _Flight) -> _Outcome:
        db.execute("BEGIN IMMEDIATE")
        try:
            if flight.channels:
                db.executemany(_INSERT_CHANNEL, flight.channels)
            if flight.readings:
                db.executemany(_INSERT_ENTRY, flight.readings)
            if flight.alarms:
                db.executemany(_INSERT_ENTRY, flight.alarms)
            acked = 0
            if flight.acks:
                acked = db.executemany(_ACK, ((seq,) for seq in sorted(flight.acks))).rowcount
            deleted_acked = db.execute(_EXPIRE, (flight.cutoff_us,)).rowcount
            excess = flight.db_rows + flight.rows_written - deleted_acked - self._max_entries
            if excess > 0:
                evicted = db.execute(_EVICT_ACKED, (excess,)).rowcount
                deleted_acked += evicted
                excess -= evicted
            dropped: list[int] = []
            if excess > 0:
                dropped = [row[0] for row in db.execute(_DROP_UNACKED, (excess,)).fetchall()]
            db.execute(_SET_META, (flight.last_seq, "last_seq"))
            db.execute(_SET_META, (flight.dropped_total + len(dropped), "dropped_readings"))
            db.execute("COMMIT")
        except BaseException:
            # SQLite may have rolled back already (SQLITE_FULL does, sometimes).
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        return _Outcome(acked=acked, deleted_acked=deleted_acked, dropped=dropped)

    def _storage_error(self, err: sqlite3.Error | OSError, flight: _Flight) -> JournalError:
        waiting = flight.rows_written + len(self._batch) + len(self._alarms)
        if _is_disk_full(err):
            return JournalFull(
                f"journal {self._path}: the disk is full ({err}); {waiting} entries wait in "
                "memory and the commit will be retried. Free space on that filesystem or lower "
                "journal.max_entries."
            )
        return JournalError(f"journal {self._path}: commit failed ({err}); {waiting} entries wait")

    def _settle(self, flight: _Flight) -> None:
        """Apply a finished commit to the in-memory state (on the loop's thread, exactly once)."""
        if flight.settled or not (flight.done or flight.abandoned):
            return
        flight.settled = True
        if self._flight is flight:
            self._flight = None
            self._flight_done = None
            self._acks_flight = frozenset()
        outcome = flight.outcome
        if outcome is None:  # failed or abandoned: everything goes back, ahead of newer data
            self._batch.extendleft(reversed(flight.readings))
            self._alarms.extendleft(reversed(flight.alarms))
            self._acks_new |= flight.acks
            self._new_channels[:0] = flight.channels
            self._trim_memory()
            return
        dropped = len(outcome.dropped)
        self._committed += flight.rows_written
        self._committed_seq = max(self._committed_seq, flight.last_seq)
        self._db_rows += flight.rows_written - outcome.deleted_acked - dropped
        self._db_unacked += flight.rows_written - outcome.acked - dropped
        # Entries acknowledged while this commit was dropping them were delivered after all:
        # not a loss (the counter stored by the next commit is corrected).
        late = self._acks_new.intersection(outcome.dropped)
        self._acks_new -= late
        self._dropped += dropped - len(late)
        self._dropped_stored = flight.dropped_total + dropped
        if flight.rows_written and self._on_commit is not None:
            self._on_commit(self._committed_seq)

    # -- reading ------------------------------------------------------------------------------

    @property
    def committed_seq(self) -> int:
        """Every entry up to this seq is committed (or was dropped by the size policy)."""
        return self._committed_seq

    def pending(self, after_seq: int, limit: int) -> list[Entry]:
        """Committed, unacknowledged entries with ``seq > after_seq``, ascending, at most
        ``limit``."""
        db = self._read_db()
        out: list[Entry] = []
        cursor = after_seq
        while len(out) < limit:
            want = limit - len(out)
            try:
                rows = db.execute(
                    f"SELECT {_COLUMNS} FROM entries INDEXED BY entries_by_ack "
                    "WHERE acked = 0 AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
                    (cursor, self._committed_seq, want),
                ).fetchall()
            except sqlite3.Error as err:
                raise JournalError(f"journal {self._path}: {err}") from err
            out.extend(
                self._entry(row)
                for row in rows
                if row[0] not in self._acks_new and row[0] not in self._acks_flight
            )
            if len(rows) < want:
                break
            cursor = rows[-1][0]
        return out

    def ack(self, seqs: Iterable[int]) -> int:
        """Mark entries acknowledged upstream; return how many were newly acknowledged.

        Takes effect at once for :meth:`pending` and :meth:`stats`, and reaches the disk with
        the next commit. Seqs that are unknown, not committed, already acknowledged or dropped
        are ignored.
        """
        db = self._read_db()
        wanted = [
            seq for seq in set(seqs) if seq not in self._acks_new and seq not in self._acks_flight
        ]
        if not wanted:
            return 0
        try:
            found = db.execute(
                "SELECT seq FROM entries WHERE acked = 0 AND seq <= ? "
                "AND seq IN (SELECT value FROM json_each(?))",
                (self._committed_seq, json.dumps(wanted)),
            ).fetchall()
        except sqlite3.Error as err:
            raise JournalError(f"journal {self._path}: {err}") from err
        self._acks_new.update(row[0] for row in found)
        self._acked += len(found)
        return len(found)

    def history(self, node: str, field: str | None, since: datetime) -> list[Entry]:
        """Committed readings (acknowledged or not) of ``node`` (one ``field``, or all when
        None) timestamped ``since`` or later, in time order."""
        db = self._read_db()
        try:
            since_us = (since - _EPOCH) // _MICROSECOND
        except TypeError:
            raise ValueError("journal timestamps must be timezone-aware") from None
        channels = [
            channel
            for channel, (channel_node, channel_field, _unit) in self._channels.items()
            if channel_node == node and (field is None or channel_field == field)
        ]
        rows: list[_Row] = []
        try:
            for channel in channels:
                rows += db.execute(
                    f"SELECT {_COLUMNS} FROM entries INDEXED BY entries_history "
                    f"WHERE kind = {_READING} AND channel = ? AND ts >= ? AND seq <= ?",
                    (channel, since_us, self._committed_seq),
                ).fetchall()
        except sqlite3.Error as err:
            raise JournalError(f"journal {self._path}: {err}") from err
        rows.sort(key=lambda row: (row[4], row[0]))
        return [self._entry(row) for row in rows]

    def stats(self) -> JournalStats:
        size = 0
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                size += os.stat(self._path.with_name(self._path.name + suffix)).st_size
        flight = self._flight
        in_flight = flight.rows_written if flight is not None and not flight.settled else 0
        return JournalStats(
            appended=self._appended,
            committed=self._committed,
            acked=self._acked,
            depth=self._db_unacked - len(self._acks_new) - len(self._acks_flight),
            batched=len(self._batch) + len(self._alarms) + in_flight,
            entries=self._db_rows,
            dropped_readings=self._dropped,
            size_bytes=size,
            last_seq=self._next_seq - 1,
        )

    def _read_db(self) -> sqlite3.Connection:
        self._check_open()
        assert self._reader is not None
        return self._reader

    def _entry(self, row: _Row) -> Entry:
        seq, kind, channel, value, ts, extra = row
        node, field_name, unit = self._channels[channel]
        return Entry(
            seq=seq,
            kind=_KINDS[kind],
            node=node,
            field=field_name,
            value=value,
            unit=unit,
            timestamp=_EPOCH + timedelta(microseconds=ts),
            extra=extra,
        )


# -- helpers ----------------------------------------------------------------------------------


def _is_disk_full(err: sqlite3.Error | OSError) -> bool:
    if isinstance(err, OSError):
        return err.errno in (errno.ENOSPC, errno.EDQUOT)
    code = getattr(err, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == sqlite3.SQLITE_FULL
