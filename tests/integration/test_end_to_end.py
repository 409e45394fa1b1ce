"""The thin slice end to end: simulated TIM on a pty → NCAP → Prosody (TLS) → a reader."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest

from integration.conftest import TIMEOUT, Rig
from ncap.app import Gateway
from ncap.errors import XmppConnectError
from ncap.reader import ReadoutFailed, read_thing
from ncap.rig.pki import make_ca
from ncap.rig.prosody import Account, PrivateProsody
from ncap.xmpp.connection import SecureClient

pytestmark = pytest.mark.integration


async def _read(rig: Rig, who: Account, gateway: Gateway, *args: str):  # type: ignore[no-untyped-def]
    return await read_thing(
        who.jid,
        who.password,
        gateway.client.boundjid.full,
        node=args[0] if args else None,
        fields=tuple(args[1:]),
        ca_file=rig.prosody.ca_file,
        server=rig.prosody.host,
        port=rig.prosody.c2s_port,
        timeout=TIMEOUT,
    )


async def test_thing_session_is_tls_verified(gateway: Gateway) -> None:
    assert gateway.client.tls_version in {"TLSv1.2", "TLSv1.3"}


async def test_readout_through_prosody_returns_simulated_values(rig: Rig, gateway: Gateway) -> None:
    readout = await _read(rig, rig.owner, gateway)
    assert readout.failures == ()
    nodes = {node.node.node_id: node for node in readout.fields}
    assert set(nodes) == {"env-sensor", "relay"}
    node = nodes["env-sensor"]
    fields = {field.name: field for field in node.fields}
    assert set(fields) == {"temperature", "humidity", "pressure"}
    assert fields["temperature"].unit == "°C"
    assert 15.0 < float(fields["temperature"].value) < 30.0
    assert fields["humidity"].unit == "%"
    assert 0.0 <= float(fields["humidity"].value) <= 100.0
    assert fields["pressure"].unit == "Pa"
    assert 90_000 < float(fields["pressure"].value) < 110_000
    assert node.timestamp.tzinfo is not None


async def test_readout_of_one_field(rig: Rig, gateway: Gateway) -> None:
    readout = await _read(rig, rig.owner, gateway, "env-sensor", "pressure")
    assert [field.name for node in readout.fields for field in node.fields] == ["pressure"]


async def test_bare_jid_is_resolved_through_presence(rig: Rig, gateway: Gateway) -> None:
    readout = await read_thing(
        rig.owner.jid,
        rig.owner.password,
        rig.thing.jid,
        ca_file=rig.prosody.ca_file,
        server=rig.prosody.host,
        port=rig.prosody.c2s_port,
        timeout=TIMEOUT,
    )
    assert [node.node.node_id for node in readout.fields] == ["env-sensor", "relay"]
    with pytest.raises(ReadoutFailed, match="not its friend"):
        await read_thing(
            rig.stranger.jid,
            rig.stranger.password,
            rig.thing.jid,
            ca_file=rig.prosody.ca_file,
            server=rig.prosody.host,
            port=rig.prosody.c2s_port,
            timeout=2.0,
        )


async def test_stranger_is_denied_a_readout(rig: Rig, gateway: Gateway) -> None:
    with pytest.raises(ReadoutFailed, match="forbidden"):
        await _read(rig, rig.stranger, gateway)


async def _chat(rig: Rig, who: Account, gateway: Gateway, body: str) -> object:
    client = SecureClient(
        who.jid,
        who.password,
        ca_file=rig.prosody.ca_file,
        server=rig.prosody.host,
        port=rig.prosody.c2s_port,
    )
    await client.start(TIMEOUT)
    replies: asyncio.Queue[object] = asyncio.Queue()
    client.add_event_handler("message", replies.put_nowait)
    client.add_event_handler("message_error", replies.put_nowait)
    try:
        client.send_message(mto=gateway.client.boundjid.full, mbody=body, mtype="chat")
        return await asyncio.wait_for(replies.get(), TIMEOUT)
    finally:
        await client.disconnect(wait=1.0)


async def test_chat_read_from_a_friend_gets_a_table(rig: Rig, gateway: Gateway) -> None:
    reply = await _chat(rig, rig.owner, gateway, "read")
    assert reply["type"] == "chat"  # type: ignore[index]
    body = reply["body"]  # type: ignore[index]
    assert body.startswith("env-sensor at ")
    for expected in ("temperature", "°C", "humidity", "%", "pressure", "Pa"):
        assert expected in body


async def test_chat_from_a_stranger_gets_forbidden_and_no_data(rig: Rig, gateway: Gateway) -> None:
    reply = await _chat(rig, rig.stranger, gateway, "read")
    assert reply["type"] == "error"  # type: ignore[index]
    assert reply["error"]["condition"] == "forbidden"  # type: ignore[index]
    assert "°C" not in str(reply)


async def test_wrong_ca_is_refused(rig: Rig, tmp_path: Path) -> None:
    other_ca = make_ca(tmp_path / "other-ca")
    client = SecureClient(
        rig.owner.jid,
        rig.owner.password,
        ca_file=other_ca.cert,
        server=rig.prosody.host,
        port=rig.prosody.c2s_port,
    )
    with pytest.raises(XmppConnectError, match="not trusted"):
        await client.start(TIMEOUT)


async def test_wrong_password_is_reported_as_such(rig: Rig) -> None:
    client = SecureClient(
        rig.owner.jid,
        "not-the-password",
        ca_file=rig.prosody.ca_file,
        server=rig.prosody.host,
        port=rig.prosody.c2s_port,
    )
    with pytest.raises(XmppConnectError, match="wrong JID or password"):
        await client.start(TIMEOUT)


async def test_plaintext_only_server_is_refused() -> None:
    with tempfile.TemporaryDirectory(prefix="ncap-plain-") as tmp:
        server = PrivateProsody(Path(tmp), plaintext_only=True)
        account = server.register("owner")
        with server:
            client = SecureClient(
                account.jid,
                account.password,
                ca_file=server.ca_file,
                server=server.host,
                port=server.c2s_port,
            )
            with pytest.raises(XmppConnectError, match="offered no way to log in over TLS"):
                await client.start(TIMEOUT)
            log = server.log_file.read_text()
        assert "Authenticated as" not in log  # the password never crossed the wire
        assert client.tls_version is None


async def test_thing_reconnects_when_the_server_comes_back(rig: Rig, gateway: Gateway) -> None:
    client = gateway.client
    gone = asyncio.ensure_future(client.wait_until("disconnected", TIMEOUT))
    await asyncio.to_thread(rig.prosody.stop)
    await gone
    assert not client.online.is_set()
    await asyncio.to_thread(rig.prosody.start, keep_ports=True)
    await asyncio.wait_for(client.online.wait(), TIMEOUT)
    readout = await _read(rig, rig.owner, gateway, "env-sensor", "temperature")
    assert [field.name for node in readout.fields for field in node.fields] == ["temperature"]


async def test_a_friend_removed_is_denied_from_then_on(rig: Rig, gateway: Gateway) -> None:
    client = gateway.client
    friend = await asyncio.to_thread(rig.prosody.register, "fleeting")
    pushed = asyncio.ensure_future(client.wait_until("roster_update", TIMEOUT))
    await asyncio.to_thread(rig.prosody.make_friends, rig.thing, friend)
    await pushed
    assert client.is_friend(friend.jid)
    assert (await _read(rig, friend, gateway)).fields

    pushed = asyncio.ensure_future(client.wait_until("roster_update", TIMEOUT))
    await asyncio.to_thread(rig.prosody.end_friendship, rig.thing, friend)
    await pushed
    assert not client.is_friend(friend.jid)
    with pytest.raises(ReadoutFailed, match="forbidden"):
        await _read(rig, friend, gateway)
