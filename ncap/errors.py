"""Exception hierarchy of the ``ncap`` application package."""

from __future__ import annotations


class NcapError(Exception):
    """Base class of every error raised by ``ncap``."""


class ConfigError(NcapError):
    """A configuration value is missing or invalid.

    ``key`` names the offending setting (e.g. ``"xmpp.jid"``) and ``problem`` says what is wrong
    with it.
    """

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(key, problem)
        self.key = key
        self.problem = problem

    def __str__(self) -> str:
        return f"{self.key}: {self.problem}"


class RigError(NcapError):
    """The test/demo rig (private Prosody, pty pair, ...) could not be set up or torn down."""


class XmppConnectError(NcapError):
    """No XMPP session could be established (TLS not trusted, login refused, unreachable)."""


class QrError(NcapError):
    """A QR code could not be made, written or read (text too long, unreadable or blank image)."""
