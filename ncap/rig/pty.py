"""Two connected pseudo-terminals, as a stand-in for a serial cable.

Why ``socat`` and not :func:`os.openpty`: ``openpty()`` gives one master/slave pair, and only the
slave has a device path; the master is a bare file descriptor that lives in our process. A
serial cable needs *two* device paths that separate programs (the gateway under test, a TIM
simulator, ``ncap demo``, a human with ``picocom``) can open by name with pyserial, exactly like
``/dev/ttyUSB0``. ``socat`` opens two ptys, copies bytes between their masters, and puts stable
symlinks (``a`` and ``b``) to the slave devices where we ask.

Ptys do not accept parity E/O (see test-rig-notes.md): open both ends as 8N1.
"""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from ncap.errors import RigError

__all__ = ["PtyPair"]

_LOGGER = logging.getLogger(__name__)

_POLL_INTERVAL = 0.02


class PtyPair:
    """``with PtyPair() as pair:`` gives ``pair.a_path`` and ``pair.b_path``, joined by socat.

    ``directory`` holds the two symlinks and socat's log; by default a temporary directory
    that is removed on exit. Bytes written to one end are read from the other, both ways.
    """

    def __init__(self, directory: Path | None = None) -> None:
        self._own_directory = directory is None
        self.directory = (
            Path(tempfile.mkdtemp(prefix="ncap-pty-")) if directory is None else directory
        )
        self.a_path = self.directory / "a"
        self.b_path = self.directory / "b"
        self.log_file = self.directory / "socat.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """PID of the running socat, or ``None``."""
        if self._proc is None or self._proc.poll() is not None:
            return None
        return self._proc.pid

    def start(self, timeout: float = 10.0) -> None:
        """Start socat and wait (bounded) until both device links exist."""
        if self.pid is not None:
            raise RigError(f"socat for {self.directory} is already running (pid {self.pid})")
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in (self.a_path, self.b_path):
            stale.unlink(missing_ok=True)
        with self.log_file.open("wb") as log:
            self._proc = subprocess.Popen(
                [
                    "socat",
                    "-d",
                    "-d",
                    f"pty,raw,echo=0,link={self.a_path}",
                    f"pty,raw,echo=0,link={self.b_path}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        try:
            while not (self.a_path.exists() and self.b_path.exists()):
                if self._proc.poll() is not None:
                    raise RigError(
                        f"socat exited with status {self._proc.returncode}: {self._log_text()}"
                    )
                if time.monotonic() >= deadline:
                    raise RigError(
                        f"socat did not create both ptys in {timeout} s: {self._log_text()}"
                    )
                time.sleep(_POLL_INTERVAL)
        except BaseException:
            self.stop()
            raise
        _LOGGER.debug(
            "pty pair %s <-> %s (socat pid=%d)",
            self.a_path.resolve(),
            self.b_path.resolve(),
            self._proc.pid,
        )

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM socat by PID, SIGKILL after ``timeout``; remove our temporary directory.

        Idempotent.
        """
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace").strip() or "<no output>"
        except OSError as err:
            return f"<{self.log_file}: {err.strerror}>"
