"""Chaos: nothing the server acknowledged is lost, whatever dies.

A weather TIM is polled fast enough for about ``CHAOS_RATE`` readings/s (default 1000) by an
``ncap run`` process; meanwhile Prosody is SIGKILLed and restarted ``CHAOS_PROSODY_KILLS`` times
and the NCAP SIGKILLed and restarted ``CHAOS_NCAP_KILLS`` times (default 3 each; ``make soak``
runs 20 each). Every outage lasts until the NCAP has journaled ``OUTAGE_READINGS`` more
readings, measured on its metrics endpoint (no timed sleeps).

At the end the NCAP drains its journal and stops; the test then reads the journal file: every
sequence number committed and not pending any more was acknowledged by the server, and each
must be in the thing's PubSub node as a subscriber sees it. Duplicates are allowed (counted),
losses are not. The figures are printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from slixmpp.exceptions import IqError, IqTimeout

from integration.conftest import TIMEOUT, Rig, _simulator
from ncap.demo import write_config
from ncap.errors import NcapError
from ncap.journal import Journal
from ncap.metrics import GatewayStatus, fetch_status
from ncap.rig.prosody import PrivateProsody
from ncap.rig.pty import PtyPair
from ncap.xmpp.follower import Follower
from ncap.xmpp.publisher import node_name

pytestmark = pytest.mark.integration

PROSODY_KILLS = int(os.environ.get("CHAOS_PROSODY_KILLS", "3"))
NCAP_KILLS = int(os.environ.get("CHAOS_NCAP_KILLS", "3"))
RATE = int(os.environ.get("CHAOS_RATE", "1000"))
WEATHER_CHANNELS = 5
OUTAGE_READINGS = 2000
DRAIN_TIMEOUT = 120.0
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Ncap:
    """``ncap run`` as a process of its own, killed for real."""

    def __init__(self, config: Path, log: Path, metrics_port: int) -> None:
        self.config = config
        self.log = log
        self.url = f"http://127.0.0.1:{metrics_port}/metrics"
        self.process: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ncap", "-v", "run", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(TIMEOUT)
        self.kills += 1

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(TIMEOUT)

    def status(self) -> GatewayStatus | None:
        try:
            return fetch_status(self.url, timeout=2.0)
        except NcapError:
            return None  # not up (yet)


async def wait_until(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not await asyncio.to_thread(condition):
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not within {timeout} s: {what}") from None


def _readings_in(ncap: Ncap) -> int:
    status = ncap.status()
    return -1 if status is None or status.readings_in is None else status.readings_in


def _acknowledged(ncap: Ncap) -> int:
    status = ncap.status()
    return (
        -1
        if status is None or status.readings_acknowledged is None
        else (status.readings_acknowledged)
    )


def _drained(ncap: Ncap) -> bool:
    status = ncap.status()
    return status is not None and status.journal_depth == 0 and bool(status.uplink_online)


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    with tempfile.TemporaryDirectory(prefix="ncap-chaos-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        workdir.chmod(0o755)
        prosody = PrivateProsody(workdir / "prosody")
        thing = prosody.register("thing")
        owner = prosody.register("owner")
        stranger = prosody.register("stranger")
        prosody.make_friends(thing, owner)
        prosody.start()
        stack.callback(prosody.stop)
        pty = stack.enter_context(PtyPair(workdir / "pty-weather"))
        _simulator(stack, pty.a_path, "weather.toml")
        yield Rig(prosody, thing, owner, stranger, {"weather": pty.b_path}, workdir)


async def _follower(rig: Rig, service: str) -> tuple[Follower, object]:
    client = rig.client(rig.owner)
    await client.start(TIMEOUT)
    client.send_presence()
    return Follower(client, service, node_name(rig.thing.jid)), client


async def test_nothing_acknowledged_is_lost_through_server_and_gateway_crashes(rig: Rig) -> None:
    metrics_port = _free_port()
    poll = WEATHER_CHANNELS / RATE
    extra = f'\n[publish]\nmembers = ["{rig.owner.jid}"]\n\n[metrics]\nport = {metrics_port}\n'
    config = write_config(rig.workdir, rig.prosody, rig.thing, rig.ports, poll_interval_s=poll)
    # The demo config turns metrics off (port 0); this run needs a known port.
    text = config.read_text().replace("[metrics]\nport = 0\n", "") + extra
    config.write_text(text)
    ncap = Ncap(config, rig.workdir / "ncap.log", metrics_port)
    started = time.monotonic()
    ncap.start()
    prosody: PrivateProsody = rig.prosody
    try:
        await wait_until(lambda: _acknowledged(ncap) > 0, "first readings acknowledged")
        first_ack_s = time.monotonic() - started
        for cycle in range(max(PROSODY_KILLS, NCAP_KILLS)):
            if cycle < PROSODY_KILLS:
                base = _readings_in(ncap)
                await asyncio.to_thread(prosody.kill)
                await wait_until(
                    lambda base=base: _readings_in(ncap) > base + OUTAGE_READINGS,
                    "readings journaled while the server is down",
                )
                acked = _acknowledged(ncap)
                await asyncio.to_thread(prosody.start, keep_ports=True)
                await wait_until(
                    lambda acked=acked: _acknowledged(ncap) > acked + OUTAGE_READINGS,
                    "the backlog delivered once the server is back",
                )
            if cycle < NCAP_KILLS:
                await wait_until(
                    lambda: _readings_in(ncap) > OUTAGE_READINGS, "the gateway streams again"
                )
                await asyncio.to_thread(ncap.kill)
                ncap.start()
        try:
            await wait_until(lambda: _drained(ncap), "the journal drained", timeout=DRAIN_TIMEOUT)
        except AssertionError:
            tail = ncap.log.read_text(errors="replace").splitlines()[-40:]
            raise AssertionError(f"not drained: {ncap.status()}\n" + "\n".join(tail)) from None
        final = ncap.status()
    finally:
        ncap.stop()
    elapsed = time.monotonic() - started

    # What the server acknowledged, from the journal itself.
    journal = Journal(rig.workdir / "state" / "journal.sqlite")
    try:
        committed = journal.committed_seq
        pending = {entry.seq for entry in journal.pending(0, 10**7)}
        dropped = journal.stats().dropped_readings
    finally:
        journal.close()
    acknowledged = set(range(1, committed + 1)) - pending

    follower, client = await _follower(rig, rig.thing.jid)
    try:
        await follower.catch_up(TIMEOUT)
    except (IqError, IqTimeout) as err:
        raise AssertionError(f"cannot read the thing's node: {err}") from None
    finally:
        await client.disconnect(wait=1.0)  # type: ignore[attr-defined]
    missing = sorted(acknowledged - follower.seen)
    print(
        f"\nchaos: {elapsed:.0f} s, {committed} readings committed,"
        f" {len(acknowledged)} acknowledged,"
        f" {len(missing)} missing, {follower.duplicates} duplicates, {dropped} dropped,"
        f" {PROSODY_KILLS} server kills, {ncap.kills} gateway kills,"
        f" first acknowledgement after {first_ack_s:.1f} s,"
        f" reconnects {final.reconnects if final else '?'}"
    )
    assert committed > OUTAGE_READINGS * (PROSODY_KILLS + NCAP_KILLS)  # it really streamed
    assert dropped == 0
    assert missing == [], f"acknowledged but never delivered: {missing[:20]}"
