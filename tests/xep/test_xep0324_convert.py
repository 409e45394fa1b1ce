"""XEP-0324 provisioning codec: the spec examples, tables of good/bad payloads, hypothesis.

The spec examples are quoted verbatim from ``xmpp-iot-xeps.md`` §3.8, hence the long lines.
"""
# ruff: noqa: E501

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xep.errors import StanzaError
from xep.xep_0323.convert import request_types_from, set_request_types
from xep.xep_0323.model import FieldType, NodeRef, is_xml_text
from xep.xep_0324 import convert
from xep.xep_0324.model import (
    CanControl,
    CanControlResponse,
    CanRead,
    CanReadResponse,
    ClearCache,
    ClearCacheResponse,
    Friend,
    IsFriend,
    IsFriendResponse,
    ProvisioningElement,
    Unfriend,
)

NS = "urn:xmpp:iot:provisioning"


def payload(xml: str) -> ET.Element:
    """The single provisioning child of a stanza given as text (or the element itself)."""
    root = ET.fromstring(xml)  # noqa: S314 (test vectors)
    if root.tag in ("iq", "message"):
        (child,) = list(root)
        return child
    return root


def wire(elem: ET.Element) -> ET.Element:
    """Serialize and parse again, as the peer sees it."""
    return ET.fromstring(ET.tostring(elem, encoding="unicode"))  # noqa: S314 (our own output)


def q(local: str) -> str:
    return f"{{{NS}}}{local}"


def round_trip(item: ProvisioningElement) -> ProvisioningElement:
    return convert.from_xml(wire(convert.to_xml(item)))


# -- the exact examples of xmpp-iot-xeps.md §3.8 ---------------------------------------------------

EX_IS_FRIEND = """<iq type='get' from='device@example.org/device' to='provisioning.example.org' id='9'>
  <isFriend xmlns='urn:xmpp:iot:provisioning' jid='client1@example.org'/>
</iq>"""
EX_IS_FRIEND_RESPONSE = """<iq type='result' from='provisioning.example.org' to='device@example.org/device' id='9'>
  <isFriendResponse xmlns='urn:xmpp:iot:provisioning' jid='client1@example.org' result='true'/>
</iq>"""
EX_CAN_READ = """<iq type='get' from='device@example.org/device' to='provisioning.example.org' id='14'>
  <canRead xmlns='urn:xmpp:iot:provisioning' jid='primary@example.org' momentary='true' serviceToken='SERVICETOKEN1' userToken='USERTOKEN1'>
    <node nodeId='Device02'/>
    <node nodeId='Device03'/>
  </canRead>
</iq>"""
EX_CAN_READ_RESPONSE = """<iq type='result' from='provisioning.example.org' to='device@example.org/device' id='14'>
  <canReadResponse xmlns='urn:xmpp:iot:provisioning' jid='primary@example.org' momentary='true' result='true'>
    <node nodeId='Device02'/>
  </canReadResponse>
</iq>"""
EX_UNFRIEND = """<message from='provisioning.example.org' to='device@example.org'>
  <unfriend xmlns='urn:xmpp:iot:provisioning' jid='client2@example.org'/>
</message>"""
EX_CLEAR_CACHE = """<iq type='set' from='provisioning.example.org' to='device@example.org' id='23'>
  <clearCache xmlns='urn:xmpp:iot:provisioning'/>
</iq>"""
EX_CLEAR_CACHE_RESPONSE = """<iq type='result' from='device@example.org' to='provisioning.example.org' id='23'>
  <clearCacheResponse xmlns='urn:xmpp:iot:provisioning'/>
</iq>"""

SPEC_EXAMPLES: list[tuple[str, str, ProvisioningElement]] = [
    ("isFriend", EX_IS_FRIEND, IsFriend("client1@example.org")),
    ("isFriendResponse", EX_IS_FRIEND_RESPONSE, IsFriendResponse("client1@example.org", True)),
    (
        "canRead",
        EX_CAN_READ,
        CanRead(
            "primary@example.org",
            FieldType.MOMENTARY,
            (NodeRef("Device02"), NodeRef("Device03")),
            service_tokens=("SERVICETOKEN1",),
            user_tokens=("USERTOKEN1",),
        ),
    ),
    (
        "canReadResponse",
        EX_CAN_READ_RESPONSE,
        CanReadResponse("primary@example.org", True, FieldType.MOMENTARY, (NodeRef("Device02"),)),
    ),
    ("unfriend", EX_UNFRIEND, Unfriend("client2@example.org")),
    ("clearCache", EX_CLEAR_CACHE, ClearCache()),
    ("clearCacheResponse", EX_CLEAR_CACHE_RESPONSE, ClearCacheResponse()),
]


@pytest.mark.parametrize(
    ("xml", "expected"), [(x, e) for _, x, e in SPEC_EXAMPLES], ids=[n for n, _, _ in SPEC_EXAMPLES]
)
def test_spec_example_parses(xml: str, expected: ProvisioningElement) -> None:
    assert convert.from_xml(payload(xml)) == expected


@pytest.mark.parametrize(
    ("xml", "expected"), [(x, e) for _, x, e in SPEC_EXAMPLES], ids=[n for n, _, _ in SPEC_EXAMPLES]
)
def test_spec_example_is_what_we_send(xml: str, expected: ProvisioningElement) -> None:
    """Our element for the example's object has the example's name, attributes and children."""
    ours, theirs = wire(convert.to_xml(expected)), payload(xml)
    assert ours.tag == theirs.tag
    assert ours.attrib == theirs.attrib
    assert [(c.tag, c.attrib) for c in ours] == [(c.tag, c.attrib) for c in theirs]
    assert convert.from_xml(ours) == expected


def test_can_read_example_attributes_exactly() -> None:
    elem = convert.to_xml(SPEC_EXAMPLES[2][2])
    assert elem.attrib == {
        "jid": "primary@example.org",
        "momentary": "true",
        "serviceToken": "SERVICETOKEN1",
        "userToken": "USERTOKEN1",
    }
    assert [c.get("nodeId") for c in elem] == ["Device02", "Device03"]


# -- further well-formed payloads ------------------------------------------------------------------

GOOD: list[tuple[str, ProvisioningElement]] = [
    (f"<friend xmlns='{NS}' jid='client3@example.org'/>", Friend("client3@example.org")),
    (
        f"<isFriendResponse xmlns='{NS}' jid='a@b' result='false'/>",
        IsFriendResponse("a@b", False),
    ),
    (
        f"<isFriendResponse xmlns='{NS}' jid='a@b' result='1' secondaryTrustAllowed='true'/>",
        IsFriendResponse("a@b", True, True),
    ),
    (
        f"<isFriendResponse xmlns='{NS}' jid='a@b' result=' 0 ' secondaryTrustAllowed='0'/>",
        IsFriendResponse("a@b", False, False),
    ),
    # A JID keeps its resource; surrounding whitespace goes.
    (f"<isFriend xmlns='{NS}' jid='  a@b/res '/>", IsFriend("a@b/res")),
    # No flags: everything; historical and all shortcuts.
    (f"<canRead xmlns='{NS}' jid='a@b'/>", CanRead("a@b")),
    (f"<canRead xmlns='{NS}' jid='a@b' all='true'/>", CanRead("a@b")),
    (
        f"<canRead xmlns='{NS}' jid='a@b' historical='true'/>",
        CanRead("a@b", FieldType.HISTORICAL),
    ),
    (
        f"<canRead xmlns='{NS}' jid='a@b' momentary='1' peak='false' identification='true'/>",
        CanRead("a@b", FieldType.MOMENTARY | FieldType.IDENTITY),
    ),
    (
        f"""<canRead xmlns='{NS}' jid='a@b' deviceToken='  D1   D2 ' serviceToken='S'>
              <node nodeId='n1' sourceId='src' cacheType='ct'/>
              <field name='Temperature'/><field name='Power factor'/>
              <x xmlns='urn:example:extension'/>
            </canRead>""",
        CanRead(
            "a@b",
            nodes=(NodeRef("n1", "src", "ct"),),
            field_names=("Temperature", "Power factor"),
            service_tokens=("S",),
            device_tokens=("D1", "D2"),
        ),
    ),
    (
        f"""<canReadResponse xmlns='{NS}' jid='a@b' result='true' status='true'>
              <field name='Temperature'/>
            </canReadResponse>""",
        CanReadResponse("a@b", True, FieldType.STATUS, field_names=("Temperature",)),
    ),
    (
        f"<canReadResponse xmlns='{NS}' jid='a@b' result='false' all='true'/>",
        CanReadResponse("a@b", False),
    ),
    (
        f"""<canControl xmlns='{NS}' jid='a@b' userToken='U1 U2'>
              <node nodeId='DigitalOutput1'/><node nodeId='DigitalOutput2' sourceId='S'/>
              <parameter name='Output'/>
            </canControl>""",
        CanControl(
            "a@b",
            (NodeRef("DigitalOutput1"), NodeRef("DigitalOutput2", "S")),
            ("Output",),
            user_tokens=("U1", "U2"),
        ),
    ),
    (
        f"""<canControlResponse xmlns='{NS}' jid='a@b' result='true'>
              <node nodeId='DigitalOutput2'/><parameter name='Output'/>
            </canControlResponse>""",
        CanControlResponse("a@b", True, (NodeRef("DigitalOutput2"),), ("Output",)),
    ),
    (
        f"<canControlResponse xmlns='{NS}' jid='a@b' result='false'/>",
        CanControlResponse("a@b", False),
    ),
]


@pytest.mark.parametrize(("xml", "expected"), GOOD)
def test_good_payload_parses_and_round_trips(xml: str, expected: ProvisioningElement) -> None:
    assert convert.from_xml(payload(xml)) == expected
    assert round_trip(expected) == expected


def test_response_flags_are_optional_false_result_omits_secondary_trust() -> None:
    elem = convert.to_xml(IsFriendResponse("a@b", False))
    assert elem.attrib == {"jid": "a@b", "result": "false"}
    elem = convert.to_xml(IsFriendResponse("a@b", True, True))
    assert elem.attrib == {"jid": "a@b", "result": "true", "secondaryTrustAllowed": "true"}


def test_responses_carry_no_tokens() -> None:
    """The ``*Response`` schema types have no token attributes (§3.9)."""
    for item in (CanReadResponse("a@b", True), CanControlResponse("a@b", True)):
        assert not {"serviceToken", "deviceToken", "userToken"} & set(convert.to_xml(item).attrib)


def test_clear_cache_has_no_attributes_or_children() -> None:
    for item in (ClearCache(), ClearCacheResponse()):
        elem = convert.to_xml(item)
        assert not elem.attrib
        assert not list(elem)


# -- request flags (xep.xep_0323.convert) ----------------------------------------------------------

SINGLE_FLAGS = [flag for flag in FieldType if flag not in (FieldType.ALL, FieldType.HISTORICAL)]


@pytest.mark.parametrize("flag", SINGLE_FLAGS, ids=lambda f: f.name)
def test_each_flag_round_trips(flag: FieldType) -> None:
    elem = ET.Element("x")
    set_request_types(elem, flag)
    assert len(elem.attrib) == 1
    assert request_types_from(wire(elem)) == flag


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ({}, FieldType.ALL),
        ({"all": "true"}, FieldType.ALL),
        ({"all": "false"}, FieldType.ALL),  # no flag set at all: everything
        ({"momentary": "false"}, FieldType.ALL),
        ({"historical": "true"}, FieldType.HISTORICAL),
        ({"historical": "1", "momentary": "1"}, FieldType.HISTORICAL | FieldType.MOMENTARY),
        ({"identification": "true"}, FieldType.IDENTITY),
        ({"identity": "true"}, FieldType.IDENTITY),
        ({"momentary": "true", "all": "true"}, FieldType.ALL),
        ({"historicalDay": "true", "peak": "1"}, FieldType.HISTORICAL_DAY | FieldType.PEAK),
    ],
)
def test_flag_table(attrs: dict[str, str], expected: FieldType) -> None:
    assert request_types_from(ET.Element("x", attrs)) == expected


def test_all_is_written_as_the_all_shortcut() -> None:
    elem = ET.Element("x")
    set_request_types(elem, FieldType.ALL)
    assert elem.attrib == {"all": "true"}


@pytest.mark.parametrize("bad", ["yes", "", "TRUE", "2", "t"])
def test_bad_flag_boolean_is_a_stanza_error(bad: str) -> None:
    with pytest.raises(StanzaError):
        convert.from_xml(ET.Element(q("canRead"), {"jid": "a@b", "momentary": bad}))


field_types = st.integers(1, FieldType.ALL.value).map(FieldType)


@given(field_types)
def test_any_flag_combination_round_trips(types: FieldType) -> None:
    elem = ET.Element("x")
    set_request_types(elem, types)
    assert request_types_from(wire(elem)) == types
    assert round_trip(CanRead("a@b", types)) == CanRead("a@b", types)


# -- garbage ---------------------------------------------------------------------------------------

LONG_JID = "a@" + "b" * 3070
BAD: list[tuple[str, str]] = [
    ("not our namespace", "<isFriend jid='a@b'/>"),
    ("other namespace", "<isFriend xmlns='urn:xmpp:iot:discovery' jid='a@b'/>"),
    ("unknown element", f"<canAccess xmlns='{NS}' serviceToken='x'/>"),
    ("isFriend without jid", f"<isFriend xmlns='{NS}'/>"),
    ("friend without jid", f"<friend xmlns='{NS}'/>"),
    ("unfriend without jid", f"<unfriend xmlns='{NS}'/>"),
    ("canRead without jid", f"<canRead xmlns='{NS}'/>"),
    ("canControl without jid", f"<canControl xmlns='{NS}'/>"),
    ("response without jid", f"<canReadResponse xmlns='{NS}' result='true'/>"),
    ("empty jid", f"<isFriend xmlns='{NS}' jid=''/>"),
    ("blank jid", f"<isFriend xmlns='{NS}' jid='  '/>"),
    ("jid with a space", f"<isFriend xmlns='{NS}' jid='a b@c'/>"),
    ("jid too long", f"<isFriend xmlns='{NS}' jid='{LONG_JID}'/>"),
    ("isFriendResponse without result", f"<isFriendResponse xmlns='{NS}' jid='a@b'/>"),
    ("canReadResponse without result", f"<canReadResponse xmlns='{NS}' jid='a@b'/>"),
    ("canControlResponse without result", f"<canControlResponse xmlns='{NS}' jid='a@b'/>"),
    ("result not a boolean", f"<isFriendResponse xmlns='{NS}' jid='a@b' result='yes'/>"),
    ("result empty", f"<canReadResponse xmlns='{NS}' jid='a@b' result=''/>"),
    (
        "secondaryTrustAllowed not a boolean",
        f"<isFriendResponse xmlns='{NS}' jid='a@b' result='true' secondaryTrustAllowed='maybe'/>",
    ),
    ("flag not a boolean", f"<canReadResponse xmlns='{NS}' jid='a@b' result='1' all='all'/>"),
    ("unknown child", f"<canRead xmlns='{NS}' jid='a@b'><bogus xmlns='{NS}'/></canRead>"),
    ("parameter in canRead", f"<canRead xmlns='{NS}' jid='a@b'><parameter name='p'/></canRead>"),
    ("field in canControl", f"<canControl xmlns='{NS}' jid='a@b'><field name='f'/></canControl>"),
    (
        "field in canControlResponse",
        f"<canControlResponse xmlns='{NS}' jid='a@b' result='true'><field name='f'/></canControlResponse>",
    ),
    ("node without nodeId", f"<canRead xmlns='{NS}' jid='a@b'><node sourceId='s'/></canRead>"),
    ("empty nodeId", f"<canControl xmlns='{NS}' jid='a@b'><node nodeId=''/></canControl>"),
    ("field without name", f"<canRead xmlns='{NS}' jid='a@b'><field/></canRead>"),
    ("empty field name", f"<canRead xmlns='{NS}' jid='a@b'><field name=''/></canRead>"),
    (
        "empty parameter name",
        f"<canControl xmlns='{NS}' jid='a@b'><parameter name=''/></canControl>",
    ),
    (
        "too many tokens",
        f"<canRead xmlns='{NS}' jid='a@b' userToken='{' '.join(['t'] * (convert.MAX_TOKENS + 1))}'/>",
    ),
]


@pytest.mark.parametrize("xml", [x for _, x in BAD], ids=[n for n, _ in BAD])
def test_bad_payload_is_a_stanza_error(xml: str) -> None:
    with pytest.raises(StanzaError):
        convert.from_xml(payload(xml))


@pytest.mark.parametrize(
    ("local", "child"),
    [
        ("canRead", "node"),
        ("canRead", "field"),
        ("canReadResponse", "node"),
        ("canControl", "node"),
        ("canControl", "parameter"),
        ("canControlResponse", "parameter"),
    ],
)
def test_too_many_children_is_a_stanza_error(local: str, child: str) -> None:
    limit = convert.MAX_NODES if child == "node" else convert.MAX_NAMES
    attr = "nodeId" if child == "node" else "name"
    elem = ET.Element(q(local), {"jid": "a@b", "result": "true"})
    for i in range(limit):
        ET.SubElement(elem, q(child), {attr: f"n{i}"})
    assert convert.from_xml(elem)  # the limit itself is fine
    ET.SubElement(elem, q(child), {attr: "one too many"})
    with pytest.raises(StanzaError):
        convert.from_xml(elem)


# Characters a real parser never delivers, but a hand-built or EXI-decoded element may carry.
@pytest.mark.parametrize("char", ["\x00", "\x01", "\x1f", "\ufffe", "\ud800"])
@pytest.mark.parametrize(
    "where",
    ["jid", "nodeId", "sourceId", "cacheType", "field", "parameter", "serviceToken", "userToken"],
)
def test_characters_xml_cannot_carry_are_a_stanza_error(char: str, where: str) -> None:
    local = "canControl" if where == "parameter" else "canRead"
    elem = ET.Element(q(local), {"jid": "a@b"})
    bad = f"x{char}y"
    if where == "jid":
        elem.set("jid", bad)
    elif where in ("serviceToken", "userToken"):
        elem.set(where, f"ok {bad}")
    elif where in ("field", "parameter"):
        ET.SubElement(elem, q(where), {"name": bad})
    else:
        attrs = {"nodeId": "n", where: bad}
        ET.SubElement(elem, q("node"), attrs)
    if where.endswith("Token") and char.isspace():
        # Python splits on U+001C..U+001F too: the pieces are fine tokens.
        parsed = convert.from_xml(elem)
        assert isinstance(parsed, CanRead)
        assert all(is_xml_text(t) for t in (*parsed.service_tokens, *parsed.user_tokens))
        return
    with pytest.raises(StanzaError):
        convert.from_xml(elem)


# -- hypothesis: round trips of any model object ---------------------------------------------------

xml_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12
).filter(is_xml_text)
jid_part = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.-_", min_size=1, max_size=10)
jids = st.builds(
    lambda local, domain, res: f"{local}@{domain}" + (f"/{res}" if res else ""),
    jid_part,
    jid_part,
    st.none() | jid_part,
)
node_refs = st.builds(NodeRef, xml_text, st.none() | xml_text, st.none() | xml_text)
node_lists = st.lists(node_refs, max_size=4).map(tuple)
name_lists = st.lists(xml_text, max_size=4).map(tuple)
tokens = st.lists(st.text(alphabet="abcXYZ019-_=+/", min_size=1, max_size=8), max_size=3).map(tuple)

elements: st.SearchStrategy[ProvisioningElement] = st.one_of(
    st.builds(IsFriend, jids),
    st.builds(IsFriendResponse, jids, st.booleans(), st.booleans()),
    st.builds(CanRead, jids, field_types, node_lists, name_lists, tokens, tokens, tokens),
    st.builds(CanReadResponse, jids, st.booleans(), field_types, node_lists, name_lists),
    st.builds(CanControl, jids, node_lists, name_lists, tokens, tokens, tokens),
    st.builds(CanControlResponse, jids, st.booleans(), node_lists, name_lists),
    st.just(ClearCache()),
    st.just(ClearCacheResponse()),
    st.builds(Friend, jids),
    st.builds(Unfriend, jids),
)


@given(elements)
def test_any_element_round_trips(item: ProvisioningElement) -> None:
    assert round_trip(item) == item


# -- hypothesis: random trees raise nothing but StanzaError ----------------------------------------

_LOCALS = (
    "isFriend",
    "isFriendResponse",
    "canRead",
    "canReadResponse",
    "canControl",
    "canControlResponse",
    "clearCache",
    "clearCacheResponse",
    "friend",
    "unfriend",
    "node",
    "field",
    "parameter",
    "bogus",
)
_tags = st.sampled_from([q(local) for local in _LOCALS] + ["node", "{urn:example}x"])
_attr_names = st.sampled_from(
    [
        "jid",
        "result",
        "secondaryTrustAllowed",
        "nodeId",
        "sourceId",
        "cacheType",
        "name",
        "momentary",
        "all",
        "historical",
        "identification",
        "serviceToken",
        "deviceToken",
        "userToken",
    ]
)
_any_text = st.text(alphabet=st.characters(exclude_categories=()), max_size=10)
_attr_values = st.one_of(
    _any_text,
    st.sampled_from(["true", "false", "1", "0", "", " ", "a@b", "x y", "TRUE", "\x00"]),
)


@st.composite
def garbage_trees(draw: st.DrawFn, depth: int = 0) -> ET.Element:
    elem = ET.Element(draw(_tags), draw(st.dictionaries(_attr_names, _attr_values, max_size=5)))
    if draw(st.booleans()):
        elem.text = draw(_any_text)
    if depth < 2:
        elem.extend(draw(st.lists(garbage_trees(depth + 1), max_size=4)))
    return elem


@given(garbage_trees(), st.sampled_from(_LOCALS))
def test_random_trees_raise_only_stanza_error(tree: ET.Element, local: str) -> None:
    tree.tag = q(local)
    with contextlib.suppress(StanzaError):  # anything else fails the test
        parsed = convert.from_xml(tree)
        # Whatever parses can be sent back and means the same.
        assert round_trip(parsed) == parsed


@given(elements, st.data())
def test_mutated_valid_elements_raise_only_stanza_error(
    item: ProvisioningElement, data: st.DataObject
) -> None:
    elem = convert.to_xml(item)
    targets = [elem, *elem]
    for _ in range(data.draw(st.integers(1, 3))):
        target = data.draw(st.sampled_from(targets))
        name = data.draw(_attr_names)
        if data.draw(st.booleans()) and name in target.attrib:
            del target.attrib[name]
        else:
            target.set(name, data.draw(_attr_values))
    with contextlib.suppress(StanzaError):
        convert.from_xml(elem)
