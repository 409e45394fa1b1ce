"""Run SIPp (Debian ``sip-tester``) scenarios on loopback and read back what went over the wire.

A :class:`SippRun` is one SIPp process: a UAC scenario aimed at ``target`` or a UAS scenario
waiting for requests on its local port. It always runs bounded (``-m`` calls, ``-timeout Ns
-timeout_error``, and a hard limit of our own that kills it by PID), with its message trace
(``-trace_msg``), ``<log>`` actions (``-trace_logs``), unexpected messages (``-trace_err``) and
final screen in its work directory. :class:`SippResult` carries the exit code (0 = every call
succeeded, 1 = at least one failed, 99 = none was processed, as SIPp documents) and the traced
messages, parsed, so tests can assert on bodies and headers that a scenario's ``<ereg>`` checks
cannot express.

``SippRun(...).run()`` starts, waits for the end and returns the result. Background use, e.g.
a UAS waiting for the bridge's MESSAGE while the test acts::

    with SippRun(SCENARIOS / "message_uas.xml", workdir) as uas:   # start() waits until bound
        ...make the bridge send...
        result = uas.wait()

and in an asyncio test ``await uas.start_async()`` / ``await uas.wait_async()`` keep the event
loop (and the bridge in it) running. :meth:`SippRun.wait_for_message` follows a running SIPp's
trace, e.g. to publish only after a watcher got its first NOTIFY.

Parameters reach a scenario as SIPp keywords: ``keys={"domain": "example.test"}`` fills
``[domain]``; ``service`` fills ``[service]`` (``-s``); ``inject`` rows become an injection file
(``[field0]``...); ``auth`` gives ``-au``/``-ap`` for ``[authentication]``. SIPp has no TLS in
this build: the transports are ``u1`` (UDP) and ``t1`` (TCP).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from ncap.errors import RigError
from ncap.rig.kamailio import free_sip_ports

__all__ = ["SippResult", "SippRun", "TracedMessage", "Transport", "parse_message_trace"]

_LOGGER = logging.getLogger(__name__)

Transport = Literal["u1", "t1"]

_POLL_INTERVAL = 0.02
_GRACE = 5.0  # beyond SIPp's own -timeout before we kill it
_COMPACT = {
    "i": "call-id", "f": "from", "t": "to", "v": "via", "m": "contact", "l": "content-length",
    "c": "content-type", "o": "event", "k": "supported", "s": "subject", "e": "content-encoding",
    "a": "accept-contact", "j": "reject-contact", "d": "request-disposition", "u": "allow-events",
}  # fmt: skip
# One trace entry: "-----...----- <date> <time>\n<PROTO> message sent (N bytes):\n\n<N bytes>"
_TRACE_HEAD = re.compile(
    rb"^-{10,} (?P<stamp>[0-9-]+ [0-9:.]+)\n"
    rb"(?P<proto>[A-Z]+) message (?:(?P<sent>sent) \((?P<slen>\d+) bytes\):"
    rb"|(?P<recv>received) \[(?P<rlen>\d+)\] bytes :)\n\n",
    re.MULTILINE,
)
_counter = itertools.count(1)


@dataclass(frozen=True)
class TracedMessage:
    """One SIP message from SIPp's trace, as SIPp sent or received it."""

    direction: Literal["sent", "received"]
    transport: str  # "UDP" or "TCP"
    timestamp: str
    raw: bytes

    @property
    def text(self) -> str:
        return self.raw.decode("utf-8", "replace")

    @property
    def start_line(self) -> str:
        return self.text.split("\r\n", 1)[0]

    @property
    def method(self) -> str | None:
        """The request method, or ``None`` for a response."""
        first = self.start_line.split(" ", 1)[0]
        return None if first.startswith("SIP/") else first

    @property
    def status(self) -> int | None:
        """The response status code, or ``None`` for a request."""
        parts = self.start_line.split(" ", 2)
        if parts[0].startswith("SIP/") and len(parts) > 1 and parts[1].isdigit():
            return int(parts[1])
        return None

    @property
    def cseq_method(self) -> str | None:
        """The method in CSeq (tells which request a response answers)."""
        value = self.header("CSeq")
        return value.split()[-1] if value else None

    def headers(self, name: str) -> list[str]:
        """Values of every ``name`` header (compact forms included; folded lines unfolded)."""
        wanted = _COMPACT.get(name.lower(), name.lower())
        head = self.text.split("\r\n\r\n", 1)[0]
        unfolded = re.sub(r"\r\n[ \t]+", " ", head).split("\r\n")[1:]
        values = []
        for line in unfolded:
            field, sep, value = line.partition(":")
            key = field.strip().lower()
            if sep and _COMPACT.get(key, key) == wanted:
                values.append(value.strip())
        return values

    def header(self, name: str) -> str | None:
        """The first ``name`` header's value, or ``None``."""
        values = self.headers(name)
        return values[0] if values else None

    @property
    def body(self) -> str:
        parts = self.text.split("\r\n\r\n", 1)
        return parts[1] if len(parts) > 1 else ""


def parse_message_trace(data: bytes) -> list[TracedMessage]:
    """Split SIPp's ``-trace_msg`` file into messages (each entry states its byte length)."""
    messages = []
    for match in _TRACE_HEAD.finditer(data):
        length = int(match["slen"] or match["rlen"])
        raw = data[match.end() : match.end() + length]
        if len(raw) < length:
            break  # SIPp is still writing this entry
        messages.append(
            TracedMessage(
                direction="sent" if match["sent"] else "received",
                transport=match["proto"].decode("ascii"),
                timestamp=match["stamp"].decode("ascii"),
                raw=raw,
            )
        )
    return messages


@dataclass(frozen=True)
class SippResult:
    """What one SIPp run did: its exit code, traced messages and logs."""

    scenario: str
    returncode: int
    messages: list[TracedMessage]
    log: str  # <log> actions (-trace_logs)
    errors: str  # unexpected messages (-trace_err)
    screen: str  # the final statistics screen

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def requests(self, method: str, direction: str = "received") -> list[TracedMessage]:
        return [m for m in self.messages if m.method == method and m.direction == direction]

    def responses(
        self, status: int | None = None, direction: str = "received", *, to: str | None = None
    ) -> list[TracedMessage]:
        """Responses (of ``status``, answering method ``to``, when given) in ``direction``."""
        return [
            m
            for m in self.messages
            if m.status is not None
            and m.direction == direction
            and (status is None or m.status == status)
            and (to is None or m.cseq_method == to)
        ]

    def describe(self) -> str:
        flow = "\n".join(
            f"  {'->' if m.direction == 'sent' else '<-'} {m.start_line}" for m in self.messages
        )
        return (
            f"sipp {self.scenario} exited with {self.returncode}\n"
            f"--- flow ---\n{flow or '  <no messages>'}\n"
            f"--- log ---\n{self.log.strip() or '<empty>'}\n"
            f"--- unexpected ---\n{self.errors.strip()[-3000:] or '<none>'}\n"
            f"--- screen ---\n{self.screen.strip()[-2000:] or '<none>'}"
        )

    def expect_success(self) -> Self:
        """Return ``self`` if every call succeeded, else raise :class:`RigError` with details."""
        if not self.ok:
            raise RigError(self.describe())
        return self


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def _socket_inodes(pid: int) -> set[str]:
    """Inodes of the sockets process ``pid`` holds open (``socket:[123]`` links in /proc)."""
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    with contextlib.suppress(OSError):
        for fd in fd_dir.iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    return inodes


def _bound_inodes(table: str, host: str, port: int, *, listening: bool) -> set[str]:
    """Inodes of sockets bound to ``host:port`` in ``/proc/net/<table>`` (udp or tcp)."""
    # The kernel prints the address as a host-order 32-bit number: 0100007F on little-endian.
    address = int.from_bytes(socket.inet_aton(host), sys.byteorder)
    local = f"{address:08X}:{port:04X}"
    found = set()
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            # state 0A is TCP_LISTEN; UDP sockets show 07 (TCP_CLOSE) once bound
            if fields[1] == local and (not listening or fields[3] == "0A"):
                found.add(fields[9])
    return found


class SippRun:
    """One bounded SIPp process (see the module docstring)."""

    host: str = "127.0.0.1"

    def __init__(
        self,
        scenario: Path,
        workdir: Path,
        *,
        target: tuple[str, int] | None = None,
        transport: Transport = "u1",
        local_port: int = 0,
        service: str | None = None,
        calls: int = 1,
        timeout: float = 30.0,
        recv_timeout: float | None = None,
        pause_ms: int | None = None,
        keys: Mapping[str, str] | None = None,
        variables: Mapping[str, str] | None = None,
        inject: Sequence[Sequence[str]] | None = None,
        auth: tuple[str, str] | None = None,
        auth_uri: str | None = None,
        extra_args: Sequence[str] = (),
        name: str | None = None,
    ) -> None:
        """``local_port`` 0 picks a free one. ``timeout`` is SIPp's whole-run limit (seconds).

        ``recv_timeout`` (seconds) bounds each ``<recv>`` that has no timeout of its own;
        ``pause_ms`` is the length of every ``<pause/>`` without ``milliseconds`` (``-d``).
        ``variables`` become ``-set`` globals (declare them with ``<Global variables=…>``).
        ``auth_uri`` sets the digest ``uri`` as ``user@host`` (SIPp adds ``sip:``); without
        it SIPp sends ``sip:<target ip>:<port>``, not the Request-URI, which a server that
        checks the two against each other refuses.
        """
        if transport not in ("u1", "t1"):
            raise RigError(f"transport {transport!r}: this SIPp build offers u1 and t1 (no TLS)")
        if not scenario.is_file():
            raise RigError(f"no SIPp scenario at {scenario}")
        self.scenario = scenario.resolve()
        self.workdir = workdir.resolve()
        self.target = target
        self.transport: Transport = transport
        self.local_port = local_port
        self.service = service
        self.calls = calls
        self.timeout = timeout
        self.recv_timeout = recv_timeout
        self.pause_ms = pause_ms
        self.keys = dict(keys or {})
        self.variables = dict(variables or {})
        self.inject = [list(row) for row in inject] if inject is not None else None
        self.auth = auth
        self.auth_uri = auth_uri
        self.extra_args = tuple(extra_args)
        self.name = name or f"{self.scenario.stem}-{os.getpid()}-{next(_counter)}"
        self.message_file = self.workdir / f"{self.name}.messages.log"
        self.log_file = self.workdir / f"{self.name}.logs.log"
        self.error_file = self.workdir / f"{self.name}.errors.log"
        self.screen_file = self.workdir / f"{self.name}.screen.log"
        self.stdout_file = self.workdir / f"{self.name}.stdout.log"
        self.inject_file = self.workdir / f"{self.name}.csv"
        self._control_port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._deadline = 0.0
        self._result: SippResult | None = None

    # ---------------------------------------------------------------- state

    @property
    def pid(self) -> int | None:
        if self._proc is None or self._proc.poll() is not None:
            return None
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self.pid is not None

    @property
    def local_uri(self) -> str:
        """Where this SIPp takes requests, e.g. ``sip:127.0.0.1:40100`` (after start)."""
        suffix = ";transport=tcp" if self.transport == "t1" else ""
        return f"sip:{self.host}:{self.local_port}{suffix}"

    def argv(self) -> list[str]:
        """The SIPp command line (ports must have been chosen)."""
        argv = ["sipp"]
        if self.target is not None:
            argv.append(f"{self.target[0]}:{self.target[1]}")
        argv += [
            "-sf", str(self.scenario),
            "-t", self.transport,
            "-i", self.host,
            "-p", str(self.local_port),
            "-cp", str(self._control_port),  # not the shared default 8888
            "-m", str(self.calls),
            "-nostdin",
            # No BYE after an aborted call: these scenarios have no INVITE dialogs, and a stray
            # BYE would only be noise for the SUT. Unexpected messages still abort (fail) a call.
            "-default_behaviors", "all,-bye",
            "-timeout", f"{max(1, round(self.timeout))}s",
            "-timeout_error",
            "-trace_msg", "-message_file", str(self.message_file),
            "-trace_logs", "-log_file", str(self.log_file),
            "-trace_err", "-error_file", str(self.error_file),
            "-trace_screen", "-screen_file", str(self.screen_file),
        ]  # fmt: skip
        if self.service is not None:
            argv += ["-s", self.service]
        if self.recv_timeout is not None:
            argv += ["-recv_timeout", str(round(self.recv_timeout * 1000))]
        if self.pause_ms is not None:
            argv += ["-d", str(self.pause_ms)]
        for keyword, value in self.keys.items():
            argv += ["-key", keyword, value]
        for variable, value in self.variables.items():
            argv += ["-set", variable, value]
        if self.inject is not None:
            argv += ["-inf", str(self.inject_file)]
        if self.auth is not None:
            argv += ["-au", self.auth[0], "-ap", self.auth[1]]
        if self.auth_uri is not None:
            argv += ["-auth_uri", self.auth_uri]
        return argv + list(self.extra_args)

    # ---------------------------------------------------------------- lifecycle

    def start(self, timeout: float = 5.0) -> None:
        """Start SIPp and wait (bounded) until its SIP socket is bound (TCP: listening)."""
        self._launch()
        deadline = time.monotonic() + timeout
        try:
            while not self._is_listening():
                self._check_startup(deadline, timeout)
                time.sleep(_POLL_INTERVAL)
        except BaseException:
            self.stop()
            raise

    async def start_async(self, timeout: float = 5.0) -> None:
        """:meth:`start` without blocking the event loop."""
        self._launch()
        deadline = time.monotonic() + timeout
        try:
            while not self._is_listening():
                self._check_startup(deadline, timeout)
                await asyncio.sleep(_POLL_INTERVAL)
        except BaseException:
            self.stop()
            raise

    def wait(self, timeout: float | None = None) -> SippResult:
        """Wait for SIPp to finish and return its result.

        ``timeout`` defaults to SIPp's own ``-timeout`` plus a grace period; past it SIPp is
        killed and :class:`RigError` raised (with what it had traced).
        """
        if self._result is not None:
            return self._result
        proc = self._require_started()
        limit = self._wait_limit(timeout)
        try:
            proc.wait(max(0.0, limit - time.monotonic()))
        except subprocess.TimeoutExpired:
            self._timed_out()
        return self._finish()

    async def wait_async(self, timeout: float | None = None) -> SippResult:
        """:meth:`wait` without blocking the event loop."""
        if self._result is not None:
            return self._result
        proc = self._require_started()
        limit = self._wait_limit(timeout)
        while proc.poll() is None:
            if time.monotonic() >= limit:
                self._timed_out()
            await asyncio.sleep(_POLL_INTERVAL)
        return self._finish()

    def run(self, timeout: float | None = None) -> SippResult:
        """Start, wait for the end, and return the result (SIPp is stopped whatever happens)."""
        self.start()
        try:
            return self.wait(timeout)
        finally:
            self.stop()

    async def run_async(self, timeout: float | None = None) -> SippResult:
        """:meth:`run` without blocking the event loop."""
        await self.start_async()
        try:
            return await self.wait_async(timeout)
        finally:
            self.stop()

    def messages(self) -> list[TracedMessage]:
        """The messages traced so far (SIPp may still be running)."""
        return parse_message_trace(_read(self.message_file))

    def wait_for_message(
        self, predicate: Callable[[TracedMessage], bool], timeout: float = 10.0
    ) -> TracedMessage:
        """Follow the trace of the running SIPp until a message satisfies ``predicate``."""
        deadline = time.monotonic() + timeout
        while True:
            found = self._poll_for(predicate, deadline, timeout)
            if found is not None:
                return found
            time.sleep(_POLL_INTERVAL)

    async def wait_for_message_async(
        self, predicate: Callable[[TracedMessage], bool], timeout: float = 10.0
    ) -> TracedMessage:
        """:meth:`wait_for_message` without blocking the event loop."""
        deadline = time.monotonic() + timeout
        while True:
            found = self._poll_for(predicate, deadline, timeout)
            if found is not None:
                return found
            await asyncio.sleep(_POLL_INTERVAL)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM a still-running SIPp by PID, SIGKILL after ``timeout``. Idempotent."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
        _LOGGER.debug("sipp %s pid=%d stopped (%s)", self.name, proc.pid, proc.returncode)

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

    # ---------------------------------------------------------------- internals

    def _launch(self) -> None:
        if self._proc is not None:
            raise RigError(f"sipp {self.name} was already started")
        if shutil.which("sipp") is None:
            raise RigError(
                "sipp is not installed (Debian package sip-tester; see scripts/setup.sh)"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        wanted = 1 if self.local_port else 2
        ports = free_sip_ports(wanted, host=self.host)
        if not self.local_port:
            self.local_port = ports.pop()
        self._control_port = ports[0]
        if self.inject is not None:
            self._write_inject_file()
        for stale in (self.message_file, self.log_file, self.error_file, self.screen_file):
            stale.unlink(missing_ok=True)
        argv = self.argv()
        _LOGGER.debug("sipp %s: %s", self.name, " ".join(argv))
        with self.stdout_file.open("wb") as out:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        self._deadline = time.monotonic() + self.timeout + _GRACE

    def _write_inject_file(self) -> None:
        assert self.inject is not None
        lines = ["SEQUENTIAL"]
        for row in self.inject:
            for field in row:
                if any(ch in field for ch in ";\r\n"):
                    raise RigError(f"injection field {field!r} contains ';' or a line break")
            lines.append(";".join(row) + ";")
        self.inject_file.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def _is_listening(self) -> bool:
        proc = self._proc
        assert proc is not None
        if self.transport == "t1":
            bound = _bound_inodes("tcp", self.host, self.local_port, listening=True)
        else:
            bound = _bound_inodes("udp", self.host, self.local_port, listening=False)
        return bool(bound & _socket_inodes(proc.pid))

    def _check_startup(self, deadline: float, timeout: float) -> None:
        proc = self._proc
        assert proc is not None
        if proc.poll() is not None:
            raise RigError(
                f"sipp {self.name} exited with {proc.returncode} before binding "
                f"{self.host}:{self.local_port}\n{self._stdout_tail()}"
            )
        if time.monotonic() >= deadline:
            raise RigError(
                f"sipp {self.name} did not bind {self.host}:{self.local_port} in {timeout} s\n"
                + self._stdout_tail()
            )

    def _poll_for(
        self, predicate: Callable[[TracedMessage], bool], deadline: float, timeout: float
    ) -> TracedMessage | None:
        self._require_started()
        for message in self.messages():
            if predicate(message):
                return message
        if self._proc is not None and self._proc.poll() is not None:
            raise RigError(
                f"sipp {self.name} ended without the awaited message\n" + self._finish().describe()
            )
        if time.monotonic() >= deadline:
            raise RigError(
                f"sipp {self.name}: awaited message not traced in {timeout} s; so far:\n"
                + "\n".join(f"  {m.direction} {m.start_line}" for m in self.messages())
            )
        return None

    def _require_started(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise RigError(f"sipp {self.name} was not started")
        return self._proc

    def _wait_limit(self, timeout: float | None) -> float:
        return self._deadline if timeout is None else time.monotonic() + timeout

    def _timed_out(self) -> None:
        self.stop()
        result = self._finish()
        raise RigError(f"sipp {self.name} did not finish in time; killed\n" + result.describe())

    def _finish(self) -> SippResult:
        proc = self._require_started()
        if self._result is None:
            assert proc.returncode is not None
            screen = _read(self.screen_file) or _read(self.stdout_file)
            self._result = SippResult(
                scenario=self.scenario.name,
                returncode=proc.returncode,
                messages=self.messages(),
                log=_read(self.log_file).decode("utf-8", "replace"),
                errors=_read(self.error_file).decode("utf-8", "replace"),
                screen=screen.decode("utf-8", "replace"),
            )
            _LOGGER.debug("sipp %s exited with %d", self.name, proc.returncode)
        return self._result

    def _stdout_tail(self) -> str:
        text = _read(self.stdout_file).decode("utf-8", "replace").strip()
        return "\n".join(text.splitlines()[-20:]) or "<no output>"
