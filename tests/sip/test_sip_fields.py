"""Typed header values (sipstack.fields): Via, name-addr, CSeq, Event, Subscription-State,
entity tags, caller preferences, identifiers."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipstack.errors import SipParseError, SipValueError
from sipstack.fields import (
    BRANCH_COOKIE,
    MAX_DELTA_SECONDS,
    ContactPreference,
    CSeq,
    Event,
    NameAddr,
    SubscriptionState,
    Via,
    new_branch,
    new_call_id,
    new_tag,
    parse_call_id,
    parse_delta_seconds,
    parse_etag,
    parse_max_forwards,
)
from sipstack.headers import format_params, parse_params, quote_string, split_list, unquote_string
from sipstack.uri import SipUri

# -- Via -------------------------------------------------------------------------------------------


def test_via_parse_and_format() -> None:
    via = Via.parse("SIP/2.0/UDP 127.0.0.1:5091;received=127.0.0.1;rport=5091;branch=z9hG4bK-7-2-0")
    assert (via.transport, via.host, via.port) == ("UDP", "127.0.0.1", 5091)
    assert via.branch == "z9hG4bK-7-2-0"
    assert via.rfc3261_branch
    assert (via.received, via.rport, via.has_rport) == ("127.0.0.1", 5091, True)
    assert (
        str(via) == "SIP/2.0/UDP 127.0.0.1:5091;received=127.0.0.1;rport=5091;branch=z9hG4bK-7-2-0"
    )


def test_via_ipv6_and_lws() -> None:
    via = Via.parse("sip / 2.0 / tls [2001:db8::9:1] : 5061 ; branch = z9hG4bKx ; rport")
    assert (via.transport, via.host, via.port) == ("TLS", "2001:db8::9:1", 5061)
    assert via.sent_by == "[2001:db8::9:1]:5061"
    assert via.has_rport
    assert via.rport is None
    assert str(via) == "SIP/2.0/TLS [2001:db8::9:1]:5061;branch=z9hG4bKx;rport"


def test_via_legacy_branch() -> None:
    assert not Via.parse("SIP/2.0/UDP 192.0.2.1").rfc3261_branch
    assert not Via.parse("SIP/2.0/UDP 192.0.2.1;branch=1234").rfc3261_branch


@pytest.mark.parametrize(
    "text",
    [
        "",
        "SIP/2.0 192.0.2.1",
        "SIP/3.0/UDP 192.0.2.1",
        "XMPP/2.0/UDP 192.0.2.1",
        "SIP/2.0/UDP",
        "SIP/2.0/UDP 192.0.2.1:99999",
        "SIP/2.0/UDP 192.0.2.1;rport=abc",
        "SIP/2.0/UDP 192.0.2.1;;",
        "SIP/2.0/UDP 192.0.2.1;branch=a;branch=b",
        "SIP/2.0/UDP 192.0.2.1 junk",
        'SIP/2.0/UDP 192.0.2.1;branch="unterminated',
    ],
)
def test_via_invalid(text: str) -> None:
    with pytest.raises(SipParseError):
        Via.parse(text)


def test_via_stamp_source_rfc3581() -> None:
    via = Via.parse("SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1;rport")
    via.stamp_source("192.0.2.7", 40123)
    assert str(via) == "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1;rport=40123;received=192.0.2.7"
    assert via.response_address() == ("192.0.2.7", 40123)
    same = Via.parse("SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bK2")
    same.stamp_source("192.0.2.7", 5070)
    assert same.received is None
    assert same.response_address() == ("192.0.2.7", 5070)
    named = Via.parse("SIP/2.0/UDP phone.example.test;branch=z9hG4bK3")
    named.stamp_source("192.0.2.8", 5060)
    assert named.received == "192.0.2.8"
    assert named.response_address() == ("192.0.2.8", 5060)
    v6 = Via.parse("SIP/2.0/UDP [2001:db8::1];branch=z9hG4bK4")
    v6.stamp_source("2001:DB8:0::1", 5060)
    assert v6.received is None
    assert Via.parse("SIP/2.0/TLS a.test;branch=z9hG4bK5").response_address(5061) == (
        "a.test",
        5061,
    )
    assert Via.parse("SIP/2.0/UDP a.test;received=[::1]").response_address() == ("::1", 5060)


# -- name-addr -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "uri", "display", "params"),
    [
        ("<sip:sensor1@example.test>", "sip:sensor1@example.test", None, {}),
        (
            '"Boiler \\"room\\"" <sip:boiler@example.test>;tag=ab12',
            "sip:boiler@example.test",
            'Boiler "room"',
            {"tag": "ab12"},
        ),
        ("Alice  Smith <sip:alice@example.test>", "sip:alice@example.test", "Alice Smith", {}),
        ("sip:bob@example.test;tag=x1", "sip:bob@example.test", None, {"tag": "x1"}),
        (
            '<sip:store@ms.example.org:5080>;actor="msg-taker";methods="MESSAGE";expires=3600',
            "sip:store@ms.example.org:5080",
            None,
            {"actor": '"msg-taker"', "methods": '"MESSAGE"', "expires": "3600"},
        ),
        (
            "<sip:a@b.test;lr;transport=tcp>;q=0.5",
            "sip:a@b.test;lr;transport=tcp",
            None,
            {"q": "0.5"},
        ),
        ('"" <tel:+15555550123>', "tel:+15555550123", None, {}),
        (
            "<urn:uuid:6f1c2a8e-3b7d-4c1e-9a55-0d2f4e8b7c11>",
            "urn:uuid:6f1c2a8e-3b7d-4c1e-9a55-0d2f4e8b7c11",
            None,
            {},
        ),
    ],
)
def test_name_addr_parse(
    text: str, uri: str, display: str | None, params: dict[str, str | None]
) -> None:
    value = NameAddr.parse(text)
    assert (value.uri, value.display_name, value.params) == (uri, display, params)
    assert NameAddr.parse(str(value)) == value


def test_name_addr_format_and_tag() -> None:
    value = NameAddr("sip:sensor1@example.test", 'Sensor "1"')
    value.tag = "f00d"
    assert str(value) == '"Sensor \\"1\\"" <sip:sensor1@example.test>;tag=f00d'
    value.tag = None
    assert str(value) == '"Sensor \\"1\\"" <sip:sensor1@example.test>'
    with pytest.raises(SipValueError):
        value.tag = "bad tag"
    assert NameAddr.parse("<sip:a@b.test>;expires=60").expires == 60
    assert NameAddr.parse("<sip:a@b.test>").sip_uri() == SipUri("b.test", "a")


def test_wildcard_contact() -> None:
    star = NameAddr.parse("*", allow_wildcard=True)
    assert star.uri == "*"
    assert str(star) == "*"
    with pytest.raises(SipParseError):
        NameAddr.parse("*")


@pytest.mark.parametrize(
    "text",
    [
        "",
        '"unterminated <sip:a@b.test>',
        '"quoted" sip:a@b.test',
        "<sip:a@b.test",
        "< sip:a@b.test >",
        "Bell, Alexander <sip:a@b.test>",
        "sip:a@b.test?subject=x",
        "not a uri",
        "<sip:a@b.test>;tag",
        "<sip:a@b.test>;tag=1;tag=2",
        "<sip:a@b.test> junk",
    ],
)
def test_name_addr_invalid(text: str) -> None:
    with pytest.raises(SipParseError):
        NameAddr.parse(text)


# -- simple values ---------------------------------------------------------------------------------


def test_cseq() -> None:
    assert CSeq.parse("  0009   SUBSCRIBE ") == CSeq(9, "SUBSCRIBE")
    assert str(CSeq(2**32 - 1, "NOTIFY")) == "4294967295 NOTIFY"
    for bad in ("", "1", "x SUBSCRIBE", "-1 SUBSCRIBE", "4294967296 NOTIFY", "1 BAD METHOD"):
        with pytest.raises(SipParseError):
            CSeq.parse(bad)
    with pytest.raises(SipValueError):
        str(CSeq(-1, "NOTIFY"))


def test_scalars() -> None:
    assert parse_max_forwards(" 0068 ") == 68
    assert parse_max_forwards("0") == 0
    for bad in ("256", "300", "-1", "", "7x", "0" * 10 + "1000"):
        with pytest.raises(SipParseError):
            parse_max_forwards(bad)
    assert parse_delta_seconds("3600") == 3600
    assert parse_delta_seconds("99999999999999999999999") == MAX_DELTA_SECONDS
    assert parse_delta_seconds("9" * 5000) == MAX_DELTA_SECONDS
    for bad in ("", "-5", "1.5", "Thu, 01 Dec 2040 16:00:00 GMT"):
        with pytest.raises(SipParseError):
            parse_delta_seconds(bad)
    assert parse_call_id(" a84b4c76e66710@pc33.atlanta.com ") == "a84b4c76e66710@pc33.atlanta.com"
    for bad in ("", "has space", "a@b@c"):
        with pytest.raises(SipParseError):
            parse_call_id(bad)
    assert parse_etag(" a.1469.14750.1.0 ") == "a.1469.14750.1.0"
    with pytest.raises(SipParseError):
        parse_etag("not a token")


def test_event() -> None:
    event = Event.parse("presence;id=42")
    assert (event.package, event.id) == ("presence", "42")
    assert event.matches(Event("presence", {"id": "42"}))
    assert not event.matches(Event("presence"))
    assert not event.matches(Event("Presence", {"id": "42"}))
    assert str(Event("message-summary")) == "message-summary"
    assert Event.parse("presence.winfo").package == "presence.winfo"
    for bad in ("", "pres ence", "presence;;"):
        with pytest.raises(SipParseError):
            Event.parse(bad)


def test_subscription_state() -> None:
    active = SubscriptionState.parse("Active ;expires=56")
    assert (active.state, active.expires, active.reason) == ("active", 56, None)
    terminated = SubscriptionState.parse("terminated;reason=Timeout;retry-after=30")
    assert (terminated.state, terminated.reason, terminated.retry_after) == (
        "terminated",
        "timeout",
        30,
    )
    assert str(SubscriptionState.active(60)) == "active;expires=60"
    assert str(SubscriptionState.pending(10)) == "pending;expires=10"
    assert str(SubscriptionState.terminated("timeout")) == "terminated;reason=timeout"
    assert (
        str(SubscriptionState.terminated("probation", 20))
        == "terminated;reason=probation;retry-after=20"
    )
    for bad in ("", "active;expires=soon", "terminated;retry-after=-1"):
        with pytest.raises(SipParseError):
            SubscriptionState.parse(bad)


def test_accept_contact_msg_taker() -> None:
    pref = ContactPreference.parse('*;actor="msg-taker";explicit;require')
    assert pref.features == {"actor": "msg-taker"}
    assert pref.require
    assert pref.explicit
    assert pref.wants("actor", "msg-taker")
    assert pref.wants("ACTOR", "Msg-Taker")
    assert not pref.wants("actor", "principal")
    assert str(pref) == '*;actor="msg-taker";explicit;require'
    assert ContactPreference.parse(str(pref)) == pref


def test_caller_preference_values() -> None:
    pref = ContactPreference.parse(
        '* ; audio ; methods="INVITE,MESSAGE" ; +sip.instance="<urn:uuid:1>"'
    )
    assert not pref.require
    assert pref.values("audio") == ("TRUE",)
    assert pref.values("methods") == ("INVITE", "MESSAGE")
    assert pref.values("+sip.instance") == ("urn:uuid:1",)
    assert pref.values("video") is None
    assert pref.wants("methods", "message")
    for bad in ("", "sip:a@b.test", '*;actor="unterminated'):
        with pytest.raises(SipParseError):
            ContactPreference.parse(bad)


def test_identifiers_are_fresh() -> None:
    branches = {new_branch() for _ in range(100)}
    assert len(branches) == 100
    assert all(branch.startswith(BRANCH_COOKIE) for branch in branches)
    assert len(new_tag()) == 16
    assert new_tag() != new_tag()
    assert new_call_id("gw.example.test").endswith("@gw.example.test")
    assert "@" not in new_call_id()
    assert parse_call_id(new_call_id("127.0.0.1"))


# -- low-level syntax ------------------------------------------------------------------------------


def test_split_list() -> None:
    assert split_list('"a, b" <sip:x@y.test>, <sip:c@d.test;p="1,2">, ,') == [
        '"a, b" <sip:x@y.test>',
        '<sip:c@d.test;p="1,2">',
    ]
    assert split_list('a, "b\\", c", d') == ["a", '"b\\", c"', "d"]
    assert split_list('x, "unterminated, y') == ["x", '"unterminated, y']
    assert split_list("") == []


def test_params_and_quoting() -> None:
    assert parse_params(' ; a = 1 ; b ; C="x;y"') == {"a": "1", "b": None, "c": '"x;y"'}
    assert format_params({"a": "1", "b": None, "c": '"x;y"'}) == ';a=1;b;c="x;y"'
    assert unquote_string(quote_string('say "hi" \\ bye')) == 'say "hi" \\ bye'
    assert unquote_string("token") == "token"
    with pytest.raises(SipValueError):
        quote_string("line\nbreak")
    with pytest.raises(SipValueError):
        format_params({"a": "needs quoting"})
    for bad in ("a=1", ";", ";a=", ";a b=1", ';a="x', ";a=1;A=2"):
        with pytest.raises(SipParseError):
            parse_params(bad)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_field_parsers_only_raise_parse_errors(text: str) -> None:
    for parser in (
        Via.parse,
        NameAddr.parse,
        CSeq.parse,
        Event.parse,
        SubscriptionState.parse,
        ContactPreference.parse,
        parse_params,
        parse_call_id,
        parse_delta_seconds,
        parse_max_forwards,
        unquote_string,
    ):
        with contextlib.suppress(SipParseError):
            parser(text)


@settings(max_examples=200, deadline=None)
@given(
    display=st.none()
    | st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=20),
    tag=st.from_regex(r"[A-Za-z0-9.!%*_+`'~-]{1,16}", fullmatch=True),
)
def test_name_addr_round_trip(display: str | None, tag: str) -> None:
    value = NameAddr("sip:thing@example.test", display, {"tag": tag})
    parsed = NameAddr.parse(str(value))
    assert parsed.uri == value.uri
    assert parsed.tag == tag
    assert parsed.display_name == (display or None)
