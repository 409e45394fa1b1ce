"""SIP header names, the header list, and the low-level value syntax (RFC 3261 §7.3, §25.1).

Pure module. Names are canonicalised on the way in: compact forms (``i``, ``v``, ``m``...) are
expanded and well-known names get their usual spelling (``call-id`` -> ``Call-ID``); unknown
names are kept as received. Lookups are case-insensitive and accept compact forms.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from sipstack.errors import SipParseError, SipValueError

__all__ = [
    "COMPACT_FORMS",
    "LIST_HEADERS",
    "Headers",
    "canonical_name",
    "collapse_lws",
    "format_params",
    "header_key",
    "is_token",
    "parse_params",
    "quote_string",
    "split_list",
    "unquote_string",
]

#: Compact header forms (RFC 3261 §7.3.3, RFC 6665, RFC 3841, RFC 3515, RFC 3892, RFC 4028,
#: RFC 4474).
COMPACT_FORMS: dict[str, str] = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

_WELL_KNOWN = (
    "Accept",
    "Accept-Contact",
    "Accept-Encoding",
    "Accept-Language",
    "Alert-Info",
    "Allow",
    "Allow-Events",
    "Authentication-Info",
    "Authorization",
    "Call-ID",
    "Call-Info",
    "Contact",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Content-Length",
    "Content-Type",
    "CSeq",
    "Date",
    "Error-Info",
    "Event",
    "Expires",
    "From",
    "Identity",
    "Identity-Info",
    "In-Reply-To",
    "Max-Forwards",
    "MIME-Version",
    "Min-Expires",
    "Organization",
    "Path",
    "Priority",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Require",
    "RAck",
    "Record-Route",
    "Refer-To",
    "Referred-By",
    "Reject-Contact",
    "Reply-To",
    "Request-Disposition",
    "Require",
    "Retry-After",
    "Route",
    "RSeq",
    "Server",
    "Service-Route",
    "Session-Expires",
    "SIP-ETag",
    "SIP-If-Match",
    "Subject",
    "Subscription-State",
    "Supported",
    "Timestamp",
    "To",
    "Unsupported",
    "User-Agent",
    "Via",
    "Warning",
    "WWW-Authenticate",
)
_CANONICAL: dict[str, str] = {name.lower(): name for name in _WELL_KNOWN}
_CANONICAL.update({short: long for short, long in COMPACT_FORMS.items()})

#: Headers whose grammar is ``x *(COMMA x)``: several values on one line are split on parse.
#: The authentication headers are deliberately absent (their values contain commas).
LIST_HEADERS: frozenset[str] = frozenset(
    name.lower()
    for name in (
        "Accept",
        "Accept-Contact",
        "Accept-Encoding",
        "Accept-Language",
        "Alert-Info",
        "Allow",
        "Allow-Events",
        "Call-Info",
        "Contact",
        "Content-Encoding",
        "Content-Language",
        "Error-Info",
        "In-Reply-To",
        "Path",
        "Proxy-Require",
        "Record-Route",
        "Reject-Contact",
        "Request-Disposition",
        "Require",
        "Route",
        "Service-Route",
        "Supported",
        "Unsupported",
        "Via",
        "Warning",
    )
)

_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
# Unquoted generic-param values: token or host (IPv6 references included).
_GEN_VALUE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~:\[\]]+")
_LWS = re.compile(r"[ \t]+")


def is_token(text: str) -> bool:
    """True if ``text`` is a non-empty RFC 3261 ``token``."""
    return _TOKEN.fullmatch(text) is not None


def canonical_name(name: str) -> str:
    """The long, conventionally spelled form of header ``name`` (unknown names unchanged)."""
    return _CANONICAL.get(name.lower(), name)


def header_key(name: str) -> str:
    """The case-insensitive lookup key of header ``name`` (compact forms expanded)."""
    return canonical_name(name).lower()


def _check_value(name: str, value: str) -> None:
    if "\r" in value or "\n" in value:
        raise SipValueError(f"header {name}: value contains CR or LF: {value!r}")


class Headers:
    """Ordered header fields; several fields may share a name. Names compare case-insensitively."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = []
        for name, value in items:
            self.add(name, value)

    @staticmethod
    def _field(name: str, value: str) -> tuple[str, str]:
        if not is_token(name):
            raise SipValueError(f"invalid header name {name!r}")
        _check_value(name, value)
        return canonical_name(name), value

    def add(self, name: str, value: str) -> None:
        """Append a field."""
        self._items.append(self._field(name, value))

    def prepend(self, name: str, value: str) -> None:
        """Insert a field before all others (a proxy's or client's new top Via)."""
        self._items.insert(0, self._field(name, value))

    def set(self, name: str, value: str) -> None:
        """Replace every field called ``name`` with one field, where the first one was."""
        field = self._field(name, value)
        key = header_key(name)
        for index, (existing, _) in enumerate(self._items):
            if existing.lower() == key:
                self._items[index] = field
                self._items = [
                    item
                    for position, item in enumerate(self._items)
                    if position == index or item[0].lower() != key
                ]
                return
        self._items.append(field)

    def remove(self, name: str) -> int:
        """Remove every field called ``name``; return how many there were."""
        key = header_key(name)
        kept = [item for item in self._items if item[0].lower() != key]
        removed = len(self._items) - len(kept)
        self._items = kept
        return removed

    def get(self, name: str, default: str | None = None) -> str | None:
        """The value of the first field called ``name``."""
        key = header_key(name)
        for existing, value in self._items:
            if existing.lower() == key:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        """The values of every field called ``name``, in order."""
        key = header_key(name)
        return [value for existing, value in self._items if existing.lower() == key]

    def count(self, name: str) -> int:
        """How many fields are called ``name``."""
        return len(self.get_all(name))

    def items(self) -> list[tuple[str, str]]:
        """All fields as ``(name, value)``, in order."""
        return list(self._items)

    def copy(self) -> Headers:
        clone = Headers()
        clone._items = list(self._items)
        return clone

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(n.lower(), v) for n, v in self._items] == [(n.lower(), v) for n, v in other._items]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


# -- value syntax ----------------------------------------------------------------------------------


def _scan_quoted(text: str, start: int) -> int:
    """Index just past the quoted string starting at ``text[start] == '"'`` (-1 if unterminated)."""
    index = start + 1
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == '"':
            return index + 1
        index += 1
    return -1


def split_list(value: str) -> list[str]:
    """Split a comma-separated header value, ignoring commas in quotes and angle brackets.

    Empty elements are dropped (RFC 7230 list rule); an unbalanced quote or bracket leaves the
    rest as one element for the field parser to reject.
    """
    parts: list[str] = []
    start = 0
    index = 0
    in_angle = False
    while index < len(value):
        char = value[index]
        if char == '"':
            end = _scan_quoted(value, index)
            if end < 0:
                break
            index = end
            continue
        if char == "<":
            in_angle = True
        elif char == ">":
            in_angle = False
        elif char == "," and not in_angle:
            parts.append(value[start:index])
            start = index + 1
        index += 1
    parts.append(value[start:])
    return [part.strip(" \t") for part in parts if part.strip(" \t")]


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    pieces: list[str] = []
    start = 0
    index = 0
    while index < len(text):
        char = text[index]
        if char == '"':
            end = _scan_quoted(text, index)
            if end < 0:
                raise SipParseError(f"unterminated quoted string in {text!r}")
            index = end
            continue
        if char == separator:
            pieces.append(text[start:index])
            start = index + 1
        index += 1
    pieces.append(text[start:])
    return pieces


def parse_params(text: str) -> dict[str, str | None]:
    """Parse ``*( SEMI generic-param )`` (``text`` empty or starting with ``;``).

    Names are lower-cased; a value is kept as written (quoted strings keep their quotes, see
    :func:`unquote_string`); a parameter without ``=`` maps to None. Whitespace around ``;``
    and ``=`` is allowed. Empty or duplicate parameters are errors.
    """
    text = text.strip(" \t")
    if not text:
        return {}
    if not text.startswith(";"):
        raise SipParseError(f"expected ';' before parameters: {text!r}")
    params: dict[str, str | None] = {}
    for piece in _split_outside_quotes(text[1:], ";"):
        name, equals, raw = piece.partition("=")
        name = name.strip(" \t")
        if not is_token(name):
            raise SipParseError(f"invalid parameter {piece.strip()!r}")
        key = name.lower()
        if key in params:
            raise SipParseError(f"duplicate parameter {key!r}")
        if not equals:
            params[key] = None
            continue
        value = raw.strip(" \t")
        if value.startswith('"'):
            if _scan_quoted(value, 0) != len(value):
                raise SipParseError(f"bad quoted parameter value {value!r}")
        elif _GEN_VALUE.fullmatch(value) is None:
            raise SipParseError(f"invalid value for parameter {key!r}: {value!r}")
        params[key] = value
    return params


def format_params(params: dict[str, str | None]) -> str:
    """``;name=value;flag`` for ``params`` (values written as stored)."""
    parts = []
    for name, value in params.items():
        if not is_token(name):
            raise SipValueError(f"invalid parameter name {name!r}")
        if value is None:
            parts.append(f";{name}")
            continue
        _check_value(name, value)
        if not (value.startswith('"') or _GEN_VALUE.fullmatch(value)):
            raise SipValueError(f"parameter {name}: value {value!r} needs quoting")
        parts.append(f";{name}={value}")
    return "".join(parts)


def quote_string(text: str) -> str:
    """``text`` as a quoted-string (backslash and double quote escaped)."""
    _check_value("quoted-string", text)
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def unquote_string(text: str) -> str:
    """The content of a quoted-string (quoted-pairs resolved); other text is returned as is."""
    if len(text) < 2 or not text.startswith('"') or not text.endswith('"'):
        return text
    if _scan_quoted(text, 0) != len(text):
        raise SipParseError(f"bad quoted string {text!r}")
    out: list[str] = []
    index = 1
    while index < len(text) - 1:
        char = text[index]
        if char == "\\":
            index += 1
            char = text[index]
        out.append(char)
        index += 1
    return "".join(out)


def collapse_lws(text: str) -> str:
    """``text`` with every run of spaces and tabs replaced by one space, and stripped."""
    return _LWS.sub(" ", text).strip()
