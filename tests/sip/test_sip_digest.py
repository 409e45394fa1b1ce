"""Digest authentication (sipstack.digest): RFC 7616 §3.9.1 vectors, the digest's SIP vectors,
client choices, and the stateless-nonce server (expiry, replay, tampering)."""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipstack.digest import (
    AuthOutcome,
    Challenge,
    Credentials,
    DigestClient,
    DigestServer,
    compute_ha1,
    compute_response,
    parse_auth_params,
)
from sipstack.errors import DigestError, SipParseError, SipValueError
from sipstack.message import SipRequest, SipResponse, make_response, parse_message

# RFC 7616 §3.9.1 (one header line each, as SIP carries them).
RFC7616_CHALLENGE_SHA256 = (
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)
RFC7616_CHALLENGE_MD5 = RFC7616_CHALLENGE_SHA256.replace("SHA-256", "MD5")
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC7616_RESPONSES = {
    "SHA-256": "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
    "MD5": "8ca523f5e9506fed4657c9700eebdbec",
}

SECRET = b"0123456789abcdef-test-secret"
NOW = 1_800_000_000.0
PASSWORDS = {"alice": "s3cret", "owner": "Circle of Life"}


@pytest.mark.parametrize(
    ("header", "algorithm"), [(RFC7616_CHALLENGE_SHA256, "SHA-256"), (RFC7616_CHALLENGE_MD5, "MD5")]
)
def test_rfc7616_vectors(header: str, algorithm: str) -> None:
    challenge = Challenge.parse(header)
    assert challenge.algorithm == algorithm
    assert challenge.qop == ("auth", "auth-int")
    assert challenge.realm == "http-auth@example.org"
    client = DigestClient("Mufasa", "Circle of Life")
    name, value = client.authorize(
        challenge, method="GET", uri="/dir/index.html", cnonce=RFC7616_CNONCE
    )
    assert name == "Authorization"
    credentials = Credentials.parse(value)
    assert credentials.response == RFC7616_RESPONSES[algorithm]
    assert credentials == Credentials(
        username="Mufasa",
        realm="http-auth@example.org",
        nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        uri="/dir/index.html",
        response=RFC7616_RESPONSES[algorithm],
        algorithm=algorithm,
        qop="auth",
        nc="00000001",
        cnonce=RFC7616_CNONCE,
        opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS",
    )


def test_rfc7616_authorization_header_parses() -> None:
    header = (
        'Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", '
        'algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, '
        f'cnonce="{RFC7616_CNONCE}", qop=auth, '
        'response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1", '
        'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
    )
    credentials = Credentials.parse(header)
    ha1 = compute_ha1("SHA-256", "Mufasa", credentials.realm, "Circle of Life")
    assert (
        compute_response(
            algorithm="SHA-256",
            ha1=ha1,
            nonce=credentials.nonce,
            method="GET",
            uri=credentials.uri,
            qop=credentials.qop,
            nc=credentials.nc,
            cnonce=credentials.cnonce,
        )
        == credentials.response
    )


@pytest.mark.parametrize(
    ("algorithm", "ha1", "response"),
    [
        ("MD5", "c9c6a43426a4fb93c0512888eee92045", "f0697588fe77217ea44ec9f4130f332e"),
        (
            "SHA-256",
            "0ee9ca2f1025c040e04441674329a08bfafd826c484b59b0c5d7a5acdb30a819",
            "c6ca4cbc1b1d382cacab9cb1ba5a66caff30a7bccc7f37a314a8d438d6057ef4",
        ),
    ],
)
def test_sip_vectors_from_the_digest(algorithm: str, ha1: str, response: str) -> None:
    assert compute_ha1(algorithm, "sensor1", "example.test", "s3cret") == ha1
    assert (
        compute_response(
            algorithm=algorithm,
            ha1=ha1,
            nonce="abc123",
            method="PUBLISH",
            uri="sip:sensor1@example.test",
            qop="auth",
            nc="00000001",
            cnonce="0a4f113b",
        )
        == response
    )


def md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def test_legacy_md5_without_qop() -> None:
    # RFC 2069 form, computed independently: H(H(user:realm:pw):nonce:H(method:uri)).
    nonce = "dcd98b7102dd2f0e8b11d0f600bfb0c093"
    expected = md5(
        f"{md5('Mufasa:testrealm@host.com:Circle Of Life')}:{nonce}:{md5('GET:/dir/index.html')}"
    )
    client = DigestClient("Mufasa", "Circle Of Life")
    challenge = Challenge.parse(
        'Digest realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093"'
    )
    _, value = client.authorize(challenge, method="GET", uri="/dir/index.html")
    credentials = Credentials.parse(value)
    assert credentials.qop is None
    assert credentials.nc is None
    assert credentials.response == expected
    strict = DigestClient("Mufasa", "Circle Of Life", allow_legacy_md5=False)
    assert strict.choose([challenge]) is None
    with pytest.raises(DigestError):
        strict.authorize(challenge, method="GET", uri="/")


def test_sess_and_auth_int() -> None:
    challenge = Challenge.parse(
        'Digest realm="r", nonce="n", algorithm=SHA-256-sess, qop="auth-int"'
    )
    client = DigestClient("u", "p", algorithms=["SHA-256-SESS"])
    _, value = client.authorize(
        challenge, method="MESSAGE", uri="sip:a@b.test", body=b"hi", cnonce="c"
    )
    credentials = Credentials.parse(value)
    assert credentials.qop == "auth-int"
    base = compute_ha1("SHA-256", "u", "r", "p")
    assert credentials.response == compute_response(
        algorithm="SHA-256-SESS",
        ha1=base,
        nonce="n",
        method="MESSAGE",
        uri="sip:a@b.test",
        qop="auth-int",
        nc="00000001",
        cnonce="c",
        body=b"hi",
    )
    with pytest.raises(DigestError):
        compute_response(algorithm="MD5-sess", ha1=base, nonce="n", method="M", uri="u")
    with pytest.raises(DigestError):
        compute_response(algorithm="MD5", ha1=base, nonce="n", method="M", uri="u", qop="auth")
    with pytest.raises(DigestError):
        compute_response(algorithm="SHA-1", ha1=base, nonce="n", method="M", uri="u")


def test_client_choice_and_nonce_count() -> None:
    sha, md5 = (
        Challenge.parse('Digest realm="r", nonce="n1", algorithm=SHA-256, qop="auth"', proxy=True),
        Challenge.parse('Digest realm="r", nonce="n1", algorithm=MD5, qop="auth"', proxy=True),
    )
    client = DigestClient("alice", "s3cret")
    assert client.choose([sha, md5]) is sha
    assert client.choose([md5, sha]) is md5  # the server's order wins (RFC 8760)
    assert DigestClient("alice", "x", algorithms=["MD5"]).choose([sha, md5]) is md5
    unknown = Challenge.parse('Digest realm="r", nonce="n", algorithm=SHA-1, qop="auth"')
    assert client.choose([unknown]) is None
    only_int = Challenge.parse('Digest realm="r", nonce="n", qop="auth-int,other"')
    assert client.choose([only_int]) is only_int
    no_auth = Challenge.parse('Digest realm="r", nonce="n", qop="other"')
    assert client.choose([no_auth]) is None
    sha_no_qop = Challenge.parse('Digest realm="r", nonce="n", algorithm=SHA-256')
    assert client.choose([sha_no_qop]) is None
    first = Credentials.parse(client.authorize(sha, method="MESSAGE", uri="sip:t@x")[1])
    name, value = client.authorize(sha, method="MESSAGE", uri="sip:t@x")
    second = Credentials.parse(value)
    assert name == "Proxy-Authorization"
    assert (first.nc, second.nc) == ("00000001", "00000002")
    assert first.cnonce != second.cnonce


def test_challenge_format_and_parse() -> None:
    challenge = Challenge("example.test", "abc", "SHA-256", ("auth",), opaque="o1", stale=True)
    text = str(challenge)
    assert text == (
        'Digest realm="example.test", nonce="abc", opaque="o1", algorithm=SHA-256, qop="auth", '
        "stale=true"
    )
    assert Challenge.parse(text) == challenge
    kamailio = (
        'Digest realm="example.test", nonce="Y2xK9WNySPbh4Q8AMFkU0p5wBZP8x1aQ", qop="auth", '
        "algorithm=SHA-256"
    )
    parsed = Challenge.parse(kamailio, proxy=True)
    assert (parsed.header_name, parsed.answer_header_name) == (
        "Proxy-Authenticate",
        "Proxy-Authorization",
    )
    for bad in (
        'Basic realm="x"',
        'Digest nonce="n"',
        'Digest realm="r"',
        'Digest realm="r", realm="r", nonce="n"',
        'Digest realm="unterminated, nonce="n"',
        "Digest realm",
        'Digest realm="r" nonce="n"',
        "",
    ):
        with pytest.raises(SipParseError):
            Challenge.parse(bad)


def test_auth_params_quoting() -> None:
    scheme, params = parse_auth_params(
        'Digest username="a \\"b\\" \\\\c", uri="sip:x@y;a,b", nc=00000001'
    )
    assert scheme == "Digest"
    assert params == {"username": 'a "b" \\c', "uri": "sip:x@y;a,b", "nc": "00000001"}


# -- server ------------------------------------------------------------------------------------


def request(method: str = "MESSAGE", uri: str = "sip:sensor1@example.test") -> SipRequest:
    message = parse_message(
        (
            f"{method} {uri} SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 127.0.0.1:5091;branch=z9hG4bK-1\r\n"
            "Max-Forwards: 70\r\n"
            "From: <sip:alice@example.test>;tag=1\r\n"
            "To: <sip:sensor1@example.test>\r\n"
            "Call-ID: auth-1@127.0.0.1\r\n"
            f"CSeq: 1 {method}\r\n"
            "Content-Length: 4\r\n\r\nread"
        ).encode()
    )
    assert isinstance(message, SipRequest)
    return message


def challenged(server: DigestServer, now: float = NOW) -> SipResponse:
    return make_response(request(), server.status, headers=server.challenges(now))


def answered(
    server: DigestServer,
    client: DigestClient,
    *,
    now: float = NOW,
    req: SipRequest | None = None,
) -> SipRequest:
    req = req or request()
    response = parse_message(challenged(server, now).to_bytes())
    assert isinstance(response, SipResponse)
    answer = client.answer(response, req)
    assert answer is not None
    req.headers.add(*answer)
    return req


@pytest.mark.parametrize("proxy", [False, True])
@pytest.mark.parametrize("algorithms", [("SHA-256", "MD5"), ("MD5",), ("SHA-256",)])
def test_server_round_trip(proxy: bool, algorithms: tuple[str, ...]) -> None:
    server = DigestServer("example.test", SECRET, proxy=proxy, algorithms=algorithms)
    response = challenged(server)
    assert response.status == (407 if proxy else 401)
    headers = response.headers.get_all(server.challenge_header)
    assert [Challenge.parse(h).algorithm for h in headers] == list(algorithms)
    req = answered(server, DigestClient("alice", "s3cret"))
    assert req.headers.get(server.credentials_header) is not None
    result = server.verify(req, NOW + 1, password_of=PASSWORDS.get)
    assert result.ok
    assert result.username == "alice"


def test_server_with_ha1_lookup() -> None:
    server = DigestServer("example.test", SECRET)
    stored = {
        ("alice", alg): compute_ha1(alg, "alice", "example.test", "s3cret")
        for alg in ("MD5", "SHA-256")
    }
    req = answered(server, DigestClient("alice", "s3cret"))
    result = server.verify(req, NOW, ha1_of=lambda user, alg: stored.get((user, alg)))
    assert result.outcome is AuthOutcome.OK
    with pytest.raises(SipValueError):
        server.verify(req, NOW)
    with pytest.raises(SipValueError):
        server.verify(req, NOW, password_of=PASSWORDS.get, ha1_of=lambda u, a: None)


def test_server_rejections() -> None:
    server = DigestServer("example.test", SECRET)
    assert server.verify(request(), NOW, password_of=PASSWORDS.get).outcome is AuthOutcome.MISSING
    wrong = answered(server, DigestClient("alice", "wrong"))
    assert server.verify(wrong, NOW, password_of=PASSWORDS.get).outcome is AuthOutcome.BAD_RESPONSE
    nobody = answered(server, DigestClient("mallory", "s3cret"))
    assert server.verify(nobody, NOW, password_of=PASSWORDS.get).outcome is AuthOutcome.UNKNOWN_USER
    garbage = request()
    garbage.headers.add("Authorization", 'Digest username="x", realm="unterminated')
    assert server.verify(garbage, NOW, password_of=PASSWORDS.get).outcome is AuthOutcome.MALFORMED
    other_realm = answered(DigestServer("elsewhere.test", SECRET), DigestClient("alice", "s3cret"))
    assert server.verify(other_realm, NOW, password_of=PASSWORDS.get).outcome is AuthOutcome.MISSING


def test_server_expired_nonce_is_stale() -> None:
    server = DigestServer("example.test", SECRET, nonce_lifetime=300)
    req = answered(server, DigestClient("alice", "s3cret"))
    result = server.verify(req, NOW + 301, password_of=PASSWORDS.get)
    assert result.outcome is AuthOutcome.STALE
    assert result.stale
    assert server.verify(req, NOW + 299, password_of=PASSWORDS.get).ok
    future = answered(server, DigestClient("alice", "s3cret"), now=NOW + 3600)
    assert server.verify(future, NOW, password_of=PASSWORDS.get).outcome is AuthOutcome.BAD_NONCE
    stale_header = server.challenges(NOW, stale=True)[0][1]
    assert Challenge.parse(stale_header).stale


def test_server_rejects_foreign_and_tampered_nonces() -> None:
    server = DigestServer("example.test", SECRET)
    other = DigestServer("example.test", b"another-secret-of-16+bytes")
    forged = answered(other, DigestClient("alice", "s3cret"))
    assert server.verify(forged, NOW, password_of=PASSWORDS.get).outcome is AuthOutcome.BAD_NONCE
    nonce = server.make_nonce(NOW)
    assert server.check_nonce(nonce, NOW) is AuthOutcome.OK
    tampered = nonce[:5] + ("A" if nonce[5] != "A" else "B") + nonce[6:]
    assert server.check_nonce(tampered, NOW) is AuthOutcome.BAD_NONCE
    assert server.check_nonce("abc123", NOW) is AuthOutcome.BAD_NONCE
    assert server.check_nonce("!!!!", NOW) is AuthOutcome.BAD_NONCE
    assert server.make_nonce(NOW) != nonce


def test_server_replay_protection() -> None:
    server = DigestServer("example.test", SECRET)
    client = DigestClient("alice", "s3cret")
    response = challenged(server)
    challenge = client.choose(Challenge.from_response(response))
    assert challenge is not None
    first = request()
    first.headers.add(
        *client.authorize(challenge, method="MESSAGE", uri=first.uri, body=first.body)
    )
    assert server.verify(first, NOW, password_of=PASSWORDS.get).ok
    replay = server.verify(first, NOW, password_of=PASSWORDS.get)
    assert replay.outcome is AuthOutcome.REPLAY
    assert replay.stale
    second = request()
    second.headers.add(
        *client.authorize(challenge, method="MESSAGE", uri=second.uri, body=second.body)
    )
    assert server.verify(second, NOW + 2, password_of=PASSWORDS.get).ok  # nc=2 reuses the nonce
    assert server.tracked_nonces == 1
    assert server.verify(first, NOW + 3, password_of=PASSWORDS.get).outcome is AuthOutcome.REPLAY


def test_server_replay_table_is_bounded() -> None:
    server = DigestServer("example.test", SECRET, max_tracked_nonces=2)
    requests = [answered(server, DigestClient("alice", "s3cret"), now=NOW + i) for i in range(3)]
    for index, req in enumerate(requests):
        assert server.verify(req, NOW + 10 + index, password_of=PASSWORDS.get).ok
    assert server.tracked_nonces == 2
    # The first nonce's count was forgotten: it is never accepted again (answered as stale).
    assert (
        server.verify(requests[0], NOW + 20, password_of=PASSWORDS.get).outcome
        is AuthOutcome.REPLAY
    )
    # Expired entries are dropped.
    fresh = answered(server, DigestClient("alice", "s3cret"), now=NOW + 1000)
    assert server.verify(fresh, NOW + 1000, password_of=PASSWORDS.get).ok
    assert server.tracked_nonces == 1


def test_server_policy_checks() -> None:
    md5_only = DigestServer("example.test", SECRET, algorithms=["MD5"])
    sha_answer = request()
    nonce = md5_only.make_nonce(NOW)
    challenge = Challenge("example.test", nonce, "SHA-256", ("auth",))
    sha_answer.headers.add(
        *DigestClient("alice", "s3cret").authorize(challenge, method="MESSAGE", uri=sha_answer.uri)
    )
    assert (
        md5_only.verify(sha_answer, NOW, password_of=PASSWORDS.get).outcome
        is AuthOutcome.UNSUPPORTED
    )
    legacy = request()
    legacy.headers.add(
        *DigestClient("alice", "s3cret").authorize(
            Challenge("example.test", nonce), method="MESSAGE", uri=legacy.uri
        )
    )
    assert (
        md5_only.verify(legacy, NOW, password_of=PASSWORDS.get).outcome is AuthOutcome.UNSUPPORTED
    )
    lenient = DigestServer("example.test", SECRET, algorithms=["MD5"], allow_legacy_md5=True)
    assert lenient.verify(legacy, NOW, password_of=PASSWORDS.get).ok
    wrong_uri = answered(md5_only, DigestClient("alice", "s3cret"))
    wrong_uri.uri = "sip:other@example.test"
    assert (
        md5_only.verify(wrong_uri, NOW, password_of=PASSWORDS.get).outcome is AuthOutcome.WRONG_URI
    )
    equivalent_uri = answered(
        md5_only, DigestClient("alice", "s3cret"), req=request(uri="sip:sensor1@EXAMPLE.test")
    )
    equivalent_uri.uri = "sip:sensor1@example.test"
    assert md5_only.verify(equivalent_uri, NOW, password_of=PASSWORDS.get).ok
    with_opaque = DigestServer("example.test", SECRET, opaque="op-1")
    assert (
        answered(with_opaque, DigestClient("alice", "s3cret")).headers.get("Authorization")
        is not None
    )
    assert with_opaque.verify(
        answered(with_opaque, DigestClient("alice", "s3cret")), NOW, password_of=PASSWORDS.get
    ).ok
    no_opaque = answered(md5_only, DigestClient("alice", "s3cret"))
    with_opaque_same_secret = DigestServer(
        "example.test", SECRET, algorithms=["MD5"], opaque="op-1"
    )
    assert (
        with_opaque_same_secret.verify(no_opaque, NOW, password_of=PASSWORDS.get).outcome
        is AuthOutcome.BAD_NONCE
    )
    with pytest.raises(SipValueError):
        DigestServer("r", b"short")
    with pytest.raises(SipValueError):
        DigestServer("r", SECRET, algorithms=["SHA-1"])


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120))
def test_auth_header_parsers_only_raise_parse_errors(text: str) -> None:
    for parser in (parse_auth_params, Challenge.parse, Credentials.parse):
        with contextlib.suppress(SipParseError):
            parser("Digest " + text)
        with contextlib.suppress(SipParseError):
            parser(text)


@settings(max_examples=150, deadline=None)
@given(
    username=st.text(
        alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20
    ),
    password=st.text(max_size=20),
)
def test_any_username_round_trips(username: str, password: str) -> None:
    server = DigestServer("example.test", SECRET)
    req = answered(server, DigestClient(username, password))
    again = parse_message(req.to_bytes())
    assert isinstance(again, SipRequest)
    result = server.verify(again, NOW, password_of={username: password}.get)
    assert result.ok
    assert result.username == username
