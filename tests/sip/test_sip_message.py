"""SIP message parsing, serialisation, stream framing and responses (sipstack.message).

The torture cases follow RFC 4475 (names in the test ids are its short names); the Kamailio
frames are the shapes recorded in the SIP presence digest (§2.2, §2.6, §5.2).
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipstack.errors import (
    SipFramingError,
    SipLimitError,
    SipParseError,
    SipUriError,
    SipValueError,
    SipVersionError,
)
from sipstack.headers import Headers
from sipstack.message import (
    SipLimits,
    SipRequest,
    SipResponse,
    StreamFramer,
    error_response,
    is_keepalive,
    make_response,
    parse_message,
)
from sipstack.uri import SipUri


def wire(*lines: str, body: bytes = b"", length: int | None = None) -> bytes:
    """A message from header lines; ``Content-Length`` appended unless ``length`` is -1."""
    head = list(lines)
    if length != -1:
        head.append(f"Content-Length: {len(body) if length is None else length}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("utf-8") + body


BASIC = (
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9",
    "Max-Forwards: 70",
    "From: <sip:watcher@example.test>;tag=9fxced76sl",
    "To: <sip:sensor1@example.test>",
    "Call-ID: 3848276298220188511@192.0.2.1",
)


def options(
    *extra: str,
    cseq: str = "1 OPTIONS",
    uri: str = "sip:sensor1@example.test",
    length: int | None = None,
) -> bytes:
    return wire(f"OPTIONS {uri} SIP/2.0", *BASIC, f"CSeq: {cseq}", *extra, length=length)


SDP = (
    b"v=0\r\no=mhandley 29739 7272939 IN IP4 192.0.2.3\r\ns=-\r\nc=IN IP4 192.0.2.4\r\n"
    b"t=0 0\r\nm=audio 49217 RTP/AVP 0 12\r\nm=video 3227 RTP/AVP 31\r\na=rtpmap:31 LPC\r\n"
)

# RFC 4475 §3.1.1.1 "wsinv": a short tortuous INVITE (whitespace, folding, compact forms, case).
WSINV = (
    "INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0\r\n"
    "TO :\r\n"
    " sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n\r\n"
    'from   : "J Rosenberg \\\\\\""       <sip:jdrosen@example.com>\r\n'
    "  ;\r\n"
    "  tag = 98asjd8\r\n"
    "MaX-fOrWaRdS: 0068\r\n"
    "Call-ID: wsinv.ndaksdj@192.0.2.1\r\n"
    f"Content-Length   : {len(SDP)}\r\n"
    "cseq: 0009\r\n"
    "  INVITE\r\n"
    "Via  : SIP  /   2.0\r\n"
    " /UDP\r\n"
    "    192.0.2.2;branch=390skdjuw\r\n"
    "s :\r\n"
    "NewFangledHeader:   newfangled value\r\n"
    " continued newfangled value\r\n"
    "UnknownHeaderWithUnusualValue: ;;,,;;,;\r\n"
    "Content-Type: application/sdp\r\n"
    "Route:\r\n"
    " <sip:services.example.com;lr;unknownwith=value;unknown-no-value>\r\n"
    "v:  SIP  / 2.0  / TCP     spindle.example.com   ;\r\n"
    "  branch  =   z9hG4bK9ikj8  ,\r\n"
    " SIP  /    2.0   / UDP  192.168.255.111   ; branch=\r\n"
    " z9hG4bK30239\r\n"
    'm:"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam =\r\n'
    "      newvalue ;\r\n"
    "  secondparam ; q = 0.33\r\n"
    "\r\n"
).encode() + SDP

PIDF_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:sensor1@example.test">'
    b'<tuple id="t1"><status><basic>open</basic></status></tuple></presence>\n'
)

# What Kamailio sent a watcher (digest §2.2), with its padded Content-Length (§2.1).
KAMAILIO_NOTIFY = (
    "NOTIFY sip:watcher@127.0.0.1:5082;transport=udp SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKf4a3.6a2bd8a1.0\r\n"
    "To: <sip:watcher@example.test>;tag=12345sub1\r\n"
    "From: <sip:sensor1@example.test>;tag=2548c8f6b2b0a9e6\r\n"
    "CSeq: 2 NOTIFY\r\n"
    "Call-ID: 1-12345@127.0.0.1\r\n"
    "Content-Length:    " + str(len(PIDF_BODY)) + "\r\n"
    "User-Agent: kamailio (5.6.3 (x86_64/linux))\r\n"
    "Max-Forwards: 70\r\n"
    "Event: presence\r\n"
    "Contact: <sip:127.0.0.1:5070>\r\n"
    "Subscription-State: active;expires=60\r\n"
    "Content-Type: application/pidf+xml\r\n"
    "\r\n"
).encode() + PIDF_BODY

KAMAILIO_200 = wire(
    "SIP/2.0 200 OK",
    "Via: SIP/2.0/UDP 127.0.0.1:5082;branch=z9hG4bK-1-0;received=127.0.0.1;rport=5082",
    "From: <sip:watcher@example.test>;tag=12345sub1",
    "To: <sip:sensor1@example.test>;tag=2548c8f6b2b0a9e6",
    "Call-ID: 1-12345@127.0.0.1",
    "CSeq: 1 SUBSCRIBE",
    "Expires: 60",
    "Contact: <sip:127.0.0.1:5070>",
    "Server: kamailio (5.6.3 (x86_64/linux))",
)

MESSAGE_VIA_PROXY = wire(
    "MESSAGE sip:sensor1@example.test SIP/2.0",
    "Record-Route: <sip:127.0.0.1:5072;lr>",
    "Via: SIP/2.0/UDP 127.0.0.1:5072;branch=z9hG4bK0a1b.2c3d.0",
    "Via: SIP/2.0/UDP 127.0.0.1:5091;received=127.0.0.1;rport=5091;branch=z9hG4bK-7-2-0",
    "Max-Forwards: 69",
    "From: <sip:alice@example.test>;tag=7msg1",
    "To: <sip:sensor1@example.test>",
    "Call-ID: 2-7@127.0.0.1",
    "CSeq: 2 MESSAGE",
    "Content-Type: text/plain;charset=UTF-8",
    body=b"get temperature\n",
)

COMPACT = wire(
    "SUBSCRIBE sip:sensor1@example.test SIP/2.0",
    "v: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bKc1",
    "f: <sip:w@example.test>;tag=1",
    "t: <sip:sensor1@example.test>",
    "i: compact-1@192.0.2.1",
    "CSeq: 1 SUBSCRIBE",
    "m: <sip:w@192.0.2.1;transport=tcp>",
    "o: presence;id=7",
    "u: presence, message-summary",
    "k: eventlist",
    "s: compact forms",
    "e: gzip",
    "c: application/pidf+xml",
    'a: *;actor="msg-taker";explicit;require',
    "j: *;automata",
    "d: proxy, no-fork",
    "r: <sip:other@example.test>",
    "b: <sip:referrer@example.test>",
    "x: 1800",
    "y: ZYNBbHC00VMZr2kZt6VmCvPonWJMGvQTBDqghoWeLxJfzB2a1pxAr3VgrB0SsSAaifsRdiOPoQZYOy2w",
    "l: 0",
    length=-1,
)

ESC01 = wire(
    "INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0",
    "To: sip:%75se%72@example.com",
    "From: <sip:I%20have%20spaces@example.net>;tag=938",
    "Max-Forwards: 87",
    "i: esc01.239409asdfakjkn23onasd0-3234",
    "CSeq: 234234 INVITE",
    "Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw",
    "C: application/sdp",
    "Contact: <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>",
    body=SDP,
)

ESC02 = wire(
    "RE%47IST%45R sip:registrar.example.com SIP/2.0",
    'To: "%Z%45" <sip:resource@example.com>',
    'From: "%Z%45" <sip:resource@example.com>;tag=f232jadfj23',
    "Call-ID: esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf",
    "Via: SIP/2.0/TCP host.example.com;branch=z9hG4bK209g9",
    "CSeq: 29344 RE%47IST%45R",
    "Max-Forwards: 70",
    "Contact: <sip:alias1@host1.example.com>",
)

LWSDISP = wire(
    "OPTIONS sip:user@example.com SIP/2.0",
    "To: sip:user@example.com",
    "From: caller<sip:caller@example.com>;tag=323",
    "Max-Forwards: 70",
    "Call-ID: lwsdisp.1234abcd@funky.example.com",
    "CSeq: 60 OPTIONS",
    "Via: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw",
)

SEMIURI = wire(
    "OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0",
    "To: sip:j_user@example.com",
    "From: sip:caller@example.org;tag=33242",
    "Max-Forwards: 3",
    "Call-ID: semiuri.0ha0isndaksdj",
    "CSeq: 8 OPTIONS",
    "Accept: application/sdp, application/pkcs7-mime,",
    " multipart/mixed, multipart/signed,",
    " message/sip, message/sipfrag",
    "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw",
)

TRANSPORTS = wire(
    "OPTIONS sip:user@example.com SIP/2.0",
    "To: sip:user@example.com",
    "From: <sip:caller@example.com>;tag=323",
    "Max-Forwards: 70",
    "Call-ID: transports.kijh4akdnaqjkwendsasfdj",
    "Accept: application/sdp",
    "CSeq: 60 OPTIONS",
    "Via: SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw",
    "Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf",
    "Via: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj",
    "Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en",
    "Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee",
)

UNREASON = wire(
    "SIP/2.0 200 = 2**3 * 5**2 \u043d\u043e \u0441\u0442\u043e "
    "\u0434\u0435\u0432\u044f\u043d\u043e\u0441\u0442\u043e "
    "\u0434\u0435\u0432\u044f\u0442\u044c - \u043f\u0440\u043e\u0441\u0442\u043e\u0435",
    "Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923",
    "Call-ID: unreason.1234ksdfak3j2erwedfsASdf",
    "CSeq: 35 INVITE",
    "From: sip:user@example.com;tag=11141343",
    "To: sip:user@example.edu;tag=2229",
)

NOREASON = wire(
    "SIP/2.0 100 ",
    "Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe",
    "Call-ID: noreason.asndj203insdf99223ndf",
    "CSeq: 35 INVITE",
    "From: <sip:user@example.com>;tag=39ansfi3",
    "To: <sip:user@example.edu>;tag=902jndnke3",
)

UNKSCM = wire(
    "OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0",
    "To: sip:user@example.com",
    "From: sip:caller@example.net;tag=384",
    "Max-Forwards: 3",
    "Call-ID: unkscm.nasdfasser0q239nwsdfasdkl34",
    "CSeq: 3923423 OPTIONS",
    "Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234",
)

NOVELSC = wire(
    "OPTIONS soap.beep://192.0.2.103:3002 SIP/2.0",
    "To: sip:user@example.com",
    "From: sip:caller@example.net;tag=384",
    "Max-Forwards: 3",
    "Call-ID: novelsc.asdfasser0q239nwsdfasdkl34",
    "CSeq: 3923423 OPTIONS",
    "Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234",
)

UNKSM2 = wire(
    "REGISTER sip:example.com SIP/2.0",
    "To: isbn:2983792873",
    "From: <http://www.example.com>;tag=3234233",
    "Call-ID: unksm2.daksdj@hyphenated-host.example.com",
    "CSeq: 234902 REGISTER",
    "Max-Forwards: 70",
    "Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKkdjuw",
    "Contact: <name:John_Smith>",
)

ESCNULL = wire(
    "REGISTER sip:example.com SIP/2.0",
    "To: sip:null-%00-null@example.com",
    "From: sip:null-%00-null@example.com;tag=839923423",
    "Max-Forwards: 70",
    "Call-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd",
    "CSeq: 14398234 REGISTER",
    "Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw",
    "Contact: <sip:%00@host5.example.com>",
    "Contact: <sip:%00%00@host5.example.com>",
    "L:0",
    length=-1,
)

INTMETH = wire(
    "!interesting-Method0123456789_*+`.%indeed'~ "
    "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too."
    "(doesn't-it)@example.com SIP/2.0",
    "Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~",
    'To: "BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f" '
    "<sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>",
    "From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;"
    "fromParam''~+*_!.-%=\"\u0440\u0430\u0431\u043e\u0442\u0430\u044e\u0449\u0438\u0439\""
    ";tag=_token~1'+`*%!-.",
    "Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{",
    "CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~",
    "Max-Forwards: 255",
    "extensionHeader-!.%*+_`'~:\ufeff\u5927\u505c\u96fb",
)

DBLREQ_FIRST = wire(
    "REGISTER sip:example.com SIP/2.0",
    "To: sip:j.user@example.com",
    "From: sip:j.user@example.com;tag=43251j3j324",
    "Max-Forwards: 8",
    "I: dblreq.0ha0isndaksdj99sdfafnl3lk233412",
    "Contact: sip:j.user@host.example.com",
    "CSeq: 8 REGISTER",
    "Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492",
    length=0,
)
DBLREQ = DBLREQ_FIRST + wire(
    "INVITE sip:joe@example.com SIP/2.0",
    "t: sip:joe@example.com",
    "From: sip:caller@example.net;tag=141334",
    "Max-Forwards: 8",
    "Call-ID: dblreq.0ha0isnda977644900765@192.0.2.15",
    "CSeq: 8 INVITE",
    "Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw380234",
    "Content-Type: application/sdp",
    body=SDP,
)

VALID = {
    "wsinv": WSINV,
    "kamailio-notify": KAMAILIO_NOTIFY,
    "kamailio-200": KAMAILIO_200,
    "message-via-proxy": MESSAGE_VIA_PROXY,
    "compact": COMPACT,
    "esc01": ESC01,
    "esc02": ESC02,
    "lwsdisp": LWSDISP,
    "semiuri": SEMIURI,
    "transports": TRANSPORTS,
    "unreason": UNREASON,
    "noreason": NOREASON,
    "unkscm": UNKSCM,
    "novelsc": NOVELSC,
    "unksm2": UNKSM2,
    "escnull": ESCNULL,
    "intmeth": INTMETH,
    "dblreq": DBLREQ,
    "options": options(),
}


# -- valid messages --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_messages_parse(name: str) -> None:
    message = parse_message(VALID[name])
    assert message.call_id
    assert message.vias


def test_wsinv_values() -> None:
    message = parse_message(WSINV)
    assert isinstance(message, SipRequest)
    assert message.method == "INVITE"
    assert message.uri == "sip:vivekg@chair-dnrc.example.com;unknownparam"
    assert message.to_addr.uri == "sip:vivekg@chair-dnrc.example.com"
    assert message.to_addr.tag == "1918181833n"
    assert message.from_addr.display_name == 'J Rosenberg \\"'
    assert message.from_addr.tag == "98asjd8"
    assert message.max_forwards == 68
    assert message.cseq.number == 9
    assert message.cseq.method == "INVITE"
    assert [(via.transport, via.host, via.branch) for via in message.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert message.headers.get("Subject") == ""
    assert message.headers.get("newfangledheader") == "newfangled value continued newfangled value"
    assert message.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert message.headers.get_all("Route") == [
        "<sip:services.example.com;lr;unknownwith=value;unknown-no-value>"
    ]
    (contact,) = message.contacts
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert message.content_type == "application/sdp"
    assert message.body == SDP


def test_kamailio_notify_with_padded_content_length() -> None:
    message = parse_message(KAMAILIO_NOTIFY)
    assert isinstance(message, SipRequest)
    assert message.body == PIDF_BODY
    assert message.event is not None
    assert message.event.package == "presence"
    assert message.headers.get("Subscription-State") == "active;expires=60"
    assert message.content_type == "application/pidf+xml"
    assert message.contacts[0].sip_uri() == SipUri("127.0.0.1", port=5070)


def test_response_values() -> None:
    message = parse_message(KAMAILIO_200)
    assert isinstance(message, SipResponse)
    assert (message.status, message.reason) == (200, "OK")
    assert message.expires == 60
    via = message.top_via
    assert (via.received, via.rport) == ("127.0.0.1", 5082)
    assert message.cseq.method == "SUBSCRIBE"


def test_compact_forms_expand_to_long_names() -> None:
    message = parse_message(COMPACT)
    names = [name for name, _ in message.headers]
    assert names == [
        "Via",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Contact",
        "Event",
        "Allow-Events",
        "Allow-Events",
        "Supported",
        "Subject",
        "Content-Encoding",
        "Content-Type",
        "Accept-Contact",
        "Reject-Contact",
        "Request-Disposition",
        "Request-Disposition",
        "Refer-To",
        "Referred-By",
        "Session-Expires",
        "Identity",
        "Content-Length",
    ]
    assert message.headers.get("i") == "compact-1@192.0.2.1"
    assert message.headers.get_all("u") == ["presence", "message-summary"]
    assert message.event is not None
    assert message.event.id == "7"
    out = message.to_bytes().decode()
    assert '\r\nAccept-Contact: *;actor="msg-taker";explicit;require\r\n' in out
    assert "\r\nv:" not in out
    assert "\r\nCall-ID: compact-1@192.0.2.1\r\n" in out


def test_escaped_uris_compare_equal_to_unescaped() -> None:
    message = parse_message(ESC01)
    assert isinstance(message, SipRequest)
    request_uri = message.sip_uri()
    assert request_uri.user == "sips%3Auser%40example.com"
    assert request_uri.host == "example.net"
    assert message.to_addr.sip_uri().equivalent(SipUri.parse("sip:user@example.com"))
    assert (
        message.contacts[0]
        .sip_uri()
        .equivalent(SipUri.parse("sip:caller@host5.example.net;lr;name=value%25%34%31"))
    )


def test_escaped_method_is_just_a_token() -> None:
    message = parse_message(ESC02)
    assert isinstance(message, SipRequest)
    assert message.method == "RE%47IST%45R"
    assert message.from_addr.display_name == "%Z%45"


def test_display_name_without_space_before_angle() -> None:
    message = parse_message(LWSDISP)
    assert message.from_addr.display_name == "caller"
    assert message.from_addr.uri == "sip:caller@example.com"


def test_semicolon_in_user_part_and_folded_accept_list() -> None:
    message = parse_message(SEMIURI)
    assert isinstance(message, SipRequest)
    assert message.sip_uri().user == "user;par=u%40example.net"
    assert message.headers.get_all("Accept") == [
        "application/sdp",
        "application/pkcs7-mime",
        "multipart/mixed",
        "multipart/signed",
        "message/sip",
        "message/sipfrag",
    ]


def test_unknown_transports_are_kept() -> None:
    message = parse_message(TRANSPORTS)
    assert [via.transport for via in message.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]


def test_utf8_and_empty_reason_phrases() -> None:
    unreason = parse_message(UNREASON)
    assert isinstance(unreason, SipResponse)
    assert unreason.reason.endswith("\u043f\u0440\u043e\u0441\u0442\u043e\u0435")
    noreason = parse_message(NOREASON)
    assert isinstance(noreason, SipResponse)
    assert (noreason.status, noreason.reason) == (100, "")
    bare = parse_message(NOREASON.replace(b"SIP/2.0 100 \r\n", b"SIP/2.0 100\r\n"))
    assert isinstance(bare, SipResponse)
    assert bare.reason == ""


def test_other_uri_schemes_parse_but_are_not_sip() -> None:
    for data in (UNKSCM, NOVELSC):
        message = parse_message(data)
        assert isinstance(message, SipRequest)
        with pytest.raises(SipUriError) as caught:
            message.sip_uri()
        assert caught.value.status == 416
    message = parse_message(UNKSM2)
    assert message.to_addr.uri == "isbn:2983792873"
    assert message.contacts[0].uri == "name:John_Smith"


def test_escaped_nul_and_unusual_tokens() -> None:
    escnull = parse_message(ESCNULL)
    assert [contact.uri for contact in escnull.contacts] == [
        "sip:%00@host5.example.com",
        "sip:%00%00@host5.example.com",
    ]
    intmeth = parse_message(INTMETH)
    assert isinstance(intmeth, SipRequest)
    assert intmeth.method == "!interesting-Method0123456789_*+`.%indeed'~"
    uri = intmeth.sip_uri()
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert intmeth.to_addr.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert intmeth.from_addr.display_name == "token1~` token2'+_ token3*%!.-"
    assert intmeth.from_addr.tag == "_token~1'+`*%!-."
    assert intmeth.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"


def test_datagram_bytes_after_the_body_are_discarded() -> None:
    message = parse_message(DBLREQ)
    assert isinstance(message, SipRequest)
    assert message.method == "REGISTER"
    assert message.body == b""


def test_datagram_without_content_length_takes_the_rest() -> None:
    data = wire("MESSAGE sip:sensor1@example.test SIP/2.0", *BASIC, "CSeq: 1 MESSAGE", length=-1)
    assert parse_message(data + b"read temperature").body == b"read temperature"


def test_lenient_line_endings_and_leading_crlf() -> None:
    data = b"\r\n\r\n" + options().replace(b"\r\n", b"\n")
    message = parse_message(data)
    assert isinstance(message, SipRequest)
    assert message.method == "OPTIONS"


def test_keepalive_datagrams() -> None:
    assert is_keepalive(b"\r\n\r\n")
    assert is_keepalive(b"\r\n")
    assert not is_keepalive(options())
    with pytest.raises(SipParseError):
        parse_message(b"\r\n\r\n")


# -- invalid messages ------------------------------------------------------------------------------

INVALID: dict[str, tuple[bytes, int]] = {
    "badinv01-extra-separators": (
        wire(
            "INVITE sip:user@example.com SIP/2.0",
            "To: sip:j.user@example.com",
            "From: sip:caller@example.net;tag=134161461246",
            "Max-Forwards: 7",
            "Call-ID: badinv01.0ha0isndaksdjasdf3234nas",
            "CSeq: 8 INVITE",
            "Via: SIP/2.0/UDP 192.0.2.15;;,;,,",
            'Contact: "Joe" <sip:joe@example.org>;;;;',
            "Content-Type: application/sdp",
            body=SDP,
        ),
        400,
    ),
    "clerr-length-beyond-datagram": (options(length=9999), 400),
    "ncl-negative-length": (options("Content-Length: -999", length=-1), 400),
    "huge-length": (options("Content-Length: 18446744073709551617", length=-1), 413),
    "two-content-lengths": (options("Content-Length: 0", "l: 0", length=-1), 400),
    "list-content-length": (options("Content-Length: 0, 0", length=-1), 400),
    "scalar-cseq-too-large": (options(cseq="36893488147419103232 OPTIONS"), 400),
    "scalar-max-forwards-300": (
        wire(
            "OPTIONS sip:sensor1@example.test SIP/2.0",
            *BASIC[:1],
            "Max-Forwards: 300",
            *BASIC[2:],
            "CSeq: 1 OPTIONS",
        ),
        400,
    ),
    "quotbal-unbalanced-quote": (
        wire(
            "INVITE sip:user@example.com SIP/2.0",
            'To: "Mr. J. User <sip:j.user@example.com>',
            "From: sip:caller@example.net;tag=93334",
            "Max-Forwards: 10",
            "Call-ID: quotbal.aksdj",
            "CSeq: 0 INVITE",
            "Via: SIP/2.0/UDP 192.0.2.53:5060;branch=z9hG4bKkdjuw",
        ),
        400,
    ),
    "ltgtruri-uri-in-brackets": (options(uri="<sip:user@example.com>"), 400),
    "lwsruri-space-in-uri": (options(uri="sip:user@example.com; lr"), 400),
    "lwsstart-double-spaces": (
        options().replace(b"OPTIONS sip:", b"OPTIONS  sip:", 1),
        400,
    ),
    "trws-trailing-space": (options().replace(b"SIP/2.0\r\n", b"SIP/2.0  \r\n", 1), 400),
    "escruri-headers-in-request-uri": (
        options(uri="sip:user@example.com?Route=%3Csip:example.com%3E"),
        400,
    ),
    "regbadct-unbracketed-uri-with-headers": (
        options("Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E"),
        400,
    ),
    "badaspec-spaces-in-brackets": (
        wire(
            "OPTIONS sip:user@example.org SIP/2.0",
            "Via: SIP/2.0/UDP host4.example.com:5060;branch=z9hG4bKkdju43234",
            "Max-Forwards: 70",
            'From: "Bell, Alexander" <sip:a.g.bell@example.com>;tag=433423',
            'To: "Watson, Thomas" < sip:t.watson@example.org >',
            "Call-ID: badaspec.sdf0234n2nds0a099u23h3hnnw009cdkne3",
            "CSeq: 3923239 OPTIONS",
        ),
        400,
    ),
    "baddn-unquoted-comma": (
        wire(
            "OPTIONS sip:t.watson@example.org SIP/2.0",
            "Via: SIP/2.0/UDP c.example.com:5060;branch=z9hG4bKkdjuw",
            "Max-Forwards: 70",
            "From: Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
            "To: Watson, Thomas <sip:t.watson@example.org>",
            "Call-ID: baddn.31415@c.example.com",
            "CSeq: 3923239 OPTIONS",
        ),
        400,
    ),
    "badvers": (options().replace(b" SIP/2.0\r\n", b" SIP/7.0\r\n", 1), 505),
    "mismatch01-cseq-method": (options(cseq="1 INVITE"), 400),
    "bigcode": (KAMAILIO_200.replace(b"SIP/2.0 200 OK", b"SIP/2.0 4294967301 better not"), 400),
    "status-below-100": (KAMAILIO_200.replace(b"SIP/2.0 200 OK", b"SIP/2.0 099 Odd"), 400),
    "missing-call-id": (options().replace(b"Call-ID: 3848276298220188511@192.0.2.1\r\n", b""), 400),
    "missing-via": (
        options().replace(b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9\r\n", b""),
        400,
    ),
    "missing-from": (
        options().replace(b"From: <sip:watcher@example.test>;tag=9fxced76sl\r\n", b""),
        400,
    ),
    "missing-cseq": (options().replace(b"CSeq: 1 OPTIONS\r\n", b""), 400),
    "two-call-ids": (options("Call-ID: other@192.0.2.1"), 400),
    "two-tos": (options("To: <sip:other@example.test>"), 400),
    "bad-via": (options("Via: SIP/3.0/UDP 192.0.2.1"), 400),
    "garbage": (b"\x00\xff\x13garbage\r\n\r\n", 400),
    "empty": (b"", 400),
    "no-blank-line": (options().rstrip(b"\r\n"), 400),
    "header-without-colon": (options("NoColonHere"), 400),
    "space-in-header-name": (options("Bad Name: x"), 400),
    "continuation-first": (
        options().replace(b"SIP/2.0\r\n", b"SIP/2.0\r\n folded-first\r\n", 1),
        400,
    ),
    "bare-cr": (options("Subject: a\rb"), 400),
    "not-utf8": (options().replace(b"Max-Forwards: 70", b"Max-Forwards: 70\r\nX: \xff\xfe"), 400),
    "huge-header": (options("Subject: " + "x" * 20000), 513),
    "too-many-headers": (options(*[f"X-Extra-{n}: {n}" for n in range(200)]), 513),
    "too-many-list-values": (options("Allow: " + ", ".join(["INVITE"] * 200)), 513),
    "body-too-large": (options(length=-1) + b"x" * 70000, 413),
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_messages_raise_with_status(name: str) -> None:
    data, status = INVALID[name]
    with pytest.raises(SipParseError) as caught:
        parse_message(data)
    assert caught.value.status == status, caught.value


def test_error_classes() -> None:
    with pytest.raises(SipVersionError):
        parse_message(INVALID["badvers"][0])
    with pytest.raises(SipLimitError):
        parse_message(INVALID["huge-header"][0])
    assert isinstance(SipParseError("x"), ValueError)


def test_limits_are_configurable() -> None:
    small = SipLimits(max_header_bytes=200, max_header_fields=5, max_body_bytes=4)
    with pytest.raises(SipLimitError):
        parse_message(options(), limits=small)
    tiny_body = SipLimits(max_body_bytes=4)
    data = wire("MESSAGE sip:a@b.test SIP/2.0", *BASIC, "CSeq: 1 MESSAGE", body=b"hello")
    with pytest.raises(SipLimitError) as caught:
        parse_message(data, limits=tiny_body)
    assert caught.value.status == 413


def test_validation_can_be_skipped() -> None:
    data = wire("OPTIONS sip:a@b.test SIP/2.0", "Via: nonsense")
    message = parse_message(data, validate=False)
    with pytest.raises(SipParseError):
        _ = message.vias
    with pytest.raises(SipParseError):
        _ = message.call_id


# -- serialisation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VALID))
def test_serialisation_is_a_fixed_point(name: str) -> None:
    message = parse_message(VALID[name])
    wire_form = message.to_bytes()
    again = parse_message(wire_form)
    assert again.to_bytes() == wire_form
    assert again.body == message.body
    strip = [(n, v) for n, v in message.headers if n != "Content-Length"]
    assert [(n, v) for n, v in again.headers if n != "Content-Length"] == strip


def test_serialised_form() -> None:
    request = SipRequest("MESSAGE", "sip:alice@example.test")
    request.headers.add("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1;rport")
    request.headers.add("Max-Forwards", "70")
    request.headers.add("From", "<sip:sensor1@example.test>;tag=abc")
    request.headers.add("To", "<sip:alice@example.test>")
    request.headers.add("Call-ID", "c1@127.0.0.1")
    request.headers.add("CSeq", "1 MESSAGE")
    request.headers.add("Content-Type", "text/plain;charset=UTF-8")
    request.headers.add("Content-Length", "999")  # recomputed
    request.body = "21.5 \u00b0C".encode()
    assert request.to_bytes() == (
        b"MESSAGE sip:alice@example.test SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1;rport\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: <sip:sensor1@example.test>;tag=abc\r\n"
        b"To: <sip:alice@example.test>\r\n"
        b"Call-ID: c1@127.0.0.1\r\n"
        b"CSeq: 1 MESSAGE\r\n"
        b"Content-Type: text/plain;charset=UTF-8\r\n"
        b"Content-Length: 8\r\n"
        b"\r\n" + "21.5 \u00b0C".encode()
    )


def test_serialiser_refuses_injection() -> None:
    headers = Headers()
    with pytest.raises(SipValueError):
        headers.add("Subject", "hi\r\nVia: evil")
    with pytest.raises(SipValueError):
        headers.add("Bad Name", "x")
    with pytest.raises(SipValueError):
        SipRequest("BAD METHOD", "sip:a@b.test").to_bytes()
    with pytest.raises(SipValueError):
        SipRequest("OPTIONS", "sip:a@b.test SIP/2.0\r\nX:").to_bytes()
    with pytest.raises(SipValueError):
        SipResponse(200, "OK\r\nX: y").to_bytes()
    with pytest.raises(SipValueError):
        SipResponse(700, "Nope").to_bytes()


def test_headers_container() -> None:
    headers = Headers([("v", "a"), ("Via", "b"), ("call-id", "x"), ("X-Custom", "1")])
    assert headers.get_all("VIA") == ["a", "b"]
    assert headers.get("i") == "x"
    assert "CALL-ID" in headers
    assert "Route" not in headers
    headers.prepend("Via", "top")
    assert headers.get("Via") == "top"
    headers.set("Via", "only")
    assert headers.get_all("Via") == ["only"]
    assert headers.items()[0] == ("Via", "only")
    assert headers.remove("x-custom") == 1
    assert headers.count("X-Custom") == 0
    assert headers == Headers([("VIA", "only"), ("Call-ID", "x")])
    copy = headers.copy()
    copy.add("Subject", "s")
    assert len(copy) == len(headers) + 1


# -- responses -------------------------------------------------------------------------------------


def test_make_response_copies_the_transaction_headers() -> None:
    request = parse_message(MESSAGE_VIA_PROXY)
    assert isinstance(request, SipRequest)
    response = make_response(request, 202, to_tag="thing1", headers=[("Expires", "60")])
    assert (response.status, response.reason) == (202, "Accepted")
    assert response.headers.get_all("Via") == request.headers.get_all("Via")
    assert response.headers.get("From") == request.headers.get("From")
    assert response.headers.get("To") == "<sip:sensor1@example.test>;tag=thing1"
    assert response.headers.get("Call-ID") == "2-7@127.0.0.1"
    assert response.headers.get("CSeq") == "2 MESSAGE"
    assert response.headers.get("Record-Route") is None
    assert response.headers.get("Max-Forwards") is None
    subscribe_ok = make_response(request, 200, dialog=True)
    assert subscribe_ok.headers.get_all("Record-Route") == ["<sip:127.0.0.1:5072;lr>"]
    assert make_response(request, 403, dialog=True).headers.get("Record-Route") is None
    assert response.expires == 60
    again = parse_message(response.to_bytes())
    assert isinstance(again, SipResponse)
    assert again.to_addr.tag == "thing1"


def test_make_response_tags() -> None:
    request = parse_message(options("Timestamp: 54"))
    assert isinstance(request, SipRequest)
    trying = make_response(request, 100)
    assert trying.to_addr.tag is None
    assert trying.headers.get("Timestamp") == "54"
    final = make_response(request, 486)
    assert final.reason == "Busy Here"
    assert final.to_addr.tag is not None
    assert len(final.to_addr.tag) >= 8
    assert final.headers.get("Timestamp") is None
    in_dialog = parse_message(
        NOREASON.replace(b"SIP/2.0 100 \r\n", b"INFO sip:a@b.test SIP/2.0\r\n").replace(
            b"35 INVITE", b"35 INFO"
        )
    )
    assert isinstance(in_dialog, SipRequest)
    assert make_response(in_dialog, 200).to_addr.tag == "902jndnke3"
    assert make_response(request, 599, "Custom").reason == "Custom"
    with pytest.raises(SipValueError):
        make_response(request, 99)


# -- stream framing --------------------------------------------------------------------------------

STREAM_MESSAGES = [KAMAILIO_NOTIFY, KAMAILIO_200, MESSAGE_VIA_PROXY, options(), COMPACT]


def test_framer_cuts_messages_and_counts_pings() -> None:
    stream = b"\r\n\r\n".join(STREAM_MESSAGES) + b"\r\n\r\n"
    framer = StreamFramer()
    frames: list[bytes] = []
    for index in range(len(stream)):
        frames.extend(framer.feed(stream[index : index + 1]))
    assert frames == STREAM_MESSAGES
    assert framer.take_pings() == len(STREAM_MESSAGES)
    assert framer.take_pings() == 0
    assert framer.buffered == 0
    for frame in frames:
        parse_message(frame, stream=True)


def test_framer_single_crlf_pong_is_skipped() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n") == []
    assert framer.feed(options()) == [options()]
    assert framer.take_pings() == 0


def test_framer_passes_bad_frames_on_and_continues() -> None:
    bad = wire("OPTIONS sip:a@b.test SIP/2.0", "Via: nonsense", body=b"xy")
    framer = StreamFramer()
    frames = framer.feed(bad + options())
    assert frames == [bad, options()]
    with pytest.raises(SipParseError):
        parse_message(frames[0], stream=True)
    parse_message(frames[1], stream=True)


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (options(length=-1), 400),
        (options("Content-Length: -1", length=-1), 400),
        (options("Content-Length: 1", "l: 2", length=-1), 400),
        (options("Content-Length: 100000000", length=-1), 413),
        (b"OPTIONS sip:a@b.test SIP/2.0\r\nSubject: " + b"x" * 20000, 513),
    ],
    ids=["no-length", "negative", "two-lengths", "too-long", "endless-headers"],
)
def test_framer_fatal_errors(data: bytes, status: int) -> None:
    framer = StreamFramer()
    with pytest.raises(SipFramingError) as caught:
        framer.feed(data)
    assert caught.value.status == status
    assert framer.buffered == 0
    with pytest.raises(SipFramingError):
        framer.feed(options())


def test_framer_reads_compact_and_folded_content_length() -> None:
    body = b"read"
    compact = wire("MESSAGE sip:a@b.test SIP/2.0", *BASIC, "CSeq: 1 MESSAGE", "l: 4", length=-1)
    folded = wire(
        "MESSAGE sip:a@b.test SIP/2.0",
        *BASIC,
        "CSeq: 1 MESSAGE",
        "Content-Length:",
        " 4",
        length=-1,
    )
    framer = StreamFramer()
    assert framer.feed(compact + body + folded + body) == [compact + body, folded + body]


def test_stream_frame_must_match_content_length() -> None:
    data = options()
    with pytest.raises(SipParseError):
        parse_message(data + b"extra", stream=True)
    with pytest.raises(SipParseError):
        parse_message(
            wire("OPTIONS sip:a@b.test SIP/2.0", *BASIC, "CSeq: 1 OPTIONS", length=-1), stream=True
        )


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=40))
def test_framer_is_independent_of_chunking(cuts: list[int]) -> None:
    stream = b"\r\n".join(STREAM_MESSAGES)
    framer = StreamFramer()
    frames: list[bytes] = []
    position = 0
    for size in cuts:
        frames.extend(framer.feed(stream[position : position + size]))
        position += size
    frames.extend(framer.feed(stream[position:]))
    assert frames == STREAM_MESSAGES


# -- properties ------------------------------------------------------------------------------------

TOKENS = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789-.!%*_+`'~", min_size=1, max_size=12
)
SAFE_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(
    method=TOKENS,
    user=st.from_regex(r"[a-z0-9._-]{1,12}", fullmatch=True),
    extra=st.lists(st.tuples(TOKENS, SAFE_TEXT), max_size=8),
    body=st.binary(max_size=300),
    number=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_build_serialise_parse_round_trip(
    method: str, user: str, extra: list[tuple[str, str]], body: bytes, number: int
) -> None:
    request = SipRequest(method, f"sip:{user}@example.test")
    request.headers.add("Via", "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx")
    request.headers.add("From", f"<sip:{user}@example.test>;tag=1")
    request.headers.add("To", "<sip:thing@example.test>")
    request.headers.add("Call-ID", "round@trip")
    request.headers.add("CSeq", f"{number} {method}")
    for name, value in extra:
        request.headers.add(f"X-{name}", value.strip(" \t"))
    request.body = body
    parsed = parse_message(request.to_bytes())
    assert isinstance(parsed, SipRequest)
    assert (parsed.method, parsed.uri, parsed.body) == (method, request.uri, body)
    assert [(n, v) for n, v in parsed.headers if n != "Content-Length"] == request.headers.items()
    assert parsed.cseq.number == number


def _all_accessors(message: SipRequest | SipResponse) -> None:
    """Touch every typed accessor: each may only fail with SipParseError."""
    for accessor in (
        lambda: message.call_id,
        lambda: message.cseq,
        lambda: message.from_addr,
        lambda: message.to_addr,
        lambda: message.vias,
        lambda: message.contacts,
        lambda: message.expires,
        lambda: message.event,
        lambda: message.content_type,
    ):
        with contextlib.suppress(SipParseError):
            accessor()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_random_bytes_only_raise_sip_parse_error(data: bytes) -> None:
    for validate in (True, False):
        try:
            message = parse_message(data, validate=validate)
        except SipParseError:
            continue
        _all_accessors(message)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(sorted(VALID.values()))))
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "duplicate", "special"]))
        at = draw(st.integers(min_value=0, max_value=max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] = draw(st.integers(min_value=0, max_value=255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[at : at + draw(st.integers(min_value=1, max_value=30))]
        elif kind == "duplicate":
            data[at:at] = data[at : at + draw(st.integers(min_value=1, max_value=60))]
        else:
            data[at:at] = draw(
                st.sampled_from(
                    [
                        b"\r\n",
                        b"\r\n ",
                        b",",
                        b";",
                        b'"',
                        b"<",
                        b">",
                        b":",
                        b"\r",
                        b"\n",
                        b"%",
                        b"@",
                        b"[",
                    ]
                )
            )
    return bytes(data)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_messages_only_raise_sip_parse_error(data: bytes) -> None:
    for validate in (True, False):
        try:
            message = parse_message(data, validate=validate)
        except SipParseError:
            continue
        _all_accessors(message)
        # Whatever parses serialises, and the serialised form parses to the same thing.
        wire_form = message.to_bytes()
        again = parse_message(wire_form, validate=validate)
        assert again.to_bytes() == wire_form


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(), st.lists(st.integers(min_value=1, max_value=200), max_size=10))
def test_mutated_streams_only_raise_framing_errors(data: bytes, cuts: list[int]) -> None:
    framer = StreamFramer(SipLimits(max_header_bytes=4096, max_body_bytes=4096))
    position = 0
    try:
        for size in [*cuts, len(data)]:
            for frame in framer.feed(data[position : position + size]):
                with contextlib.suppress(SipParseError):
                    parse_message(frame, stream=True, limits=framer.limits)
            position += size
    except SipFramingError:
        pass
    assert framer.buffered <= 4096 + 4 + 4096


def test_framer_trickle_is_linear() -> None:
    # A 15 kB head fed a byte at a time must not be rescanned from the start each time.
    head = options("Subject: " + "x" * 15000)
    framer = StreamFramer()
    frames: list[bytes] = []
    for index in range(len(head)):
        frames.extend(framer.feed(head[index : index + 1]))
    assert frames == [head]


@pytest.mark.parametrize(
    ("name", "answered"),
    [
        ("clerr-length-beyond-datagram", True),
        ("ncl-negative-length", True),
        ("huge-length", True),
        ("scalar-cseq-too-large", True),
        ("mismatch01-cseq-method", True),
        ("escruri-headers-in-request-uri", True),
        ("badvers", True),
        ("body-too-large", True),
        ("quotbal-unbalanced-quote", False),  # no usable To: silence
        ("missing-call-id", False),
        ("missing-via", False),
        ("bigcode", False),  # a response is never answered
        ("garbage", False),
        ("huge-header", False),
        ("ltgtruri-uri-in-brackets", False),
    ],
)
def test_error_response_or_silence(name: str, answered: bool) -> None:
    data, status = INVALID[name]
    with pytest.raises(SipParseError) as caught:
        parse_message(data)
    response = error_response(data, caught.value)
    if not answered:
        assert response is None
        return
    assert response is not None
    assert response.status == status
    again = parse_message(response.to_bytes(), validate=False)
    assert isinstance(again, SipResponse)
    assert again.to_addr.tag is not None


def test_no_error_response_to_ack() -> None:
    data = wire("ACK sip:a@b.test SIP/2.0", *BASIC, "CSeq: 1 INVITE")
    with pytest.raises(SipParseError) as caught:
        parse_message(data)
    assert error_response(data, caught.value) is None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_error_response_never_raises(data: bytes) -> None:
    try:
        parse_message(data)
    except SipParseError as error:
        response = error_response(data, error)
        if response is not None:
            assert 400 <= response.status < 600
            parse_message(response.to_bytes(), validate=False)
