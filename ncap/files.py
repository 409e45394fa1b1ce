"""State files that hold secrets: private files written atomically, private SQLite databases."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Self


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically with mode 0600 (temp file, fsync, rename).

    The temp file is made 0600 even if a stale one with wider permissions was left behind.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def open_private(path: Path) -> int:
    """Open (or create) a file readable by its owner only, tightening an existing one; the
    caller closes the descriptor. A new file's directory entry is made durable too."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        info = os.fstat(fd)
        if info.st_mode & 0o077:
            os.fchmod(fd, 0o600)
        if info.st_size == 0:
            dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def create_private(path: Path) -> None:
    """A database file readable by its owner only, before SQLite opens it."""
    os.close(open_private(path))


def tighten_sidecars(database: Path) -> None:
    """SQLite's ``-wal``/``-shm`` files get the database's mode bits; make sure of 0600."""
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(database.with_name(database.name + suffix), 0o600)


def sql_statements(script: str) -> list[str]:
    """The statements of a schema script (``--`` comments removed), for ``execute`` one by one."""
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    return [part.strip() for part in "\n".join(lines).split(";") if part.strip()]


def open_wal_database(
    path: Path,
    *,
    schema: str,
    version: int,
    synchronous: str,
    error: Callable[[str], Exception],
    check_same_thread: bool = True,
) -> sqlite3.Connection:
    """An SQLite database in WAL mode, 0600, with ``schema`` applied to a new file (stamped
    ``PRAGMA user_version = version``) and any other version refused; autocommit mode, so the
    caller opens each transaction. Failures raise ``error(text)``."""
    try:
        create_private(path)
        db = sqlite3.connect(
            path, timeout=5.0, isolation_level=None, check_same_thread=check_same_thread
        )
    except (OSError, sqlite3.Error) as err:
        raise error(f"cannot open {path}: {err}") from err
    try:
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise error(f"{path}: SQLite refused WAL mode (got {mode})")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("BEGIN IMMEDIATE")
        try:
            found = db.execute("PRAGMA user_version").fetchone()[0]
            if found == 0:
                for statement in sql_statements(schema):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version={version}")
            elif found != version:
                raise error(f"{path}: schema version {found}, this code knows {version}")
            db.execute("COMMIT")
        except BaseException:
            db.rollback()
            raise
        tighten_sidecars(path)
    except (OSError, sqlite3.Error) as err:
        db.close()
        raise error(f"{path}: {err}") from err
    except BaseException:
        db.close()
        raise
    return db


class PrivateDatabase:
    """One private WAL database (:func:`open_wal_database`) and one connection to it: write
    transactions and reads serialised by a lock, SQLite errors raised as :attr:`error`."""

    error: type[Exception] = Exception
    what = "database"

    def __init__(
        self,
        path: Path,
        *,
        schema: str,
        version: int,
        synchronous: str,
        check_same_thread: bool = True,
    ) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = open_wal_database(
            self._path,
            schema=schema,
            version=version,
            synchronous=synchronous,
            error=self.error,
            check_same_thread=check_same_thread,
        )

    @property
    def path(self) -> Path:
        return self._path

    def close(self) -> None:
        """Close the database (a second close does nothing)."""
        with self._lock:
            db, self._db = self._db, None
        if db is not None:
            try:
                db.close()
            except sqlite3.Error as err:
                raise self.error(f"{self._path}: {err}") from err

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (a second writer waits instead of deadlocking)
        and rolled back as a whole on any failure."""
        with self._lock:
            db = self._open_db()
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    db.rollback()
                    raise
                db.execute("COMMIT")
            except sqlite3.Error as err:
                if db.in_transaction:
                    db.rollback()
                raise self.error(f"{self._path}: {err}") from err

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = self._open_db()
            try:
                yield db
            except sqlite3.Error as err:
                raise self.error(f"{self._path}: {err}") from err

    def _open_db(self) -> sqlite3.Connection:
        if self._db is None:
            raise self.error(f"the {self.what} is closed")
        return self._db
