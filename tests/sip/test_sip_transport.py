"""UDP, TCP and TLS transports on loopback (sipstack.transport).

Raw sockets play the peer so that every byte is under the test's control: stamping of
received/rport, response routing per RFC 3261 §18.2.2 / RFC 3581, stream framing across and
within writes, RFC 5626 pings and pongs, error responses (400/413/505/513) or silence for bad
input, connection reuse, the idle timeout, the connection and write-buffer bounds, TLS with a
verified server certificate (and refusal of an unverified client context or a wrong CA).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ncap.rig.pki import TlsFiles, make_ca, make_test_pki
from sipstack.message import SipRequest, SipResponse, make_response, parse_message
from sipstack.transport import (
    Connection,
    Destination,
    SipTransportError,
    TransportLayer,
)

HOST = "127.0.0.1"
WAIT = 3.0  # every await on the network is bounded by this
TCP_VIA = "SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKtcp"


def wire(
    method: str = "OPTIONS",
    *,
    via: str = "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKt1;rport",
    call_id: str = "c1",
    body: bytes = b"",
    extra: str = "",
    length: int | None = None,
) -> bytes:
    head = (
        f"{method} sip:thing@example.test SIP/2.0\r\n"
        f"Via: {via}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:alice@example.test>;tag=a1\r\n"
        "To: <sip:thing@example.test>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: 1 {method}\r\n"
        f"{extra}"
        f"Content-Length: {len(body) if length is None else length}\r\n\r\n"
    )
    return head.encode() + body


class Received:
    """The layer's message callback: queues what arrives."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[SipRequest | SipResponse, Connection]] = asyncio.Queue()
        self.closed: list[Connection] = []

    def __call__(self, message: SipRequest | SipResponse, connection: Connection) -> None:
        self.queue.put_nowait((message, connection))

    async def next(self) -> tuple[SipRequest | SipResponse, Connection]:
        return await asyncio.wait_for(self.queue.get(), WAIT)


@pytest.fixture
def received() -> Received:
    return Received()


@contextlib.asynccontextmanager
async def layer(received: Received, **options: object) -> AsyncIterator[TransportLayer]:
    transports = TransportLayer(
        HOST,
        received,
        on_connection_closed=received.closed.append,
        **options,  # type: ignore[arg-type]
    )
    await transports.start()
    try:
        yield transports
    finally:
        await transports.aclose()


def udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    sock.setblocking(False)
    return sock


async def recv_datagram(sock: socket.socket, timeout: float = WAIT) -> bytes:
    loop = asyncio.get_running_loop()
    return await asyncio.wait_for(loop.sock_recv(sock, 65535), timeout)


async def no_datagram(sock: socket.socket, within: float = 0.2) -> None:
    with pytest.raises(TimeoutError):
        await recv_datagram(sock, within)


async def read_until(reader: asyncio.StreamReader, marker: bytes) -> bytes:
    return await asyncio.wait_for(reader.readuntil(marker), WAIT)


async def read_response(reader: asyncio.StreamReader) -> SipResponse:
    head = await read_until(reader, b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = await asyncio.wait_for(reader.readexactly(length), WAIT)
    message = parse_message(head + body, stream=True, validate=False)
    assert isinstance(message, SipResponse)
    return message


# ------------------------------------------------------------------ UDP


async def test_udp_request_is_stamped_and_the_response_goes_to_rport(received: Received) -> None:
    async with layer(received) as transports:
        port = transports.port("UDP")
        assert port
        with udp_socket() as peer:
            source = peer.getsockname()
            # sent-by names a port nobody listens on: rport must win
            peer.sendto(wire(via="SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKu1;rport"), (HOST, port))
            message, connection = await received.next()
            assert isinstance(message, SipRequest)
            assert connection.transport == "UDP"
            assert not connection.reliable
            assert connection.remote == source
            via = message.top_via
            assert via.received == HOST
            assert via.rport == source[1]
            transports.send_response(make_response(message, 200), connection)
            answer = parse_message(await recv_datagram(peer))
            assert isinstance(answer, SipResponse)
            assert answer.status == 200
            assert answer.top_via.rport == source[1]


async def test_udp_response_without_rport_goes_to_the_sent_by_port(received: Received) -> None:
    async with layer(received) as transports:
        with udp_socket() as sender, udp_socket() as listener:
            sent_by = listener.getsockname()[1]
            via = f"SIP/2.0/UDP 127.0.0.1:{sent_by};branch=z9hG4bKu2"
            sender.sendto(wire(via=via), (HOST, transports.port("UDP") or 0))
            message, connection = await received.next()
            assert isinstance(message, SipRequest)
            assert message.top_via.received is None  # sent-by host was the source already
            transports.send_response(make_response(message, 202), connection)
            answer = parse_message(await recv_datagram(listener))
            assert isinstance(answer, SipResponse)
            assert answer.status == 202
            await no_datagram(sender)


async def test_udp_received_is_added_when_sent_by_host_differs(received: Received) -> None:
    async with layer(received) as transports, received_pair(transports, received) as send:
        message = await send(wire(via="SIP/2.0/UDP gateway.example.test:5060;branch=z9hG4bKu3"))
        assert message.top_via.received == HOST
        assert message.top_via.rport is None


@contextlib.asynccontextmanager
async def received_pair(
    transports: TransportLayer, received: Received
) -> AsyncIterator[Callable[[bytes], Awaitable[SipRequest]]]:
    with udp_socket() as peer:

        async def send(data: bytes) -> SipRequest:
            peer.sendto(data, (HOST, transports.port("UDP") or 0))
            message, _ = await received.next()
            assert isinstance(message, SipRequest)
            return message

        yield send


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (wire(call_id="bad call id"), 400),
        (wire().replace(b"Max-Forwards: 70", b"Max-Forwards: lots"), 400),
        (wire().replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1), 505),
        (wire(length=10**9), 413),
        (wire(body=b"short", length=50), 400),
    ],
    ids=["bad-call-id", "bad-max-forwards", "version", "huge-content-length", "short-body"],
)
async def test_udp_bad_requests_get_error_responses(
    received: Received, data: bytes, status: int
) -> None:
    async with layer(received) as transports:
        with udp_socket() as peer:
            peer.sendto(data, (HOST, transports.port("UDP") or 0))
            answer = parse_message(await recv_datagram(peer), validate=False)
            assert isinstance(answer, SipResponse)
            assert answer.status == status
            assert received.queue.empty()


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\xff garbage \x80",
        b"NOT SIP AT ALL\r\n\r\n",
        wire().replace(b"Via: ", b"X-Via: "),  # nowhere to send a response
        wire().replace(b"Call-ID: c1\r\n", b""),  # a response could not be matched
        wire("ACK").replace(b"Call-ID: c1\r\n", b""),  # never answer an ACK
        b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",  # a broken response
        b"\r\n\r\n",  # a keep-alive
        wire(extra="X-Long: " + "a" * 20000 + "\r\n"),  # head too large to read an answer from
    ],
    ids=[
        "binary",
        "text",
        "no-via",
        "no-call-id",
        "bad-ack",
        "bad-response",
        "crlf",
        "huge-header",
    ],
)
async def test_udp_unanswerable_input_is_dropped_and_service_goes_on(
    received: Received, data: bytes
) -> None:
    async with layer(received) as transports:
        with udp_socket() as peer:
            target = (HOST, transports.port("UDP") or 0)
            peer.sendto(data, target)
            await no_datagram(peer, 0.1)
            peer.sendto(wire(), target)
            message, _ = await received.next()
            assert isinstance(message, SipRequest)
            assert received.queue.empty()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    datagrams=st.lists(
        st.one_of(
            st.binary(max_size=300),
            st.builds(lambda cut: wire()[:cut], st.integers(0, 200)),
            st.builds(
                lambda junk, at: wire()[:at] + junk + wire()[at:],
                st.binary(min_size=1, max_size=20),
                st.integers(0, 200),
            ),
        ),
        max_size=8,
    )
)
def test_udp_fuzz_never_breaks_the_endpoint(datagrams: list[bytes]) -> None:
    async def scenario() -> None:
        received = Received()
        async with layer(received) as transports:
            with udp_socket() as peer:
                target = (HOST, transports.port("UDP") or 0)
                for data in datagrams:
                    peer.sendto(data, target)
                peer.sendto(wire(call_id="after-fuzz"), target)
                while True:  # fuzz may have produced valid messages too; ours comes last
                    message, _ = await received.next()
                    if message.headers.get("Call-ID") == "after-fuzz":
                        break

    asyncio.run(scenario())


async def test_callback_errors_do_not_escape(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    def explode(message: SipRequest | SipResponse, connection: Connection) -> None:
        calls.append(message.call_id)
        raise RuntimeError("bug in the layer above")

    transports = TransportLayer(HOST, explode)
    await transports.start()
    try:
        with udp_socket() as peer:
            for call_id in ("one", "two"):
                peer.sendto(wire(call_id=call_id), (HOST, transports.port("UDP") or 0))
            for _ in range(100):
                if len(calls) == 2:
                    break
                await asyncio.sleep(0.01)
        assert calls == ["one", "two"]
        assert "bug in the layer above" in caplog.text
    finally:
        await transports.aclose()


# ------------------------------------------------------------------ TCP


async def test_tcp_frames_across_and_within_writes_and_answers_on_the_connection(
    received: Received,
) -> None:
    async with layer(received, tcp_port=0) as transports:
        port = transports.port("TCP")
        assert port
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            via = "SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKs1"
            first = wire("MESSAGE", via=via, call_id="m1", body=b"hello")
            second = wire("MESSAGE", via=via.replace("s1", "s2"), call_id="m2", body=b"world")
            writer.write(first[:30])
            await writer.drain()
            writer.write(first[30:] + second[:-3])
            await writer.drain()
            writer.write(second[-3:])
            messages = [await received.next(), await received.next()]
            assert [m.body for m, _ in messages] == [b"hello", b"world"]
            message, connection = messages[0]
            assert isinstance(message, SipRequest)
            assert connection.transport == "TCP"
            assert connection.reliable
            assert connection.remote == writer.get_extra_info("sockname")
            assert message.top_via.received is None  # no rport asked, and the host is right
            transports.send_response(make_response(message, 200), connection)
            answer = await read_response(reader)
            assert answer.status == 200
            assert answer.call_id == "m1"
        finally:
            writer.close()


async def test_tcp_keepalive_ping_gets_a_pong(received: Received) -> None:
    async with layer(received, tcp_port=0) as transports:
        reader, writer = await asyncio.open_connection(HOST, transports.port("TCP"))
        try:
            writer.write(b"\r\n\r\n")
            assert await asyncio.wait_for(reader.readexactly(2), WAIT) == b"\r\n"
            writer.write(b"\r\n\r\n\r\n\r\n" + wire(via="SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKk"))
            assert await asyncio.wait_for(reader.readexactly(4), WAIT) == b"\r\n\r\n"
            message, _ = await received.next()
            assert isinstance(message, SipRequest)
        finally:
            writer.close()


async def test_tcp_bad_frame_gets_400_and_the_stream_goes_on(received: Received) -> None:
    async with layer(received, tcp_port=0) as transports:
        reader, writer = await asyncio.open_connection(HOST, transports.port("TCP"))
        try:
            via = "SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKb1"
            writer.write(wire(via=via, call_id="bad call id with spaces"))
            answer = await read_response(reader)
            assert answer.status == 400
            writer.write(wire(via=via, call_id="good"))
            message, _ = await received.next()
            assert message.call_id == "good"
        finally:
            writer.close()


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (wire(via=TCP_VIA).replace(b"Content-Length: 0", b"X: y"), 400),
        (wire(via=TCP_VIA, length=10**9), 413),
    ],
    ids=["no-content-length", "huge-body"],
)  # fmt: skip
async def test_tcp_unframeable_stream_is_answered_and_closed(
    received: Received, data: bytes, status: int
) -> None:
    async with layer(received, tcp_port=0) as transports:
        reader, writer = await asyncio.open_connection(HOST, transports.port("TCP"))
        try:
            writer.write(data)
            answer = await read_response(reader)
            assert answer.status == status
            assert await asyncio.wait_for(reader.read(), WAIT) == b""  # closed by the layer
            assert received.queue.empty()
        finally:
            writer.close()


async def test_tcp_framing_error_in_a_later_chunk_is_still_answered(received: Received) -> None:
    data = wire(via="SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKf4").replace(
        b"Content-Length: 0", b"X: y"
    )
    async with layer(received, tcp_port=0) as transports:
        reader, writer = await asyncio.open_connection(HOST, transports.port("TCP"))
        try:
            writer.write(b"\r\n" + data[:40])
            await writer.drain()
            await asyncio.sleep(0.05)  # let the layer buffer the first part on its own
            writer.write(data[40:])
            answer = await read_response(reader)
            assert answer.status == 400
            assert answer.call_id == "c1"
            assert await asyncio.wait_for(reader.read(), WAIT) == b""
        finally:
            writer.close()


@pytest.mark.parametrize(
    "data",
    [
        b"\x16\x03\x01 not sip at all" * 2000,  # no head end within the limit
        wire(via="SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKf5", extra="X: " + "b" * 17000 + "\r\n"),
        # a good message, then one that cannot be framed: never answer the good one with 400
        wire(call_id="good", via="SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKf6")
        + wire(call_id="bad").replace(b"Content-Length: 0", b"X: y"),
    ],
    ids=["garbage", "huge-header", "good-then-unframeable"],
)
async def test_tcp_unanswerable_stream_is_closed_silently(received: Received, data: bytes) -> None:
    async with layer(received, tcp_port=0) as transports:
        reader, writer = await asyncio.open_connection(HOST, transports.port("TCP"))
        try:
            writer.write(data)
            assert await asyncio.wait_for(reader.read(), WAIT) == b""
            for _ in range(50):
                if transports.connection_count == 0:
                    break
                await asyncio.sleep(0.01)
            assert transports.connection_count == 0
        finally:
            writer.close()


async def test_tcp_response_reopens_a_connection_when_the_first_is_gone(
    received: Received,
) -> None:
    """§18.2.2: connection closed → connect to received + the sent-by port."""
    back: asyncio.Queue[bytes] = asyncio.Queue()

    async def client_listener(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        back.put_nowait(await reader.readuntil(b"\r\n\r\n"))
        writer.close()

    server = await asyncio.start_server(client_listener, HOST, 0)
    sent_by = server.sockets[0].getsockname()[1]
    try:
        async with layer(received, tcp_port=0) as transports:
            _, writer = await asyncio.open_connection(HOST, transports.port("TCP"))
            writer.write(wire(via=f"SIP/2.0/TCP 127.0.0.1:{sent_by};branch=z9hG4bKr1"))
            message, connection = await received.next()
            assert isinstance(message, SipRequest)
            writer.close()
            for _ in range(100):
                if connection.closed:
                    break
                await asyncio.sleep(0.01)
            assert connection.closed
            assert received.closed == [connection]
            transports.send_response(make_response(message, 200), connection)
            head = await asyncio.wait_for(back.get(), WAIT)
            assert head.startswith(b"SIP/2.0 200 OK")
    finally:
        server.close()


async def test_tcp_outgoing_connections_are_reused_and_closed_when_idle(
    received: Received,
) -> None:
    async with (
        layer(received, tcp_port=0) as server,
        layer(Received(), udp_port=None, idle_timeout=0.5) as client,
    ):
        destination = Destination(HOST, server.port("TCP") or 0, "TCP")
        first, second = await asyncio.gather(
            client.flow_to(destination), client.flow_to(destination)
        )
        assert first is second
        assert client.connection_count == 1
        first.send(wire(via=f"SIP/2.0/TCP 127.0.0.1:{first.local[1]};branch=z9hG4bKo1"))
        message, incoming = await received.next()
        assert isinstance(message, SipRequest)
        server.send_response(make_response(message, 200), incoming)
        await asyncio.sleep(0.1)
        assert await client.flow_to(destination) is first  # still fresh
        for _ in range(100):
            if first.closed:
                break
            await asyncio.sleep(0.02)
        assert first.closed  # idle timeout
        assert client.connection_count == 0
        third = await client.flow_to(destination)
        assert third is not first
        assert not third.closed


async def test_tcp_refused_connection_is_a_transport_error(received: Received) -> None:
    with socket.socket() as unused:
        unused.bind((HOST, 0))
        port = unused.getsockname()[1]
    async with layer(received) as transports:
        with pytest.raises(SipTransportError, match="cannot connect"):
            await transports.flow_to(Destination(HOST, port, "TCP"))


async def test_connection_count_is_bounded(received: Received) -> None:
    async with layer(received, tcp_port=0, max_connections=2) as transports:
        port = transports.port("TCP")
        streams = [await asyncio.open_connection(HOST, port) for _ in range(3)]
        try:
            # the third is accepted by the kernel, then closed by the layer
            assert await asyncio.wait_for(streams[2][0].read(), WAIT) == b""
            assert transports.connection_count == 2
            with pytest.raises(SipTransportError, match="connections open"):
                await transports.flow_to(Destination(HOST, port, "TCP"))
        finally:
            for _, writer in streams:
                writer.close()


async def test_write_buffer_is_bounded(received: Received) -> None:
    async with (
        layer(received, tcp_port=0) as server,
        layer(Received(), max_write_buffer=100) as client,
    ):
        flow = await client.flow_to(Destination(HOST, server.port("TCP") or 0, "TCP"))
        with pytest.raises(SipTransportError, match="not reading"):
            flow.send(b"x" * 200)
        assert flow.closed


# ------------------------------------------------------------------ TLS


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_test_pki(tmp_path_factory.mktemp("pki"), "example.test")


def server_context(pki: TlsFiles) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    return context


def client_context(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


async def test_tls_both_ways_with_a_verified_server(received: Received, pki: TlsFiles) -> None:
    client_received = Received()
    async with (
        layer(received, tls_port=0, tls_server_context=server_context(pki)) as server,
        layer(client_received, tls_client_context=client_context(pki.ca_cert)) as client,
    ):
        destination = Destination(HOST, server.port("TLS") or 0, "TLS", server_name="example.test")
        flow = await client.flow_to(destination)
        assert flow.transport == "TLS"
        flow.send(wire("MESSAGE", via="SIP/2.0/TLS 127.0.0.1:9;branch=z9hG4bKtls", body=b"hi"))
        message, incoming = await received.next()
        assert isinstance(message, SipRequest)
        assert message.body == b"hi"
        assert incoming.transport == "TLS"
        server.send_response(make_response(message, 200), incoming)
        answer, via = await client_received.next()
        assert isinstance(answer, SipResponse)
        assert answer.status == 200
        assert via is flow
        assert await client.flow_to(destination) is flow  # reused


async def test_tls_wrong_ca_or_name_is_refused(
    received: Received, pki: TlsFiles, tmp_path: Path
) -> None:
    other_ca = make_ca(tmp_path, "someone else").cert
    async with layer(received, tls_port=0, tls_server_context=server_context(pki)) as server:
        port = server.port("TLS") or 0
        async with layer(Received(), tls_client_context=client_context(other_ca)) as client:
            with pytest.raises(SipTransportError, match="certificate"):
                await client.flow_to(Destination(HOST, port, "TLS", server_name="example.test"))
        async with layer(Received(), tls_client_context=client_context(pki.ca_cert)) as client:
            with pytest.raises(SipTransportError):
                await client.flow_to(Destination(HOST, port, "TLS", server_name="other.test"))
        assert received.queue.empty()


def test_unverified_client_context_and_tls_without_server_context_are_refused() -> None:
    lax = ssl.create_default_context()
    lax.check_hostname = False
    lax.verify_mode = ssl.CERT_NONE
    with pytest.raises(SipTransportError, match="verify"):
        TransportLayer(HOST, lambda message, connection: None, tls_client_context=lax)
    with pytest.raises(SipTransportError, match="server SSLContext"):
        TransportLayer(HOST, lambda message, connection: None, tls_port=0)


async def test_tls_needs_a_client_context(received: Received) -> None:
    async with layer(received) as transports:
        assert not transports.can_send("TLS")
        with pytest.raises(SipTransportError, match="no TLS client context"):
            await transports.flow_to(Destination(HOST, 5061, "TLS"))


# ------------------------------------------------------------------ destinations and setup


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("sip:thing@127.0.0.1", ("127.0.0.1", 5060, "UDP", "127.0.0.1")),
        ("sip:t@example.test:5070;transport=tcp", ("example.test", 5070, "TCP", "example.test")),
        ("sips:thing@example.test", ("example.test", 5061, "TLS", "example.test")),
        ("sip:example.test;transport=TLS", ("example.test", 5061, "TLS", "example.test")),
        ("sip:thing@example.test;maddr=192.0.2.7", ("192.0.2.7", 5060, "UDP", "example.test")),
        ("sip:[::1]:5080", ("::1", 5080, "UDP", "::1")),
    ],
)  # fmt: skip
def test_destination_from_uri(uri: str, expected: tuple[str, int, str, str]) -> None:
    destination = Destination.from_uri(uri)
    assert (
        destination.host,
        destination.port,
        destination.transport,
        destination.server_name,
    ) == expected


def test_destination_validates() -> None:
    with pytest.raises(SipTransportError):
        Destination(HOST, 0)
    with pytest.raises(SipTransportError):
        Destination(HOST, 5060, "SCTP")  # type: ignore[arg-type]


async def test_taken_port_is_a_clear_start_error(received: Received) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind((HOST, 0))
        transports = TransportLayer(HOST, received, udp_port=squatter.getsockname()[1])
        with pytest.raises(SipTransportError, match="cannot bind"):
            await transports.start()
