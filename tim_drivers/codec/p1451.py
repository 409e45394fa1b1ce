"""IEEE 1451.0-2007 NCAP<->TIM messages (ieee1451.md §2 and §3).

Command (NCAP -> TIM), Table 12::

    UInt16 dest channel | UInt8 class | UInt8 function | UInt16 length | args

Reply (TIM -> NCAP), Table 13::

    UInt8 success | UInt16 length | data

TIM-initiated (TIM -> NCAP), Table 14: the command layout with the *source* channel.
All integers are big-endian.  A length field that disagrees with the octets present
raises :class:`~tim_drivers.errors.LengthMismatch` (a :class:`FrameError`).
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Self

from tim_drivers.errors import FrameError, LengthMismatch, TruncatedFrame

_LOGGER = logging.getLogger(__name__)

TIM_CHANNEL = 0x0000  # the TIM itself
GLOBAL_CHANNEL = 0xFFFF  # all channels
FIRST_ADDRESS_GROUP = 0x8000  # 0x8000..0xFFFE: AddressGroups (multicast to their members)
LAST_ADDRESS_GROUP = 0xFFFE
UNSUPPORTED_OFFSET = 0xFFFFFFFF  # Read TEDS segment reply: TEDS virtual/unsupported/invalid


class CommandClass(IntEnum):
    """Table 15."""

    COMMON = 1
    XDCR_IDLE = 2
    XDCR_OPERATE = 3
    XDCR_EITHER = 4
    TIM_SLEEP = 5
    TIM_ACTIVE = 6
    ANY_STATE = 7


class CommonCmd(IntEnum):
    """Class 1 functions (Table 16)."""

    QUERY_TEDS = 1
    READ_TEDS_SEGMENT = 2
    WRITE_TEDS_SEGMENT = 3
    UPDATE_TEDS = 4
    READ_STATUS_EVENT = 8


class XdcrIdleCmd(IntEnum):
    """Class 2 functions used by the NCAP (Table 25)."""

    ADDRESS_GROUP_DEFINITION = 3


class XdcrOperateCmd(IntEnum):
    """Class 3 functions (Table 31)."""

    READ_DATA_SET_SEGMENT = 1
    WRITE_DATA_SET_SEGMENT = 2
    TRIGGER = 3
    ABORT_TRIGGER = 4


class XdcrEitherCmd(IntEnum):
    """Class 4 functions used by the NCAP."""

    OPERATE = 1
    IDLE = 2


class AnyStateCmd(IntEnum):
    """Class 7 functions."""

    RESET = 1


class TedsAccessCode(IntEnum):
    """Table 17."""

    META = 1
    META_ID = 2
    CHANNEL = 3
    CHANNEL_ID = 4
    CALIBRATION = 5
    CALIBRATION_ID = 6
    EUAS = 7
    FREQ_RESPONSE = 8
    TRANSFER = 9
    COMMANDS = 10
    TITLE = 11
    USER_NAME = 12
    PHY = 13
    GEO_LOCATION = 14
    UNITS_EXTENSION = 15


class TedsAttribute(IntEnum):
    """Bits of the Query TEDS reply's attribute octet (Table 19)."""

    READ_ONLY = 0x01
    NOT_AVAILABLE = 0x02
    INVALID = 0x04
    VIRTUAL = 0x08
    TEXT = 0x10
    ADAPTIVE = 0x20
    MANUFACTURER = 0x40


class NakReason(IntEnum):
    """Reason octet of a TLF-1 link NAK (ieee1451.md §12.2)."""

    CRC = 1
    LENGTH = 2
    BUSY = 3
    UNKNOWN_COMMAND = 4


# (class, function) pairs whose "reply expected" column is Yes (Tables 16, 25, 31, §3.5-3.6).
# Every other command is answered with a link ACK on TLF-1.
_REPLY_EXPECTED: frozenset[tuple[int, int]] = frozenset(
    {(1, 1), (1, 2), (1, 4), (1, 7), (1, 8), (1, 9), (1, 12), (2, 10), (2, 11), (3, 1)}
    | {(4, fn) for fn in range(4, 16)}
    | {(6, 1), (6, 5)}
)


def reply_expected(cmd_class: int, function: int) -> bool:
    """True when the 1451.0 tables say the command gets a reply message."""
    return (cmd_class, function) in _REPLY_EXPECTED


def _check_u8(name: str, value: int) -> None:
    if not 0 <= value <= 0xFF:
        raise ValueError(f"{name} {value} outside 0..255")


def _check_u16(name: str, value: int) -> None:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{name} {value} outside 0..65535")


def _pack_addressed(channel: int, cmd_class: int, function: int, args: bytes) -> bytes:
    _check_u16("channel", channel)
    _check_u8("command class", cmd_class)
    _check_u8("function", function)
    _check_u16("argument length", len(args))
    return struct.pack(">HBBH", channel, cmd_class, function, len(args)) + args


def _unpack_addressed(data: bytes) -> tuple[int, int, int, bytes]:
    if len(data) < 6:
        raise TruncatedFrame(f"1451.0 message of {len(data)} octets < 6-octet header")
    channel, cmd_class, function, length = struct.unpack_from(">HBBH", data)
    if length != len(data) - 6:
        raise LengthMismatch(f"length field {length} but {len(data) - 6} octets follow")
    return channel, cmd_class, function, data[6:]


@dataclass(frozen=True, slots=True)
class _AddressedMessage:
    """The Table 12 / Table 14 layout: a channel, class, function and arguments."""

    channel: int
    cmd_class: int
    function: int
    args: bytes = b""

    def __post_init__(self) -> None:
        _pack_addressed(self.channel, self.cmd_class, self.function, self.args)

    def to_bytes(self) -> bytes:
        return _pack_addressed(self.channel, self.cmd_class, self.function, self.args)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        return cls(*_unpack_addressed(data))


@dataclass(frozen=True, slots=True)
class Command(_AddressedMessage):
    """Command message, NCAP -> TIM (Table 12); ``channel`` is the destination channel."""

    @property
    def reply_expected(self) -> bool:
        return reply_expected(self.cmd_class, self.function)


@dataclass(frozen=True, slots=True)
class TimInitiated(_AddressedMessage):
    """TIM-initiated message (Table 14); ``channel`` is the source channel."""


@dataclass(frozen=True, slots=True)
class Reply:
    """Reply message, TIM -> NCAP (Table 13).  Any non-zero flag octet means success."""

    success: bool
    data: bytes = b""

    def __post_init__(self) -> None:
        _check_u16("reply length", len(self.data))

    def to_bytes(self) -> bytes:
        return struct.pack(">BH", 1 if self.success else 0, len(self.data)) + self.data

    @classmethod
    def from_bytes(cls, data: bytes) -> Reply:
        if len(data) < 3:
            raise TruncatedFrame(f"reply of {len(data)} octets < 3-octet header")
        flag, length = struct.unpack_from(">BH", data)
        if length != len(data) - 3:
            raise LengthMismatch(f"length field {length} but {len(data) - 3} octets follow")
        return cls(flag != 0, data[3:])


# --- command builders (§3.7 minimal subset) -------------------------------------------


def query_teds(channel: int, code: int) -> Command:
    _check_u8("TEDS access code", code)
    return Command(channel, CommandClass.COMMON, CommonCmd.QUERY_TEDS, bytes((code,)))


def read_teds_segment(channel: int, code: int, offset: int = 0) -> Command:
    _check_u8("TEDS access code", code)
    args = struct.pack(">BI", code, offset)
    return Command(channel, CommandClass.COMMON, CommonCmd.READ_TEDS_SEGMENT, args)


def write_teds_segment(channel: int, code: int, offset: int, data: bytes) -> Command:
    _check_u8("TEDS access code", code)
    args = struct.pack(">BI", code, offset) + data
    return Command(channel, CommandClass.COMMON, CommonCmd.WRITE_TEDS_SEGMENT, args)


def update_teds(channel: int, code: int) -> Command:
    _check_u8("TEDS access code", code)
    return Command(channel, CommandClass.COMMON, CommonCmd.UPDATE_TEDS, bytes((code,)))


def read_status_event(channel: int) -> Command:
    return Command(channel, CommandClass.COMMON, CommonCmd.READ_STATUS_EVENT)


def operate(channel: int) -> Command:
    return Command(channel, CommandClass.XDCR_EITHER, XdcrEitherCmd.OPERATE)


def idle(channel: int) -> Command:
    return Command(channel, CommandClass.XDCR_EITHER, XdcrEitherCmd.IDLE)


def trigger(channel: int) -> Command:
    return Command(channel, CommandClass.XDCR_OPERATE, XdcrOperateCmd.TRIGGER)


def read_data_set(channel: int, offset: int = 0) -> Command:
    args = struct.pack(">I", offset)
    return Command(channel, CommandClass.XDCR_OPERATE, XdcrOperateCmd.READ_DATA_SET_SEGMENT, args)


def write_data_set(channel: int, offset: int, data: bytes) -> Command:
    args = struct.pack(">I", offset) + data
    return Command(channel, CommandClass.XDCR_OPERATE, XdcrOperateCmd.WRITE_DATA_SET_SEGMENT, args)


def reset(channel: int = TIM_CHANNEL) -> Command:
    return Command(channel, CommandClass.ANY_STATE, AnyStateCmd.RESET)


# --- reply-dependent octets ----------------------------------------------------------


_TEDS_INFO = struct.Struct(">BBIHI")


@dataclass(frozen=True, slots=True)
class TedsInfo:
    """Query TEDS reply (Table 18)."""

    attributes: int
    status: int
    size: int
    checksum: int
    max_size: int

    @property
    def available(self) -> bool:
        return not self.attributes & (TedsAttribute.NOT_AVAILABLE | TedsAttribute.INVALID)

    def to_bytes(self) -> bytes:
        return _TEDS_INFO.pack(
            self.attributes, self.status, self.size, self.checksum, self.max_size
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> TedsInfo:
        if len(data) != _TEDS_INFO.size:
            raise LengthMismatch(f"Query TEDS reply of {len(data)} octets, expected 12")
        return cls(*_TEDS_INFO.unpack(data))


@dataclass(frozen=True, slots=True)
class Segment:
    """Read TEDS segment / Read data-set segment reply: UInt32 offset + octets."""

    offset: int
    data: bytes = b""

    def to_bytes(self) -> bytes:
        return struct.pack(">I", self.offset) + self.data

    @classmethod
    def from_bytes(cls, data: bytes) -> Segment:
        if len(data) < 4:
            raise TruncatedFrame(f"segment reply of {len(data)} octets < 4-octet offset")
        return cls(int.from_bytes(data[:4], "big"), data[4:])


def parse_segment_args(args: bytes, *, with_code: bool) -> tuple[int, int, bytes]:
    """Split Read/Write TEDS (``with_code``) or data-set segment arguments.

    Returns ``(access_code, offset, data)``; ``access_code`` is 0 without ``with_code``.
    """
    head = 5 if with_code else 4
    if len(args) < head:
        raise FrameError(f"segment arguments of {len(args)} octets < {head}")
    if with_code:
        code, offset = struct.unpack_from(">BI", args)
    else:
        code, (offset,) = 0, struct.unpack_from(">I", args)
    return code, offset, args[head:]


def is_address_group(address: int) -> bool:
    return FIRST_ADDRESS_GROUP <= address <= LAST_ADDRESS_GROUP


def define_address_group(channel: int, group: int) -> Command:
    """Make an Idle *channel* a member of AddressGroup *group* (no reply)."""
    if not is_address_group(group):
        raise ValueError(f"{group:#06x} is not an AddressGroup address")
    return Command(
        channel,
        CommandClass.XDCR_IDLE,
        XdcrIdleCmd.ADDRESS_GROUP_DEFINITION,
        group.to_bytes(2, "big"),
    )
