"""Pure conversion between XEP-0323 XML (``xml.etree`` elements) and :mod:`.model`.

``*_to_xml`` functions build elements from model objects (they trust the model, which validates
itself). ``*_from_xml`` functions parse received elements and raise
:class:`~xep.errors.StanzaError` -- and nothing else -- on malformed input.

Every public builder and parser takes a keyword-only ``dialect`` (default :data:`~xep.dialect.XSF`,
``urn:xmpp:iot:sensordata``); with :data:`~xep.dialect.IEEE`/:data:`~xep.dialect.NF` the same
model travels in the compact IEEE names (``req id``, ``resp id more``, ``nd id src pt``,
``ts v``, ``q n v u``...). All names come from the table in :mod:`xep.dialect`; this module only
knows the *structure*. Dialect-specific structure:

* the correlation id: XSF ``seqnr`` is an xs:int; an IEEE ``id`` that is not a canonical xs:int
  (Waher sends GUIDs) is kept in the model's ``request_id`` with ``seqnr`` 0 (``wire_id``);
* XSF ``<fields done>`` and ``<failure done>`` vs one IEEE ``<resp more>`` carrying fields *and*
  ``nd/ts/err`` errors: :func:`results_from_xml` reads both from any of them;
  :func:`fields_from_xml`/:func:`failure_from_xml` of an IEEE ``resp`` return only their half;
* XSF ``<cancelled>`` vs an empty IQ result in IEEE (no element: :func:`seqnr_to_xml` refuses).

Wire rules applied here (``xmpp-iot-xeps.md`` §2):

* timestamps are emitted in UTC with ``Z``; a received timestamp without a zone is read in
  ``default_tz`` (default: the local zone, as the spec says readers assume their own zone);
* booleans are parsed from ``true``/``false``/``1``/``0`` and emitted as ``true``;
* the ``identity`` flag is emitted, ``identification`` is accepted as its alias;
* ``numeric`` always carries ``unit`` (empty if none); a missing ``unit`` is accepted;
* ``timeSpan`` (pre-0.3 name of ``duration``) and the legacy ``<rejected>`` are accepted;
* unknown elements in our namespace are errors; elements of other namespaces are ignored
  (XMPP extensibility); unknown attributes (``module``, ``stringIds``...) are ignored.

Large read-outs: :func:`split_fields` cuts a :class:`FieldsMessage` into parts of at most
:data:`MAX_FIELDS_PER_MESSAGE` fields and about :data:`MAX_MESSAGE_BYTES` of XML each.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, tzinfo
from datetime import timezone as dtimezone
from functools import cache
from xml.etree.ElementTree import Element, SubElement

from xep.dialect import XSF, Dialect, FlagTable, SensorDataNames
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
from xep.xmlutil import WS, bool_attr, parse_bool, parse_tokens, set_tokens

__all__ = [
    "MAX_ERRORS",
    "MAX_FIELDS",
    "MAX_FIELDS_PER_MESSAGE",
    "MAX_FIELD_NAMES",
    "MAX_ID_LENGTH",
    "MAX_MESSAGE_BYTES",
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
    "parse_wire_id",
    "rejected_from_xml",
    "request_from_xml",
    "request_to_xml",
    "request_types_from",
    "results_from_xml",
    "seqnr_from_xml",
    "seqnr_to_xml",
    "set_request_types",
    "split_fields",
    "wire_id_from_xml",
]

NS = XSF.sensordata.namespace

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
#: Longest IEEE string ``id`` accepted (Waher's GUIDs have 32 characters).
MAX_ID_LENGTH = 128

#: Most field values the device side puts into one ``<fields>``/``<resp>`` message.
MAX_FIELDS_PER_MESSAGE = 100
#: Rough bound of the serialized payload of one such message, in bytes (UTF-8). Prosody's default
#: ``c2s_stanza_size_limit`` is 256 KiB (ejabberd's example config too): 32 KiB stays far below
#: it whatever the server and leaves room for the stanza wrapper, and at ~120 B per numeric field
#: the field count, not the size, is what normally cuts. A single field larger than this (a huge
#: string) is sent alone.
MAX_MESSAGE_BYTES = 32 * 1024

# XSF tables as model flags, kept for modules that imported them.
_FIELD_TYPE_ATTRS: tuple[tuple[FieldType, str], ...]
_QOS_ATTRS: tuple[tuple[QoS, str], ...]
_TOKEN_ATTRS = XSF.sensordata.token_attrs


def _names(dialect: Dialect) -> SensorDataNames:
    return dialect.sensordata


@cache
def _type_flags(table: FlagTable) -> tuple[tuple[FieldType, str], ...]:
    out: list[tuple[FieldType, str]] = []
    for spec, attr in table:
        flag = FieldType(0)
        for member in spec.split("|"):
            flag |= FieldType[member]
        out.append((flag, attr))
    return tuple(out)


@cache
def _qos_flags(table: FlagTable) -> tuple[tuple[QoS, str], ...]:
    return tuple((QoS[spec], attr) for spec, attr in table)


_FIELD_TYPE_ATTRS = _type_flags(XSF.sensordata.type_emit)
_QOS_ATTRS = _qos_flags(XSF.sensordata.qos_attrs)


def _q(local: str, dialect: Dialect = XSF) -> str:
    return _names(dialect).tag(local)


def _local(elem: Element, dialect: Dialect = XSF) -> str | None:
    """Local name of ``elem`` if it is in the dialect's namespace, else None."""
    return _names(dialect).local(elem.tag)


def _expect(elem: Element, *locals_: str, dialect: Dialect = XSF) -> str:
    local = _local(elem, dialect)
    if local is None or local not in locals_:
        raise StanzaError(
            f"expected <{' or '.join(locals_)} xmlns='{_names(dialect).namespace}'>, "
            f"got {elem.tag!r}"
        )
    return local


def _ours(elem: Element, dialect: Dialect = XSF) -> list[Element]:
    """Children in the dialect's namespace (foreign extension elements are skipped)."""
    return [child for child in elem if _local(child, dialect) is not None]


# -- scalars ------------------------------------------------------------------------------------


def _parse_int(text: str, what: str, low: int = INT32_MIN, high: int = INT32_MAX) -> int:
    value = text.strip(WS)
    if re.fullmatch(r"[+-]?\d{1,20}", value, re.ASCII) is None:
        raise StanzaError(f"{what}: {text!r} is not an integer")
    number = int(value)
    if not low <= number <= high:
        raise StanzaError(f"{what}: {number} is out of range")
    return number


_CANONICAL_INT = re.compile(r"-?(?:0|[1-9]\d{0,9})", re.ASCII)


def parse_wire_id(elem: Element, *, dialect: Dialect = XSF) -> tuple[int, str | None]:
    """The correlation id of ``elem`` as ``(seqnr, request_id)`` (see the model's ``wire_id``).

    XSF: the required xs:int ``seqnr``, ``request_id`` None. IEEE: the required ``id`` string; a
    canonical xs:int gives ``(int, None)``, anything else ``(0, id)``.
    """
    names = _names(dialect)
    if names.id_is_int:
        return parse_seqnr(elem, dialect=dialect), None
    text = elem.get(names.id_attr)
    what = _local(elem, dialect) or elem.tag
    if text is None:
        raise StanzaError(f"<{what}> lacks the required {names.id_attr!r} attribute")
    if not text or len(text) > MAX_ID_LENGTH:
        raise StanzaError(f"<{what}>: {names.id_attr} must have 1..{MAX_ID_LENGTH} characters")
    if _CANONICAL_INT.fullmatch(text) and INT32_MIN <= int(text) <= INT32_MAX:
        return int(text), None
    return 0, text


def wire_id_from_xml(elem: Element, *locals_: str, dialect: Dialect = XSF) -> str:
    """The correlation id of ``elem`` as text (``seqnr`` or IEEE ``id``), normalized so that it
    equals the ``wire_id`` of the parsed model. ``locals_`` restricts the element (logical XSF
    names, like :func:`seqnr_from_xml`)."""
    if locals_:
        names = _names(dialect)
        _expect(elem, *(_element(names, local) for local in locals_), dialect=dialect)
    seqnr, request_id = parse_wire_id(elem, dialect=dialect)
    return str(seqnr) if request_id is None else request_id


def parse_seqnr(elem: Element, *, dialect: Dialect = XSF) -> int:
    """The required xs:int ``seqnr`` attribute (IEEE: ``id``, which must then be an integer)."""
    attr = _names(dialect).id_attr
    text = elem.get(attr)
    if text is None:
        raise StanzaError(
            f"<{_local(elem, dialect) or elem.tag}> lacks the required {attr!r} attribute"
        )
    return _parse_int(text, attr)


def _set_id(elem: Element, names: SensorDataNames, seqnr: int, request_id: str | None) -> None:
    if names.id_is_int or request_id is None:
        elem.set(names.id_attr, str(seqnr))
    else:
        elem.set(names.id_attr, request_id)


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
    match = _DATETIME.fullmatch(text.strip(WS))
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
        if bool_attr(elem, attr):
            types |= flag
    return types


def _set_types(elem: Element, types: FieldType, dialect: Dialect = XSF) -> None:
    for attr in _type_attrs(types, _names(dialect).type_emit):
        elem.set(attr, "true")


def set_request_types(elem: Element, types: FieldType) -> None:
    """Set the XSF request flags of ``types`` on ``elem`` (``all`` for every type); XEP-0324
    ``canRead`` copies them from the read-out it asks about."""
    if types == FieldType.ALL:
        elem.set(XSF.sensordata.all_attr, "true")
    else:
        _set_types(elem, types)


def request_types_from(elem: Element) -> FieldType:
    """The XSF request flags of ``elem`` (none set: ``FieldType.ALL``)."""
    names = XSF.sensordata
    table = (*_type_flags(names.request_type_parse), (FieldType.ALL, names.all_attr))
    if names.historical_attr is not None:
        table = (*table, (FieldType.HISTORICAL, names.historical_attr))
    return _types_from_attrs(elem, table) or FieldType.ALL


def _set_qos(elem: Element, qos: QoS, dialect: Dialect = XSF) -> None:
    for attr in _qos_attrs(qos, _names(dialect).qos_attrs):
        elem.set(attr, "true")


# Flag combinations repeat from field to field: look each one up once (enum arithmetic
# per field was the largest cost of serialising a read-out).
@cache
def _type_attrs(types: FieldType, table: FlagTable) -> tuple[str, ...]:
    return tuple(attr for flag, attr in _type_flags(table) if flag & types)


@cache
def _qos_attrs(qos: QoS, table: FlagTable) -> tuple[str, ...]:
    return tuple(attr for flag, attr in _qos_flags(table) if flag in qos)


def _element(names: SensorDataNames, logical: str) -> str:
    """Dialect element name of an XSF-named element (``started``, ``cancelled``...)."""
    local = getattr(names, logical, None) if logical.isidentifier() else None
    if not isinstance(local, str):
        raise ValueError(f"<{logical}> has no equivalent in the {names.namespace} dialect")
    return local


# -- node references -------------------------------------------------------------------------


def _node_ref_attrs(elem: Element, ref: NodeRef, dialect: Dialect = XSF) -> None:
    attrs = _names(dialect).node_ref
    elem.set(attrs.node_id, ref.node_id)
    if ref.source_id is not None:
        elem.set(attrs.source_id, ref.source_id)
    if ref.cache_type is not None:
        elem.set(attrs.cache_type, ref.cache_type)


def node_ref_from_xml(elem: Element, *, dialect: Dialect = XSF) -> NodeRef:
    """``nodeId`` (required), ``sourceId``, ``cacheType`` of ``node``/``error`` elements
    (IEEE: ``id``, ``src``, ``pt`` of ``nd``)."""
    attrs = _names(dialect).node_ref
    node_id = elem.get(attrs.node_id)
    if node_id is None:
        raise StanzaError(
            f"<{_local(elem, dialect) or elem.tag}> lacks the required {attrs.node_id!r} attribute"
        )
    try:
        return NodeRef(node_id, elem.get(attrs.source_id), elem.get(attrs.cache_type))
    except ValueError as err:
        raise StanzaError(str(err)) from err


# -- req -----------------------------------------------------------------------------------------


def request_to_xml(request: ReadoutRequest, *, dialect: Dialect = XSF) -> Element:
    """``<req>`` for a read-out request."""
    names = _names(dialect)
    elem = Element(names.tag(names.req))
    _set_id(elem, names, request.seqnr, request.request_id)
    if request.types == FieldType.ALL:
        elem.set(names.all_attr, "true")
    else:
        _set_types(elem, request.types, dialect)
    for attr, value in (
        (names.from_attr, request.from_time),
        (names.to_attr, request.to_time),
        (names.when_attr, request.when),
    ):
        if value is not None:
            elem.set(attr, format_datetime(value))
    set_tokens(elem, request, names.token_attrs)
    for ref in request.nodes:
        _node_ref_attrs(SubElement(elem, names.tag(names.req_node)), ref, dialect)
    for name in request.field_names:
        SubElement(elem, names.tag(names.req_field), {names.req_field_name: name})
    return elem


def request_from_xml(
    elem: Element, *, default_tz: tzinfo | None = None, dialect: Dialect = XSF
) -> ReadoutRequest:
    """Parse ``<req>``. Without any type flag the request asks for ``FieldType.ALL``."""
    names = _names(dialect)
    _expect(elem, names.req, dialect=dialect)
    seqnr, request_id = parse_wire_id(elem, dialect=dialect)
    table = (*_type_flags(names.request_type_parse), (FieldType.ALL, names.all_attr))
    if names.historical_attr is not None:
        table = (*table, (FieldType.HISTORICAL, names.historical_attr))
    types = _types_from_attrs(elem, table)
    nodes: list[NodeRef] = []
    fields: list[str] = []
    for child in _ours(elem, dialect):
        local = _local(child, dialect)
        if local == names.req_node:
            if len(nodes) >= MAX_NODES:
                raise StanzaError(f"too many <{local}> elements in <req> (limit {MAX_NODES})")
            nodes.append(node_ref_from_xml(child, dialect=dialect))
        elif local == names.req_field:
            if len(fields) >= MAX_FIELD_NAMES:
                raise StanzaError(f"too many <{local}> elements in <req> (limit {MAX_FIELD_NAMES})")
            name = child.get(names.req_field_name)
            if name is None:
                raise StanzaError(
                    f"<{local}> in <req> lacks the required {names.req_field_name!r} attribute"
                )
            fields.append(name)
        else:
            raise StanzaError(f"unexpected element <{local}> in <req>")
    service, device, user = names.token_attrs
    try:
        return ReadoutRequest(
            seqnr=seqnr,
            types=types or FieldType.ALL,
            nodes=tuple(nodes),
            field_names=tuple(fields),
            from_time=_opt_datetime(elem, names.from_attr, default_tz),
            to_time=_opt_datetime(elem, names.to_attr, default_tz),
            when=_opt_datetime(elem, names.when_attr, default_tz),
            service_tokens=parse_tokens(elem, service, MAX_TOKENS),
            device_tokens=parse_tokens(elem, device, MAX_TOKENS),
            user_tokens=parse_tokens(elem, user, MAX_TOKENS),
            request_id=request_id,
        )
    except ValueError as err:  # model invariants (StanzaError is a ValueError too)
        raise StanzaError(str(err)) from err


# -- accepted / started / done / cancel / cancelled / rejected -----------------------------------


def accepted_to_xml(
    seqnr: int, queued: bool = False, *, dialect: Dialect = XSF, request_id: str | None = None
) -> Element:
    """``<accepted seqnr [queued='true']>`` (IEEE: ``id``; ``request_id`` overrides ``seqnr``)."""
    names = _names(dialect)
    elem = Element(names.tag(names.accepted))
    _set_id(elem, names, seqnr, request_id)
    if queued:
        elem.set(names.queued_attr, "true")
    return elem


def accepted_from_xml(elem: Element, *, dialect: Dialect = XSF) -> Accepted:
    """Parse ``<accepted>``."""
    names = _names(dialect)
    _expect(elem, names.accepted, dialect=dialect)
    seqnr, request_id = parse_wire_id(elem, dialect=dialect)
    return Accepted(seqnr, bool_attr(elem, names.queued_attr), request_id)


_SEQNR_ONLY = ("started", "done", "cancel", "cancelled")


def seqnr_to_xml(
    local: str, seqnr: int, *, dialect: Dialect = XSF, request_id: str | None = None
) -> Element:
    """One of the elements that only carry ``seqnr``: started, done, cancel, cancelled.

    ``local`` is the XSF name; the dialect's own name is used. Raises ValueError for
    ``cancelled`` in the IEEE dialect (answered with an empty IQ result there).
    """
    if local not in _SEQNR_ONLY:
        raise ValueError(f"<{local}> is not a seqnr-only element")
    names = _names(dialect)
    elem = Element(names.tag(_element(names, local)))
    _set_id(elem, names, seqnr, request_id)
    return elem


def seqnr_from_xml(elem: Element, *locals_: str, dialect: Dialect = XSF) -> int:
    """``seqnr`` of a started/done/cancel/cancelled element (restricted to ``locals_``, given by
    their XSF names). IEEE: the ``id`` must be an integer; see :func:`wire_id_from_xml`."""
    names = _names(dialect)
    wanted = [local for local in (locals_ or _SEQNR_ONLY) if _has_element(names, local)]
    _expect(elem, *(_element(names, local) for local in wanted), dialect=dialect)
    return parse_seqnr(elem, dialect=dialect)


def _has_element(names: SensorDataNames, logical: str) -> bool:
    return isinstance(getattr(names, logical, None), str)


def rejected_from_xml(elem: Element) -> tuple[int | None, str]:
    """Legacy (pre-0.3) ``<rejected seqnr><error>text</error></rejected>``: (seqnr, text)."""
    _expect(elem, "rejected")
    seqnr = parse_seqnr(elem) if elem.get("seqnr") is not None else None
    texts = [(child.text or "").strip() for child in elem if _local(child) == "error"]
    return seqnr, "; ".join(text for text in texts if text)


# -- fields ------------------------------------------------------------------------------------


def field_to_xml(fld: Field, *, dialect: Dialect = XSF) -> Element:
    """One field value element."""
    names = _names(dialect)
    elem = Element(names.tag(names.kind_tag(fld.kind.value)), {names.field_name: fld.name})
    _set_types(elem, fld.types, dialect)
    _set_qos(elem, fld.qos, dialect)
    elem.set(names.field_value, fld.value)
    if fld.kind is FieldKind.NUMERIC:
        elem.set(names.field_unit, fld.unit)
    if fld.kind is FieldKind.ENUM:
        elem.set(names.field_data_type, fld.data_type)
    if fld.writable is not None:
        elem.set(names.field_writable, "true" if fld.writable else "false")
    return elem


def field_from_xml(elem: Element, *, dialect: Dialect = XSF) -> Field:
    """Parse one field value element. No QoS flag means ``AUTOMATIC_READOUT``."""
    names = _names(dialect)
    local = _local(elem, dialect)
    kind_value = names.kind_of(local) if local is not None else None
    if kind_value is None:
        raise StanzaError(f"unknown field element {elem.tag!r}")
    kind = FieldKind(kind_value)
    name = elem.get(names.field_name)
    if name is None:
        raise StanzaError(f"<{local}> field lacks the required {names.field_name!r} attribute")
    value = elem.get(names.field_value)
    if value is None:
        raise StanzaError(f"field {name!r} lacks the required {names.field_value!r} attribute")
    if kind not in (FieldKind.STRING, FieldKind.ENUM):
        value = value.strip(WS)  # xs whiteSpace=collapse; never reformat otherwise
    qos = QoS(0)
    for flag, attr in _qos_flags(names.qos_attrs):
        if bool_attr(elem, attr):
            qos |= flag
    writable = elem.get(names.field_writable)
    try:
        return Field(
            name=name,
            kind=kind,
            value=value,
            unit=elem.get(names.field_unit, "") if kind is FieldKind.NUMERIC else "",
            data_type=elem.get(names.field_data_type, "") if kind is FieldKind.ENUM else "",
            types=_types_from_attrs(elem, _type_flags(names.field_type_parse)),
            qos=qos or QoS.AUTOMATIC_READOUT,
            writable=None if writable is None else parse_bool(writable, names.field_writable),
        )
    except ValueError as err:
        raise StanzaError(str(err)) from err


def _results_element(names: SensorDataNames, seqnr: int, rid: str | None, done: bool) -> Element:
    elem = Element(names.tag(names.fields))
    _set_id(elem, names, seqnr, rid)
    if names.more_attr is not None:
        elem.set(names.more_attr, "false" if done else "true")
    elif done and names.done_attr is not None:
        elem.set(names.done_attr, "true")
    return elem


def _node_stamp(
    parent: Element, node: NodeRef, stamp: datetime, dialect: Dialect
) -> tuple[Element, Element]:
    names = _names(dialect)
    node_elem = SubElement(parent, names.tag(names.node))
    _node_ref_attrs(node_elem, node, dialect)
    stamp_elem = SubElement(
        node_elem, names.tag(names.timestamp), {names.timestamp_value: format_datetime(stamp)}
    )
    return node_elem, stamp_elem


def fields_to_xml(message: FieldsMessage, *, dialect: Dialect = XSF) -> Element:
    """``<fields seqnr [done='true']>`` with one ``node/timestamp`` per :class:`NodeFields`
    (IEEE: ``<resp id more>`` with ``nd/ts``)."""
    names = _names(dialect)
    elem = _results_element(names, message.seqnr, message.request_id, message.done)
    for item in message.items:
        _, stamp = _node_stamp(elem, item.node, item.timestamp, dialect)
        stamp.extend(field_to_xml(fld, dialect=dialect) for fld in item.fields)
    return elem


def _is_done(elem: Element, names: SensorDataNames) -> bool:
    if names.more_attr is not None:
        return not bool_attr(elem, names.more_attr)
    return names.done_attr is not None and bool_attr(elem, names.done_attr)


def _parse_results(
    elem: Element, dialect: Dialect, default_tz: tzinfo | None
) -> tuple[FieldsMessage, FailureMessage]:
    """Parse XSF ``<fields>``/``<failure>`` or IEEE ``<resp>`` into both halves."""
    names = _names(dialect)
    expected = [names.fields] + ([names.failure] if names.failure else [])
    local = _expect(elem, *expected, dialect=dialect)
    seqnr, request_id = parse_wire_id(elem, dialect=dialect)
    done = _is_done(elem, names)
    if names.failure is not None and local == names.failure:
        failures = _xsf_errors(elem, names, dialect, default_tz)
        return (
            FieldsMessage(seqnr, (), done, request_id),
            FailureMessage(seqnr, failures, done, request_id),
        )
    nodes = _ours(elem, dialect)
    if len(nodes) > MAX_NODES:
        raise StanzaError(f"too many <{names.node}> elements in <{local}> (limit {MAX_NODES})")
    items: list[NodeFields] = []
    errors: list[NodeFailure] = []
    count = 0
    for node in nodes:
        child = _local(node, dialect)
        if child == names.node:
            ref = node_ref_from_xml(node, dialect=dialect)
            stamps = _ours(node, dialect)
        elif child == names.timestamp and names.failure is None:
            ref, stamps = NodeRef(""), [node]  # IEEE: ``ts`` without ``nd`` (no node id)
        else:
            raise StanzaError(f"unexpected element <{child}> in <{local}>")
        for stamp in stamps:
            if _local(stamp, dialect) != names.timestamp:
                raise StanzaError(f"unexpected element <{_local(stamp, dialect)}> in <{child}>")
            stamp_text = stamp.get(names.timestamp_value)
            if stamp_text is None:
                raise StanzaError(
                    f"<{names.timestamp}> lacks the required {names.timestamp_value!r} attribute"
                )
            when = parse_datetime(stamp_text, default_tz=default_tz)
            children = _ours(stamp, dialect)
            count += len(children)
            if count > MAX_FIELDS:
                raise StanzaError(f"too many fields in <{local}> (limit {MAX_FIELDS})")
            fields: list[Field] = []
            for value in children:
                if names.failure is None and _local(value, dialect) == names.error:
                    if len(errors) >= MAX_ERRORS:
                        raise StanzaError(f"too many <{names.error}> elements (limit {MAX_ERRORS})")
                    errors.append(_node_failure(ref, when, value.text or ""))
                else:
                    fields.append(field_from_xml(value, dialect=dialect))
            if fields or not children:
                items.append(NodeFields(ref, when, tuple(fields)))
    return (
        FieldsMessage(seqnr, tuple(items), done, request_id),
        FailureMessage(seqnr, tuple(errors), done, request_id),
    )


def _node_failure(ref: NodeRef, when: datetime, text: str) -> NodeFailure:
    try:
        return NodeFailure(ref, when, text)
    except ValueError as err:
        raise StanzaError(str(err)) from err


def _xsf_errors(
    elem: Element, names: SensorDataNames, dialect: Dialect, default_tz: tzinfo | None
) -> tuple[NodeFailure, ...]:
    errors = _ours(elem, dialect)
    if len(errors) > MAX_ERRORS:
        raise StanzaError(f"too many <{names.error}> elements in <failure> (limit {MAX_ERRORS})")
    failures: list[NodeFailure] = []
    stamp_attr = names.error_timestamp or "timestamp"
    for error in errors:
        if _local(error, dialect) != names.error:
            raise StanzaError(f"unexpected element <{_local(error, dialect)}> in <failure>")
        stamp_text = error.get(stamp_attr)
        if stamp_text is None:
            raise StanzaError(f"<{names.error}> lacks the required {stamp_attr!r} attribute")
        failures.append(
            _node_failure(
                node_ref_from_xml(error, dialect=dialect),
                parse_datetime(stamp_text, default_tz=default_tz),
                error.text or "",
            )
        )
    return tuple(failures)


def fields_from_xml(
    elem: Element, *, default_tz: tzinfo | None = None, dialect: Dialect = XSF
) -> FieldsMessage:
    """Parse ``<fields>``: one :class:`NodeFields` per ``node/timestamp`` pair, in order.

    IEEE: parses ``<resp>`` and ignores its ``err`` elements (see :func:`results_from_xml`).
    """
    names = _names(dialect)
    _expect(elem, names.fields, dialect=dialect)
    return _parse_results(elem, dialect, default_tz)[0]


def results_from_xml(
    elem: Element, *, default_tz: tzinfo | None = None, dialect: Dialect = XSF
) -> tuple[FieldsMessage, FailureMessage]:
    """Parse any result element -- XSF ``<fields>`` or ``<failure>``, IEEE ``<resp>`` -- into
    its fields and its node failures (one half is empty for XSF). ``done`` is on both halves."""
    return _parse_results(elem, dialect, default_tz)


def split_fields(
    message: FieldsMessage,
    *,
    dialect: Dialect = XSF,
    max_fields: int = MAX_FIELDS_PER_MESSAGE,
    max_bytes: int = MAX_MESSAGE_BYTES,
) -> list[FieldsMessage]:
    """Cut ``message`` into consecutive parts of at most ``max_fields`` field values and about
    ``max_bytes`` of serialized XML each; only the last part keeps ``message.done``.

    A :class:`NodeFields` too big for one part continues in the next part under the same node
    and timestamp (readers merge such neighbours back, see the plugin's client side). A part
    always holds at least one field, so one oversized field travels alone.
    """
    if max_fields < 1:
        raise ValueError("max_fields must be >= 1")
    parts: list[list[NodeFields]] = []
    current: list[NodeFields] = []
    count = size = 0

    def close() -> None:
        nonlocal current, count, size
        if current:
            parts.append(current)
        current, count, size = [], 0, 0

    for item in message.items:
        overhead = _item_overhead(item, dialect)
        if current and size + overhead > max_bytes:
            close()
        chunk: list[Field] = []
        size += overhead
        for fld in item.fields:
            cost = _field_cost(fld)
            if (chunk or current) and (count + 1 > max_fields or size + cost > max_bytes):
                if chunk:
                    current.append(NodeFields(item.node, item.timestamp, tuple(chunk)))
                close()
                chunk = []
                size = overhead
            chunk.append(fld)
            count += 1
            size += cost
        if chunk or not item.fields:
            current.append(NodeFields(item.node, item.timestamp, tuple(chunk)))
    close()
    if not parts:
        return [message]
    last = len(parts) - 1
    return [
        FieldsMessage(message.seqnr, tuple(items), message.done and i == last, message.request_id)
        for i, items in enumerate(parts)
    ]


# Upper bounds for the size estimate: the longest field element and attribute names of any
# dialect with quotes and spacing, and the growth of one escaped character (&quot; is +5).
_FIELD_ELEMENT_COST = 40
_FLAG_COST = 28
_ESCAPE_GROWTH = 5
_ESCAPED = "&<>\"'\n\r\t"


def _field_cost(fld: Field) -> int:
    """A cheap upper bound of one field's serialized size: serializing to measure would
    cost as much as sending."""
    flags = fld.types.value.bit_count() + fld.qos.value.bit_count() + (fld.writable is not None)
    text = fld.name + fld.value + fld.unit + fld.data_type
    return _FIELD_ELEMENT_COST + flags * _FLAG_COST + _text_cost(text)


def _text_cost(text: str) -> int:
    escapes = sum(text.count(char) for char in _ESCAPED)
    return len(text.encode("utf-8")) + escapes * _ESCAPE_GROWTH


_NODE_ELEMENT_COST = 120  # node and timestamp elements, their attribute names and a time


def _item_overhead(item: NodeFields, dialect: Dialect) -> int:
    """Upper bound of the size of a node's ``node``/``timestamp`` wrapping."""
    ref = item.node
    return _NODE_ELEMENT_COST + _text_cost(
        ref.node_id + (ref.source_id or "") + (ref.cache_type or "")
    )


# -- failure -------------------------------------------------------------------------------------


def failure_to_xml(message: FailureMessage, *, dialect: Dialect = XSF) -> Element:
    """``<failure seqnr [done='true']>`` with one ``<error>`` per :class:`NodeFailure`.

    IEEE: a ``<resp id more>`` with ``nd/ts/err`` (consecutive errors of one node and timestamp
    share their ``nd``/``ts``).
    """
    names = _names(dialect)
    if names.failure is None:
        elem = _results_element(names, message.seqnr, message.request_id, message.done)
        last: tuple[NodeRef, datetime] | None = None
        stamp = elem
        for failure in message.failures:
            if last != (failure.node, failure.timestamp):
                _, stamp = _node_stamp(elem, failure.node, failure.timestamp, dialect)
                last = (failure.node, failure.timestamp)
            SubElement(stamp, names.tag(names.error)).text = failure.message
        return elem
    elem = Element(names.tag(names.failure))
    _set_id(elem, names, message.seqnr, message.request_id)
    if message.done and names.done_attr is not None:
        elem.set(names.done_attr, "true")
    for failure in message.failures:
        error = SubElement(elem, names.tag(names.error))
        _node_ref_attrs(error, failure.node, dialect)
        error.set(names.error_timestamp or "timestamp", format_datetime(failure.timestamp))
        error.text = failure.message
    return elem


def failure_from_xml(
    elem: Element, *, default_tz: tzinfo | None = None, dialect: Dialect = XSF
) -> FailureMessage:
    """Parse ``<failure>`` (IEEE: the ``err`` elements of a ``<resp>``)."""
    names = _names(dialect)
    _expect(elem, names.failure or names.fields, dialect=dialect)
    return _parse_results(elem, dialect, default_tz)[1]
