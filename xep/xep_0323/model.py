"""Typed, immutable model of XEP-0323 (IoT Sensor Data) read-outs.

Pure module: no XML, no I/O, no slixmpp. :mod:`xep.xep_0323.convert` maps it to and from the wire.

Field values are kept *lexically*, exactly as they appear on the wire: for ``numeric`` the number
of decimals is the precision (``"21.50"`` is not ``"21.5"``), so nothing here ever reformats a
value it did not create. Use the ``Field.numeric``/``integer``/``boolean``/``string``/
``enumeration`` constructors to build valid values from Python objects, and ``as_float``/
``as_int``/``as_bool`` to read them back.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import re
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from xep.xmlutil import check_aware, check_text, check_tokens, is_xml_text, xml_safe

__all__ = [
    "INT32_MAX",
    "INT32_MIN",
    "INT64_MAX",
    "INT64_MIN",
    "Accepted",
    "FailureMessage",
    "Field",
    "FieldKind",
    "FieldType",
    "FieldsMessage",
    "NodeFailure",
    "NodeFields",
    "NodeRef",
    "QoS",
    "Readout",
    "ReadoutRequest",
    "SensorDataSource",
    "is_xml_text",
    "narrow_request",
]

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


class FieldType(enum.Flag):
    """Field categories (XEP-0323 §2.4). In a request several flags mean *any of*; on a field they
    mean *all of* (e.g. ``STATUS | HISTORICAL_DAY``)."""

    MOMENTARY = 1 << 0
    PEAK = 1 << 1
    STATUS = 1 << 2
    COMPUTED = 1 << 3
    IDENTITY = 1 << 4
    HISTORICAL_SECOND = 1 << 5
    HISTORICAL_MINUTE = 1 << 6
    HISTORICAL_HOUR = 1 << 7
    HISTORICAL_DAY = 1 << 8
    HISTORICAL_WEEK = 1 << 9
    HISTORICAL_MONTH = 1 << 10
    HISTORICAL_QUARTER = 1 << 11
    HISTORICAL_YEAR = 1 << 12
    HISTORICAL_OTHER = 1 << 13
    #: Every historical period (request shortcut ``historical='true'``).
    HISTORICAL = (1 << 14) - (1 << 5)
    #: Every field type (request shortcut ``all='true'``).
    ALL = (1 << 14) - 1


class QoS(enum.Flag):
    """Quality-of-service flags of a field value, in the spec's order of importance."""

    MISSING = 1 << 0
    IN_PROGRESS = 1 << 1
    AUTOMATIC_ESTIMATE = 1 << 2
    MANUAL_ESTIMATE = 1 << 3
    MANUAL_READOUT = 1 << 4
    AUTOMATIC_READOUT = 1 << 5
    TIME_OFFSET = 1 << 6
    WARNING = 1 << 7
    ERROR = 1 << 8
    SIGNED = 1 << 9
    INVOICED = 1 << 10
    END_OF_SERIES = 1 << 11
    POWER_FAILURE = 1 << 12
    INVOICE_CONFIRMED = 1 << 13


class FieldKind(enum.Enum):
    """Value type of a field; the enum value is the XML element name."""

    NUMERIC = "numeric"
    INT = "int"
    LONG = "long"
    BOOLEAN = "boolean"
    STRING = "string"
    ENUM = "enum"
    DATE = "date"
    DATETIME = "dateTime"
    TIME = "time"
    DURATION = "duration"


# Lexical spaces (XML Schema 1.1 part 2), without surrounding whitespace.
_TZ = r"(?:Z|[+-](?:(?:0\d|1[0-3]):[0-5]\d|14:00))"
_LEXICAL: dict[FieldKind, re.Pattern[str]] = {
    FieldKind.NUMERIC: re.compile(
        r"(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?INF|NaN)", re.ASCII
    ),
    FieldKind.INT: re.compile(r"[+-]?\d+", re.ASCII),
    FieldKind.LONG: re.compile(r"[+-]?\d+", re.ASCII),
    FieldKind.BOOLEAN: re.compile(r"true|false|1|0"),
    FieldKind.DATE: re.compile(r"-?\d{4,}-\d\d-\d\d" + _TZ + "?", re.ASCII),
    FieldKind.DATETIME: re.compile(
        r"-?\d{4,}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?" + _TZ + "?", re.ASCII
    ),
    FieldKind.TIME: re.compile(r"\d\d:\d\d:\d\d(?:\.\d+)?" + _TZ + "?", re.ASCII),
    FieldKind.DURATION: re.compile(
        r"-?P(?=\d|T\d)(?:\d+Y)?(?:\d+M)?(?:\d+D)?(?:T(?=\d)(?:\d+H)?(?:\d+M)?(?:\d+(?:\.\d+)?S)?)?",
        re.ASCII,
    ),
}
_INT_RANGE: dict[FieldKind, tuple[int, int]] = {
    FieldKind.INT: (INT32_MIN, INT32_MAX),
    FieldKind.LONG: (INT64_MIN, INT64_MAX),
}


@dataclass(frozen=True, slots=True)
class NodeRef:
    """A node behind the JID: ``nodeId`` plus optional ``sourceId`` and ``cacheType``."""

    node_id: str
    source_id: str | None = None
    cache_type: str | None = None

    def __post_init__(self) -> None:
        for what, text in (
            ("node_id", self.node_id),
            ("source_id", self.source_id or ""),
            ("cache_type", self.cache_type or ""),
        ):
            check_text(what, text)

    def matches(self, other: NodeRef) -> bool:
        """True if ``other`` is addressed by this (request) reference.

        ``node_id`` must be equal; ``source_id``/``cache_type`` only when this one gives them
        (XEP-0323: an ambiguous bare ``nodeId`` addresses every node with that id).
        """
        return (
            self.node_id == other.node_id
            and (self.source_id is None or self.source_id == other.source_id)
            and (self.cache_type is None or self.cache_type == other.cache_type)
        )


@dataclass(frozen=True, slots=True)
class Field:
    """One field value. ``value`` is lexical (see module docstring) and validated per ``kind``.

    ``unit`` is only allowed on ``NUMERIC`` and ``data_type`` only on ``ENUM``. An empty ``types``
    means "not specified"; an empty ``qos`` is read by peers as ``AUTOMATIC_READOUT``.
    ``writable`` None means unknown (attribute omitted).
    """

    name: str
    kind: FieldKind
    value: str
    unit: str = ""
    data_type: str = ""
    types: FieldType = FieldType.MOMENTARY
    qos: QoS = QoS.AUTOMATIC_READOUT
    writable: bool | None = None

    def __post_init__(self) -> None:
        check_text("field name", self.name)
        check_text("unit", self.unit)
        check_text("data_type", self.data_type)
        check_text("value", self.value)
        if self.unit and self.kind is not FieldKind.NUMERIC:
            raise ValueError(f"field {self.name!r}: unit is only allowed on numeric fields")
        if self.data_type and self.kind is not FieldKind.ENUM:
            raise ValueError(f"field {self.name!r}: data_type is only allowed on enum fields")
        pattern = _LEXICAL.get(self.kind)
        if pattern is not None and pattern.fullmatch(self.value) is None:
            raise ValueError(
                f"field {self.name!r}: {self.value!r} is not a valid {self.kind.value} value"
            )
        bounds = _INT_RANGE.get(self.kind)
        if bounds is not None:
            number = int(self.value)
            if not bounds[0] <= number <= bounds[1]:
                raise ValueError(
                    f"field {self.name!r}: {self.value} is out of range for {self.kind.value}"
                )

    # -- constructors -----------------------------------------------------------------------

    @classmethod
    def numeric(
        cls,
        name: str,
        value: float,
        unit: str = "",
        decimals: int = 0,
        *,
        types: FieldType = FieldType.MOMENTARY,
        qos: QoS = QoS.AUTOMATIC_READOUT,
        writable: bool | None = None,
    ) -> Field:
        """A ``numeric`` field formatted with exactly ``decimals`` decimals (precision)."""
        if decimals < 0:
            raise ValueError(f"decimals must be >= 0, got {decimals}")
        number = float(value)
        if math.isnan(number):
            text = "NaN"
        elif math.isinf(number):
            text = "INF" if number > 0 else "-INF"
        else:
            text = f"{number:.{decimals}f}"
        return cls(
            name, FieldKind.NUMERIC, text, unit=unit, types=types, qos=qos, writable=writable
        )

    @classmethod
    def integer(
        cls,
        name: str,
        value: int,
        *,
        types: FieldType = FieldType.MOMENTARY,
        qos: QoS = QoS.AUTOMATIC_READOUT,
        writable: bool | None = None,
    ) -> Field:
        """An ``int`` field, or ``long`` when ``value`` does not fit in 32 bits."""
        number = int(value)
        kind = FieldKind.INT if INT32_MIN <= number <= INT32_MAX else FieldKind.LONG
        return cls(name, kind, str(number), types=types, qos=qos, writable=writable)

    @classmethod
    def boolean(
        cls,
        name: str,
        value: bool,
        *,
        types: FieldType = FieldType.MOMENTARY,
        qos: QoS = QoS.AUTOMATIC_READOUT,
        writable: bool | None = None,
    ) -> Field:
        """A ``boolean`` field (``"true"``/``"false"``)."""
        text = "true" if value else "false"
        return cls(name, FieldKind.BOOLEAN, text, types=types, qos=qos, writable=writable)

    @classmethod
    def string(
        cls,
        name: str,
        value: str,
        *,
        types: FieldType = FieldType.MOMENTARY,
        qos: QoS = QoS.AUTOMATIC_READOUT,
        writable: bool | None = None,
    ) -> Field:
        """A ``string`` field. Characters XML cannot carry (NUL, other C0 controls...) are
        replaced by U+FFFD so device-supplied text can never break the XMPP stream."""
        text = xml_safe(value)
        return cls(name, FieldKind.STRING, text, types=types, qos=qos, writable=writable)

    @classmethod
    def enumeration(
        cls,
        name: str,
        value: str,
        data_type: str,
        *,
        types: FieldType = FieldType.MOMENTARY,
        qos: QoS = QoS.AUTOMATIC_READOUT,
        writable: bool | None = None,
    ) -> Field:
        """An ``enum`` field whose ``dataType`` names the enumeration."""
        return cls(
            name,
            FieldKind.ENUM,
            value,
            data_type=data_type,
            types=types,
            qos=qos,
            writable=writable,
        )

    # -- accessors --------------------------------------------------------------------------

    def as_float(self) -> float:
        """The value of a ``numeric``/``int``/``long`` field as a float."""
        if self.kind not in (FieldKind.NUMERIC, FieldKind.INT, FieldKind.LONG):
            raise TypeError(f"field {self.name!r} is {self.kind.value}, not a number")
        return float(self.value.replace("INF", "inf"))

    def as_int(self) -> int:
        """The value of an ``int``/``long`` field."""
        if self.kind not in (FieldKind.INT, FieldKind.LONG):
            raise TypeError(f"field {self.name!r} is {self.kind.value}, not an integer")
        return int(self.value)

    def as_bool(self) -> bool:
        """The value of a ``boolean`` field."""
        if self.kind is not FieldKind.BOOLEAN:
            raise TypeError(f"field {self.name!r} is {self.kind.value}, not a boolean")
        return self.value in ("true", "1")

    @property
    def decimals(self) -> int | None:
        """Number of decimals written in a plain ``numeric`` value (None for other kinds, or for
        exponent notation/INF/NaN)."""
        if self.kind is not FieldKind.NUMERIC or not re.fullmatch(r"[+-]?\d*\.?\d*", self.value):
            return None
        _, dot, fraction = self.value.partition(".")
        return len(fraction) if dot else 0


@dataclass(frozen=True, slots=True)
class NodeFields:
    """Fields of one node sharing one (aware) timestamp."""

    node: NodeRef
    timestamp: datetime
    fields: tuple[Field, ...] = ()

    def __post_init__(self) -> None:
        check_aware("timestamp", self.timestamp)
        object.__setattr__(self, "fields", tuple(self.fields))


@dataclass(frozen=True, slots=True)
class NodeFailure:
    """A read-out error for one node (XEP-0323 ``failure/error``)."""

    node: NodeRef
    timestamp: datetime
    message: str

    def __post_init__(self) -> None:
        check_aware("timestamp", self.timestamp)
        check_text("message", self.message)


def _check_seqnr(seqnr: int, request_id: str | None) -> None:
    if not INT32_MIN <= seqnr <= INT32_MAX:
        raise ValueError(f"seqnr {seqnr} does not fit xs:int")
    if request_id is not None:
        if not request_id or not is_xml_text(request_id):
            raise ValueError(f"invalid request id {request_id!r}")
        if seqnr != 0:
            raise ValueError("a non-integer request_id goes with seqnr 0")


@dataclass(frozen=True, slots=True)
class ReadoutRequest:
    """A parsed ``<req>``. The filters are hints; devices may return more.

    ``types`` is never empty after parsing: a ``req`` without type flags asks for ``ALL``.
    """

    seqnr: int
    types: FieldType = FieldType.ALL
    nodes: tuple[NodeRef, ...] = ()
    field_names: tuple[str, ...] = ()
    from_time: datetime | None = None
    to_time: datetime | None = None
    when: datetime | None = None
    service_tokens: tuple[str, ...] = ()
    device_tokens: tuple[str, ...] = ()
    user_tokens: tuple[str, ...] = ()
    #: The wire id when it is not an xs:int (IEEE dialect ``id``, e.g. a GUID); then ``seqnr``
    #: is 0. None: the wire id is ``str(seqnr)``. See :attr:`wire_id`.
    request_id: str | None = None

    def __post_init__(self) -> None:
        _check_seqnr(self.seqnr, self.request_id)
        for attr in ("nodes", "field_names", "service_tokens", "device_tokens", "user_tokens"):
            object.__setattr__(self, attr, tuple(getattr(self, attr)))
        for name in self.field_names:
            check_text("field name", name)
        check_tokens((*self.service_tokens, *self.device_tokens, *self.user_tokens))
        check_aware("from_time", self.from_time)
        check_aware("to_time", self.to_time)
        check_aware("when", self.when)

    @property
    def wire_id(self) -> str:
        """The correlation id as sent on the wire (``seqnr`` or IEEE ``id``)."""
        return str(self.seqnr) if self.request_id is None else self.request_id

    def wants_node(self, node: NodeRef) -> bool:
        """True if ``node`` is addressed (no ``node`` children means every node)."""
        return not self.nodes or any(ref.matches(node) for ref in self.nodes)

    def wants_field(self, name: str) -> bool:
        """True if the field name was asked for (no ``field`` children means every field)."""
        return not self.field_names or name in self.field_names

    def wants_types(self, types: FieldType) -> bool:
        """True if a field with these type flags matches the request's type filter."""
        return not types or bool(types & self.types)

    def wants(self, fld: Field) -> bool:
        """True if ``fld`` passes both the field name and the field type filter."""
        return self.wants_field(fld.name) and self.wants_types(fld.types)


def _common_node(a: NodeRef, b: NodeRef) -> NodeRef | None:
    """The reference to the nodes both ``a`` and ``b`` address, or None if there are none."""
    if a.node_id != b.node_id:
        return None
    parts: list[str | None] = []
    for mine, theirs in ((a.source_id, b.source_id), (a.cache_type, b.cache_type)):
        if mine is not None and theirs is not None and mine != theirs:
            return None
        parts.append(theirs if mine is None else mine)
    return NodeRef(a.node_id, parts[0], parts[1])


def narrow_request(
    request: ReadoutRequest,
    nodes: tuple[NodeRef, ...] | None,
    field_names: tuple[str, ...] | None,
) -> ReadoutRequest | None:
    """``request`` restricted to what an authority allowed (XEP-0324 ``canReadResponse``).

    None for ``nodes``/``field_names`` means "as requested". A narrowing never widens: a request
    for every node (or field) becomes one for the allowed ones; a request naming some keeps
    those matching an allowed one, cut to the allowed part (a bare ``nodeId`` asked, one
    ``sourceId`` of it allowed: that source only). Returns None when nothing is left.
    """
    kept_nodes = request.nodes
    if nodes is not None:
        if not request.nodes:
            both = list(dict.fromkeys(nodes))
        else:
            common = (_common_node(ref, ok) for ref in request.nodes for ok in nodes)
            both = list(dict.fromkeys(ref for ref in common if ref is not None))
        # A reference inside a broader kept one adds nothing.
        kept_nodes = tuple(
            ref for ref in both if not any(o != ref and o.matches(ref) for o in both)
        )
        if not kept_nodes:
            return None
    kept_fields = request.field_names
    if field_names is not None:
        if not request.field_names:
            kept_fields = tuple(dict.fromkeys(field_names))
        else:
            kept_fields = tuple(name for name in request.field_names if name in field_names)
        if not kept_fields:
            return None
    return dataclasses.replace(request, nodes=kept_nodes, field_names=kept_fields)


@dataclass(frozen=True, slots=True)
class FieldsMessage:
    """Payload of one ``<fields>`` element (several nodes/timestamps possible)."""

    seqnr: int
    items: tuple[NodeFields, ...] = ()
    done: bool = False
    #: Non-integer wire id (IEEE dialect), see :attr:`ReadoutRequest.request_id`.
    request_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", tuple(self.items))

    @property
    def wire_id(self) -> str:
        """The correlation id as sent on the wire."""
        return str(self.seqnr) if self.request_id is None else self.request_id

    @property
    def field_count(self) -> int:
        """Number of field values in all items."""
        return sum(len(item.fields) for item in self.items)


@dataclass(frozen=True, slots=True)
class FailureMessage:
    """Payload of one ``<failure>`` element."""

    seqnr: int
    failures: tuple[NodeFailure, ...] = ()
    done: bool = False
    #: Non-integer wire id (IEEE dialect), see :attr:`ReadoutRequest.request_id`.
    request_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "failures", tuple(self.failures))

    @property
    def wire_id(self) -> str:
        """The correlation id as sent on the wire."""
        return str(self.seqnr) if self.request_id is None else self.request_id


@dataclass(frozen=True, slots=True)
class Accepted:
    """Payload of ``<accepted>``: the device took the request (``queued`` for a later read-out)."""

    seqnr: int
    queued: bool = False
    #: Non-integer wire id (IEEE dialect), see :attr:`ReadoutRequest.request_id`.
    request_id: str | None = None

    @property
    def wire_id(self) -> str:
        """The correlation id as sent on the wire."""
        return str(self.seqnr) if self.request_id is None else self.request_id


@dataclass(frozen=True, slots=True)
class Readout:
    """A completed read-out, as collected by the client side."""

    seqnr: int
    fields: tuple[NodeFields, ...] = ()
    failures: tuple[NodeFailure, ...] = ()
    #: Set by the client when the device answered ``queued='true'``.
    queued: bool = field(default=False, compare=False)

    def filtered(
        self,
        *,
        field_names: Iterable[str] = (),
        types: FieldType = FieldType.ALL,
        nodes: Iterable[NodeRef] = (),
    ) -> Readout:
        """Client-side filter (XEP-0323: the request is only a hint, clients must filter).

        Keeps the fields whose name is in ``field_names`` (empty: any name) and whose type flags
        intersect ``types`` (fields without type flags are kept), of the nodes addressed by
        ``nodes`` (empty: any node; :meth:`NodeRef.matches`). Node entries left without fields are
        dropped; failures are filtered by node only.
        """
        request = ReadoutRequest(
            0, types=types or FieldType.ALL, nodes=tuple(nodes), field_names=tuple(field_names)
        )
        kept: list[NodeFields] = []
        for item in self.fields:
            if not request.wants_node(item.node):
                continue
            fields = tuple(fld for fld in item.fields if request.wants(fld))
            if fields:
                kept.append(NodeFields(item.node, item.timestamp, fields))
        failures = tuple(f for f in self.failures if request.wants_node(f.node))
        return Readout(self.seqnr, tuple(kept), failures, queued=self.queued)

    def find(self, name: str, node_id: str | None = None) -> Field | None:
        """The first field called ``name`` (optionally of node ``node_id``), or None."""
        for item in self.fields:
            if node_id is not None and item.node.node_id != node_id:
                continue
            for fld in item.fields:
                if fld.name == name:
                    return fld
        return None


class SensorDataSource(Protocol):
    """What the device side of the plugin reads from (implemented by the application)."""

    def has_node(self, node: NodeRef) -> bool:
        """True if the node exists (request nodes that do not → ``item-not-found``)."""
        ...

    def readout(self, request: ReadoutRequest) -> AsyncIterator[NodeFields | NodeFailure]:
        """Yield the read-out's results; typically an ``async def`` generator."""
        ...
