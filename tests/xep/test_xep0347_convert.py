"""XEP-0347 discovery model and codec: the spec examples, tables, search semantics, hypothesis.

The spec examples are quoted verbatim from ``xmpp-iot-xeps.md`` §6.6, hence the long lines.
"""
# ruff: noqa: E501

from __future__ import annotations

import contextlib
import fnmatch
import math
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xep.errors import StanzaError
from xep.xep_0323.model import NodeRef, is_xml_text
from xep.xep_0347 import convert
from xep.xep_0347.model import (
    KEY,
    MAX_TAG_NAME,
    MAX_TAG_VALUE,
    MAX_TAGS,
    Claimed,
    DiscoveryElement,
    Disown,
    Disowned,
    Found,
    MetaTag,
    Mine,
    Register,
    Remove,
    Removed,
    Search,
    SearchOperator,
    SearchTerm,
    Thing,
    Unregister,
    Update,
    canonical_tags,
    check_tag_name,
    tags_match,
)

NS = "urn:xmpp:iot:discovery"
Op = SearchOperator


def payload(xml: str) -> ET.Element:
    """The single discovery child of a stanza given as text (or the element itself)."""
    root = ET.fromstring(xml)  # noqa: S314 (test vectors)
    if root.tag == "iq":
        (child,) = list(root)
        return child
    return root


def wire(elem: ET.Element) -> ET.Element:
    return ET.fromstring(ET.tostring(elem, encoding="unicode"))  # noqa: S314 (our own output)


def q(local: str) -> str:
    return f"{{{NS}}}{local}"


def round_trip(item: DiscoveryElement) -> DiscoveryElement:
    return convert.from_xml(wire(convert.to_xml(item)))


def s(name: str, value: str) -> MetaTag:
    return MetaTag.text(name, value)


def n(name: str, value: float) -> MetaTag:
    return MetaTag.number(name, value)


# -- the exact examples of xmpp-iot-xeps.md §6.6 ---------------------------------------------------

EX_REGISTER = """<iq type='set' from='rack@example.org/plcs' to='discovery.example.org' id='3'>
   <register xmlns='urn:xmpp:iot:discovery' nodeId='imc1' sourceId='MeteringTopology'>
       <str name='SN' value='394872348732948723'/>
       <str name='MAN' value='www.ktc.se'/>
       <str name='MODEL' value='IMC'/>
       <num name='V' value='1.2'/>
       <str name='KEY' value='4857402340298342'/>
   </register>
</iq>"""
EX_CLAIMED = """<iq type='set' from='discovery.example.org' to='rack@example.org/plcs' id='5'>
   <claimed xmlns='urn:xmpp:iot:discovery' jid='owner@example.org' nodeId='imc1' sourceId='MeteringTopology'/>
</iq>"""
EX_SEARCH = """<iq type='get' from='curious@example.org/client' to='discovery.example.org' id='9'>
   <search xmlns='urn:xmpp:iot:discovery' offset='0' maxCount='20'>
       <strEq name='MAN' value='www.ktc.se'/>
       <strMask name='SN' value='39487*' wildcard='*'/>
       <numRange name='V' min='1' minIncluded='true' max='2' maxIncluded='false'/>
   </search>
</iq>"""

IMC1 = NodeRef("imc1", "MeteringTopology")
REGISTER_TAGS = (
    s("SN", "394872348732948723"),
    s("MAN", "www.ktc.se"),
    s("MODEL", "IMC"),
    n("V", 1.2),
    s("KEY", "4857402340298342"),
)
EX_REGISTER_MODEL = Register(REGISTER_TAGS, IMC1)
EX_CLAIMED_MODEL = Claimed("owner@example.org", IMC1)
EX_SEARCH_MODEL = Search(
    (
        SearchTerm(Op.EQ, "MAN", False, value="www.ktc.se"),
        SearchTerm(Op.MASK, "SN", False, value="39487*", wildcard="*"),
        SearchTerm(Op.RANGE, "V", True, low=1.0, high=2.0, high_included=False),
    ),
    offset=0,
    max_count=20,
)


@pytest.mark.parametrize(
    ("xml", "expected"),
    [
        (EX_REGISTER, EX_REGISTER_MODEL),
        (EX_CLAIMED, EX_CLAIMED_MODEL),
        (EX_SEARCH, EX_SEARCH_MODEL),
    ],
    ids=["register", "claimed", "search"],
)
def test_spec_example_parses_and_round_trips(xml: str, expected: DiscoveryElement) -> None:
    assert convert.from_xml(payload(xml)) == expected
    assert round_trip(expected) == expected


@pytest.mark.parametrize(
    ("xml", "item"), [(EX_REGISTER, EX_REGISTER_MODEL), (EX_CLAIMED, EX_CLAIMED_MODEL)]
)
def test_spec_example_is_what_we_send(xml: str, item: DiscoveryElement) -> None:
    ours, theirs = wire(convert.to_xml(item)), payload(xml)
    assert ours.tag == theirs.tag
    assert ours.attrib == theirs.attrib
    assert [(c.tag, c.attrib) for c in ours] == [(c.tag, c.attrib) for c in theirs]


def test_search_example_semantics() -> None:
    search = convert.from_xml(payload(EX_SEARCH))
    assert isinstance(search, Search)
    tags = canonical_tags(REGISTER_TAGS)
    assert all(term.accepts(tags) for term in search.terms)
    for changed, accepted in [
        (s("MAN", "www.ktc.se."), False),
        (s("SN", "39487"), True),  # '*' matches nothing too
        (s("SN", "x39487"), False),
        (n("V", 1.0), True),  # min included
        (n("V", 2.0), False),  # max excluded
        (n("V", 1.999), True),
        (s("V", "1.2"), False),  # a string tag never satisfies a num operator
    ]:
        tags = canonical_tags([changed, *(t for t in REGISTER_TAGS if t.key != changed.key)])
        assert all(term.accepts(tags) for term in search.terms) is accepted, changed


def test_search_example_wire_attributes() -> None:
    elem = wire(convert.to_xml(EX_SEARCH_MODEL))
    assert elem.attrib == {"offset": "0", "maxCount": "20"}
    eq, mask, ranged = list(elem)
    assert (eq.tag, eq.attrib) == (q("strEq"), {"name": "MAN", "value": "www.ktc.se"})
    assert (mask.tag, mask.attrib) == (
        q("strMask"),
        {"name": "SN", "value": "39487*", "wildcard": "*"},
    )
    assert ranged.tag == q("numRange")
    assert float(ranged.get("min", "")) == 1.0
    assert float(ranged.get("max", "")) == 2.0
    assert (ranged.get("minIncluded"), ranged.get("maxIncluded")) == ("true", "false")


# -- defaults (schema: Mine/@public true, Claimed/@public false) ----------------------------------


@pytest.mark.parametrize(
    ("xml", "expected"),
    [
        (f"<mine xmlns='{NS}'><str name='KEY' value='k'/></mine>", Mine((s("KEY", "k"),), True)),
        (f"<mine xmlns='{NS}' public='false'/>", Mine((), False)),
        (f"<mine xmlns='{NS}' public='1'/>", Mine((), True)),
        (f"<claimed xmlns='{NS}' jid='o@x'/>", Claimed("o@x", None, False)),
        (f"<claimed xmlns='{NS}' jid='o@x' public='true'/>", Claimed("o@x", None, True)),
        (f"<register xmlns='{NS}'/>", Register((), None, False)),
        (f"<register xmlns='{NS}' selfOwned='true'/>", Register((), None, True)),
        (f"<search xmlns='{NS}'/>", Search((), 0, 20)),
        (f"<found xmlns='{NS}'/>", Found((), False)),
    ],
)
def test_defaults(xml: str, expected: DiscoveryElement) -> None:
    assert convert.from_xml(payload(xml)) == expected


def test_defaults_are_not_written() -> None:
    assert "public" not in convert.to_xml(Mine(())).attrib
    assert convert.to_xml(Mine((), public=False)).get("public") == "false"
    assert "public" not in convert.to_xml(Claimed("o@x")).attrib
    assert convert.to_xml(Claimed("o@x", public=True)).get("public") == "true"
    assert "selfOwned" not in convert.to_xml(Register(())).attrib
    assert Mine(()).public is True
    assert Claimed("o@x").public is False
    assert (Search(()).offset, Search(()).max_count) == (0, 20)
    assert Found(()).more is False


# -- further well-formed payloads ------------------------------------------------------------------

GOOD: list[tuple[str, DiscoveryElement]] = [
    (
        f"<update xmlns='{NS}'><str name='KEY' value=''/><num name='LAT' value=' -33.5 '/></update>",
        Update((s("KEY", ""), n("LAT", -33.5))),
    ),
    (
        f"<update xmlns='{NS}' jid='thing@x' nodeId='n' cacheType='c'><str name='ROOM' value='1'/></update>",
        Update((s("ROOM", "1"),), "thing@x", NodeRef("n", None, "c")),
    ),
    (f"<remove xmlns='{NS}' jid='thing@x'/>", Remove("thing@x")),
    (f"<disown xmlns='{NS}' jid='thing@x' nodeId='n'/>", Disown("thing@x", NodeRef("n"))),
    (f"<unregister xmlns='{NS}'/>", Unregister()),
    (f"<unregister xmlns='{NS}' nodeId='n' sourceId='s'/>", Unregister(NodeRef("n", "s"))),
    (f"<removed xmlns='{NS}' nodeId='n'/>", Removed(NodeRef("n"))),
    (f"<disowned xmlns='{NS}'/>", Disowned()),
    (
        f"<register xmlns='{NS}' selfOwned='true'><num name='V' value='1e3'/><x xmlns='urn:example'/></register>",
        Register((n("V", 1000.0),), None, True),
    ),
    (
        f"""<found xmlns='{NS}' more='true'>
              <thing owner='o@x' jid='t@x' nodeId='n' sourceId='s'><str name='SN' value='1'/></thing>
              <thing jid='u@x'/>
            </found>""",
        Found(
            (
                Thing("t@x", (s("SN", "1"),), "o@x", NodeRef("n", "s")),
                Thing("u@x", ()),
            ),
            True,
        ),
    ),
    (
        f"""<search xmlns='{NS}' offset='40' maxCount='5'>
              <strNEq name='a' value='b'/><strGt name='a' value='b'/><strGtEq name='a' value='b'/>
              <strLt name='a' value='b'/><strLtEq name='a' value='b'/>
              <strRange name='a' min='a' max='c'/>
              <strNRange name='a' min='a' minIncluded='false' max='c' maxIncluded='0'/>
              <numEq name='V' value='1'/><numNEq name='V' value='-1.5'/><numGt name='V' value='0'/>
              <numGtEq name='V' value='0'/><numLt name='V' value='9'/><numLtEq name='V' value='9'/>
              <numNRange name='V' min='1' max='2'/>
              <strMask name='SN' value='12?4' wildcard='?'/>
              <strMask name='SN' value='*'/>
            </search>""",
        Search(
            (
                SearchTerm(Op.NEQ, "a", False, value="b"),
                SearchTerm(Op.GT, "a", False, value="b"),
                SearchTerm(Op.GTEQ, "a", False, value="b"),
                SearchTerm(Op.LT, "a", False, value="b"),
                SearchTerm(Op.LTEQ, "a", False, value="b"),
                SearchTerm(Op.RANGE, "a", False, low="a", high="c"),
                SearchTerm(
                    Op.NRANGE,
                    "a",
                    False,
                    low="a",
                    high="c",
                    low_included=False,
                    high_included=False,
                ),
                SearchTerm(Op.EQ, "V", True, value=1.0),
                SearchTerm(Op.NEQ, "V", True, value=-1.5),
                SearchTerm(Op.GT, "V", True, value=0.0),
                SearchTerm(Op.GTEQ, "V", True, value=0.0),
                SearchTerm(Op.LT, "V", True, value=9.0),
                SearchTerm(Op.LTEQ, "V", True, value=9.0),
                SearchTerm(Op.NRANGE, "V", True, low=1.0, high=2.0),
                SearchTerm(Op.MASK, "SN", False, value="12?4", wildcard="?"),
                SearchTerm(Op.MASK, "SN", False, value="*"),
            ),
            40,
            5,
        ),
    ),
]


@pytest.mark.parametrize(("xml", "expected"), GOOD)
def test_good_payload_parses_and_round_trips(xml: str, expected: DiscoveryElement) -> None:
    assert convert.from_xml(payload(xml)) == expected
    assert round_trip(expected) == expected


# -- garbage ---------------------------------------------------------------------------------------


def _many(local: str, count: int, child: str) -> str:
    return f"<{local} xmlns='{NS}'>" + child * count + f"</{local}>"


def _many_tags(count: int) -> str:
    return (
        f"<register xmlns='{NS}'>"
        + "".join(f"<str name='T{i}' value='v'/>" for i in range(count))
        + "</register>"
    )


BAD: list[tuple[str, str]] = [
    ("not our namespace", "<register/>"),
    ("unknown element", f"<bogus xmlns='{NS}'/>"),
    ("provisioning namespace", "<register xmlns='urn:xmpp:iot:provisioning'/>"),
    ("claimed without jid", f"<claimed xmlns='{NS}'/>"),
    ("remove without jid", f"<remove xmlns='{NS}'/>"),
    ("disown without jid", f"<disown xmlns='{NS}'/>"),
    ("empty jid", f"<claimed xmlns='{NS}' jid=''/>"),
    ("jid with space", f"<remove xmlns='{NS}' jid='a b'/>"),
    ("update jid empty", f"<update xmlns='{NS}' jid=''/>"),
    ("thing without jid", f"<found xmlns='{NS}'><thing owner='o@x'/></found>"),
    ("sourceId without nodeId", f"<register xmlns='{NS}' sourceId='s'/>"),
    ("cacheType without nodeId", f"<unregister xmlns='{NS}' cacheType='c'/>"),
    ("empty nodeId", f"<removed xmlns='{NS}' nodeId=''/>"),
    ("bad public", f"<mine xmlns='{NS}' public='yes'/>"),
    ("bad selfOwned", f"<register xmlns='{NS}' selfOwned='Y'/>"),
    ("bad more", f"<found xmlns='{NS}' more='more'/>"),
    ("num not a number", f"<register xmlns='{NS}'><num name='V' value='abc'/></register>"),
    ("num empty", f"<register xmlns='{NS}'><num name='V' value=''/></register>"),
    ("num NaN", f"<register xmlns='{NS}'><num name='V' value='NaN'/></register>"),
    ("num INF", f"<register xmlns='{NS}'><num name='V' value='INF'/></register>"),
    ("num overflow", f"<register xmlns='{NS}'><num name='V' value='1e999'/></register>"),
    ("tag without name", f"<register xmlns='{NS}'><str value='v'/></register>"),
    ("tag without value", f"<register xmlns='{NS}'><str name='SN'/></register>"),
    ("empty tag name", f"<register xmlns='{NS}'><str name='' value='v'/></register>"),
    ("tag name too long", f"<register xmlns='{NS}'><str name='{'N' * 33}' value='v'/></register>"),
    ("tag name with colon", f"<register xmlns='{NS}'><str name='a:b' value='v'/></register>"),
    ("tag name with hash", f"<register xmlns='{NS}'><str name='#V' value='v'/></register>"),
    ("tag name with space", f"<register xmlns='{NS}'><str name='a b' value='v'/></register>"),
    (
        "tag value too long",
        f"<register xmlns='{NS}'><str name='SN' value='{'x' * 129}'/></register>",
    ),
    (
        "tag twice",
        f"<mine xmlns='{NS}'><str name='SN' value='1'/><num name='sn' value='1'/></mine>",
    ),
    (
        "unknown child in register",
        f"<register xmlns='{NS}'><bogus/></register>".replace("<bogus/>", f"<bogus xmlns='{NS}'/>"),
    ),
    ("thing in register", f"<register xmlns='{NS}'><thing jid='a@b'/></register>"),
    ("too many tags", _many_tags(MAX_TAGS + 1)),
    ("unknown operator", f"<search xmlns='{NS}'><strLike name='a' value='b'/></search>"),
    ("unknown type", f"<search xmlns='{NS}'><boolEq name='a' value='b'/></search>"),
    ("tag as operator", f"<search xmlns='{NS}'><str name='a' value='b'/></search>"),
    ("numeric mask", f"<search xmlns='{NS}'><numMask name='a' value='1'/></search>"),
    ("wide wildcard", f"<search xmlns='{NS}'><strMask name='a' value='b' wildcard='**'/></search>"),
    ("eq without value", f"<search xmlns='{NS}'><strEq name='a'/></search>"),
    ("eq without name", f"<search xmlns='{NS}'><strEq value='a'/></search>"),
    ("range without max", f"<search xmlns='{NS}'><numRange name='V' min='1'/></search>"),
    ("range bad bound", f"<search xmlns='{NS}'><numRange name='V' min='x' max='2'/></search>"),
    (
        "range bad flag",
        f"<search xmlns='{NS}'><strRange name='a' min='a' max='b' minIncluded='no'/></search>",
    ),
    ("bad operator name", f"<search xmlns='{NS}'><strEq name='a=b' value='b'/></search>"),
    ("negative offset", f"<search xmlns='{NS}' offset='-1'/>"),
    ("offset not a number", f"<search xmlns='{NS}' offset='x'/>"),
    ("offset too big", f"<search xmlns='{NS}' offset='2147483648'/>"),
    ("offset unicode digits", f"<search xmlns='{NS}' offset='\u0661'/>"),
    ("maxCount empty", f"<search xmlns='{NS}' maxCount=''/>"),
    ("too many terms", _many("search", convert.MAX_TERMS + 1, "<strEq name='a' value='b'/>")),
    ("unknown child in found", f"<found xmlns='{NS}'><str name='a' value='b'/></found>"),
    ("too many things", _many("found", convert.MAX_FOUND + 1, "<thing jid='a@b'/>")),
    (
        "bad tag in thing",
        f"<found xmlns='{NS}'><thing jid='a@b'><num name='V' value='v'/></thing></found>",
    ),
]


@pytest.mark.parametrize("xml", [x for _, x in BAD], ids=[name for name, _ in BAD])
def test_bad_payload_is_a_stanza_error(xml: str) -> None:
    with pytest.raises(StanzaError):
        convert.from_xml(payload(xml))


def test_limits_themselves_are_fine() -> None:
    assert len(convert.from_xml(payload(_many_tags(MAX_TAGS))).tags) == MAX_TAGS  # type: ignore[union-attr]
    terms = _many("search", convert.MAX_TERMS, "<strEq name='a' value='b'/>")
    assert len(convert.from_xml(payload(terms)).terms) == convert.MAX_TERMS  # type: ignore[union-attr]
    found = _many("found", convert.MAX_FOUND, "<thing jid='a@b'/>")
    assert len(convert.from_xml(payload(found)).things) == convert.MAX_FOUND  # type: ignore[union-attr]


@pytest.mark.parametrize("char", ["\x00", "\x08", "\ufffe", "\udfff"])
@pytest.mark.parametrize(
    ("local", "attr"),
    [
        ("claimed", "jid"),
        ("update", "jid"),
        ("register", "nodeId"),
        ("unregister", "sourceId"),
        ("removed", "cacheType"),
        ("tag", "name"),
        ("tag", "value"),
        ("mask", "wildcard"),
        ("mask", "value"),
        ("thing", "owner"),
    ],
)
def test_characters_xml_cannot_carry_are_a_stanza_error(char: str, local: str, attr: str) -> None:
    bad = f"x{char}" if attr != "wildcard" else char
    if local == "tag":
        elem = ET.Element(q("register"))
        attrs = {"name": "SN", "value": "v"}
        attrs[attr] = bad
        ET.SubElement(elem, q("str"), attrs)
    elif local == "mask":
        elem = ET.Element(q("search"))
        attrs = {"name": "SN", "value": "v", "wildcard": "*"}
        attrs[attr] = bad
        ET.SubElement(elem, q("strMask"), attrs)
    elif local == "thing":
        elem = ET.Element(q("found"))
        ET.SubElement(elem, q("thing"), {"jid": "a@b", attr: bad})
    else:
        elem = ET.Element(q(local), {"jid": "a@b", "nodeId": "n"})
        elem.set(attr, bad)
    with pytest.raises(StanzaError):
        convert.from_xml(elem)


# -- model: tags -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["SN", "sn", "A" * MAX_TAG_NAME, "x-y_z.1", "Zählerstand", "Ω"])
def test_good_tag_names(name: str) -> None:
    check_tag_name(name)
    assert MetaTag(name, "v").key == name.upper()


@pytest.mark.parametrize(
    "name",
    ["", "A" * (MAX_TAG_NAME + 1), "a:b", "#V", "a=b", "a<b", "a>b", "a;b", "a b", "a\tb",
     "a\nb", "a\u00a0b", "a\x00b"],
)  # fmt: skip
def test_bad_tag_names(name: str) -> None:
    with pytest.raises(StanzaError):
        check_tag_name(name)
    with pytest.raises(StanzaError):
        MetaTag(name, "v")


@pytest.mark.parametrize(
    "value",
    ["x" * (MAX_TAG_VALUE + 1), "a\x00", math.nan, math.inf, -math.inf, True, None, b"v", [1]],
)
def test_bad_tag_values(value: object) -> None:
    with pytest.raises(StanzaError):
        MetaTag("T", value)  # type: ignore[arg-type]


def test_tag_values() -> None:
    assert MetaTag("T", "x" * MAX_TAG_VALUE).value == "x" * MAX_TAG_VALUE
    assert MetaTag("T", "").numeric is False
    three = MetaTag("V", 3)
    assert three.numeric
    assert isinstance(three.value, float)
    assert three == n("V", 3.0)
    assert MetaTag.text("T", "3") != MetaTag.number("T", 3)


def test_canonical_tags() -> None:
    tags = canonical_tags([s("sn", "1"), n("v", 2)])
    assert list(tags) == ["SN", "V"]
    assert tags["SN"] == s("sn", "1")
    with pytest.raises(StanzaError):
        canonical_tags([s("SN", "1"), s("sn", "2")])
    with pytest.raises(StanzaError):
        canonical_tags([s(f"T{i}", "v") for i in range(MAX_TAGS + 1)])
    assert len(canonical_tags([s(f"T{i}", "v") for i in range(MAX_TAGS)])) == MAX_TAGS


@pytest.mark.parametrize(
    ("given", "registered", "match"),
    [
        ([], [], True),
        ([s("SN", "1"), s("KEY", "k")], [s("KEY", "k"), s("SN", "1")], True),  # order
        ([s("sn", "1"), s("key", "k")], [s("SN", "1"), s("KEY", "k")], True),  # name case
        ([s("SN", "1")], [s("SN", "1"), s("KEY", "k")], False),  # missing tag
        ([s("SN", "1"), s("KEY", "k")], [s("SN", "1")], False),  # extra tag
        ([s("SN", "a")], [s("SN", "A")], False),  # values are exact
        ([s("V", "1.2")], [n("V", 1.2)], False),  # types matter
        ([n("V", 1.2)], [n("V", 1.2)], True),
        ([n("V", 1)], [n("V", 1.0)], True),
        ([n("V", 1.2)], [n("V", 1.2000001)], False),
        ([s("SN", "1"), s("sn", "1")], [s("SN", "1")], False),  # a name twice never matches
        ([s("SN", "1")], [s("SN", "1"), s("SN", "1")], False),
    ],
)
def test_tags_match(given: list[MetaTag], registered: list[MetaTag], match: bool) -> None:
    assert tags_match(given, registered) is match
    assert tags_match(registered, given) is match


# -- model: search terms ---------------------------------------------------------------------------

TAGS = canonical_tags(
    [
        s("SN", "394872348732948723"),
        s("MAN", "www.ktc.se"),
        s("ROOM", "10"),
        n("V", 1.2),
        n("LAT", -33.5),
        s("KEY", "secret"),
        s("EMPTY", ""),
    ]
)


def t(op: Op, name: str, value: str | float | None = None, **kw: object) -> SearchTerm:
    """A term whose type (``str*``/``num*``) follows its operand."""
    operand = value if value is not None else kw["low"]
    return SearchTerm(op, name, not isinstance(operand, str), value, **kw)  # type: ignore[arg-type]


ACCEPTS: list[tuple[SearchTerm, bool]] = [
    # string comparisons are ordinal
    (t(Op.EQ, "MAN", "www.ktc.se"), True),
    (t(Op.EQ, "man", "www.ktc.se"), True),  # names are case-insensitive
    (t(Op.EQ, "MAN", "WWW.KTC.SE"), False),  # values are not
    (t(Op.NEQ, "MAN", "www.ktc.se"), False),
    (t(Op.NEQ, "MAN", "x"), True),
    (t(Op.GT, "ROOM", "9"), False),  # "10" < "9" as strings
    (t(Op.LT, "ROOM", "9"), True),
    (t(Op.GTEQ, "ROOM", "10"), True),
    (t(Op.GT, "ROOM", "10"), False),
    (t(Op.LTEQ, "ROOM", "10"), True),
    (t(Op.LT, "ROOM", "10"), False),
    (t(Op.EQ, "EMPTY", ""), True),
    (t(Op.RANGE, "ROOM", low="1", high="2"), True),
    (t(Op.RANGE, "ROOM", low="10", high="10"), True),
    (t(Op.RANGE, "ROOM", low="10", high="10", low_included=False), False),
    (t(Op.NRANGE, "ROOM", low="1", high="2"), False),
    (t(Op.NRANGE, "ROOM", low="2", high="3"), True),
    # numeric comparisons
    (t(Op.EQ, "V", 1.2), True),
    (t(Op.NEQ, "V", 1.2), False),
    (t(Op.GT, "V", 1.0), True),
    (t(Op.GT, "V", 1.2), False),
    (t(Op.GTEQ, "V", 1.2), True),
    (t(Op.LT, "V", 1.2), False),
    (t(Op.LTEQ, "V", 1.2), True),
    (t(Op.LT, "LAT", -33.0), True),
    (t(Op.RANGE, "V", low=1.0, high=2.0), True),
    (t(Op.RANGE, "V", low=1.2, high=2.0, low_included=False), False),
    (t(Op.RANGE, "V", low=0.0, high=1.2), True),
    (t(Op.RANGE, "V", low=0.0, high=1.2, high_included=False), False),
    (t(Op.RANGE, "V", low=2.0, high=1.0), False),  # an empty range
    (t(Op.NRANGE, "V", low=2.0, high=1.0), True),
    (t(Op.NRANGE, "V", low=1.0, high=2.0), False),
    (t(Op.NRANGE, "V", low=1.2, high=2.0, low_included=False), True),
    # masks
    (t(Op.MASK, "SN", "39487*"), True),
    (t(Op.MASK, "SN", "*8723"), True),
    (t(Op.MASK, "SN", "*4872*4872*"), True),
    (t(Op.MASK, "SN", "3948"), False),  # the whole value must match
    (t(Op.MASK, "SN", "*"), True),
    (t(Op.MASK, "SN", "39487?", wildcard="?"), True),
    (t(Op.MASK, "SN", "39487*", wildcard="?"), False),  # '*' is literal here
    (t(Op.MASK, "MAN", "www.ktc.*"), True),
    (t(Op.MASK, "MAN", "www?ktc?se"), False),  # no single-character wildcard
    (t(Op.MASK, "MAN", "www.k.c.se"), False),  # '.' is literal, not a regex
    (t(Op.MASK, "EMPTY", "*"), True),
    (t(Op.MASK, "EMPTY", ""), True),
    # type mismatch and missing tags never match, not even NEq / NRange
    (t(Op.EQ, "V", "1.2"), False),
    (t(Op.NEQ, "V", "x"), False),
    (t(Op.EQ, "ROOM", 10.0), False),
    (t(Op.NRANGE, "ROOM", low=0.0, high=1.0), False),
    (t(Op.MASK, "V", "*"), False),
    (t(Op.EQ, "NOPE", "x"), False),
    (t(Op.NEQ, "NOPE", "x"), False),
    (t(Op.NRANGE, "NOPE", low=0.0, high=1.0), False),
    # KEY is never searchable, whatever the operator
    (t(Op.EQ, "KEY", "secret"), False),
    (t(Op.EQ, "key", "secret"), False),
    (t(Op.NEQ, "KEY", "other"), False),
    (t(Op.MASK, "KEY", "*"), False),
    (t(Op.GTEQ, "KEY", ""), False),
    (t(Op.RANGE, "KEY", low="", high="\U0010ffff"), False),
    (t(Op.NRANGE, "KEY", low="x", high="y"), False),
]


@pytest.mark.parametrize(("term", "accepted"), ACCEPTS)
def test_search_term_accepts(term: SearchTerm, accepted: bool) -> None:
    assert term.accepts(TAGS) is accepted
    # The term means the same after a trip over the wire.
    (sent,) = round_trip(Search((term,))).terms  # type: ignore[union-attr]
    assert sent == term
    assert sent.accepts(TAGS) is accepted


@pytest.mark.parametrize(
    "build",
    [
        lambda: SearchTerm(Op.RANGE, "V", True, low=1.0),
        lambda: SearchTerm(Op.NRANGE, "V", True, high=1.0),
        lambda: SearchTerm(Op.EQ, "V", True),
        lambda: SearchTerm(Op.MASK, "V", True, value=1.0),
        lambda: SearchTerm(Op.MASK, "SN", False, value="x", wildcard=""),
        lambda: SearchTerm(Op.MASK, "SN", False, value="x", wildcard="**"),
        lambda: SearchTerm(Op.EQ, "V", True, value="1"),
        lambda: SearchTerm(Op.EQ, "SN", False, value=1.0),
        lambda: SearchTerm(Op.RANGE, "V", True, low=1.0, high="2"),
        lambda: SearchTerm(Op.EQ, "V", True, value=math.nan),
        lambda: SearchTerm(Op.RANGE, "V", True, low=-math.inf, high=1.0),
        lambda: SearchTerm(Op.EQ, "a b", False, value="x"),
    ],
)
def test_bad_search_terms(build: object) -> None:
    with pytest.raises(StanzaError):
        build()  # type: ignore[operator]


def test_request_dataclasses() -> None:
    thing = Thing("t@x", [s("SN", "1")])  # type: ignore[arg-type]
    assert thing.tags == (s("SN", "1"),)
    assert (thing.owner, thing.node) == (None, None)
    assert Register(()).node is None
    assert Register(()).self_owned is False
    assert Update(()).jid is None
    assert Remove("t@x").node is None
    assert Disown("t@x").node is None
    assert Unregister().node == Removed().node == Disowned().node is None


# -- hypothesis ------------------------------------------------------------------------------------

xml_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12
).filter(is_xml_text)
some_text = xml_text.filter(bool)


def _valid_name(name: str) -> bool:
    try:
        check_tag_name(name)
    except StanzaError:
        return False
    return True


tag_names = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Z")),
    min_size=1,
    max_size=MAX_TAG_NAME,
).filter(_valid_name)
finite = st.floats(allow_nan=False, allow_infinity=False)
str_values = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=MAX_TAG_VALUE
).filter(is_xml_text)
meta_tags = st.one_of(
    st.builds(MetaTag.text, tag_names, str_values), st.builds(MetaTag.number, tag_names, finite)
)
tag_lists = st.lists(meta_tags, max_size=8, unique_by=lambda tag: tag.key).map(tuple)
jid_part = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.-_", min_size=1, max_size=10)
jids = st.builds(lambda a, b: f"{a}@{b}", jid_part, jid_part) | jid_part
node_refs = st.none() | st.builds(NodeRef, some_text, st.none() | xml_text, st.none() | xml_text)


@st.composite
def search_terms(draw: st.DrawFn) -> SearchTerm:
    op = draw(st.sampled_from(list(Op)))
    name = draw(tag_names)
    numeric = op is not Op.MASK and draw(st.booleans())
    operand = finite if numeric else xml_text
    if op in (Op.RANGE, Op.NRANGE):
        return SearchTerm(
            op,
            name,
            numeric,
            low=draw(operand),
            high=draw(operand),
            low_included=draw(st.booleans()),
            high_included=draw(st.booleans()),
        )
    wildcard = draw(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")))
    return SearchTerm(
        op, name, numeric, value=draw(operand), wildcard=wildcard if op is Op.MASK else "*"
    )


things = st.builds(Thing, jids, tag_lists, st.none() | jids, node_refs)
int32 = st.integers(0, 2**31 - 1)

elements: st.SearchStrategy[DiscoveryElement] = st.one_of(
    st.builds(Register, tag_lists, node_refs, st.booleans()),
    st.builds(Mine, tag_lists, st.booleans()),
    st.builds(Claimed, jids, node_refs, st.booleans()),
    st.builds(Update, tag_lists, st.none() | jids, node_refs),
    st.builds(Remove, jids, node_refs),
    st.builds(Disown, jids, node_refs),
    st.builds(Unregister, node_refs),
    st.builds(Removed, node_refs),
    st.builds(Disowned, node_refs),
    st.builds(Search, st.lists(search_terms(), max_size=5).map(tuple), int32, int32),
    st.builds(Found, st.lists(things, max_size=3).map(tuple), st.booleans()),
)


@given(elements)
def test_any_element_round_trips(item: DiscoveryElement) -> None:
    assert round_trip(item) == item


@given(tag_lists, st.randoms(use_true_random=False), st.data())
def test_tags_match_ignores_order_and_name_case(
    tags: tuple[MetaTag, ...], rnd: object, data: st.DataObject
) -> None:
    shuffled = list(tags)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    recased = [
        MetaTag(tag.name.lower() if tag.name.lower().upper() == tag.key else tag.name, tag.value)
        for tag in shuffled
    ]
    assert tags_match(tags, recased)
    if tags:
        dropped = data.draw(st.integers(0, len(tags) - 1))
        assert not tags_match(tags, tags[:dropped] + tags[dropped + 1 :])


@given(tag_names, finite, finite, finite, st.booleans(), st.booleans())
def test_numeric_operators_agree_with_arithmetic(
    name: str, have: float, low: float, high: float, low_in: bool, high_in: bool
) -> None:
    tags = canonical_tags([n(name, have)])
    if name.upper() == KEY:
        return
    inside = (have >= low if low_in else have > low) and (have <= high if high_in else have < high)
    ranged = SearchTerm(
        Op.RANGE, name, True, low=low, high=high, low_included=low_in, high_included=high_in
    )
    outside = SearchTerm(
        Op.NRANGE, name, True, low=low, high=high, low_included=low_in, high_included=high_in
    )
    assert ranged.accepts(tags) is inside
    assert outside.accepts(tags) is not inside
    for op, expected in [
        (Op.EQ, have == low),
        (Op.NEQ, have != low),
        (Op.GT, have > low),
        (Op.GTEQ, have >= low),
        (Op.LT, have < low),
        (Op.LTEQ, have <= low),
    ]:
        assert SearchTerm(op, name, True, value=low).accepts(tags) is expected
        assert SearchTerm(op, name, False, value=str(low)).accepts(tags) is False


@given(tag_names, st.text(alphabet="ab\n*", max_size=8), st.text(alphabet="ab*", max_size=6))
def test_mask_agrees_with_shell_star(name: str, have: str, pattern: str) -> None:
    if name.upper() == KEY:
        return
    term = SearchTerm(Op.MASK, name, False, value=pattern)
    # Without '?' or '[' in the pattern, fnmatch is a reference for a '*'-only mask.
    assert term.accepts(canonical_tags([s(name, have)])) is fnmatch.fnmatchcase(have, pattern)


# Random trees raise nothing but StanzaError.
_LOCALS = (
    "register", "mine", "claimed", "update", "remove", "disown", "unregister", "removed",
    "disowned", "search", "found", "thing", "str", "num", "strEq", "numRange", "strMask",
    "numNRange", "strLt", "bogus",
)  # fmt: skip
_tags = st.sampled_from([q(local) for local in _LOCALS] + ["str", "{urn:example}x"])
_attr_names = st.sampled_from(
    ["jid", "owner", "nodeId", "sourceId", "cacheType", "name", "value", "public", "selfOwned",
     "offset", "maxCount", "more", "min", "max", "minIncluded", "maxIncluded", "wildcard"]
)  # fmt: skip
_any_text = st.text(alphabet=st.characters(exclude_categories=()), max_size=10)
_attr_values = st.one_of(
    _any_text,
    st.sampled_from(
        ["true", "false", "1", "0", "", " ", "-1", "1e999", "NaN", "2147483648", "a@b", "KEY", "**"]
    ),
)


@st.composite
def garbage_trees(draw: st.DrawFn, depth: int = 0) -> ET.Element:
    elem = ET.Element(draw(_tags), draw(st.dictionaries(_attr_names, _attr_values, max_size=5)))
    if draw(st.booleans()):
        elem.text = draw(_any_text)
    if depth < 2:
        elem.extend(draw(st.lists(garbage_trees(depth + 1), max_size=4)))
    return elem


@given(garbage_trees(), st.sampled_from(_LOCALS[:11]))
def test_random_trees_raise_only_stanza_error(tree: ET.Element, local: str) -> None:
    tree.tag = q(local)
    with contextlib.suppress(StanzaError):  # anything else fails the test
        parsed = convert.from_xml(tree)
        assert round_trip(parsed) == parsed


@given(elements, st.data())
def test_mutated_valid_elements_raise_only_stanza_error(
    item: DiscoveryElement, data: st.DataObject
) -> None:
    elem = convert.to_xml(item)
    targets = [elem, *elem.iter()]
    for _ in range(data.draw(st.integers(1, 3))):
        target = data.draw(st.sampled_from(targets))
        name = data.draw(_attr_names)
        if data.draw(st.booleans()) and name in target.attrib:
            del target.attrib[name]
        else:
            target.set(name, data.draw(_attr_values))
    with contextlib.suppress(StanzaError):
        convert.from_xml(elem)
