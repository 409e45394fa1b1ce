"""Pure conversion between IoT-Events XML (``xml.etree`` elements) and :mod:`.model`.

Only ``<subscribe>`` and ``<unsubscribe>`` live in ``urn:xmpp:iot:events``. Acceptance and the
event data are XEP-0323 elements: use :func:`xep.xep_0323.convert.accepted_to_xml`,
:func:`~xep.xep_0323.convert.fields_to_xml` and friends for them.

``*_from_xml`` raise :class:`~xep.errors.StanzaError` -- and nothing else -- on malformed input.
The wire rules follow ``<req>`` (``xmpp-iot-xeps.md`` §2.2, §2.5): booleans in all four lexical
forms, ``identification`` accepted for ``identity``, ``all``/``historical`` shortcuts, no type
flag means every type, foreign-namespace children ignored, unknown children in our namespace
rejected, the same limits on nodes, fields and tokens as ``<req>``.

Durations are ``xs:duration`` restricted to what has a fixed length: ``PnDTnHnMnS`` with fractional
seconds (truncated to microseconds). Years and months are accepted only when zero; negative
durations are rejected.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from xml.etree.ElementTree import Element, SubElement

from xep.errors import StanzaError
from xep.iot_events.model import FieldTrigger, SubscribeRequest
from xep.xep_0323 import convert as sd
from xep.xep_0323.model import FieldType, NodeRef
from xep.xmlutil import WS, expect, local_name, parse_bool, parse_tokens, qname, set_tokens

__all__ = [
    "NS",
    "format_double",
    "format_duration",
    "parse_double",
    "parse_duration",
    "subscribe_from_xml",
    "subscribe_to_xml",
    "unsubscribe_from_xml",
    "unsubscribe_to_xml",
]

NS = "urn:xmpp:iot:events"


def _camel(name: str) -> str:
    head, *rest = name.lower().split("_")
    return head + "".join(part.capitalize() for part in rest)


#: ``momentary``, ``peak``, ..., ``historicalOther``: the single-bit flags, named like in ``<req>``.
_FIELD_TYPE_ATTRS: tuple[tuple[FieldType, str], ...] = tuple(
    (flag, _camel(flag.name or "")) for flag in FieldType
)
_FIELD_TYPE_INPUT_ONLY: tuple[tuple[FieldType, str], ...] = (
    (FieldType.IDENTITY, "identification"),
    (FieldType.ALL, "all"),
    (FieldType.HISTORICAL, "historical"),
)
_DURATION_ATTRS = (("max_age", "maxAge"), ("min_interval", "minInterval"))
_TRIGGER_ATTRS = (
    ("current_value", "currentValue"),
    ("changed_by", "changedBy"),
    ("changed_up", "changedUp"),
    ("changed_down", "changedDown"),
)


def _q(local: str) -> str:
    return qname(NS, local)


def _seqnr(elem: Element, local: str) -> int:
    if elem.get("seqnr") is None:
        raise StanzaError(f"<{local}> lacks the required 'seqnr' attribute")
    return sd.parse_seqnr(elem)


# -- scalars ------------------------------------------------------------------------------------

_DURATION = re.compile(
    r"P(?=\d|T\d)(?:(?P<years>\d{1,12})Y)?(?:(?P<months>\d{1,12})M)?(?:(?P<days>\d{1,12})D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d{1,12})H)?(?:(?P<minutes>\d{1,12})M)?"
    r"(?:(?P<seconds>\d{1,12})(?:\.(?P<fraction>\d+))?S)?)?",
    re.ASCII,
)


def parse_duration(text: str, what: str = "duration") -> timedelta:
    """Parse a non-negative ``xs:duration`` of fixed length (``PnDTnHnMnS``, fractional seconds)."""
    value = text.strip(WS)
    match = _DURATION.fullmatch(value)
    if match is None:
        raise StanzaError(f"{what}: {text!r} is not a non-negative xs:duration")
    if int(match["years"] or 0) or int(match["months"] or 0):
        raise StanzaError(f"{what}: {text!r} uses years or months, which have no fixed length")
    try:
        return timedelta(
            days=int(match["days"] or 0),
            hours=int(match["hours"] or 0),
            minutes=int(match["minutes"] or 0),
            seconds=int(match["seconds"] or 0),
            microseconds=int((match["fraction"] or "").ljust(6, "0")[:6]),
        )
    except OverflowError as err:
        raise StanzaError(f"{what}: {text!r} is too long") from err


def format_duration(value: timedelta) -> str:
    """``xs:duration`` for a non-negative timedelta: ``P1DT2H3M4.5S``, ``PT0S`` for zero."""
    if value < timedelta(0):
        raise ValueError(f"refusing to emit a negative duration: {value}")
    hours, rest = divmod(value.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    date = f"{value.days}D" if value.days else ""
    time = ""
    if hours:
        time += f"{hours}H"
    if minutes:
        time += f"{minutes}M"
    if seconds or value.microseconds or not (date or time):
        fraction = f".{value.microseconds:06d}".rstrip("0") if value.microseconds else ""
        time += f"{seconds}{fraction}S"
    return "P" + date + ("T" + time if time else "")


_DOUBLE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,4})?", re.ASCII)


def parse_double(text: str, what: str = "number") -> float:
    """A finite ``xs:double`` (``INF``/``NaN`` are rejected: thresholds must be finite)."""
    value = text.strip(WS)
    if len(value) > 64 or _DOUBLE.fullmatch(value) is None:
        raise StanzaError(f"{what}: {text!r} is not a finite xs:double")
    number = float(value)
    if not math.isfinite(number):
        raise StanzaError(f"{what}: {text!r} is out of range")
    return number


def format_double(value: float) -> str:
    """Shortest round-tripping ``xs:double`` text of a finite float."""
    if not math.isfinite(value):
        raise ValueError(f"refusing to emit a non-finite number: {value!r}")
    return repr(float(value))


# -- subscribe ------------------------------------------------------------------------------------


def _set_node_ref(elem: Element, ref: NodeRef) -> None:
    elem.set("nodeId", ref.node_id)
    if ref.source_id is not None:
        elem.set("sourceId", ref.source_id)
    if ref.cache_type is not None:
        elem.set("cacheType", ref.cache_type)


def subscribe_to_xml(request: SubscribeRequest) -> Element:
    """``<subscribe xmlns='urn:xmpp:iot:events'>`` for a subscription request."""
    elem = Element(_q("subscribe"), {"seqnr": str(request.seqnr)})
    if request.types == FieldType.ALL:
        elem.set("all", "true")
    else:
        for flag, attr in _FIELD_TYPE_ATTRS:
            if flag & request.types:
                elem.set(attr, "true")
    set_tokens(elem, request)
    for field_name, attr in (*_DURATION_ATTRS, ("max_interval", "maxInterval")):
        duration: timedelta | None = getattr(request, field_name)
        if duration is not None:
            elem.set(attr, format_duration(duration))
    if request.initial_readout:
        elem.set("req", "true")
    for ref in request.nodes:
        _set_node_ref(SubElement(elem, _q("node")), ref)
    for trigger in request.fields:
        child = SubElement(elem, _q("field"), {"name": trigger.name})
        for field_name, attr in _TRIGGER_ATTRS:
            number: float | None = getattr(trigger, field_name)
            if number is not None:
                child.set(attr, format_double(number))
    return elem


def _opt_duration(elem: Element, attr: str) -> timedelta | None:
    text = elem.get(attr)
    return None if text is None else parse_duration(text, attr)


def _trigger_from_xml(elem: Element) -> FieldTrigger:
    name = elem.get("name")
    if name is None:
        raise StanzaError("<field> in <subscribe> lacks the required 'name' attribute")
    numbers: dict[str, float] = {}
    for field_name, attr in _TRIGGER_ATTRS:
        text = elem.get(attr)
        if text is not None:
            numbers[field_name] = parse_double(text, f"field {name!r} {attr}")
    try:
        return FieldTrigger(name, **numbers)
    except ValueError as err:
        raise StanzaError(str(err)) from err


def subscribe_from_xml(elem: Element) -> SubscribeRequest:
    """Parse ``<subscribe>``. Without any type flag the subscription covers ``FieldType.ALL``."""
    expect(elem, NS, "subscribe")
    seqnr = _seqnr(elem, "subscribe")
    types = FieldType(0)
    for flag, attr in _FIELD_TYPE_ATTRS + _FIELD_TYPE_INPUT_ONLY:
        text = elem.get(attr)
        if text is not None and parse_bool(text, f"attribute {attr!r}"):
            types |= flag
    req = elem.get("req")
    initial = False if req is None else parse_bool(req, "attribute 'req'")
    nodes: list[NodeRef] = []
    triggers: list[FieldTrigger] = []
    for child in elem:
        local = local_name(child, NS)
        if local is None:
            continue  # foreign extension element
        if local == "node":
            if len(nodes) >= sd.MAX_NODES:
                raise StanzaError(f"too many <node> elements in <subscribe> (limit {sd.MAX_NODES})")
            nodes.append(sd.node_ref_from_xml(child))
        elif local == "field":
            if len(triggers) >= sd.MAX_FIELD_NAMES:
                raise StanzaError(
                    f"too many <field> elements in <subscribe> (limit {sd.MAX_FIELD_NAMES})"
                )
            triggers.append(_trigger_from_xml(child))
        else:
            raise StanzaError(f"unexpected element <{local}> in <subscribe>")
    try:
        return SubscribeRequest(
            seqnr=seqnr,
            types=types or FieldType.ALL,
            nodes=tuple(nodes),
            fields=tuple(triggers),
            max_age=_opt_duration(elem, "maxAge"),
            min_interval=_opt_duration(elem, "minInterval"),
            max_interval=_opt_duration(elem, "maxInterval"),
            initial_readout=initial,
            service_tokens=parse_tokens(elem, "serviceToken", sd.MAX_TOKENS),
            device_tokens=parse_tokens(elem, "deviceToken", sd.MAX_TOKENS),
            user_tokens=parse_tokens(elem, "userToken", sd.MAX_TOKENS),
        )
    except ValueError as err:  # model invariants (StanzaError is a ValueError too)
        raise StanzaError(str(err)) from err


# -- unsubscribe ----------------------------------------------------------------------------------


def unsubscribe_to_xml(seqnr: int) -> Element:
    """``<unsubscribe xmlns='urn:xmpp:iot:events' seqnr='N'/>``."""
    return Element(_q("unsubscribe"), {"seqnr": str(seqnr)})


def unsubscribe_from_xml(elem: Element) -> int:
    """``seqnr`` of an ``<unsubscribe>``."""
    expect(elem, NS, "unsubscribe")
    return _seqnr(elem, "unsubscribe")
