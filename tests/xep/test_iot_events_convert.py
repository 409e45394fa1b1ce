"""IoT-Events conversions: exact XML, duration/number and garbage tables, hypothesis round-trips."""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xep.errors import StanzaError
from xep.iot_events import convert
from xep.iot_events.model import FieldTrigger, SubscribeRequest
from xep.xep_0323.model import FieldType, NodeRef, ReadoutRequest, is_xml_text

NS = "urn:xmpp:iot:events"


def payload(xml: str) -> ET.Element:
    return ET.fromstring(xml)  # noqa: S314 (test vectors)


def wire(elem: ET.Element) -> ET.Element:
    """Serialize and parse again, as a peer would see it."""
    return ET.fromstring(ET.tostring(elem, encoding="unicode"))  # noqa: S314 (our own output)


# -- the shape of xmpp-iot-xeps.md §2.5 -----------------------------------------------------------


def test_subscribe_with_everything() -> None:
    xml = (
        f"<subscribe xmlns='{NS}' seqnr='7' momentary='true' status='1' maxAge='PT1H' "
        "minInterval='PT5S' maxInterval='PT1M' req='true' serviceToken='s1 s2'>"
        "<node nodeId='Device01' sourceId='MeteringTopology'/>"
        "<field name='Temperature' currentValue='23.4' changedBy='0.5'/>"
        "<field name='Humidity' changedUp='1' changedDown='2.5'/>"
        "<field name='Door'/>"
        "</subscribe>"
    )
    assert convert.subscribe_from_xml(payload(xml)) == SubscribeRequest(
        seqnr=7,
        types=FieldType.MOMENTARY | FieldType.STATUS,
        nodes=(NodeRef("Device01", "MeteringTopology"),),
        fields=(
            FieldTrigger("Temperature", current_value=23.4, changed_by=0.5),
            FieldTrigger("Humidity", changed_up=1.0, changed_down=2.5),
            FieldTrigger("Door"),
        ),
        max_age=timedelta(hours=1),
        min_interval=timedelta(seconds=5),
        max_interval=timedelta(minutes=1),
        initial_readout=True,
        service_tokens=("s1", "s2"),
    )


def test_subscribe_to_xml_exact() -> None:
    request = SubscribeRequest(
        seqnr=3,
        types=FieldType.MOMENTARY | FieldType.IDENTITY,
        nodes=(NodeRef("N1", cache_type="c"),),
        fields=(FieldTrigger("T", current_value=-1.5, changed_up=0.25), FieldTrigger("U")),
        min_interval=timedelta(seconds=1.5),
        max_interval=timedelta(days=1, seconds=1),
        initial_readout=True,
        user_tokens=("u",),
    )
    expected = (
        f'<ns0:subscribe xmlns:ns0="{NS}" seqnr="3" momentary="true" identity="true" '
        'userToken="u" minInterval="PT1.5S" maxInterval="P1DT1S" req="true">'
        '<ns0:node nodeId="N1" cacheType="c" />'
        '<ns0:field name="T" currentValue="-1.5" changedUp="0.25" />'
        '<ns0:field name="U" /></ns0:subscribe>'
    )
    assert ET.tostring(convert.subscribe_to_xml(request), encoding="unicode") == expected
    assert convert.subscribe_to_xml(SubscribeRequest(1)).attrib == {"seqnr": "1", "all": "true"}


def test_unsubscribe_round_trip() -> None:
    elem = convert.unsubscribe_to_xml(-12)
    assert ET.tostring(elem, encoding="unicode") == (
        f'<ns0:unsubscribe xmlns:ns0="{NS}" seqnr="-12" />'
    )
    assert convert.unsubscribe_from_xml(wire(elem)) == -12


LENIENT = [
    ("no flags means all", f"<subscribe xmlns='{NS}' seqnr='1'/>", "types", FieldType.ALL),
    (
        "identification alias",
        f"<subscribe xmlns='{NS}' seqnr='1' identification='true'/>",
        "types",
        FieldType.IDENTITY,
    ),
    (
        "historical shortcut",
        f"<subscribe xmlns='{NS}' seqnr='1' historical='1'/>",
        "types",
        FieldType.HISTORICAL,
    ),
    ("req 0", f"<subscribe xmlns='{NS}' seqnr='1' req='0'/>", "initial_readout", False),
    ("req absent", f"<subscribe xmlns='{NS}' seqnr='1'/>", "initial_readout", False),
    (
        "padded duration",
        f"<subscribe xmlns='{NS}' seqnr='1' minInterval=' PT0S '/>",
        "min_interval",
        timedelta(0),
    ),
    (
        "zero years and months",
        f"<subscribe xmlns='{NS}' seqnr='1' maxAge='P0Y0M2D'/>",
        "max_age",
        timedelta(days=2),
    ),
    (
        "foreign children ignored",
        f"<subscribe xmlns='{NS}' seqnr='1'><x xmlns='urn:other'/><node nodeId='n'/></subscribe>",
        "nodes",
        (NodeRef("n"),),
    ),
    (
        "exponent threshold",
        f"<subscribe xmlns='{NS}' seqnr='1'><field name='f' changedBy='1E-3'/></subscribe>",
        "fields",
        (FieldTrigger("f", changed_by=0.001),),
    ),
]


@pytest.mark.parametrize(("name", "xml", "attr", "value"), LENIENT, ids=[c[0] for c in LENIENT])
def test_subscribe_lenient(name: str, xml: str, attr: str, value: object) -> None:
    assert getattr(convert.subscribe_from_xml(payload(xml)), attr) == value


# -- durations and numbers -------------------------------------------------------------------------

DURATIONS = [
    ("PT0S", timedelta(0)),
    ("PT5S", timedelta(seconds=5)),
    ("PT0.5S", timedelta(milliseconds=500)),
    ("PT0.000001S", timedelta(microseconds=1)),
    ("PT1M30S", timedelta(seconds=90)),
    ("PT2H", timedelta(hours=2)),
    ("P1D", timedelta(days=1)),
    ("P1DT2H3M4.25S", timedelta(days=1, hours=2, minutes=3, seconds=4.25)),
    ("P10000D", timedelta(days=10000)),
]


@pytest.mark.parametrize(("text", "value"), DURATIONS)
def test_duration_table(text: str, value: timedelta) -> None:
    assert convert.parse_duration(text) == value
    assert convert.format_duration(value) == text


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("PT90S", timedelta(seconds=90)),
        ("PT1.1234569S", timedelta(seconds=1, microseconds=123456)),  # truncated
        ("PT0H0M0S", timedelta(0)),
        ("P0DT1S", timedelta(seconds=1)),
        ("PT36H", timedelta(days=1, hours=12)),
    ],
)
def test_duration_non_canonical_input(text: str, value: timedelta) -> None:
    assert convert.parse_duration(text) == value


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "not a non-negative xs:duration"),
        ("P", "not a non-negative xs:duration"),
        ("PT", "not a non-negative xs:duration"),
        ("P1DT", "not a non-negative xs:duration"),
        ("-PT5S", "not a non-negative xs:duration"),
        ("PT5", "not a non-negative xs:duration"),
        ("5S", "not a non-negative xs:duration"),
        ("PT.5S", "not a non-negative xs:duration"),
        ("PT5.S", "not a non-negative xs:duration"),
        ("PT1S1M", "not a non-negative xs:duration"),
        ("pt5s", "not a non-negative xs:duration"),
        ("PT5s", "not a non-negative xs:duration"),
        ("PT\u0665S", "not a non-negative xs:duration"),  # Arabic-Indic digit
        ("P1Y", "years or months"),
        ("P1M", "years or months"),
        ("P999999999999D", "too long"),
        ("PT" + "9" * 13 + "S", "not a non-negative xs:duration"),
    ],
)
def test_duration_garbage(text: str, fragment: str) -> None:
    with pytest.raises(StanzaError, match=fragment):
        convert.parse_duration(text)


def test_format_duration_refuses_negative() -> None:
    with pytest.raises(ValueError, match="negative"):
        convert.format_duration(timedelta(seconds=-1))


@pytest.mark.parametrize("text", ["INF", "NaN", "1e999", "0x10", "1_000", "", "1,5", " ", "++1"])
def test_double_garbage(text: str) -> None:
    with pytest.raises(StanzaError):
        convert.parse_double(text)


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=10**6)))
def test_duration_round_trip(value: timedelta) -> None:
    assert convert.parse_duration(convert.format_duration(value)) == value


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_double_round_trip(value: float) -> None:
    assert convert.parse_double(convert.format_double(value)) == value


# -- model -----------------------------------------------------------------------------------------


def test_model_validation() -> None:
    with pytest.raises(ValueError, match="positive"):
        FieldTrigger("x", changed_by=0)
    with pytest.raises(ValueError, match="positive"):
        FieldTrigger("x", changed_up=-1)
    with pytest.raises(ValueError, match="finite"):
        FieldTrigger("x", current_value=float("nan"))
    with pytest.raises(ValueError, match="XML cannot carry"):
        FieldTrigger("a\x00")
    with pytest.raises(ValueError, match="unique"):
        SubscribeRequest(1, fields=(FieldTrigger("a"), FieldTrigger("a", changed_by=1)))
    with pytest.raises(ValueError, match="max_interval must be positive"):
        SubscribeRequest(1, max_interval=timedelta(0))
    with pytest.raises(ValueError, match="longer than max_interval"):
        SubscribeRequest(1, min_interval=timedelta(2), max_interval=timedelta(1))
    with pytest.raises(ValueError, match="xs:int"):
        SubscribeRequest(2**31)
    with pytest.raises(ValueError, match="token"):
        SubscribeRequest(1, user_tokens=("a b",))


def test_trigger_thresholds() -> None:
    assert (
        FieldTrigger("x", changed_by=2, changed_up=1).up,
        FieldTrigger("x", 0, 2, 1, 3).down,
    ) == (
        2,
        2,
    )
    only_up = FieldTrigger("x", changed_up=1)
    assert (only_up.up, only_up.down, only_up.has_threshold) == (1, None, True)
    assert not FieldTrigger("x", current_value=3).has_threshold


def test_equivalent_readout_request() -> None:
    now = datetime(2024, 1, 1, 12, tzinfo=UTC)
    request = SubscribeRequest(
        9,
        FieldType.MOMENTARY,
        nodes=(NodeRef("n"),),
        fields=(FieldTrigger("T", changed_by=1),),
        max_age=timedelta(hours=1),
        device_tokens=("d",),
    )
    assert request.to_readout_request(now) == ReadoutRequest(
        9,
        FieldType.MOMENTARY,
        nodes=(NodeRef("n"),),
        field_names=("T",),
        from_time=datetime(2024, 1, 1, 11, tzinfo=UTC),
        device_tokens=("d",),
    )
    assert request.to_readout_request().from_time is None


# -- garbage ---------------------------------------------------------------------------------------

GARBAGE = [
    ("wrong element", f"<unsubscribe xmlns='{NS}' seqnr='1'/>", "expected <subscribe"),
    (
        "sensordata namespace",
        "<subscribe xmlns='urn:xmpp:iot:sensordata' seqnr='1'/>",
        "expected <subscribe",
    ),
    ("missing seqnr", f"<subscribe xmlns='{NS}'/>", "lacks the required 'seqnr'"),
    ("non-numeric seqnr", f"<subscribe xmlns='{NS}' seqnr='x'/>", "not an integer"),
    ("seqnr overflow", f"<subscribe xmlns='{NS}' seqnr='2147483648'/>", "out of range"),
    ("bad flag", f"<subscribe xmlns='{NS}' seqnr='1' momentary='yes'/>", "xs:boolean"),
    ("bad req", f"<subscribe xmlns='{NS}' seqnr='1' req='maybe'/>", "xs:boolean"),
    ("bad duration", f"<subscribe xmlns='{NS}' seqnr='1' minInterval='5'/>", "minInterval"),
    ("negative duration", f"<subscribe xmlns='{NS}' seqnr='1' maxAge='-PT1S'/>", "maxAge"),
    ("zero heartbeat", f"<subscribe xmlns='{NS}' seqnr='1' maxInterval='PT0S'/>", "positive"),
    (
        "min above max",
        f"<subscribe xmlns='{NS}' seqnr='1' minInterval='PT2M' maxInterval='PT1M'/>",
        "longer than max_interval",
    ),
    ("node without id", f"<subscribe xmlns='{NS}' seqnr='1'><node/></subscribe>", "nodeId"),
    ("field without name", f"<subscribe xmlns='{NS}' seqnr='1'><field/></subscribe>", "'name'"),
    (
        "negative threshold",
        f"<subscribe xmlns='{NS}' seqnr='1'><field name='f' changedBy='-1'/></subscribe>",
        "positive",
    ),
    (
        "zero threshold",
        f"<subscribe xmlns='{NS}' seqnr='1'><field name='f' changedDown='0'/></subscribe>",
        "positive",
    ),
    (
        "non-numeric threshold",
        f"<subscribe xmlns='{NS}' seqnr='1'><field name='f' changedUp='lots'/></subscribe>",
        "xs:double",
    ),
    (
        "infinite current value",
        f"<subscribe xmlns='{NS}' seqnr='1'><field name='f' currentValue='INF'/></subscribe>",
        "xs:double",
    ),
    (
        "duplicate field",
        f"<subscribe xmlns='{NS}' seqnr='1'><field name='f'/><field name='f'/></subscribe>",
        "unique",
    ),
    (
        "unknown child",
        f"<subscribe xmlns='{NS}' seqnr='1'><req/></subscribe>",
        "unexpected element <req>",
    ),
    (
        "too many nodes",
        f"<subscribe xmlns='{NS}' seqnr='1'>" + "<node nodeId='n'/>" * 257 + "</subscribe>",
        "too many <node>",
    ),
    (
        "too many fields",
        f"<subscribe xmlns='{NS}' seqnr='1'>"
        + "".join(f"<field name='f{i}'/>" for i in range(257))
        + "</subscribe>",
        "too many <field>",
    ),
    (
        "too many tokens",
        f"<subscribe xmlns='{NS}' seqnr='1' userToken='{' '.join(['t'] * 17)}'/>",
        "too many userToken",
    ),
]


@pytest.mark.parametrize(("name", "xml", "fragment"), GARBAGE, ids=[g[0] for g in GARBAGE])
def test_garbage_raises_stanza_error(name: str, xml: str, fragment: str) -> None:
    with pytest.raises(StanzaError, match=fragment):
        convert.subscribe_from_xml(payload(xml))


@pytest.mark.parametrize(
    "xml",
    [
        f"<unsubscribe xmlns='{NS}'/>",
        f"<unsubscribe xmlns='{NS}' seqnr='one'/>",
        f"<subscribe xmlns='{NS}' seqnr='1'/>",
    ],
)
def test_unsubscribe_garbage(xml: str) -> None:
    with pytest.raises(StanzaError):
        convert.unsubscribe_from_xml(payload(xml))


# -- hypothesis ------------------------------------------------------------------------------------

xml_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\r"),
    max_size=12,
).filter(is_xml_text)
node_refs = st.builds(NodeRef, xml_text, st.none() | xml_text, st.none() | xml_text)
positive = st.floats(min_value=1e-300, max_value=1e300, allow_nan=False, allow_infinity=False)
finite = st.floats(allow_nan=False, allow_infinity=False)
triggers = st.builds(
    FieldTrigger,
    xml_text,
    st.none() | finite,
    st.none() | positive,
    st.none() | positive,
    st.none() | positive,
)
durations = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3650))
tokens = st.lists(st.text(alphabet="abcXYZ019-_=", min_size=1, max_size=8), max_size=3).map(tuple)


@st.composite
def subscribe_requests(draw: st.DrawFn) -> SubscribeRequest:
    fields = draw(st.lists(triggers, max_size=4, unique_by=lambda t: t.name))
    low = draw(st.none() | durations)
    high = draw(st.none() | durations.filter(lambda d: d > timedelta(0)))
    if low is not None and high is not None and low > high:
        low, high = high, low
    return SubscribeRequest(
        seqnr=draw(st.integers(-(2**31), 2**31 - 1)),
        types=draw(st.builds(FieldType, st.integers(1, FieldType.ALL.value))),
        nodes=tuple(draw(st.lists(node_refs, max_size=3))),
        fields=tuple(fields),
        max_age=draw(st.none() | durations),
        min_interval=low,
        max_interval=high,
        initial_readout=draw(st.booleans()),
        service_tokens=draw(tokens),
        device_tokens=draw(tokens),
        user_tokens=draw(tokens),
    )


@given(subscribe_requests())
def test_subscribe_round_trip(request: SubscribeRequest) -> None:
    assert convert.subscribe_from_xml(wire(convert.subscribe_to_xml(request))) == request


_tags = st.sampled_from(["subscribe", "unsubscribe", "node", "field", "req", "bogus"])
_attr_names = st.sampled_from(
    [
        "seqnr",
        "nodeId",
        "name",
        "momentary",
        "all",
        "req",
        "maxAge",
        "minInterval",
        "maxInterval",
        "currentValue",
        "changedBy",
        "changedUp",
        "changedDown",
        "userToken",
    ]
)
_attr_values = st.one_of(
    xml_text,
    st.sampled_from(
        ["1", "true", "0", "-1", "2147483648", "PT5S", "P1Y", "PT0S", "-PT1S", "NaN", "1e400", " "]
    ),
)


@st.composite
def garbage_trees(draw: st.DrawFn, depth: int = 0) -> ET.Element:
    elem = ET.Element(
        f"{{{NS}}}{draw(_tags)}", draw(st.dictionaries(_attr_names, _attr_values, max_size=6))
    )
    if depth < 2:
        elem.extend(draw(st.lists(garbage_trees(depth + 1), max_size=4)))
    return elem


@given(garbage_trees(), st.sampled_from(["subscribe", "unsubscribe"]))
def test_garbage_trees_raise_only_stanza_error(tree: ET.Element, root: str) -> None:
    tree.tag = f"{{{NS}}}{root}"
    parser = convert.subscribe_from_xml if root == "subscribe" else convert.unsubscribe_from_xml
    with contextlib.suppress(StanzaError):  # anything else fails the test
        parser(tree)


@given(st.text(max_size=30))
def test_duration_text_raises_only_stanza_error(text: str) -> None:
    with contextlib.suppress(StanzaError):
        assert convert.parse_duration(text) >= timedelta(0)
