"""IEEE 1451.0-2007 messages: the worked bytes of ieee1451.md §2.4, round-trips, errors."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tim_drivers.codec import p1451
from tim_drivers.codec.p1451 import Command, Reply, TimInitiated
from tim_drivers.errors import FrameError, LengthMismatch, TruncatedFrame


@pytest.mark.parametrize(
    ("command", "wire"),
    [
        (p1451.query_teds(0, p1451.TedsAccessCode.META), "00 00 01 01 00 01 01"),
        (
            p1451.read_teds_segment(1, p1451.TedsAccessCode.CHANNEL, 0),
            "00 01 01 02 00 05 03 00 00 00 00",
        ),
        (p1451.operate(1), "00 01 04 01 00 00"),
        (p1451.trigger(1), "00 01 03 03 00 00"),
        (p1451.read_data_set(1, 0), "00 01 03 01 00 04 00 00 00 00"),
        (p1451.reset(), "00 00 07 01 00 00"),
    ],
    ids=["query-meta", "read-chan-teds", "operate", "trigger", "read-data-set", "reset"],
)
def test_worked_bytes(command: Command, wire: str) -> None:
    assert command.to_bytes() == bytes.fromhex(wire)
    assert Command.from_bytes(bytes.fromhex(wire)) == command


def test_other_builders() -> None:
    assert p1451.idle(2).to_bytes() == bytes.fromhex("0002 04 02 0000")
    assert p1451.write_data_set(1, 0, b"\x3f\x80\x00\x00").to_bytes() == bytes.fromhex(
        "0001 03 02 0008 00000000 3f800000"
    )
    assert p1451.read_status_event(0).to_bytes() == bytes.fromhex("0000 01 08 0000")
    assert p1451.update_teds(0, 12).to_bytes() == bytes.fromhex("0000 01 04 0001 0c")
    assert p1451.write_teds_segment(0, 12, 5, b"ab").to_bytes() == bytes.fromhex(
        "0000 01 03 0007 0c 00000005 6162"
    )


def test_reply_expected() -> None:
    assert p1451.query_teds(0, 1).reply_expected
    assert p1451.read_data_set(1).reply_expected
    assert not p1451.trigger(1).reply_expected
    assert not p1451.operate(1).reply_expected
    assert not p1451.write_data_set(1, 0, b"").reply_expected
    assert not p1451.reset().reply_expected


def test_reply_bytes() -> None:
    assert Reply(True, b"\x01\x02").to_bytes() == bytes.fromhex("01 0002 0102")
    assert Reply(False).to_bytes() == bytes.fromhex("00 0000")
    assert Reply.from_bytes(bytes.fromhex("07 0001 ff")) == Reply(True, b"\xff")


def test_length_must_match() -> None:
    with pytest.raises(LengthMismatch):
        Command.from_bytes(bytes.fromhex("0000 01 01 0002 01"))
    with pytest.raises(LengthMismatch):
        Command.from_bytes(bytes.fromhex("0000 01 01 0000 01"))
    with pytest.raises(LengthMismatch):
        Reply.from_bytes(bytes.fromhex("01 0000 00"))
    with pytest.raises(TruncatedFrame):
        Reply.from_bytes(b"\x01\x00")
    with pytest.raises(TruncatedFrame):
        TimInitiated.from_bytes(b"\x00\x01\x01")


def test_reply_payloads() -> None:
    info = p1451.TedsInfo(1, 0, 100, 0xBEEF, 200)
    assert p1451.TedsInfo.from_bytes(info.to_bytes()) == info
    assert info.available
    assert not p1451.TedsInfo(p1451.TedsAttribute.NOT_AVAILABLE, 0, 0, 0, 0).available
    assert p1451.Segment.from_bytes(bytes.fromhex("00000010 aabb")) == p1451.Segment(
        16, b"\xaa\xbb"
    )
    assert p1451.parse_segment_args(bytes.fromhex("03 00000004 99"), with_code=True) == (
        3,
        4,
        b"\x99",
    )
    with pytest.raises(FrameError):
        p1451.parse_segment_args(b"\x00\x00", with_code=False)


def test_field_ranges() -> None:
    with pytest.raises(ValueError, match="channel"):
        Command(0x10000, 1, 1)
    with pytest.raises(ValueError, match="class"):
        Command(0, 256, 1)


addressed = st.tuples(
    st.integers(0, 0xFFFF), st.integers(0, 255), st.integers(0, 255), st.binary(max_size=300)
)


@given(addressed)
def test_command_round_trip(fields: tuple[int, int, int, bytes]) -> None:
    command = Command(*fields)
    assert Command.from_bytes(command.to_bytes()) == command


@given(addressed)
def test_tim_initiated_round_trip(fields: tuple[int, int, int, bytes]) -> None:
    message = TimInitiated(*fields)
    assert TimInitiated.from_bytes(message.to_bytes()) == message


@given(st.booleans(), st.binary(max_size=300))
def test_reply_round_trip(success: bool, data: bytes) -> None:
    reply = Reply(success, data)
    assert Reply.from_bytes(reply.to_bytes()) == reply


@given(st.binary(max_size=40))
def test_fuzz_raises_only_frame_errors(data: bytes) -> None:
    for parse in (Command.from_bytes, Reply.from_bytes, TimInitiated.from_bytes):
        with contextlib.suppress(FrameError):  # anything else propagates
            parse(data)
