"""RFC 3842 message-summary bodies (``Event: message-summary``, message-waiting indication).

Pure module. The body is CRLF-terminated text::

    Messages-Waiting: yes
    Message-Account: sip:alice@example.test
    Voice-Message: 2/8 (0/2)
    Text-Message: 1/0

Each summary line is a message-context class (RFC 3458) with ``new/old`` counts and optional
``(new-urgent/old-urgent)`` counts, which are subsets of new and old. :func:`build_message_summary`
writes exactly that form (by default the urgent part only when an urgent count is non-zero, as in
the body verified against Kamailio presence_mwi); :func:`parse_message_summary` reads it, ignoring
unknown header lines and the optional per-message headers after a blank line.

Alarms are counted in :data:`ALARM_CLASS` (``Voice-Message``): it is the class phones light
their message lamp for, and the one the verified SIPp fetch reads with a pattern that requires
the ``(new-urgent/old-urgent)`` part, so :func:`alarm_summary` always writes it.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from sipstack.errors import SipBodyError, SipValueError

__all__ = [
    "ALARM_CLASS",
    "CONTENT_TYPE",
    "EVENT_PACKAGE",
    "MAX_SUMMARY_BYTES",
    "MessageClass",
    "MessageCounts",
    "MessageSummary",
    "alarm_summary",
    "build_message_summary",
    "parse_message_summary",
]

CONTENT_TYPE = "application/simple-message-summary"
EVENT_PACKAGE = "message-summary"
MAX_SUMMARY_BYTES = 16 * 1024
_MAX_COUNT = 999_999_999


class MessageClass(StrEnum):
    """Message-context classes (RFC 3458 §4.2), spelled as summary line names."""

    VOICE = "Voice-Message"
    FAX = "Fax-Message"
    PAGER = "Pager-Message"
    MULTIMEDIA = "Multimedia-Message"
    TEXT = "Text-Message"
    NONE = "None"


#: The class the bridge counts a thing's pending alarms in.
ALARM_CLASS = MessageClass.VOICE

_CLASS_BY_KEY = {member.value.lower(): member for member in MessageClass}
_COUNTS = re.compile(
    r"(?P<new>[0-9]{1,9})[ \t]*/[ \t]*(?P<old>[0-9]{1,9})"
    r"(?:[ \t]*\([ \t]*(?P<new_urgent>[0-9]{1,9})[ \t]*/[ \t]*(?P<old_urgent>[0-9]{1,9})[ \t]*\))?"
)
_LINE_BREAK = re.compile(r"\r?\n")


@dataclass(frozen=True)
class MessageCounts:
    new: int
    old: int
    new_urgent: int = 0
    old_urgent: int = 0

    def __post_init__(self) -> None:
        for value in (self.new, self.old, self.new_urgent, self.old_urgent):
            if not 0 <= value <= _MAX_COUNT:
                raise SipValueError(f"message count out of range: {value}")

    def __str__(self) -> str:
        return self.format()

    def format(self, *, urgent: bool | None = None) -> str:
        """``new/old (new-urgent/old-urgent)``; the urgent part when non-zero, or as ``urgent``."""
        text = f"{self.new}/{self.old}"
        if urgent or (urgent is None and (self.new_urgent or self.old_urgent)):
            text += f" ({self.new_urgent}/{self.old_urgent})"
        return text


@dataclass(frozen=True)
class MessageSummary:
    """A message summary. ``counts`` maps classes to counts, in output order."""

    waiting: bool
    account: str | None = None
    counts: Mapping[MessageClass, MessageCounts] = field(default_factory=dict)

    @classmethod
    def of(
        cls, account: str | None, counts: Mapping[MessageClass, MessageCounts]
    ) -> MessageSummary:
        """A summary whose ``waiting`` flag is "any new message in any class"."""
        waiting = any(item.new > 0 for item in counts.values())
        return cls(waiting, account, dict(counts))


def alarm_summary(
    account: str | None, new: int, old: int, new_urgent: int = 0, old_urgent: int = 0
) -> bytes:
    """The body for a thing's alarm mailbox: ``Voice-Message: n/o (nu/ou)``, urgent part always.

    ``new``/``old`` are unacknowledged/acknowledged alarms, the urgent counts their subsets of
    high severity; ``Messages-Waiting`` is ``yes`` while any alarm is new.
    """
    summary = MessageSummary.of(
        account, {ALARM_CLASS: MessageCounts(new, old, new_urgent, old_urgent)}
    )
    return build_message_summary(summary, always_urgent=(ALARM_CLASS,))


def build_message_summary(
    summary: MessageSummary, *, always_urgent: Collection[MessageClass] = ()
) -> bytes:
    """The ``application/simple-message-summary`` body for ``summary``.

    Classes in ``always_urgent`` get the ``(new-urgent/old-urgent)`` part even when both are 0.
    """
    lines = [f"Messages-Waiting: {'yes' if summary.waiting else 'no'}"]
    if summary.account is not None:
        if not summary.account or any(char.isspace() for char in summary.account):
            raise SipValueError(f"bad message account {summary.account!r}")
        lines.append(f"Message-Account: {summary.account}")
    for message_class, counts in summary.counts.items():
        if counts.new_urgent > counts.new or counts.old_urgent > counts.old:
            raise SipValueError(f"urgent counts exceed the totals for {message_class}: {counts}")
        cls = MessageClass(message_class)
        lines.append(f"{cls.value}: {counts.format(urgent=True if cls in always_urgent else None)}")
    return "".join(f"{line}\r\n" for line in lines).encode("utf-8")


def parse_message_summary(body: bytes) -> MessageSummary | None:
    """Read a message-summary body; None for an empty body.

    Raises :class:`SipBodyError` when the first line is not ``Messages-Waiting: yes|no`` or a
    summary line has malformed counts.
    """
    if len(body) > MAX_SUMMARY_BYTES:
        raise SipBodyError("message-summary body too large", status=413)
    if not body.strip():
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SipBodyError("message-summary body is not UTF-8") from None
    lines = _LINE_BREAK.split(text.lstrip("\r\n"))
    name, _, value = lines[0].partition(":")
    flag = value.strip(" \t").lower()
    if name.strip(" \t").lower() != "messages-waiting" or flag not in ("yes", "no"):
        raise SipBodyError(f"message-summary must start with Messages-Waiting: {lines[0][:80]!r}")
    account: str | None = None
    counts: dict[MessageClass, MessageCounts] = {}
    for line in lines[1:]:
        if not line.strip(" \t"):
            break  # optional per-message headers follow; we do not use them
        name, colon, value = line.partition(":")
        key = name.strip(" \t").lower()
        value = value.strip(" \t")
        if not colon:
            raise SipBodyError(f"bad message-summary line {line[:80]!r}")
        if key == "message-account":
            account = value or None
            continue
        message_class = _CLASS_BY_KEY.get(key)
        if message_class is None:
            continue
        match = _COUNTS.fullmatch(value)
        if match is None:
            raise SipBodyError(f"bad counts for {name.strip()}: {value[:80]!r}")
        counts[message_class] = MessageCounts(
            int(match["new"]),
            int(match["old"]),
            int(match["new_urgent"] or 0),
            int(match["old_urgent"] or 0),
        )
    return MessageSummary(flag == "yes", account, counts)
