"""SIP URIs (sipstack.uri): components, exact round trips, RFC 3261 §19.1.4 comparison."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipstack.errors import SipUriError, SipValueError
from sipstack.uri import SipUri, is_sip_uri, unescape


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sip:sensor1@example.test", SipUri("example.test", user="sensor1")),
        ("SIP:Sensor1@Example.Test", SipUri("Example.Test", user="Sensor1")),
        ("sips:alice@example.test:5061", SipUri("example.test", "alice", None, 5061, "sips")),
        ("sip:127.0.0.1:5070", SipUri("127.0.0.1", port=5070)),
        (
            "sip:alice:secretword@atlanta.com;transport=tcp",
            SipUri("atlanta.com", "alice", "secretword", params=(("transport", "tcp"),)),
        ),
        (
            "sip:+1-212-555-1212:1234@gateway.com;user=phone",
            SipUri("gateway.com", "+1-212-555-1212", "1234", params=(("user", "phone"),)),
        ),
        ("sip:[2001:db8::10]:5070;lr", SipUri("2001:db8::10", port=5070, params=(("lr", None),))),
        (
            "sip:atlanta.com;method=REGISTER?to=alice%40atlanta.com",
            SipUri(
                "atlanta.com",
                params=(("method", "REGISTER"),),
                headers=(("to", "alice%40atlanta.com"),),
            ),
        ),
        (
            "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
            SipUri(
                "atlanta.com", "alice", headers=(("subject", "project%20x"), ("priority", "urgent"))
            ),
        ),
        (
            "sip:user;par=u%40example.net@example.com",
            SipUri("example.com", "user;par=u%40example.net"),
        ),
        ("sip:boiler-temp@things.example.org", SipUri("things.example.org", "boiler-temp")),
        ("sip:host_name.local", SipUri("host_name.local")),
    ],
)
def test_parse_components(text: str, expected: SipUri) -> None:
    assert SipUri.parse(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "sip:sensor1@example.test",
        "sips:alice@example.test:5061;transport=tls",
        "sip:[2001:db8::10]:5070;lr;maddr=[2001:db8::1]",
        "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
        "sip:%61lice@atlanta.com;transport=TCP",
        "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too."
        "(doesn't-it)@example.com",
        "sip:caller@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31",
        "sip:watcher@127.0.0.1:5082;transport=udp",
    ],
)
def test_round_trip_is_exact(text: str) -> None:
    assert str(SipUri.parse(text)) == text


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("", 400),
        ("sensor1@example.test", 400),
        ("sip:", 400),
        ("sip:@example.test", 400),
        ("sip:user@", 400),
        ("sip:user@exa mple.test", 400),
        ("sip:user@example.test:99999", 400),
        ("sip:user@example.test:port", 400),
        ("sip:user@[2001:db8::1", 400),
        ("sip:user@[not-ipv6]", 400),
        ("sip:user@example.test;", 400),
        ("sip:user@example.test;a=b c", 400),
        ("sip:user@example.test?", 400),
        ("sip:user@example.test?novalue", 400),
        ("sip:us er@example.test", 400),
        ("sip:user@-bad-.test", 400),
        ("tel:+1-201-555-0123", 416),
        ("xmpp:sensor1@example.test", 416),
        ("9sip:user@example.test", 400),
    ],
)
def test_invalid_uris(text: str, status: int) -> None:
    with pytest.raises(SipUriError) as caught:
        SipUri.parse(text)
    assert caught.value.status == status


# RFC 3261 §19.1.4: these pairs are equivalent...
EQUIVALENT = [
    ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
    ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
    (
        "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
        "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
    ),
    (
        "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
        "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
    ),
    ("sip:[2001:db8::10]", "sip:[2001:DB8:0:0::10]"),
]
# ... and these are not.
NOT_EQUIVALENT = [
    ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
    ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
    ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
    ("sip:alice@atlanta.com", "sips:alice@atlanta.com"),
    ("sip:alice@atlanta.com", "sip:atlanta.com"),
    ("sip:alice@atlanta.com", "sip:alice:pw@atlanta.com"),
    ("sip:alice@atlanta.com", "sip:alice@atlanta.com;maddr=239.255.255.1"),
    ("sip:alice@atlanta.com", "sip:alice@atlanta.com;user=phone"),
    ("sip:a%3Bb@atlanta.com", "sip:a;b@atlanta.com"),
]


@pytest.mark.parametrize(("left", "right"), EQUIVALENT)
def test_equivalent(left: str, right: str) -> None:
    a, b = SipUri.parse(left), SipUri.parse(right)
    assert a.equivalent(b)
    assert b.equivalent(a)


@pytest.mark.parametrize(("left", "right"), NOT_EQUIVALENT)
def test_not_equivalent(left: str, right: str) -> None:
    a, b = SipUri.parse(left), SipUri.parse(right)
    assert not a.equivalent(b)
    assert not b.equivalent(a)


def test_accessors() -> None:
    uri = SipUri.parse("sips:Thing@[::1]:5061;Transport=TLS;lr;maddr=x.test")
    assert uri.transport == "tls"
    assert uri.has_param("LR")
    assert uri.param("lr") is None
    assert uri.param("maddr") == "x.test"
    assert uri.param("absent") is None
    assert uri.secure
    assert uri.hostport == "[::1]:5061"
    assert uri.address_of_record() == "sips:Thing@[::1]"
    assert SipUri.parse("sip:gw.test:5070").address_of_record() == "sip:gw.test"
    assert is_sip_uri("SIPS:x@y")
    assert not is_sip_uri("tel:+1")
    assert unescape("I%20have%20spaces") == "I have spaces"


def test_constructor_validates() -> None:
    with pytest.raises(SipValueError):
        SipUri("example.test", user="has space")
    with pytest.raises(SipValueError):
        SipUri("bad host")
    with pytest.raises(SipValueError):
        SipUri("example.test", scheme="tel")
    with pytest.raises(SipValueError):
        SipUri("example.test", port=70000)
    with pytest.raises(SipValueError):
        SipUri("example.test", params=(("a", "b;c"),))
    assert str(SipUri("2001:db8::1", "a", port=5060)) == "sip:a@[2001:db8::1]:5060"


USERS = st.from_regex(r"(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|%[0-9A-F]{2}){1,16}", fullmatch=True)
HOSTS = st.one_of(
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?(\.[a-z0-9]{1,8}){0,3}", fullmatch=True),
    st.ip_addresses().map(str),
)
PARAM = st.from_regex(r"[A-Za-z0-9\-_.!~*'()\[\]/:&+$]{1,10}", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(
    user=st.none() | USERS,
    host=HOSTS,
    port=st.none() | st.integers(min_value=0, max_value=65535),
    scheme=st.sampled_from(["sip", "sips"]),
    params=st.lists(st.tuples(PARAM, st.none() | PARAM), max_size=4),
    headers=st.lists(st.tuples(PARAM, PARAM.filter(lambda v: "&" not in v)), max_size=3),
)
def test_built_uris_round_trip(
    user: str | None,
    host: str,
    port: int | None,
    scheme: str,
    params: list[tuple[str, str | None]],
    headers: list[tuple[str, str]],
) -> None:
    headers = [(name.replace("&", "x"), value) for name, value in headers]
    uri = SipUri(host, user, None, port, scheme, tuple(params), tuple(headers))
    parsed = SipUri.parse(str(uri))
    assert parsed == uri
    assert parsed.equivalent(uri)
    assert SipUri.parse(
        str(uri).replace(host, host.upper(), 1) if user is None else str(uri)
    ).equivalent(uri)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=60))
def test_random_text_only_raises_uri_errors(text: str) -> None:
    with contextlib.suppress(SipUriError):
        SipUri.parse("sip:" + text)
