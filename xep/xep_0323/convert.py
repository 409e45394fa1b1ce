"""Pure conversion between XEP-0323 XML (``xml.etree`` elements) and :mod:`.model`.

``*_to_xml`` functions build elements in the ``urn:xmpp:iot:sensordata`` namespace from model
objects (they trust the model, which validates itself). ``*_from_xml`` functions parse received
elements and raise :class:`~xep.errors.StanzaError` -- and nothing else -- on malformed input.

Wire rules applied here (``xmpp-iot-xeps.md`` §2):

* timestamps are emitted in UTC with ``Z``; a received timestamp without a zone is read in
  ``default_tz`` (default: the local zone, as the spec says readers assume their own zone);
* booleans are parsed from ``true``/``false``/``1``/``0`` and emitted as ``true``;
* the ``identity`` flag is emitted, ``identification`` is accepted as its alias;
* ``numeric`` always carries ``unit`` (empty if none); a missing ``unit`` is accepted;
* ``timeSpan`` (pre-0.3 name of ``duration``) and the legacy ``<rejected>`` are accepted;
* unknown elements in our namespace are errors; elements of other namespaces are ignored
  (XMPP extensibility); unknown attributes (``module``, ``stringIds``...) are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, tzinfo
from datetime import timezone as dtimezone
from xml.etree.ElementTree import Element, SubElement

from xep.errors import StanzaError
from xep.xep_0323.model import (
    INT32_MAX,
    INT32_MIN,
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
    ReadoutRequest,
)

__all__ = [
    "MAX_ERRORS",
    "MAX_FIELDS",
    "MAX_FIELD_NAMES",
    "MAX_NODES",
    "MAX_TOKENS",
    "NS",
    "accepted_from_xml",
    "accepted_to_xml",
    "failure_from_xml",
    "failure_to_xml",
    "field_from_xml",
    "field_to_xml",
    "fields_from_xml",
    "fields_to_xml",
    "format_datetime",
    "node_ref_from_xml",
    "parse_bool",
    "parse_datetime",
    "parse_seqnr",
    "rejected_from_xml",
    "request_from_xml",
    "request_to_xml",
    "seqnr_from_xml",
    "seqnr_to_xml",
]

NS = "urn:xmpp:iot:sensordata"

#: Most ``<node>`` children accepted in one ``<req>`` / ``<fields>``.
MAX_NODES = 256
#: Most ``<field name>`` hints accepted in one ``<req>``.
MAX_FIELD_NAMES = 256
#: Most field value elements accepted in one ``<fields>`` (all nodes and timestamps together).
MAX_FIELDS = 4096
#: Most ``<error>`` children accepted in one ``<failure>``.
MAX_ERRORS = 256
#: Most tokens of one kind (service/device/user) accepted in one ``<req>``.
MAX_TOKENS = 16

_FIELD_TYPE_ATTRS: tuple[tuple[FieldType, str], ...] = (
    (FieldType.MOMENTARY, "momentary"),
    (FieldType.PEAK, "peak"),
    (FieldType.STATUS, "status"),
    (FieldType.COMPUTED, "computed"),
    (FieldType.IDENTITY, "identity"),
    (FieldType.HISTORICAL_SECOND, "historicalSecond"),
    (FieldType.HISTORICAL_MINUTE, "historicalMinute"),
    (FieldType.HISTORICAL_HOUR, "historicalHour"),
    (FieldType.HISTORICAL_DAY, "historicalDay"),
    (FieldType.HISTORICAL_WEEK, "historicalWeek"),
    (FieldType.HISTORICAL_MONTH, "historicalMonth"),
    (FieldType.HISTORICAL_QUARTER, "historicalQuarter"),
    (FieldType.HISTORICAL_YEAR, "historicalYear"),
    (FieldType.HISTORICAL_OTHER, "historicalOther"),
)
# Accepted on input only.
_FIELD_TYPE_ALIASES: tuple[tuple[FieldType, str], ...] = ((FieldType.IDENTITY, "identification"),)
_REQUEST_SHORTCUTS: tuple[tuple[FieldType, str], ...] = (
    (FieldType.ALL, "all"),
    (FieldType.HISTORICAL, "historical"),
)
_QOS_ATTRS: tuple[tuple[QoS, str], ...] = (
    (QoS.MISSING, "missing"),
    (QoS.IN_PROGRESS, "inProgress"),
    (QoS.AUTOMATIC_ESTIMATE, "automaticEstimate"),
    (QoS.MANUAL_ESTIMATE, "manualEstimate"),
    (QoS.MANUAL_READOUT, "manualReadout"),
    (QoS.AUTOMATIC_READOUT, "automaticReadout"),
    (QoS.TIME_OFFSET, "timeOffset"),
    (QoS.WARNING, "warning"),
    (QoS.ERROR, "error"),
    (QoS.SIGNED, "signed"),
    (QoS.INVOICED, "invoiced"),
    (QoS.END_OF_SERIES, "endOfSeries"),
    (QoS.POWER_FAILURE, "powerFailure"),
    (QoS.INVOICE_CONFIRMED, "invoiceConfirmed"),
)
_KIND_BY_TAG: dict[str, FieldKind] = {kind.value: kind for kind in FieldKind}
_KIND_BY_TAG["timeSpan"] = FieldKind.DURATION  # pre-0.3 name
_TOKEN_ATTRS = ("serviceToken", "deviceToken", "userToken")
_WS = " \t\r\n"


def _q(local: str) -> str:
    return f"{{{NS}}}{local}"


def _local(elem: Element) -> str | None:
    """Local name of ``elem`` if it is in our namespace, else None."""
    tag = elem.tag
    prefix = "{" + NS + "}"
    if isinstance(tag, str) and tag.startswith(prefix):
        return tag[len(prefix) :]
    return None


def _expect(elem: Element, *locals_: str) -> str:
    local = _local(elem)
    if local is None or local not in locals_:
        raise StanzaError(f"expected <{' or '.join(locals_)} xmlns='{NS}'>, got {elem.tag!r}")
    return local


def _ours(elem: Element) -> list[Element]:
    """Children in our namespace (foreign extension elements are skipped)."""
    return [child for child in elem if _local(child) is not None]


# -- scalars ------------------------------------------------------------------------------------


def parse_bool(text: str, what: str = "boolean") -> bool:
    """xs:boolean: ``true``/``false``/``1``/``0`` (surrounding whitespace allowed)."""
    value = text.strip(_WS)
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise StanzaError(f"{what}: {text!r} is not an xs:boolean")


def _bool_attr(elem: Element, name: str, default: bool = False) -> bool:
    text = elem.get(name)
    return default if text is None else parse_bool(text, f"attribute {name!r}")


def _parse_int(text: str, what: str, low: int = INT32_MIN, high: int = INT32_MAX) -> int:
    value = text.strip(_WS)
    if re.fullmatch(r"[+-]?\d{1,20}", value, re.ASCII) is None:
        raise StanzaError(f"{what}: {text!r} is not an integer")
    number = int(value)
    if not low <= number <= high:
        raise StanzaError(f"{what}: {number} is out of range")
    return number


def parse_seqnr(elem: Element) -> int:
    """The required xs:int ``seqnr`` attribute."""
    text = elem.get("seqnr")
    if text is None:
        raise StanzaError(f"<{_local(elem) or elem.tag}> lacks the required 'seqnr' attribute")
    return _parse_int(text, "seqnr")


_DATETIME = re.compile(
    r"(?P<year>-?\d{4,})-(?P<month>\d\d)-(?P<day>\d\d)"
    r"T(?P<hour>\d\d):(?P<minute>\d\d):(?P<second>\d\d)(?:\.(?P<fraction>\d+))?"
    r"(?P<tz>Z|[+-]\d\d:\d\d)?",
    re.ASCII,
)


def _zone(text: str) -> tzinfo:
    if text == "Z":
        return UTC
    hours, minutes = int(text[1:3]), int(text[4:6])
    if hours > 14 or minutes > 59 or (hours == 14 and minutes):
        raise ValueError(f"bad zone offset {text}")
    offset = timedelta(hours=hours, minutes=minutes)
    return dtimezone(-offset if text[0] == "-" else offset)


def parse_datetime(text: str, *, default_tz: tzinfo | None = None) -> datetime:
    """Parse an xs:dateTime into an aware datetime.

    A value without zone is read in ``default_tz`` (None: the local zone). ``24:00:00`` is the
    next midnight; fractions beyond microseconds are truncated.
    """
    match = _DATETIME.fullmatch(text.strip(_WS))
    if match is None:
        raise StanzaError(f"{text!r} is not an xs:dateTime")
    try:
        fraction = (match["fraction"] or "").ljust(6, "0")[:6]
        hour, minute, second = int(match["hour"]), int(match["minute"]), int(match["second"])
        next_day = hour == 24 and minute == 0 and second == 0 and not int(fraction)
        value = datetime(
            int(match["year"]),
            int(match["month"]),
            int(match["day"]),
            0 if next_day else hour,
            minute,
            second,
            int(fraction),
        )
        if next_day:
            value += timedelta(days=1)
        if match["tz"]:
            return value.replace(tzinfo=_zone(match["tz"]))
        if default_tz is not None:
            return value.replace(tzinfo=default_tz)
        return value.astimezone()  # naive = local time
    except (ValueError, OverflowError, OSError) as err:
        raise StanzaError(f"{text!r} is not a valid xs:dateTime: {err}") from err


def format_datetime(value: datetime) -> str:
    """UTC xs:dateTime with ``Z``; milli- or microseconds only when non-zero."""
    if value.utcoffset() is None:
        raise ValueError(f"refusing to emit a naive datetime: {value.isoformat()}")
    utc = value.astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.year < 1000:  # strftime does not pad years on every platform
        text = f"{utc.year:04d}{text[text.index('-') :]}"
    if utc.microsecond:
        micro = f"{utc.microsecond:06d}"
        text += "." + (micro[:3] if micro.endswith("000") else micro)
    return text + "Z"


def _opt_datetime(elem: Element, name: str, default_tz: tzinfo | None) -> datetime | None:
    text = elem.get(name)
    return None if text is None else parse_datetime(text, default_tz=default_tz)


def _types_from_attrs(elem: Element, table: Iterable[tuple[FieldType, str]]) -> FieldType:
    types = FieldType(0)
    for flag, attr in table:
        if _bool_attr(elem, attr):
            types |= flag
    return types


def _set_types(elem: Element, types: FieldType) -> None:
    for flag, attr in _FIELD_TYPE_ATTRS:
        if flag in types:
            elem.set(attr, "true")


def _set_qos(elem: Element, qos: QoS) -> None:
    for flag, attr in _QOS_ATTRS:
        if flag in qos:
            elem.set(attr, "true")


# -- node references -------------------------------------------------------------------------


def _node_ref_attrs(elem: Element, ref: NodeRef) -> None:
    elem.set("nodeId", ref.node_id)
    if ref.source_id is not None:
        elem.set("sourceId", ref.source_id)
    if ref.cache_type is not None:
        elem.set("cacheType", ref.cache_type)


def node_ref_from_xml(elem: Element) -> NodeRef:
    """``nodeId`` (required), ``sourceId``, ``cacheType`` of ``node``/``error`` elements."""
    node_id = elem.get("nodeId")
    if node_id is None:
        raise StanzaError(f"<{_local(elem) or elem.tag}> lacks the required 'nodeId' attribute")
    try:
        return NodeRef(node_id, elem.get("sourceId"), elem.get("cacheType"))
    except ValueError as err:
        raise StanzaError(str(err)) from err


# -- req -----------------------------------------------------------------------------------------


def request_to_xml(request: ReadoutRequest) -> Element:
    """``<req>`` for a read-out request."""
    elem = Element(_q("req"), {"seqnr": str(request.seqnr)})
    if request.types == FieldType.ALL:
        elem.set("all", "true")
    else:
        _set_types(elem, request.types)
    for attr, value in (
        ("from", request.from_time),
        ("to", request.to_time),
        ("when", request.when),
    ):
        if value is not None:
            elem.set(attr, format_datetime(value))
    for attr, tokens in zip(
        _TOKEN_ATTRS,
        (request.service_tokens, request.device_tokens, request.user_tokens),
        strict=True,
    ):
        if tokens:
            elem.set(attr, " ".join(tokens))
    for ref in request.nodes:
        _node_ref_attrs(SubElement(elem, _q("node")), ref)
    for name in request.field_names:
        SubElement(elem, _q("field"), {"name": name})
    return elem


def _tokens(elem: Element, attr: str) -> tuple[str, ...]:
    tokens = tuple((elem.get(attr) or "").split())
    if len(tokens) > MAX_TOKENS:
        raise StanzaError(f"too many {attr} values ({len(tokens)} > {MAX_TOKENS})")
    return tokens


def request_from_xml(elem: Element, *, default_tz: tzinfo | None = None) -> ReadoutRequest:
    """Parse ``<req>``. Without any type flag the request asks for ``FieldType.ALL``."""
    _expect(elem, "req")
    seqnr = parse_seqnr(elem)
    types = _types_from_attrs(elem, _FIELD_TYPE_ATTRS + _FIELD_TYPE_ALIASES + _REQUEST_SHORTCUTS)
    nodes: list[NodeRef] = []
    names: list[str] = []
    for child in _ours(elem):
        local = _local(child)
        if local == "node":
            if len(nodes) >= MAX_NODES:
                raise StanzaError(f"too many <node> elements in <req> (limit {MAX_NODES})")
            nodes.append(node_ref_from_xml(child))
        elif local == "field":
            if len(names) >= MAX_FIELD_NAMES:
                raise StanzaError(f"too many <field> elements in <req> (limit {MAX_FIELD_NAMES})")
            name = child.get("name")
            if name is None:
                raise StanzaError("<field> in <req> lacks the required 'name' attribute")
            names.append(name)
        else:
            raise StanzaError(f"unexpected element <{local}> in <req>")
    try:
        return ReadoutRequest(
            seqnr=seqnr,
            types=types or FieldType.ALL,
            nodes=tuple(nodes),
            field_names=tuple(names),
            from_time=_opt_datetime(elem, "from", default_tz),
            to_time=_opt_datetime(elem, "to", default_tz),
            when=_opt_datetime(elem, "when", default_tz),
            service_tokens=_tokens(elem, "serviceToken"),
            device_tokens=_tokens(elem, "deviceToken"),
            user_tokens=_tokens(elem, "userToken"),
        )
    except ValueError as err:  # model invariants (StanzaError is a ValueError too)
        raise StanzaError(str(err)) from err


# -- accepted / started / done / cancel / cancelled / rejected -----------------------------------


def accepted_to_xml(seqnr: int, queued: bool = False) -> Element:
    """``<accepted seqnr [queued='true']>``."""
    elem = Element(_q("accepted"), {"seqnr": str(seqnr)})
    if queued:
        elem.set("queued", "true")
    return elem


def accepted_from_xml(elem: Element) -> Accepted:
    """Parse ``<accepted>``."""
    _expect(elem, "accepted")
    return Accepted(parse_seqnr(elem), _bool_attr(elem, "queued"))


_SEQNR_ONLY = ("started", "done", "cancel", "cancelled")


def seqnr_to_xml(local: str, seqnr: int) -> Element:
    """One of the elements that only carry ``seqnr``: started, done, cancel, cancelled."""
    if local not in _SEQNR_ONLY:
        raise ValueError(f"<{local}> is not a seqnr-only element")
    return Element(_q(local), {"seqnr": str(seqnr)})


def seqnr_from_xml(elem: Element, *locals_: str) -> int:
    """``seqnr`` of a started/done/cancel/cancelled element (restricted to ``locals_``)."""
    _expect(elem, *(locals_ or _SEQNR_ONLY))
    return parse_seqnr(elem)


def rejected_from_xml(elem: Element) -> tuple[int | None, str]:
    """Legacy (pre-0.3) ``<rejected seqnr><error>text</error></rejected>``: (seqnr, text)."""
    _expect(elem, "rejected")
    seqnr = parse_seqnr(elem) if elem.get("seqnr") is not None else None
    texts = [(child.text or "").strip() for child in elem if _local(child) == "error"]
    return seqnr, "; ".join(text for text in texts if text)


# -- fields ------------------------------------------------------------------------------------


def field_to_xml(fld: Field) -> Element:
    """One field value element."""
    elem = Element(_q(fld.kind.value), {"name": fld.name})
    _set_types(elem, fld.types)
    _set_qos(elem, fld.qos)
    elem.set("value", fld.value)
    if fld.kind is FieldKind.NUMERIC:
        elem.set("unit", fld.unit)
    if fld.kind is FieldKind.ENUM:
        elem.set("dataType", fld.data_type)
    if fld.writable is not None:
        elem.set("writable", "true" if fld.writable else "false")
    return elem


def field_from_xml(elem: Element) -> Field:
    """Parse one field value element. No QoS flag means ``AUTOMATIC_READOUT``."""
    local = _local(elem)
    kind = _KIND_BY_TAG.get(local or "")
    if kind is None:
        raise StanzaError(f"unknown field element {elem.tag!r}")
    name = elem.get("name")
    if name is None:
        raise StanzaError(f"<{local}> field lacks the required 'name' attribute")
    value = elem.get("value")
    if value is None:
        raise StanzaError(f"field {name!r} lacks the required 'value' attribute")
    if kind not in (FieldKind.STRING, FieldKind.ENUM):
        value = value.strip(_WS)  # xs whiteSpace=collapse; never reformat otherwise
    qos = QoS(0)
    for flag, attr in _QOS_ATTRS:
        if _bool_attr(elem, attr):
            qos |= flag
    writable = elem.get("writable")
    try:
        return Field(
            name=name,
            kind=kind,
            value=value,
            unit=elem.get("unit", "") if kind is FieldKind.NUMERIC else "",
            data_type=elem.get("dataType", "") if kind is FieldKind.ENUM else "",
            types=_types_from_attrs(elem, _FIELD_TYPE_ATTRS + _FIELD_TYPE_ALIASES),
            qos=qos or QoS.AUTOMATIC_READOUT,
            writable=None if writable is None else parse_bool(writable, "writable"),
        )
    except ValueError as err:
        raise StanzaError(str(err)) from err


def fields_to_xml(message: FieldsMessage) -> Element:
    """``<fields seqnr [done='true']>`` with one ``node/timestamp`` per :class:`NodeFields`."""
    elem = Element(_q("fields"), {"seqnr": str(message.seqnr)})
    if message.done:
        elem.set("done", "true")
    for item in message.items:
        node = SubElement(elem, _q("node"))
        _node_ref_attrs(node, item.node)
        stamp = SubElement(node, _q("timestamp"), {"value": format_datetime(item.timestamp)})
        stamp.extend(field_to_xml(fld) for fld in item.fields)
    return elem


def fields_from_xml(elem: Element, *, default_tz: tzinfo | None = None) -> FieldsMessage:
    """Parse ``<fields>``: one :class:`NodeFields` per ``node/timestamp`` pair, in order."""
    _expect(elem, "fields")
    seqnr = parse_seqnr(elem)
    done = _bool_attr(elem, "done")
    nodes = _ours(elem)
    if len(nodes) > MAX_NODES:
        raise StanzaError(f"too many <node> elements in <fields> (limit {MAX_NODES})")
    items: list[NodeFields] = []
    count = 0
    for node in nodes:
        if _local(node) != "node":
            raise StanzaError(f"unexpected element <{_local(node)}> in <fields>")
        ref = node_ref_from_xml(node)
        for stamp in _ours(node):
            if _local(stamp) != "timestamp":
                raise StanzaError(f"unexpected element <{_local(stamp)}> in <node>")
            stamp_text = stamp.get("value")
            if stamp_text is None:
                raise StanzaError("<timestamp> lacks the required 'value' attribute")
            when = parse_datetime(stamp_text, default_tz=default_tz)
            children = _ours(stamp)
            count += len(children)
            if count > MAX_FIELDS:
                raise StanzaError(f"too many fields in <fields> (limit {MAX_FIELDS})")
            fields = tuple(field_from_xml(child) for child in children)
            items.append(NodeFields(ref, when, fields))
    return FieldsMessage(seqnr, tuple(items), done)


# -- failure -------------------------------------------------------------------------------------


def failure_to_xml(message: FailureMessage) -> Element:
    """``<failure seqnr [done='true']>`` with one ``<error>`` per :class:`NodeFailure`."""
    elem = Element(_q("failure"), {"seqnr": str(message.seqnr)})
    if message.done:
        elem.set("done", "true")
    for failure in message.failures:
        error = SubElement(elem, _q("error"))
        _node_ref_attrs(error, failure.node)
        error.set("timestamp", format_datetime(failure.timestamp))
        error.text = failure.message
    return elem


def failure_from_xml(elem: Element, *, default_tz: tzinfo | None = None) -> FailureMessage:
    """Parse ``<failure>``."""
    _expect(elem, "failure")
    seqnr = parse_seqnr(elem)
    done = _bool_attr(elem, "done")
    errors = _ours(elem)
    if len(errors) > MAX_ERRORS:
        raise StanzaError(f"too many <error> elements in <failure> (limit {MAX_ERRORS})")
    failures: list[NodeFailure] = []
    for error in errors:
        if _local(error) != "error":
            raise StanzaError(f"unexpected element <{_local(error)}> in <failure>")
        stamp_text = error.get("timestamp")
        if stamp_text is None:
            raise StanzaError("<error> lacks the required 'timestamp' attribute")
        try:
            failures.append(
                NodeFailure(
                    node_ref_from_xml(error),
                    parse_datetime(stamp_text, default_tz=default_tz),
                    error.text or "",
                )
            )
        except ValueError as err:
            raise StanzaError(str(err)) from err
    return FailureMessage(seqnr, tuple(failures), done)
