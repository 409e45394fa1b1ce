"""HTTP digest authentication for SIP (RFC 2617, RFC 7616 naming, RFC 8760 algorithms).

Pure module: the clock is always passed in (``now``, seconds), randomness comes from
:mod:`secrets`.

* Client: :class:`Challenge` (from ``WWW-Authenticate`` in a 401 or ``Proxy-Authenticate`` in a
  407), :class:`DigestClient` computes the ``Authorization``/``Proxy-Authorization`` value,
  counting ``nc`` per nonce. qop ``auth`` (preferred) and ``auth-int``; the qop-less RFC 2069
  mode only for plain MD5 (legacy servers).
* Server: :class:`DigestServer` issues challenges (one per algorithm, most preferred first) with
  stateless nonces (issue time + random bits + HMAC), answers ``stale=true`` for expired ones,
  verifies credentials against a password or HA1 lookup in constant time, and rejects a replayed
  ``nc`` for as long as the nonce lives (bounded memory).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

from sipstack.errors import DigestError, SipParseError, SipUriError, SipValueError
from sipstack.headers import is_token, quote_string
from sipstack.message import SipRequest, SipResponse
from sipstack.uri import SipUri, is_sip_uri

__all__ = [
    "ALGORITHMS",
    "AuthOutcome",
    "AuthResult",
    "Challenge",
    "Credentials",
    "DigestClient",
    "DigestServer",
    "compute_ha1",
    "compute_response",
    "parse_auth_params",
]

_HASHES: dict[str, str] = {"MD5": "md5", "SHA-256": "sha256"}
if "sha512_256" in hashlib.algorithms_available:
    _HASHES["SHA-512-256"] = "sha512_256"

#: Supported ``algorithm`` values (upper case), session variants included.
ALGORITHMS: frozenset[str] = frozenset(_HASHES) | {f"{name}-SESS" for name in _HASHES}

_NC = re.compile(r"[0-9A-Fa-f]{8}")
_QUOTED_CHARS = re.compile(r'(?:[^"\\]|\\.)*')
_PARAM_NAME = re.compile(r"[ \t]*([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*=[ \t]*")
_TOKEN_VALUE = re.compile(r"[^\s,\"]+")
_SEPARATOR = re.compile(r"[ \t]*(?:,[ \t]*|$)")
_QUOTED_PAIR = re.compile(r"\\(.)")


def _base(algorithm: str) -> str:
    return algorithm.upper().removesuffix("-SESS")


def _hash(algorithm: str, data: str | bytes) -> str:
    name = _HASHES.get(_base(algorithm))
    if name is None:
        raise DigestError(f"unsupported digest algorithm {algorithm!r}")
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return hashlib.new(name, raw).hexdigest()


def compute_ha1(algorithm: str, username: str, realm: str, password: str) -> str:
    """``H(username:realm:password)``: what a server stores instead of the password."""
    return _hash(algorithm, f"{username}:{realm}:{password}")


def compute_response(
    *,
    algorithm: str,
    ha1: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The ``response`` value (RFC 7616 §3.4.1). ``ha1`` is the base ``H(user:realm:pw)``.

    ``qop`` None is the RFC 2069 legacy form ``H(HA1:nonce:HA2)``; the ``-sess`` algorithms and
    any qop need ``nc`` and ``cnonce``; ``auth-int`` hashes ``body`` into HA2.
    """
    if algorithm.upper().endswith("-SESS"):
        if cnonce is None:
            raise DigestError("a -sess algorithm needs a cnonce")
        ha1 = _hash(algorithm, f"{ha1}:{nonce}:{cnonce}")
    if qop == "auth-int":
        ha2 = _hash(algorithm, f"{method}:{uri}:{_hash(algorithm, body)}")
    else:
        ha2 = _hash(algorithm, f"{method}:{uri}")
    if qop is None:
        return _hash(algorithm, f"{ha1}:{nonce}:{ha2}")
    if qop not in ("auth", "auth-int"):
        raise DigestError(f"unsupported qop {qop!r}")
    if nc is None or cnonce is None:
        raise DigestError("qop needs nc and cnonce")
    return _hash(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


def parse_auth_params(text: str) -> tuple[str, dict[str, str]]:
    """Split ``Scheme name=value, name="quoted", ...`` into the scheme and its parameters.

    Names are lower-cased; quoted values are unescaped. Duplicates and junk are errors.
    """
    text = text.strip(" \t")
    scheme, _, rest = text.partition(" ")
    if not is_token(scheme):
        raise SipParseError(f"bad authentication scheme in {text[:80]!r}")
    params: dict[str, str] = {}
    index = 0
    rest = rest.strip(" \t")
    while index < len(rest):
        match = _PARAM_NAME.match(rest, index)
        if match is None:
            raise SipParseError(f"bad authentication parameter in {rest[index:][:80]!r}")
        name = match.group(1).lower()
        index = match.end()
        if rest[index : index + 1] == '"':
            quoted = _QUOTED_CHARS.match(rest, index + 1)
            assert quoted is not None  # the pattern matches the empty string
            if rest[quoted.end() : quoted.end() + 1] != '"':
                raise SipParseError("unterminated quoted authentication parameter")
            value = _QUOTED_PAIR.sub(r"\1", quoted.group(0))
            index = quoted.end() + 1
        else:
            token = _TOKEN_VALUE.match(rest, index)
            if token is None:
                raise SipParseError(f"missing value for authentication parameter {name!r}")
            value = token.group(0)
            index = token.end()
        if name in params:
            raise SipParseError(f"duplicate authentication parameter {name!r}")
        params[name] = value
        separator = _SEPARATOR.match(rest, index)
        if separator is None:
            raise SipParseError(f"expected ',' in {rest[:80]!r}")
        index = separator.end()
    return scheme, params


def _quoted(value: str) -> str:
    return quote_string(value)


# -- client side -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Challenge:
    """One digest challenge. ``proxy`` says it came in ``Proxy-Authenticate`` (407)."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False
    domain: str | None = None
    proxy: bool = False

    @classmethod
    def parse(cls, value: str, *, proxy: bool = False) -> Challenge:
        scheme, params = parse_auth_params(value)
        if scheme.lower() != "digest":
            raise SipParseError(f"not a Digest challenge: {scheme!r}")
        if "realm" not in params or "nonce" not in params:
            raise SipParseError("Digest challenge without realm or nonce")
        qop = tuple(
            option.strip().lower() for option in params.get("qop", "").split(",") if option.strip()
        )
        return cls(
            realm=params["realm"],
            nonce=params["nonce"],
            algorithm=params.get("algorithm", "MD5").upper(),
            qop=qop,
            opaque=params.get("opaque"),
            stale=params.get("stale", "").lower() == "true",
            domain=params.get("domain"),
            proxy=proxy,
        )

    @classmethod
    def from_response(cls, response: SipResponse) -> list[Challenge]:
        """Every well-formed Digest challenge of a 401 or 407, in the server's order."""
        proxy = response.status == 407
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        found = []
        for value in response.headers.get_all(name):
            try:
                found.append(cls.parse(value, proxy=proxy))
            except SipParseError:
                continue  # another scheme, or junk: look at the next one
        return found

    @property
    def header_name(self) -> str:
        return "Proxy-Authenticate" if self.proxy else "WWW-Authenticate"

    @property
    def answer_header_name(self) -> str:
        return "Proxy-Authorization" if self.proxy else "Authorization"

    def __str__(self) -> str:
        parts = [f"realm={_quoted(self.realm)}", f"nonce={_quoted(self.nonce)}"]
        if self.opaque is not None:
            parts.append(f"opaque={_quoted(self.opaque)}")
        if self.domain is not None:
            parts.append(f"domain={_quoted(self.domain)}")
        parts.append(f"algorithm={self.algorithm}")
        if self.qop:
            parts.append(f"qop={_quoted(','.join(self.qop))}")
        if self.stale:
            parts.append("stale=true")
        return "Digest " + ", ".join(parts)


@dataclass(frozen=True)
class Credentials:
    """The content of an ``Authorization``/``Proxy-Authorization`` Digest header."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str = "MD5"
    qop: str | None = None
    nc: str | None = None
    cnonce: str | None = None
    opaque: str | None = None

    @classmethod
    def parse(cls, value: str) -> Credentials:
        scheme, params = parse_auth_params(value)
        if scheme.lower() != "digest":
            raise SipParseError(f"not Digest credentials: {scheme!r}")
        missing = [
            key for key in ("username", "realm", "nonce", "uri", "response") if key not in params
        ]
        if missing:
            raise SipParseError(f"Digest credentials without {', '.join(missing)}")
        nc = params.get("nc")
        if nc is not None and _NC.fullmatch(nc) is None:
            raise SipParseError(f"bad nc {nc!r}")
        qop = params.get("qop")
        return cls(
            username=params["username"],
            realm=params["realm"],
            nonce=params["nonce"],
            uri=params["uri"],
            response=params["response"].lower(),
            algorithm=params.get("algorithm", "MD5").upper(),
            qop=None if qop is None else qop.lower(),
            nc=nc,
            cnonce=params.get("cnonce"),
            opaque=params.get("opaque"),
        )

    def __str__(self) -> str:
        parts = [
            f"username={_quoted(self.username)}",
            f"realm={_quoted(self.realm)}",
            f"nonce={_quoted(self.nonce)}",
            f"uri={_quoted(self.uri)}",
            f"response={_quoted(self.response)}",
            f"algorithm={self.algorithm}",
        ]
        if self.cnonce is not None:
            parts.append(f"cnonce={_quoted(self.cnonce)}")
        if self.opaque is not None:
            parts.append(f"opaque={_quoted(self.opaque)}")
        if self.qop is not None:
            if not is_token(self.qop) or self.nc is None or _NC.fullmatch(self.nc) is None:
                raise SipValueError("qop needs a token value and an 8-hex-digit nc")
            parts.append(f"qop={self.qop}")
            parts.append(f"nc={self.nc}")
        return "Digest " + ", ".join(parts)


class DigestClient:
    """Answers digest challenges for one identity.

    ``algorithms`` is what we accept; RFC 8760 lets the server order its challenges, so
    :meth:`choose` takes the first challenge with an accepted algorithm. ``nc`` is counted per
    ``(realm, nonce)``.
    """

    _MAX_NONCES = 64

    def __init__(
        self,
        username: str,
        password: str,
        *,
        algorithms: Iterable[str] = ("SHA-256", "MD5"),
        allow_legacy_md5: bool = True,
    ) -> None:
        self.username = username
        self._password = password
        self.algorithms = frozenset(name.upper() for name in algorithms) & ALGORITHMS
        self.allow_legacy_md5 = allow_legacy_md5
        self._counts: OrderedDict[tuple[str, str], int] = OrderedDict()

    def choose(self, challenges: Iterable[Challenge]) -> Challenge | None:
        """The first challenge we can answer, None if there is none."""
        for challenge in challenges:
            if challenge.algorithm in self.algorithms and self._qop_for(challenge) != "":
                return challenge
        return None

    def _qop_for(self, challenge: Challenge) -> str | None:
        """The qop to use; None for the legacy form; "" when we cannot answer."""
        if "auth" in challenge.qop:
            return "auth"
        if "auth-int" in challenge.qop:
            return "auth-int"
        if not challenge.qop and challenge.algorithm == "MD5" and self.allow_legacy_md5:
            return None
        return ""

    def authorize(
        self,
        challenge: Challenge,
        *,
        method: str,
        uri: str,
        body: bytes = b"",
        cnonce: str | None = None,
    ) -> tuple[str, str]:
        """``(header name, value)`` answering ``challenge`` for a request ``method uri``.

        ``uri`` is the Request-URI exactly as sent. Each call with the same nonce increments
        ``nc``. Raises :class:`DigestError` if the challenge cannot be answered.
        """
        if challenge.algorithm not in self.algorithms:
            raise DigestError(f"digest algorithm {challenge.algorithm} not accepted")
        qop = self._qop_for(challenge)
        if qop == "":
            raise DigestError(f"cannot answer qop {','.join(challenge.qop)!r}")
        nc: str | None = None
        if qop is not None or challenge.algorithm.endswith("-SESS"):
            cnonce = cnonce or secrets.token_hex(16)
        if qop is not None:
            key = (challenge.realm, challenge.nonce)
            count = self._counts.pop(key, 0) + 1
            self._counts[key] = count
            while len(self._counts) > self._MAX_NONCES:
                self._counts.popitem(last=False)
            nc = f"{count:08x}"
        ha1 = compute_ha1(challenge.algorithm, self.username, challenge.realm, self._password)
        response = compute_response(
            algorithm=challenge.algorithm,
            ha1=ha1,
            nonce=challenge.nonce,
            method=method,
            uri=uri,
            qop=qop,
            nc=nc,
            cnonce=cnonce,
            body=body,
        )
        credentials = Credentials(
            username=self.username,
            realm=challenge.realm,
            nonce=challenge.nonce,
            uri=uri,
            response=response,
            algorithm=challenge.algorithm,
            qop=qop,
            nc=nc,
            cnonce=cnonce,
            opaque=challenge.opaque,
        )
        return challenge.answer_header_name, str(credentials)

    def answer(self, response: SipResponse, request: SipRequest) -> tuple[str, str] | None:
        """Credentials answering a 401/407 ``response`` to ``request``, None if we cannot."""
        challenge = self.choose(Challenge.from_response(response))
        if challenge is None:
            return None
        return self.authorize(challenge, method=request.method, uri=request.uri, body=request.body)


# -- server side -----------------------------------------------------------------------------------


class AuthOutcome(Enum):
    OK = "ok"
    MISSING = "missing"  # no credentials for our realm: challenge
    MALFORMED = "malformed"  # unparsable credentials: 400
    UNSUPPORTED = "unsupported"  # algorithm or qop we do not offer: challenge
    WRONG_URI = "wrong-uri"  # digest uri does not name the Request-URI: 400
    BAD_NONCE = "bad-nonce"  # not one of ours: challenge
    STALE = "stale"  # ours, but expired: challenge with stale=true
    REPLAY = "replay"  # nc not above the last one seen: challenge with stale=true
    UNKNOWN_USER = "unknown-user"  # treat like BAD_RESPONSE (no user enumeration)
    BAD_RESPONSE = "bad-response"  # wrong password: challenge again or 403


@dataclass(frozen=True)
class AuthResult:
    outcome: AuthOutcome
    username: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is AuthOutcome.OK

    @property
    def stale(self) -> bool:
        """True when the fresh challenge should say ``stale=true`` (the password was right)."""
        return self.outcome in (AuthOutcome.STALE, AuthOutcome.REPLAY)


_NONCE_CONTEXT = b"sipstack-digest-nonce-v1"
_NONCE_BYTES = 8 + 12 + 16  # issue time, random, truncated HMAC


class DigestServer:
    """Stateless-nonce digest server for one realm.

    ``secret`` keys the nonce HMAC (keep it across restarts if nonces should survive them).
    ``proxy=True`` uses 407/``Proxy-Authenticate``/``Proxy-Authorization``. A nonce lives
    ``nonce_lifetime`` seconds; at most ``max_tracked_nonces`` are remembered for replay
    checks (when one is forgotten early, older nonces are answered as stale instead).
    """

    def __init__(
        self,
        realm: str,
        secret: bytes,
        *,
        algorithms: Sequence[str] = ("SHA-256", "MD5"),
        nonce_lifetime: float = 300.0,
        proxy: bool = False,
        allow_legacy_md5: bool = False,
        max_tracked_nonces: int = 4096,
        opaque: str | None = None,
    ) -> None:
        if len(secret) < 16:
            raise SipValueError("the nonce secret needs at least 16 bytes")
        unknown = [name for name in algorithms if name.upper() not in ALGORITHMS]
        if unknown or not algorithms:
            raise SipValueError(f"unsupported algorithms {unknown!r}")
        self.realm = realm
        self._secret = secret
        self.algorithms = tuple(name.upper() for name in algorithms)
        self.nonce_lifetime = nonce_lifetime
        self.proxy = proxy
        self.allow_legacy_md5 = allow_legacy_md5
        self.max_tracked_nonces = max_tracked_nonces
        self.opaque = opaque
        self._last_nc: OrderedDict[str, tuple[int, int]] = OrderedDict()  # nonce -> (nc, issued)
        self._forgotten_before = -1  # nonces issued at or before this were possibly forgotten

    @property
    def status(self) -> int:
        """The challenge status: 401, or 407 for a proxy."""
        return 407 if self.proxy else 401

    @property
    def challenge_header(self) -> str:
        return "Proxy-Authenticate" if self.proxy else "WWW-Authenticate"

    @property
    def credentials_header(self) -> str:
        return "Proxy-Authorization" if self.proxy else "Authorization"

    # nonces

    def _mac(self, issued: bytes, salt: bytes) -> bytes:
        message = _NONCE_CONTEXT + self.realm.encode("utf-8") + b"\0" + issued + salt
        return hmac.new(self._secret, message, hashlib.sha256).digest()[:16]

    def make_nonce(self, now: float) -> str:
        issued = int(now).to_bytes(8, "big", signed=True)
        salt = secrets.token_bytes(12)
        raw = issued + salt + self._mac(issued, salt)
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    def _nonce_issued(self, nonce: str) -> int | None:
        """Issue time of one of our nonces, None if it is not one of ours."""
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except ValueError:
            return None
        if len(raw) != _NONCE_BYTES:
            return None
        issued, salt, mac = raw[:8], raw[8:20], raw[20:]
        if not hmac.compare_digest(mac, self._mac(issued, salt)):
            return None
        return int.from_bytes(issued, "big", signed=True)

    def check_nonce(self, nonce: str, now: float) -> AuthOutcome:
        """OK, STALE (ours but expired) or BAD_NONCE."""
        issued = self._nonce_issued(nonce)
        if issued is None:
            return AuthOutcome.BAD_NONCE
        age = now - issued
        if age < -60:  # from the future: not a clock we trust
            return AuthOutcome.BAD_NONCE
        return AuthOutcome.OK if age <= self.nonce_lifetime else AuthOutcome.STALE

    # challenges

    def challenges(self, now: float, *, stale: bool = False) -> list[tuple[str, str]]:
        """``(header name, value)`` pairs for a 401/407: one challenge per algorithm, in order."""
        nonce = self.make_nonce(now)
        return [
            (
                self.challenge_header,
                str(
                    Challenge(
                        realm=self.realm,
                        nonce=nonce,
                        algorithm=algorithm,
                        qop=("auth",),
                        opaque=self.opaque,
                        stale=stale,
                        proxy=self.proxy,
                    )
                ),
            )
            for algorithm in self.algorithms
        ]

    # verification

    def verify(
        self,
        request: SipRequest,
        now: float,
        *,
        password_of: Callable[[str], str | None] | None = None,
        ha1_of: Callable[[str, str], str | None] | None = None,
    ) -> AuthResult:
        """Check the request's credentials for our realm.

        Give ``password_of(username)`` or ``ha1_of(username, algorithm)`` (the stored
        ``H(username:realm:password)`` in hex for that algorithm); None means no such user.
        Only an OK result with qop records the ``nc``.
        """
        if (password_of is None) == (ha1_of is None):
            raise SipValueError("give exactly one of password_of and ha1_of")
        mine: list[Credentials] = []
        malformed = False
        for value in request.headers.get_all(self.credentials_header):
            try:
                credentials = Credentials.parse(value)
            except SipParseError:
                malformed = True
                continue
            if credentials.realm == self.realm:
                mine.append(credentials)
        if not mine:
            return AuthResult(AuthOutcome.MALFORMED if malformed else AuthOutcome.MISSING)
        return self.verify_credentials(
            mine[0],
            method=request.method,
            request_uri=request.uri,
            now=now,
            body=request.body,
            password_of=password_of,
            ha1_of=ha1_of,
        )

    def verify_credentials(
        self,
        credentials: Credentials,
        *,
        method: str,
        request_uri: str,
        now: float,
        body: bytes = b"",
        password_of: Callable[[str], str | None] | None = None,
        ha1_of: Callable[[str, str], str | None] | None = None,
    ) -> AuthResult:
        """:meth:`verify` for already parsed credentials."""
        user = credentials.username
        algorithm = credentials.algorithm
        if credentials.realm != self.realm:
            return AuthResult(AuthOutcome.MISSING, user)
        if algorithm not in self.algorithms:
            return AuthResult(AuthOutcome.UNSUPPORTED, user)
        qop = credentials.qop
        if qop is None:
            if not (self.allow_legacy_md5 and algorithm == "MD5"):
                return AuthResult(AuthOutcome.UNSUPPORTED, user)
        elif qop != "auth" or credentials.nc is None or not credentials.cnonce:
            return AuthResult(AuthOutcome.UNSUPPORTED, user)
        if self.opaque is not None and credentials.opaque != self.opaque:
            return AuthResult(AuthOutcome.BAD_NONCE, user)
        if not _same_uri(credentials.uri, request_uri):
            return AuthResult(AuthOutcome.WRONG_URI, user)
        nonce_state = self.check_nonce(credentials.nonce, now)
        if nonce_state is not AuthOutcome.OK:
            return AuthResult(nonce_state, user)
        if password_of is not None:
            password = password_of(user)
            ha1 = None if password is None else compute_ha1(algorithm, user, self.realm, password)
        else:
            assert ha1_of is not None
            ha1 = ha1_of(user, _base(algorithm))
        # Compute even for an unknown user so both cases cost the same.
        expected = compute_response(
            algorithm=algorithm,
            ha1=ha1 if ha1 is not None else "0" * 32,
            nonce=credentials.nonce,
            method=method,
            uri=credentials.uri,
            qop=qop,
            nc=credentials.nc,
            cnonce=credentials.cnonce,
            body=body,
        )
        matches = hmac.compare_digest(expected.encode(), credentials.response.encode())
        if ha1 is None:
            return AuthResult(AuthOutcome.UNKNOWN_USER, user)
        if not matches:
            return AuthResult(AuthOutcome.BAD_RESPONSE, user)
        if credentials.nc is not None and not self._advance_nc(
            credentials.nonce, credentials.nc, now
        ):
            return AuthResult(AuthOutcome.REPLAY, user)
        return AuthResult(AuthOutcome.OK, user)

    def _advance_nc(self, nonce: str, nc_text: str, now: float) -> bool:
        nc = int(nc_text, 16)
        issued = self._nonce_issued(nonce)
        assert issued is not None  # checked by the caller
        self._expire(now)
        previous = self._last_nc.get(nonce)
        if previous is None and issued <= self._forgotten_before:
            return False  # we may have forgotten its count: make the client take a new nonce
        if previous is not None and nc <= previous[0]:
            return False
        self._last_nc[nonce] = (nc, issued)
        self._last_nc.move_to_end(nonce)
        while len(self._last_nc) > self.max_tracked_nonces:
            _, (_, dropped_issued) = self._last_nc.popitem(last=False)
            self._forgotten_before = max(self._forgotten_before, dropped_issued)
        return True

    def _expire(self, now: float) -> None:
        expired = [
            nonce
            for nonce, (_, issued) in self._last_nc.items()
            if now - issued > self.nonce_lifetime
        ]
        for nonce in expired:
            del self._last_nc[nonce]

    @property
    def tracked_nonces(self) -> int:
        return len(self._last_nc)


def _same_uri(digest_uri: str, request_uri: str) -> bool:
    if digest_uri == request_uri:
        return True
    if is_sip_uri(digest_uri) and is_sip_uri(request_uri):
        try:
            return SipUri.parse(digest_uri).equivalent(SipUri.parse(request_uri))
        except SipUriError:
            return False
    return False
