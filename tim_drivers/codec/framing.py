"""TLF-1, our serial link framing (ieee1451.md §12.2).

A packet is ``ver_type | seq | payload | CRC-16/CCITT-FALSE (big-endian)``; on the wire
it is COBS-encoded and followed by one 0x00 delimiter.  The payload is an exact
IEEE 1451.0-2007 message (see :mod:`.p1451`) or, for a NAK, one reason octet.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import IntEnum

from tim_drivers.codec import cobs
from tim_drivers.errors import CrcError, FrameError, FrameTooLarge, TruncatedFrame

_LOGGER = logging.getLogger(__name__)

VERSION = 1
MAX_PAYLOAD = 1024
HEADER_LEN = 2
CRC_LEN = 2
MAX_PACKET = HEADER_LEN + MAX_PAYLOAD + CRC_LEN
# COBS adds one octet per started block of 254 octets, plus one.
MAX_ENCODED = MAX_PACKET + MAX_PACKET // 254 + 1
DELIMITER = b"\x00"


class FrameKind(IntEnum):
    """Low nibble of ``ver_type``."""

    COMMAND = 1
    REPLY = 2
    TIM_INITIATED = 3
    ACK = 4
    NAK = 5


def _make_crc_table() -> tuple[int, ...]:
    table = []
    for index in range(256):
        crc = index << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return tuple(table)


_CRC_TABLE = _make_crc_table()


def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, xorout 0."""
    crc = 0xFFFF
    for octet in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[(crc >> 8) ^ octet]
    return crc


@dataclass(frozen=True, slots=True)
class LinkFrame:
    """One TLF-1 frame."""

    kind: FrameKind
    seq: int
    payload: bytes = b""

    def __post_init__(self) -> None:
        if not 0 <= self.seq <= 0xFF:
            raise ValueError(f"seq {self.seq} outside 0..255")
        if len(self.payload) > MAX_PAYLOAD:
            raise FrameTooLarge(f"payload of {len(self.payload)} octets > {MAX_PAYLOAD}")

    def to_packet(self) -> bytes:
        """The un-stuffed packet: header, payload and CRC."""
        body = bytes((VERSION << 4 | int(self.kind), self.seq)) + self.payload
        return body + crc16_ccitt_false(body).to_bytes(2, "big")

    def to_bytes(self) -> bytes:
        """The frame as sent on the wire: COBS(packet) followed by 0x00."""
        return cobs.encode(self.to_packet()) + DELIMITER

    @classmethod
    def from_packet(cls, packet: bytes) -> LinkFrame:
        """Parse an un-stuffed packet (CRC included)."""
        if len(packet) < HEADER_LEN + CRC_LEN:
            raise TruncatedFrame(f"packet of {len(packet)} octets is shorter than header + CRC")
        if len(packet) > MAX_PACKET:
            raise FrameTooLarge(f"packet of {len(packet)} octets > {MAX_PACKET}")
        body, crc = packet[:-CRC_LEN], int.from_bytes(packet[-CRC_LEN:], "big")
        computed = crc16_ccitt_false(body)
        if crc != computed:
            raise CrcError(f"CRC {crc:#06x} != computed {computed:#06x}")
        version, kind = body[0] >> 4, body[0] & 0x0F
        if version != VERSION:
            raise FrameError(f"unsupported TLF version {version}")
        try:
            frame_kind = FrameKind(kind)
        except ValueError:
            raise FrameError(f"unknown frame kind {kind}") from None
        return cls(frame_kind, body[1], body[HEADER_LEN:])

    @classmethod
    def from_bytes(cls, data: bytes) -> LinkFrame:
        """Parse exactly one wire frame (the trailing 0x00 is optional)."""
        if data.endswith(DELIMITER):
            data = data[:-1]
        if len(data) > MAX_ENCODED:
            raise FrameTooLarge(f"encoded frame of {len(data)} octets > {MAX_ENCODED}")
        return cls.from_packet(cobs.decode(data))


class FrameDecoder:
    """Incremental TLF-1 decoder: feed any chunks, get whole frames.

    Never raises on bad input.  A frame that fails to decode (garbage, bad CRC, too
    long) is dropped and counted in :attr:`errors`; decoding resumes after the next
    0x00 delimiter.  Empty frames (back-to-back delimiters) are idle fill, not errors.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._overflow = False
        self.errors = 0
        self.last_error: FrameError | None = None

    @property
    def pending(self) -> int:
        """Octets held for a frame whose delimiter has not arrived yet."""
        return len(self._buffer)

    def reset(self) -> None:
        """Drop any partial frame (e.g. one that went stale on the line)."""
        if self._buffer or self._overflow:
            _LOGGER.debug("dropping partial frame of %d octets", len(self._buffer))
        self._buffer.clear()
        self._overflow = False

    def feed(self, data: bytes) -> list[LinkFrame]:
        frames: list[LinkFrame] = []
        start = 0
        while start <= len(data):
            end = data.find(0, start)
            chunk = data[start:] if end < 0 else data[start:end]
            if not self._overflow:
                self._buffer += chunk
                if len(self._buffer) > MAX_ENCODED:
                    self._error(FrameTooLarge(f"no delimiter within {MAX_ENCODED} octets"))
                    self._buffer.clear()
                    self._overflow = True
            if end < 0:
                break
            if self._overflow:
                self._overflow = False
            elif self._buffer:
                frame = self._decode(bytes(self._buffer))
                if frame is not None:
                    frames.append(frame)
            self._buffer.clear()
            start = end + 1
        return frames

    def _decode(self, encoded: bytes) -> LinkFrame | None:
        try:
            return LinkFrame.from_packet(cobs.decode(encoded))
        except FrameError as err:
            self._error(err)
            return None

    def _error(self, err: FrameError) -> None:
        self.errors += 1
        self.last_error = err
        _LOGGER.debug("dropped frame: %s", err)
