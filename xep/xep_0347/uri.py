"""``iotdisco:`` URIs of XEP-0347 (``xmpp-iot-xeps.md`` §6.4): the text of a thing's claim QR code.

Two spellings are read, one is written:

* ``iotdisco:NAME=VALUE;#NUM=1.5;...`` (scheme case-insensitive). Names and values are
  percent-encoded UTF-8; inside them a backslash makes the next character literal (``\\;``,
  ``\\\\``), as Waher's decoder allows. Operators ``=``, ``<``, ``<=``, ``>``, ``>=``, ``<>`` and
  ``~`` (mask: the character after ``~`` is the wildcard, the rest the pattern, so ``SN~*98*``
  is the pattern ``98*`` with wildcard ``*``). ``#`` before a name marks a numeric tag.
* Legacy XEP-0347 text: ``IoTDisco;NAME:VALUE;#NUM:VALUE`` with backslash escapes only.

Reserved names (case-insensitive, string, ``=`` only): ``R`` (the registry address), ``JID``,
``NID``, ``SID``, ``PT`` (a direct reference to one thing: JID, node id, source id, partition).

Every URI is exactly one kind (see :class:`DiscoUri`): **direct** if it names a ``JID``,
**claim** if it has a ``KEY`` tag (then every tag must use ``=``), **search** otherwise. In a
search URI a tag may appear twice with a lower (``>``, ``>=``) and an upper (``<``, ``<=``) bound:
when lower <= upper that is a range, otherwise the complement of the range between them
(Waher's reading: ``#K>3;#K<2`` is "not in [2, 3]"). Strings compare by code point.

Writing (:func:`format_disco_uri`, :func:`claim_uri`): names and values are percent-encoded,
keeping only ``A-Z a-z 0-9 - . _`` (``~`` is encoded too, so a name never looks like the mask
operator); a mask's wildcard is written as is when it is printable ASCII other than ``;``, ``\\``,
``%``. Numbers are written as Python's ``repr`` of the float: the shortest text that reads back
to the same double, always with a ``.`` or an exponent (``1.0``, ``-72.0``, ``1e+16``), so the
spec's claim example is reproduced byte for byte. Tags come in the given order, then ``JID``,
``NID``, ``SID``, ``PT``, then ``R``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote

from xep.errors import StanzaError
from xep.xep_0323.model import NodeRef
from xep.xep_0347.model import (
    KEY,
    MAX_TAGS,
    MetaTag,
    SearchOperator,
    SearchTerm,
    canonical_tags,
    check_tag_name,
)
from xep.xmlutil import is_xml_text

__all__ = [
    "MAX_URI_LENGTH",
    "RESERVED_NAMES",
    "DiscoUri",
    "claim_uri",
    "format_disco_uri",
    "parse_claim_uri",
    "parse_disco_uri",
]

# A QR code holds at most 2953 bytes; anything much longer is not a thing's label.
MAX_URI_LENGTH = 4096
# Generous for a JID (RFC 7622 allows 3071 bytes) yet bounded.
MAX_REFERENCE_LENGTH = 1024
RESERVED_NAMES = frozenset({"R", "JID", "NID", "SID", "PT"})

_SCHEME = "iotdisco:"
_LEGACY = "iotdisco"
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_HEX = frozenset("0123456789abcdefABCDEF")
_OPERATOR_START = frozenset("=<>~")
_COLON = frozenset(":")
# Printable ASCII the parser takes literally: a mask wildcard from this set is written raw.
_RAW_WILDCARD = frozenset(chr(code) for code in range(0x21, 0x7F)) - set(";\\%")

_LOWER = {">": False, ">=": True}
_UPPER = {"<": False, "<=": True}
_SIMPLE = {
    "=": SearchOperator.EQ,
    "<>": SearchOperator.NEQ,
    ">": SearchOperator.GT,
    ">=": SearchOperator.GTEQ,
    "<": SearchOperator.LT,
    "<=": SearchOperator.LTEQ,
}


@dataclass(frozen=True, slots=True)
class DiscoUri:
    """A decoded ``iotdisco:`` URI; exactly one of :attr:`is_claim`, :attr:`is_search` and
    :attr:`is_direct` holds.

    * claim: ``tags`` holds every tag including ``KEY`` (what ``mine`` sends), ``terms`` is empty.
    * search: ``terms`` holds every condition, equality included (ranges merged, in order of
      first appearance); ``tags`` is empty.
    * direct: ``jid`` is set, optionally ``node_id``/``source_id``/``partition``; ``tags`` may
      describe the thing (never ``KEY``), ``terms`` is empty.

    ``registry`` (``R``) may accompany any kind. The constructor checks these rules, so a
    ``DiscoUri`` can always be written by :func:`format_disco_uri`.
    """

    tags: tuple[MetaTag, ...] = ()
    terms: tuple[SearchTerm, ...] = ()
    registry: str | None = None
    jid: str | None = None
    node_id: str | None = None
    source_id: str | None = None
    partition: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", tuple(self.tags))
        object.__setattr__(self, "terms", tuple(self.terms))
        for label, text in (
            ("R (registry)", self.registry),
            ("JID", self.jid),
            ("NID", self.node_id),
            ("SID", self.source_id),
            ("PT", self.partition),
        ):
            _check_reference(label, text)
        by_name = canonical_tags(self.tags)
        for name in by_name.keys() | {term.key for term in self.terms}:
            if name in RESERVED_NAMES:
                raise StanzaError(f"{name} is reserved in iotdisco URIs and cannot be a tag")
        key = by_name.get(KEY)
        if key is not None and key.numeric:
            raise StanzaError("KEY must be a string tag")
        if self.jid is None:
            if self.node_id is not None or self.source_id is not None or self.partition is not None:
                raise StanzaError("NID, SID and PT need a JID")
        elif key is not None:
            raise StanzaError("a direct URI (with JID) cannot carry a KEY")
        if self.terms:
            if self.tags or self.jid is not None:
                raise StanzaError("search terms cannot be mixed with claim tags or a JID")
            _check_terms(self.terms)
        elif key is None and self.jid is None:
            raise StanzaError("empty iotdisco URI: no KEY (claim), no JID (direct), no terms")

    @property
    def is_direct(self) -> bool:
        return self.jid is not None

    @property
    def is_claim(self) -> bool:
        return self.jid is None and any(tag.key == KEY for tag in self.tags)

    @property
    def is_search(self) -> bool:
        return bool(self.terms)

    @property
    def key(self) -> str | None:
        """The claim key, if this is a claim URI."""
        for tag in self.tags:
            if tag.key == KEY:
                assert isinstance(tag.value, str)
                return tag.value
        return None

    @property
    def node(self) -> NodeRef | None:
        """The node of a direct URI: ``NID``/``SID``/``PT`` as nodeId/sourceId/cacheType."""
        if self.node_id is None:
            return None
        return NodeRef(self.node_id, self.source_id, self.partition)


def _check_reference(label: str, text: str | None) -> None:
    if text is None:
        return
    if not text:
        raise StanzaError(f"{label} is empty")
    if len(text) > MAX_REFERENCE_LENGTH:
        raise StanzaError(f"{label} longer than {MAX_REFERENCE_LENGTH} characters")
    if not is_xml_text(text):
        raise StanzaError(f"{label} contains a character XML cannot carry")


def _check_terms(terms: tuple[SearchTerm, ...]) -> None:
    if len(terms) > MAX_TAGS:
        raise StanzaError(f"more than {MAX_TAGS} search terms")
    seen: set[str] = set()
    for term in terms:
        if term.key in seen:
            raise StanzaError(f"tag {term.name!r} given twice")
        seen.add(term.key)
        if term.key == KEY:
            raise StanzaError("KEY is never searchable")
        for operand in (term.value, term.low, term.high):
            if operand is not None:
                # The tag rules (length, XML characters, finite numbers) bound operands too.
                MetaTag(term.name, operand)
        if not is_xml_text(term.wildcard):
            raise StanzaError(f"{term.name}: the mask wildcard is not an XML character")


# -- parsing --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Condition:
    name: str
    numeric: bool
    operator: str
    value: str

    @property
    def key(self) -> str:
        return self.name.upper()


def parse_disco_uri(text: str) -> DiscoUri:
    """Decode an ``iotdisco:`` URI or legacy ``IoTDisco;`` text; :class:`StanzaError` if invalid.

    Whitespace around the text (QR decoders may add a newline) is ignored.
    """
    text = text.strip()
    if not text:
        raise StanzaError("empty iotdisco URI")
    if len(text) > MAX_URI_LENGTH:
        raise StanzaError(f"iotdisco URI longer than {MAX_URI_LENGTH} characters")
    head = text[: len(_SCHEME)].lower()
    if head == _SCHEME:
        conditions = [_modern_condition(part) for part in _split(text[len(_SCHEME) :])]
    elif head == _LEGACY + ";" or text.lower() == _LEGACY:
        conditions = [_legacy_condition(part) for part in _split(text[len(_LEGACY) :])]
    else:
        raise StanzaError(f"not an iotdisco URI (unknown scheme): {text[:40]!r}")
    return _build(conditions)


def parse_claim_uri(text: str) -> DiscoUri:
    """:func:`parse_disco_uri`, then insist on a claim URI (a ``KEY`` tag, only ``=``)."""
    uri = parse_disco_uri(text)
    if not uri.is_claim:
        kind = "a direct URI" if uri.is_direct else "a search URI (no KEY)"
        raise StanzaError(f"not a claim URI: {kind}")
    return uri


def _split(body: str) -> list[str]:
    """``body`` cut at every ``;`` not escaped by a backslash; empty parts dropped."""
    parts: list[str] = []
    current: list[str] = []
    chars = iter(body)
    for char in chars:
        if char == "\\":
            escaped = next(chars, None)
            if escaped is None:
                raise StanzaError("iotdisco URI ends in a lone backslash")
            current += (char, escaped)
        elif char == ";":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [part for part in parts if part]


def _unescape(raw: str, *, percent: bool) -> str:
    """Resolve backslash escapes (and ``%XX`` UTF-8 bytes when ``percent``) in one pass, so
    neither escape can produce the other."""
    out = bytearray()
    index = 0
    while index < len(raw):
        char = raw[index]
        if char == "\\":
            out += raw[index + 1].encode("utf-8", "surrogatepass")  # _split saw the pair
            index += 2
        elif char == "%" and percent:
            digits = raw[index + 1 : index + 3]
            if len(digits) != 2 or not _HEX.issuperset(digits):
                raise StanzaError(f"bad percent-encoding in {raw[:40]!r}")
            out.append(int(digits, 16))
            index += 3
        else:
            out += char.encode("utf-8", "surrogatepass")
            index += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise StanzaError(f"percent-encoding in {raw[:40]!r} is not UTF-8") from None


def _unescaped_index(part: str, wanted: frozenset[str]) -> int:
    """Index of the first character of ``wanted`` in ``part`` not escaped by a backslash."""
    index = 0
    while index < len(part):
        if part[index] == "\\":
            index += 2
        elif part[index] in wanted:
            return index
        else:
            index += 1
    return -1


def _modern_condition(part: str) -> _Condition:
    numeric = part.startswith("#")
    body = part[1:] if numeric else part
    at = _unescaped_index(body, _OPERATOR_START)
    if at < 0:
        raise StanzaError(f"{part[:40]!r} has no operator (=, <, <=, >, >=, <>, ~)")
    operator = body[at]
    if body[at : at + 2] in ("<=", "<>", ">="):
        operator = body[at : at + 2]
    name = _unescape(body[:at], percent=True)
    value = _unescape(body[at + len(operator) :], percent=True)
    return _Condition(name, numeric, operator, value)


def _legacy_condition(part: str) -> _Condition:
    numeric = part.startswith("#")
    body = part[1:] if numeric else part
    at = _unescaped_index(body, _COLON)
    if at < 0:
        raise StanzaError(f"legacy IoTDisco part {part[:40]!r} has no ':'")
    name, value = body[:at], body[at + 1 :]
    return _Condition(_unescape(name, percent=False), numeric, "=", _unescape(value, percent=False))


def _build(conditions: list[_Condition]) -> DiscoUri:
    references: dict[str, str] = {}
    rest: list[_Condition] = []
    for condition in conditions:
        check_tag_name(condition.name)
        if condition.key not in RESERVED_NAMES:
            rest.append(condition)
            continue
        if condition.numeric or condition.operator != "=":
            raise StanzaError(f"{condition.key} takes a string with '='")
        if condition.key in references:
            raise StanzaError(f"{condition.key} given twice")
        references[condition.key] = condition.value
    direct = references.keys() & {"JID", "NID", "SID", "PT"}
    if direct or any(condition.key == KEY for condition in rest):
        kind = "direct" if direct else "claim"
        for condition in rest:
            if condition.operator != "=":
                raise StanzaError(
                    f"a {kind} URI takes only NAME=VALUE tags, not {condition.operator!r}"
                )
        tags = tuple(_tag(condition) for condition in rest)
        terms: tuple[SearchTerm, ...] = ()
    else:
        tags, terms = (), _terms(rest)
    return DiscoUri(
        tags=tags,
        terms=terms,
        registry=references.get("R"),
        jid=references.get("JID"),
        node_id=references.get("NID"),
        source_id=references.get("SID"),
        partition=references.get("PT"),
    )


def _tag(condition: _Condition) -> MetaTag:
    return MetaTag(condition.name, _operand(condition, condition.value))


def _operand(condition: _Condition, text: str) -> str | float:
    if not condition.numeric:
        return text
    if _NUMBER.fullmatch(text) is None:
        raise StanzaError(f"tag {condition.name}: {text[:40]!r} is not a number")
    number = float(text)
    if number in (float("inf"), float("-inf")):
        raise StanzaError(f"tag {condition.name}: {text[:40]!r} is out of range")
    return number


def _terms(conditions: list[_Condition]) -> tuple[SearchTerm, ...]:
    grouped: dict[str, list[_Condition]] = {}
    for condition in conditions:
        grouped.setdefault(condition.key, []).append(condition)
    return tuple(_term(group) for group in grouped.values())


def _term(group: list[_Condition]) -> SearchTerm:
    first = group[0]
    if len(group) == 1:
        if first.operator == "~":
            if not first.value:
                raise StanzaError(f"mask on {first.name} has no wildcard character")
            return SearchTerm(
                SearchOperator.MASK,
                first.name,
                first.numeric,
                value=first.value[1:],
                wildcard=first.value[0],
            )
        return SearchTerm(
            _SIMPLE[first.operator], first.name, first.numeric, value=_operand(first, first.value)
        )
    lower = [c for c in group if c.operator in _LOWER]
    upper = [c for c in group if c.operator in _UPPER]
    if len(group) != 2 or len(lower) != 1 or len(upper) != 1:
        raise StanzaError(f"tag {first.name!r} given twice (only a >/>= and </<= pair may be)")
    low, high = lower[0], upper[0]
    if low.numeric != high.numeric:
        raise StanzaError(f"range on {first.name!r} mixes numeric and string bounds")
    low_value, high_value = _operand(low, low.value), _operand(high, high.value)
    low_included, high_included = _LOWER[low.operator], _UPPER[high.operator]
    if low_value <= high_value:  # type: ignore[operator]  # same type, checked above
        return SearchTerm(
            SearchOperator.RANGE,
            first.name,
            first.numeric,
            low=low_value,
            high=high_value,
            low_included=low_included,
            high_included=high_included,
        )
    # x > 3 with x < 2 reads as "outside [2, 3]": the bounds swap and inclusion flips.
    return SearchTerm(
        SearchOperator.NRANGE,
        first.name,
        first.numeric,
        low=high_value,
        high=low_value,
        low_included=not high_included,
        high_included=not low_included,
    )


# -- writing --------------------------------------------------------------------------------------


def claim_uri(tags: Iterable[MetaTag], registry: str | None) -> str:
    """The ``iotdisco:`` claim URI of ``tags`` (which must include a non-empty string ``KEY``),
    with ``R=registry`` last when given. :class:`StanzaError` for a tag set that cannot be one."""
    uri = DiscoUri(tags=tuple(tags), registry=registry)
    if not uri.is_claim:
        raise StanzaError("a claim URI needs a KEY tag")
    if not uri.key:
        raise StanzaError("a claim URI needs a non-empty KEY")
    return format_disco_uri(uri)


def format_disco_uri(uri: DiscoUri) -> str:
    """``uri`` as ``iotdisco:`` text; :func:`parse_disco_uri` reads it back to an equal object.

    :class:`StanzaError` for the only terms a URI cannot express: a range whose min is above its
    max (it would read back as "not in range") and a "not in range" whose min is not below max.
    """
    parts = [_format_tag(tag) for tag in uri.tags]
    for term in uri.terms:
        parts += _format_term(term)
    for name, text in (
        ("JID", uri.jid),
        ("NID", uri.node_id),
        ("SID", uri.source_id),
        ("PT", uri.partition),
        ("R", uri.registry),
    ):
        if text is not None:
            parts.append(f"{name}={_quote(text)}")
    return _SCHEME + ";".join(parts)


def _quote(text: str) -> str:
    return quote(text, safe="").replace("~", "%7E")


def _format_operand(operand: str | float) -> str:
    return _quote(operand) if isinstance(operand, str) else repr(float(operand))


def _format_tag(tag: MetaTag) -> str:
    prefix = "#" if tag.numeric else ""
    return f"{prefix}{_quote(tag.name)}={_format_operand(tag.value)}"


def _format_term(term: SearchTerm) -> list[str]:
    head = ("#" if term.numeric else "") + _quote(term.name)
    op = term.operator
    if op is SearchOperator.MASK:
        assert isinstance(term.value, str)
        wildcard = term.wildcard
        if wildcard in _RAW_WILDCARD:
            pattern = wildcard.join(_quote(piece) for piece in term.value.split(wildcard))
        else:
            wildcard, pattern = _quote(wildcard), _quote(term.value)
        return [f"{head}~{wildcard}{pattern}"]
    if op in (SearchOperator.RANGE, SearchOperator.NRANGE):
        assert term.low is not None
        assert term.high is not None
        low, high = _format_operand(term.low), _format_operand(term.high)
        in_order = term.low < term.high  # type: ignore[operator]  # SearchTerm checks types
        if op is SearchOperator.RANGE:
            if not (in_order or term.low == term.high):
                raise StanzaError(f"range on {term.name}: min above max cannot be a URI")
            lower = ">=" if term.low_included else ">"
            upper = "<=" if term.high_included else "<"
            return [f"{head}{lower}{low}", f"{head}{upper}{high}"]
        if not in_order:
            raise StanzaError(f"not-in-range on {term.name}: min must be below max in a URI")
        lower = ">" if term.high_included else ">="
        upper = "<" if term.low_included else "<="
        return [f"{head}{lower}{high}", f"{head}{upper}{low}"]
    symbol = next(text for text, operator in _SIMPLE.items() if operator is op)
    assert term.value is not None
    return [f"{head}{symbol}{_format_operand(term.value)}"]
