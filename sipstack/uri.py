"""SIP and SIPS URIs (RFC 3261 §19.1): parse, serialise, compare per §19.1.4.

Pure module. Components are kept as written (escapes included) so that a URI serialises back to
the text it came from; only the scheme is lower-cased and IPv6 brackets are stripped from
``host`` (``str()`` puts them back). :meth:`SipUri.equivalent` applies the RFC comparison rules.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import unquote

from sipstack.errors import SipUriError, SipValueError

__all__ = ["SipUri", "is_sip_uri", "unescape"]

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
_ESC = r"%[0-9A-Fa-f]{2}"
_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
_USER = re.compile(rf"(?:[{_UNRESERVED}&=+$,;?/]|{_ESC})+")
_PASSWORD = re.compile(rf"(?:[{_UNRESERVED}&=+$,]|{_ESC})*")
_PARAMCHARS = re.compile(rf"(?:[{_UNRESERVED}\[\]/:&+$]|{_ESC})+")
_HNV = re.compile(rf"(?:[{_UNRESERVED}\[\]/?:+$]|{_ESC})*")
_HNAME = re.compile(rf"(?:[{_UNRESERVED}\[\]/?:+$]|{_ESC})+")
# Lenient hostname: labels of letters, digits, '-' and '_' (seen in container names).
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_\-]*[A-Za-z0-9_])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_ESCAPE = re.compile(_ESC)
_UNRESERVED_CHARS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()"
)
# URI parameters that make two URIs differ when only one of them has it (§19.1.4; transport
# is added because the RFC's own examples treat it so).
_MUST_MATCH_PARAMS = frozenset({"user", "ttl", "method", "maddr", "transport"})


def unescape(text: str) -> str:
    """Percent-decode ``text`` (UTF-8; undecodable bytes become U+FFFD)."""
    return unquote(text, errors="replace")


def is_sip_uri(text: str) -> bool:
    """True if ``text`` starts with the ``sip:`` or ``sips:`` scheme (any case)."""
    return text[:4].lower() == "sip:" or text[:5].lower() == "sips:"


def _normalise_escapes(text: str, *, fold_case: bool) -> str:
    """Decode escapes of unreserved characters, upper-case the others; optionally lower-case."""

    def replace(match: re.Match[str]) -> str:
        char = chr(int(match.group(0)[1:], 16))
        return char if char in _UNRESERVED_CHARS else match.group(0).upper()

    decoded = _ESCAPE.sub(replace, text)
    if fold_case:
        # lower-case everything but keep escapes upper-case so "%3a" and "%3A" still agree
        return _ESCAPE.sub(lambda m: m.group(0).upper(), decoded.lower())
    return decoded


def _parse_host(text: str, uri: str) -> str:
    if text.startswith("["):
        if not text.endswith("]"):
            raise SipUriError(f"unterminated IPv6 reference in {uri!r}")
        inner = text[1:-1]
        try:
            ipaddress.IPv6Address(inner)
        except ValueError:
            raise SipUriError(f"bad IPv6 address in {uri!r}") from None
        return inner
    if _HOSTNAME.fullmatch(text) is None:
        raise SipUriError(f"bad host {text!r} in {uri!r}")
    return text


def _format_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _host_key(host: str) -> str:
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        return host.lower().rstrip(".")


@dataclass(frozen=True)
class SipUri:
    """A ``sip:`` or ``sips:`` URI. ``host`` has no IPv6 brackets; other parts are as written.

    ``params`` keeps the URI parameters in order as ``(name, value-or-None)``; ``headers`` the
    ``?name=value&...`` part. Dataclass equality is structural; use :meth:`equivalent` for the
    RFC 3261 comparison.
    """

    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    scheme: str = "sip"
    params: tuple[tuple[str, str | None], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.scheme not in ("sip", "sips"):
            raise SipValueError(f"scheme must be 'sip' or 'sips', not {self.scheme!r}")
        if self.port is not None and not 0 <= self.port <= 65535:
            raise SipValueError(f"port out of range: {self.port}")
        if ":" in self.host:
            try:
                ipaddress.IPv6Address(self.host)
            except ValueError:
                raise SipValueError(f"bad host {self.host!r}") from None
        elif _HOSTNAME.fullmatch(self.host) is None:
            raise SipValueError(f"bad host {self.host!r}")
        if self.user is not None and _USER.fullmatch(self.user) is None:
            raise SipValueError(f"bad user part {self.user!r} (escape it)")
        if self.password is not None and _PASSWORD.fullmatch(self.password) is None:
            raise SipValueError(f"bad password part {self.password!r} (escape it)")
        for name, value in self.params:
            if _PARAMCHARS.fullmatch(name) is None or (
                value is not None and _PARAMCHARS.fullmatch(value) is None
            ):
                raise SipValueError(f"bad URI parameter {name!r}={value!r}")
        for name, value in self.headers:
            if _HNAME.fullmatch(name) is None or _HNV.fullmatch(value) is None:
                raise SipValueError(f"bad URI header {name!r}={value!r}")

    # -- parsing and formatting ----------------------------------------------------------------

    @classmethod
    def parse(cls, text: str) -> SipUri:
        """Parse ``text``; :class:`SipUriError` (400; 416 for another scheme) if it is not one."""
        scheme, colon, rest = text.partition(":")
        if not colon or _SCHEME.fullmatch(scheme) is None:
            raise SipUriError(f"not a URI: {text!r}")
        scheme = scheme.lower()
        if scheme not in ("sip", "sips"):
            raise SipUriError(f"unsupported URI scheme {scheme!r}", status=416)
        user: str | None = None
        password: str | None = None
        at = rest.find("@")
        if at >= 0:
            userinfo, rest = rest[:at], rest[at + 1 :]
            user, has_password, secret = userinfo.partition(":")
            if _USER.fullmatch(user) is None:
                raise SipUriError(f"bad user part in {text!r}")
            if has_password:
                if _PASSWORD.fullmatch(secret) is None:
                    raise SipUriError(f"bad password part in {text!r}")
                password = secret
        rest, question, header_text = rest.partition("?")
        hostport, *param_texts = rest.split(";")
        port = None
        if hostport.startswith("["):
            # IPv6 reference: the port colon comes after the closing bracket.
            close = hostport.find("]")
            after = hostport[close + 1 :] if close >= 0 else ""
            if close < 0 or (after and not after.startswith(":")):
                raise SipUriError(f"bad host in {text!r}")
            host_text, has_port, port_text = hostport[: close + 1], bool(after), after[1:]
        else:
            host_text, colon, port_text = hostport.partition(":")
            has_port = bool(colon)
        if has_port:
            if not (port_text.isascii() and port_text.isdigit()) or len(port_text) > 5:
                raise SipUriError(f"bad port in {text!r}")
            port = int(port_text)
            if port > 65535:
                raise SipUriError(f"port out of range in {text!r}")
        host = _parse_host(host_text, text)
        params: list[tuple[str, str | None]] = []
        for piece in param_texts:
            name, equals, value = piece.partition("=")
            if _PARAMCHARS.fullmatch(name) is None or (
                equals and _PARAMCHARS.fullmatch(value) is None
            ):
                raise SipUriError(f"bad URI parameter {piece!r} in {text!r}")
            params.append((name, value if equals else None))
        headers: list[tuple[str, str]] = []
        if question:
            for piece in header_text.split("&"):
                name, equals, value = piece.partition("=")
                if not equals or _HNAME.fullmatch(name) is None or _HNV.fullmatch(value) is None:
                    raise SipUriError(f"bad URI header {piece!r} in {text!r}")
                headers.append((name, value))
        return cls(
            host=host,
            user=user,
            password=password,
            port=port,
            scheme=scheme,
            params=tuple(params),
            headers=tuple(headers),
        )

    def __str__(self) -> str:
        userinfo = ""
        if self.user is not None:
            secret = "" if self.password is None else f":{self.password}"
            userinfo = f"{self.user}{secret}@"
        port = "" if self.port is None else f":{self.port}"
        params = "".join(f";{n}" if v is None else f";{n}={v}" for n, v in self.params)
        headers = "&".join(f"{n}={v}" for n, v in self.headers)
        query = f"?{headers}" if headers else ""
        return f"{self.scheme}:{userinfo}{_format_host(self.host)}{port}{params}{query}"

    # -- accessors -----------------------------------------------------------------------------

    def param(self, name: str) -> str | None:
        """The value of URI parameter ``name`` (case-insensitive); None if absent or valueless."""
        key = name.lower()
        for existing, value in self.params:
            if existing.lower() == key:
                return value
        return None

    def has_param(self, name: str) -> bool:
        """True if URI parameter ``name`` is present (``lr`` and other flags)."""
        key = name.lower()
        return any(existing.lower() == key for existing, _ in self.params)

    @property
    def transport(self) -> str | None:
        """The ``transport`` parameter, lower-cased."""
        value = self.param("transport")
        return None if value is None else value.lower()

    @property
    def secure(self) -> bool:
        return self.scheme == "sips"

    @property
    def hostport(self) -> str:
        """``host[:port]`` with IPv6 brackets."""
        port = "" if self.port is None else f":{self.port}"
        return f"{_format_host(self.host)}{port}"

    def address_of_record(self) -> str:
        """``scheme:user@host`` without port, parameters or headers (a thing's identity key)."""
        user = "" if self.user is None else f"{self.user}@"
        return f"{self.scheme}:{user}{_format_host(self.host)}"

    # -- comparison ----------------------------------------------------------------------------

    def equivalent(self, other: SipUri) -> bool:
        """RFC 3261 §19.1.4 comparison.

        Userinfo is case-sensitive, everything else is not; escapes of unreserved characters
        equal the characters; a port, a header, or a ``user``/``ttl``/``method``/``maddr``/
        ``transport`` parameter present in only one URI makes them differ; other parameters
        present in only one are ignored.
        """
        if self.scheme != other.scheme or self.port != other.port:
            return False
        if _host_key(self.host) != _host_key(other.host):
            return False
        for mine, theirs in ((self.user, other.user), (self.password, other.password)):
            if (mine is None) != (theirs is None):
                return False
            if (
                mine is not None
                and theirs is not None
                and _normalise_escapes(mine, fold_case=False)
                != _normalise_escapes(theirs, fold_case=False)
            ):
                return False
        mine_params = _param_map(self.params)
        their_params = _param_map(other.params)
        for name in mine_params.keys() | their_params.keys():
            if name in mine_params and name in their_params:
                if mine_params[name] != their_params[name]:
                    return False
            elif name in _MUST_MATCH_PARAMS:
                return False
        return _header_set(self.headers) == _header_set(other.headers)


def _param_map(params: tuple[tuple[str, str | None], ...]) -> dict[str, str | None]:
    mapped: dict[str, str | None] = {}
    for name, value in params:
        key = _normalise_escapes(name, fold_case=True)
        mapped.setdefault(key, None if value is None else _normalise_escapes(value, fold_case=True))
    return mapped


def _header_set(headers: tuple[tuple[str, str], ...]) -> frozenset[tuple[str, str]]:
    return frozenset(
        (_normalise_escapes(name, fold_case=True), _normalise_escapes(value, fold_case=False))
        for name, value in headers
    )
