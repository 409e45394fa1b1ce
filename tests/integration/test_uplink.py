"""The durable uplink through the real Prosody: readings journaled and published to PubSub,
the backlog drained after an outage, alarms kept for the owner and shown in presence, the chat
and ad-hoc commands, the metrics endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import sys
import tempfile
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from xml.etree.ElementTree import Element

import pytest
from slixmpp import JID, Message, Presence
from slixmpp.exceptions import IqError

from integration.conftest import TIMEOUT, Rig, _simulator
from ncap.app import Gateway
from ncap.config import load_config
from ncap.demo import write_config
from ncap.rig.prosody import PrivateProsody
from ncap.rig.pty import PtyPair
from ncap.xmpp.connection import SecureClient
from ncap.xmpp.follower import Follower
from ncap.xmpp.publisher import node_name

pytestmark = pytest.mark.integration

_cases = itertools.count()
POLL_S = 0.1


@pytest.fixture(scope="module")
def peers() -> Iterator[Rig]:
    with tempfile.TemporaryDirectory(prefix="ncap-up-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        workdir.chmod(0o755)
        prosody = stack.enter_context(PrivateProsody(workdir / "prosody"))
        thing = prosody.register("thing")
        owner = prosody.register("owner")
        stranger = prosody.register("stranger")
        prosody.make_friends(thing, owner)
        pty = stack.enter_context(PtyPair(workdir / "pty-env"))
        _simulator(stack, pty.a_path, "env-sensor.toml")
        yield Rig(prosody, thing, owner, stranger, {"env-sensor": pty.b_path}, workdir)


async def wait_until(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """Check *condition* as the loop runs until it holds; fail after *timeout*."""
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"not within {timeout} s: {what}") from None


@contextlib.asynccontextmanager
async def _gateway(rig: Rig, extra: str = "") -> AsyncIterator[Gateway]:
    workdir = rig.workdir / f"case-{next(_cases)}"
    workdir.mkdir()
    members = f'\n[publish]\nmembers = ["{rig.owner.jid}"]\n'
    config = write_config(
        workdir, rig.prosody, rig.thing, rig.ports, poll_interval_s=POLL_S, extra=members + extra
    )
    gateway = Gateway(load_config(config))
    await gateway.start()
    try:
        await gateway.wait_ready(TIMEOUT)
        yield gateway
    finally:
        await gateway.stop()


@contextlib.asynccontextmanager
async def _client(rig: Rig, who: object) -> AsyncIterator[SecureClient]:
    client = rig.client(who)  # type: ignore[arg-type]
    await client.start(TIMEOUT)
    client.send_presence()
    try:
        yield client
    finally:
        await client.disconnect(wait=1.0)


def _acked(gateway: Gateway) -> set[int]:
    """Every sequence number the server has acknowledged (nothing was dropped here)."""
    journal = gateway.uplink.journal
    committed = journal.committed_seq  # later seqs may still be in the in-memory batch
    pending = {entry.seq for entry in journal.pending(0, 10**6)}
    return set(range(1, committed + 1)) - pending


async def test_readings_are_published_with_sequence_numbers_and_acknowledged(peers: Rig) -> None:
    async with _gateway(peers) as gateway, _client(peers, peers.owner) as owner:
        publisher = gateway.uplink.publisher
        assert publisher is not None
        async with asyncio.timeout(TIMEOUT):
            await publisher.ready.wait()
        follower = Follower(owner, publisher.service, node_name(peers.thing.jid))
        await follower.subscribe(TIMEOUT)
        await follower.wait_for(lambda f: len(f.seen) >= 30, TIMEOUT)
        acked = _acked(gateway)  # before fetching: all of these are in the node by then
        await follower.catch_up(TIMEOUT)
        assert acked
        assert acked <= follower.seen
        # Readings are XEP-0323 fields under the thing's nodes.
        batches: list[object] = []
        follower._on_batch = batches.append
        await follower.wait_for(lambda _f: bool(batches), TIMEOUT)
        batch = batches[0]
        names = {f.name for node in batch.fields for f in node.fields}  # type: ignore[attr-defined]
        assert names <= {"temperature", "humidity", "pressure"}
        assert names


async def test_a_stranger_cannot_subscribe_to_the_readings(peers: Rig) -> None:
    async with _gateway(peers) as gateway, _client(peers, peers.stranger) as stranger:
        publisher = gateway.uplink.publisher
        assert publisher is not None
        async with asyncio.timeout(TIMEOUT):
            await publisher.ready.wait()
        follower = Follower(stranger, publisher.service, node_name(peers.thing.jid))
        with pytest.raises(IqError) as refused:
            await follower.subscribe(TIMEOUT)
        assert refused.value.condition in {"forbidden", "not-allowed"}
        with pytest.raises(IqError) as refused:
            await follower.catch_up(TIMEOUT)
        assert refused.value.condition in {"forbidden", "not-allowed"}


async def test_backlog_of_an_outage_is_delivered_when_the_server_returns(peers: Rig) -> None:
    prosody: PrivateProsody = peers.prosody
    async with _gateway(peers) as gateway:
        publisher = gateway.uplink.publisher
        assert publisher is not None
        async with asyncio.timeout(TIMEOUT):
            await publisher.ready.wait()
        await asyncio.to_thread(prosody.stop)
        before = gateway.uplink.journal.stats().last_seq
        await wait_until(
            lambda: gateway.uplink.journal.stats().last_seq > before + 40,
            "readings keep being journaled while the server is away",
        )
        assert gateway.uplink.journal.stats().depth > 0
        await asyncio.to_thread(prosody.start, keep_ports=True)
        async with _client(peers, peers.owner) as owner:
            await wait_until(
                lambda: gateway.uplink.journal.stats().depth < 20,
                "the backlog is drained after the server returns",
                timeout=60,
            )
            follower = Follower(owner, publisher.service, node_name(peers.thing.jid))
            acked = _acked(gateway)
            await follower.catch_up(TIMEOUT)
            assert len(acked) > before + 40
            assert acked <= follower.seen


async def test_alarm_is_kept_for_the_offline_owner_shown_in_presence_and_acknowledged(
    peers: Rig,
) -> None:
    alarm = (
        '\n[[alarm]]\nname = "warm"\nnode = "env-sensor/temperature"\nfield = "temperature"\n'
        'above = -100\nseverity = "critical"\n'
    )
    async with _gateway(peers, alarm) as gateway:
        await wait_until(lambda: gateway.uplink.mailbox.any_active_unacked(), "the alarm is raised")
        await wait_until(lambda: gateway.client.state == "alarm", "presence shows the alarm")
        owner = peers.client(peers.owner)
        inbox: asyncio.Queue[str] = asyncio.Queue()
        shown: asyncio.Queue[Presence] = asyncio.Queue()
        owner.add_event_handler(
            "message",
            lambda m: (
                inbox.put_nowait(m["body"])
                if m["from"].bare == peers.thing.jid and m["body"]
                else None
            ),
        )
        owner.add_event_handler(  # "presence": slixmpp names the dnd event presence_dnd
            "presence",
            lambda p: (
                shown.put_nowait(p)
                if p["from"].bare == peers.thing.jid and p["type"] != "unavailable"
                else None
            ),
        )
        await owner.start(TIMEOUT)
        try:
            owner.send_presence()
            async with asyncio.timeout(TIMEOUT):
                summary = await inbox.get()
                delivered = await inbox.get()
                presence = await shown.get()
            assert "1 new alarm" in summary
            assert "CRITICAL" in delivered
            assert "env-sensor temperature" in delivered
            assert presence["show"] == "dnd"
            assert presence["status"].startswith("ALARM:")

            thing = gateway.client.boundjid
            owner.send_message(mto=thing, mbody="alarms", mtype="chat")
            async with asyncio.timeout(TIMEOUT):
                listing = await inbox.get()
            alarm_id = gateway.uplink.mailbox.active()[0].id
            assert f"#{alarm_id}" in listing
            owner.send_message(mto=thing, mbody=f"ack {alarm_id}", mtype="chat")
            async with asyncio.timeout(TIMEOUT):
                assert "Acknowledged" in await inbox.get()
            await wait_until(lambda: gateway.client.state == "online", "presence back to online")
            assert gateway.uplink.mailbox.counts(peers.owner.jid) == (0, 0)
        finally:
            await owner.disconnect(wait=1.0)


async def test_history_and_set_from_chat_and_the_same_as_an_ad_hoc_command(peers: Rig) -> None:
    async with _gateway(peers) as gateway, _client(peers, peers.owner) as owner:
        await wait_until(
            lambda: gateway.uplink.journal.stats().last_seq > 15, "a few readings journaled"
        )
        inbox: asyncio.Queue[str] = asyncio.Queue()

        def on_message(msg: Message) -> None:
            if msg["from"].bare == peers.thing.jid and msg["body"]:
                inbox.put_nowait(msg["body"])

        owner.add_event_handler("message", on_message)
        thing = gateway.client.boundjid
        owner.send_message(mto=thing, mbody="history env-sensor temperature 10m", mtype="chat")
        async with asyncio.timeout(TIMEOUT):
            history = await inbox.get()
        assert history.startswith("env-sensor temperature, last 10m: ")
        assert "°C" in history

        owner.send_message(mto=thing, mbody="maintenance on", mtype="chat")
        async with asyncio.timeout(TIMEOUT):
            assert await inbox.get() == "Maintenance mode on."
        assert gateway.client.state == "maintenance"
        owner.send_message(mto=thing, mbody="maintenance off", mtype="chat")
        async with asyncio.timeout(TIMEOUT):
            assert await inbox.get() == "Maintenance mode off."
        assert gateway.client.state == "online"

        ns = "http://jabber.org/protocol/commands"
        iq = owner.make_iq_set(ito=thing)
        iq.append(Element(f"{{{ns}}}command", node="alarms", action="execute"))
        result = await iq.send(timeout=TIMEOUT)
        note = result.xml.find(f".//{{{ns}}}note")
        assert note is not None
        assert note.text == "No alarms are waiting."


async def test_metrics_endpoint_and_ncap_status(peers: Rig) -> None:
    async with _gateway(peers) as gateway:
        server = gateway.metrics_server
        assert server is not None
        await wait_until(
            lambda: gateway.metrics.readings_in.value > 5, "readings counted", timeout=TIMEOUT
        )

        def scrape() -> str:
            with urllib.request.urlopen(server.url, timeout=TIMEOUT) as response:  # noqa: S310
                return str(response.read().decode())

        text = await asyncio.to_thread(scrape)
        assert "ncap_readings_in_total" in text
        assert 'ncap_bus_reads_total{bus="tim env-sensor"}' in text
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ncap",
            "status",
            "--json",
            "--url",
            server.url,
            stdout=asyncio.subprocess.PIPE,
            cwd=Path(__file__).resolve().parents[2],
        )
        out, _ = await asyncio.wait_for(process.communicate(), TIMEOUT)
        assert process.returncode == 0
        status = json.loads(out)
        assert status["readings_in"] > 5
        assert JID(peers.thing.jid).bare


async def test_ncap_follow_prints_published_readings_with_their_numbers(peers: Rig) -> None:
    async with _gateway(peers) as gateway:
        publisher = gateway.uplink.publisher
        assert publisher is not None
        async with asyncio.timeout(TIMEOUT):
            await publisher.ready.wait()
        prosody = peers.prosody
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ncap",
            "follow",
            "--jid",
            peers.owner.jid,
            "--ca",
            str(prosody.ca_file),
            "--server",
            prosody.host,
            "--port",
            str(prosody.c2s_port),
            "--kept",
            "--count",
            "6",
            peers.thing.jid,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "NCAP_PASSWORD": peers.owner.password},
            cwd=Path(__file__).resolve().parents[2],
        )
        out, _ = await asyncio.wait_for(process.communicate(), TIMEOUT)
        assert process.returncode == 0
        lines = out.decode().splitlines()
        assert len(lines) == 6
        seq, _stamp, node, field, value, _unit = lines[0].split(" ", 5)
        assert seq.startswith("#")
        assert int(seq[1:]) >= 1
        assert node == "env-sensor"
        assert field in {"temperature", "humidity", "pressure"}
        float(value)
