"""RFC 3842 message-summary bodies (sipstack.mwi)."""

from __future__ import annotations

import contextlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipstack.errors import SipBodyError, SipValueError
from sipstack.mwi import (
    ALARM_CLASS,
    CONTENT_TYPE,
    EVENT_PACKAGE,
    MAX_SUMMARY_BYTES,
    MessageClass,
    MessageCounts,
    MessageSummary,
    alarm_summary,
    build_message_summary,
    parse_message_summary,
)

# The body PUBLISHed to Kamailio presence_mwi and read back by a fetch (digest §2.7): 109 bytes.
VERIFIED_BODY = (
    b"Messages-Waiting: yes\r\n"
    b"Message-Account: sip:alice@example.test\r\n"
    b"Voice-Message: 2/8 (0/2)\r\n"
    b"Text-Message: 1/0\r\n"
)


def test_verified_body_is_built_exactly() -> None:
    summary = MessageSummary(
        waiting=True,
        account="sip:alice@example.test",
        counts={
            MessageClass.VOICE: MessageCounts(2, 8, 0, 2),
            MessageClass.TEXT: MessageCounts(1, 0),
        },
    )
    body = build_message_summary(summary)
    assert body == VERIFIED_BODY
    assert len(body) == 109
    assert (CONTENT_TYPE, EVENT_PACKAGE) == (
        "application/simple-message-summary",
        "message-summary",
    )


def test_verified_body_parses() -> None:
    summary = parse_message_summary(VERIFIED_BODY)
    assert summary == MessageSummary(
        True,
        "sip:alice@example.test",
        {MessageClass.VOICE: MessageCounts(2, 8, 0, 2), MessageClass.TEXT: MessageCounts(1, 0)},
    )


def test_no_messages_waiting() -> None:
    summary = MessageSummary.of(
        "sip:boiler@things.example.org", {MessageClass.VOICE: MessageCounts(0, 3)}
    )
    assert not summary.waiting
    assert build_message_summary(summary) == (
        b"Messages-Waiting: no\r\n"
        b"Message-Account: sip:boiler@things.example.org\r\n"
        b"Voice-Message: 0/3\r\n"
    )
    assert MessageSummary.of(None, {MessageClass.VOICE: MessageCounts(1, 0, 1, 0)}).waiting
    assert build_message_summary(MessageSummary(False)) == b"Messages-Waiting: no\r\n"


def test_tolerant_parsing() -> None:
    body = (
        b"\r\nmessages-waiting:YES\n"
        b"message-account:   sip:a@b.test  \n"
        b"X-Vendor: ignored\n"
        b"voice-message: 3 / 4 ( 1 / 0 )\n"
        b"FAX-MESSAGE: 0/1\n"
        b"None: 2/2\n"
        b"\n"
        b"To: <sip:a@b.test>\n"
        b"Subject: per-message headers are skipped\n"
    )
    summary = parse_message_summary(body)
    assert summary == MessageSummary(
        True,
        "sip:a@b.test",
        {
            MessageClass.VOICE: MessageCounts(3, 4, 1, 0),
            MessageClass.FAX: MessageCounts(0, 1),
            MessageClass.NONE: MessageCounts(2, 2),
        },
    )
    assert parse_message_summary(b"") is None
    assert parse_message_summary(b"\r\n") is None


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"Voice-Message: 1/0\r\n", 400),
        (b"Messages-Waiting: maybe\r\n", 400),
        (b"Messages-Waiting: yes\r\nVoice-Message: one/two\r\n", 400),
        (b"Messages-Waiting: yes\r\nVoice-Message: 1/2 (3)\r\n", 400),
        (b"Messages-Waiting: yes\r\nVoice-Message: 1234567890/0\r\n", 400),
        (b"Messages-Waiting: yes\r\nno colon here\r\n", 400),
        (b"Messages-Waiting: yes\r\n\xff\xfe", 400),
        (b"Messages-Waiting: yes\r\n" + b"X: y\r\n" * (MAX_SUMMARY_BYTES // 6), 413),
    ],
)
def test_invalid_bodies(body: bytes, status: int) -> None:
    with pytest.raises(SipBodyError) as caught:
        parse_message_summary(body)
    assert caught.value.status == status


def test_builder_validation() -> None:
    with pytest.raises(SipValueError):
        MessageCounts(-1, 0)
    with pytest.raises(SipValueError):
        build_message_summary(
            MessageSummary(True, None, {MessageClass.VOICE: MessageCounts(1, 0, 2, 0)})
        )
    with pytest.raises(SipValueError):
        build_message_summary(MessageSummary(True, "sip:a@b.test\r\nInjected: 1"))
    with pytest.raises(SipValueError):
        build_message_summary(MessageSummary(True, ""))


COUNTS = st.builds(
    lambda new, old, nu, ou: MessageCounts(new, old, min(nu, new), min(ou, old)),
    st.integers(0, 10_000),
    st.integers(0, 10_000),
    st.integers(0, 10_000),
    st.integers(0, 10_000),
)


@settings(max_examples=200, deadline=None)
@given(
    account=st.none() | st.from_regex(r"sips?:[a-z0-9._-]{1,12}@[a-z0-9.-]{1,20}", fullmatch=True),
    counts=st.dictionaries(st.sampled_from(list(MessageClass)), COUNTS, max_size=6),
)
def test_round_trip(account: str | None, counts: dict[MessageClass, MessageCounts]) -> None:
    summary = MessageSummary.of(account, counts)
    assert parse_message_summary(build_message_summary(summary)) == summary


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bodies_only_raise_body_errors(body: bytes) -> None:
    with contextlib.suppress(SipBodyError):
        parse_message_summary(body)
    with contextlib.suppress(SipBodyError):
        parse_message_summary(b"Messages-Waiting: yes\r\n" + body)


def test_alarm_summary_always_has_the_urgent_part() -> None:
    body = alarm_summary("sip:boiler-temp@things.example.org", 0, 3)
    assert body == (
        b"Messages-Waiting: no\r\n"
        b"Message-Account: sip:boiler-temp@things.example.org\r\n"
        b"Voice-Message: 0/3 (0/0)\r\n"
    )
    assert (
        alarm_summary(None, 2, 8, 1, 2) == b"Messages-Waiting: yes\r\nVoice-Message: 2/8 (1/2)\r\n"
    )
    # The verified SIPp fetch reads the line with this pattern (digest §5.2, MWI scenarios).
    pattern = re.compile(rb"Voice-Message: ([0-9]+)/([0-9]+) \(([0-9]+)/([0-9]+)\)")
    match = pattern.search(alarm_summary("sip:a@b.test", 4, 0))
    assert match is not None
    assert match.groups() == (b"4", b"0", b"0", b"0")
    summary = parse_message_summary(body)
    assert summary is not None
    assert summary.counts[ALARM_CLASS] == MessageCounts(0, 3)
    with pytest.raises(SipValueError):
        alarm_summary(None, 1, 0, 2, 0)
