"""SIP transports on asyncio: UDP, TCP and TLS (RFC 3261 §18, RFC 3581, RFC 5626 §4.4.1).

The I/O half of the stack below the transaction layer. A :class:`TransportLayer` owns

* one UDP endpoint;
* optional TCP and TLS listeners, and outgoing TCP/TLS connections, reused per
  ``(transport, host, port)`` (TLS also per verified name), closed after ``idle_timeout``
  seconds without traffic, at most ``max_connections`` of them at a time;

and hands every parsed message to ``on_message(message, connection)``; the connection says where
it came from (:attr:`Connection.remote`) and is the way back. On receipt:

* a request's top Via gets ``received``/``rport`` (:meth:`~sipstack.fields.Via.stamp_source`);
* a message that does not parse is answered per :func:`~sipstack.message.error_response`
  (400/413/505/513) or dropped; nothing from the wire ever raises into the event loop;
* a stream is cut by :class:`~sipstack.message.StreamFramer`, whose limits bound the buffer; a
  stream that cannot be framed is closed; each CRLFCRLF keep-alive ping on a connection we
  accepted gets a CRLF pong; CRLF-only datagrams are ignored.

Responses are routed by :meth:`TransportLayer.send_response` per RFC 3261 §18.2.2 / RFC 3581:
back over the same connection on TCP/TLS (a new TCP connection to ``received`` and the sent-by
port if it has gone), to ``received``:``rport`` (else the sent-by address) on UDP.

TLS takes the caller's :class:`ssl.SSLContext`: a server context for the listener, and a client
context that must verify the peer's certificate and name (an unverified one is refused).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, cast

from sipstack.errors import SipError, SipFramingError, SipParseError
from sipstack.fields import Via
from sipstack.headers import Headers
from sipstack.message import (
    DEFAULT_LIMITS,
    SipLimits,
    SipRequest,
    SipResponse,
    StreamFramer,
    error_response,
    is_keepalive,
    parse_message,
)
from sipstack.uri import SipUri

__all__ = [
    "DEFAULT_PORTS",
    "TRANSPORTS",
    "Connection",
    "Destination",
    "MessageCallback",
    "SipTransportError",
    "StreamConnection",
    "TransportLayer",
    "TransportName",
    "UdpFlow",
]

_LOGGER = logging.getLogger(__name__)

TransportName = Literal["UDP", "TCP", "TLS"]
TRANSPORTS: tuple[TransportName, ...] = ("UDP", "TCP", "TLS")
DEFAULT_PORTS: dict[str, int] = {"UDP": 5060, "TCP": 5060, "TLS": 5061}
# The largest datagram we try to send (an IPv4 UDP payload is at most 65507 bytes).
_MAX_DATAGRAM = 65507
_HEAD_END = re.compile(rb"\r?\n\r?\n")


class SipTransportError(SipError):
    """A message could not be sent: no such transport, connection refused or lost, TLS failure,
    too many connections, a peer that does not read. Also raised for a bad transport setup."""


class Connection:
    """Where a message came from and the way back: a UDP flow or a TCP/TLS connection."""

    transport: TransportName
    reliable: bool
    local: tuple[str, int]
    remote: tuple[str, int]

    @property
    def closed(self) -> bool:
        raise NotImplementedError

    def send(self, data: bytes) -> None:
        """Queue ``data`` for sending; :class:`SipTransportError` if that is impossible."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.transport} {self.local[0]}:{self.local[1]}"
            f" <-> {self.remote[0]}:{self.remote[1]}{' closed' if self.closed else ''}>"
        )


class UdpFlow(Connection):
    """Our UDP endpoint paired with one remote address (cheap; made per datagram)."""

    transport: TransportName = "UDP"
    reliable = False

    def __init__(self, endpoint: _UdpEndpoint, remote: tuple[str, int]) -> None:
        self._endpoint = endpoint
        self.local = endpoint.local
        self.remote = remote

    @property
    def closed(self) -> bool:
        return self._endpoint.closed

    def send(self, data: bytes) -> None:
        self._endpoint.sendto(data, self.remote)

    def close(self) -> None:
        """A flow has nothing of its own to close (the endpoint belongs to the layer)."""


@dataclass(frozen=True)
class Destination:
    """Where a request goes: an address and a transport, optionally an existing flow.

    ``server_name`` is the name a TLS server certificate must carry (default: ``host``).
    ``flow``, when given and still open on the same transport, is used instead of looking up or
    opening a connection (e.g. to send back over the connection a peer opened to us).
    """

    host: str
    port: int
    transport: TransportName = "UDP"
    server_name: str | None = None
    flow: Connection | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise SipTransportError(f"unknown transport {self.transport!r}")
        if not 0 < self.port <= 65535:
            raise SipTransportError(f"port out of range: {self.port}")

    @classmethod
    def from_uri(cls, uri: str | SipUri) -> Destination:
        """The destination of a SIP URI without DNS lookups (RFC 3263 NAPTR/SRV not done).

        ``sips:`` or ``transport=tls`` is TLS, ``transport=tcp`` TCP, anything else UDP;
        ``maddr`` overrides the host; the port defaults to 5060 (5061 for TLS). The URI host is
        the TLS name to verify.
        """
        parsed = uri if isinstance(uri, SipUri) else SipUri.parse(uri)
        wanted = (parsed.transport or "").upper()
        transport: TransportName
        if parsed.secure or wanted == "TLS":
            transport = "TLS"
        elif wanted == "TCP":
            transport = "TCP"
        else:
            transport = "UDP"
        host = parsed.param("maddr") or parsed.host
        port = parsed.port or DEFAULT_PORTS[transport]
        return cls(host.strip("[]"), port, transport, server_name=parsed.host)

    @classmethod
    def back_to(cls, connection: Connection) -> Destination:
        """Back to the source of a received message, over the same flow while it is open."""
        return cls(
            connection.remote[0], connection.remote[1], connection.transport, flow=connection
        )


MessageCallback = Callable[[SipRequest | SipResponse, Connection], None]


def _address(info: object) -> tuple[str, int]:
    """``(host, port)`` of a sockname/peername (IPv6 ones have four fields)."""
    pair = cast(tuple[str, int], info)
    return str(pair[0]), int(pair[1])


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _stamp_top_via(request: SipRequest, source: tuple[str, int]) -> None:
    """Add ``received``/``rport`` to the request's top Via (RFC 3261 §18.2.1, RFC 3581 §4)."""
    items = request.headers.items()
    for index, (name, value) in enumerate(items):
        if name == "Via":
            via = Via.parse(value)
            via.stamp_source(*source)
            items[index] = ("Via", str(via))
            request.headers = Headers(items)
            return


class _UdpEndpoint(asyncio.DatagramProtocol):
    def __init__(self, layer: TransportLayer) -> None:
        self._layer = layer
        self._transport: asyncio.DatagramTransport | None = None
        self.local: tuple[str, int] = ("", 0)

    @property
    def closed(self) -> bool:
        return self._transport is None or self._transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)
        self.local = _address(transport.get_extra_info("sockname"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        source = _address(addr)
        if is_keepalive(data):
            return  # RFC 5626 keeps UDP flows alive with STUN; stray CRLFs are noise
        self._layer._deliver(data, UdpFlow(self, source), stream=False)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors on an unconnected socket: nothing to tie them to; transactions time out.
        _LOGGER.debug("udp %s:%d: %s", self.local[0], self.local[1], exc)

    def sendto(self, data: bytes, address: tuple[str, int]) -> None:
        if self._transport is None or self._transport.is_closing():
            raise SipTransportError("the UDP endpoint is closed")
        if len(data) > _MAX_DATAGRAM:
            raise SipTransportError(f"message of {len(data)} bytes does not fit a datagram")
        self._transport.sendto(data, address)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class StreamConnection(Connection, asyncio.Protocol):
    """One TCP or TLS connection (accepted or opened by us)."""

    reliable = True

    def __init__(self, layer: TransportLayer, transport: TransportName, *, accepted: bool) -> None:
        self._layer = layer
        self.transport = transport
        self.accepted = accepted
        self.local = ("", 0)
        self.remote = ("", 0)
        self._framer = StreamFramer(layer.limits)
        self._prefix = bytearray()
        self._stream: asyncio.Transport | None = None
        self._closed = False
        self._last_activity = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._stream = cast(asyncio.Transport, transport)
        self.local = _address(transport.get_extra_info("sockname"))
        self.remote = _address(transport.get_extra_info("peername"))
        if not self._layer._admit(self):
            _LOGGER.warning("%s refused: %d connections open", self, self._layer.max_connections)
            self._closed = True
            self._stream.abort()
            return
        self._touch()
        self._schedule_idle_check(self._layer.idle_timeout)

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        self._touch()
        pending_before = self._framer.buffered
        try:
            frames = self._framer.feed(data)
        except SipFramingError as error:
            _LOGGER.info("%s: cannot frame the stream (%s); closing", self, error)
            start = bytes(self._prefix) + data if pending_before else data
            self._answer_framing_error(start, error)
            self.close()
            return
        self._track_prefix(data)
        pings = self._framer.take_pings()
        if pings and self.accepted:
            with contextlib.suppress(SipError):
                self.send(b"\r\n" * pings)
        for frame in frames:
            if self.closed:  # a handler above may have closed us
                break
            self._layer._deliver(frame, self, stream=True)

    def _track_prefix(self, data: bytes) -> None:
        """Keep the first bytes of the message still being received (the framer keeps none
        it would give back), so that a framing error can still be answered."""
        pending = self._framer.buffered
        cap = self._layer.limits.max_header_bytes + 8
        if pending == 0:
            self._prefix.clear()
        elif pending <= len(data):  # the pending message starts in this chunk
            self._prefix = bytearray(data[len(data) - pending :][:cap])
        elif len(self._prefix) < cap:  # it started earlier and goes on
            self._prefix += data[: cap - len(self._prefix)]

    def _answer_framing_error(self, start: bytes, error: SipFramingError) -> None:
        """Best effort: answer the message that broke framing, if it is the first in ``start``
        and readable enough (:func:`error_response`); messages completed in the same chunk are
        lost with it, so when one precedes it nothing is answered rather than the wrong one."""
        start = start.lstrip(b"\r\n")
        head_end = _HEAD_END.search(start)
        if head_end is not None:
            probe = StreamFramer(self._layer.limits)
            try:
                probe.feed(start[: head_end.end()])
            except SipFramingError:
                pass  # the first message is the one that cannot be framed
            else:
                return
        reply = error_response(start, error, limits=self._layer.limits)
        if reply is not None:
            with contextlib.suppress(SipError):
                self.send(reply.to_bytes())

    def eof_received(self) -> bool | None:
        return False  # half-closed SIP streams are useless: close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        self._layer._forget(self)

    # Connection

    @property
    def closed(self) -> bool:
        return self._closed or self._stream is None or self._stream.is_closing()

    def send(self, data: bytes) -> None:
        stream = self._stream
        if self.closed or stream is None:
            raise SipTransportError(f"{self!r} is closed")
        if stream.get_write_buffer_size() + len(data) > self._layer.max_write_buffer:
            # The peer does not read: holding more would let it make us grow without bound.
            self.abort()
            raise SipTransportError(f"{self!r}: peer is not reading; aborted")
        self._touch()
        stream.write(data)

    def close(self) -> None:
        if self._stream is not None and not self._stream.is_closing():
            self._stream.close()
        self._closed = True

    def abort(self) -> None:
        if self._stream is not None:
            self._stream.abort()
        self._closed = True

    # idle handling

    def _touch(self) -> None:
        self._last_activity = asyncio.get_running_loop().time()

    def _schedule_idle_check(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        self._idle_timer = loop.call_later(delay, self._idle_check)

    def _idle_check(self) -> None:
        self._idle_timer = None
        if self._closed:
            return
        idle = asyncio.get_running_loop().time() - self._last_activity
        if idle >= self._layer.idle_timeout:
            _LOGGER.debug("%s idle for %.1f s; closing", self, idle)
            self.close()
        else:
            self._schedule_idle_check(self._layer.idle_timeout - idle)


_StreamKey = tuple[str, str, int, str]  # transport, host (lower), port, TLS name


class TransportLayer:
    """The UDP endpoint, TCP/TLS listeners and connections of one SIP element.

    A port of 0 binds an ephemeral port (see :meth:`port`); None disables that listener.
    Outgoing TCP needs no listener; outgoing TLS needs ``tls_client_context``.
    """

    def __init__(
        self,
        host: str,
        on_message: MessageCallback,
        *,
        udp_port: int | None = 0,
        tcp_port: int | None = None,
        tls_port: int | None = None,
        tls_server_context: ssl.SSLContext | None = None,
        tls_client_context: ssl.SSLContext | None = None,
        on_connection_closed: Callable[[Connection], None] | None = None,
        limits: SipLimits = DEFAULT_LIMITS,
        max_connections: int = 256,
        idle_timeout: float = 120.0,
        connect_timeout: float = 5.0,
        tls_handshake_timeout: float = 10.0,
        max_write_buffer: int = 1024 * 1024,
    ) -> None:
        if tls_port is not None and tls_server_context is None:
            raise SipTransportError("a TLS listener needs a server SSLContext")
        if tls_client_context is not None and (
            tls_client_context.verify_mode != ssl.CERT_REQUIRED
            or not tls_client_context.check_hostname
        ):
            raise SipTransportError(
                "the TLS client context must verify certificates and host names"
            )
        if max_connections < 1 or idle_timeout <= 0 or connect_timeout <= 0:
            raise SipTransportError("max_connections, idle_timeout and connect_timeout must be > 0")
        self.host = host
        self.limits = limits
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.tls_handshake_timeout = tls_handshake_timeout
        self.max_write_buffer = max_write_buffer
        self._on_message = on_message
        self._on_closed = on_connection_closed
        self._wanted: dict[str, int | None] = {"UDP": udp_port, "TCP": tcp_port, "TLS": tls_port}
        self._tls_server = tls_server_context
        self._tls_client = tls_client_context
        self._udp: _UdpEndpoint | None = None
        self._servers: dict[str, asyncio.Server] = {}
        self._ports: dict[str, int] = {}
        self._connections: set[StreamConnection] = set()
        self._by_key: dict[_StreamKey, StreamConnection] = {}
        self._connecting: dict[_StreamKey, asyncio.Task[StreamConnection]] = {}
        self._started = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bind the UDP endpoint and the listeners (:class:`SipTransportError` on failure)."""
        if self._started:
            raise SipTransportError("transport layer already started")
        self._started = True
        loop = asyncio.get_running_loop()
        try:
            udp_port = self._wanted["UDP"]
            if udp_port is not None:
                _, protocol = await loop.create_datagram_endpoint(
                    lambda: _UdpEndpoint(self), local_addr=(self.host, udp_port)
                )
                self._udp = protocol
                self._ports["UDP"] = protocol.local[1]
            for name, context in (("TCP", None), ("TLS", self._tls_server)):
                port = self._wanted[name]
                if port is None:
                    continue
                server = await loop.create_server(
                    self._acceptor(cast(TransportName, name)),
                    self.host,
                    port,
                    ssl=context,
                    ssl_handshake_timeout=self.tls_handshake_timeout if context else None,
                    reuse_address=True,
                )
                self._servers[name] = server
                self._ports[name] = _address(server.sockets[0].getsockname())[1]
        except OSError as error:
            await self.aclose()
            raise SipTransportError(f"cannot bind on {self.host}: {error}") from error
        _LOGGER.debug("sip transports on %s: %s", self.host, self._ports)

    async def aclose(self) -> None:
        """Close listeners, connections and the UDP endpoint. Idempotent."""
        for task in list(self._connecting.values()):
            task.cancel()
        for server in self._servers.values():
            server.close()
        for connection in list(self._connections):
            connection.abort()
        if self._udp is not None:
            self._udp.close()
        for server in self._servers.values():
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self._servers.clear()
        self._connections.clear()
        self._by_key.clear()
        await asyncio.sleep(0)  # let connection_lost callbacks run

    # ------------------------------------------------------------------ queries

    def port(self, transport: str) -> int | None:
        """The bound port of our ``transport`` listener (UDP endpoint), None if there is none."""
        return self._ports.get(transport.upper())

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def can_send(self, transport: str) -> bool:
        """True if requests can be sent over ``transport``."""
        name = transport.upper()
        if name == "UDP":
            return self._udp is not None and not self._udp.closed
        if name == "TLS":
            return self._tls_client is not None
        return name == "TCP"

    # ------------------------------------------------------------------ sending

    async def flow_to(self, destination: Destination) -> Connection:
        """A flow to ``destination``: its own open flow, a reused connection or a new one."""
        given = destination.flow
        if given is not None and not given.closed and given.transport == destination.transport:
            return given
        if destination.transport == "UDP":
            if self._udp is None or self._udp.closed:
                raise SipTransportError("no UDP transport")
            host = await self._resolve(destination.host, destination.port)
            return UdpFlow(self._udp, (host, destination.port))
        key = self._key(destination)
        existing = self._by_key.get(key)
        if existing is not None and not existing.closed:
            return existing
        task = self._connecting.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._connect(destination, key))
            self._connecting[key] = task
            task.add_done_callback(lambda done: self._connected(key, done))
        return await asyncio.shield(task)

    def send_response(self, response: SipResponse, connection: Connection) -> None:
        """Send a response to a request received on ``connection`` (RFC 3261 §18.2.2)."""
        data = response.to_bytes()
        if connection.reliable:
            if not connection.closed:
                connection.send(data)
                return
            if connection.transport == "TLS":
                # A new TLS connection would need the client's name to verify: give up.
                raise SipTransportError(f"{connection!r} is gone; TLS response dropped")
            via = response.top_via
            destination = Destination(
                via.received or via.host, via.port or DEFAULT_PORTS["TCP"], "TCP"
            )
            asyncio.get_running_loop().create_task(self._send_later(data, destination))
            return
        if self._udp is None:
            raise SipTransportError("no UDP transport")
        self._udp.sendto(data, response.top_via.response_address(DEFAULT_PORTS["UDP"]))

    # ------------------------------------------------------------------ internals

    def _acceptor(self, transport: TransportName) -> Callable[[], StreamConnection]:
        return lambda: StreamConnection(self, transport, accepted=True)

    def _connected(self, key: _StreamKey, task: asyncio.Task[StreamConnection]) -> None:
        self._connecting.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved here too: every waiter may have been cancelled

    def _key(self, destination: Destination) -> _StreamKey:
        name = (
            (destination.server_name or destination.host) if destination.transport == "TLS" else ""
        )
        return (destination.transport, destination.host.lower(), destination.port, name.lower())

    async def _resolve(self, host: str, port: int) -> str:
        if _is_ip(host):
            return host.strip("[]")
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except OSError as error:
            raise SipTransportError(f"cannot resolve {host}: {error}") from error
        return str(infos[0][4][0])

    async def _connect(self, destination: Destination, key: _StreamKey) -> StreamConnection:
        context: ssl.SSLContext | None = None
        if destination.transport == "TLS":
            if self._tls_client is None:
                raise SipTransportError("no TLS client context")
            context = self._tls_client
        if len(self._connections) >= self.max_connections:
            raise SipTransportError(f"{self.max_connections} connections open; not opening more")
        loop = asyncio.get_running_loop()
        transport_name = destination.transport
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(
                    lambda: StreamConnection(self, transport_name, accepted=False),
                    destination.host,
                    destination.port,
                    ssl=context,
                    server_hostname=(destination.server_name or destination.host)
                    if context
                    else None,
                    ssl_handshake_timeout=self.tls_handshake_timeout if context else None,
                    local_addr=(self.host, 0),
                ),
                timeout=self.connect_timeout,
            )
        except (OSError, TimeoutError) as error:
            raise SipTransportError(
                f"cannot connect {transport_name} to {destination.host}:{destination.port}: "
                f"{error or type(error).__name__}"
            ) from error
        if connection.closed:
            raise SipTransportError(f"connection to {destination.host} refused locally")
        self._by_key[key] = connection
        return connection

    async def _send_later(self, data: bytes, destination: Destination) -> None:
        try:
            connection = await self.flow_to(destination)
            connection.send(data)
        except SipError as error:
            _LOGGER.info("response to %s:%d lost: %s", destination.host, destination.port, error)

    def _admit(self, connection: StreamConnection) -> bool:
        if len(self._connections) >= self.max_connections:
            return False
        self._connections.add(connection)
        if connection.accepted and connection.transport == "TCP":
            # A peer whose client port is also its listening port can be reached over it.
            host, port = connection.remote
            self._by_key.setdefault(("TCP", host.lower(), port, ""), connection)
        return True

    def _forget(self, connection: StreamConnection) -> None:
        if connection not in self._connections:
            return
        self._connections.discard(connection)
        for key in [key for key, known in self._by_key.items() if known is connection]:
            del self._by_key[key]
        if self._on_closed is not None:
            try:
                self._on_closed(connection)
            except Exception:
                _LOGGER.exception("connection-closed callback failed for %r", connection)

    def _deliver(self, data: bytes, connection: Connection, *, stream: bool) -> None:
        """Parse one datagram or frame and hand it up; answer or drop what does not parse."""
        try:
            message = parse_message(data, stream=stream, limits=self.limits)
        except SipParseError as error:
            self._reject(data, error, connection)
            return
        if isinstance(message, SipRequest):
            with contextlib.suppress(SipError):  # an odd Via that will not re-serialise: as is
                _stamp_top_via(message, connection.remote)
        try:
            self._on_message(message, connection)
        except Exception:
            # Never into the loop: a bug above us must not take the transport down.
            _LOGGER.exception("handling a message from %r failed", connection)

    def _reject(self, data: bytes, error: SipParseError, connection: Connection) -> None:
        reply = error_response(data, error, limits=self.limits)
        _LOGGER.info(
            "unparsable message from %s:%d (%s); %s",
            *connection.remote,
            error,
            f"answering {reply.status}" if reply else "dropped",
        )
        if reply is None:
            return
        try:
            if connection.reliable:
                connection.send(reply.to_bytes())
                return
            via = reply.top_via
            via.stamp_source(*connection.remote)
            if self._udp is not None:
                self._udp.sendto(reply.to_bytes(), via.response_address(DEFAULT_PORTS["UDP"]))
        except SipError as send_error:
            _LOGGER.info("error response not sent: %s", send_error)
