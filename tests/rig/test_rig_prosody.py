"""The private Prosody: TLS verified against the rig CA, wrong CA refused, friendships, stop.

slixmpp notes (1.17): the client gets ``ssl_context`` from ``ssl.create_default_context(cafile=
CA)``; ``connect(host, port)`` skips SRV lookups. Prosody's c2s port speaks STARTTLS only, so we
turn off slixmpp's direct-TLS first attempt (it would fail with WRONG_VERSION_NUMBER and emit a
spurious ``connection_failed`` before falling back to STARTTLS).
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest
import slixmpp

from ncap.errors import RigError
from ncap.rig import Account, PrivateProsody, make_ca

pytestmark = pytest.mark.integration

TIMEOUT = 10.0


def _client(account: Account, cafile: Path) -> slixmpp.ClientXMPP:
    xmpp = slixmpp.ClientXMPP(account.jid, account.password)
    xmpp.ssl_context = ssl.create_default_context(cafile=str(cafile))
    xmpp.enable_direct_tls = False
    return xmpp


def _first_of(xmpp: slixmpp.BaseXMPP, *names: str) -> asyncio.Future[tuple[str, Any]]:
    """A future for whichever of the slixmpp events ``names`` fires first, with its data."""
    outcome: asyncio.Future[tuple[str, Any]] = asyncio.get_running_loop().create_future()

    def handler_for(name: str) -> Any:
        def handler(data: Any) -> None:
            if not outcome.done():
                outcome.set_result((name, data))

        return handler

    for name in names:
        xmpp.add_event_handler(name, handler_for(name))
    return outcome


async def _close(xmpp: slixmpp.BaseXMPP) -> None:
    await asyncio.wait_for(xmpp.disconnect(wait=1.0), TIMEOUT)


async def _login(server: PrivateProsody, account: Account) -> slixmpp.ClientXMPP:
    xmpp = _client(account, server.ca_file)
    outcome = _first_of(xmpp, "session_start", "ssl_invalid_chain", "failed_auth", "disconnected")
    xmpp.connect(host=server.host, port=server.c2s_port)
    name, data = await asyncio.wait_for(outcome, TIMEOUT)
    assert name == "session_start", (name, data)
    return xmpp


async def _subscriptions(server: PrivateProsody, account: Account) -> dict[str, str]:
    xmpp = await _login(server, account)
    try:
        await asyncio.wait_for(xmpp.get_roster(), TIMEOUT)
        roster = xmpp.client_roster
        return {jid: roster[jid]["subscription"] for jid in roster if jid != account.jid}
    finally:
        await _close(xmpp)


async def test_client_verifies_server_against_rig_ca(prosody: PrivateProsody) -> None:
    alice = prosody.register("alice")
    xmpp = await _login(prosody, alice)
    try:
        ssl_object = xmpp.transport.get_extra_info("ssl_object")
        assert ssl_object is not None
        version = ssl.TLSVersion[ssl_object.version().replace(".", "_")]
        assert version >= ssl.TLSVersion.TLSv1_2
        assert xmpp.ssl_context.verify_mode == ssl.CERT_REQUIRED
        assert xmpp.ssl_context.check_hostname
        assert ("DNS", prosody.domain) in ssl_object.getpeercert()["subjectAltName"]
    finally:
        await _close(xmpp)


async def test_client_refuses_server_signed_by_another_ca(
    prosody: PrivateProsody, tmp_path: Path
) -> None:
    alice = prosody.register("alice")
    stranger = make_ca(tmp_path, "Some other CA")
    xmpp = _client(alice, stranger.cert)
    dropped = _first_of(xmpp, "disconnected")
    outcome = _first_of(xmpp, "session_start", "ssl_invalid_chain")
    xmpp.connect(host=prosody.host, port=prosody.c2s_port)
    try:
        name, error = await asyncio.wait_for(outcome, TIMEOUT)
        assert name == "ssl_invalid_chain"
        assert isinstance(error, ssl.SSLCertVerificationError)
        assert error.verify_message == "unable to get local issuer certificate"
        # The transport reports the same error when it drops the connection (this comes first).
        _, reason = await asyncio.wait_for(dropped, TIMEOUT)
        assert isinstance(reason, ssl.SSLCertVerificationError)
        assert not xmpp.authenticated
    finally:
        await _close(xmpp)


async def test_make_friends_on_running_server(prosody: PrivateProsody) -> None:
    alice, bob, carol = (prosody.register(name) for name in ("alice", "bob", "carol"))
    prosody.make_friends(alice, bob)
    prosody.make_friends(alice, carol)
    assert await _subscriptions(prosody, alice) == {bob.jid: "both", carol.jid: "both"}
    assert await _subscriptions(prosody, bob) == {alice.jid: "both"}
    # Prosody now holds bob's roster in memory (loaded for presence probes and his session);
    # a later friendship must still show up, so it cannot bypass the server's roster cache.
    prosody.make_friends(bob, carol)
    assert await _subscriptions(prosody, bob) == {alice.jid: "both", carol.jid: "both"}


async def test_make_friends_before_start(prosody_workdir: Path) -> None:
    server = PrivateProsody(prosody_workdir)
    alice, bob = server.register("alice"), server.register("bob")
    server.make_friends(alice, bob)  # queued, applied by start()
    with server:
        assert await _subscriptions(server, alice) == {bob.jid: "both"}
        assert await _subscriptions(server, bob) == {alice.jid: "both"}


async def test_external_component_authenticates(prosody: PrivateProsody) -> None:
    component = slixmpp.ComponentXMPP(prosody.registry_domain, prosody.component_secret)
    outcome = _first_of(component, "session_start", "disconnected")
    component.connect(host=prosody.host, port=prosody.component_port)
    try:
        name, data = await asyncio.wait_for(outcome, TIMEOUT)
        assert name == "session_start", (name, data)
    finally:
        await _close(component)


def test_stop_leaves_no_process(prosody: PrivateProsody) -> None:
    pid = prosody.pid
    assert pid is not None
    prosody.stop()
    assert prosody.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((prosody.host, prosody.c2s_port), timeout=TIMEOUT).close()
    prosody.stop()  # idempotent


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the workdir to 'prosody'")
def test_unreachable_workdir_is_reported(tmp_path: Path) -> None:
    # pytest's tmp_path lives under /tmp/pytest-of-root (mode 0700)
    with pytest.raises(RigError, match="cannot reach"):
        PrivateProsody(tmp_path / "prosody")
