"""The user-agent core (sipstack.ua) on loopback: two UserAgents over UDP, TCP and TLS, raw
sockets for what a polite peer would never send, SIPp as a foreign peer, and Kamailio as the
digest-checking proxy/presence server (MD5 and SHA-256, 407 → retry → 200).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import socket
import ssl
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from ncap.rig.kamailio import DigestAlgorithm, PrivateKamailio, free_sip_ports
from ncap.rig.pki import TlsFiles, make_test_pki
from ncap.rig.sipp import SippRun, Transport
from sipstack.digest import DigestClient, DigestServer
from sipstack.errors import SipValueError
from sipstack.headers import Headers
from sipstack.message import SipRequest, SipResponse, parse_message
from sipstack.transaction import LocalResponse, TimerConfig
from sipstack.transport import Destination, TransportName
from sipstack.ua import IncomingRequest, UserAgent

HOST = "127.0.0.1"
DOMAIN = "example.test"
WAIT = 3.0
FAST = TimerConfig(t1=0.02, t2=0.16, t4=0.2)  # Timer F = 1.28 s
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
PIDF = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:sensor1@example.test">'
    b'<tuple id="t1"><status><basic>open</basic></status></tuple></presence>'
)
needs_sipp = pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp not installed")
needs_kamailio = pytest.mark.skipif(
    shutil.which("kamailio") is None, reason="kamailio not installed"
)


@contextlib.asynccontextmanager
async def running(**options: Any) -> AsyncIterator[UserAgent]:
    options.setdefault("timers", FAST)
    ua = UserAgent(HOST, **options)
    await ua.start()
    try:
        yield ua
    finally:
        await ua.aclose()


def message(
    uri: str, body: bytes = b"hello", *, method: str = "MESSAGE", sender: str = "alice"
) -> SipRequest:
    headers = Headers([("From", f"<sip:{sender}@{DOMAIN}>")])
    if body:
        headers.add("Content-Type", "text/plain;charset=UTF-8")
    return SipRequest(method, uri, headers, body)


def to(ua: UserAgent, transport: TransportName = "UDP") -> Destination:
    return Destination(HOST, ua.port(transport), transport, server_name=DOMAIN)


class Recorder:
    """A handler that records requests and answers with ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.seen: list[IncomingRequest] = []

    async def __call__(self, incoming: IncomingRequest) -> SipResponse:
        self.seen.append(incoming)
        return incoming.response(self.status)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_test_pki(tmp_path_factory.mktemp("pki"), DOMAIN)


def tls_contexts(pki: TlsFiles) -> dict[str, ssl.SSLContext]:
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(pki.server_cert, pki.server_key)
    client = ssl.create_default_context(cafile=str(pki.ca_cert))
    return {"tls_server_context": server, "tls_client_context": client}


def udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    sock.setblocking(False)
    return sock


async def recv_datagram(sock: socket.socket, timeout: float = WAIT) -> bytes:
    return await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 65535), timeout)


def raw_request(method: str, port: int, *, branch: str, to_tag: str = "", extra: str = "") -> bytes:
    return (
        f"{method} sip:thing@{HOST} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {HOST}:{port};branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:caller@{DOMAIN}>;tag=caller1\r\n"
        f"To: <sip:thing@{DOMAIN}>{';tag=' + to_tag if to_tag else ''}\r\n"
        "Call-ID: raw-call\r\n"
        f"CSeq: 1 {method}\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


# ------------------------------------------------------------------ two user agents


@pytest.mark.parametrize("transport", ["UDP", "TCP", "TLS"])
async def test_message_between_two_user_agents(pki: TlsFiles, transport: TransportName) -> None:
    tls = tls_contexts(pki)
    async with (
        running(tcp_port=0, tls_port=0, **tls) as server,
        running(tls_client_context=tls["tls_client_context"]) as client,
    ):
        handler = Recorder(200)
        server.on("MESSAGE", handler)
        response = await client.request(
            message(f"sip:thing@{DOMAIN}", "temp 21.5 °C".encode()),
            destination=to(server, transport),
        )
        assert response.status == 200
        assert not isinstance(response, LocalResponse)
        assert response.to_addr.tag  # the UAS tagged it
        assert response.from_addr.tag  # we filled it in
        assert response.cseq.number == 1
        assert response.headers.get("Server") == "sipstack"
        [incoming] = handler.seen
        assert incoming.transport == transport
        received = incoming.request
        assert received.body == "temp 21.5 °C".encode()
        assert received.max_forwards == 70
        assert received.call_id == response.call_id
        assert received.headers.get("User-Agent") == "sipstack"
        via = received.top_via
        assert via.transport == transport
        assert via.branch
        assert via.rfc3261_branch
        assert via.rport == incoming.source[1]  # we asked for rport; the UAS filled it in


async def test_options_is_answered_with_capabilities() -> None:
    async with (
        running(allow_events=("presence", "message-summary"), supported=("path",)) as server,
        running() as client,
    ):
        server.on("SUBSCRIBE", Recorder())
        server.on("MESSAGE", Recorder())
        response = await client.request(
            message(f"sip:{HOST}", b"", method="OPTIONS"), destination=to(server)
        )
        assert response.status == 200
        assert response.headers.get_all("Allow") == ["MESSAGE", "OPTIONS", "SUBSCRIBE"]
        assert response.headers.get_all("Accept") == ["text/plain"]
        assert response.headers.get_all("Allow-Events") == ["presence", "message-summary"]
        assert response.headers.get_all("Supported") == ["path"]


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
@pytest.mark.parametrize("proxy", [False, True], ids=["401", "407"])
async def test_digest_challenge_is_answered_once(algorithm: str, proxy: bool) -> None:
    digest = DigestServer(DOMAIN, secrets.token_bytes(16), algorithms=(algorithm,), proxy=proxy)
    passwords = {"alice": "s3cret"}
    attempts: list[SipRequest] = []

    async def guarded(incoming: IncomingRequest) -> SipResponse:
        attempts.append(incoming.request)
        result = digest.verify(incoming.request, time.time(), password_of=passwords.get)
        if result.ok:
            return incoming.response(200)
        challenges = digest.challenges(time.time(), stale=result.stale)
        return incoming.response(digest.status, headers=challenges)

    async with running() as server, running() as client:
        server.on("MESSAGE", guarded)
        request = message(f"sip:thing@{DOMAIN}")
        accepted = await client.request(
            request, destination=to(server), auth=DigestClient("alice", "s3cret")
        )
        assert accepted.status == 200
        assert accepted.cseq.number == 2  # the retry is a new transaction with CSeq + 1
        first, second = attempts
        assert first.call_id == second.call_id
        assert first.from_addr.tag == second.from_addr.tag
        assert first.top_via.branch != second.top_via.branch
        assert second.headers.get(digest.credentials_header)

        attempts.clear()
        refused = await client.request(
            request, destination=to(server), auth=DigestClient("alice", "wrong")
        )
        assert refused.status == digest.status  # answered once, then given back
        assert len(attempts) == 2

        attempts.clear()
        plain = await client.request(request, destination=to(server))
        assert plain.status == digest.status
        assert len(attempts) == 1


async def test_digest_rounds_are_bounded() -> None:
    """A 407 then a 401 are both answered; a server that always says stale gets three tries."""
    proxy = DigestServer("proxy.test", secrets.token_bytes(16), proxy=True)
    home = DigestServer(DOMAIN, secrets.token_bytes(16))
    attempts: list[SipRequest] = []

    async def two_realms(incoming: IncomingRequest) -> SipResponse:
        attempts.append(incoming.request)
        now = time.time()
        for server in (proxy, home):
            if not server.verify(incoming.request, now, password_of=lambda user: "pw").ok:
                return incoming.response(server.status, headers=server.challenges(now))
        return incoming.response(200)

    async def always_stale(incoming: IncomingRequest) -> SipResponse:
        attempts.append(incoming.request)
        return incoming.response(401, headers=home.challenges(time.time(), stale=True))

    async with running() as server, running() as client:
        server.on("MESSAGE", two_realms)
        server.on("PUBLISH", always_stale)
        both = await client.request(
            message(f"sip:t@{DOMAIN}"), destination=to(server), auth=DigestClient("alice", "pw")
        )
        assert both.status == 200
        assert both.cseq.number == 3
        assert attempts[-1].headers.get("Proxy-Authorization")
        assert attempts[-1].headers.get("Authorization")
        attempts.clear()
        endless = await client.request(
            message(f"sip:t@{DOMAIN}", method="PUBLISH"),
            destination=to(server),
            auth=DigestClient("alice", "pw"),
        )
        assert endless.status == 401
        assert len(attempts) == 3


async def test_handler_sends_then_keeps_working_like_a_notifier() -> None:
    """A SUBSCRIBE-style handler: 200 first, then a NOTIFY back to the subscriber's flow."""
    notified: asyncio.Queue[SipRequest] = asyncio.Queue()
    done: asyncio.Queue[int] = asyncio.Queue()

    async def on_notify(incoming: IncomingRequest) -> SipResponse:
        notified.put_nowait(incoming.request)
        return incoming.response(200)

    async def on_subscribe(incoming: IncomingRequest) -> None:
        incoming.respond(200, headers=[("Expires", "60")], to_tag="dialog1", dialog=True)
        notify = SipRequest(
            "NOTIFY",
            incoming.request.contacts[0].uri,
            Headers(
                [
                    ("From", f"{incoming.request.header_value('To')};tag=dialog1"),
                    ("To", incoming.request.header_value("From")),
                    ("Call-ID", incoming.request.call_id),
                    ("Event", "presence"),
                    ("Subscription-State", "active;expires=60"),
                    ("Content-Type", "application/pidf+xml"),
                ]
            ),
            PIDF,
        )
        response = await incoming.ua.request(notify, destination=incoming.reply_destination())
        done.put_nowait(response.status)

    async with running(tcp_port=0) as notifier, running(tcp_port=0) as watcher:
        notifier.on("SUBSCRIBE", on_subscribe)
        watcher.on("NOTIFY", on_notify)
        for transport in ("UDP", "TCP"):
            subscribe = message(f"sip:sensor1@{DOMAIN}", b"", method="SUBSCRIBE")
            subscribe.headers.add("Event", "presence")
            subscribe.headers.add("Contact", f"<{watcher.contact_uri('watcher', transport)}>")
            response = await watcher.request(subscribe, destination=to(notifier, transport))
            assert response.status == 200
            assert response.to_addr.tag == "dialog1"
            notify = await asyncio.wait_for(notified.get(), WAIT)
            assert notify.body == PIDF
            assert notify.call_id == response.call_id
            assert notify.top_via.transport == transport
            assert await asyncio.wait_for(done.get(), WAIT) == 200


async def test_large_udp_request_goes_over_tcp_and_falls_back_to_udp() -> None:
    [port] = free_sip_ports(1)
    body = b"x" * 2000
    async with running(udp_port=port, tcp_port=port) as both, running() as client:
        handler = Recorder()
        both.on("MESSAGE", handler)
        response = await client.request(message(f"sip:t@{HOST}:{port}", body))
        assert response.status == 200
        assert handler.seen[0].transport == "TCP"
        assert handler.seen[0].request.top_via.transport == "TCP"
    async with running() as udp_only, running() as client:
        handler = Recorder()
        udp_only.on("MESSAGE", handler)
        response = await client.request(message(f"sip:t@{HOST}:{udp_only.port()}", body))
        assert response.status == 200
        assert handler.seen[0].transport == "UDP"  # TCP was refused: back to UDP (§18.1.1)


# ------------------------------------------------------------------ failures on the client side


async def test_silent_peer_times_out_with_a_local_408() -> None:
    with udp_socket() as sink:
        port = sink.getsockname()[1]
        async with running(timers=TimerConfig(t1=0.01, t2=0.04, t4=0.05)) as client:
            started = time.monotonic()
            response = await client.request(message(f"sip:t@{HOST}:{port}"))
            elapsed = time.monotonic() - started
            assert isinstance(response, LocalResponse)
            assert response.status == 408
            assert 0.6 <= elapsed < 2.0  # Timer F = 64 * T1
            copies = []
            with contextlib.suppress(TimeoutError):
                while True:
                    copies.append(await recv_datagram(sink, 0.05))
            assert len(copies) >= 10  # E: .01, .03, .07, then every T2 = .04
            assert len(set(copies)) == 1  # retransmissions are byte-identical
            assert len(client.table) == 0


async def test_refused_tcp_is_a_local_503_and_caller_cancellation_stops_retransmissions() -> None:
    with socket.socket() as unused:
        unused.bind((HOST, 0))
        port = unused.getsockname()[1]
    async with running() as client:
        refused = await client.request(
            message(f"sip:t@{HOST}:{port}"), destination=Destination(HOST, port, "TCP")
        )
        assert isinstance(refused, LocalResponse)
        assert refused.status == 503
        assert "cannot connect" in refused.cause
        with udp_socket() as sink:
            target = f"sip:t@{HOST}:{sink.getsockname()[1]}"
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(client.request(message(target)), 0.05)
            assert len(client.table) == 0
            await recv_datagram(sink)  # the first transmission
            with contextlib.suppress(TimeoutError):
                while True:
                    await recv_datagram(sink, 0.01)
            with pytest.raises(TimeoutError):
                await recv_datagram(sink, 0.2)  # nothing after the cancellation


async def test_closing_ends_pending_requests_with_503() -> None:
    with udp_socket() as sink:
        client = UserAgent(HOST, timers=FAST)
        await client.start()
        pending = asyncio.ensure_future(
            client.request(message(f"sip:t@{HOST}:{sink.getsockname()[1]}"))
        )
        await recv_datagram(sink)
        await client.aclose()
        response = await asyncio.wait_for(pending, WAIT)
        assert isinstance(response, LocalResponse)
        assert response.status == 503
        after = await client.request(message(f"sip:t@{HOST}:{sink.getsockname()[1]}"))
        assert after.status == 503


async def test_bad_requests_are_refused_before_sending() -> None:
    async with running() as client:
        with pytest.raises(SipValueError, match="INVITE"):
            await client.request(message(f"sip:t@{HOST}", method="INVITE"))
        with pytest.raises(SipValueError, match="From"):
            await client.request(SipRequest("MESSAGE", f"sip:t@{HOST}"))
        with pytest.raises(SipValueError, match="handled by the stack"):
            client.on("INVITE", Recorder())


# ------------------------------------------------------------------ the server side's refusals


@pytest.mark.parametrize(
    ("method", "uri", "extra", "status", "header"),
    [
        ("FOO", "sip:t@h", {}, 501, ("Allow", "MESSAGE, OPTIONS")),
        ("SUBSCRIBE", "sip:t@h", {}, 405, ("Allow", "MESSAGE, OPTIONS")),
        ("MESSAGE", "sip:t@h", {"Max-Forwards": "0"}, 483, None),
        ("MESSAGE", "tel:+15551234", {}, 416, None),
        ("MESSAGE", "sip:t@h", {"Require": "foo, 100rel"}, 420, ("Unsupported", "foo, 100rel")),
        ("MESSAGE", "sip:t@h", {"Require": "path"}, 200, None),
        ("OPTIONS", "sip:t@h", {"Max-Forwards": "0"}, 200, None),
    ],
    ids=["unknown", "not-allowed", "max-forwards", "scheme", "require", "supported", "options-mf0"],
)
async def test_refusals_before_any_handler(
    method: str, uri: str, extra: dict[str, str], status: int, header: tuple[str, str] | None
) -> None:
    async with running(supported=("path",)) as server, running() as client:
        server.on("MESSAGE", Recorder())
        request = message(uri, b"", method=method)
        for name, value in extra.items():
            request.headers.set(name, value)
        response = await client.request(request, destination=to(server))
        assert response.status == status
        if header is not None:
            assert ", ".join(response.headers.get_all(header[0])) == header[1]


async def test_handler_failures_become_500_and_service_goes_on() -> None:
    late: list[Exception] = []

    async def explode(incoming: IncomingRequest) -> SipResponse:
        raise RuntimeError("handler bug")

    async def silent(incoming: IncomingRequest) -> None:
        return None

    async def slow(incoming: IncomingRequest) -> None:
        await asyncio.sleep(0.3)
        try:
            incoming.respond(200)
        except SipValueError as error:
            late.append(error)

    async with running(handler_timeout=0.1) as server, running() as client:
        server.on("MESSAGE", explode)
        server.on("PUBLISH", silent)
        server.on("NOTIFY", slow)
        server.on("INFO", Recorder())
        for method, reason in (("MESSAGE", None), ("PUBLISH", None), ("NOTIFY", "Handler Timeout")):
            response = await client.request(
                message(f"sip:t@{DOMAIN}", method=method), destination=to(server)
            )
            assert response.status == 500, method
            if reason:
                assert response.reason == reason
        info = await client.request(
            message(f"sip:t@{DOMAIN}", method="INFO"), destination=to(server)
        )
        assert info.status == 200
        await asyncio.sleep(0.3)
        assert len(late) == 1  # the slow handler's answer came too late and was refused


async def test_retransmitted_request_is_absorbed_and_answered_again() -> None:
    async with running() as server:
        handler = Recorder(202)
        server.on("MESSAGE", handler)
        with udp_socket() as peer:
            data = raw_request("MESSAGE", peer.getsockname()[1], branch="z9hG4bKretrans")
            peer.sendto(data, (HOST, server.port()))
            first = await recv_datagram(peer)
            peer.sendto(data, (HOST, server.port()))
            second = await recv_datagram(peer)
            assert first == second  # the same response, not a new To-tag
            assert first.startswith(b"SIP/2.0 202 ")
            assert len(handler.seen) == 1


async def test_overload_gives_503_with_retry_after() -> None:
    release = asyncio.Event()

    async def waiting(incoming: IncomingRequest) -> SipResponse:
        await release.wait()
        return incoming.response(200)

    async with running(max_transactions=2) as server, running() as client:
        server.on("MESSAGE", waiting)
        busy = [
            asyncio.ensure_future(
                client.request(message(f"sip:t@{DOMAIN}"), destination=to(server))
            )
            for _ in range(2)
        ]
        while len(server.table) < 2:
            await asyncio.sleep(0.01)
        refused = await client.request(message(f"sip:t@{DOMAIN}"), destination=to(server))
        assert refused.status == 503
        assert refused.headers.get("Retry-After") == "5"
        release.set()
        assert [r.status for r in await asyncio.gather(*busy)] == [200, 200]


async def test_garbage_gets_400_or_silence_and_the_ua_keeps_serving() -> None:
    async with running(tcp_port=0) as server, running() as client:
        with udp_socket() as peer:
            target = (HOST, server.port())
            port = peer.getsockname()[1]
            peer.sendto(b"\x00garbage\xff" * 100, target)
            peer.sendto(
                # Only the header: "70" may also be part of the random port in the Via.
                raw_request("MESSAGE", port, branch="z9hG4bKg1").replace(
                    b"Max-Forwards: 70", b"Max-Forwards: x"
                ),
                target,
            )
            answer = parse_message(await recv_datagram(peer), validate=False)
            assert isinstance(answer, SipResponse)
            assert answer.status == 400
            huge = raw_request(
                "MESSAGE", port, branch="z9hG4bKg2", extra="X: " + "y" * 30000 + "\r\n"
            )
            peer.sendto(huge, target)
            with pytest.raises(TimeoutError):
                await recv_datagram(peer, 0.2)
        reader, writer = await asyncio.open_connection(HOST, server.port("TCP"))
        writer.write(b"GARBAGE\r\n\r\n")
        assert await asyncio.wait_for(reader.read(), WAIT) == b""  # no Content-Length: closed
        writer.close()
        for transport in ("UDP", "TCP"):
            response = await client.request(
                message(f"sip:{HOST}", b"", method="OPTIONS"), destination=to(server, transport)
            )
            assert response.status == 200


# ------------------------------------------------------------------ INVITE and CANCEL


async def test_invite_is_rejected_retransmitted_until_ack_then_quiet() -> None:
    async with running(timers=TimerConfig(t1=0.05, t2=0.4, t4=0.2)) as server:
        server.on("MESSAGE", Recorder())
        with udp_socket() as caller:
            target = (HOST, server.port())
            port = caller.getsockname()[1]
            caller.sendto(raw_request("INVITE", port, branch="z9hG4bKinv1"), target)
            first = await recv_datagram(caller)
            rejection = parse_message(first)
            assert isinstance(rejection, SipResponse)
            assert rejection.status == 405
            assert rejection.headers.get_all("Allow") == ["MESSAGE", "OPTIONS"]
            assert await recv_datagram(caller, 1.0) == first  # Timer G: no ACK yet
            # a CANCEL of the rejected INVITE: 200 to the CANCEL, nothing else changes
            caller.sendto(raw_request("CANCEL", port, branch="z9hG4bKinv1"), target)
            while (data := await recv_datagram(caller)) == first:
                pass  # Timer G goes on meanwhile
            cancel = parse_message(data)
            assert isinstance(cancel, SipResponse)
            assert (cancel.status, cancel.cseq.method) == (200, "CANCEL")
            ack = raw_request("ACK", port, branch="z9hG4bKinv1", to_tag=rejection.to_addr.tag or "")
            caller.sendto(ack, target)
            with contextlib.suppress(TimeoutError):  # one may have been in flight
                await recv_datagram(caller, 0.05)
            with pytest.raises(TimeoutError):
                await recv_datagram(caller, 0.4)
            caller.sendto(raw_request("CANCEL", port, branch="z9hG4bKnone"), target)
            unknown = parse_message(await recv_datagram(caller))
            assert isinstance(unknown, SipResponse)
            assert unknown.status == 481


async def test_invite_rejection_status_is_configurable_and_max_forwards_wins() -> None:
    async with running(invite_status=603) as server:
        with udp_socket() as caller:
            port = caller.getsockname()[1]
            caller.sendto(raw_request("INVITE", port, branch="z9hG4bKinv2"), (HOST, server.port()))
            assert (await recv_datagram(caller)).startswith(b"SIP/2.0 603 ")
            hop = raw_request("INVITE", port, branch="z9hG4bKinv3").replace(
                b"Max-Forwards: 70", b"Max-Forwards: 0"
            )
            caller.sendto(hop, (HOST, server.port()))
            assert (await recv_datagram(caller)).startswith(b"SIP/2.0 483 ")


# ------------------------------------------------------------------ SIPp as the peer


@needs_sipp
@pytest.mark.integration
@pytest.mark.parametrize("transport", ["u1", "t1"])
async def test_sipp_options_gets_200(tmp_path: Path, transport: Transport) -> None:
    async with running(tcp_port=0) as server:
        name: TransportName = "TCP" if transport == "t1" else "UDP"
        run = SippRun(
            SCENARIOS / "options.xml",
            tmp_path,
            target=(HOST, server.port(name)),
            transport=transport,
            keys={"domain": DOMAIN},
            timeout=10,
        )
        result = (await run.run_async()).expect_success()
        [answer] = result.responses(200)
        assert answer.header("Allow")


@needs_sipp
@pytest.mark.integration
@pytest.mark.parametrize("transport", ["u1", "t1"])
async def test_message_to_a_sipp_uas(tmp_path: Path, transport: Transport) -> None:
    uas = SippRun(SCENARIOS / "message_uas.xml", tmp_path, transport=transport, timeout=10)
    await uas.start_async()
    try:
        async with running() as client:
            name: TransportName = "TCP" if transport == "t1" else "UDP"
            response = await client.request(
                message(f"sip:bob@{DOMAIN}", b"read sensor1"),
                destination=Destination(HOST, uas.local_port, name),
            )
            assert response.status == 200
        result = (await uas.wait_async()).expect_success()
        [received] = result.requests("MESSAGE")
        assert received.body == "read sensor1"
    finally:
        uas.stop()


@needs_sipp
@pytest.mark.integration
async def test_sipp_message_uac_answers_our_digest_challenge(tmp_path: Path) -> None:
    digest = DigestServer(DOMAIN, secrets.token_bytes(16), algorithms=("MD5",))
    texts: list[bytes] = []

    async def guarded(incoming: IncomingRequest) -> SipResponse:
        result = digest.verify(incoming.request, time.time(), password_of={"alice": "al1ce"}.get)
        if not result.ok:
            return incoming.response(401, headers=digest.challenges(time.time()))
        texts.append(incoming.request.body)
        return incoming.response(200)

    async with running() as server:
        server.on("MESSAGE", guarded)
        run = SippRun(
            SCENARIOS / "message_uac.xml",
            tmp_path,
            target=(HOST, server.port()),
            service="sensor1",
            keys={"domain": DOMAIN, "sender": "alice", "text": "read"},
            auth=("alice", "al1ce"),
            auth_uri=f"sensor1@{DOMAIN}",
            timeout=10,
        )
        result = (await run.run_async()).expect_success()
        assert [m.status for m in result.responses(to="MESSAGE")] == [401, 200]
        assert [text.strip() for text in texts] == [b"read"]


# ------------------------------------------------------------------ Kamailio as the proxy


@pytest.fixture
def kamailio_workdir() -> Iterator[Path]:
    """A directory the ``kamailio`` user can reach (pytest's ``tmp_path`` is root-only)."""
    with tempfile.TemporaryDirectory(prefix="ncap-sipua-") as workdir:
        yield Path(workdir)


def publish(user: str = "sensor1") -> SipRequest:
    aor = f"sip:{user}@{DOMAIN}"
    return SipRequest(
        "PUBLISH",
        aor,
        Headers(
            [
                ("From", f"<{aor}>"),
                ("To", f"<{aor}>"),
                ("Event", "presence"),
                ("Expires", "60"),
                ("Content-Type", "application/pidf+xml"),
            ]
        ),
        PIDF,
    )


@needs_kamailio
@pytest.mark.integration
@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
async def test_digest_against_kamailio(kamailio_workdir: Path, algorithm: DigestAlgorithm) -> None:
    users = {"sensor1": "s3cret", "alice": "al1ce"}
    async with running() as thing, running(timers=TimerConfig()) as gateway:
        inbox = Recorder()
        thing.on("MESSAGE", inbox)
        kamailio = PrivateKamailio(
            kamailio_workdir,
            DOMAIN,
            users=users,
            auth_algorithm=algorithm,
            message_target=(HOST, thing.port()),
        )
        await asyncio.to_thread(kamailio.start)
        try:
            proxy = Destination(HOST, kamailio.udp_port)
            published = await gateway.request(
                publish(), destination=proxy, auth=DigestClient("sensor1", "s3cret")
            )
            assert published.status == 200, published
            assert published.headers.get("SIP-ETag")
            assert published.cseq.number == 2  # 407 first, then the answer

            refused = await gateway.request(
                publish(), destination=proxy, auth=DigestClient("sensor1", "wrong")
            )
            assert refused.status == 407

            relayed = await gateway.request(
                message("sip:sensor1@example.test", b"read", sender="alice"),
                destination=proxy,
                auth=DigestClient("alice", "al1ce", algorithms=(algorithm,)),
            )
            assert relayed.status == 200
            [incoming] = inbox.seen
            assert incoming.request.body == b"read"
            assert len(incoming.request.vias) == 2  # through Kamailio
        finally:
            await asyncio.to_thread(kamailio.stop)


@needs_kamailio
@pytest.mark.integration
async def test_publish_over_tls_to_kamailio(kamailio_workdir: Path) -> None:
    kamailio = PrivateKamailio(kamailio_workdir, DOMAIN, tls=True)
    await asyncio.to_thread(kamailio.start)
    try:
        client_context = ssl.create_default_context(cafile=str(kamailio.ca_file))
        async with running(udp_port=None, tls_client_context=client_context) as gateway:
            response = await gateway.request(
                publish(),
                destination=Destination(HOST, kamailio.tls_port, "TLS", server_name=DOMAIN),
            )
            assert response.status == 200
            assert response.headers.get("SIP-ETag")
            assert response.top_via.transport == "TLS"
    finally:
        await asyncio.to_thread(kamailio.stop)
