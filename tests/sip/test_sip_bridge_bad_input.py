"""Malformed SIP thrown at the bridge's real UDP and TCP listeners: each message gets 400, 405,
413, 505 or 513, or silence (a stream that cannot be framed is closed), never a crash; after all
of it the bridge still answers an authenticated SUBSCRIBE with 200 and a NOTIFY.

The bridge runs on its own event loop in a thread, so the probes are plain blocking sockets
(and hypothesis drives the random part synchronously). Each garbage datagram is followed by an
OPTIONS probe: the bridge answers in arrival order, so whatever comes before the probe's 200
is the answer to the garbage, and no answer at all before it is silence. Over TCP we half-close
after the garbage and read until the bridge closes.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ncap.sip.bridge import SipBridge, SipUser, ThingStatus
from sipstack.digest import DigestClient
from sipstack.message import SipRequest, SipResponse, StreamFramer, parse_message
from sipstack.transport import Destination
from sipstack.ua import IncomingRequest, UserAgent

DOMAIN = "sip.test"
THING = "thing"
OWNER = ("boss", "b0ss-secret")
TIMEOUT = 5.0
ALLOWED = {400, 405, 413, 505, 513}  # or silence
_ids = itertools.count()


class _Thing:
    def status(self) -> ThingStatus:
        return ThingStatus("open", None, "temperature 21.5 °C")

    def alarm_counts(self, identity: str) -> tuple[int, int, int, int]:
        return (0, 0, 0, 0)

    async def may_see(self, identity: str) -> bool:
        return identity == OWNER[0]

    async def command(self, identity: str, text: str) -> str:
        return text


@dataclass
class _Running:
    bridge: SipBridge
    loop: asyncio.AbstractEventLoop
    udp: int
    tcp: int
    crashed: list[BaseException]


def _failure(context: dict[str, object]) -> BaseException:
    """What the loop's exception handler was told about (an error that escaped a callback)."""
    error = context.get("exception")
    return error if isinstance(error, BaseException) else RuntimeError(context.get("message"))


@pytest.fixture(scope="module")
def running() -> Iterator[_Running]:
    loop = asyncio.new_event_loop()
    crashed: list[BaseException] = []
    loop.set_exception_handler(lambda _loop, context: crashed.append(_failure(context)))
    thread = threading.Thread(target=loop.run_forever, name="sip-bridge", daemon=True)
    thread.start()

    async def start() -> SipBridge:
        bridge = SipBridge(
            _Thing(),
            thing_user=THING,
            domain=DOMAIN,
            users={OWNER[0]: SipUser(OWNER[1])},
            udp_port=0,
            tcp_port=0,
            min_notify_interval=0.0,
        )
        await bridge.start()
        return bridge

    bridge = asyncio.run_coroutine_threadsafe(start(), loop).result(TIMEOUT)
    try:
        yield _Running(bridge, loop, bridge.port("UDP"), bridge.port("TCP"), crashed)
    finally:
        asyncio.run_coroutine_threadsafe(bridge.aclose(), loop).result(TIMEOUT)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(TIMEOUT)
        loop.close()


def _request(method: str = "OPTIONS", *, drop: str = "", body: bytes = b"", **more: str) -> bytes:
    """A well-formed request (``drop`` leaves one header out, ``more`` adds or replaces)."""
    branch = f"z9hG4bK-fuzz-{next(_ids)}"
    fields = {
        "Via": f"SIP/2.0/UDP 127.0.0.1:9;branch={branch};rport",
        "Max-Forwards": "70",
        "From": f"<sip:{OWNER[0]}@{DOMAIN}>;tag=f{next(_ids)}",
        "To": f"<sip:{THING}@{DOMAIN}>",
        "Call-ID": f"fuzz-{next(_ids)}@127.0.0.1",
        "CSeq": f"1 {method}",
        "Content-Length": str(len(body)),
    }
    fields.update({name.replace("_", "-"): value for name, value in more.items()})
    fields.pop(drop, None)
    head = f"{method} sip:{THING}@{DOMAIN} SIP/2.0\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in fields.items())
    return head.encode() + b"\r\n" + body


def _call_id(data: bytes) -> str:
    message = parse_message(data, validate=False)
    return message.call_id


BAD_MESSAGES = {
    "random bytes": b"\x00\xff\x13garbage\r\n\r\n",
    "only a start line": b"OPTIONS sip:thing@sip.test SIP/2.0\r\n\r\n",
    "huge header block": _request(X_Pad="a" * 20_000),
    "too many headers": _request().replace(
        b"\r\n\r\n", b"\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(300)) + b"\r\n"
    ),
    "non-numeric Content-Length": _request(Content_Length="twelve", body=b"hello"),
    "negative Content-Length": _request(Content_Length="-5", body=b"hello"),
    "oversized Content-Length": _request(Content_Length="99999999"),
    "body bigger than the limit": _request(body=b"x" * 70_000),
    "missing Call-ID": _request(drop="Call-ID"),
    "missing CSeq": _request(drop="CSeq"),
    "missing Via": _request(drop="Via"),
    "CSeq method mismatch": _request(CSeq="1 INVITE"),
    "wrong SIP version": _request().replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1),
    "truncated message": _request(body=b"0123456789")[:-4],
    "INVITE": _request("INVITE"),
}


def _udp_answers(running: _Running, datagram: bytes) -> list[SipResponse]:
    """What the bridge answers to ``datagram`` before it answers the probe behind it."""
    probe = _request()
    probe_id = _call_id(probe)
    answers: list[SipResponse] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        target = ("127.0.0.1", running.udp)
        if len(datagram) < 65_000:
            sock.sendto(datagram, target)
        sock.sendto(probe, target)
        while True:
            response = parse_message(sock.recv(65_535))
            assert isinstance(response, SipResponse)
            if response.call_id == probe_id:
                assert response.status == 200
                return answers
            answers.append(response)


def _tcp_answers(running: _Running, data: bytes) -> list[SipResponse]:
    """The answers to ``data`` on one TCP connection; we then half-close it and the bridge
    closes its side (a half-closed SIP stream is useless), which bounds the wait."""
    # A new branch too: the same one would be a retransmission of what went over UDP.
    data = data.replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP").replace(b"-fuzz-", b"-fuzz-tcp-")
    framer = StreamFramer()
    answers: list[SipResponse] = []
    with socket.create_connection(("127.0.0.1", running.tcp), timeout=TIMEOUT) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed while we were still writing the garbage
        while True:
            try:
                chunk = sock.recv(65_535)
            except ConnectionResetError:
                return answers
            if not chunk:
                return answers
            for frame in framer.feed(chunk):
                response = parse_message(frame, stream=True)
                assert isinstance(response, SipResponse)
                answers.append(response)


#: What each gets over UDP and over TCP: an error when the request is readable enough to
#: answer (From, To, Call-ID, CSeq and a routable Via), else silence; a header block over the
#: limit is dropped unread (so no 513), a truncated body on a stream waits until we close.
EXPECTED: dict[str, tuple[list[int], list[int]]] = {
    "random bytes": ([], []),
    "only a start line": ([], []),
    "huge header block": ([], []),
    "too many headers": ([], []),
    "non-numeric Content-Length": ([400], [400]),
    "negative Content-Length": ([400], [400]),
    "oversized Content-Length": ([413], [413]),
    "body bigger than the limit": ([], [413]),  # not sent over UDP: no such datagram
    "missing Call-ID": ([], []),
    "missing CSeq": ([], []),
    "missing Via": ([], []),
    "CSeq method mismatch": ([400], [400]),
    "wrong SIP version": ([505], [505]),
    "truncated message": ([400], []),
    "INVITE": ([405], [405]),
}


@pytest.mark.parametrize("case", sorted(BAD_MESSAGES))
def test_bad_messages_get_an_error_or_silence(running: _Running, case: str) -> None:
    data = BAD_MESSAGES[case]
    over_udp = [answer.status for answer in _udp_answers(running, data)]
    over_tcp = [answer.status for answer in _tcp_answers(running, data)]
    assert (over_udp, over_tcp) == EXPECTED[case]
    assert not running.crashed


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=2000),
        st.lists(
            st.sampled_from([b"SIP/2.0", b"OPTIONS ", b"\r\n", b": ", b"Via", b"Content-Length",
                             b"l", b"-1", b"99999", b"sip:", b";", b"\t", b" ", b"\x00"]),
            max_size=60,
        ).map(b"".join),
        st.tuples(st.sampled_from(sorted(BAD_MESSAGES.values())), st.integers(0, 2000)).map(
            lambda pair: pair[0][: pair[1]]
        ),
    )
)  # fmt: skip
def test_random_bytes_never_crash_the_bridge(running: _Running, data: bytes) -> None:
    for answer in _udp_answers(running, data):
        assert answer.status in ALLOWED
    for answer in _tcp_answers(running, data):
        assert answer.status in ALLOWED
    assert not running.crashed


def test_after_all_that_the_bridge_still_serves_an_authenticated_subscribe(
    running: _Running,
) -> None:
    async def watch() -> SipRequest:
        notifies: asyncio.Queue[SipRequest] = asyncio.Queue()

        async def on_notify(incoming: IncomingRequest) -> None:
            notifies.put_nowait(incoming.request)
            incoming.respond(200)

        async with UserAgent("127.0.0.1") as ua, asyncio.timeout(TIMEOUT):
            ua.on("NOTIFY", on_notify)
            request = SipRequest("SUBSCRIBE", f"sip:{THING}@{DOMAIN}")
            for name, value in (
                ("From", f"<sip:{OWNER[0]}@{DOMAIN}>;tag=after"),
                ("To", f"<sip:{THING}@{DOMAIN}>"),
                ("Event", "presence"),
                ("Expires", "0"),  # a fetch: one NOTIFY, and no subscription left behind
                ("Contact", f"<{ua.contact_uri(OWNER[0])}>"),
            ):
                request.headers.add(name, value)
            to_bridge = Destination("127.0.0.1", running.udp)
            ok = await ua.request(request, destination=to_bridge, auth=DigestClient(*OWNER))
            assert ok.status == 200
            return await notifies.get()

    notify = asyncio.run(watch())
    assert b"temperature 21.5" in notify.body
    assert notify.headers.get("Subscription-State") == "terminated;reason=timeout"
    assert not running.crashed
