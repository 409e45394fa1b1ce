"""TimLink over a real pty with a scripted TIM: sequencing, retries, NAKs, loss."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from tim_ptyutil import RawPty, ScriptedTim, open_raw_pty

from tim_drivers.codec import p1451
from tim_drivers.codec.framing import FrameKind, LinkFrame
from tim_drivers.errors import CommandFailed, TimTimeout, TimUnavailable, UnexpectedReply
from tim_drivers.transport.serial_link import SerialSettings, TimLink

pytestmark = pytest.mark.timeout(10)

T = 0.3  # per-attempt timeout: long enough that an answered attempt never times out under load


def reply(frame: LinkFrame, data: bytes = b"ok", success: bool = True) -> bytes:
    return LinkFrame(FrameKind.REPLY, frame.seq, p1451.Reply(success, data).to_bytes()).to_bytes()


@pytest.fixture
def pair() -> Iterator[RawPty]:
    with open_raw_pty() as p:
        yield p


@pytest.fixture
def events() -> list[p1451.TimInitiated]:
    return []


@pytest.fixture
async def link(pair: RawPty, events: list[p1451.TimInitiated]) -> AsyncIterator[TimLink]:
    link = TimLink(SerialSettings(pair.path), on_tim_initiated=events.append)
    await link.open()
    yield link
    await link.close()


async def test_reply(pair: RawPty, link: TimLink) -> None:
    tim = ScriptedTim(pair, reply)
    answer = await link.request(p1451.query_teds(0, 1), timeout=1.0)
    assert answer == p1451.Reply(True, b"ok")
    assert p1451.Command.from_bytes(tim.received[0].payload) == p1451.query_teds(0, 1)
    tim.stop()


async def test_sequence_numbers_increment(pair: RawPty, link: TimLink) -> None:
    tim = ScriptedTim(pair, reply)
    for _ in range(3):
        await link.request(p1451.query_teds(0, 1), timeout=1.0)
    seqs = [f.seq for f in tim.received]
    assert seqs == [seqs[0], (seqs[0] + 1) % 256, (seqs[0] + 2) % 256]
    tim.stop()


async def test_retries_with_same_seq(pair: RawPty, link: TimLink) -> None:
    calls = 0

    def flaky(frame: LinkFrame) -> bytes:
        nonlocal calls
        calls += 1
        return reply(frame) if calls == 3 else b""

    tim = ScriptedTim(pair, flaky)
    assert await link.request(p1451.query_teds(0, 1), timeout=T) == p1451.Reply(True, b"ok")
    assert len(tim.received) == 3
    assert len({f.seq for f in tim.received}) == 1
    tim.stop()


async def test_timeout_after_retries(pair: RawPty, link: TimLink) -> None:
    tim = ScriptedTim(pair, lambda frame: b"")
    with pytest.raises(TimTimeout) as caught:
        await link.request(p1451.query_teds(0, 1), timeout=T)
    assert isinstance(caught.value, TimeoutError)
    assert len(tim.received) == 4  # 1 + 3 retries
    assert len({f.seq for f in tim.received}) == 1
    tim.stop()


async def test_ack_and_naks(pair: RawPty, link: TimLink) -> None:
    answers = {
        p1451.trigger(1): lambda f: LinkFrame(FrameKind.ACK, f.seq).to_bytes(),
        p1451.trigger(2): lambda f: LinkFrame(FrameKind.NAK, f.seq, b"\x04").to_bytes(),
        p1451.query_teds(0, 1): lambda f: LinkFrame(FrameKind.ACK, f.seq).to_bytes(),
        p1451.query_teds(0, 12): lambda f: reply(f, b"", success=False),
    }
    tim = ScriptedTim(pair, lambda f: answers[p1451.Command.from_bytes(f.payload)](f))
    assert await link.request(p1451.trigger(1), timeout=1.0, expect_reply=False) is None
    with pytest.raises(CommandFailed) as caught:
        await link.request(p1451.trigger(2), timeout=1.0, expect_reply=False)
    assert caught.value.reason == p1451.NakReason.UNKNOWN_COMMAND
    with pytest.raises(UnexpectedReply):
        await link.request(p1451.query_teds(0, 1), timeout=1.0)
    with pytest.raises(CommandFailed) as caught:
        await link.request(p1451.query_teds(0, 12), timeout=1.0)
    assert caught.value.reason is None
    tim.stop()


async def test_busy_nak_is_retried(pair: RawPty, link: TimLink) -> None:
    def busy_once(frame: LinkFrame) -> bytes:
        if len(tim.received) == 1:
            return LinkFrame(FrameKind.NAK, frame.seq, b"\x03").to_bytes()
        return reply(frame)

    tim = ScriptedTim(pair, busy_once)
    assert await link.request(p1451.query_teds(0, 1), timeout=1.0) == p1451.Reply(True, b"ok")
    assert len(tim.received) == 2
    tim.stop()


async def test_busy_retries_use_fresh_seqs_and_end_in_command_failed(
    pair: RawPty, link: TimLink
) -> None:
    def always_busy(frame: LinkFrame) -> bytes:
        return LinkFrame(FrameKind.NAK, frame.seq, b"\x03").to_bytes()

    tim = ScriptedTim(pair, always_busy)
    with pytest.raises(CommandFailed) as refused:
        await link.request(p1451.query_teds(0, 1), timeout=1.0)
    assert refused.value.reason == 3
    seqs = [frame.seq for frame in tim.received]
    assert len(seqs) == 4
    assert len(set(seqs)) == 4  # a TIM replaying its last answer per seq cannot loop us
    tim.stop()


async def test_noise_stale_frames_and_tim_initiated(
    pair: RawPty, link: TimLink, events: list[p1451.TimInitiated]
) -> None:
    event = p1451.TimInitiated(2, 1, 8, b"\x00\x00\x00\x01")

    def chatty(frame: LinkFrame) -> bytes:
        return (
            b"\x13\x37 line noise \x00"
            + LinkFrame(FrameKind.REPLY, (frame.seq + 1) % 256, b"\x01\x00\x00").to_bytes()
            + LinkFrame(FrameKind.TIM_INITIATED, 0, event.to_bytes()).to_bytes()
            + reply(frame)
        )

    tim = ScriptedTim(pair, chatty)
    assert await link.request(p1451.query_teds(0, 1), timeout=1.0) == p1451.Reply(True, b"ok")
    assert events == [event]
    assert link.decode_errors == 1
    assert link.stale_frames == 1  # the reply for the wrong seq
    tim.stop()


async def test_connection_loss(pair: RawPty, link: TimLink) -> None:
    tim = ScriptedTim(pair, lambda frame: b"")
    request = asyncio.create_task(link.request(p1451.query_teds(0, 1), timeout=5.0))
    await asyncio.wait_for(tim.got_frame.wait(), 5)
    tim.stop()
    pair.close_master()  # the slave side now reads EIO: like a USB adapter unplugged
    with pytest.raises(TimUnavailable):
        await asyncio.wait_for(request, 5)
    with pytest.raises(TimUnavailable):
        await link.request(p1451.query_teds(0, 1), timeout=T)


async def test_open_errors(pair: RawPty) -> None:
    with pytest.raises(TimUnavailable):
        await TimLink(SerialSettings("/dev/does-not-exist")).open()
    # ptys have no RS-485 mode: the ioctl fails and the link refuses to open.
    with pytest.raises(TimUnavailable, match="RS-485"):
        await TimLink(SerialSettings(pair.path, rs485=True)).open()


async def test_request_validates_timeout(link: TimLink) -> None:
    with pytest.raises(ValueError, match="timeout"):
        await link.request(p1451.query_teds(0, 1), timeout=0)
