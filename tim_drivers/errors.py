"""The one exception family of :mod:`tim_drivers`.

Every error raised by this package derives from :class:`TimError`.  Some also derive from
a built-in so that generic handlers keep working (``except TimeoutError`` catches
:class:`TimTimeout`, ``except ValueError`` catches malformed input).
"""

from __future__ import annotations

import logging

_LOGGER = logging.getLogger(__name__)


class TimError(Exception):
    """Base class of every error raised by ``tim_drivers``."""


class FrameError(TimError, ValueError):
    """Malformed bytes on the wire (link frame or 1451.0 message)."""


class CrcError(FrameError):
    """A link frame whose CRC-16 does not match its content."""


class TruncatedFrame(FrameError):
    """Fewer octets than the structure (or its length field) needs."""


class FrameTooLarge(FrameError):
    """A frame or payload above the TLF-1 maximum."""


class LengthMismatch(FrameError):
    """A 1451.0 length field that disagrees with the octets actually present."""


class UnexpectedReply(FrameError):
    """A well-formed frame that is not a valid answer to the command sent."""


class TedsError(TimError, ValueError):
    """A TEDS block that cannot be parsed (length, checksum, field encoding)."""


class ProfileError(TimError, ValueError):
    """An invalid TIM simulator profile; the message names the offending key."""


class TimTimeout(TimError, TimeoutError):
    """The TIM did not answer in time, retries included."""


class TimUnavailable(TimError, ConnectionError):
    """The link to the TIM cannot be opened or was lost."""


class CommandFailed(TimError):
    """The TIM refused a command: a reply with success flag 0, or a link NAK.

    ``reason`` is the NAK reason octet (``None`` for a failed reply); ``data`` holds the
    reply-dependent octets of a failed reply.
    """

    def __init__(self, message: str, *, reason: int | None = None, data: bytes = b"") -> None:
        super().__init__(message)
        self.reason = reason
        self.data = data


class RegisterCodecError(TimError, ValueError):
    """A Modbus value that does not fit its register format, or registers of the wrong count."""


class DeviceProfileError(ProfileError):
    """An invalid Modbus device profile; the message names the offending key."""


class BusSettingsError(TimError, ValueError):
    """Invalid Modbus bus settings (kind, port, serial framing, timeouts)."""


class ModbusExceptionReply(TimError):
    """A Modbus slave answered with an exception response; ``code`` is its exception code.

    Code 2 (illegal data address) is what the read planner learns from.
    """

    def __init__(self, message: str, *, code: int) -> None:
        super().__init__(message)
        self.code = code


class SlaveSilent(TimTimeout):
    """A Modbus slave is backed off after consecutive timeouts; nothing was sent."""


class WriteRefused(TimError):
    """A write to a channel the device profile does not declare writable."""


class WriteVerifyFailed(TimError):
    """A written value did not read back as written."""
