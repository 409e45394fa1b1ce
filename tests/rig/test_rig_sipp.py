"""SIPp runner and the scenarios in tests/sip/scenarios, proved against the private Kamailio.

What the SIP bridge's acceptance tests will lean on: a SIPp PUBLISH is accepted with SIP-ETag;
a SIPp watcher subscribed at Kamailio gets a NOTIFY with the published PIDF; digest is demanded
when configured and SIPp's [authentication] passes it (wrong password refused); MESSAGE reaches
a background SIPp UAS; message-summary counts read back; the 412 stub drives a publisher
through recovery. Plus the trace parser, bounded waits and stop by PID.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ncap.errors import RigError
from ncap.rig.kamailio import PrivateKamailio
from ncap.rig.sipp import SippRun, TracedMessage, Transport, parse_message_trace

pytestmark = pytest.mark.integration

SCENARIOS = Path(__file__).resolve().parents[1] / "sip" / "scenarios"
DOMAIN = "example.test"
USERS = {"sensor1": "s3cret", "watcher": "w4tch", "alice": "al1ce"}
SIPP_TIMEOUT = 15.0  # SIPp's own -timeout; every run here takes well under a second or two
PRESENCE_KEYS = {"domain": DOMAIN, "watcher": "watcher", "basic": "open", "note": "temp=21.5C"}


@pytest.fixture
def kamailio_workdir() -> Iterator[Path]:
    """A directory the ``kamailio`` user can reach (pytest's ``tmp_path`` is root-only)."""
    with tempfile.TemporaryDirectory(prefix="ncap-kamailio-") as workdir:
        yield Path(workdir)


@pytest.fixture
def kamailio(kamailio_workdir: Path) -> Iterator[PrivateKamailio]:
    with PrivateKamailio(kamailio_workdir, DOMAIN) as server:
        yield server


def _sipp(scenario: str, workdir: Path, **options: Any) -> SippRun:
    return SippRun(SCENARIOS / scenario, workdir, timeout=SIPP_TIMEOUT, **options)


def _is_notify(message: TracedMessage) -> bool:
    return message.method == "NOTIFY" and message.direction == "received"


# ------------------------------------------------------------------ trace parsing


def _trace_entry(direction: str, raw: bytes) -> bytes:
    head = "-" * 47 + " 2026-11-21 10:00:00.000001\n"
    if direction == "sent":
        head += f"UDP message sent ({len(raw)} bytes):\n\n"
    else:
        head += f"UDP message received [{len(raw)}] bytes :\n\n"
    return head.encode() + raw + b"\n\n"


@given(
    bodies=st.lists(st.binary(max_size=300), min_size=1, max_size=4),
    directions=st.lists(st.sampled_from(["sent", "received"]), min_size=4, max_size=4),
)
def test_trace_parser_recovers_exact_bytes(bodies: list[bytes], directions: list[str]) -> None:
    raws = [
        b"NOTIFY sip:w@127.0.0.1 SIP/2.0\r\nCall-ID: x\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
        for body in bodies
    ]
    data = b"".join(_trace_entry(d, raw) for d, raw in zip(directions, raws, strict=False))
    parsed = parse_message_trace(data)
    assert [m.raw for m in parsed] == raws
    assert [m.direction for m in parsed] == directions[: len(raws)]
    # An entry SIPp is still writing (here: its last byte missing) is left out, not mangled.
    assert [m.raw for m in parse_message_trace(data[:-3])] == raws[:-1]


def test_traced_message_headers() -> None:
    raw = (
        b"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP 127.0.0.1:5060\r\nCSeq: 7 PUBLISH\r\n"
        b"SIP-ETag: a.1\r\nSubject: folded\r\n  line\r\ni: abc\r\nContent-Length: 2\r\n\r\nhi"
    )
    message = parse_message_trace(_trace_entry("received", raw))[0]
    assert message.status == 200
    assert message.method is None
    assert message.cseq_method == "PUBLISH"
    assert message.header("Via") == "SIP/2.0/UDP 127.0.0.1:5060"
    assert message.header("call-id") == "abc"
    assert message.header("Subject") == "folded line"
    assert message.header("SIP-ETag") == "a.1"
    assert message.header("Event") is None
    assert message.body == "hi"


# ------------------------------------------------------------------ runner behaviour


def test_uas_start_returns_once_bound_and_stop_ends_it(tmp_path: Path) -> None:
    uas = _sipp("message_uas.xml", tmp_path)
    with uas:
        pid = uas.pid
        assert pid is not None
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe,
            pytest.raises(OSError, match="in use"),  # SIPp holds the port already
        ):
            probe.bind((uas.host, uas.local_port))
    assert uas.pid is None
    assert not Path(f"/proc/{pid}").exists()


def test_tcp_uas_is_listening_after_start(tmp_path: Path) -> None:
    with _sipp("message_uas.xml", tmp_path, transport="t1") as uas:
        with socket.create_connection((uas.host, uas.local_port), timeout=2.0):
            pass
        assert uas.local_uri.endswith(";transport=tcp")


def test_failed_call_is_reported_with_flow(kamailio: PrivateKamailio, tmp_path: Path) -> None:
    # Kamailio answers SUBSCRIBE without a body-checked NOTIFY #2 ever coming: bounded by
    # -recv_timeout, the call fails and the result says where.
    run = _sipp(
        "presence_watch.xml",
        tmp_path,
        target=(kamailio.host, kamailio.udp_port),
        service="nobody",
        keys=PRESENCE_KEYS,
        recv_timeout=0.5,
    )
    result = run.run()
    assert result.returncode == 1
    assert len(result.requests("NOTIFY")) == 1
    with pytest.raises(RigError, match=r"(?s)exited with 1.*SUBSCRIBE"):
        result.expect_success()


def test_wait_is_bounded(tmp_path: Path) -> None:
    uas = _sipp("message_uas.xml", tmp_path)
    uas.start()
    try:
        with pytest.raises(RigError, match="did not finish in time"):
            uas.wait(timeout=0.3)
        assert uas.pid is None  # killed by PID
    finally:
        uas.stop()


def test_scenario_must_exist(tmp_path: Path) -> None:
    with pytest.raises(RigError, match="no SIPp scenario"):
        SippRun(tmp_path / "missing.xml", tmp_path)


# ------------------------------------------------------------------ against Kamailio


def test_options_probe(kamailio: PrivateKamailio, tmp_path: Path) -> None:
    result = _sipp(
        "options.xml", tmp_path, target=(kamailio.host, kamailio.udp_port), keys={"domain": DOMAIN}
    ).run()
    assert result.expect_success().responses(200, to="OPTIONS")


@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_publish_accepted_with_etag(
    kamailio: PrivateKamailio, tmp_path: Path, transport: Transport
) -> None:
    result = _sipp(
        "publish.xml",
        tmp_path,
        target=(kamailio.host, kamailio.udp_port),
        transport=transport,
        service="sensor1",
        keys=PRESENCE_KEYS,
        pause_ms=50,
    ).run()
    result.expect_success()
    oks = result.responses(200, to="PUBLISH")
    assert len(oks) == 3  # initial, refresh, remove
    etags = [ok.header("SIP-ETag") for ok in oks[:2]]
    assert all(etags)
    assert etags[0] != etags[1]  # Kamailio issues a new etag on refresh
    refresh = result.requests("PUBLISH", direction="sent")[1]
    assert refresh.header("SIP-If-Match") == etags[0]


@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_watcher_at_kamailio_sees_publication(
    kamailio: PrivateKamailio, tmp_path: Path, transport: Transport
) -> None:
    target = (kamailio.host, kamailio.udp_port)
    with _sipp(
        "presence_watch.xml",
        tmp_path,
        target=target,
        transport=transport,
        service="sensor1",
        keys=PRESENCE_KEYS,
    ) as watcher:
        # Publish only once the subscription is live, so the PIDF arrives as a change.
        first = watcher.wait_for_message(_is_notify, timeout=5.0)
        assert first.body == ""  # Kamailio: nothing published yet
        publisher = _sipp(
            "publish.xml",
            tmp_path,
            target=target,
            transport=transport,
            service="sensor1",
            keys=PRESENCE_KEYS,
            pause_ms=50,
        )
        publisher.run().expect_success()
        watched = watcher.wait().expect_success()
    notifies = watched.requests("NOTIFY")
    change = notifies[1]
    assert change.header("Content-Type") == "application/pidf+xml"
    assert 'entity="sip:sensor1@example.test"' in change.body
    assert "<basic>open</basic>" in change.body
    assert "<note>temp=21.5C</note>" in change.body
    final_state = notifies[-1].header("Subscription-State")
    assert final_state is not None
    assert final_state.startswith("terminated")


def test_digest_demanded_and_passed(kamailio_workdir: Path, tmp_path: Path) -> None:
    with PrivateKamailio(kamailio_workdir, DOMAIN, users=USERS) as server:
        target = (server.host, server.udp_port)
        challenge = _sipp(
            "subscribe_challenge.xml", tmp_path, target=target, service="sensor1",
            keys=PRESENCE_KEYS,
        ).run()  # fmt: skip
        challenge.expect_success()
        assert "407 challenge, realm example.test, algorithm MD5" in challenge.log

        with _sipp(
            "presence_watch.xml", tmp_path, target=target, service="sensor1",
            keys=PRESENCE_KEYS, auth=("watcher", USERS["watcher"]),
        ) as watcher:  # fmt: skip
            watcher.wait_for_message(_is_notify, timeout=5.0)
            publish = _sipp(
                "publish.xml", tmp_path, target=target, service="sensor1", keys=PRESENCE_KEYS,
                pause_ms=50, auth=("sensor1", USERS["sensor1"]),
            ).run()  # fmt: skip
            watched = watcher.wait()
        publish.expect_success()
        watched.expect_success()
        assert len(publish.responses(407)) == 3  # every out-of-dialog PUBLISH is challenged
        assert "<basic>open</basic>" in watched.requests("NOTIFY")[1].body

        wrong = _sipp(
            "presence_watch.xml", tmp_path, target=target, service="sensor1",
            keys=PRESENCE_KEYS, auth=("watcher", "not-the-password"),
        ).run()  # fmt: skip
        assert wrong.returncode == 1
        assert [r.status for r in wrong.responses()] == [407, 407]
        assert not wrong.requests("BYE", direction="sent")  # no stray BYE after the abort


def test_message_through_kamailio_reaches_uas(kamailio_workdir: Path, tmp_path: Path) -> None:
    with _sipp("message_uas.xml", tmp_path) as uas:
        server = PrivateKamailio(
            kamailio_workdir, DOMAIN, users=USERS, message_target=(uas.host, uas.local_port)
        )
        with server:
            sent = _sipp(
                "message_uac.xml", tmp_path, target=(server.host, server.udp_port),
                service="sensor1", keys={"domain": DOMAIN, "sender": "alice", "text": "read"},
                auth=("alice", USERS["alice"]),
            ).run()  # fmt: skip
            received = uas.wait()
    sent.expect_success()
    received.expect_success()
    assert [r.status for r in sent.responses()] == [407, 200]
    message = received.requests("MESSAGE")[0]
    assert message.body.strip() == "read"
    sender = message.header("From")
    assert sender is not None
    assert sender.startswith("<sip:alice@example.test>")
    assert "Proxy-Authorization" not in message.text  # consumed by Kamailio
    reply = received.responses(200, direction="sent")[0]
    assert reply.header("Contact") is None
    assert reply.body == ""


def test_message_summary_counts_read_back(kamailio: PrivateKamailio, tmp_path: Path) -> None:
    target = (kamailio.host, kamailio.udp_port)
    keys = {"domain": DOMAIN, "watcher": "watcher", "waiting": "yes", "new_msgs": "2",
            "old_msgs": "8"}  # fmt: skip
    with _sipp("mwi_watch.xml", tmp_path, target=target, service="alice", keys=keys) as watcher:
        watcher.wait_for_message(_is_notify, timeout=5.0)
        _sipp("mwi_publish.xml", tmp_path, target=target, service="alice", keys=keys).run()
        watched = watcher.wait().expect_success()
    assert "Voice-Message: 2/8 (0/0)" in watched.requests("NOTIFY")[1].body

    fetched = _sipp("mwi_fetch.xml", tmp_path, target=target, service="alice", keys=keys).run()
    fetched.expect_success()
    assert "summary: waiting=yes Voice new=2 old=8" in fetched.log


async def test_esc_stub_drives_412_recovery(tmp_path: Path) -> None:
    stub = _sipp("esc_stub_412.xml", tmp_path)
    await stub.start_async()
    try:
        loop = asyncio.get_running_loop()
        statuses = await loop.run_in_executor(None, _publish_three_times, stub.local_port)
        result = await stub.wait_async()
    finally:
        stub.stop()
    result.expect_success()
    assert statuses == [(200, "etag-one"), (412, None), (200, "etag-two")]
    assert "publisher recovered with a new initial PUBLISH" in result.log


def _publish_three_times(port: int) -> list[tuple[int, str | None]]:
    """A publisher doing the right thing: initial, conditional refresh, then start over."""
    pidf = (
        '<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:sensor1@example.test">'
        '<tuple id="t"><status><basic>open</basic></status></tuple></presence>'
    )
    outcomes: list[tuple[int, str | None]] = []
    call_id = secrets.token_hex(8)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(3.0)
        local = sock.getsockname()[1]
        etag: str | None = None
        for cseq in (1, 2, 3):
            body = pidf if etag is None else ""
            lines = [
                "PUBLISH sip:sensor1@example.test SIP/2.0",
                f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{secrets.token_hex(6)};rport",
                "Max-Forwards: 70",
                "From: <sip:sensor1@example.test>;tag=p1",
                "To: <sip:sensor1@example.test>",
                f"Call-ID: {call_id}",
                f"CSeq: {cseq} PUBLISH",
                "Event: presence",
                "Expires: 60",
                *([f"SIP-If-Match: {etag}"] if etag else []),
                *(["Content-Type: application/pidf+xml"] if body else []),
                f"Content-Length: {len(body)}",
            ]
            sock.sendto(("\r\n".join(lines) + "\r\n\r\n" + body).encode(), ("127.0.0.1", port))
            response = parse_message_trace(_trace_entry("received", sock.recv(65535)))[0]
            assert response.status is not None
            etag = response.header("SIP-ETag")  # a 412 drops it: the next one starts over
            outcomes.append((response.status, etag))
    return outcomes
