"""XEP-0326 conversions: spec examples, good/bad payload tables, hypothesis round-trips.

The spec examples are quoted verbatim, hence the long lines.
"""
# ruff: noqa: E501

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xep.errors import StanzaError
from xep.xep_0323.model import is_xml_text
from xep.xep_0326 import convert
from xep.xep_0326.model import (
    DATA_SOURCE_COMMANDS,
    NODE_COMMANDS,
    NODE_INFO_COMMANDS,
    NODES_COMMANDS,
    SOURCE_COMMANDS,
    Command,
    ConcentratorRequest,
    ConcentratorResponse,
    DataSource,
    MessageType,
    NodeInfo,
    NodeMessage,
    NodeParameter,
    NodeRef,
    NodeState,
    ParameterKind,
    ResultCode,
    SortOrder,
)

NS = "urn:xmpp:iot:concentrators"


def payload(xml: str) -> ET.Element:
    """The single concentrators child of a stanza given as text (or the element itself)."""
    root = ET.fromstring(xml)  # noqa: S314 (test vectors)
    if root.tag in ("iq", "message"):
        (child,) = [c for c in root if c.tag.startswith("{" + NS + "}")]
        return child
    return root


def wire(elem: ET.Element) -> ET.Element:
    """Serialize and parse again, as a peer would see it."""
    return ET.fromstring(ET.tostring(elem, encoding="unicode"))  # noqa: S314 (our own output)


def canonical(elem: ET.Element) -> str:
    """Whitespace- and attribute-order-insensitive form for exact comparisons."""
    for node in elem.iter():
        if node.text is not None and not node.text.strip():
            node.text = None
        node.tail = None
    return ET.canonicalize(ET.tostring(elem, encoding="unicode"))


# -- the exact examples of xmpp-iot-xeps.md §5.4 ---------------------------------------------------

EX1_REQ = """<iq type='get' from='client@example.org/client' to='plc@example.org' id='3'>
  <getCapabilities xmlns='urn:xmpp:iot:concentrators'/>
</iq>"""
EX1_RESP = """<iq type='result' from='plc@example.org' to='client@example.org/client' id='3'>
  <getCapabilitiesResponse xmlns='urn:xmpp:iot:concentrators' result='OK'>
    <value>getCapabilities</value>
    <value>getAllDataSources</value>
    <value>containsNode</value>
    <value>getNode</value>
    <value>getRootNodes</value>
    <value>getChildNodes</value>
  </getCapabilitiesResponse>
</iq>"""
EX2_REQ = """<iq type='get' from='client@example.org/client' to='concentrator@example.org' id='9'>
  <getNode xmlns='urn:xmpp:iot:concentrators' sourceId='MeteringTopology' nodeId='Node1' xml:lang='en'/>
</iq>"""
EX2_RESP = """<iq type='result' from='concentrator@example.org' to='client@example.org/client' id='9'>
  <getNodeResponse xmlns='urn:xmpp:iot:concentrators'
    result='OK'
    nodeId='Node1'
    nodeType='Namespace.NodeType1'
    cacheType='Node'
    state='WarningUnsigned'
    hasChildren='false'
    isReadable='true'
    isControllable='true'
    hasCommands='true'
    parentId='Root'
    lastChanged='2013-03-19T17:58:01'/>
</iq>"""

CAPS = (
    "getCapabilities",
    "getAllDataSources",
    "containsNode",
    "getNode",
    "getRootNodes",
    "getChildNodes",
)
NODE1 = NodeInfo(
    "Node1",
    "MeteringTopology",
    cache_type="Node",
    node_type="Namespace.NodeType1",
    state=NodeState.WARNING_UNSIGNED,
    is_readable=True,
    is_controllable=True,
    has_commands=True,
    parent_id="Root",
    last_changed=datetime(2013, 3, 19, 17, 58, 1, tzinfo=UTC),
)


def test_example_capabilities_request() -> None:
    request = ConcentratorRequest(Command.GET_CAPABILITIES)
    assert convert.request_from_xml(payload(EX1_REQ)) == request
    assert canonical(convert.request_to_xml(request)) == canonical(payload(EX1_REQ))


def test_example_capabilities_response() -> None:
    response = ConcentratorResponse(Command.GET_CAPABILITIES, values=CAPS)
    assert convert.response_from_xml(payload(EX1_RESP)) == response
    assert canonical(convert.response_to_xml(response)) == canonical(payload(EX1_RESP))


def test_example_get_node_request() -> None:
    request = ConcentratorRequest(
        Command.GET_NODE, node=NodeRef("Node1", "MeteringTopology"), lang="en"
    )
    assert convert.request_from_xml(payload(EX2_REQ)) == request
    assert canonical(convert.request_to_xml(request)) == canonical(payload(EX2_REQ))


def test_example_get_node_response() -> None:
    parsed = convert.response_from_xml(
        payload(EX2_RESP), refs=(NodeRef("Node1", "MeteringTopology"),), default_tz=UTC
    )
    assert parsed == ConcentratorResponse(Command.GET_NODE, nodes=(NODE1,))
    # We always emit zoned UTC (§1), so the only difference to the example is the 'Z'; and
    # sourceId (§10.5) unless the bare XEP shape is asked for.
    expected = payload(EX2_RESP.replace("17:58:01'", "17:58:01Z'"))
    bare = convert.response_to_xml(parsed, with_source_id=False)
    assert canonical(bare) == canonical(expected)
    expected.set("sourceId", "MeteringTopology")
    assert canonical(convert.response_to_xml(parsed)) == canonical(expected)


def test_naive_timestamp_defaults_to_local_zone() -> None:
    (node,) = convert.response_from_xml(payload(EX2_RESP), default_source="S").nodes
    assert node.last_changed == datetime(2013, 3, 19, 17, 58, 1).astimezone()
    assert node.source_id == "S"


# -- more exact shapes -------------------------------------------------------------------------------


def test_node_with_parameters_and_messages_exact() -> None:
    info = NodeInfo(
        "TIM-1",
        "MeteringTopology",
        display_name="TIM 1",
        node_type="Ncap.Tim",
        state=NodeState.ERROR_SIGNED,
        has_children=True,
        children_ordered=True,
        parent_id="NCAP",
        parent_cache_type="Gateway",
        parameters=(
            NodeParameter.string("sn", "Serial Number", "123456"),
            NodeParameter.integer("addr", "Address", 7),
            NodeParameter.integer("big", "Big", 2**40),
            NodeParameter.boolean("on", "Enabled", True),
            NodeParameter("lat", "Latitude", ParameterKind.DOUBLE, "12.50"),
        ),
        messages=(
            NodeMessage(
                datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC), MessageType.ERROR, "CRC error", "E17"
            ),
        ),
    )
    response = ConcentratorResponse(Command.GET_CHILD_NODES, nodes=(info,))
    expected = payload(
        f"<getChildNodesResponse xmlns='{NS}' result='OK'>"
        "<node nodeId='TIM-1' sourceId='MeteringTopology' displayName='TIM 1' nodeType='Ncap.Tim' "
        "state='ErrorSigned' hasChildren='true' childrenOrdered='true' parentId='NCAP' parentCacheType='Gateway'>"
        "<string id='sn' name='Serial Number' value='123456'/>"
        "<int id='addr' name='Address' value='7'/>"
        "<long id='big' name='Big' value='1099511627776'/>"
        "<boolean id='on' name='Enabled' value='true'/>"
        "<double id='lat' name='Latitude' value='12.50'/>"
        "<message timestamp='2020-01-02T03:04:05Z' type='Error' eventId='E17'>CRC error</message>"
        "</node></getChildNodesResponse>"
    )
    assert canonical(convert.response_to_xml(response)) == canonical(expected)
    assert convert.response_from_xml(wire(convert.response_to_xml(response))) == response


def test_data_sources_exact() -> None:
    response = ConcentratorResponse(
        Command.GET_ALL_DATA_SOURCES,
        data_sources=(
            DataSource("MeteringTopology", "Topology", False, datetime(2013, 3, 19, tzinfo=UTC)),
            DataSource("Child", "Child", parent_id="MeteringTopology"),
        ),
    )
    expected = payload(
        f"<getAllDataSourcesResponse xmlns='{NS}' result='OK'>"
        "<dataSource sourceId='MeteringTopology' name='Topology' hasChildren='false' lastChanged='2013-03-19T00:00:00Z'/>"
        "<dataSource sourceId='Child' name='Child' hasChildren='false'/>"
        "</getAllDataSourcesResponse>"
    )
    assert canonical(convert.response_to_xml(response)) == canonical(expected)
    parsed = convert.response_from_xml(expected)
    assert parsed.data_sources[1] == DataSource("Child", "Child")  # parent_id is not on the wire


def test_contains_responses() -> None:
    single = payload(f"<containsNodeResponse xmlns='{NS}' result='OK'>true</containsNodeResponse>")
    assert convert.response_from_xml(single).contains == (True,)
    many = payload(
        f"<containsNodesResponse xmlns='{NS}' result='OK'><value>true</value><value>0</value>"
        "<value> false </value></containsNodesResponse>"
    )
    assert convert.response_from_xml(many).contains == (True, False, False)
    out = convert.response_to_xml(ConcentratorResponse(Command.CONTAINS_NODE, contains=(False,)))
    assert out.text == "false"


def test_request_to_xml_exact() -> None:
    request = ConcentratorRequest(
        Command.GET_CHILD_NODES,
        node=NodeRef("NCAP", "MeteringTopology", "Gateway"),
        parameters=True,
        messages=True,
        sort_order=(SortOrder("addr"), SortOrder("sn", ascending=False)),
        device_tokens=("a", "b"),
    )
    expected = payload(
        f"<getChildNodes xmlns='{NS}' sourceId='MeteringTopology' nodeId='NCAP' cacheType='Gateway' "
        "parameters='true' messages='true' deviceToken='a b'>"
        "<sortOrder parameterName='addr'/><sortOrder parameterName='sn' ascending='false'/>"
        "</getChildNodes>"
    )
    assert canonical(convert.request_to_xml(request)) == canonical(expected)
    nodes = ConcentratorRequest(
        Command.GET_ALL_NODES, source_id="S", only_if_derived_from=("Ncap.Tim", "Ncap.Channel")
    )
    expected = payload(
        f"<getAllNodes xmlns='{NS}' sourceId='S'><onlyIfDerivedFrom>Ncap.Tim</onlyIfDerivedFrom>"
        "<onlyIfDerivedFrom>Ncap.Channel</onlyIfDerivedFrom></getAllNodes>"
    )
    assert canonical(convert.request_to_xml(nodes)) == canonical(expected)


def test_get_nodes_without_source_in_response_takes_it_from_the_request() -> None:
    refs = (NodeRef("a", "S1"), NodeRef("b", "S2"))
    elem = payload(
        f"<getNodesResponse xmlns='{NS}' result='OK'><node nodeId='b' state='None' hasChildren='false'/>"
        "<node nodeId='a' state='None' hasChildren='false'/><node nodeId='c'/></getNodesResponse>"
    )
    nodes = convert.response_from_xml(elem, refs=refs, default_source="D").nodes
    assert [(n.node_id, n.source_id) for n in nodes] == [("b", "S2"), ("a", "S1"), ("c", "D")]


# -- lenient input -----------------------------------------------------------------------------------


def test_non_ok_response_ignores_payload() -> None:
    elem = payload(
        f"<getNodeResponse xmlns='{NS}' result='NotFound' nodeId='x' state='Bogus'>"
        "<string/></getNodeResponse>"
    )
    assert convert.response_from_xml(elem) == ConcentratorResponse(
        Command.GET_NODE, ResultCode.NOT_FOUND
    )
    elem = payload(f"<containsNodeResponse xmlns='{NS}' result='OtherError'/>")
    assert convert.response_from_xml(elem).result is ResultCode.OTHER_ERROR


def test_response_ignores_unknown_children_and_legacy_node_shape() -> None:
    elem = payload(
        f"<getRootNodesResponse xmlns='{NS}' result='OK'>"
        "<node nodeId='n'><date id='d' name='D' value='2020-01-01'/><x xmlns='urn:other'/></node>"
        "<bogus/></getRootNodesResponse>"
    )
    (node,) = convert.response_from_xml(elem, default_source="S").nodes
    assert node == NodeInfo("n", "S")  # no state → None, no hasChildren → false


def test_request_ignores_foreign_elements_and_inapplicable_attributes() -> None:
    elem = payload(
        f"<getCapabilities xmlns='{NS}' sourceId='x' parameters='maybe'><x xmlns='urn:other'/></getCapabilities>"
    )
    assert convert.request_from_xml(elem) == ConcentratorRequest(Command.GET_CAPABILITIES)


def test_missing_source_id_is_parsed_for_a_not_found_answer() -> None:
    elem = payload(f"<getNode xmlns='{NS}' nodeId='n'/>")
    assert convert.request_from_xml(elem).node == NodeRef("n")
    elem = payload(f"<getRootNodes xmlns='{NS}'/>")
    assert convert.request_from_xml(elem).source_id is None


def test_model_validation() -> None:
    with pytest.raises(ValueError, match="needs node"):
        ConcentratorRequest(Command.GET_NODE)
    with pytest.raises(ValueError, match="takes no node"):
        ConcentratorRequest(Command.GET_CAPABILITIES, node=NodeRef("n", "s"))
    with pytest.raises(ValueError, match="takes no nodes"):
        ConcentratorResponse(Command.GET_NODE, ResultCode.NOT_FOUND, nodes=(NODE1,))
    with pytest.raises(ValueError, match="exactly one node"):
        ConcentratorResponse(Command.GET_NODE)
    with pytest.raises(ValueError, match="not a valid color"):
        NodeParameter("c", "C", ParameterKind.COLOR, "red")
    with pytest.raises(ValueError, match="out of range"):
        NodeParameter("i", "I", ParameterKind.INT, "2147483648")
    with pytest.raises(ValueError, match="timezone-aware"):
        DataSource("s", "S", last_changed=datetime(2020, 1, 1))
    with pytest.raises(ValueError, match="XML cannot carry"):
        NodeInfo("a\x00", "s")
    with pytest.raises(ValueError, match="token"):
        ConcentratorRequest(Command.GET_CAPABILITIES, user_tokens=("a b",))


# -- garbage -----------------------------------------------------------------------------------------

GARBAGE = [
    # (name, parser, xml, message fragment)
    ("not ours", "request", "<getNode xmlns='urn:xmpp:sn' nodeId='n'/>", "not an implemented"),
    ("unknown request", "request", f"<moveNodeUp xmlns='{NS}'/>", "not an implemented"),
    ("node without id", "request", f"<getNode xmlns='{NS}' sourceId='s'/>", "'nodeId'"),
    (
        "bad flag",
        "request",
        f"<getNode xmlns='{NS}' sourceId='s' nodeId='n' parameters='yes'/>",
        "xs:boolean",
    ),
    (
        "child without id",
        "request",
        f"<getNodes xmlns='{NS}'><node sourceId='s'/></getNodes>",
        "'nodeId'",
    ),
    (
        "unexpected child",
        "request",
        f"<getNodes xmlns='{NS}'><sortOrder parameterName='x'/></getNodes>",
        "unexpected element",
    ),
    (
        "node child on getNode",
        "request",
        f"<getNode xmlns='{NS}' sourceId='s' nodeId='n'><node nodeId='m'/></getNode>",
        "unexpected element",
    ),
    (
        "sort without name",
        "request",
        f"<getChildNodes xmlns='{NS}' sourceId='s' nodeId='n'><sortOrder/></getChildNodes>",
        "'parameterName'",
    ),
    (
        "bad ascending",
        "request",
        f"<getChildNodes xmlns='{NS}' sourceId='s' nodeId='n'><sortOrder parameterName='p' ascending='up'/></getChildNodes>",
        "xs:boolean",
    ),
    (
        "too many nodes",
        "request",
        f"<getNodes xmlns='{NS}'>"
        + "<node sourceId='s' nodeId='n'/>" * (convert.MAX_REQUEST_NODES + 1)
        + "</getNodes>",
        "too many <node>",
    ),
    (
        "too many derived",
        "request",
        f"<getAllNodes xmlns='{NS}' sourceId='s'>"
        + "<onlyIfDerivedFrom>T</onlyIfDerivedFrom>" * (convert.MAX_DERIVED_FROM + 1)
        + "</getAllNodes>",
        "too many <onlyIfDerivedFrom>",
    ),
    (
        "too many sort keys",
        "request",
        f"<getChildNodes xmlns='{NS}' sourceId='s' nodeId='n'>"
        + "<sortOrder parameterName='p'/>" * (convert.MAX_SORT_KEYS + 1)
        + "</getChildNodes>",
        "too many <sortOrder>",
    ),
    (
        "too many tokens",
        "request",
        f"<getCapabilities xmlns='{NS}' userToken='{' '.join(['t'] * 17)}'/>",
        "too many userToken",
    ),
    ("not a response", "response", f"<getNode xmlns='{NS}' result='OK'/>", "not an implemented"),
    ("missing result", "response", f"<getNodesResponse xmlns='{NS}'/>", "'result'"),
    (
        "unknown result",
        "response",
        f"<getNodesResponse xmlns='{NS}' result='Fine'/>",
        "unknown result code",
    ),
    (
        "getNode without nodeId",
        "response",
        f"<getNodeResponse xmlns='{NS}' result='OK'/>",
        "'nodeId'",
    ),
    (
        "bad state",
        "response",
        f"<getNodesResponse xmlns='{NS}' result='OK'><node nodeId='n' state='Fine'/></getNodesResponse>",
        "unknown node state",
    ),
    (
        "bad hasChildren",
        "response",
        f"<getNodesResponse xmlns='{NS}' result='OK'><node nodeId='n' hasChildren='2'/></getNodesResponse>",
        "xs:boolean",
    ),
    (
        "bad lastChanged",
        "response",
        f"<getNodesResponse xmlns='{NS}' result='OK'><node nodeId='n' lastChanged='today'/></getNodesResponse>",
        "xs:dateTime",
    ),
    (
        "bad int parameter",
        "response",
        f"<getNodesResponse xmlns='{NS}' result='OK'><node nodeId='n'><int id='i' name='I' value='1.5'/></node></getNodesResponse>",
        "not a valid int",
    ),
    (
        "parameter without id",
        "response",
        f"<getNodesResponse xmlns='{NS}' result='OK'><node nodeId='n'><int name='I' value='1'/></node></getNodesResponse>",
        "'id'",
    ),
    (
        "parameter without value",
        "response",
        f"<getNodesResponse xmlns='{NS}' result='OK'><node nodeId='n'><string id='i' name='I'/></node></getNodesResponse>",
        "'value'",
    ),
    (
        "message without timestamp",
        "response",
        f"<getNodesResponse xmlns='{NS}' result='OK'><node nodeId='n'><message type='Error'>x</message></node></getNodesResponse>",
        "'timestamp'",
    ),
    (
        "message bad type",
        "response",
        f"<getNodesResponse xmlns='{NS}' result='OK'><node nodeId='n'><message type='Fatal' timestamp='2020-01-01T00:00:00Z'>x</message></node></getNodesResponse>",
        "unknown message type",
    ),
    (
        "source without name",
        "response",
        f"<getAllDataSourcesResponse xmlns='{NS}' result='OK'><dataSource sourceId='s'/></getAllDataSourcesResponse>",
        "'name'",
    ),
    (
        "contains not boolean",
        "response",
        f"<containsNodeResponse xmlns='{NS}' result='OK'>maybe</containsNodeResponse>",
        "xs:boolean",
    ),
    (
        "contains empty",
        "response",
        f"<containsNodeResponse xmlns='{NS}' result='OK'/>",
        "xs:boolean",
    ),
    (
        "contains values bad",
        "response",
        f"<containsNodesResponse xmlns='{NS}' result='OK'><value>yes</value></containsNodesResponse>",
        "xs:boolean",
    ),
    (
        "too many nodes in response",
        "response",
        f"<getAllNodesResponse xmlns='{NS}' result='OK'>"
        + "<node nodeId='n'/>" * (convert.MAX_NODES + 1)
        + "</getAllNodesResponse>",
        "too many <node>",
    ),
    (
        "too many parameters",
        "response",
        f"<getNodesResponse xmlns='{NS}' result='OK'><node nodeId='n'>"
        + "<string id='i' name='I' value=''/>" * (convert.MAX_PARAMETERS + 1)
        + "</node></getNodesResponse>",
        "too many parameters",
    ),
    (
        "too many values",
        "response",
        f"<getCapabilitiesResponse xmlns='{NS}' result='OK'>"
        + "<value>x</value>" * (convert.MAX_VALUES + 1)
        + "</getCapabilitiesResponse>",
        "too many <value>",
    ),
]
PARSERS = {"request": convert.request_from_xml, "response": convert.response_from_xml}


@pytest.mark.parametrize(
    ("name", "parser", "xml", "fragment"), GARBAGE, ids=[g[0] for g in GARBAGE]
)
def test_garbage_raises_stanza_error(name: str, parser: str, xml: str, fragment: str) -> None:
    with pytest.raises(StanzaError, match=fragment.replace("(", r"\(")):
        PARSERS[parser](payload(xml))  # type: ignore[operator]


# -- hypothesis --------------------------------------------------------------------------------------

xml_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\r"),
    max_size=12,
).filter(is_xml_text)
stamps = st.datetimes(
    min_value=datetime(1000, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=9, minutes=30))]
    ),
)
refs = st.builds(NodeRef, xml_text, xml_text, st.none() | xml_text)
tokens = st.lists(st.text(alphabet="abcXYZ019-_=", min_size=1, max_size=8), max_size=3).map(tuple)
stripped_text = xml_text.map(lambda s: s.strip(" \t\n"))

_LEXICAL = {
    ParameterKind.BOOLEAN: st.sampled_from(["true", "false", "1", "0"]),
    ParameterKind.COLOR: st.sampled_from(["00ff7F", "FFFFFF", "123abc"]),
    ParameterKind.DATETIME: st.sampled_from(
        ["2020-02-29T23:59:59.999-03:00", "2013-03-19T17:58:01"]
    ),
    ParameterKind.DOUBLE: st.sampled_from(["12.50", "-1E3", "INF", "NaN", ".5"]),
    ParameterKind.DURATION: st.sampled_from(["-P1Y2M3DT4H5M6.7S", "PT1S"]),
    ParameterKind.INT: st.integers(-(2**31), 2**31 - 1).map(str),
    ParameterKind.LONG: st.integers(-(2**63), 2**63 - 1).map(str),
    ParameterKind.STRING: xml_text,
    ParameterKind.TIME: st.sampled_from(["00:00:00Z", "23:59:59.5+01:00"]),
}


@st.composite
def parameters(draw: st.DrawFn) -> NodeParameter:
    kind = draw(st.sampled_from(list(ParameterKind)))
    return NodeParameter(draw(xml_text), draw(xml_text), kind, draw(_LEXICAL[kind]))


messages = st.builds(NodeMessage, stamps, st.sampled_from(list(MessageType)), xml_text, xml_text)
node_infos = st.builds(
    NodeInfo,
    xml_text,
    xml_text,
    st.none() | xml_text,
    xml_text,
    xml_text,
    xml_text,
    xml_text,
    st.sampled_from(list(NodeState)),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.none() | xml_text,
    st.none() | xml_text,
    st.none() | stamps,
    st.lists(parameters(), max_size=3).map(tuple),
    st.lists(messages, max_size=2).map(tuple),
)
data_sources = st.builds(DataSource, xml_text, xml_text, st.booleans(), st.none() | stamps)


@st.composite
def requests(draw: st.DrawFn) -> ConcentratorRequest:
    command = draw(st.sampled_from(list(Command)))
    info = command in NODE_INFO_COMMANDS
    return ConcentratorRequest(
        command,
        source_id=draw(xml_text) if command in SOURCE_COMMANDS else None,
        node=draw(refs) if command in NODE_COMMANDS else None,
        nodes=tuple(draw(st.lists(refs, max_size=3))) if command in NODES_COMMANDS else (),
        parameters=info and draw(st.booleans()),
        messages=info and draw(st.booleans()),
        only_if_derived_from=tuple(draw(st.lists(stripped_text, max_size=3)))
        if command is Command.GET_ALL_NODES
        else (),
        sort_order=tuple(draw(st.lists(st.builds(SortOrder, xml_text, st.booleans()), max_size=3)))
        if command is Command.GET_CHILD_NODES
        else (),
        service_tokens=draw(tokens),
        device_tokens=draw(tokens),
        user_tokens=draw(tokens),
        lang=draw(st.none() | st.sampled_from(["en", "sv-SE"])),
    )


@st.composite
def responses(draw: st.DrawFn) -> ConcentratorResponse:
    command = draw(st.sampled_from(list(Command)))
    result = draw(st.sampled_from(list(ResultCode)))
    if result is not ResultCode.OK:
        return ConcentratorResponse(command, result)
    if command is Command.GET_CAPABILITIES:
        return ConcentratorResponse(
            command, values=tuple(draw(st.lists(stripped_text, max_size=4)))
        )
    if command is Command.CONTAINS_NODE:
        return ConcentratorResponse(command, contains=(draw(st.booleans()),))
    if command is Command.CONTAINS_NODES:
        return ConcentratorResponse(
            command, contains=tuple(draw(st.lists(st.booleans(), max_size=4)))
        )
    if command is Command.GET_NODE:
        return ConcentratorResponse(command, nodes=(draw(node_infos),))
    if command in DATA_SOURCE_COMMANDS:
        return ConcentratorResponse(
            command, data_sources=tuple(draw(st.lists(data_sources, max_size=3)))
        )
    return ConcentratorResponse(command, nodes=tuple(draw(st.lists(node_infos, max_size=3))))


@given(requests())
def test_request_round_trip(request: ConcentratorRequest) -> None:
    assert convert.request_from_xml(wire(convert.request_to_xml(request))) == request


@given(responses())
def test_response_round_trip(response: ConcentratorResponse) -> None:
    assert convert.response_from_xml(wire(convert.response_to_xml(response))) == response


@given(responses())
def test_response_round_trip_without_source_id(response: ConcentratorResponse) -> None:
    elem = wire(convert.response_to_xml(response, with_source_id=False))
    parsed = convert.response_from_xml(elem, default_source="X")
    assert [n.source_id for n in parsed.nodes] == ["X"] * len(response.nodes)
    assert [n.node_id for n in parsed.nodes] == [n.node_id for n in response.nodes]


# Garbage: random trees of plausible element names and attribute values.
_tags = st.sampled_from(
    [c.value for c in Command]
    + [c.response for c in Command]
    + ["node", "dataSource", "value", "message", "sortOrder", "onlyIfDerivedFrom", "bogus"]
    + [k.value for k in ParameterKind]
)
_attr_names = st.sampled_from(
    [
        "result",
        "nodeId",
        "sourceId",
        "cacheType",
        "state",
        "hasChildren",
        "isReadable",
        "parameters",
        "messages",
        "lastChanged",
        "id",
        "name",
        "value",
        "timestamp",
        "type",
        "parameterName",
        "ascending",
        "userToken",
    ]
)
_attr_values = st.one_of(
    xml_text,
    st.sampled_from(
        [
            "OK",
            "NotFound",
            "None",
            "true",
            "0",
            "x",
            " ",
            "2020-01-01T00:00:00Z",
            "Error",
            "2147483648",
            "ff00ff",
        ]
    ),
)


@st.composite
def garbage_trees(draw: st.DrawFn, depth: int = 0) -> ET.Element:
    elem = ET.Element(
        f"{{{NS}}}{draw(_tags)}", draw(st.dictionaries(_attr_names, _attr_values, max_size=5))
    )
    elem.text = draw(st.none() | _attr_values)
    if depth < 3:
        elem.extend(draw(st.lists(garbage_trees(depth + 1), max_size=3)))
    return elem


@given(garbage_trees(), st.sampled_from(sorted(PARSERS)))
def test_garbage_trees_raise_only_stanza_error(tree: ET.Element, parser: str) -> None:
    with contextlib.suppress(StanzaError):  # anything else fails the test
        PARSERS[parser](tree)  # type: ignore[operator]
