"""sd_notify in plain Python: the datagram format, the addresses systemd hands out, the watchdog
environment, and real delivery to AF_UNIX datagram sockets (a socket file and an abstract one)."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ncap.sdnotify import Notifier, encode, socket_address, watchdog_timeout_s

RECEIVE_TIMEOUT = 5.0


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket standing in for systemd's notify socket, and its path."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(RECEIVE_TIMEOUT)
    try:
        yield sock, str(path)
    finally:
        sock.close()


def test_encode_writes_one_assignment_per_line_in_order() -> None:
    assert encode({"READY": "1", "STATUS": "2/2 nodes online"}) == (
        b"READY=1\nSTATUS=2/2 nodes online"
    )


def test_encode_folds_newlines_so_a_value_cannot_add_an_assignment() -> None:
    assert encode({"STATUS": "bus down\nREADY=1"}) == b"STATUS=bus down READY=1"


@pytest.mark.parametrize("name", ["ready", "", "1X", "A-B", "A=B"])
def test_encode_refuses_names_systemd_would_not_read(name: str) -> None:
    with pytest.raises(ValueError, match="notify variable"):
        encode({name: "1"})


@given(st.dictionaries(st.from_regex(r"[A-Z][A-Z0-9_]{0,15}", fullmatch=True), st.text()))
def test_encode_always_gives_exactly_one_line_per_field(fields: dict[str, str]) -> None:
    lines = encode(fields).decode("utf-8").split("\n") if fields else []
    assert [line.partition("=")[0] for line in lines] == list(fields)


def test_socket_addresses() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@ncap/notify") == b"\0ncap/notify"
    assert socket_address("@") is None
    assert socket_address("vsock:2:1234") is None
    assert socket_address("relative/path") is None


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4243"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "thirty"}, None),
    ],
)
def test_watchdog_timeout_is_ours_only_for_our_pid(
    environ: dict[str, str], expected: float | None
) -> None:
    assert watchdog_timeout_s(environ, 4242) == expected


def test_every_notification_reaches_a_socket_file(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    notifier = Notifier.from_environment(
        {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    )
    try:
        assert notifier.enabled
        assert notifier.watchdog_s == 2.0
        assert notifier.ready("starting")
        assert notifier.status("1/1 nodes online")
        assert notifier.watchdog()
        assert notifier.stopping()
        received = [sock.recv(4096) for _ in range(4)]
    finally:
        notifier.close()
    assert received == [
        b"READY=1\nSTATUS=starting",
        b"STATUS=1/1 nodes online",
        b"WATCHDOG=1",
        b"STOPPING=1",
    ]


def test_an_abstract_socket_is_reached_by_its_at_name() -> None:
    name = f"ncap-test-{secrets.token_hex(8)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(RECEIVE_TIMEOUT)
        notifier = Notifier(f"@{name}")
        try:
            assert notifier.watchdog()
            assert sock.recv(4096) == b"WATCHDOG=1"
        finally:
            notifier.close()


def test_without_notify_socket_nothing_is_sent_and_nothing_fails() -> None:
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert notifier.watchdog_s is None
    assert notifier.ready() is False
    notifier.close()


def test_a_vanished_receiver_is_reported_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "gone"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
    path.unlink()
    notifier = Notifier(str(path))
    try:
        assert notifier.status("x") is False
        assert notifier.status("y") is False
    finally:
        notifier.close()


def test_a_watchdog_setting_without_a_socket_is_no_watchdog() -> None:
    notifier = Notifier.from_environment({"WATCHDOG_USEC": "1000000"})
    assert notifier.watchdog_s is None
