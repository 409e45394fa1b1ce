"""systemd's notify protocol in plain Python: READY=1, STATUS=, WATCHDOG=1, STOPPING=1.

A notification is one datagram of ``NAME=value`` lines sent to the ``AF_UNIX`` socket that
systemd names in ``$NOTIFY_SOCKET`` (a leading ``@`` means Linux's abstract namespace). The
protocol is systemd's stable interface, so no libsystemd binding is needed. Outside systemd
(no ``$NOTIFY_SOCKET``) every call does nothing, so the gateway runs the same from a shell.

The watchdog timeout comes from ``$WATCHDOG_USEC``, meant for us only when ``$WATCHDOG_PID`` is
unset or names our own process (a child inheriting the environment must not ping for us).
"""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Mapping

__all__ = ["Notifier", "encode", "socket_address", "watchdog_timeout_s"]

_LOGGER = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


def encode(fields: Mapping[str, str]) -> bytes:
    """The datagram for *fields*: one ``NAME=value`` line each, in the order given.

    A newline would start a new assignment, so newlines inside a value become spaces.
    """
    lines = []
    for name, value in fields.items():
        if not _NAME.match(name):
            raise ValueError(f"not a notify variable name: {name!r}")
        lines.append(f"{name}={' '.join(value.splitlines())}")
    return "\n".join(lines).encode("utf-8")


def socket_address(notify_socket: str) -> str | bytes | None:
    """The address to send to for a ``$NOTIFY_SOCKET`` value, or None if we cannot use it.

    ``/path`` is a socket file, ``@name`` an abstract socket; other schemes (``vsock:``) are
    not for a service on the same machine.
    """
    if notify_socket.startswith("/"):
        return notify_socket
    if notify_socket.startswith("@") and len(notify_socket) > 1:
        return b"\0" + notify_socket[1:].encode("utf-8")
    return None


def watchdog_timeout_s(environ: Mapping[str, str], pid: int) -> float | None:
    """systemd's watchdog timeout for process *pid* in seconds, or None when none is set."""
    usec = environ.get("WATCHDOG_USEC", "")
    owner = environ.get("WATCHDOG_PID", "")
    if not usec:
        return None
    if owner and owner != str(pid):
        return None
    try:
        value = int(usec)
    except ValueError:
        _LOGGER.warning("ignoring WATCHDOG_USEC=%r: not a number of microseconds", usec)
        return None
    return value / 1_000_000 if value > 0 else None


class Notifier:
    """Sends notifications to systemd; does nothing when not started by systemd.

    A lost datagram is never worth failing the gateway for: send errors are logged (once
    until a send works again) and reported as False.
    """

    def __init__(self, notify_socket: str | None, *, watchdog_s: float | None = None) -> None:
        self.address = socket_address(notify_socket) if notify_socket else None
        if notify_socket and self.address is None:
            _LOGGER.warning("NOTIFY_SOCKET=%r is not a unix socket; not notifying", notify_socket)
        self.watchdog_s = watchdog_s if self.address is not None else None
        """systemd's watchdog timeout; ping at least twice within it. None: no watchdog."""
        self._sock: socket.socket | None = None
        self._failing = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET"), watchdog_s=watchdog_timeout_s(env, os.getpid()))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def ready(self, status: str | None = None) -> bool:
        return self.send(READY="1", **({} if status is None else {"STATUS": status}))

    def status(self, text: str) -> bool:
        return self.send(STATUS=text)

    def watchdog(self) -> bool:
        return self.send(WATCHDOG="1")

    def stopping(self, status: str | None = None) -> bool:
        return self.send(STOPPING="1", **({} if status is None else {"STATUS": status}))

    def send(self, **fields: str) -> bool:
        """Send one notification; True if it left our process."""
        if self.address is None:
            return False
        message = encode(fields)
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                # systemd drains its socket at once; never let a full queue block the loop.
                self._sock.setblocking(False)
            self._sock.sendto(message, self.address)
        except OSError as err:
            if not self._failing:
                _LOGGER.warning("cannot notify systemd at %r: %s", self.address, err)
            self._failing = True
            return False
        if self._failing:
            _LOGGER.info("notifying systemd again")
        self._failing = False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
