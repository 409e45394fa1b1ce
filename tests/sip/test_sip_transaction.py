"""RFC 3261 §17 state machines (sipstack.transaction), driven by a fake clock.

Retransmission schedules (Timer E doubling to T2, Timer G), timeouts (F → synthetic 408, H),
lingering (K, J, I), absorption of retransmitted requests/responses/ACKs, transport errors,
transaction matching (§17.1.3, §17.2.3, RFC 2543 fallback) and the bounded table.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipstack.errors import SipError, SipValueError
from sipstack.message import SipRequest, SipResponse, make_response, parse_message
from sipstack.transaction import (
    ClientTransaction,
    InviteServerTransaction,
    LocalResponse,
    ServerTransaction,
    TimerConfig,
    TransactionState,
    TransactionTable,
    client_key,
    server_key,
)

T1, T2, T4 = 0.5, 4.0, 5.0
TIMERS = TimerConfig(T1, T2, T4)


class FakeHandle:
    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """A scheduler whose time moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0
        self._queue: list[tuple[float, int, FakeHandle]] = []
        self._order = itertools.count()

    def call_later(self, delay: float, callback: Callable[[], object], /) -> FakeHandle:
        handle = FakeHandle(self.now + delay, callback)
        heapq.heappush(self._queue, (handle.when, next(self._order), handle))
        return handle

    def advance(self, seconds: float) -> None:
        target = self.now + seconds
        while self._queue and self._queue[0][0] <= target + 1e-9:
            when, _, handle = heapq.heappop(self._queue)
            if handle.cancelled:
                continue
            self.now = when
            handle.callback()
        self.now = target

    @property
    def pending(self) -> int:
        return sum(1 for _, _, handle in self._queue if not handle.cancelled)


def request(
    method: str = "MESSAGE",
    *,
    branch: str = "z9hG4bKabc123",
    sent_by: str = "192.0.2.1:5060",
    cseq: int = 1,
    to_tag: str | None = None,
) -> SipRequest:
    to = "<sip:thing@example.test>" + (f";tag={to_tag}" if to_tag else "")
    text = (
        f"{method} sip:thing@example.test SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {sent_by};branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:alice@example.test>;tag=a1\r\n"
        f"To: {to}\r\n"
        "Call-ID: call-1@example.test\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    parsed = parse_message(text.encode())
    assert isinstance(parsed, SipRequest)
    return parsed


class ClientRig:
    """A client transaction with its sends and responses recorded against the fake clock."""

    def __init__(self, *, reliable: bool = False, timers: TimerConfig = TIMERS) -> None:
        self.clock = FakeClock()
        self.sent_at: list[float] = []
        self.responses: list[SipResponse] = []
        self.terminated: list[object] = []
        self.fail_sends = False
        self.request = request()
        self.transaction = ClientTransaction(
            self.request,
            reliable=reliable,
            send=self._send,
            on_response=self.responses.append,
            scheduler=self.clock,
            timers=timers,
            on_terminated=self.terminated.append,
        )

    def _send(self, data: bytes) -> None:
        if self.fail_sends:
            raise OSError("network is unreachable")
        assert data == self.request.to_bytes()  # retransmissions are byte-identical
        self.sent_at.append(self.clock.now)

    def response(self, status: int) -> SipResponse:
        return make_response(self.request, status)

    @property
    def finals(self) -> list[SipResponse]:
        return [response for response in self.responses if response.status >= 200]


# ------------------------------------------------------------------ timers


def test_timer_config_defaults_and_validation() -> None:
    assert (TimerConfig().t1, TimerConfig().t2, TimerConfig().t4) == (0.5, 4.0, 5.0)
    assert TimerConfig().timeout == 32.0
    assert TimerConfig(t1=0.01, t2=0.08, t4=0.1).timeout == pytest.approx(0.64)
    for bad in ({"t1": 0}, {"t1": 2, "t2": 1}, {"t4": 0}):
        with pytest.raises(SipValueError):
            TimerConfig(**bad)


# ------------------------------------------------------------------ non-INVITE client


def test_client_udp_retransmits_doubling_to_t2_then_times_out_with_408() -> None:
    rig = ClientRig()
    rig.transaction.start()
    assert rig.transaction.running_timers == {"E", "F"}
    rig.clock.advance(31.9)
    # T1, then 2T1, 4T1, then capped at T2: 0, .5, 1.5, 3.5, 7.5, 11.5, ... 31.5
    assert rig.sent_at == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert rig.responses == []
    rig.clock.advance(0.1)  # Timer F at 64*T1 = 32 s
    assert len(rig.responses) == 1
    timeout = rig.responses[0]
    assert isinstance(timeout, LocalResponse)
    assert timeout.status == 408
    assert "Timer F" in timeout.cause
    assert timeout.to_addr.tag is None  # nobody answered, so nobody tagged
    assert timeout.call_id == rig.request.call_id
    assert rig.transaction.state is TransactionState.TERMINATED
    assert rig.terminated == [rig.transaction]
    rig.clock.advance(100)
    assert len(rig.sent_at) == 11  # nothing after the end
    assert rig.clock.pending == 0


def test_client_shrunk_timers_follow_the_same_schedule() -> None:
    rig = ClientRig(timers=TimerConfig(t1=0.01, t2=0.04, t4=0.05))
    rig.transaction.start()
    rig.clock.advance(1)
    expected = [0, 0.01, 0.03, 0.07, *(0.11 + 0.04 * step for step in range(14))]
    assert rig.sent_at == pytest.approx(expected)
    assert [r.status for r in rig.responses] == [408]


def test_client_over_tcp_never_retransmits() -> None:
    rig = ClientRig(reliable=True)
    rig.transaction.start()
    assert rig.transaction.running_timers == {"F"}
    rig.clock.advance(32)
    assert rig.sent_at == [0.0]
    assert [r.status for r in rig.responses] == [408]


def test_client_provisional_moves_to_proceeding_and_retransmits_every_t2() -> None:
    rig = ClientRig()
    rig.transaction.start()
    rig.clock.advance(0.7)
    rig.transaction.receive(rig.response(100))
    assert rig.transaction.state is TransactionState.PROCEEDING
    assert [r.status for r in rig.responses] == [100]
    rig.clock.advance(12)
    # E was armed for 1.5 in Trying; from then on it is T2
    assert rig.sent_at == [0.0, 0.5, 1.5, 5.5, 9.5]
    rig.transaction.receive(rig.response(200))
    assert [r.status for r in rig.responses] == [100, 200]


def test_client_final_completes_absorbs_retransmissions_and_lingers_for_k() -> None:
    rig = ClientRig()
    rig.transaction.start()
    final = rig.response(202)
    rig.transaction.receive(final)
    assert rig.transaction.state is TransactionState.COMPLETED
    assert rig.transaction.running_timers == {"K"}
    rig.transaction.receive(final)  # a retransmitted final
    rig.transaction.receive(rig.response(180))  # a late provisional
    assert rig.responses == [final]
    rig.clock.advance(T4 - 0.01)
    assert rig.transaction.state is TransactionState.COMPLETED
    rig.clock.advance(0.01)
    assert rig.transaction.state is TransactionState.TERMINATED
    assert rig.sent_at == [0.0]
    assert rig.terminated == [rig.transaction]


def test_client_final_over_tcp_terminates_at_once() -> None:
    rig = ClientRig(reliable=True)
    rig.transaction.start()
    rig.transaction.receive(rig.response(486))
    assert rig.transaction.state is TransactionState.TERMINATED
    assert [r.status for r in rig.finals] == [486]
    assert rig.clock.pending == 0


def test_client_transport_error_is_a_synthetic_503() -> None:
    rig = ClientRig()
    rig.fail_sends = True
    rig.transaction.start()
    assert rig.transaction.state is TransactionState.TERMINATED
    assert len(rig.responses) == 1
    failure = rig.responses[0]
    assert isinstance(failure, LocalResponse)
    assert failure.status == 503
    assert "unreachable" in failure.cause
    assert rig.clock.pending == 0


def test_client_send_error_on_retransmission_and_later_transport_error() -> None:
    rig = ClientRig()
    rig.transaction.start()
    rig.fail_sends = True
    rig.clock.advance(0.5)
    assert [r.status for r in rig.responses] == [503]
    rig.transaction.transport_error("again")  # already over: ignored
    assert len(rig.responses) == 1


def test_client_close_stops_everything_silently() -> None:
    rig = ClientRig()
    rig.transaction.start()
    rig.transaction.close()
    rig.clock.advance(40)
    assert rig.sent_at == [0.0]
    assert rig.responses == []
    assert rig.terminated == [rig.transaction]


def test_client_start_twice_and_invite_refused() -> None:
    rig = ClientRig()
    rig.transaction.start()
    with pytest.raises(SipValueError):
        rig.transaction.start()
    with pytest.raises(SipValueError):
        ClientTransaction(
            request("INVITE"),
            reliable=False,
            send=lambda data: None,
            on_response=lambda response: None,
            scheduler=FakeClock(),
        )


EVENTS = st.lists(
    st.one_of(
        st.tuples(st.just("wait"), st.floats(min_value=0, max_value=10)),
        st.tuples(st.just("respond"), st.sampled_from([100, 180, 200, 202, 404, 503])),
        st.tuples(st.just("error"), st.just(0)),
    ),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(events=EVENTS, reliable=st.booleans())
def test_client_always_reports_exactly_one_final(
    events: list[tuple[str, float]], reliable: bool
) -> None:
    rig = ClientRig(reliable=reliable)
    rig.transaction.start()
    final_at: float | None = None
    for kind, value in events:
        if kind == "wait":
            rig.clock.advance(value)
        elif kind == "respond":
            rig.transaction.receive(rig.response(int(value)))
        else:
            rig.transaction.transport_error("lost")
        if rig.finals and final_at is None:
            final_at = rig.clock.now
    rig.clock.advance(64 * T1 + T4)
    assert len(rig.finals) == 1
    assert rig.transaction.state is TransactionState.TERMINATED
    assert rig.clock.pending == 0
    if final_at is not None:
        assert all(when <= final_at for when in rig.sent_at)  # no retransmission after it
    if reliable:
        assert len(rig.sent_at) == 1


# ------------------------------------------------------------------ non-INVITE server


class ServerRig:
    def __init__(self, *, reliable: bool = False, method: str = "MESSAGE") -> None:
        self.clock = FakeClock()
        self.sent: list[tuple[float, SipResponse]] = []
        self.terminated: list[object] = []
        self.request = request(method)
        self.fail_sends = False
        kind = InviteServerTransaction if method == "INVITE" else ServerTransaction
        self.transaction = kind(
            self.request,
            reliable=reliable,
            send=self._send,
            scheduler=self.clock,
            timers=TIMERS,
            on_terminated=self.terminated.append,
        )

    def _send(self, response: SipResponse) -> None:
        if self.fail_sends:
            raise SipError("connection lost")
        self.sent.append((self.clock.now, response))

    @property
    def statuses(self) -> list[int]:
        return [response.status for _, response in self.sent]


def test_server_absorbs_retransmissions_and_resends_last_response() -> None:
    rig = ServerRig()
    transaction = rig.transaction
    assert isinstance(transaction, ServerTransaction)
    transaction.receive_request(rig.request)  # Trying: absorbed, the TU is still working
    assert rig.sent == []
    transaction.respond(make_response(rig.request, 100))
    assert transaction.state is TransactionState.PROCEEDING
    transaction.receive_request(rig.request)
    assert rig.statuses == [100, 100]
    final = make_response(rig.request, 200)
    transaction.respond(final)
    assert transaction.state is TransactionState.COMPLETED
    assert transaction.final_sent
    for _ in range(3):
        transaction.receive_request(rig.request)
    assert rig.statuses == [100, 100, 200, 200, 200, 200]
    assert all(response is final for _, response in rig.sent[2:])  # the very same response
    with pytest.raises(SipValueError):
        transaction.respond(make_response(rig.request, 500))


def test_server_timer_j_is_64_t1_on_udp() -> None:
    rig = ServerRig()
    rig.transaction.respond(make_response(rig.request, 200))
    rig.clock.advance(64 * T1 - 0.01)
    rig.transaction.receive_request(rig.request)
    assert rig.statuses == [200, 200]
    rig.clock.advance(0.01)
    assert rig.transaction.state is TransactionState.TERMINATED
    assert rig.terminated == [rig.transaction]
    rig.transaction.receive_request(rig.request)
    assert rig.statuses == [200, 200]


def test_server_timer_j_is_zero_on_tcp() -> None:
    rig = ServerRig(reliable=True)
    rig.transaction.respond(make_response(rig.request, 404))
    assert rig.transaction.state is TransactionState.TERMINATED
    assert rig.clock.pending == 0


def test_server_send_failure_terminates() -> None:
    rig = ServerRig(reliable=True)
    rig.fail_sends = True
    rig.transaction.respond(make_response(rig.request, 200))
    assert rig.transaction.state is TransactionState.TERMINATED


# ------------------------------------------------------------------ INVITE server (reject only)


def test_invite_rejection_retransmits_on_g_until_ack_then_lingers_for_i() -> None:
    rig = ServerRig(method="INVITE")
    transaction = rig.transaction
    assert isinstance(transaction, InviteServerTransaction)
    assert transaction.state is TransactionState.PROCEEDING
    transaction.respond(make_response(rig.request, 405, headers=[("Allow", "OPTIONS")]))
    assert transaction.state is TransactionState.COMPLETED
    rig.clock.advance(10)
    assert [when for when, _ in rig.sent] == [0.0, 0.5, 1.5, 3.5, 7.5]
    transaction.receive_request(rig.request)  # a retransmitted INVITE gets the final again
    assert len(rig.sent) == 6
    ack = request("ACK", to_tag=rig.sent[0][1].to_addr.tag)
    assert server_key(ack) == transaction.key
    transaction.receive_ack(ack)
    assert transaction.state is TransactionState.CONFIRMED
    assert transaction.ack_received
    assert transaction.running_timers == {"I"}
    transaction.receive_ack(ack)  # absorbed
    transaction.receive_request(rig.request)  # absorbed once Confirmed
    rig.clock.advance(T4)
    assert transaction.state is TransactionState.TERMINATED
    assert len(rig.sent) == 6
    assert rig.clock.pending == 0


def test_invite_rejection_gives_up_on_timer_h() -> None:
    rig = ServerRig(method="INVITE")
    rig.transaction.respond(make_response(rig.request, 486))
    rig.clock.advance(64 * T1)
    transaction = rig.transaction
    assert isinstance(transaction, InviteServerTransaction)
    assert transaction.state is TransactionState.TERMINATED
    assert not transaction.ack_received
    # G: .5, 1.5, 3.5, 7.5, then every T2 up to H at 32 s
    assert [when for when, _ in rig.sent] == [0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5,
                                              27.5, 31.5]  # fmt: skip


def test_invite_rejection_over_tcp_has_no_g_and_ends_on_ack() -> None:
    rig = ServerRig(method="INVITE", reliable=True)
    rig.transaction.respond(make_response(rig.request, 603))
    assert rig.transaction.running_timers == {"H"}
    rig.clock.advance(10)
    assert rig.statuses == [603]
    assert isinstance(rig.transaction, InviteServerTransaction)
    rig.transaction.receive_ack(request("ACK"))
    assert rig.transaction.state is TransactionState.TERMINATED


def test_invite_transaction_refuses_2xx_and_second_final_keeps_provisional() -> None:
    rig = ServerRig(method="INVITE")
    with pytest.raises(SipValueError, match="only rejects"):
        rig.transaction.respond(make_response(rig.request, 200))
    rig.transaction.respond(make_response(rig.request, 180))
    rig.transaction.receive_request(rig.request)
    assert rig.statuses == [180, 180]
    rig.transaction.respond(make_response(rig.request, 480))
    with pytest.raises(SipValueError):
        rig.transaction.respond(make_response(rig.request, 486))


# ------------------------------------------------------------------ matching


def test_client_key_is_branch_and_cseq_method() -> None:
    sent = request()
    assert client_key(sent) == ("z9hG4bKabc123", "MESSAGE")
    assert client_key(make_response(sent, 200)) == client_key(sent)
    other = make_response(request(branch="z9hG4bKother"), 200)
    assert client_key(other) != client_key(sent)


def test_server_key_rfc3261() -> None:
    base = server_key(request())
    assert server_key(request(cseq=2)) == base  # retransmission rules ignore CSeq
    assert server_key(request(branch="z9hG4bKzzz")) != base
    assert server_key(request(sent_by="192.0.2.9:5060")) != base
    assert server_key(request(sent_by="192.0.2.1")) != base  # sent-by includes the port
    assert server_key(request("NOTIFY")) != base  # same branch, other method
    invite = request("INVITE")
    assert server_key(request("ACK")) == server_key(invite)
    assert server_key(request("CANCEL"), method="INVITE") == server_key(invite)
    assert server_key(request("CANCEL")) != server_key(invite)


def test_server_key_rfc2543_fallback() -> None:
    old = request(branch="1")
    assert server_key(old)[0] == "2543"
    assert server_key(request(branch="1")) == server_key(old)
    assert server_key(request(branch="1", cseq=2)) != server_key(old)
    assert server_key(request("ACK", branch="1", to_tag="x")) == server_key(
        request("INVITE", branch="1")
    )


# ------------------------------------------------------------------ table


def _server(branch: str, clock: FakeClock, table: TransactionTable) -> ServerTransaction:
    transaction = ServerTransaction(
        request(branch=f"z9hG4bK{branch}"),
        reliable=False,
        send=lambda response: None,
        scheduler=clock,
        on_terminated=table.remove,
    )
    return transaction


def test_table_finds_and_forgets() -> None:
    clock = FakeClock()
    table = TransactionTable(8)
    server = _server("a", clock, table)
    table.add(server)
    assert table.find_server(request(branch="z9hG4bKa")) is server
    assert table.find_server(request(branch="z9hG4bKb")) is None
    with pytest.raises(SipValueError, match="exists"):
        table.add(_server("a", clock, table))
    server.respond(make_response(server.request, 200))
    clock.advance(64 * T1)
    assert len(table) == 0
    client = ClientTransaction(
        request(),
        reliable=True,
        send=lambda data: None,
        on_response=lambda response: None,
        scheduler=clock,
        on_terminated=table.remove,
    )
    table.add(client)
    assert table.find_client(make_response(request(), 200)) is client
    assert table.transactions() == [client]


def test_table_is_bounded_but_evicts_lingering_transactions() -> None:
    clock = FakeClock()
    table = TransactionTable(3)
    first, second, third = (_server(name, clock, table) for name in "abc")
    for transaction in (first, second, third):
        table.add(transaction)
    assert table.full
    with pytest.raises(SipValueError, match="live"):
        table.add(_server("d", clock, table))
    second.respond(make_response(second.request, 200))  # now only absorbing retransmissions
    assert not table.full
    fourth = _server("d", clock, table)
    table.add(fourth)
    assert second.state is TransactionState.TERMINATED  # evicted
    assert set(table.transactions()) == {first, third, fourth}
    assert table.full
