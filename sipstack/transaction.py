"""RFC 3261 §17 transactions: non-INVITE client and server, and a reject-only INVITE server.

The state machines are synchronous and I/O-free: they send through a callable they are given and
run their timers on a :class:`Scheduler` (an asyncio event loop is one; tests pass a fake clock).
Timer values come from :class:`TimerConfig` (T1/T2/T4; tests may shrink them).

* :class:`ClientTransaction` (non-INVITE, §17.1.2): retransmits on Timer E over UDP only
  (T1, doubling up to T2; T2 in Proceeding), gives up on Timer F (64·T1) with a synthetic 408,
  absorbs response retransmissions for Timer K (T4 on UDP, 0 on TCP/TLS). A transport error
  gives a synthetic 503 (§8.1.3.1). Synthetic responses are :class:`LocalResponse`.
* :class:`ServerTransaction` (non-INVITE, §17.2.2): absorbs retransmitted requests, answering
  them with the last provisional or final response; keeps the final for Timer J (64·T1 on UDP,
  0 on TCP/TLS).
* :class:`InviteServerTransaction` (§17.2.1), only for rejecting: a 3xx-6xx final is
  retransmitted on Timer G over UDP until the ACK arrives (or Timer H, 64·T1, gives up); the ACK
  and its retransmissions are absorbed for Timer I (T4 on UDP, 0 on TCP/TLS). A 2xx is refused.

:func:`client_key` and :func:`server_key` implement the matching rules of §17.1.3 and §17.2.3
(RFC 2543 fallback included); :class:`TransactionTable` holds live transactions, bounded.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sipstack.errors import SipError, SipParseError, SipValueError
from sipstack.message import SipRequest, SipResponse, make_response

__all__ = [
    "DEFAULT_TIMERS",
    "ClientKey",
    "ClientTransaction",
    "InviteServerTransaction",
    "LocalResponse",
    "Scheduler",
    "ServerKey",
    "ServerTransaction",
    "TimerConfig",
    "TimerHandle",
    "TransactionState",
    "TransactionTable",
    "client_key",
    "local_response",
    "server_key",
]

_LOGGER = logging.getLogger(__name__)


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Scheduler(Protocol):
    """What the transactions need of a clock; :class:`asyncio.AbstractEventLoop` fits."""

    def call_later(self, delay: float, callback: Callable[[], object], /) -> TimerHandle: ...


@dataclass(frozen=True)
class TimerConfig:
    """RFC 3261 timer base values in seconds (§17.1.1.1): RTT estimate, retransmit cap,
    maximum message lifetime."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    def __post_init__(self) -> None:
        if not (0 < self.t1 <= self.t2) or self.t4 <= 0:
            raise SipValueError(f"bad timer values {self}")

    @property
    def timeout(self) -> float:
        """64·T1: Timers B, F, H and J."""
        return 64 * self.t1


DEFAULT_TIMERS = TimerConfig()


class TransactionState(enum.Enum):
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


@dataclass(eq=True)
class LocalResponse(SipResponse):
    """A response made up by this stack, not received: 408 on Timer F, 503 on a transport error
    or overload. ``cause`` says what happened."""

    cause: str = ""


def local_response(request: SipRequest, status: int, cause: str) -> LocalResponse:
    """A synthetic response to ``request`` (no To-tag: no peer ever answered)."""
    made = make_response(request, status)
    made.headers.set("To", request.header_value("To"))
    return LocalResponse(made.status, made.reason, made.headers, b"", cause=cause)


ClientKey = tuple[str, str]
ServerKey = tuple[object, ...]


def client_key(message: SipRequest | SipResponse) -> ClientKey | None:
    """§17.1.3: top-Via branch + CSeq method; None if there is no branch to match on."""
    try:
        branch = message.top_via.branch
        method = message.cseq.method
    except SipParseError:
        return None
    return None if not branch else (branch, method)


def server_key(request: SipRequest, *, method: str | None = None) -> ServerKey:
    """§17.2.3: branch + sent-by + method (an ACK matches its INVITE; ``method`` overrides,
    e.g. ``"INVITE"`` to find the transaction a CANCEL targets).

    Without the RFC 3261 magic cookie the RFC 2543 rule is approximated: Request-URI, From tag,
    Call-ID, CSeq number and the whole top Via sent-by/branch.
    """
    via = request.top_via
    wanted = method or ("INVITE" if request.method == "ACK" else request.method)
    if via.rfc3261_branch:
        return ("3261", via.branch, via.host.lower(), via.port, wanted)
    return (
        "2543",
        request.uri,
        request.from_addr.tag,
        request.call_id,
        request.cseq.number,
        via.sent_by.lower(),
        via.branch or "",
        wanted,
    )


class _Transaction:
    """Timer bookkeeping shared by the state machines."""

    state: TransactionState

    def __init__(
        self,
        *,
        reliable: bool,
        scheduler: Scheduler,
        timers: TimerConfig,
        on_terminated: Callable[[_Transaction], None] | None,
    ) -> None:
        self.reliable = reliable
        self.timers = timers
        self._scheduler = scheduler
        self._on_terminated = on_terminated
        self._handles: dict[str, TimerHandle] = {}

    @property
    def terminated(self) -> bool:
        return self.state is TransactionState.TERMINATED

    def _start_timer(self, name: str, delay: float, callback: Callable[[], None]) -> None:
        self._cancel_timer(name)

        def fire() -> None:
            self._handles.pop(name, None)
            callback()

        self._handles[name] = self._scheduler.call_later(delay, fire)

    def _cancel_timer(self, name: str) -> None:
        handle = self._handles.pop(name, None)
        if handle is not None:
            handle.cancel()

    @property
    def running_timers(self) -> frozenset[str]:
        """Names of the timers now armed (``"E"``, ``"F"``...), for tests and diagnostics."""
        return frozenset(self._handles)

    def _terminate(self) -> None:
        if self.state is TransactionState.TERMINATED:
            return
        self.state = TransactionState.TERMINATED
        for name in list(self._handles):
            self._cancel_timer(name)
        if self._on_terminated is not None:
            self._on_terminated(self)

    def close(self) -> None:
        """Stop now: timers cancelled, nothing more sent or reported."""
        self._terminate()


class ClientTransaction(_Transaction):
    """Non-INVITE client transaction (RFC 3261 §17.1.2, Figure 6).

    ``send(bytes)`` hands the request to the transport (it may raise :class:`SipError` or
    :class:`OSError`: a transport error); ``on_response`` gets every provisional and final
    response, exactly one final (maybe a :class:`LocalResponse`). Call :meth:`start` once.
    """

    def __init__(
        self,
        request: SipRequest,
        *,
        reliable: bool,
        send: Callable[[bytes], None],
        on_response: Callable[[SipResponse], None],
        scheduler: Scheduler,
        timers: TimerConfig = DEFAULT_TIMERS,
        on_terminated: Callable[[_Transaction], None] | None = None,
    ) -> None:
        if request.method in ("INVITE", "ACK"):
            raise SipValueError(f"{request.method} needs an INVITE client transaction")
        key = client_key(request)
        if key is None:
            raise SipValueError("the request needs a top Via with a branch")
        super().__init__(
            reliable=reliable, scheduler=scheduler, timers=timers, on_terminated=on_terminated
        )
        self.request = request
        self.key: ClientKey = key
        self.state = TransactionState.TRYING
        self.transmissions = 0
        self._data = request.to_bytes()
        self._send = send
        self._on_response = on_response
        self._interval = timers.t1
        self._started = False

    def start(self) -> None:
        """Send the request and arm Timer F (and Timer E on UDP)."""
        if self._started:
            raise SipValueError("transaction already started")
        self._started = True
        if not self._transmit():
            return
        if not self.reliable:
            self._start_timer("E", self._interval, self._on_timer_e)
        self._start_timer("F", self.timers.timeout, self._on_timer_f)

    def receive(self, response: SipResponse) -> None:
        """A response matched to this transaction by :func:`client_key`."""
        if self.state not in (TransactionState.TRYING, TransactionState.PROCEEDING):
            return  # Completed: a retransmitted final, absorbed
        if response.status < 200:
            self.state = TransactionState.PROCEEDING
            self._on_response(response)
            return
        self._cancel_timer("E")
        self._cancel_timer("F")
        self.state = TransactionState.COMPLETED
        if self.reliable:
            self._terminate()
        else:
            self._start_timer("K", self.timers.t4, self._terminate)
        self._on_response(response)

    def transport_error(self, cause: str) -> None:
        """The transport failed (connection lost, send error): a synthetic 503 if still open."""
        if self.state in (TransactionState.TRYING, TransactionState.PROCEEDING):
            self._terminate()
            self._on_response(local_response(self.request, 503, cause))

    def _transmit(self) -> bool:
        try:
            self._send(self._data)
        except (SipError, OSError) as error:
            self.transport_error(f"transport error: {error}")
            return False
        self.transmissions += 1
        return True

    def _on_timer_e(self) -> None:
        if self.state not in (TransactionState.TRYING, TransactionState.PROCEEDING):
            return
        if not self._transmit():
            return
        if self.state is TransactionState.TRYING:
            self._interval = min(2 * self._interval, self.timers.t2)
        else:
            self._interval = self.timers.t2
        self._start_timer("E", self._interval, self._on_timer_e)

    def _on_timer_f(self) -> None:
        if self.state in (TransactionState.TRYING, TransactionState.PROCEEDING):
            self._terminate()
            self._on_response(local_response(self.request, 408, "no response (Timer F)"))


class ServerTransaction(_Transaction):
    """Non-INVITE server transaction (RFC 3261 §17.2.2, Figure 8).

    ``send(response)`` hands a response to the transport (routing is the caller's business).
    The TU answers with :meth:`respond`; retransmitted requests go to :meth:`receive_request`.
    """

    def __init__(
        self,
        request: SipRequest,
        *,
        reliable: bool,
        send: Callable[[SipResponse], None],
        scheduler: Scheduler,
        timers: TimerConfig = DEFAULT_TIMERS,
        on_terminated: Callable[[_Transaction], None] | None = None,
    ) -> None:
        if request.method in ("INVITE", "ACK"):
            raise SipValueError(f"{request.method} is not a non-INVITE request")
        super().__init__(
            reliable=reliable, scheduler=scheduler, timers=timers, on_terminated=on_terminated
        )
        self.request = request
        self.key: ServerKey = server_key(request)
        self.state = TransactionState.TRYING
        self.last_response: SipResponse | None = None
        self._send = send

    @property
    def final_sent(self) -> bool:
        return self.state in (TransactionState.COMPLETED, TransactionState.TERMINATED)

    def respond(self, response: SipResponse) -> None:
        """Send a provisional or final response; a second final is a :class:`SipValueError`."""
        if self.final_sent:
            raise SipValueError("a final response was already sent")
        self.last_response = response
        if response.status < 200:
            self.state = TransactionState.PROCEEDING
            self._transmit(response)
            return
        self.state = TransactionState.COMPLETED
        if not self._transmit(response):
            return
        if self.reliable:
            self._terminate()
        else:
            self._start_timer("J", self.timers.timeout, self._terminate)

    def receive_request(self, request: SipRequest) -> None:
        """A retransmission of the request: resend the last response, if any."""
        if self.state is TransactionState.TERMINATED or self.last_response is None:
            return  # Trying: absorbed until the TU answers
        self._transmit(self.last_response)

    def transport_error(self, cause: str) -> None:
        _LOGGER.info("server transaction %s: %s", self.request.method, cause)
        self._terminate()

    def _transmit(self, response: SipResponse) -> bool:
        try:
            self._send(response)
        except (SipError, OSError) as error:
            self.transport_error(f"transport error: {error}")
            return False
        return True


class InviteServerTransaction(_Transaction):
    """INVITE server transaction that can only reject (RFC 3261 §17.2.1, Figure 7).

    :meth:`respond` takes provisional and 300-699 responses; the final is retransmitted on
    Timer G over UDP until the ACK (:meth:`receive_ack`) or Timer H. ``ack_received`` tells the
    two endings apart.
    """

    def __init__(
        self,
        request: SipRequest,
        *,
        reliable: bool,
        send: Callable[[SipResponse], None],
        scheduler: Scheduler,
        timers: TimerConfig = DEFAULT_TIMERS,
        on_terminated: Callable[[_Transaction], None] | None = None,
    ) -> None:
        if request.method != "INVITE":
            raise SipValueError(f"{request.method} is not an INVITE")
        super().__init__(
            reliable=reliable, scheduler=scheduler, timers=timers, on_terminated=on_terminated
        )
        self.request = request
        self.key: ServerKey = server_key(request)
        self.state = TransactionState.PROCEEDING
        self.last_response: SipResponse | None = None
        self.ack_received = False
        self.transmissions = 0
        self._send = send
        self._interval = timers.t1

    @property
    def final_sent(self) -> bool:
        return self.state is not TransactionState.PROCEEDING

    def respond(self, response: SipResponse) -> None:
        if 200 <= response.status < 300:
            raise SipValueError("this INVITE server transaction only rejects (no 2xx)")
        if self.final_sent:
            raise SipValueError("a final response was already sent")
        self.last_response = response
        if response.status < 200:
            self._transmit(response)
            return
        self.state = TransactionState.COMPLETED
        if not self._transmit(response):
            return
        if not self.reliable:
            self._start_timer("G", self._interval, self._on_timer_g)
        self._start_timer("H", self.timers.timeout, self._on_timer_h)

    def receive_request(self, request: SipRequest) -> None:
        """A retransmitted INVITE: resend the last response (absorbed once Confirmed)."""
        answering = (TransactionState.PROCEEDING, TransactionState.COMPLETED)
        if self.state in answering and self.last_response is not None:
            self._transmit(self.last_response)

    def receive_ack(self, ack: SipRequest) -> None:
        if self.state is not TransactionState.COMPLETED:
            return  # Confirmed: a retransmitted ACK, absorbed
        self.ack_received = True
        self.state = TransactionState.CONFIRMED
        self._cancel_timer("G")
        self._cancel_timer("H")
        if self.reliable:
            self._terminate()
        else:
            self._start_timer("I", self.timers.t4, self._terminate)

    def transport_error(self, cause: str) -> None:
        _LOGGER.info("INVITE server transaction: %s", cause)
        self._terminate()

    def _transmit(self, response: SipResponse) -> bool:
        try:
            self._send(response)
        except (SipError, OSError) as error:
            self.transport_error(f"transport error: {error}")
            return False
        self.transmissions += 1
        return True

    def _on_timer_g(self) -> None:
        if self.state is not TransactionState.COMPLETED or self.last_response is None:
            return
        if not self._transmit(self.last_response):
            return
        self._interval = min(2 * self._interval, self.timers.t2)
        self._start_timer("G", self._interval, self._on_timer_g)

    def _on_timer_h(self) -> None:
        if self.state is TransactionState.COMPLETED:
            _LOGGER.info("no ACK for the %d to an INVITE (Timer H)", self.request.cseq.number)
            self._terminate()


ServerSide = ServerTransaction | InviteServerTransaction
AnyTransaction = ClientTransaction | ServerTransaction | InviteServerTransaction


class TransactionTable:
    """Live transactions by key, at most ``max_transactions`` in all.

    A transaction that has its final response (Completed/Confirmed, only lingering to absorb
    retransmissions) is evicted, oldest first, to make room for a new one; the table is
    :attr:`full` only when every slot holds one still waiting for its final response.
    Pass :meth:`remove` as ``on_terminated`` so that ended transactions leave the table.
    """

    _LINGERING = (TransactionState.COMPLETED, TransactionState.CONFIRMED)

    def __init__(self, max_transactions: int = 1024) -> None:
        if max_transactions < 1:
            raise SipValueError("max_transactions must be at least 1")
        self.max_transactions = max_transactions
        self._client: dict[ClientKey, ClientTransaction] = {}
        self._server: dict[ServerKey, ServerSide] = {}

    def __len__(self) -> int:
        return len(self._client) + len(self._server)

    @property
    def full(self) -> bool:
        """True if no new transaction fits, even after evicting lingering ones."""
        return len(self) >= self.max_transactions and self._oldest_lingering() is None

    def add(self, transaction: AnyTransaction) -> None:
        """Register a new transaction; :class:`SipValueError` when full or the key is taken."""
        if isinstance(transaction, ClientTransaction):
            if transaction.key in self._client:
                raise SipValueError(f"client transaction {transaction.key} exists")
        elif transaction.key in self._server:
            raise SipValueError(f"server transaction {transaction.key} exists")
        while len(self) >= self.max_transactions:
            oldest = self._oldest_lingering()
            if oldest is None:
                raise SipValueError(f"{self.max_transactions} transactions live; not adding more")
            oldest.close()
            self.remove(oldest)  # in case it was made without on_terminated
        if isinstance(transaction, ClientTransaction):
            self._client[transaction.key] = transaction
        else:
            self._server[transaction.key] = transaction

    def _oldest_lingering(self) -> AnyTransaction | None:
        # Dicts keep insertion order, so the first lingering one found is the oldest of its kind.
        for table in (self._server, self._client):
            for transaction in table.values():
                if transaction.state in self._LINGERING:
                    return transaction
        return None

    def remove(self, transaction: object) -> None:
        if isinstance(transaction, ClientTransaction):
            if self._client.get(transaction.key) is transaction:
                del self._client[transaction.key]
        elif (
            isinstance(transaction, ServerTransaction | InviteServerTransaction)
            and self._server.get(transaction.key) is transaction
        ):
            del self._server[transaction.key]

    def find_client(self, response: SipResponse) -> ClientTransaction | None:
        key = client_key(response)
        return None if key is None else self._client.get(key)

    def find_server(self, request: SipRequest, *, method: str | None = None) -> ServerSide | None:
        try:
            key = server_key(request, method=method)
        except SipParseError:
            return None
        return self._server.get(key)

    def transactions(self) -> list[AnyTransaction]:
        return [*self._client.values(), *self._server.values()]
