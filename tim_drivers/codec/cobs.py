"""Consistent Overhead Byte Stuffing (COBS).

``encode`` turns any octet string into one without 0x00, so 0x00 can delimit frames.
The delimiter itself is not part of the encoded data here; :mod:`.framing` adds it.
"""

from __future__ import annotations

import logging

from tim_drivers.errors import FrameError, TruncatedFrame

_LOGGER = logging.getLogger(__name__)

_MAX_BLOCK = 254  # non-zero octets per block; the block code is then 0xFF


def encode(data: bytes) -> bytes:
    """Return the COBS encoding of ``data`` (never contains 0x00, one octet longer at least)."""
    out = bytearray()
    block = bytearray()
    for octet in data:
        if octet == 0:
            out.append(len(block) + 1)
            out += block
            block.clear()
            continue
        block.append(octet)
        if len(block) == _MAX_BLOCK:
            out.append(0xFF)
            out += block
            block.clear()
    out.append(len(block) + 1)
    out += block
    return bytes(out)


def decode(data: bytes) -> bytes:
    """Invert :func:`encode`; raise :class:`FrameError` on anything ``encode`` cannot produce."""
    if not data:
        raise TruncatedFrame("empty COBS packet")
    out = bytearray()
    pos = 0
    end = len(data)
    while pos < end:
        code = data[pos]
        if code == 0:
            raise FrameError(f"0x00 inside COBS packet at offset {pos}")
        block_end = pos + code
        if block_end > end:
            raise TruncatedFrame(f"COBS block at offset {pos} needs {code - 1} octets")
        block = data[pos + 1 : block_end]
        if 0 in block:
            raise FrameError("0x00 inside COBS block")
        out += block
        pos = block_end
        if code != 0xFF and pos < end:
            out.append(0)
    return bytes(out)
