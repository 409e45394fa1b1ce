"""Federated private Prosodys: s2s over verified TLS on 127.0.0.1, static routes, refusals.

Messages are sent between plain clients on two (or three) private servers with different
domains; what the servers negotiated is read from their admin shells (``s2s_sessions``).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from slixmpp import JID, Message

from ncap.errors import RigError
from ncap.rig import Account, PrivateProsody
from ncap.rig.prosody import S2sSession
from ncap.xmpp.connection import SecureClient

pytestmark = pytest.mark.integration

TIMEOUT = 10.0


@dataclass
class Pair:
    a: PrivateProsody
    b: PrivateProsody
    alice: Account  # on a
    bob: Account  # on b


def _servers(root: Path, *domains: str) -> list[PrivateProsody]:
    return [PrivateProsody(root / domain.partition(".")[0], domain) for domain in domains]


@pytest.fixture
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="ncap-s2s-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)  # the servers run as 'prosody' below it
        yield root


@pytest.fixture
def pair(workdir: Path) -> Iterator[Pair]:
    a, b = _servers(workdir, "a.ncap.test", "b.ncap.test")
    a.federate_with(b)
    alice, bob = a.register("alice"), b.register("bob")
    try:
        a.start()
        b.start()
        yield Pair(a, b, alice, bob)
    finally:
        a.stop()
        b.stop()


def _client(server: PrivateProsody, who: Account) -> SecureClient:
    return SecureClient(
        who.jid, who.password, ca_file=server.ca_file, server=server.host, port=server.c2s_port
    )


class _Inbox:
    """Messages (and bounced errors) arriving at a logged-in client."""

    def __init__(self, client: SecureClient) -> None:
        self.client = client
        self._queue: asyncio.Queue[Message] = asyncio.Queue()
        client.add_event_handler("message", self._queue.put_nowait)
        client.add_event_handler("message_error", self._queue.put_nowait)

    async def next(self) -> Message:
        return await asyncio.wait_for(self._queue.get(), TIMEOUT)

    def empty(self) -> bool:
        return self._queue.empty()


async def _logged_in(server: PrivateProsody, who: Account) -> _Inbox:
    client = _client(server, who)
    inbox = _Inbox(client)
    await client.start(TIMEOUT)
    return inbox


async def _round_trip(sender: _Inbox, receiver: _Inbox, body: str) -> None:
    sender.client.send_message(mto=receiver.client.boundjid, mbody=body)
    got = await receiver.next()
    assert (got["type"], got["body"], got["from"]) == ("normal", body, sender.client.boundjid)


def _verified(session: S2sSession) -> bool:
    return (
        session.authenticated
        and session.tls in {"TLSv1.2", "TLSv1.3"}
        and session.sasl == "succeeded"
        and (session.cert_chain, session.cert_identity) == ("valid", "valid")
        and not session.dialback
    )


async def test_messages_cross_over_tls_with_certificates_verified_both_ways(pair: Pair) -> None:
    alice, bob = await _logged_in(pair.a, pair.alice), await _logged_in(pair.b, pair.bob)
    try:
        await _round_trip(alice, bob, "to b")
        await _round_trip(bob, alice, "to a")
    finally:
        await alice.client.disconnect(wait=1.0)
        await bob.client.disconnect(wait=1.0)
    # Without mod_s2s_bidi each direction has its own stream: a's outgoing is b's incoming.
    on_a = {(s.direction, s.remote) for s in pair.a.s2s_sessions() if _verified(s)}
    on_b = {(s.direction, s.remote) for s in pair.b.s2s_sessions() if _verified(s)}
    assert on_a == {("outgoing", "b.ncap.test"), ("incoming", "b.ncap.test")}
    assert on_b == {("outgoing", "a.ncap.test"), ("incoming", "a.ncap.test")}


async def test_a_peer_restarting_on_new_ports_is_found_again(pair: Pair) -> None:
    alice, bob = await _logged_in(pair.a, pair.alice), await _logged_in(pair.b, pair.bob)
    try:
        await _round_trip(alice, bob, "before")
        await bob.client.disconnect(wait=1.0)
        old_port = pair.b.s2s_port
        pair.b.stop()
        pair.b.start()  # new free ports; a reads its routes file again for the next stream
        assert pair.b.s2s_port != old_port
        bob = await _logged_in(pair.b, pair.bob)
        await _round_trip(alice, bob, "after")
    finally:
        await alice.client.disconnect(wait=1.0)
        await bob.client.disconnect(wait=1.0)


async def test_a_domain_without_route_fails_at_once_without_dns(pair: Pair) -> None:
    alice = await _logged_in(pair.a, pair.alice)
    try:
        started = time.monotonic()
        alice.client.send_message(mto=JID("carol@nowhere.ncap.test"), mbody="anyone?")
        bounced = await alice.next()
        elapsed = time.monotonic() - started
    finally:
        await alice.client.disconnect(wait=1.0)
    assert bounced["type"] == "error"
    assert bounced["error"]["condition"] == "remote-server-not-found"
    assert "no route to nowhere.ncap.test" in bounced["error"]["text"]
    assert elapsed < 2.0  # no resolver timeout: DNS was never asked


async def test_a_peer_with_an_untrusted_certificate_is_refused(workdir: Path) -> None:
    a, c = _servers(workdir, "a.ncap.test", "c.ncap.test")
    a.federate_with(c, trust=False)  # routed, but neither trusts the other's CA
    alice, carol = a.register("alice"), c.register("carol")
    try:
        a.start()
        c.start()
        sender, receiver = await _logged_in(a, alice), await _logged_in(c, carol)
        try:
            sender.client.send_message(mto=JID(carol.jid), mbody="let me in")
            bounced = await sender.next()
        finally:
            await sender.client.disconnect(wait=1.0)
            await receiver.client.disconnect(wait=1.0)
        # s2s_secure_auth: TLS came up, but an unverified certificate is not let in (and
        # there is no dialback to fall back to).
        assert bounced["type"] == "error"
        assert "certificate is not trusted" in bounced["error"]["text"]
        assert receiver.empty()
        assert not [s for s in a.s2s_sessions() + c.s2s_sessions() if s.authenticated]
    finally:
        a.stop()
        c.stop()


def test_federation_is_checked_before_start(workdir: Path) -> None:
    a, b, sub = _servers(workdir, "a.ncap.test", "b.ncap.test", "x.a.ncap.test")
    with pytest.raises(RigError, match="overlap"):
        a.federate_with(sub)
    with pytest.raises(RigError, match="itself"):
        a.federate_with(a)
    a.start()
    try:
        with pytest.raises(RigError, match="running"):
            a.federate_with(b)
    finally:
        a.stop()
    assert not a.federated
    assert not b.federated


def test_an_unfederated_server_does_not_listen_for_s2s(prosody: PrivateProsody) -> None:
    assert prosody.s2s_port == 0
    assert 's2s_ports = { }\nmodules_disabled = { "s2s" }' in prosody.config_file.read_text()
    assert not os.path.exists(prosody.routes_file)
    assert prosody.s2s_sessions() == []
