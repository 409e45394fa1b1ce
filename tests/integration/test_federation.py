"""Federation: a reader on another XMPP server reads and follows a thing (issue 7, part 5).

Two private Prosodys on 127.0.0.1 with different domains talk server-to-server over STARTTLS,
each authenticating the other by its certificate (``s2s_secure_auth``; no dialback, no
plaintext). The thing — the gateway with the simulated environment sensor and relay — lives on
``a.ncap.test``; its reader and a stranger live on ``b.ncap.test``. Every stanza between them
crosses the s2s link: the presence subscriptions that make them friends, the presence that shows
the thing online, XEP-0323 read-outs, XEP-0325 control and IoT event pushes.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from slixmpp import JID

from integration.conftest import POLL_INTERVAL_S, TIMEOUT
from integration.proc import readline_within
from ncap.app import Gateway
from ncap.config import load_config
from ncap.demo import DEMO_TIMS, find_profile, write_config
from ncap.rig.prosody import Account, PrivateProsody
from ncap.rig.pty import PtyPair
from ncap.xmpp.connection import SecureClient
from ncap.xmpp.services import SOURCE_ID
from xep.errors import ReadoutError, SubscriptionError
from xep.iot_events.model import FieldTrigger
from xep.xep_0323.model import NodeFields, NodeRef
from xep.xep_0325.model import ControlValue

pytestmark = pytest.mark.integration

HOME = "a.ncap.test"  # the thing's server
AWAY = "b.ncap.test"  # the reader's server


@dataclass
class Federation:
    home: PrivateProsody
    away: PrivateProsody
    thing: Account
    reader: Account
    stranger: Account
    ports: dict[str, Path]
    workdir: Path

    def client(self, who: Account) -> SecureClient:
        server = self.home if who.jid.endswith(f"@{HOME}") else self.away
        return SecureClient(
            who.jid, who.password, ca_file=server.ca_file, server=server.host, port=server.c2s_port
        )


async def _until(client: SecureClient, event: str, done: Callable[[], bool]) -> None:
    """Wait (bounded) until ``done()`` holds, re-checking whenever ``client`` fires ``event``."""
    changed = asyncio.Event()

    def wake(_data: object) -> None:
        changed.set()

    client.add_event_handler(event, wake)
    try:
        async with asyncio.timeout(TIMEOUT):
            while True:
                changed.clear()
                if done():
                    return
                await changed.wait()
    finally:
        client.del_event_handler(event, wake)


def _subscription(client: SecureClient, contact: str) -> str:
    roster = client.client_roster
    return str(roster[contact]["subscription"]) if roster.has_jid(contact) else "none"


async def _befriend_over_s2s(fed: Federation) -> None:
    """The reader asks to follow the thing; the thing's account holder accepts and asks back.

    Real subscription stanzas across the s2s link, each server updating its own user's roster.
    The gateway itself declines requests while unclaimed, so this is done (as an operator with
    a chat client would) before it runs. slixmpp's defaults answer for both clients:
    auto_authorize accepts a request, auto_subscribe sends one back.
    """
    thing, reader = fed.client(fed.thing), fed.client(fed.reader)
    await thing.start(TIMEOUT)
    await reader.start(TIMEOUT)
    try:
        # Roster pushes go to sessions that fetched the roster; subscription requests go to
        # available resources only.
        for client in (thing, reader):
            await client.get_roster(timeout=TIMEOUT)
            client.send_presence()
        both = asyncio.gather(
            _until(thing, "roster_update", lambda: _subscription(thing, fed.reader.jid) == "both"),
            _until(reader, "roster_update", lambda: _subscription(reader, fed.thing.jid) == "both"),
        )
        reader.send_presence(pto=JID(fed.thing.jid), ptype="subscribe")
        await both
    finally:
        await thing.disconnect(wait=1.0)
        await reader.disconnect(wait=1.0)


def _simulator(stack: ExitStack, port: Path, profile: str) -> None:
    argv = [sys.executable, "-m", "tim_drivers.sim", "--port", str(port)]
    process = subprocess.Popen(
        [*argv, "--profile", str(find_profile(profile))],
        stdout=subprocess.PIPE,
        text=True,
    )
    stack.callback(process.wait, 10)
    stack.callback(process.terminate)
    assert readline_within(process, TIMEOUT).strip() == "ready"


@pytest.fixture(scope="module")
def federation() -> Iterator[Federation]:
    with tempfile.TemporaryDirectory(prefix="ncap-fed-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        workdir.chmod(0o755)  # the servers run as 'prosody' below it
        home = PrivateProsody(workdir / "home", HOME)
        away = PrivateProsody(workdir / "away", AWAY)
        home.federate_with(away)
        thing = home.register("thing")
        reader, stranger = away.register("reader"), away.register("stranger")
        stack.enter_context(home)
        stack.enter_context(away)
        ports = {}
        for name, profile in DEMO_TIMS.items():
            pty = stack.enter_context(PtyPair(workdir / f"pty-{name}"))
            _simulator(stack, pty.a_path, profile)
            ports[name] = pty.b_path
        fed = Federation(home, away, thing, reader, stranger, ports, workdir)
        asyncio.run(_befriend_over_s2s(fed))
        yield fed


@pytest.fixture
async def gateway(federation: Federation) -> AsyncIterator[Gateway]:
    fed = federation
    config = write_config(
        fed.workdir, fed.home, fed.thing, fed.ports, poll_interval_s=POLL_INTERVAL_S
    )
    gateway = Gateway(load_config(config))
    await gateway.start()
    try:
        await gateway.wait_ready(TIMEOUT)
        yield gateway
    finally:
        await gateway.stop()


@asynccontextmanager
async def _online(fed: Federation, who: Account) -> AsyncIterator[SecureClient]:
    client = fed.client(who)
    await client.start(TIMEOUT)
    client.send_presence()
    try:
        yield client
    finally:
        await client.disconnect(wait=1.0)


@pytest.fixture
async def reader(federation: Federation, gateway: Gateway) -> AsyncIterator[SecureClient]:
    """The reader on b, once the thing's presence reached it over s2s."""
    async with _online(federation, federation.reader) as client:
        await client.get_roster(timeout=TIMEOUT)
        thing = gateway.client.boundjid
        await _until(
            client,
            "presence_available",
            lambda: thing.resource in client.client_roster.presence(JID(thing.bare)),
        )
        yield client


@pytest.fixture
async def stranger(federation: Federation) -> AsyncIterator[SecureClient]:
    async with _online(federation, federation.stranger) as client:
        yield client


def _node(node_id: str) -> NodeRef:
    return NodeRef(node_id, SOURCE_ID)


def _value(fields: NodeFields, name: str) -> str | None:
    return next((f.value for f in fields.fields if f.name == name), None)


async def test_friends_across_servers_over_verified_s2s(
    federation: Federation, gateway: Gateway, reader: SecureClient
) -> None:
    assert gateway.client.is_friend(federation.reader.jid)
    assert _subscription(reader, federation.thing.jid) == "both"
    for server, peer in ((federation.home, AWAY), (federation.away, HOME)):
        every = await asyncio.to_thread(server.s2s_sessions)
        sessions = [s for s in every if s.remote == peer and s.authenticated]
        assert {s.direction for s in sessions} == {"incoming", "outgoing"}
        for session in sessions:
            assert session.tls in {"TLSv1.2", "TLSv1.3"}
            assert session.sasl == "succeeded"  # SASL EXTERNAL, by certificate
            assert (session.cert_chain, session.cert_identity) == ("valid", "valid")
            assert not session.dialback


async def test_reader_on_the_other_server_reads_the_thing(
    gateway: Gateway, reader: SecureClient
) -> None:
    readout = await reader.sensordata.request_readout(gateway.client.boundjid, timeout=TIMEOUT)
    assert readout.failures == ()
    nodes = {node.node.node_id: node for node in readout.fields}
    assert set(nodes) == {"env-sensor", "relay"}
    fields = {f.name: f for f in nodes["env-sensor"].fields}
    assert {"temperature", "humidity", "pressure"} <= set(fields)
    assert fields["temperature"].unit == "°C"
    assert 15.0 < float(fields["temperature"].value) < 30.0


async def test_reader_on_the_other_server_follows_events(
    gateway: Gateway, reader: SecureClient
) -> None:
    thing = gateway.client.boundjid
    subscription = await reader.events.subscribe(
        thing,
        nodes=[_node("relay")],
        fields=[FieldTrigger("relay")],
        initial_readout=False,
        timeout=TIMEOUT,
    )
    try:
        for wanted in ("1", "0"):
            await reader.control.set(
                thing,
                [ControlValue.boolean("relay", wanted == "1")],
                nodes=[_node("relay")],
                timeout=TIMEOUT,
            )
            pushed = await subscription.next(TIMEOUT)
            while _value(pushed, "relay") != wanted:
                pushed = await subscription.next(TIMEOUT)  # an older value still in flight
            assert {f.name for f in pushed.fields} == {"relay"}
    finally:
        await subscription.cancel(TIMEOUT)


async def test_a_stranger_on_the_other_server_is_refused(
    gateway: Gateway, stranger: SecureClient
) -> None:
    thing = gateway.client.boundjid
    with pytest.raises(ReadoutError, match="forbidden"):
        await stranger.sensordata.request_readout(thing, timeout=TIMEOUT)
    with pytest.raises(SubscriptionError) as subscribe:
        await stranger.events.subscribe(thing, nodes=[_node("relay")], timeout=TIMEOUT)
    assert subscribe.value.condition == "forbidden"
