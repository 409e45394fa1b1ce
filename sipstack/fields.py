"""Typed views of individual SIP header values (RFC 3261 §20, RFC 3581, RFC 6665, RFC 3903,
RFC 3841).

Pure module. Every ``parse`` raises :class:`~sipstack.errors.SipParseError` (400) for a bad
value; every ``__str__`` produces the canonical wire form. Parameters are kept as
``dict[str, str | None]`` with lower-cased names and values as written (quoted strings keep their
quotes; a flag parameter maps to None).
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from dataclasses import dataclass, field

from sipstack.errors import SipParseError, SipValueError
from sipstack.headers import (
    collapse_lws,
    format_params,
    is_token,
    parse_params,
    quote_string,
    unquote_string,
)
from sipstack.uri import SipUri

__all__ = [
    "BRANCH_COOKIE",
    "MAX_DELTA_SECONDS",
    "CSeq",
    "ContactPreference",
    "Event",
    "NameAddr",
    "SubscriptionState",
    "Via",
    "new_branch",
    "new_call_id",
    "new_tag",
    "parse_call_id",
    "parse_delta_seconds",
    "parse_etag",
    "parse_max_forwards",
]

#: RFC 3261 branch prefix.
BRANCH_COOKIE = "z9hG4bK"
#: Upper bound of ``delta-seconds`` values (larger ones are clamped to it).
MAX_DELTA_SECONDS = 2**32 - 1
#: Upper bound of a CSeq number (the grammar allows 32 bits).
MAX_CSEQ = 2**32 - 1

_ABSOLUTE_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>\"]+")
_WORD = r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+"
_CALL_ID = re.compile(rf"{_WORD}(?:@{_WORD})?")
_SENT_BY = re.compile(
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_](?:[A-Za-z0-9_\-.]*[A-Za-z0-9_.])?)"
    r"(?:[ \t]*:[ \t]*(?P<port>[0-9]{1,5}))?"
)
_VIA_PROTOCOL = re.compile(
    r"(?P<name>[A-Za-z0-9\-.!%*_+`'~]+)[ \t]*/[ \t]*(?P<version>[A-Za-z0-9\-.!%*_+`'~]+)"
    r"[ \t]*/[ \t]*(?P<transport>[A-Za-z0-9\-.!%*_+`'~]+)[ \t]+"
)
_DIGITS = re.compile(r"[0-9]+")


def new_branch() -> str:
    """A fresh RFC 3261 branch: the magic cookie plus 96 random bits."""
    return BRANCH_COOKIE + secrets.token_hex(12)


def new_tag() -> str:
    """A fresh From/To tag (64 random bits; RFC 3261 asks for at least 32)."""
    return secrets.token_hex(8)


def new_call_id(host: str | None = None) -> str:
    """A fresh, globally unique Call-ID (128 random bits, ``@host`` if given)."""
    local = secrets.token_hex(16)
    return f"{local}@{host}" if host else local


def _delta(text: str, what: str) -> int:
    value = text.strip(" \t")
    if _DIGITS.fullmatch(value) is None:
        raise SipParseError(f"{what}: not a number: {text!r}")
    # Clamp before int(): a huge digit string must not cost time (nor hit int-size limits).
    if len(value.lstrip("0")) > 10:
        return MAX_DELTA_SECONDS
    return min(int(value), MAX_DELTA_SECONDS)


def parse_delta_seconds(text: str) -> int:
    """``Expires``/``Min-Expires``/``Retry-After`` seconds (values above 2**32-1 are clamped)."""
    return _delta(text, "delta-seconds")


def parse_max_forwards(text: str) -> int:
    """``Max-Forwards`` (0..255; leading zeros allowed)."""
    value = text.strip(" \t")
    if _DIGITS.fullmatch(value) is None or len(value.lstrip("0")) > 3 or int(value) > 255:
        raise SipParseError(f"bad Max-Forwards {text!r}")
    return int(value)


def parse_call_id(text: str) -> str:
    """A ``Call-ID`` value (``word ["@" word]``); compared case-sensitively."""
    value = text.strip(" \t")
    if _CALL_ID.fullmatch(value) is None:
        raise SipParseError(f"bad Call-ID {text!r}")
    return value


def parse_etag(text: str) -> str:
    """A ``SIP-ETag`` or ``SIP-If-Match`` entity tag (a token)."""
    value = text.strip(" \t")
    if not is_token(value):
        raise SipParseError(f"bad entity tag {text!r}")
    return value


def _address_key(host: str) -> str:
    try:
        return ipaddress.ip_address(host.strip("[]")).compressed
    except ValueError:
        return host.lower()


def _int_param(params: dict[str, str | None], name: str) -> int | None:
    raw = params.get(name)
    return None if raw is None else _delta(raw, name)


# -- Via -------------------------------------------------------------------------------------------


@dataclass
class Via:
    """One Via value: ``SIP/2.0/<transport> host[:port];params``. ``host`` has no brackets."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Via:
        value = text.strip(" \t")
        proto = _VIA_PROTOCOL.match(value)
        if proto is None:
            raise SipParseError(f"bad Via protocol in {text!r}")
        if proto["name"].upper() != "SIP" or proto["version"] != "2.0":
            raise SipParseError(f"unsupported Via protocol in {text!r}")
        rest = value[proto.end() :]
        sent_by = _SENT_BY.match(rest)
        if sent_by is None:
            raise SipParseError(f"bad Via sent-by in {text!r}")
        host = sent_by["host"]
        if host.startswith("["):
            host = host[1:-1]
        port = None if sent_by["port"] is None else int(sent_by["port"])
        if port is not None and port > 65535:
            raise SipParseError(f"Via port out of range in {text!r}")
        params = parse_params(rest[sent_by.end() :])
        for name in ("branch", "received", "maddr", "ttl"):
            if name in params and not params[name]:
                raise SipParseError(f"Via {name} without a value in {text!r}")
        rport = params.get("rport", "")
        if rport and (_DIGITS.fullmatch(rport) is None or len(rport) > 5 or int(rport) > 65535):
            raise SipParseError(f"bad rport in {text!r}")
        return cls(proto["transport"].upper(), host, port, params)

    def __str__(self) -> str:
        if not is_token(self.transport):
            raise SipValueError(f"bad Via transport {self.transport!r}")
        return f"SIP/2.0/{self.transport} {self.sent_by}{format_params(self.params)}"

    @property
    def sent_by(self) -> str:
        """``host[:port]`` as it appears in the header (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def has_rport(self) -> bool:
        """True if the ``rport`` parameter is present (with or without a value)."""
        return "rport" in self.params

    @property
    def rport(self) -> int | None:
        """The ``rport`` value filled in by a server, None if absent or empty."""
        raw = self.params.get("rport")
        return None if raw is None else int(raw)

    @property
    def rfc3261_branch(self) -> bool:
        """True if the branch carries the RFC 3261 magic cookie (transaction ids are usable)."""
        return self.branch is not None and self.branch.startswith(BRANCH_COOKIE)

    def stamp_source(self, source_host: str, source_port: int) -> None:
        """What a server does on receipt (RFC 3261 §18.2.1, RFC 3581 §4).

        Adds ``received`` when the sent-by host is not the packet's source address, or always when
        the client asked for ``rport``; fills in ``rport`` with the source port.
        """
        if self.has_rport:
            self.params["received"] = source_host
            self.params["rport"] = str(source_port)
        elif _address_key(self.host) != _address_key(source_host):
            self.params["received"] = source_host

    def response_address(self, default_port: int = 5060) -> tuple[str, int]:
        """Where an unreliable-transport response goes: received/rport, else sent-by."""
        host = self.received or self.host
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        port = self.rport or self.port or default_port
        return host, port


# -- name-addr ---------------------------------------------------------------------------------


@dataclass
class NameAddr:
    """``From``, ``To``, ``Contact``, ``Route``, ``Reply-To``... values.

    ``uri`` is the URI text (any scheme; :meth:`sip_uri` parses a SIP one), ``display_name``
    the unquoted display name, ``params`` the header parameters (``tag``, ``expires``, ``q``,
    feature tags...). ``uri == "*"`` is the wildcard Contact.
    """

    uri: str
    display_name: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str, *, allow_wildcard: bool = False) -> NameAddr:
        value = text.strip(" \t")
        display: str | None = None
        if value.startswith('"'):
            index = 1
            while index < len(value):
                if value[index] == "\\":
                    index += 2
                    continue
                if value[index] == '"':
                    break
                index += 1
            if index >= len(value):
                raise SipParseError(f"unterminated display name in {text!r}")
            display = unquote_string(value[: index + 1]) or None
            value = value[index + 1 :].lstrip(" \t")
            if not value.startswith("<"):
                raise SipParseError(f"quoted display name without <URI> in {text!r}")
        if "<" in value:
            open_at = value.index("<")
            if display is None:
                words = value[:open_at].strip(" \t")
                if words:
                    if not all(is_token(word) for word in words.split()):
                        raise SipParseError(f"bad display name in {text!r}")
                    display = collapse_lws(words)
            close_at = value.find(">", open_at)
            if close_at < 0:
                raise SipParseError(f"missing '>' in {text!r}")
            uri = value[open_at + 1 : close_at]
            rest = value[close_at + 1 :]
        else:
            uri, semi, rest = value.partition(";")
            uri = uri.strip(" \t")
            rest = semi + rest
            if allow_wildcard and uri == "*":
                return cls("*", None, parse_params(rest))
            # In the addr-spec form the URI cannot carry ',', ';' or '?' (RFC 3261 §20.10).
            if "?" in uri or "," in uri:
                raise SipParseError(f"URI with '?' or ',' must be in <> in {text!r}")
        if _ABSOLUTE_URI.fullmatch(uri) is None:
            raise SipParseError(f"bad URI {uri!r} in {text!r}")
        params = parse_params(rest)
        if "tag" in params and not is_token(params["tag"] or ""):
            raise SipParseError(f"bad tag in {text!r}")
        return cls(uri, display, params)

    def __str__(self) -> str:
        if self.uri == "*":
            return "*" + format_params(self.params)
        if _ABSOLUTE_URI.fullmatch(self.uri) is None:
            raise SipValueError(f"bad URI {self.uri!r}")
        name = "" if not self.display_name else quote_string(self.display_name) + " "
        return f"{name}<{self.uri}>{format_params(self.params)}"

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @tag.setter
    def tag(self, value: str | None) -> None:
        if value is None:
            self.params.pop("tag", None)
        else:
            if not is_token(value):
                raise SipValueError(f"bad tag {value!r}")
            self.params["tag"] = value

    @property
    def expires(self) -> int | None:
        """The Contact ``expires`` parameter."""
        return _int_param(self.params, "expires")

    def sip_uri(self) -> SipUri:
        """:attr:`uri` parsed as a SIP URI (:class:`~sipstack.errors.SipUriError` otherwise)."""
        return SipUri.parse(self.uri)


# -- CSeq, Event, Subscription-State --------------------------------------------------------------


@dataclass(frozen=True)
class CSeq:
    number: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        number, _, method = text.strip(" \t").partition(" ")
        method = method.strip(" \t")
        if _DIGITS.fullmatch(number) is None or not is_token(method):
            raise SipParseError(f"bad CSeq {text!r}")
        if len(number.lstrip("0")) > 10 or int(number) > MAX_CSEQ:
            raise SipParseError(f"CSeq number too large in {text!r}")
        return cls(int(number), method)

    def __str__(self) -> str:
        if not 0 <= self.number <= MAX_CSEQ or not is_token(self.method):
            raise SipValueError(f"bad CSeq {self.number} {self.method!r}")
        return f"{self.number} {self.method}"


@dataclass
class Event:
    """``Event: package[;id=...]`` (RFC 6665). Packages compare case-sensitively."""

    package: str
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Event:
        package, semi, rest = text.strip(" \t").partition(";")
        package = package.strip(" \t")
        if not is_token(package):
            raise SipParseError(f"bad Event {text!r}")
        return cls(package, parse_params(semi + rest))

    def __str__(self) -> str:
        if not is_token(self.package):
            raise SipValueError(f"bad event package {self.package!r}")
        return self.package + format_params(self.params)

    @property
    def id(self) -> str | None:
        return self.params.get("id")

    def matches(self, other: Event) -> bool:
        """Same package and same ``id`` (a NOTIFY matches its SUBSCRIBE this way)."""
        return self.package == other.package and self.id == other.id


@dataclass
class SubscriptionState:
    """``Subscription-State: active;expires=60`` / ``terminated;reason=timeout``..."""

    state: str
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> SubscriptionState:
        state, semi, rest = text.strip(" \t").partition(";")
        state = state.strip(" \t")
        if not is_token(state):
            raise SipParseError(f"bad Subscription-State {text!r}")
        parsed = cls(state.lower(), parse_params(semi + rest))
        for name in ("expires", "retry-after"):
            _int_param(parsed.params, name)  # validate now, not when read
        return parsed

    @classmethod
    def active(cls, expires: int) -> SubscriptionState:
        return cls("active", {"expires": str(expires)})

    @classmethod
    def pending(cls, expires: int) -> SubscriptionState:
        return cls("pending", {"expires": str(expires)})

    @classmethod
    def terminated(cls, reason: str, retry_after: int | None = None) -> SubscriptionState:
        params: dict[str, str | None] = {"reason": reason}
        if retry_after is not None:
            params["retry-after"] = str(retry_after)
        return cls("terminated", params)

    def __str__(self) -> str:
        if not is_token(self.state):
            raise SipValueError(f"bad subscription state {self.state!r}")
        return self.state + format_params(self.params)

    @property
    def expires(self) -> int | None:
        return _int_param(self.params, "expires")

    @property
    def reason(self) -> str | None:
        raw = self.params.get("reason")
        return None if raw is None else raw.lower()

    @property
    def retry_after(self) -> int | None:
        return _int_param(self.params, "retry-after")


# -- Accept-Contact / Reject-Contact -----------------------------------------------------------


@dataclass
class ContactPreference:
    """An ``Accept-Contact``/``Reject-Contact`` value (RFC 3841): ``*`` plus feature parameters.

    ``features`` maps lower-cased feature tags (``actor``, ``methods``, ``+sip.instance``...) to
    their unquoted value, None for a boolean tag given without value. ``require`` and
    ``explicit`` are the two modifiers.
    """

    features: dict[str, str | None] = field(default_factory=dict)
    require: bool = False
    explicit: bool = False

    @classmethod
    def parse(cls, text: str) -> ContactPreference:
        value = text.strip(" \t")
        if not value.startswith("*"):
            raise SipParseError(f"caller-preference value must start with '*': {text!r}")
        params = parse_params(value[1:])
        require = "require" in params
        explicit = "explicit" in params
        features = {
            name: None if raw is None else unquote_string(raw)
            for name, raw in params.items()
            if name not in ("require", "explicit")
        }
        return cls(features, require, explicit)

    def __str__(self) -> str:
        params: dict[str, str | None] = {
            name: None if raw is None else quote_string(raw) for name, raw in self.features.items()
        }
        if self.explicit:
            params["explicit"] = None
        if self.require:
            params["require"] = None
        return "*" + format_params(params)

    def values(self, feature: str) -> tuple[str, ...] | None:
        """The comma-separated values of ``feature`` (``("TRUE",)`` for a bare boolean tag).

        None if the tag is absent. ``<...>`` string values are returned with the brackets
        stripped; token values keep any ``!`` negation prefix.
        """
        key = feature.lower()
        if key not in self.features:
            return None
        raw = self.features[key]
        if raw is None:
            return ("TRUE",)
        if raw.startswith("<") and raw.endswith(">"):
            return (raw[1:-1],)
        return tuple(part.strip() for part in raw.split(",") if part.strip())

    def wants(self, feature: str, value: str) -> bool:
        """True if ``feature`` lists ``value`` (case-insensitive), e.g. ``actor``/``msg-taker``."""
        found = self.values(feature)
        return found is not None and value.lower() in (item.lower() for item in found)
