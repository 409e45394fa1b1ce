"""TLF-1 framing and COBS: tables, round-trips, noise and chunking."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tim_drivers.codec import cobs
from tim_drivers.codec.framing import (
    MAX_ENCODED,
    MAX_PAYLOAD,
    FrameDecoder,
    FrameKind,
    LinkFrame,
    crc16_ccitt_false,
)
from tim_drivers.errors import CrcError, FrameError, FrameTooLarge, TruncatedFrame

frames_st = st.builds(
    LinkFrame,
    st.sampled_from(FrameKind),
    st.integers(0, 255),
    st.binary(max_size=MAX_PAYLOAD),
)


def test_crc_check_value() -> None:
    assert crc16_ccitt_false(b"123456789") == 0x29B1


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        (b"", b"\x01"),
        (b"\x00", b"\x01\x01"),
        (b"\x00\x00", b"\x01\x01\x01"),
        (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
        (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
        (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
        (bytes(range(1, 255)), b"\xff" + bytes(range(1, 255)) + b"\x01"),
        (bytes(range(1, 256)), b"\xff" + bytes(range(1, 255)) + b"\x02\xff"),
    ],
)
def test_cobs_table(raw: bytes, encoded: bytes) -> None:
    assert cobs.encode(raw) == encoded
    assert cobs.decode(encoded) == raw


@given(st.binary(max_size=2000))
def test_cobs_round_trip(data: bytes) -> None:
    encoded = cobs.encode(data)
    assert 0 not in encoded
    assert cobs.decode(encoded) == data


@pytest.mark.parametrize(
    ("bad", "error"),
    [(b"", TruncatedFrame), (b"\x05\x11", TruncatedFrame), (b"\x02\x00", FrameError)],
)
def test_cobs_decode_errors(bad: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        cobs.decode(bad)


@given(st.binary(max_size=600))
def test_cobs_decode_fuzz_raises_only_frame_error(data: bytes) -> None:
    with contextlib.suppress(FrameError):
        cobs.decode(data)


def test_frame_layout() -> None:
    # Query Meta-TEDS (ieee1451.md §2.4) as command seq 7.
    payload = bytes.fromhex("00000101000101")
    frame = LinkFrame(FrameKind.COMMAND, 7, payload)
    packet = bytes((0x11, 7)) + payload
    packet += crc16_ccitt_false(packet).to_bytes(2, "big")
    assert frame.to_packet() == packet
    assert frame.to_bytes() == cobs.encode(packet) + b"\x00"
    assert LinkFrame.from_bytes(frame.to_bytes()) == frame


def test_nak_frame_layout() -> None:
    frame = LinkFrame(FrameKind.NAK, 0x42, b"\x04")
    assert frame.to_packet()[:3] == b"\x15\x42\x04"


@given(frames_st)
def test_frame_round_trip(frame: LinkFrame) -> None:
    wire = frame.to_bytes()
    assert wire.count(0) == 1
    assert wire.endswith(b"\x00")
    assert len(wire) - 1 <= MAX_ENCODED
    assert LinkFrame.from_bytes(wire) == frame


def test_frame_errors() -> None:
    packet = bytearray(LinkFrame(FrameKind.REPLY, 1, b"abc").to_packet())
    packet[3] ^= 0xFF
    with pytest.raises(CrcError):
        LinkFrame.from_packet(bytes(packet))
    with pytest.raises(TruncatedFrame):
        LinkFrame.from_packet(b"\x11\x00\x00")
    with pytest.raises(FrameTooLarge):
        LinkFrame(FrameKind.COMMAND, 0, bytes(MAX_PAYLOAD + 1))
    body = b"\x21\x00"  # version 2
    with pytest.raises(FrameError, match="version"):
        LinkFrame.from_packet(body + crc16_ccitt_false(body).to_bytes(2, "big"))
    body = b"\x19\x00"  # kind 9
    with pytest.raises(FrameError, match="kind"):
        LinkFrame.from_packet(body + crc16_ccitt_false(body).to_bytes(2, "big"))


@given(st.lists(frames_st, max_size=5))
def test_decoder_one_byte_at_a_time(frames: list[LinkFrame]) -> None:
    wire = b"".join(f.to_bytes() for f in frames)
    decoder = FrameDecoder()
    out: list[LinkFrame] = []
    for octet in wire:
        out += decoder.feed(bytes((octet,)))
    assert out == frames
    assert decoder.errors == 0
    assert decoder.pending == 0


@given(st.lists(frames_st, max_size=5), st.data())
def test_decoder_arbitrary_chunks(frames: list[LinkFrame], data: st.DataObject) -> None:
    wire = b"".join(f.to_bytes() for f in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=8)))
    decoder = FrameDecoder()
    out: list[LinkFrame] = []
    for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        out += decoder.feed(wire[start:end])
    assert out == frames


@given(st.lists(st.tuples(st.binary(max_size=50), frames_st), max_size=5))
def test_decoder_resyncs_after_garbage(items: list[tuple[bytes, LinkFrame]]) -> None:
    """Noise followed by a delimiter never costs the next frame."""
    decoder = FrameDecoder()
    out: list[LinkFrame] = []
    for noise, frame in items:
        out += decoder.feed(noise + b"\x00")
        out += decoder.feed(frame.to_bytes())
    assert out[len(out) - len(items) :] == [frame for _, frame in items]


def test_decoder_drops_and_counts_bad_frames() -> None:
    good = LinkFrame(FrameKind.REPLY, 3, b"\x01\x00\x00").to_bytes()
    corrupt = bytearray(good)
    corrupt[2] ^= 0x01
    decoder = FrameDecoder()
    assert decoder.feed(b"\x00\x00garbage\x00" + bytes(corrupt) + good) == [
        LinkFrame(FrameKind.REPLY, 3, b"\x01\x00\x00")
    ]
    assert decoder.errors == 2
    assert isinstance(decoder.last_error, FrameError)


def test_decoder_oversize_is_dropped_until_delimiter() -> None:
    decoder = FrameDecoder()
    good = LinkFrame(FrameKind.ACK, 9).to_bytes()
    assert decoder.feed(b"\x01" * (MAX_ENCODED + 10)) == []
    assert decoder.feed(b"\x02" * 100 + b"\x00" + good) == [LinkFrame(FrameKind.ACK, 9)]
    assert decoder.errors == 1


def test_decoder_reset_drops_partial_frame() -> None:
    decoder = FrameDecoder()
    wire = LinkFrame(FrameKind.ACK, 1).to_bytes()
    decoder.feed(wire[:2])
    assert decoder.pending == 2
    decoder.reset()
    assert decoder.feed(LinkFrame(FrameKind.ACK, 2).to_bytes()) == [LinkFrame(FrameKind.ACK, 2)]


@given(st.lists(st.binary(max_size=300), max_size=10))
def test_decoder_fuzz_never_raises(chunks: list[bytes]) -> None:
    decoder = FrameDecoder()
    for chunk in chunks:
        for frame in decoder.feed(chunk):
            assert isinstance(frame, LinkFrame)


@given(st.binary(max_size=2 * MAX_ENCODED))
def test_from_bytes_fuzz_raises_only_typed_errors(data: bytes) -> None:
    with contextlib.suppress(FrameError):  # anything else propagates
        LinkFrame.from_bytes(data)
