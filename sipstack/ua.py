"""A small SIP user-agent core: transports + transactions + request handlers (RFC 3261 §8).

Client side: :meth:`UserAgent.request` runs one non-INVITE client transaction and returns the
final response. With a :class:`~sipstack.digest.DigestClient` it answers a 401/407 challenge
with a new transaction (CSeq + 1), at most twice (a 407 then a 401, or a ``stale`` nonce); a
second challenge of the same kind means the credentials were refused and is returned. It never
raises for network trouble: a timeout is a synthetic 408, a transport failure or overload a
synthetic 503, both :class:`~sipstack.transaction.LocalResponse`. Missing Max-Forwards, CSeq,
Call-ID, To and From-tag are filled in on a copy; the top Via is always ours (transport, sent-by,
fresh branch, ``rport``). A UDP request over ``udp_size_limit`` bytes goes over TCP instead,
falling back to UDP if the connection fails (§18.1.1).

Server side: :meth:`UserAgent.on` registers an async handler per method. The handler gets an
:class:`IncomingRequest`; it returns a response or sends one itself (:meth:`IncomingRequest.send`,
e.g. a 200 to SUBSCRIBE before its first NOTIFY) and may go on working afterwards. Before any
handler: Max-Forwards 0 → 483 (not for OPTIONS), no handler → 405 with Allow (501 for a method no
RFC defines), a non-SIP Request-URI → 416, an unknown ``Require`` → 420 with Unsupported. OPTIONS
without a handler → 200 with Allow/Accept/Allow-Events/Supported. An INVITE is rejected
(``invite_status``, 405 with Allow by default) by an INVITE server transaction that retransmits
until the ACK; CANCEL gets 200 or 481. A handler that raises, returns nothing or has not answered
after ``handler_timeout`` seconds costs the peer a 500, never the loop. Past
``max_transactions`` live transactions new requests get 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from sipstack.digest import Challenge, DigestClient
from sipstack.errors import DigestError, SipError, SipParseError, SipValueError
from sipstack.fields import NameAddr, Via, new_branch, new_call_id, new_tag
from sipstack.headers import is_token
from sipstack.message import (
    DEFAULT_LIMITS,
    SipLimits,
    SipRequest,
    SipResponse,
    make_response,
)
from sipstack.transaction import (
    DEFAULT_TIMERS,
    ClientTransaction,
    InviteServerTransaction,
    LocalResponse,
    ServerTransaction,
    TimerConfig,
    TransactionState,
    TransactionTable,
    local_response,
)
from sipstack.transport import (
    Connection,
    Destination,
    SipTransportError,
    TransportLayer,
    TransportName,
)
from sipstack.uri import is_sip_uri

__all__ = ["STANDARD_METHODS", "Exchange", "Handler", "IncomingRequest", "UserAgent"]

_LOGGER = logging.getLogger(__name__)

#: Methods defined by SIP RFCs: without a handler they get 405 (others 501).
STANDARD_METHODS = frozenset(
    {
        "ACK", "BYE", "CANCEL", "INFO", "INVITE", "MESSAGE", "NOTIFY", "OPTIONS", "PRACK",
        "PUBLISH", "REFER", "REGISTER", "SUBSCRIBE", "UPDATE",
    }
)  # fmt: skip
_NO_HANDLER_METHODS = frozenset({"INVITE", "ACK", "CANCEL"})
_RETRY_AFTER = 5  # seconds, in 503s when the transaction table is full
# One request plus at most two answered challenges (a 407 then a 401, or a stale nonce).
_MAX_ATTEMPTS = 3


class IncomingRequest:
    """A request handed to a handler, and the way to answer it."""

    def __init__(
        self,
        ua: UserAgent,
        request: SipRequest,
        connection: Connection,
        transaction: ServerTransaction,
    ) -> None:
        self.ua = ua
        self.request = request
        self.connection = connection
        self._transaction = transaction

    @property
    def source(self) -> tuple[str, int]:
        """The address the request came from."""
        return self.connection.remote

    @property
    def transport(self) -> TransportName:
        return self.connection.transport

    @property
    def answered(self) -> bool:
        """True once a final response has been sent."""
        return self._transaction.final_sent

    def reply_destination(self) -> Destination:
        """Back to the sender, over the same flow while it is open (e.g. for a NOTIFY)."""
        return Destination.back_to(self.connection)

    def response(
        self,
        status: int,
        reason: str | None = None,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        to_tag: str | None = None,
        dialog: bool = False,
    ) -> SipResponse:
        """A response to the request (:func:`~sipstack.message.make_response` + ``Server``)."""
        return self.ua.make_response(
            self.request, status, reason, headers=headers, body=body, to_tag=to_tag, dialog=dialog
        )

    def send(self, response: SipResponse) -> None:
        """Send ``response`` now (provisional or final; a second final is a SipValueError)."""
        self._transaction.respond(response)

    def respond(
        self,
        status: int,
        reason: str | None = None,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        to_tag: str | None = None,
        dialog: bool = False,
    ) -> SipResponse:
        """Build and send a response; return it."""
        response = self.response(
            status, reason, headers=headers, body=body, to_tag=to_tag, dialog=dialog
        )
        self.send(response)
        return response


Handler = Callable[[IncomingRequest], Awaitable[SipResponse | None]]


@dataclass(frozen=True)
class Exchange:
    """The last request as sent (our Via, final CSeq and credentials) and its final response."""

    request: SipRequest
    response: SipResponse


class UserAgent:
    """A SIP element on ``host`` with UDP (and optionally TCP/TLS) transports.

    Ports: 0 binds an ephemeral one (read it with :meth:`port` after :meth:`start`), None
    leaves that listener out. TLS needs ``tls_server_context`` for a listener and
    ``tls_client_context`` (verifying) to send over TLS.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        *,
        udp_port: int | None = 0,
        tcp_port: int | None = None,
        tls_port: int | None = None,
        tls_server_context: ssl.SSLContext | None = None,
        tls_client_context: ssl.SSLContext | None = None,
        timers: TimerConfig = DEFAULT_TIMERS,
        limits: SipLimits = DEFAULT_LIMITS,
        max_transactions: int = 1024,
        max_connections: int = 256,
        idle_timeout: float = 120.0,
        connect_timeout: float = 5.0,
        handler_timeout: float = 10.0,
        udp_size_limit: int | None = 1300,
        user_agent: str | None = "sipstack",
        accept: Iterable[str] = ("text/plain",),
        allow_events: Iterable[str] = (),
        supported: Iterable[str] = (),
        invite_status: int = 405,
    ) -> None:
        if not 300 <= invite_status <= 699:
            raise SipValueError("invite_status must be a 3xx-6xx rejection")
        self.host = host
        self.timers = timers
        self.handler_timeout = handler_timeout
        self.udp_size_limit = udp_size_limit
        self.user_agent = user_agent
        self.accept = tuple(accept)
        self.allow_events = tuple(allow_events)
        self.supported = tuple(tag.lower() for tag in supported)
        self.invite_status = invite_status
        self.transports = TransportLayer(
            host,
            self._on_message,
            udp_port=udp_port,
            tcp_port=tcp_port,
            tls_port=tls_port,
            tls_server_context=tls_server_context,
            tls_client_context=tls_client_context,
            on_connection_closed=self._on_connection_closed,
            limits=limits,
            max_connections=max_connections,
            idle_timeout=idle_timeout,
            connect_timeout=connect_timeout,
        )
        self.table = TransactionTable(max_transactions)
        self._handlers: dict[str, Handler] = {}
        self._client_flows: dict[ClientTransaction, Connection] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.transports.start()

    async def aclose(self) -> None:
        """Stop: pending requests end with a synthetic 503, handlers are cancelled. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for transaction in self.table.transactions():
            if isinstance(transaction, ClientTransaction):
                transaction.transport_error("user agent closed")
            else:
                transaction.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.transports.aclose()

    async def __aenter__(self) -> UserAgent:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ identity

    def port(self, transport: str = "UDP") -> int:
        """Our bound port for ``transport`` (SipTransportError if there is no such listener)."""
        port = self.transports.port(transport)
        if port is None:
            raise SipTransportError(f"no {transport.upper()} listener")
        return port

    def contact_uri(self, user: str | None = None, transport: str = "UDP") -> str:
        """A URI that reaches this UA, e.g. ``sip:thing@127.0.0.1:5060;transport=tcp``."""
        name = transport.upper()
        host = f"[{self.host}]" if ":" in self.host else self.host
        userinfo = f"{user}@" if user else ""
        scheme = "sips" if name == "TLS" else "sip"
        suffix = ";transport=tcp" if name == "TCP" else ""
        return f"{scheme}:{userinfo}{host}:{self.port(name)}{suffix}"

    @property
    def allowed_methods(self) -> list[str]:
        return sorted({"OPTIONS", *self._handlers})

    # ------------------------------------------------------------------ server side

    def on(self, method: str, handler: Handler) -> None:
        """Handle requests of ``method`` (replacing any previous handler)."""
        name = method.upper()
        if not is_token(name):
            raise SipValueError(f"bad method {method!r}")
        if name in _NO_HANDLER_METHODS:
            raise SipValueError(f"{name} is handled by the stack itself")
        self._handlers[name] = handler

    def make_response(
        self,
        request: SipRequest,
        status: int,
        reason: str | None = None,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        to_tag: str | None = None,
        dialog: bool = False,
    ) -> SipResponse:
        extra = list(headers)
        if self.user_agent and not any(name.lower() == "server" for name, _ in extra):
            extra.append(("Server", self.user_agent))
        return make_response(
            request, status, reason, to_tag=to_tag, headers=extra, body=body, dialog=dialog
        )

    # ------------------------------------------------------------------ client side

    async def request(
        self,
        request: SipRequest,
        *,
        destination: Destination | None = None,
        auth: DigestClient | None = None,
    ) -> SipResponse:
        """Send a non-INVITE request and return its final response (see the module docstring).

        ``destination`` defaults to the first Route URI, else the Request-URI. The response's
        From/Call-ID/CSeq tell what was actually sent (the CSeq grows by one per challenge).
        """
        sent = await self.send_request(request, destination=destination, auth=auth)
        return sent.response

    async def send_request(
        self,
        request: SipRequest,
        *,
        destination: Destination | None = None,
        auth: DigestClient | None = None,
    ) -> Exchange:
        """:meth:`request`, also returning the last request as sent (with its Via)."""
        if request.method in ("INVITE", "ACK", "CANCEL"):
            raise SipValueError(f"this user agent does not send {request.method}")
        outgoing = self._complete(request)
        if destination is None:
            destination = self._destination_for(outgoing)
        challenges: dict[int, SipResponse] = {}  # the last challenge of each kind
        for attempt in range(_MAX_ATTEMPTS):
            sent, response = await self._run_transaction(outgoing, destination)
            if (
                auth is None
                or response.status not in (401, 407)
                or isinstance(response, LocalResponse)
                or attempt == _MAX_ATTEMPTS - 1
            ):
                break
            stale = any(challenge.stale for challenge in Challenge.from_response(response))
            if response.status in challenges and not stale:
                break  # our credentials were refused
            challenges[response.status] = response
            retry = self._answer_challenges(outgoing, challenges, auth)
            if retry is None:
                break
            outgoing = retry
        return Exchange(sent, response)

    # ------------------------------------------------------------------ internals: client

    @staticmethod
    def _answer_challenges(
        request: SipRequest, challenges: dict[int, SipResponse], auth: DigestClient
    ) -> SipRequest | None:
        """The next attempt: CSeq + 1 and fresh credentials (new ``nc``) for every challenge
        seen so far (a proxy checks its own again); None if one cannot be answered."""
        retry = SipRequest(request.method, request.uri, request.headers.copy(), request.body)
        retry.headers.set("CSeq", f"{request.cseq.number + 1} {request.method}")
        for challenge in challenges.values():
            try:
                answer = auth.answer(challenge, retry)
            except DigestError as error:
                _LOGGER.info("cannot answer the challenge to %s: %s", request.method, error)
                return None
            if answer is None:
                return None
            retry.headers.set(*answer)
        return retry

    def _complete(self, request: SipRequest) -> SipRequest:
        """A copy of ``request`` with the mandatory headers a UAC fills in (§8.1.1)."""
        outgoing = SipRequest(request.method, request.uri, request.headers.copy(), request.body)
        headers = outgoing.headers
        if "From" not in headers:
            raise SipValueError("a request needs a From header")
        sender = NameAddr.parse(outgoing.header_value("From"))
        if sender.tag is None:
            sender.tag = new_tag()
            headers.set("From", str(sender))
        if "To" not in headers:
            headers.set("To", f"<{outgoing.uri}>")
        if "Call-ID" not in headers:
            headers.set("Call-ID", new_call_id())
        if "CSeq" not in headers:
            headers.set("CSeq", f"1 {outgoing.method}")
        elif outgoing.cseq.method != outgoing.method:
            raise SipValueError("CSeq method differs from the request method")
        if "Max-Forwards" not in headers:
            headers.set("Max-Forwards", "70")
        if self.user_agent and "User-Agent" not in headers:
            headers.set("User-Agent", self.user_agent)
        headers.remove("Via")
        return outgoing

    def _destination_for(self, request: SipRequest) -> Destination:
        route = request.headers.get("Route")
        target = NameAddr.parse(route).uri if route is not None else request.uri
        try:
            return Destination.from_uri(target)
        except SipParseError as error:
            raise SipValueError(f"cannot send to {target!r}: {error.message}") from None

    async def _flow_for(self, destination: Destination, size: int) -> Connection:
        """The flow to use; an oversized UDP request tries TCP first (RFC 3261 §18.1.1)."""
        if (
            destination.transport == "UDP"
            and destination.flow is None
            and self.udp_size_limit is not None
            and size > self.udp_size_limit
        ):
            tcp = Destination(destination.host, destination.port, "TCP")
            try:
                return await self.transports.flow_to(tcp)
            except SipTransportError as error:
                _LOGGER.info("large request: TCP to %s failed (%s); using UDP", tcp.host, error)
        return await self.transports.flow_to(destination)

    def _stamp_via(self, request: SipRequest, flow: Connection) -> SipRequest:
        port = self.transports.port(flow.transport) or flow.local[1]
        via = Via(flow.transport, self.host, port, {"branch": new_branch(), "rport": None})
        stamped = SipRequest(request.method, request.uri, request.headers.copy(), request.body)
        stamped.headers.remove("Via")
        stamped.headers.prepend("Via", str(via))
        return stamped

    async def _run_transaction(
        self, request: SipRequest, destination: Destination
    ) -> tuple[SipRequest, SipResponse]:
        if self._closed or self._loop is None:
            return request, local_response(request, 503, "user agent not running")
        try:
            size = len(request.to_bytes()) + 80  # plus our Via
            flow = await self._flow_for(destination, size)
        except SipTransportError as error:
            return request, local_response(request, 503, str(error))
        sent = self._stamp_via(request, flow)
        if self.table.full:
            return sent, local_response(sent, 503, "too many transactions")
        final: asyncio.Future[SipResponse] = self._loop.create_future()

        def on_response(response: SipResponse) -> None:
            if response.status >= 200 and not final.done():
                final.set_result(response)

        transaction = ClientTransaction(
            sent,
            reliable=flow.reliable,
            send=flow.send,
            on_response=on_response,
            scheduler=self._loop,
            timers=self.timers,
            on_terminated=self._client_terminated,
        )
        self.table.add(transaction)
        self._client_flows[transaction] = flow
        transaction.start()
        try:
            return sent, await final
        finally:
            if not final.done() or final.cancelled():
                transaction.close()  # the caller gave up: stop retransmitting

    def _client_terminated(self, transaction: object) -> None:
        self.table.remove(transaction)
        if isinstance(transaction, ClientTransaction):
            self._client_flows.pop(transaction, None)

    def _on_connection_closed(self, connection: Connection) -> None:
        for transaction, flow in list(self._client_flows.items()):
            if flow is connection:
                transaction.transport_error(f"connection to {connection.remote} closed")

    # ------------------------------------------------------------------ internals: server

    def _on_message(self, message: SipRequest | SipResponse, connection: Connection) -> None:
        if self._closed:
            return
        if isinstance(message, SipResponse):
            self._on_response(message)
        else:
            self._on_request(message, connection)

    def _on_response(self, response: SipResponse) -> None:
        if len(response.vias) != 1:
            _LOGGER.info("response with %d Vias dropped (§8.1.3.3)", len(response.vias))
            return
        transaction = self.table.find_client(response)
        if transaction is None:
            _LOGGER.debug("stray %d response dropped", response.status)
            return
        transaction.receive(response)

    def _send_stateless(self, response: SipResponse, connection: Connection) -> None:
        try:
            self.transports.send_response(response, connection)
        except SipError as error:
            _LOGGER.info("response %d not sent: %s", response.status, error)

    def _on_request(self, request: SipRequest, connection: Connection) -> None:
        assert self._loop is not None
        existing = self.table.find_server(request)
        if request.method == "ACK":
            if isinstance(existing, InviteServerTransaction):
                existing.receive_ack(request)
            return  # an ACK to a 2xx we never sent, or a late one: nothing to do
        if existing is not None:
            existing.receive_request(request)
            return
        if self.table.full:
            _LOGGER.warning("%d transactions live; %s refused", len(self.table), request.method)
            overload = self.make_response(
                request, 503, headers=[("Retry-After", str(_RETRY_AFTER))]
            )
            self._send_stateless(overload, connection)
            return

        def send(response: SipResponse) -> None:
            self.transports.send_response(response, connection)

        if request.method == "INVITE":
            invite = InviteServerTransaction(
                request,
                reliable=connection.reliable,
                send=send,
                scheduler=self._loop,
                timers=self.timers,
                on_terminated=self.table.remove,
            )
            self.table.add(invite)
            invite.respond(self._check(request) or self._invite_rejection(request))
            return
        transaction = ServerTransaction(
            request,
            reliable=connection.reliable,
            send=send,
            scheduler=self._loop,
            timers=self.timers,
            on_terminated=self.table.remove,
        )
        self.table.add(transaction)
        if request.method == "CANCEL":
            transaction.respond(self._cancel(request))
            return
        refusal = self._check(request)
        if refusal is not None:
            transaction.respond(refusal)
            return
        handler = self._handlers.get(request.method)
        if handler is None:  # only OPTIONS gets here without a handler
            transaction.respond(self._options(request))
            return
        incoming = IncomingRequest(self, request, connection, transaction)
        task = self._loop.create_task(self._run_handler(handler, incoming))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _check(self, request: SipRequest) -> SipResponse | None:
        """The refusals due before any handler runs (RFC 3261 §8.2.1-§8.2.2), or None."""
        if request.max_forwards == 0 and request.method != "OPTIONS":
            return self.make_response(request, 483)
        allow = ("Allow", ", ".join(self.allowed_methods))
        if request.method not in self._handlers and request.method not in ("OPTIONS", "INVITE"):
            status = 405 if request.method in STANDARD_METHODS else 501
            return self.make_response(request, status, headers=[allow])
        if not is_sip_uri(request.uri):
            return self.make_response(request, 416)
        unsupported = [
            tag for tag in request.headers.get_all("Require") if tag.lower() not in self.supported
        ]
        if unsupported:
            return self.make_response(
                request, 420, headers=[("Unsupported", ", ".join(unsupported))]
            )
        return None

    def _invite_rejection(self, request: SipRequest) -> SipResponse:
        return self.make_response(
            request, self.invite_status, headers=[("Allow", ", ".join(self.allowed_methods))]
        )

    def _options(self, request: SipRequest) -> SipResponse:
        headers = [("Allow", ", ".join(self.allowed_methods))]
        if self.accept:
            headers.append(("Accept", ", ".join(self.accept)))
        if self.allow_events:
            headers.append(("Allow-Events", ", ".join(self.allow_events)))
        if self.supported:
            headers.append(("Supported", ", ".join(self.supported)))
        return self.make_response(request, 200, headers=headers)

    def _cancel(self, cancel: SipRequest) -> SipResponse:
        """§9.2: 200 if the INVITE transaction exists (487 to it if still unanswered), else 481."""
        target = self.table.find_server(cancel, method="INVITE")
        if not isinstance(target, InviteServerTransaction):
            return self.make_response(cancel, 481)
        if target.state is TransactionState.PROCEEDING:
            target.respond(self.make_response(target.request, 487))
        return self.make_response(cancel, 200)

    async def _run_handler(self, handler: Handler, incoming: IncomingRequest) -> None:
        assert self._loop is not None
        method = incoming.request.method

        def watchdog() -> None:
            if not incoming.answered:
                _LOGGER.warning("%s handler silent for %.1f s; 500", method, self.handler_timeout)
                self._answer(incoming, incoming.response(500, "Handler Timeout"))

        timer = self._loop.call_later(self.handler_timeout, watchdog)
        try:
            response = await handler(incoming)
        except asyncio.CancelledError:
            raise
        except Exception:
            _LOGGER.exception("%s handler failed", method)
            response = incoming.response(500)
        finally:
            timer.cancel()
        if incoming.answered:
            if response is not None:
                _LOGGER.debug("%s handler returned a response after answering", method)
            return
        if response is None:
            _LOGGER.warning("%s handler returned no response; 500", method)
            response = incoming.response(500)
        self._answer(incoming, response)

    @staticmethod
    def _answer(incoming: IncomingRequest, response: SipResponse) -> None:
        with contextlib.suppress(SipValueError):
            incoming.send(response)
