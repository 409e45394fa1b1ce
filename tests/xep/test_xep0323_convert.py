"""XEP-0323 conversions: spec examples, frame tables of good/bad payloads, hypothesis round-trips.

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

from xep.dialect import DIALECTS, Dialect
from xep.errors import StanzaError
from xep.xep_0323 import convert
from xep.xep_0323.model import (
    Accepted,
    FailureMessage,
    Field,
    FieldKind,
    FieldsMessage,
    FieldType,
    NodeFailure,
    NodeFields,
    NodeRef,
    QoS,
    Readout,
    ReadoutRequest,
    is_xml_text,
)

NS = "urn:xmpp:iot:sensordata"


def payload(xml: str) -> ET.Element:
    """The single sensordata child of a stanza given as text (or the element itself)."""
    root = ET.fromstring(xml)  # noqa: S314 (test vectors)
    if root.tag in ("iq", "message"):
        (child,) = [c for c in root if c.tag.startswith("{" + NS + "}")]
        return child
    return root


def wire(elem: ET.Element) -> ET.Element:
    """Serialize and parse again, as a peer would see it."""
    return ET.fromstring(ET.tostring(elem, encoding="unicode"))  # noqa: S314 (our own output)


# -- the exact examples of xmpp-iot-xeps.md §2.7 ---------------------------------------------------

EX1_REQ = """<iq type='get' from='client@example.org/amr' to='device@example.org' id='S0001'>
  <req xmlns='urn:xmpp:iot:sensordata' seqnr='1' momentary='true'/>
</iq>"""
EX1_ACCEPTED = """<iq type='result' from='device@example.org' to='client@example.org/amr' id='S0001'>
  <accepted xmlns='urn:xmpp:iot:sensordata' seqnr='1'/>
</iq>"""
EX1_FIELDS = """<message from='device@example.org' to='client@example.org/amr'>
  <fields xmlns='urn:xmpp:iot:sensordata' seqnr='1' done='true'>
    <node nodeId='Device01'>
      <timestamp value='2013-03-07T16:24:30'>
        <numeric name='Temperature' momentary='true' automaticReadout='true' value='23.4' unit='°C'/>
      </timestamp>
    </node>
  </fields>
</message>"""
EX2_REQ = """<iq type='get' from='client@example.org/amr' to='device@example.org' id='S0005'>
  <req xmlns='urn:xmpp:iot:sensordata' seqnr='5' momentary='true'>
    <node nodeId='Device02'/>
    <node nodeId='Device03'/>
  </req>
</iq>"""
EX2_FAILURE = """<message from='device@example.org' to='client@example.org/amr'>
  <failure xmlns='urn:xmpp:iot:sensordata' seqnr='2' done='true'>
    <error nodeId='Device01' timestamp='2013-03-07T17:13:30'>Timeout.</error>
  </failure>
</message>"""
EX3_REQ = """<iq type='get' from='client@example.org/amr' to='device@example.org' id='S0007'>
  <req xmlns='urn:xmpp:iot:sensordata' seqnr='8' all='true' when='2013-03-09T23:30:00'/>
</iq>"""
EX3_ACCEPTED = """<iq type='result' from='device@example.org' to='client@example.org/amr' id='S0007'>
  <accepted xmlns='urn:xmpp:iot:sensordata' seqnr='8' queued='true'/>
</iq>"""
EX3_CANCEL = """<iq type='get' from='client@example.org/amr' to='device@example.org' id='S0008'>
  <cancel xmlns='urn:xmpp:iot:sensordata' seqnr='8'/>
</iq>"""
EX3_CANCELLED = """<iq type='result' from='device@example.org' to='client@example.org/amr' id='S0008'>
  <cancelled xmlns='urn:xmpp:iot:sensordata' seqnr='8'/>
</iq>"""

T1 = datetime(2013, 3, 7, 16, 24, 30, tzinfo=UTC)


def test_example_1_request() -> None:
    assert convert.request_from_xml(payload(EX1_REQ)) == ReadoutRequest(1, FieldType.MOMENTARY)


def test_example_1_accepted() -> None:
    assert convert.accepted_from_xml(payload(EX1_ACCEPTED)) == Accepted(1, queued=False)


def test_example_1_fields() -> None:
    parsed = convert.fields_from_xml(payload(EX1_FIELDS), default_tz=UTC)
    temperature = Field(
        "Temperature",
        FieldKind.NUMERIC,
        "23.4",
        unit="°C",
        types=FieldType.MOMENTARY,
        qos=QoS.AUTOMATIC_READOUT,
    )
    assert parsed == FieldsMessage(1, (NodeFields(NodeRef("Device01"), T1, (temperature,)),), True)


def test_example_2_request_with_nodes() -> None:
    assert convert.request_from_xml(payload(EX2_REQ)) == ReadoutRequest(
        5, FieldType.MOMENTARY, nodes=(NodeRef("Device02"), NodeRef("Device03"))
    )


def test_example_2_failure() -> None:
    parsed = convert.failure_from_xml(payload(EX2_FAILURE), default_tz=UTC)
    stamp = datetime(2013, 3, 7, 17, 13, 30, tzinfo=UTC)
    assert parsed == FailureMessage(2, (NodeFailure(NodeRef("Device01"), stamp, "Timeout."),), True)


def test_example_3_queued_all() -> None:
    cet = timezone(timedelta(hours=1))
    request = convert.request_from_xml(payload(EX3_REQ), default_tz=cet)
    assert request == ReadoutRequest(
        8, FieldType.ALL, when=datetime(2013, 3, 9, 23, 30, tzinfo=cet)
    )
    assert convert.accepted_from_xml(payload(EX3_ACCEPTED)) == Accepted(8, queued=True)
    assert convert.seqnr_from_xml(payload(EX3_CANCEL), "cancel") == 8
    assert convert.seqnr_from_xml(payload(EX3_CANCELLED), "cancelled") == 8


def test_naive_timestamp_defaults_to_local_zone() -> None:
    parsed = convert.parse_datetime("2013-03-07T16:24:30")
    assert parsed.utcoffset() is not None
    assert parsed.replace(tzinfo=None) == datetime(2013, 3, 7, 16, 24, 30)


# -- emitting -------------------------------------------------------------------------------------


def test_fields_to_xml_exact() -> None:
    cest = timezone(timedelta(hours=2))
    message = FieldsMessage(
        3,
        (
            NodeFields(
                NodeRef("PLC1", "modbus", "unit"),
                datetime(2024, 5, 1, 14, 0, 0, 250000, tzinfo=cest),
                (
                    Field.numeric("Temperature", 21.5, "°C", 2),
                    Field.numeric("Ratio", 0.5, "", 1, types=FieldType.COMPUTED),
                    Field.integer("Address", 7, types=FieldType.IDENTITY, qos=QoS(0)),
                    Field.boolean("Relay", True, writable=True),
                ),
            ),
        ),
        done=True,
    )
    expected = (
        f'<ns0:fields xmlns:ns0="{NS}" seqnr="3" done="true">'
        '<ns0:node nodeId="PLC1" sourceId="modbus" cacheType="unit">'
        '<ns0:timestamp value="2024-05-01T12:00:00.250Z">'
        '<ns0:numeric name="Temperature" momentary="true" automaticReadout="true" '
        'value="21.50" unit="°C" />'
        '<ns0:numeric name="Ratio" computed="true" automaticReadout="true" value="0.5" unit="" />'
        '<ns0:int name="Address" identity="true" value="7" />'
        '<ns0:boolean name="Relay" momentary="true" automaticReadout="true" value="true" '
        'writable="true" />'
        "</ns0:timestamp></ns0:node></ns0:fields>"
    )
    assert ET.tostring(convert.fields_to_xml(message), encoding="unicode") == expected


def test_request_to_xml_exact() -> None:
    request = ReadoutRequest(
        42,
        FieldType.MOMENTARY | FieldType.IDENTITY,
        nodes=(NodeRef("N1"),),
        field_names=("Temperature",),
        from_time=datetime(2024, 1, 1, tzinfo=UTC),
        service_tokens=("a", "b"),
    )
    expected = (
        f'<ns0:req xmlns:ns0="{NS}" seqnr="42" momentary="true" identity="true" '
        'from="2024-01-01T00:00:00Z" serviceToken="a b">'
        '<ns0:node nodeId="N1" /><ns0:field name="Temperature" /></ns0:req>'
    )
    assert ET.tostring(convert.request_to_xml(request), encoding="unicode") == expected
    all_types = convert.request_to_xml(ReadoutRequest(1, FieldType.ALL))
    assert all_types.attrib == {"seqnr": "1", "all": "true"}


@pytest.mark.parametrize(
    ("value", "decimals", "text"),
    [
        (21.5, 2, "21.50"),
        (10, 0, "10"),
        (10, 1, "10.0"),
        (-0.04, 1, "-0.0"),
        (float("inf"), 2, "INF"),
        (float("-inf"), 2, "-INF"),
        (float("nan"), 2, "NaN"),
    ],
)
def test_numeric_constructor_precision(value: float, decimals: int, text: str) -> None:
    field = Field.numeric("x", value, "", decimals)
    assert field.value == text
    assert field.kind is FieldKind.NUMERIC


@pytest.mark.parametrize("lexical", ["21.50", "10", "10.0", "1.500E3", "-0.000", "+7.", ".5"])
def test_lexical_numeric_survives_round_trip(lexical: str) -> None:
    xml = (
        f"<fields xmlns='{NS}' seqnr='1'><node nodeId='n'><timestamp value='2020-01-01T00:00:00Z'>"
        f"<numeric name='v' value='{lexical}' unit='K'/></timestamp></node></fields>"
    )
    parsed = convert.fields_from_xml(payload(xml))
    assert parsed.items[0].fields[0].value == lexical
    again = convert.fields_from_xml(wire(convert.fields_to_xml(parsed)))
    assert again == parsed
    assert again.items[0].fields[0].value == lexical


def test_integer_constructor_picks_int_or_long() -> None:
    assert Field.integer("a", 2**31 - 1).kind is FieldKind.INT
    assert Field.integer("a", 2**31).kind is FieldKind.LONG
    assert Field.integer("a", -(2**31) - 1).kind is FieldKind.LONG
    with pytest.raises(ValueError, match="out of range"):
        Field.integer("a", 2**63)


def test_string_constructor_replaces_characters_xml_cannot_carry() -> None:
    assert Field.string("s", "a\x00b\x1fc").value == "a\ufffdb\ufffdc"
    with pytest.raises(ValueError, match="XML cannot carry"):
        Field("s", FieldKind.STRING, "a\x00b")


def test_model_validation() -> None:
    with pytest.raises(ValueError, match="not a valid numeric"):
        Field("x", FieldKind.NUMERIC, "12,5")
    with pytest.raises(ValueError, match="unit is only allowed"):
        Field("x", FieldKind.INT, "1", unit="V")
    with pytest.raises(ValueError, match="timezone-aware"):
        NodeFields(NodeRef("n"), datetime(2020, 1, 1))
    with pytest.raises(ValueError, match="xs:int"):
        ReadoutRequest(2**31)
    with pytest.raises(ValueError, match="token"):
        ReadoutRequest(1, service_tokens=("a b",))


def test_accessors() -> None:
    assert Field.numeric("t", 21.5, "°C", 2).as_float() == 21.5
    assert Field.numeric("t", 21.5, "°C", 2).decimals == 2
    assert Field("t", FieldKind.NUMERIC, "-INF").as_float() == float("-inf")
    assert Field("b", FieldKind.BOOLEAN, "1").as_bool() is True
    assert Field.integer("i", -3).as_int() == -3
    with pytest.raises(TypeError):
        Field.string("s", "x").as_float()


def test_request_helpers() -> None:
    request = ReadoutRequest(
        1, FieldType.MOMENTARY, nodes=(NodeRef("a", "src"),), field_names=("T",)
    )
    assert request.wants_node(NodeRef("a", "src", "c"))
    assert not request.wants_node(NodeRef("a", "other"))
    assert request.wants_field("T")
    assert not request.wants_field("U")
    assert request.wants_types(FieldType.MOMENTARY | FieldType.STATUS)
    assert not request.wants_types(FieldType.PEAK)
    assert ReadoutRequest(1).wants_node(NodeRef("anything"))


def test_readout_find() -> None:
    temp = Field.numeric("T", 1.0, "", 1)
    readout = Readout(1, (NodeFields(NodeRef("a"), T1, (temp,)),))
    assert readout.find("T") == temp
    assert readout.find("T", node_id="b") is None


# -- tolerant parsing ---------------------------------------------------------------------------

LENIENT = [
    # (name, xml, check)
    (
        "identification alias",
        f"<req xmlns='{NS}' seqnr='1' identification='true'/>",
        lambda r: r.types == FieldType.IDENTITY,
    ),
    (
        "historical shortcut",
        f"<req xmlns='{NS}' seqnr='1' historical='1'/>",
        lambda r: r.types == FieldType.HISTORICAL,
    ),
    ("no flags means all", f"<req xmlns='{NS}' seqnr='1'/>", lambda r: r.types == FieldType.ALL),
    (
        "false flags mean all",
        f"<req xmlns='{NS}' seqnr='1' momentary='false' peak='0'/>",
        lambda r: r.types == FieldType.ALL,
    ),
    ("negative seqnr", f"<req xmlns='{NS}' seqnr='-5'/>", lambda r: r.seqnr == -5),
    (
        "tokens",
        f"<req xmlns='{NS}' seqnr='1' userToken=' u1  u2 '/>",
        lambda r: r.user_tokens == ("u1", "u2"),
    ),
    (
        "foreign children ignored",
        f"<req xmlns='{NS}' seqnr='1'><x xmlns='urn:other'/><node nodeId='n'/></req>",
        lambda r: r.nodes == (NodeRef("n"),),
    ),
    (
        "zoned when",
        f"<req xmlns='{NS}' seqnr='1' when='2020-01-01T01:00:00.1234567+01:00'/>",
        lambda r: r.when == datetime(2020, 1, 1, 0, 0, 0, 123456, tzinfo=UTC),
    ),
    (
        "24:00",
        f"<req xmlns='{NS}' seqnr='1' when='2020-01-01T24:00:00Z'/>",
        lambda r: r.when == datetime(2020, 1, 2, tzinfo=UTC),
    ),
]


@pytest.mark.parametrize(("name", "xml", "check"), LENIENT, ids=[c[0] for c in LENIENT])
def test_request_lenient(name: str, xml: str, check) -> None:  # type: ignore[no-untyped-def]
    assert check(convert.request_from_xml(payload(xml)))


def _one_field(inner: str) -> Field:
    xml = (
        f"<fields xmlns='{NS}' seqnr='1'><node nodeId='n'><timestamp value='2020-01-01T00:00:00Z'>"
        f"{inner}</timestamp></node></fields>"
    )
    (item,) = convert.fields_from_xml(payload(xml)).items
    (field,) = item.fields
    return field


@pytest.mark.parametrize(
    ("inner", "expected"),
    [
        (
            "<numeric name='a' value='1.0'/>",
            Field("a", FieldKind.NUMERIC, "1.0", types=FieldType(0)),
        ),
        (
            "<numeric name='a' value=' 1.0 ' unit='V' peak='true' warning='true'/>",
            Field("a", FieldKind.NUMERIC, "1.0", unit="V", types=FieldType.PEAK, qos=QoS.WARNING),
        ),
        (
            "<timeSpan name='d' value='PT5M' status='true'/>",
            Field("d", FieldKind.DURATION, "PT5M", types=FieldType.STATUS),
        ),
        (
            "<enum name='e' value='On' dataType='urn:x:state' identification='1'/>",
            Field("e", FieldKind.ENUM, "On", data_type="urn:x:state", types=FieldType.IDENTITY),
        ),
        (
            "<string name='s' value='  keep  ' unit='ignored' module='m' stringIds='1'/>",
            Field("s", FieldKind.STRING, "  keep  ", types=FieldType(0)),
        ),
        (
            "<long name='l' value='-9223372036854775808' writable='false'/>",
            Field("l", FieldKind.LONG, "-9223372036854775808", types=FieldType(0), writable=False),
        ),
        (
            "<date name='d' value='2020-02-29'/>",
            Field("d", FieldKind.DATE, "2020-02-29", types=FieldType(0)),
        ),
        (
            "<time name='t' value='12:00:00.5Z'/>",
            Field("t", FieldKind.TIME, "12:00:00.5Z", types=FieldType(0)),
        ),
        (
            "<dateTime name='t' value='2020-01-01T00:00:00+14:00'/>",
            Field("t", FieldKind.DATETIME, "2020-01-01T00:00:00+14:00", types=FieldType(0)),
        ),
    ],
)
def test_field_parsing(inner: str, expected: Field) -> None:
    assert _one_field(inner) == expected


def test_legacy_rejected() -> None:
    xml = f"<rejected xmlns='{NS}' seqnr='3'><error>Access denied.</error></rejected>"
    assert convert.rejected_from_xml(payload(xml)) == (3, "Access denied.")


# -- garbage -------------------------------------------------------------------------------------

GARBAGE = [
    # (name, parser, xml, message fragment)
    ("wrong element", "req", f"<fields xmlns='{NS}' seqnr='1'/>", "expected <req"),
    ("wrong namespace", "req", "<req xmlns='urn:xmpp:sn' seqnr='1'/>", "expected <req"),
    ("missing seqnr", "req", f"<req xmlns='{NS}'/>", "lacks the required 'seqnr'"),
    ("non-numeric seqnr", "req", f"<req xmlns='{NS}' seqnr='abc'/>", "not an integer"),
    ("float seqnr", "req", f"<req xmlns='{NS}' seqnr='1.5'/>", "not an integer"),
    ("seqnr overflow", "req", f"<req xmlns='{NS}' seqnr='2147483648'/>", "out of range"),
    ("huge seqnr", "req", f"<req xmlns='{NS}' seqnr='{'9' * 5000}'/>", "not an integer"),
    ("bad flag", "req", f"<req xmlns='{NS}' seqnr='1' momentary='yes'/>", "xs:boolean"),
    ("bad when", "req", f"<req xmlns='{NS}' seqnr='1' when='tomorrow'/>", "xs:dateTime"),
    (
        "bad date",
        "req",
        f"<req xmlns='{NS}' seqnr='1' when='2020-02-30T00:00:00Z'/>",
        "xs:dateTime",
    ),
    (
        "bad zone",
        "req",
        f"<req xmlns='{NS}' seqnr='1' when='2020-01-01T00:00:00+15:00'/>",
        "xs:dateTime",
    ),
    ("node without id", "req", f"<req xmlns='{NS}' seqnr='1'><node/></req>", "nodeId"),
    ("field without name", "req", f"<req xmlns='{NS}' seqnr='1'><field/></req>", "'name'"),
    ("unknown child", "req", f"<req xmlns='{NS}' seqnr='1'><nodes/></req>", "unexpected element"),
    (
        "too many nodes",
        "req",
        f"<req xmlns='{NS}' seqnr='1'>" + "<node nodeId='n'/>" * (convert.MAX_NODES + 1) + "</req>",
        "too many <node>",
    ),
    (
        "too many field names",
        "req",
        f"<req xmlns='{NS}' seqnr='1'>"
        + "<field name='f'/>" * (convert.MAX_FIELD_NAMES + 1)
        + "</req>",
        "too many <field>",
    ),
    (
        "too many tokens",
        "req",
        f"<req xmlns='{NS}' seqnr='1' deviceToken='{' '.join(['t'] * 17)}'/>",
        "too many deviceToken",
    ),
    (
        "unknown field element",
        "fields",
        f"<fields xmlns='{NS}' seqnr='1'><node nodeId='n'><timestamp value='2020-01-01T00:00:00Z'>"
        "<float name='x' value='1'/></timestamp></node></fields>",
        "unknown field element",
    ),
    (
        "field without value",
        "fields",
        f"<fields xmlns='{NS}' seqnr='1'><node nodeId='n'><timestamp value='2020-01-01T00:00:00Z'>"
        "<numeric name='x'/></timestamp></node></fields>",
        "'value'",
    ),
    (
        "non-numeric numeric",
        "fields",
        f"<fields xmlns='{NS}' seqnr='1'><node nodeId='n'><timestamp value='2020-01-01T00:00:00Z'>"
        "<numeric name='x' value='1,5'/></timestamp></node></fields>",
        "not a valid numeric",
    ),
    (
        "int overflow",
        "fields",
        f"<fields xmlns='{NS}' seqnr='1'><node nodeId='n'><timestamp value='2020-01-01T00:00:00Z'>"
        "<int name='x' value='2147483648'/></timestamp></node></fields>",
        "out of range",
    ),
    (
        "bad boolean value",
        "fields",
        f"<fields xmlns='{NS}' seqnr='1'><node nodeId='n'><timestamp value='2020-01-01T00:00:00Z'>"
        "<boolean name='x' value='yes'/></timestamp></node></fields>",
        "not a valid boolean",
    ),
    (
        "timestamp without value",
        "fields",
        f"<fields xmlns='{NS}' seqnr='1'><node nodeId='n'><timestamp/></node></fields>",
        "'value'",
    ),
    (
        "stray element in fields",
        "fields",
        f"<fields xmlns='{NS}' seqnr='1'><timestamp/></fields>",
        "unexpected element",
    ),
    (
        "too many fields",
        "fields",
        f"<fields xmlns='{NS}' seqnr='1'><node nodeId='n'><timestamp value='2020-01-01T00:00:00Z'>"
        + "<int name='x' value='1'/>" * (convert.MAX_FIELDS + 1)
        + "</timestamp></node></fields>",
        "too many fields",
    ),
    ("bad done", "fields", f"<fields xmlns='{NS}' seqnr='1' done='maybe'/>", "xs:boolean"),
    (
        "error without timestamp",
        "failure",
        f"<failure xmlns='{NS}' seqnr='1'><error nodeId='n'>x</error></failure>",
        "'timestamp'",
    ),
    (
        "error with bad timestamp",
        "failure",
        f"<failure xmlns='{NS}' seqnr='1'><error nodeId='n' timestamp='now'>x</error></failure>",
        "xs:dateTime",
    ),
    ("accepted without seqnr", "accepted", f"<accepted xmlns='{NS}'/>", "seqnr"),
]
PARSERS = {
    "req": convert.request_from_xml,
    "fields": convert.fields_from_xml,
    "failure": convert.failure_from_xml,
    "accepted": convert.accepted_from_xml,
}


@pytest.mark.parametrize(
    ("name", "parser", "xml", "fragment"), GARBAGE, ids=[g[0] for g in GARBAGE]
)
def test_garbage_raises_stanza_error(name: str, parser: str, xml: str, fragment: str) -> None:
    with pytest.raises(StanzaError, match=fragment.replace("(", r"\(")):
        PARSERS[parser](payload(xml))  # type: ignore[operator]


# -- hypothesis -------------------------------------------------------------------------------------

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
field_types = st.builds(FieldType, st.integers(0, FieldType.ALL.value))
nonempty_types = st.builds(FieldType, st.integers(1, FieldType.ALL.value))
qos_flags = st.builds(QoS, st.integers(1, (1 << 14) - 1))
node_refs = st.builds(NodeRef, xml_text, st.none() | xml_text, st.none() | xml_text)


@st.composite
def fields_(draw: st.DrawFn) -> Field:
    common = {
        "types": draw(field_types),
        "qos": draw(qos_flags),
        "writable": draw(st.none() | st.booleans()),
    }
    name = draw(xml_text)
    kind = draw(st.sampled_from(list(FieldKind)))
    if kind is FieldKind.NUMERIC:
        number = draw(st.floats(allow_nan=True, allow_infinity=True, width=32))
        return Field.numeric(name, number, draw(xml_text), draw(st.integers(0, 6)), **common)
    if kind in (FieldKind.INT, FieldKind.LONG):
        return Field.integer(name, draw(st.integers(-(2**63), 2**63 - 1)), **common)
    if kind is FieldKind.BOOLEAN:
        return Field(name, kind, draw(st.sampled_from(["true", "false", "1", "0"])), **common)
    if kind is FieldKind.ENUM:
        return Field.enumeration(name, draw(xml_text), draw(xml_text), **common)
    if kind is FieldKind.STRING:
        return Field.string(name, draw(xml_text), **common)
    lexical = {
        FieldKind.DATE: "2020-02-29",
        FieldKind.DATETIME: "2020-02-29T23:59:59.999-03:00",
        FieldKind.TIME: "00:00:00Z",
        FieldKind.DURATION: "-P1Y2M3DT4H5M6.7S",
    }[kind]
    return Field(name, kind, lexical, **common)


node_fields = st.builds(NodeFields, node_refs, stamps, st.lists(fields_(), max_size=4).map(tuple))
node_failures = st.builds(NodeFailure, node_refs, stamps, xml_text)
seqnrs = st.integers(-(2**31), 2**31 - 1)
tokens = st.lists(st.text(alphabet="abcXYZ019-_=", min_size=1, max_size=8), max_size=3).map(tuple)


@given(
    st.builds(FieldsMessage, seqnrs, st.lists(node_fields, max_size=3).map(tuple), st.booleans())
)
def test_fields_round_trip(message: FieldsMessage) -> None:
    assert convert.fields_from_xml(wire(convert.fields_to_xml(message))) == message


@given(
    st.builds(FailureMessage, seqnrs, st.lists(node_failures, max_size=3).map(tuple), st.booleans())
)
def test_failure_round_trip(message: FailureMessage) -> None:
    assert convert.failure_from_xml(wire(convert.failure_to_xml(message))) == message


@given(
    st.builds(
        ReadoutRequest,
        seqnrs,
        nonempty_types,
        st.lists(node_refs, max_size=3).map(tuple),
        st.lists(xml_text, max_size=3).map(tuple),
        st.none() | stamps,
        st.none() | stamps,
        st.none() | stamps,
        tokens,
        tokens,
        tokens,
    )
)
def test_request_round_trip(request: ReadoutRequest) -> None:
    assert convert.request_from_xml(wire(convert.request_to_xml(request))) == request


@given(seqnrs, st.booleans())
def test_accepted_round_trip(seqnr: int, queued: bool) -> None:
    assert convert.accepted_from_xml(wire(convert.accepted_to_xml(seqnr, queued))) == Accepted(
        seqnr, queued
    )


@given(stamps)
def test_datetime_round_trip(value: datetime) -> None:
    text = convert.format_datetime(value)
    assert text.endswith("Z")
    assert convert.parse_datetime(text) == value


# Garbage: random trees of plausible element names and attribute values.
_tags = st.sampled_from(
    [
        "req",
        "fields",
        "failure",
        "node",
        "timestamp",
        "field",
        "error",
        "numeric",
        "int",
        "long",
        "boolean",
        "string",
        "enum",
        "date",
        "dateTime",
        "time",
        "duration",
        "timeSpan",
        "bogus",
    ]
)
_attr_names = st.sampled_from(
    [
        "seqnr",
        "done",
        "nodeId",
        "sourceId",
        "value",
        "name",
        "unit",
        "timestamp",
        "momentary",
        "all",
        "when",
        "from",
        "writable",
        "dataType",
        "automaticReadout",
        "serviceToken",
    ]
)
_attr_values = st.one_of(
    xml_text,
    st.sampled_from(
        ["1", "true", "0", "-1", "2147483648", "2020-01-01T00:00:00Z", "NaN", " ", "x"]
    ),
)


@st.composite
def garbage_trees(draw: st.DrawFn, depth: int = 0) -> ET.Element:
    elem = ET.Element(
        f"{{{NS}}}{draw(_tags)}", draw(st.dictionaries(_attr_names, _attr_values, max_size=5))
    )
    if depth < 3:
        elem.extend(draw(st.lists(garbage_trees(depth + 1), max_size=3)))
    return elem


@given(garbage_trees(), st.sampled_from(sorted(PARSERS)))
def test_garbage_trees_raise_only_stanza_error(tree: ET.Element, parser: str) -> None:
    tree.tag = f"{{{NS}}}{parser}"
    with contextlib.suppress(StanzaError):  # anything else fails the test
        PARSERS[parser](tree)  # type: ignore[operator]


@given(fields_(), st.sampled_from(DIALECTS))
def test_field_size_estimate_is_an_upper_bound(fld: Field, dialect: Dialect) -> None:
    """Messages are split on the estimate, so it must never be below the real size."""
    anchor = Field.numeric("anchor", 1.0, "V", 1)

    def size(*fields: Field) -> int:
        node = NodeFields(NodeRef("n"), datetime(2026, 1, 1, tzinfo=UTC), fields)
        message = FieldsMessage(1, (node,), False)
        return len(ET.tostring(convert.fields_to_xml(message, dialect=dialect), encoding="utf-8"))

    assert convert._field_cost(fld) >= size(anchor, fld) - size(anchor)


@given(node_refs, stamps, st.sampled_from(DIALECTS))
def test_node_size_estimate_is_an_upper_bound(
    ref: NodeRef, stamp: datetime, dialect: Dialect
) -> None:
    def size(*items: NodeFields) -> int:
        message = FieldsMessage(1, items, False)
        return len(ET.tostring(convert.fields_to_xml(message, dialect=dialect), encoding="utf-8"))

    item = NodeFields(ref, stamp, ())
    assert convert._item_overhead(item, dialect) >= size(item) - size()
