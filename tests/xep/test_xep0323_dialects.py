"""XEP-0323 conversions in both dialects (XSF and IEEE/NF), splitting and client-side filtering.

Everything here is table-driven: the same model objects go through ``convert`` in every dialect.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from xep.dialect import DIALECTS, IEEE, NF, XSF, Dialect, by_namespace
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
)

T1 = datetime(2013, 3, 7, 16, 24, 30, tzinfo=UTC)
T2 = datetime(2013, 3, 7, 17, 0, 0, 250000, tzinfo=UTC)
IEEE_NS = "urn:ieee:iot:sd:1.0"
XSF_NS = "urn:xmpp:iot:sensordata"
# Types every dialect carries losslessly (IEEE has no historical periods, see xep.dialect).
PORTABLE = FieldType.MOMENTARY | FieldType.PEAK | FieldType.STATUS | FieldType.COMPUTED

ALL_KINDS = (
    Field.numeric("Temperature", 23.456, "°C", 2, qos=QoS.AUTOMATIC_READOUT | QoS.WARNING),
    Field("Unitless", FieldKind.NUMERIC, "10.0", types=FieldType.COMPUTED),
    Field.integer("Address", 7, types=FieldType.IDENTITY, writable=True),
    Field.integer("Energy", 2**40, types=FieldType.STATUS),
    Field.boolean("Relay", True, writable=False),
    Field.string("Firmware", "v1 <&> 'x'", types=FieldType.IDENTITY),
    Field.enumeration("Mode", "Auto", "urn:x:mode", types=FieldType.STATUS),
    Field("Day", FieldKind.DATE, "2020-02-29", types=FieldType.PEAK),
    Field("Stamp", FieldKind.DATETIME, "2020-01-01T00:00:00Z"),
    Field("Noon", FieldKind.TIME, "12:00:00", qos=QoS(0) | QoS.MISSING),
    Field("Uptime", FieldKind.DURATION, "P1DT2H", types=FieldType.STATUS),
    Field(
        "Flags",
        FieldKind.INT,
        "1",
        types=FieldType.MOMENTARY,
        qos=QoS.MISSING
        | QoS.IN_PROGRESS
        | QoS.AUTOMATIC_ESTIMATE
        | QoS.MANUAL_ESTIMATE
        | QoS.MANUAL_READOUT
        | QoS.AUTOMATIC_READOUT
        | QoS.TIME_OFFSET
        | QoS.WARNING
        | QoS.ERROR
        | QoS.SIGNED
        | QoS.INVOICED
        | QoS.END_OF_SERIES
        | QoS.POWER_FAILURE
        | QoS.INVOICE_CONFIRMED,
    ),
)


def wire(elem: ET.Element) -> ET.Element:
    """Serialize and parse again, as a peer would see it."""
    return ET.fromstring(ET.tostring(elem, encoding="unicode"))  # noqa: S314 (our own output)


def parse(xml: str) -> ET.Element:
    return ET.fromstring(xml)  # noqa: S314 (test vectors)


# -- the table itself -------------------------------------------------------------------------


def test_dialect_table() -> None:
    assert [d.name for d in DIALECTS] == ["xsf", "ieee", "nf"]
    assert by_namespace(XSF_NS) is XSF
    assert by_namespace(IEEE_NS) is IEEE
    assert by_namespace("urn:nf:iot:sd:1.0") is NF
    assert by_namespace("urn:nope") is None
    assert NF.sensordata == replace(IEEE.sensordata, namespace="urn:nf:iot:sd:1.0")
    assert convert.NS == XSF_NS
    # Room for the other functions, not filled yet.
    assert (XSF.control, XSF.concentrator, XSF.events, XSF.provisioning) == (None,) * 4


# -- round trips in every dialect ------------------------------------------------------------

REQUESTS = [
    ReadoutRequest(1, FieldType.MOMENTARY),
    ReadoutRequest(-7, FieldType.ALL),
    ReadoutRequest(
        2_000_000_000,
        PORTABLE | FieldType.IDENTITY,
        nodes=(NodeRef("Device01"), NodeRef("n", "src", "cache")),
        field_names=("Temperature", "Energy"),
        from_time=T1,
        to_time=T2,
        service_tokens=("s1", "s2"),
        device_tokens=("d1",),
        user_tokens=("u1",),
    ),
    ReadoutRequest(0, FieldType.MOMENTARY, request_id="0f3c9a7e5b2d4c1a8e6f7a9b0c1d2e3f"),
]


def _portable(request: ReadoutRequest, dialect: Dialect) -> bool:
    return request.request_id is None or not dialect.sensordata.id_is_int


@pytest.mark.parametrize(
    ("dialect", "request_"),
    # XSF carries integer seqnrs only, so string ids are tried in the other dialects.
    [(d, r) for d in DIALECTS for r in REQUESTS if _portable(r, d)],
    ids=lambda value: value.name if isinstance(value, Dialect) else None,
)
def test_request_round_trip(dialect: Dialect, request_: ReadoutRequest) -> None:
    elem = wire(convert.request_to_xml(request_, dialect=dialect))
    assert elem.tag == f"{{{dialect.sensordata.namespace}}}req"
    assert convert.request_from_xml(elem, dialect=dialect) == request_


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
def test_historical_request_round_trip(dialect: Dialect) -> None:
    request = ReadoutRequest(3, FieldType.HISTORICAL, from_time=T1, to_time=T2)
    elem = wire(convert.request_to_xml(request, dialect=dialect))
    assert convert.request_from_xml(elem, dialect=dialect) == request
    # Single periods: exact in XSF, "any historical" in IEEE.
    day = ReadoutRequest(4, FieldType.HISTORICAL_DAY | FieldType.MOMENTARY, from_time=T1)
    parsed = convert.request_from_xml(
        wire(convert.request_to_xml(day, dialect=dialect)), dialect=dialect
    )
    expected = day.types if dialect is XSF else FieldType.HISTORICAL | FieldType.MOMENTARY
    assert parsed.types == expected
    assert parsed.from_time == T1


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
@pytest.mark.parametrize("done", [False, True])
def test_fields_round_trip_every_kind(dialect: Dialect, done: bool) -> None:
    message = FieldsMessage(
        42,
        (
            NodeFields(NodeRef("Device01"), T1, ALL_KINDS),
            NodeFields(NodeRef("n2", "src", "pt"), T2, ALL_KINDS[:2]),
            NodeFields(NodeRef("empty"), T2, ()),
        ),
        done,
    )
    elem = wire(convert.fields_to_xml(message, dialect=dialect))
    assert convert.fields_from_xml(elem, dialect=dialect) == message
    fields, failures = convert.results_from_xml(elem, dialect=dialect)
    assert fields == message
    assert failures == FailureMessage(42, (), done)


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
def test_historical_field_flags(dialect: Dialect) -> None:
    fld = Field.numeric("Daily", 1.5, "kWh", 1, types=FieldType.HISTORICAL_DAY | FieldType.STATUS)
    elem = wire(convert.field_to_xml(fld, dialect=dialect))
    parsed = convert.field_from_xml(elem, dialect=dialect)
    if dialect is XSF:
        assert parsed == fld
        assert elem.get("historicalDay") == "true"
    else:
        assert (elem.get("h"), elem.get("s")) == ("true", "true")
        assert parsed.types == FieldType.HISTORICAL_OTHER | FieldType.STATUS


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
@pytest.mark.parametrize("done", [False, True])
def test_failure_round_trip(dialect: Dialect, done: bool) -> None:
    message = FailureMessage(
        5,
        (
            NodeFailure(NodeRef("Device01"), T1, "Timeout."),
            NodeFailure(NodeRef("Device01"), T1, "Second error, same node and time."),
            NodeFailure(NodeRef("n", "s", "c"), T2, ""),
        ),
        done,
    )
    elem = wire(convert.failure_to_xml(message, dialect=dialect))
    assert convert.failure_from_xml(elem, dialect=dialect) == message
    fields, failures = convert.results_from_xml(elem, dialect=dialect)
    assert failures == message
    assert fields.items == ()
    assert fields.done is done


@pytest.mark.parametrize(
    ("dialect", "seqnr", "request_id"),
    [
        (d, seqnr, request_id)
        for d in DIALECTS
        for seqnr, request_id in [(1, None), (-3, None), (0, "abc-DEF"), (0, "0012")]
        if request_id is None or not d.sensordata.id_is_int  # XSF: integer seqnrs only
    ],
    ids=lambda value: value.name if isinstance(value, Dialect) else None,
)
def test_id_elements_round_trip(dialect: Dialect, seqnr: int, request_id: str | None) -> None:
    accepted = Accepted(seqnr, True, request_id)
    elem = wire(convert.accepted_to_xml(seqnr, True, dialect=dialect, request_id=request_id))
    assert convert.accepted_from_xml(elem, dialect=dialect) == accepted
    for local in ("started", "done", "cancel"):
        elem = wire(convert.seqnr_to_xml(local, seqnr, dialect=dialect, request_id=request_id))
        assert convert.wire_id_from_xml(elem, local, dialect=dialect) == accepted.wire_id
        if request_id is None:
            assert convert.seqnr_from_xml(elem, local, dialect=dialect) == seqnr


def test_cancelled_exists_only_in_xsf() -> None:
    assert convert.seqnr_to_xml("cancelled", 1).tag == f"{{{XSF_NS}}}cancelled"
    with pytest.raises(ValueError, match="no equivalent"):
        convert.seqnr_to_xml("cancelled", 1, dialect=IEEE)


# -- exact IEEE wire format ----------------------------------------------------------------------


def test_ieee_exact_resp() -> None:
    message = FieldsMessage(
        1,
        (NodeFields(NodeRef("Device01", "MeteringTopology"), T1, (ALL_KINDS[0], ALL_KINDS[2])),),
        done=False,
    )
    text = ET.tostring(convert.fields_to_xml(message, dialect=IEEE), encoding="unicode")
    assert text == (
        f'<ns0:resp xmlns:ns0="{IEEE_NS}" id="1" more="true">'
        '<ns0:nd id="Device01" src="MeteringTopology"><ns0:ts v="2013-03-07T16:24:30Z">'
        '<ns0:q n="Temperature" m="true" ar="true" w="true" v="23.46" u="°C" />'
        '<ns0:i n="Address" i="true" ar="true" v="7" ctr="true" />'
        "</ns0:ts></ns0:nd></ns0:resp>"
    )


def test_ieee_exact_request() -> None:
    request = ReadoutRequest(
        9,
        FieldType.MOMENTARY | FieldType.HISTORICAL_HOUR,
        nodes=(NodeRef("n1", "s", "p"),),
        field_names=("Temperature",),
        from_time=T1,
        user_tokens=("u",),
    )
    text = ET.tostring(convert.request_to_xml(request, dialect=IEEE), encoding="unicode")
    assert text == (
        f'<ns0:req xmlns:ns0="{IEEE_NS}" id="9" m="true" h="true" from="2013-03-07T16:24:30Z" '
        'ut="u"><ns0:nd id="n1" src="s" pt="p" /><ns0:f n="Temperature" /></ns0:req>'
    )


def test_ieee_waher_style_request_with_guid() -> None:
    elem = parse(
        f"<req xmlns='{IEEE_NS}' id='0f3c9a7e5b2d4c1a8e6f7a9b0c1d2e3f' m='true' i='1' "
        "st='tok1 tok2' from='2013-03-07T16:24:30Z' to='2013-03-07T17:00:00.25Z'>"
        "<nd id='Device01' src='S' pt='P'/><f n='Temperature'/><f n='Energy'/></req>"
    )
    assert convert.request_from_xml(elem, dialect=IEEE) == ReadoutRequest(
        0,
        FieldType.MOMENTARY | FieldType.IDENTITY,
        nodes=(NodeRef("Device01", "S", "P"),),
        field_names=("Temperature", "Energy"),
        from_time=T1,
        to_time=T2,
        service_tokens=("tok1", "tok2"),
        request_id="0f3c9a7e5b2d4c1a8e6f7a9b0c1d2e3f",
    )


def test_ieee_resp_mixing_fields_and_errors_and_more_semantics() -> None:
    elem = parse(
        f"<resp xmlns='{IEEE_NS}' id='g1'>"
        "<nd id='A'><ts v='2013-03-07T16:24:30Z'><q n='T' v='1.50' u='K' m='true'/>"
        "<err>Partly broken.</err></ts></nd>"
        "<ts v='2013-03-07T16:24:30Z'><err>No node at all.</err></ts>"
        "</resp>"
    )
    fields, failures = convert.results_from_xml(elem, dialect=IEEE)
    assert fields == FieldsMessage(
        0,
        (NodeFields(NodeRef("A"), T1, (Field("T", FieldKind.NUMERIC, "1.50", unit="K"),)),),
        True,  # no 'more': this was the last one
        "g1",
    )
    assert failures.failures == (
        NodeFailure(NodeRef("A"), T1, "Partly broken."),
        NodeFailure(NodeRef(""), T1, "No node at all."),
    )
    more = parse(f"<resp xmlns='{IEEE_NS}' id='g1' more='true'/>")
    assert convert.results_from_xml(more, dialect=IEEE)[0].done is False
    assert convert.results_from_xml(
        parse(f"<resp xmlns='{IEEE_NS}' id='7' more='false'/>"), dialect=IEEE
    )[0] == FieldsMessage(7, (), True)


TS = "<ts v='2020-01-01T00:00:00Z'>"
IEEE_GARBAGE: list[tuple[str, Callable[..., Any], str, str]] = [
    (
        "missing id",
        convert.request_from_xml,
        f"<req xmlns='{IEEE_NS}'/>",
        "lacks the required 'id'",
    ),
    ("empty id", convert.request_from_xml, f"<req xmlns='{IEEE_NS}' id=''/>", "1..128"),
    ("long id", convert.request_from_xml, f"<req xmlns='{IEEE_NS}' id='{'x' * 129}'/>", "1..128"),
    (
        "xsf names",
        convert.request_from_xml,
        f"<req xmlns='{IEEE_NS}' id='1'><node nodeId='n'/></req>",
        "unexpected element <node>",
    ),
    (
        "nd without id",
        convert.request_from_xml,
        f"<req xmlns='{IEEE_NS}' id='1'><nd/></req>",
        "'id'",
    ),
    ("f without n", convert.request_from_xml, f"<req xmlns='{IEEE_NS}' id='1'><f/></req>", "'n'"),
    (
        "too many f",
        convert.request_from_xml,
        f"<req xmlns='{IEEE_NS}' id='1'>" + "<f n='x'/>" * 257 + "</req>",
        "too many <f>",
    ),
    (
        "bad flag",
        convert.request_from_xml,
        f"<req xmlns='{IEEE_NS}' id='1' m='yes'/>",
        "xs:boolean",
    ),
    (
        "xsf element",
        convert.request_from_xml,
        f"<req xmlns='{XSF_NS}' seqnr='1'/>",
        "expected <req",
    ),
    (
        "unknown value",
        convert.fields_from_xml,
        f"<resp xmlns='{IEEE_NS}' id='1'><nd id='n'>{TS}<numeric n='x' v='1'/></ts></nd></resp>",
        "unknown field element",
    ),
    (
        "bad more",
        convert.fields_from_xml,
        f"<resp xmlns='{IEEE_NS}' id='1' more='perhaps'/>",
        "xs:boolean",
    ),
    (
        "ts without v",
        convert.fields_from_xml,
        f"<resp xmlns='{IEEE_NS}' id='1'><nd id='n'><ts/></nd></resp>",
        "'v'",
    ),
    (
        "q without v",
        convert.fields_from_xml,
        f"<resp xmlns='{IEEE_NS}' id='1'><nd id='n'>{TS}<q n='x'/></ts></nd></resp>",
        "'v'",
    ),
    ("accepted without id", convert.accepted_from_xml, f"<accepted xmlns='{IEEE_NS}'/>", "'id'"),
]


@pytest.mark.parametrize(
    ("name", "parser", "xml", "fragment"), IEEE_GARBAGE, ids=[g[0] for g in IEEE_GARBAGE]
)
def test_ieee_garbage_raises_stanza_error(
    name: str, parser: Callable[..., Any], xml: str, fragment: str
) -> None:
    with pytest.raises(StanzaError, match=fragment):
        parser(parse(xml), dialect=IEEE)


def test_numeric_ieee_id_is_integer_seqnr() -> None:
    assert convert.parse_wire_id(parse(f"<done xmlns='{IEEE_NS}' id='12'/>"), dialect=IEEE) == (
        12,
        None,
    )
    assert convert.parse_wire_id(parse(f"<done xmlns='{IEEE_NS}' id='012'/>"), dialect=IEEE) == (
        0,
        "012",
    )
    assert convert.parse_wire_id(
        parse(f"<done xmlns='{IEEE_NS}' id='9999999999'/>"), dialect=IEEE
    ) == (0, "9999999999")


# -- splitting -------------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", [XSF, IEEE], ids=lambda d: d.name)
def test_split_5000_fields(dialect: Dialect) -> None:
    fields = tuple(Field.numeric(f"Register{i:04d}", i / 10, "V", 1) for i in range(5000))
    message = FieldsMessage(3, (NodeFields(NodeRef("Device01"), T1, fields),), done=True)
    parts = convert.split_fields(message, dialect=dialect)
    assert len(parts) == 50
    assert [p.done for p in parts] == [False] * 49 + [True]
    for part in parts:
        assert part.field_count <= convert.MAX_FIELDS_PER_MESSAGE
        size = len(ET.tostring(convert.fields_to_xml(part, dialect=dialect), encoding="utf-8"))
        assert size <= convert.MAX_MESSAGE_BYTES
    assert tuple(f for p in parts for item in p.items for f in item.fields) == fields
    assert {item.node for p in parts for item in p.items} == {NodeRef("Device01")}


def test_split_by_bytes_and_many_nodes() -> None:
    big = "x" * 5000
    items = (
        *(
            NodeFields(NodeRef(f"N{n}"), T1, tuple(Field.string(f"S{i}", big) for i in range(5)))
            for n in range(4)
        ),
        NodeFields(NodeRef("empty"), T2, ()),
    )
    parts = convert.split_fields(FieldsMessage(1, items, done=False))
    for part in parts:
        size = len(ET.tostring(convert.fields_to_xml(part), encoding="utf-8"))
        assert size <= convert.MAX_MESSAGE_BYTES
        assert not part.done
    assert len(parts) == 4  # 20 fields of ~5 KB: six per message
    merged = [(item.node, f) for p in parts for item in p.items for f in item.fields]
    assert merged == [(item.node, f) for item in items for f in item.fields]
    assert parts[-1].items[-1] == NodeFields(NodeRef("empty"), T2, ())


def test_split_oversized_field_travels_alone_and_small_messages_stay_whole() -> None:
    huge = Field.string("Blob", "y" * 40_000)
    small = Field.boolean("b", True)
    parts = convert.split_fields(
        FieldsMessage(1, (NodeFields(NodeRef("n"), T1, (small, huge, small)),), done=True)
    )
    assert [p.items[0].fields for p in parts] == [(small,), (huge,), (small,)]
    whole = FieldsMessage(1, (NodeFields(NodeRef("n"), T1, (small,)),), done=True)
    assert convert.split_fields(whole) == [whole]
    assert convert.split_fields(FieldsMessage(1, (), True)) == [FieldsMessage(1, (), True)]
    with pytest.raises(ValueError, match="max_fields"):
        convert.split_fields(whole, max_fields=0)


# -- client-side filtering -----------------------------------------------------------------------


def test_readout_filtered() -> None:
    readout = Readout(
        1,
        (
            NodeFields(NodeRef("A", "s"), T1, ALL_KINDS),
            NodeFields(NodeRef("B"), T1, ALL_KINDS[:1]),
        ),
        (NodeFailure(NodeRef("A", "s"), T1, "x"), NodeFailure(NodeRef("B"), T1, "y")),
        queued=True,
    )
    by_name = readout.filtered(field_names=["Temperature", "Address"])
    assert [(i.node.node_id, [f.name for f in i.fields]) for i in by_name.fields] == [
        ("A", ["Temperature", "Address"]),
        ("B", ["Temperature"]),
    ]
    by_type = readout.filtered(types=FieldType.IDENTITY)
    assert [f.name for i in by_type.fields for f in i.fields] == ["Address", "Firmware"]
    by_node = readout.filtered(nodes=[NodeRef("A")])
    assert [i.node for i in by_node.fields] == [NodeRef("A", "s")]
    assert by_node.failures == (NodeFailure(NodeRef("A", "s"), T1, "x"),)
    assert by_node.queued
    assert readout.filtered() == readout
    assert readout.filtered(field_names=["nothing"]).fields == ()


def test_request_wants() -> None:
    request = ReadoutRequest(1, FieldType.STATUS, field_names=("Uptime",))
    assert request.wants(ALL_KINDS[10])
    assert not request.wants(ALL_KINDS[6])  # status but other name
    assert request.wire_id == "1"
    assert ReadoutRequest(0, request_id="g").wire_id == "g"
    with pytest.raises(ValueError, match="seqnr 0"):
        ReadoutRequest(5, request_id="g")
    with pytest.raises(ValueError, match="invalid request id"):
        ReadoutRequest(0, request_id="")


def test_xsf_timestamps_keep_other_zones() -> None:
    cet = timezone(timedelta(hours=1))
    elem = parse(
        f"<req xmlns='{XSF_NS}' seqnr='1' historicalDay='true' historicalMonth='1' "
        "from='2013-03-07T17:24:30+01:00' to='2013-03-07T18:00:00'/>"
    )
    request = convert.request_from_xml(elem, default_tz=cet)
    assert request.types == FieldType.HISTORICAL_DAY | FieldType.HISTORICAL_MONTH
    assert request.from_time == T1
    assert request.to_time == datetime(2013, 3, 7, 17, 0, tzinfo=UTC)
    again = wire(convert.request_to_xml(request))
    assert again.get("historicalDay") == again.get("historicalMonth") == "true"
    assert again.get("from") == "2013-03-07T16:24:30Z"
    assert again.get("to") == "2013-03-07T17:00:00Z"
