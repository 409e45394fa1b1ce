"""Exception hierarchy of the ``xep`` package.

Every error raised on purpose by ``xep`` derives from :class:`XepError`:

* :class:`StanzaError` (also a :class:`ValueError`): a payload from the wire is malformed.
* :class:`ReadoutError`: the peer refused or failed a read-out with an XMPP stanza error.
* :class:`ReadoutTimeout` (also a :class:`TimeoutError`): a read-out did not finish in time.
"""

from __future__ import annotations

__all__ = ["ReadoutError", "ReadoutTimeout", "StanzaError", "XepError"]


class XepError(Exception):
    """Base class of every error raised by ``xep``."""


class StanzaError(XepError, ValueError):
    """A received payload is malformed (bad attribute, unknown element, limit exceeded...)."""


class ReadoutError(XepError):
    """The device answered a read-out request with an error.

    ``condition`` is the RFC 6120 stanza error condition (``"forbidden"``, ``"item-not-found"``,
    ``"bad-request"``, ...), or ``"undefined-condition"`` when the peer sent none (legacy
    ``<rejected>`` replies). ``text`` is the human-readable explanation, possibly empty.
    """

    def __init__(self, condition: str, text: str = "") -> None:
        super().__init__(condition, text)
        self.condition = condition
        self.text = text

    def __str__(self) -> str:
        return f"{self.condition}: {self.text}" if self.text else self.condition


class ReadoutTimeout(XepError, TimeoutError):
    """A read-out did not complete (no ``done``) within the requested time."""
