"""Wire dialects of the XMPP IoT protocols: ONE table of element/attribute/namespace names.

Two families speak the same protocols with different names (``xmpp-iot-xeps.md`` §8, §10.1):

* :data:`XSF` -- the XEPs as published (``urn:xmpp:iot:sensordata``, ``seqnr``, ``nodeId`` ...):
  slixmpp, Smack and our own primary profile.
* :data:`IEEE` -- the IEEE P1451.99 successor Waher's IoTGateway/Neuron speak
  (``urn:ieee:iot:sd:1.0``, ``id``, compact names ``nd``/``ts``/``q``...). :data:`NF` is the same
  dialect under the Neuro-Foundation namespace (``urn:nf:iot:sd:1.0``) newer IoTGateways use.

A :class:`Dialect` groups its names *by function* (``sensordata``, later ``control``,
``concentrator``, ``events``, ``provisioning``); each function is its own frozen dataclass, so a
new function is one more dataclass and one more field here, filled per dialect, without touching
the others. Only ``sensordata`` is filled in now. Converters (:mod:`xep.xep_0323.convert`) build
and parse through these names and never spell a tag themselves.

Semantic differences that are not just renamings are flags of the table too, so the converters
stay dialect-agnostic:

* ``id_is_int``: XSF ``seqnr`` is an xs:int; the IEEE ``id`` is any string (Waher sends GUIDs);
* ``done_attr`` vs ``more_attr``: XSF ends with ``done='true'``, IEEE with ``more='false'`` (or no
  ``more``); the meaning is inverted;
* ``failure``: XSF reports node errors in a separate ``<failure>`` of ``<error nodeId timestamp>``;
  IEEE has no such element -- errors are ``<err>`` children of ``nd/ts`` inside the same ``resp``
  that carries fields (``failure is None``);
* ``cancelled``: XSF answers ``<cancel>`` with ``<cancelled>``; IEEE with an empty IQ result;
* type flags: XSF has one flag per historical period, IEEE only ``h`` (historical, period not
  given). Emitting a historical period in IEEE therefore writes ``h``; reading ``h`` gives
  ``HISTORICAL`` in a request (any period) and ``HISTORICAL_OTHER`` on a field (unspecified
  period) -- the one lossy corner of the mapping.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from xep.xmlutil import local_of, qname

__all__ = [
    "DIALECTS",
    "IEEE",
    "NF",
    "XSF",
    "Dialect",
    "NodeRefNames",
    "SensorDataNames",
    "by_namespace",
]

#: ``(flag, attribute)`` pairs; ``flag`` names members of ``FieldType``/``QoS`` of
#: :mod:`xep.xep_0323.model` (``"A|B"`` for a union), so this module imports nothing.
FlagTable = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class NodeRefNames:
    """Attribute names of a node reference (XEP-0323/0325/0326/0347 share them)."""

    node_id: str
    source_id: str
    cache_type: str


@dataclass(frozen=True, slots=True)
class SensorDataNames:
    """Names of XEP-0323 sensor data (and its IEEE successor)."""

    namespace: str
    # correlation id of a read-out (req/accepted/started/fields/failure/done/cancel)
    id_attr: str
    id_is_int: bool
    # <req>
    req: str
    req_node: str
    req_field: str
    req_field_name: str
    from_attr: str
    to_attr: str
    when_attr: str
    token_attrs: tuple[str, str, str]  # service, device, user
    all_attr: str
    historical_attr: str | None
    # type flags: (mask, attribute) emitted when ``types & mask``; parse tables per context
    type_emit: FlagTable
    request_type_parse: FlagTable
    field_type_parse: FlagTable
    qos_attrs: FlagTable
    # answers
    accepted: str
    queued_attr: str
    started: str
    done: str
    cancel: str
    cancelled: str | None
    rejected: str | None
    # results
    fields: str
    done_attr: str | None
    more_attr: str | None
    node: str
    node_ref: NodeRefNames
    timestamp: str
    timestamp_value: str
    failure: str | None
    error: str
    error_timestamp: str | None
    # field value elements and their attributes
    # (``FieldKind`` value, element name); the XSF names are the ``FieldKind`` values themselves
    kinds: tuple[tuple[str, str], ...]
    kind_aliases: tuple[tuple[str, str], ...]
    field_name: str
    field_value: str
    field_unit: str
    field_data_type: str
    field_writable: str
    field_module: str
    field_string_ids: str

    def tag(self, local: str) -> str:
        """Clark notation ``{namespace}local``."""
        return qname(self.namespace, local)

    def local(self, tag: object) -> str | None:
        """Local name of a Clark-notation tag in this namespace, else None."""
        return local_of(tag, self.namespace)

    def kind_tag(self, kind: str) -> str:
        """Element name of a field value kind (given as its ``FieldKind`` value)."""
        return dict(self.kinds)[kind]

    def kind_of(self, local: str) -> str | None:
        """``FieldKind`` value of an element name (aliases included), or None."""
        for kind, name in self.kinds + self.kind_aliases:
            if name == local:
                return kind
        return None


@dataclass(frozen=True, slots=True)
class Dialect:
    """All names of one dialect, grouped by function. Unfilled functions are None."""

    name: str
    sensordata: SensorDataNames
    # Reserved for the other IoT functions; filled when those plugins move onto this table.
    control: None = None
    concentrator: None = None
    events: None = None
    provisioning: None = None

    def __repr__(self) -> str:
        return f"Dialect({self.name!r})"


_XSF_TYPES: FlagTable = (
    ("MOMENTARY", "momentary"),
    ("PEAK", "peak"),
    ("STATUS", "status"),
    ("COMPUTED", "computed"),
    ("IDENTITY", "identity"),
    ("HISTORICAL_SECOND", "historicalSecond"),
    ("HISTORICAL_MINUTE", "historicalMinute"),
    ("HISTORICAL_HOUR", "historicalHour"),
    ("HISTORICAL_DAY", "historicalDay"),
    ("HISTORICAL_WEEK", "historicalWeek"),
    ("HISTORICAL_MONTH", "historicalMonth"),
    ("HISTORICAL_QUARTER", "historicalQuarter"),
    ("HISTORICAL_YEAR", "historicalYear"),
    ("HISTORICAL_OTHER", "historicalOther"),
)
_XSF_TYPE_ALIASES: FlagTable = (("IDENTITY", "identification"),)

XSF = Dialect(
    name="xsf",
    sensordata=SensorDataNames(
        namespace="urn:xmpp:iot:sensordata",
        id_attr="seqnr",
        id_is_int=True,
        req="req",
        req_node="node",
        req_field="field",
        req_field_name="name",
        from_attr="from",
        to_attr="to",
        when_attr="when",
        token_attrs=("serviceToken", "deviceToken", "userToken"),
        all_attr="all",
        historical_attr="historical",
        type_emit=_XSF_TYPES,
        request_type_parse=_XSF_TYPES + _XSF_TYPE_ALIASES,
        field_type_parse=_XSF_TYPES + _XSF_TYPE_ALIASES,
        qos_attrs=(
            ("MISSING", "missing"),
            ("IN_PROGRESS", "inProgress"),
            ("AUTOMATIC_ESTIMATE", "automaticEstimate"),
            ("MANUAL_ESTIMATE", "manualEstimate"),
            ("MANUAL_READOUT", "manualReadout"),
            ("AUTOMATIC_READOUT", "automaticReadout"),
            ("TIME_OFFSET", "timeOffset"),
            ("WARNING", "warning"),
            ("ERROR", "error"),
            ("SIGNED", "signed"),
            ("INVOICED", "invoiced"),
            ("END_OF_SERIES", "endOfSeries"),
            ("POWER_FAILURE", "powerFailure"),
            ("INVOICE_CONFIRMED", "invoiceConfirmed"),
        ),
        accepted="accepted",
        queued_attr="queued",
        started="started",
        done="done",
        cancel="cancel",
        cancelled="cancelled",
        rejected="rejected",
        fields="fields",
        done_attr="done",
        more_attr=None,
        node="node",
        node_ref=NodeRefNames("nodeId", "sourceId", "cacheType"),
        timestamp="timestamp",
        timestamp_value="value",
        failure="failure",
        error="error",
        error_timestamp="timestamp",
        kinds=tuple(
            (kind, kind)
            for kind in (
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
            )
        ),
        kind_aliases=(("duration", "timeSpan"),),  # pre-0.3 name
        field_name="name",
        field_value="value",
        field_unit="unit",
        field_data_type="dataType",
        field_writable="writable",
        field_module="module",
        field_string_ids="stringIds",
    ),
)

_IEEE_TYPES: FlagTable = (
    ("MOMENTARY", "m"),
    ("PEAK", "p"),
    ("STATUS", "s"),
    ("COMPUTED", "c"),
    ("IDENTITY", "i"),
    ("HISTORICAL", "h"),
)
# Fields: ``h`` has no period (see module docstring); ``all`` (Waher writes it on fields that
# carry every type) maps to the IEEE types, with the period unspecified.
_IEEE_FIELD_TYPES: FlagTable = (
    *_IEEE_TYPES[:-1],
    ("HISTORICAL_OTHER", "h"),
    ("MOMENTARY|PEAK|STATUS|COMPUTED|IDENTITY|HISTORICAL_OTHER", "all"),
)

IEEE = Dialect(
    name="ieee",
    sensordata=SensorDataNames(
        namespace="urn:ieee:iot:sd:1.0",
        id_attr="id",
        id_is_int=False,
        req="req",
        req_node="nd",
        req_field="f",
        req_field_name="n",
        from_attr="from",
        to_attr="to",
        when_attr="when",
        token_attrs=("st", "dt", "ut"),
        all_attr="all",
        historical_attr=None,  # ``h`` is already in the type table
        type_emit=_IEEE_TYPES,
        request_type_parse=_IEEE_TYPES,
        field_type_parse=_IEEE_FIELD_TYPES,
        qos_attrs=(
            ("MISSING", "ms"),
            ("IN_PROGRESS", "pr"),
            ("AUTOMATIC_ESTIMATE", "ae"),
            ("MANUAL_ESTIMATE", "me"),
            ("MANUAL_READOUT", "mr"),
            ("AUTOMATIC_READOUT", "ar"),
            ("TIME_OFFSET", "of"),
            ("WARNING", "w"),
            ("ERROR", "er"),
            ("SIGNED", "so"),
            ("INVOICED", "iv"),
            ("END_OF_SERIES", "eos"),
            ("POWER_FAILURE", "pf"),
            ("INVOICE_CONFIRMED", "ic"),
        ),
        accepted="accepted",
        queued_attr="queued",
        started="started",
        done="done",
        cancel="cancel",
        cancelled=None,  # empty IQ result
        rejected=None,
        fields="resp",
        done_attr=None,
        more_attr="more",
        node="nd",
        node_ref=NodeRefNames("id", "src", "pt"),
        timestamp="ts",
        timestamp_value="v",
        failure=None,  # <err> inside resp/nd/ts
        error="err",
        error_timestamp=None,
        kinds=(
            ("numeric", "q"),
            ("int", "i"),
            ("long", "l"),
            ("boolean", "b"),
            ("string", "s"),
            ("enum", "e"),
            ("date", "d"),
            ("dateTime", "dt"),
            ("time", "t"),
            ("duration", "dr"),
        ),
        kind_aliases=(),
        field_name="n",
        field_value="v",
        field_unit="u",
        field_data_type="t",
        field_writable="ctr",
        field_module="lns",
        field_string_ids="loc",
    ),
)

#: The IEEE dialect under the Neuro-Foundation namespace (IoTGateway since 2024-08).
NF = Dialect(
    name="nf",
    sensordata=replace(IEEE.sensordata, namespace="urn:nf:iot:sd:1.0"),
)

#: Every known dialect, in order of preference when negotiating.
DIALECTS: tuple[Dialect, ...] = (XSF, IEEE, NF)


def by_namespace(namespace: str) -> Dialect | None:
    """The dialect whose sensor data namespace is ``namespace``, or None."""
    for dialect in DIALECTS:
        if dialect.sensordata.namespace == namespace:
            return dialect
    return None
