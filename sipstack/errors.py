"""Exception family of the ``sipstack`` package.

Every error raised on purpose by ``sipstack`` derives from :class:`SipError`:

* :class:`SipParseError` (also a :class:`ValueError`): bytes or a header value from the wire are
  malformed. ``status`` is the response a server should send (400 unless a subclass or the raiser
  says otherwise); a datagram that cannot be answered is simply dropped.

  * :class:`SipLimitError`: a size limit was exceeded (413 for a body, 513 for the header part).
  * :class:`SipVersionError`: the SIP version is not ``SIP/2.0`` (505).
  * :class:`SipUriError`: a bad URI (400), or a scheme we do not handle (416).
  * :class:`SipFramingError`: a TCP/TLS byte stream cannot be cut into messages; the connection
    must be closed (after a best-effort error response).
  * :class:`SipBodyError`: a message body (PIDF, message-summary) is malformed.

* :class:`SipValueError` (also a :class:`ValueError`): a value handed to a builder or serialiser
  cannot be put on the wire (a CR/LF in a header value, a naive datetime, a bad token...).
* :class:`DigestError`: digest authentication cannot proceed (no supported algorithm or qop).
"""

from __future__ import annotations

__all__ = [
    "DigestError",
    "SipBodyError",
    "SipError",
    "SipFramingError",
    "SipLimitError",
    "SipParseError",
    "SipUriError",
    "SipValueError",
    "SipVersionError",
]


class SipError(Exception):
    """Base class of every error raised by ``sipstack``."""


class SipParseError(SipError, ValueError):
    """Malformed input from the wire; ``status`` is the suggested response status code."""

    default_status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = self.default_status if status is None else status

    def __str__(self) -> str:
        return f"{self.status}: {self.message}"


class SipLimitError(SipParseError):
    """A size or count limit was exceeded (413 for a body, 513 for the headers)."""

    default_status = 513


class SipVersionError(SipParseError):
    """The start line names a SIP version other than 2.0."""

    default_status = 505


class SipUriError(SipParseError):
    """A malformed URI (400) or an unsupported URI scheme (416)."""


class SipFramingError(SipParseError):
    """A byte stream cannot be framed any further; close the connection."""


class SipBodyError(SipParseError):
    """A message body (PIDF, message-summary...) is malformed."""


class SipValueError(SipError, ValueError):
    """A value given to a builder or serialiser cannot be represented on the wire."""


class DigestError(SipError):
    """Digest authentication cannot proceed (unsupported algorithm or qop, bad parameters)."""
