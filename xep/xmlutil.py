"""Small helpers shared by the XEP codecs and models.

Pure module: no slixmpp, no I/O. It only reads and sets attributes of ``xml.etree`` elements it is
given; the namespace-specific modules (``xep.*.convert``, ``xep.*.model``) decide what they mean.
Parsers raise :class:`~xep.errors.StanzaError`; model checks raise :class:`ValueError`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from xep.errors import StanzaError

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

__all__ = [
    "TOKEN_ATTRS",
    "WS",
    "XML_LANG",
    "Tokens",
    "bool_attr",
    "check_aware",
    "check_text",
    "check_tokens",
    "expect",
    "is_xml_text",
    "local_name",
    "local_of",
    "parse_bool",
    "parse_tokens",
    "qname",
    "set_tokens",
    "xml_safe",
]

#: XML whitespace (what ``xs:`` whiteSpace collapsing strips).
WS = " \t\r\n"
#: The request attributes carrying service, device and user tokens (XSF names).
TOKEN_ATTRS: tuple[str, str, str] = ("serviceToken", "deviceToken", "userToken")
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"

# Characters that XML 1.0 cannot carry at all (outside the ``Char`` production).
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_TOKEN = re.compile(r"\S+")


class Tokens(Protocol):
    """Anything carrying the three token lists of a request."""

    @property
    def service_tokens(self) -> tuple[str, ...]: ...

    @property
    def device_tokens(self) -> tuple[str, ...]: ...

    @property
    def user_tokens(self) -> tuple[str, ...]: ...


# -- names -----------------------------------------------------------------------------------------


def qname(namespace: str, local: str) -> str:
    """``{namespace}local``."""
    return f"{{{namespace}}}{local}"


def local_of(tag: object, namespace: str) -> str | None:
    """Local name of ``tag`` if it is in ``namespace``, else None."""
    prefix = "{" + namespace + "}"
    if isinstance(tag, str) and tag.startswith(prefix):
        return tag[len(prefix) :]
    return None


def local_name(elem: Element, namespace: str) -> str | None:
    """Local name of ``elem`` if it is in ``namespace``, else None."""
    return local_of(elem.tag, namespace)


def expect(elem: Element, namespace: str, local: str) -> None:
    """Raise :class:`StanzaError` unless ``elem`` is ``<local xmlns=namespace>``."""
    if local_name(elem, namespace) != local:
        raise StanzaError(f"expected <{local} xmlns='{namespace}'>, got {elem.tag!r}")


# -- attributes ------------------------------------------------------------------------------------


def parse_bool(text: str, what: str = "boolean") -> bool:
    """xs:boolean: ``true``/``false``/``1``/``0`` (surrounding whitespace allowed)."""
    value = text.strip(WS)
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise StanzaError(f"{what}: {text!r} is not an xs:boolean")


def bool_attr(elem: Element, name: str, default: bool = False) -> bool:
    """The xs:boolean attribute ``name`` of ``elem``, ``default`` when absent."""
    text = elem.get(name)
    return default if text is None else parse_bool(text, f"attribute {name!r}")


def parse_tokens(elem: Element, attr: str, limit: int) -> tuple[str, ...]:
    """The whitespace-separated tokens of attribute ``attr`` (at most ``limit``)."""
    tokens = tuple((elem.get(attr) or "").split())
    if len(tokens) > limit:
        raise StanzaError(f"too many {attr} values ({len(tokens)} > {limit})")
    return tokens


def set_tokens(elem: Element, request: Tokens, attrs: tuple[str, str, str] = TOKEN_ATTRS) -> None:
    """Set the non-empty token lists of ``request`` as the service, device and user ``attrs``."""
    for attr, tokens in zip(
        attrs,
        (request.service_tokens, request.device_tokens, request.user_tokens),
        strict=True,
    ):
        if tokens:
            elem.set(attr, " ".join(tokens))


# -- model checks ----------------------------------------------------------------------------------


def is_xml_text(text: str) -> bool:
    """True if ``text`` can be carried in an XML 1.0 document (no control characters etc.)."""
    return _NOT_XML_CHAR.search(text) is None


def xml_safe(text: str) -> str:
    """``text`` with every character XML cannot carry replaced by U+FFFD."""
    return _NOT_XML_CHAR.sub("\ufffd", text)


def check_text(what: str, text: str | None) -> None:
    """Raise :class:`ValueError` if ``text`` (None passes) has characters XML cannot carry."""
    if text is not None and not is_xml_text(text):
        raise ValueError(f"{what} contains characters XML cannot carry: {text!r}")


def check_aware(what: str, value: datetime | None) -> None:
    """Raise :class:`ValueError` if ``value`` (None passes) is a naive datetime."""
    if value is not None and value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got {value.isoformat()}")


def check_tokens(tokens: Iterable[str]) -> None:
    """Raise :class:`ValueError` for an empty token or one with whitespace or non-XML text."""
    for token in tokens:
        if _TOKEN.fullmatch(token) is None or not is_xml_text(token):
            raise ValueError(f"invalid token {token!r} (empty or contains whitespace)")
