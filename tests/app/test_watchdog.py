"""The progress-gated watchdog: pings only while every source progressed within its window.

The end-to-end test runs ``ncap run`` as its own process against a simulated TIM on a pty pair,
with a real AF_UNIX datagram socket as ``$NOTIFY_SOCKET``: READY=1 comes, WATCHDOG=1 pings
flow, and they stop while the TIM's bus is stalled (the simulator frozen with SIGSTOP), then
resume once it answers again; SIGTERM brings STOPPING=1.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ncap.config import write_secret
from ncap.hardware import hardware_file
from ncap.rig.pty import PtyPair
from ncap.sdnotify import Notifier
from ncap.watchdog import ProgressWatchdog

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 20.0
WATCHDOG_USEC = 400_000  # pings every 0.2 s
STALL_AFTER_S = 1.0
POLL_INTERVAL_S = 0.2


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recorder(Notifier):
    """A notifier that records instead of sending."""

    def __init__(self) -> None:
        super().__init__(None)
        self.watchdog_s = 1.0
        self.sent: list[dict[str, str]] = []

    def send(self, **fields: str) -> bool:
        self.sent.append(fields)
        return True


def test_pings_only_while_every_source_is_within_its_window() -> None:
    clock = FakeClock()
    dog = ProgressWatchdog(clock)
    notifier = Recorder()
    dog.watch("tim a", 10.0)
    dog.watch("modbus b", 30.0)
    assert dog.check(notifier) == []
    clock.now += 9
    dog.progress("modbus b")
    assert dog.check(notifier) == []
    clock.now += 2  # 11 s since "tim a" last progressed
    assert dog.check(notifier) == ["tim a"]
    dog.progress("tim a")
    assert dog.check(notifier) == []
    clock.now += 31
    assert dog.check(notifier) == ["tim a", "modbus b"]
    assert dog.pings == 3
    assert notifier.sent == [{"WATCHDOG": "1"}] * 3


def test_a_probe_counts_as_progress_when_it_says_so() -> None:
    clock = FakeClock()
    dog = ProgressWatchdog(clock)
    alive = True
    dog.watch("xmpp", 5.0, probe=lambda: alive)
    clock.now += 100
    assert dog.stalled() == []
    alive = False
    clock.now += 5
    assert dog.stalled() == []  # the last probe said yes 5 s ago
    clock.now += 0.5
    assert dog.stalled() == ["xmpp"]


def test_without_a_systemd_watchdog_nothing_is_pinged() -> None:
    dog = ProgressWatchdog(FakeClock())
    notifier = Recorder()
    notifier.watchdog_s = None
    dog.watch("tim a", 1.0)
    assert dog.check(notifier) == []
    assert notifier.sent == []
    assert dog.pings == 0


def test_unknown_progress_is_ignored_and_windows_must_be_positive() -> None:
    dog = ProgressWatchdog(FakeClock())
    dog.progress("nobody")
    with pytest.raises(ValueError, match="positive"):
        dog.watch("tim a", 0)


# ------------------------------------------------------------------ ncap run under a fake systemd


class FakeSystemd:
    """The receiving end of $NOTIFY_SOCKET: a bound AF_UNIX datagram socket."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[dict[str, str]] = []

    def receive(self, timeout: float) -> dict[str, str] | None:
        with selectors.DefaultSelector() as selector:
            selector.register(self.sock, selectors.EVENT_READ)
            if not selector.select(timeout):
                return None
        data = self.sock.recv(4096).decode()
        message = dict(line.split("=", 1) for line in data.split("\n"))
        self.messages.append(message)
        return message

    def wait_for(self, key: str, timeout: float, contains: str = "") -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = self.receive(left)
            if message is not None and key in message and contains in message[key]:
                return message
        raise AssertionError(f"no {key}{'~' + contains if contains else ''} within {timeout} s")

    def pings_within(self, seconds: float) -> int:
        deadline = time.monotonic() + seconds
        pings = 0
        while (left := deadline - time.monotonic()) > 0:
            message = self.receive(left)
            if message is not None and message.get("WATCHDOG") == "1":
                pings += 1
        return pings

    def close(self) -> None:
        self.sock.close()


def _readline_within(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise AssertionError(f"no output from {process.args!r} within {timeout} s")
    return process.stdout.readline()


@pytest.fixture
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="ncap-watchdog-") as tmp:
        yield Path(tmp)


@pytest.fixture
def simulator(workdir: Path) -> Iterator[tuple[PtyPair, subprocess.Popen[str]]]:
    with PtyPair(workdir / "pty") as pty:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tim_drivers.sim",
                "--port",
                str(pty.a_path),
                "--profile",
                str(hardware_file("tims", "env-sensor.toml")),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert _readline_within(process, TIMEOUT).strip() == "ready"
            yield pty, process
        finally:
            process.send_signal(signal.SIGCONT)
            process.terminate()
            process.wait(10)


def _closed_port() -> int:
    """A loopback port nobody listens on: the uplink keeps connecting, on purpose."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.integration
def test_a_stalled_bus_stops_the_watchdog_pings_until_it_answers_again(
    workdir: Path, simulator: tuple[PtyPair, subprocess.Popen[str]]
) -> None:
    pty, sim = simulator
    write_secret(workdir / "xmpp-password", "not-used")
    config = workdir / "ncap.toml"
    config.write_text(
        f"""\
[gateway]
name = "gw"
stall_after_s = {STALL_AFTER_S}

[xmpp]
jid = "thing@ncap.test"
password_file = "xmpp-password"
server = "127.0.0.1"
port = {_closed_port()}
reconnect_max_s = 1

[[tim]]
name = "env"
port = "{pty.b_path}"
poll_interval_s = {POLL_INTERVAL_S}
"""
    )
    systemd = FakeSystemd(workdir / "notify")
    state = workdir / "state"
    state.mkdir()
    env = {
        **os.environ,
        "NOTIFY_SOCKET": str(systemd.path),
        "WATCHDOG_USEC": str(WATCHDOG_USEC),
        "STATE_DIRECTORY": str(state),
    }
    env.pop("WATCHDOG_PID", None)
    log = (workdir / "ncap.log").open("w")
    ncap = subprocess.Popen(
        [sys.executable, "-m", "ncap", "run", "--config", str(config)],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=log,  # a file, not a pipe nobody drains
    )
    try:
        ready = systemd.wait_for("READY", TIMEOUT)
        assert ready["STATUS"].startswith("1/1 nodes online")
        assert systemd.pings_within(1.0) >= 3

        os.kill(sim.pid, signal.SIGSTOP)  # the TIM stops answering: its bus stalls
        systemd.wait_for("STATUS", TIMEOUT, contains="stalled: tim env")
        assert systemd.pings_within(1.5) == 0

        os.kill(sim.pid, signal.SIGCONT)
        systemd.wait_for("WATCHDOG", TIMEOUT)
        assert systemd.pings_within(1.0) >= 3
        assert "stalled" not in [m for m in systemd.messages if "STATUS" in m][-1]["STATUS"]

        ncap.send_signal(signal.SIGTERM)
        systemd.wait_for("STOPPING", TIMEOUT)
        assert ncap.wait(TIMEOUT) == 0
    finally:
        if ncap.poll() is None:
            ncap.kill()
            ncap.wait(TIMEOUT)
        systemd.close()
        log.close()
