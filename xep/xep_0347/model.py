"""Typed, I/O-free model of XEP-0347 IoT Discovery (``urn:xmpp:iot:discovery``).

Meta tags (``xmpp-iot-xeps.md`` §6.2): a name of at most 32 characters without ``:``, ``#``,
``=``, ``<``, ``>``, ``;`` or whitespace, compared case-insensitively, with either a string value
(at most 128 characters) or a numeric one (a finite double). ``KEY`` is the claim secret: it is
never searchable and never returned by a search.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from xep.errors import StanzaError
from xep.xep_0323.model import NodeRef

__all__ = [
    "KEY",
    "MAX_TAGS",
    "MAX_TAG_NAME",
    "MAX_TAG_VALUE",
    "PREDEFINED_NUMERIC",
    "PREDEFINED_TAGS",
    "MetaTag",
    "SearchOperator",
    "SearchTerm",
    "Thing",
    "canonical_tags",
    "check_tag_name",
    "tags_match",
]

NS = "urn:xmpp:iot:discovery"
KEY = "KEY"
MAX_TAG_NAME = 32
MAX_TAG_VALUE = 128
MAX_TAGS = 64
PREDEFINED_NUMERIC = frozenset({"ALT", "LAT", "LON", "V"})
PREDEFINED_TAGS = frozenset(
    {
        "ALT", "APT", "AREA", "BLD", "CITY", "CLASS", "COUNTRY", "KEY", "LAT", "LON", "MAN",
        "MLOC", "MNR", "MODEL", "NAME", "PURL", "REGION", "ROOM", "SN", "STREET", "STREETNR", "V",
    }
)  # fmt: skip

_BAD_NAME = re.compile(r"[:#=<>;\s]")
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def check_tag_name(name: str) -> None:
    """Raise :class:`StanzaError` unless ``name`` is a valid meta tag name."""
    if not name or len(name) > MAX_TAG_NAME:
        raise StanzaError(f"tag name {name!r} must have 1 to {MAX_TAG_NAME} characters")
    if _BAD_NAME.search(name) or _NOT_XML_CHAR.search(name):
        raise StanzaError(f"tag name {name!r} contains a forbidden character")


@dataclass(frozen=True, slots=True)
class MetaTag:
    """One meta tag: ``<str name value>`` (``value`` a str) or ``<num name value>`` (a float)."""

    name: str
    value: str | float

    def __post_init__(self) -> None:
        check_tag_name(self.name)
        if isinstance(self.value, bool) or not isinstance(self.value, str | float | int):
            raise StanzaError(f"tag {self.name}: value must be a string or a number")
        if isinstance(self.value, str):
            if len(self.value) > MAX_TAG_VALUE:
                raise StanzaError(f"tag {self.name}: value longer than {MAX_TAG_VALUE} characters")
            if _NOT_XML_CHAR.search(self.value):
                raise StanzaError(f"tag {self.name}: value contains a character XML cannot carry")
        else:
            if not math.isfinite(self.value):
                raise StanzaError(f"tag {self.name}: numeric value must be finite")
            object.__setattr__(self, "value", float(self.value))

    @property
    def numeric(self) -> bool:
        return not isinstance(self.value, str)

    @property
    def key(self) -> str:
        """The name as compared (tag names are case-insensitive)."""
        return self.name.upper()

    @classmethod
    def text(cls, name: str, value: str) -> MetaTag:
        return cls(name, value)

    @classmethod
    def number(cls, name: str, value: float) -> MetaTag:
        return cls(name, float(value))


def canonical_tags(tags: Iterable[MetaTag]) -> dict[str, MetaTag]:
    """Tags by upper-case name; a name given twice is an error."""
    result: dict[str, MetaTag] = {}
    for tag in tags:
        if tag.key in result:
            raise StanzaError(f"tag {tag.name!r} given twice")
        result[tag.key] = tag
    if len(result) > MAX_TAGS:
        raise StanzaError(f"more than {MAX_TAGS} tags")
    return result


def tags_match(given: Iterable[MetaTag], registered: Iterable[MetaTag]) -> bool:
    """True if both sets hold exactly the same tags (name case-insensitive, type and value
    exact, order irrelevant): the ``mine`` rule of XEP-0347."""
    try:
        left, right = canonical_tags(given), canonical_tags(registered)
    except StanzaError:
        return False
    return left.keys() == right.keys() and all(
        left[name].numeric == right[name].numeric and left[name].value == right[name].value
        for name in left
    )


class SearchOperator(enum.Enum):
    """The comparison of one ``search`` child; the element is ``str``/``num`` + the value."""

    EQ = "Eq"
    NEQ = "NEq"
    GT = "Gt"
    GTEQ = "GtEq"
    LT = "Lt"
    LTEQ = "LtEq"
    RANGE = "Range"
    NRANGE = "NRange"
    MASK = "Mask"


@dataclass(frozen=True, slots=True)
class SearchTerm:
    """One search operator. ``value`` is used by the comparisons and ``MASK`` (with
    ``wildcard``); ``low``/``high`` with their inclusion flags by the ranges. ``numeric``
    selects ``num*`` (float comparison) over ``str*`` (ordinal string comparison)."""

    operator: SearchOperator
    name: str
    numeric: bool
    value: str | float | None = None
    low: str | float | None = None
    high: str | float | None = None
    low_included: bool = True
    high_included: bool = True
    wildcard: str = "*"

    def __post_init__(self) -> None:
        check_tag_name(self.name)
        ranged = self.operator in (SearchOperator.RANGE, SearchOperator.NRANGE)
        if ranged and (self.low is None or self.high is None):
            raise StanzaError(f"{self.operator.value} on {self.name} needs min and max")
        if not ranged and self.value is None:
            raise StanzaError(f"{self.operator.value} on {self.name} needs a value")
        if self.operator is SearchOperator.MASK:
            if self.numeric:
                raise StanzaError("a mask applies to string tags only")
            if len(self.wildcard) != 1:
                raise StanzaError("the mask wildcard must be one character")
        for bound in (self.value, self.low, self.high):
            if bound is None:
                continue
            if self.numeric != (not isinstance(bound, str)):
                raise StanzaError(f"{self.name}: operand type does not match the operator")
            if isinstance(bound, float) and not math.isfinite(bound):
                raise StanzaError(f"{self.name}: numeric operand must be finite")

    @property
    def key(self) -> str:
        return self.name.upper()

    def accepts(self, tags: Mapping[str, MetaTag]) -> bool:
        """True if the tag named here (``tags`` keyed by upper-case name) satisfies the term.

        A missing tag, or one of the other type, never satisfies a term; ``KEY`` never does.
        """
        if self.key == KEY:
            return False
        tag = tags.get(self.key)
        if tag is None or tag.numeric != self.numeric:
            return False
        have = tag.value
        op = self.operator
        if op is SearchOperator.MASK:
            assert isinstance(have, str)
            assert isinstance(self.value, str)
            return _mask_regex(self.value, self.wildcard).fullmatch(have) is not None
        if op in (SearchOperator.RANGE, SearchOperator.NRANGE):
            inside = _above(have, self.low, self.low_included) and _below(
                have, self.high, self.high_included
            )
            return inside if op is SearchOperator.RANGE else not inside
        want = self.value
        assert want is not None
        comparisons = {
            SearchOperator.EQ: lambda: have == want,
            SearchOperator.NEQ: lambda: have != want,
            SearchOperator.GT: lambda: _above(have, want, False),
            SearchOperator.GTEQ: lambda: _above(have, want, True),
            SearchOperator.LT: lambda: _below(have, want, False),
            SearchOperator.LTEQ: lambda: _below(have, want, True),
        }
        return comparisons[op]()


def _above(have: str | float, bound: str | float | None, included: bool) -> bool:
    assert bound is not None
    return have >= bound if included else have > bound  # type: ignore[operator]


def _below(have: str | float, bound: str | float | None, included: bool) -> bool:
    assert bound is not None
    return have <= bound if included else have < bound  # type: ignore[operator]


def _mask_regex(pattern: str, wildcard: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split(wildcard)), re.DOTALL)


@dataclass(frozen=True, slots=True)
class Thing:
    """A registry entry as searches return it: owner, JID, optional node, tags (never KEY)."""

    jid: str
    tags: tuple[MetaTag, ...]
    owner: str | None = None
    node: NodeRef | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", tuple(self.tags))


# -- requests and notifications (one dataclass per element) ------------------------------------


@dataclass(frozen=True, slots=True)
class Register:
    """``<register [selfOwned]>`` + tags: thing → registry."""

    tags: tuple[MetaTag, ...]
    node: NodeRef | None = None
    self_owned: bool = False


@dataclass(frozen=True, slots=True)
class Mine:
    """``<mine [public]>`` + tags (including KEY): owner → registry, the claim."""

    tags: tuple[MetaTag, ...]
    public: bool = True


@dataclass(frozen=True, slots=True)
class Claimed:
    """``<claimed jid [public]>``: the registry's answer to ``mine`` (``jid`` = the thing) and
    its notification to the thing (``jid`` = the owner)."""

    jid: str
    node: NodeRef | None = None
    public: bool = False


@dataclass(frozen=True, slots=True)
class Update:
    """``<update [jid]>`` + tags: a thing (or its owner, naming it in ``jid``) changes tags."""

    tags: tuple[MetaTag, ...]
    jid: str | None = None
    node: NodeRef | None = None


@dataclass(frozen=True, slots=True)
class Remove:
    """``<remove jid>``: owner → registry, hide the thing."""

    jid: str
    node: NodeRef | None = None


@dataclass(frozen=True, slots=True)
class Disown:
    """``<disown jid>``: owner → registry, give the thing up."""

    jid: str
    node: NodeRef | None = None


@dataclass(frozen=True, slots=True)
class Unregister:
    """``<unregister>``: thing → registry, leave it."""

    node: NodeRef | None = None


@dataclass(frozen=True, slots=True)
class Removed:
    """``<removed>``: registry → thing, the owner hid it."""

    node: NodeRef | None = None


@dataclass(frozen=True, slots=True)
class Disowned:
    """``<disowned>``: registry → thing (IQ set), the owner gave it up; also the result of an
    ``update`` by a thing that is registered but not claimed."""

    node: NodeRef | None = None


@dataclass(frozen=True, slots=True)
class Search:
    """``<search offset maxCount>`` + operators (IQ get): anyone → registry."""

    terms: tuple[SearchTerm, ...]
    offset: int = 0
    max_count: int = 20


@dataclass(frozen=True, slots=True)
class Found:
    """``<found more>`` + things: the registry's answer to ``search``."""

    things: tuple[Thing, ...]
    more: bool = False


DiscoveryElement = (
    Register | Mine | Claimed | Update | Remove | Disown | Unregister | Removed | Disowned
    | Search | Found
)  # fmt: skip
