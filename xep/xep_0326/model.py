"""Typed, immutable model of XEP-0326 (IoT Concentrators) browsing commands.

Pure module: no XML, no I/O, no slixmpp. :mod:`xep.xep_0326.convert` maps it to and from the wire.

Node references reuse :class:`xep.xep_0323.model.NodeRef`. XEP-0326 makes ``sourceId`` *required*
in node references; the model still allows ``source_id=None`` so that a sloppy request can be
parsed and answered (the plugin answers ``NotFound``: no node lives outside a data source) instead
of being refused as malformed.

Parameter values are kept *lexically* (``"12.50"`` stays ``"12.50"``), validated per kind.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from xep.xep_0323.model import NodeRef
from xep.xmlutil import check_aware, check_text, check_tokens

__all__ = [
    "INT32_MAX",
    "INT32_MIN",
    "INT64_MAX",
    "INT64_MIN",
    "Command",
    "ConcentratorRequest",
    "ConcentratorResponse",
    "ConcentratorSource",
    "DataSource",
    "MessageType",
    "NodeInfo",
    "NodeMessage",
    "NodeParameter",
    "NodeRef",
    "NodeState",
    "ParameterKind",
    "ResultCode",
    "SortOrder",
]

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


class NodeState(enum.Enum):
    """Dynamic node state, in increasing severity ("Signed" = seen by an operator)."""

    NONE = "None"
    INFORMATION = "Information"
    WARNING_SIGNED = "WarningSigned"
    WARNING_UNSIGNED = "WarningUnsigned"
    ERROR_SIGNED = "ErrorSigned"
    ERROR_UNSIGNED = "ErrorUnsigned"


class ResultCode(enum.Enum):
    """The ``result`` attribute of every ``…Response`` (XEP-0326 uses no stanza errors)."""

    OK = "OK"
    NOT_FOUND = "NotFound"
    INSUFFICIENT_PRIVILEGES = "InsufficientPrivileges"
    LOCKED = "Locked"
    NOT_IMPLEMENTED = "NotImplemented"
    FORM_ERROR = "FormError"
    OTHER_ERROR = "OtherError"


class MessageType(enum.Enum):
    """``type`` of a node status ``<message>``."""

    ERROR = "Error"
    WARNING = "Warning"
    INFORMATION = "Information"


class ParameterKind(enum.Enum):
    """Type of a node parameter; the enum value is the XML element name."""

    BOOLEAN = "boolean"
    COLOR = "color"
    DATETIME = "dateTime"
    DOUBLE = "double"
    DURATION = "duration"
    INT = "int"
    LONG = "long"
    STRING = "string"
    TIME = "time"


class Command(enum.Enum):
    """The XEP-0326 requests this package implements; the value is the request element name."""

    GET_CAPABILITIES = "getCapabilities"
    GET_ALL_DATA_SOURCES = "getAllDataSources"
    GET_ROOT_DATA_SOURCES = "getRootDataSources"
    GET_CHILD_DATA_SOURCES = "getChildDataSources"
    CONTAINS_NODE = "containsNode"
    CONTAINS_NODES = "containsNodes"
    GET_NODE = "getNode"
    GET_NODES = "getNodes"
    GET_ALL_NODES = "getAllNodes"
    GET_ROOT_NODES = "getRootNodes"
    GET_CHILD_NODES = "getChildNodes"
    GET_ANCESTORS = "getAncestors"

    @property
    def response(self) -> str:
        """Local name of the response element."""
        return self.value + "Response"


#: Commands whose request carries ``sourceId`` only.
SOURCE_COMMANDS = frozenset(
    {Command.GET_CHILD_DATA_SOURCES, Command.GET_ALL_NODES, Command.GET_ROOT_NODES}
)
#: Commands whose request carries one node reference as attributes.
NODE_COMMANDS = frozenset(
    {Command.CONTAINS_NODE, Command.GET_NODE, Command.GET_CHILD_NODES, Command.GET_ANCESTORS}
)
#: Commands whose request carries ``<node/>`` children.
NODES_COMMANDS = frozenset({Command.CONTAINS_NODES, Command.GET_NODES})
#: Commands accepting ``parameters``/``messages`` and answering with node information.
NODE_INFO_COMMANDS = frozenset(
    {
        Command.GET_NODE,
        Command.GET_NODES,
        Command.GET_ALL_NODES,
        Command.GET_ROOT_NODES,
        Command.GET_CHILD_NODES,
        Command.GET_ANCESTORS,
    }
)
#: Commands answering with ``<dataSource/>`` children.
DATA_SOURCE_COMMANDS = frozenset(
    {Command.GET_ALL_DATA_SOURCES, Command.GET_ROOT_DATA_SOURCES, Command.GET_CHILD_DATA_SOURCES}
)

_TZ = r"(?:Z|[+-](?:(?:0\d|1[0-3]):[0-5]\d|14:00))"
_LEXICAL: dict[ParameterKind, re.Pattern[str]] = {
    ParameterKind.BOOLEAN: re.compile(r"true|false|1|0"),
    ParameterKind.COLOR: re.compile(r"[0-9a-fA-F]{6}", re.ASCII),
    ParameterKind.DATETIME: re.compile(
        r"-?\d{4,}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?" + _TZ + "?", re.ASCII
    ),
    ParameterKind.DOUBLE: re.compile(
        r"(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?INF|NaN)", re.ASCII
    ),
    ParameterKind.DURATION: re.compile(
        r"-?P(?=\d|T\d)(?:\d+Y)?(?:\d+M)?(?:\d+D)?(?:T(?=\d)(?:\d+H)?(?:\d+M)?(?:\d+(?:\.\d+)?S)?)?",
        re.ASCII,
    ),
    ParameterKind.INT: re.compile(r"[+-]?\d{1,20}", re.ASCII),
    ParameterKind.LONG: re.compile(r"[+-]?\d{1,20}", re.ASCII),
    ParameterKind.TIME: re.compile(r"\d\d:\d\d:\d\d(?:\.\d+)?" + _TZ + "?", re.ASCII),
}
_INT_RANGE: dict[ParameterKind, tuple[int, int]] = {
    ParameterKind.INT: (INT32_MIN, INT32_MAX),
    ParameterKind.LONG: (INT64_MIN, INT64_MAX),
}


@dataclass(frozen=True, slots=True)
class DataSource:
    """A data source of the concentrator.

    ``parent_id`` is not on the wire (XEP-0326 only sends ``hasChildren``); the thing side uses
    it to answer ``getRootDataSources`` (sources without parent) and ``getChildDataSources``.
    Parsed sources always have ``parent_id=None``.
    """

    source_id: str
    name: str
    has_children: bool = False
    last_changed: datetime | None = None
    parent_id: str | None = None

    def __post_init__(self) -> None:
        check_text("source_id", self.source_id)
        check_text("name", self.name)
        check_text("parent_id", self.parent_id)
        check_aware("last_changed", self.last_changed)


@dataclass(frozen=True, slots=True)
class NodeParameter:
    """One node parameter (concentrator-side configuration). ``value`` is lexical, per ``kind``."""

    id: str
    name: str
    kind: ParameterKind
    value: str

    def __post_init__(self) -> None:
        check_text("parameter id", self.id)
        check_text("parameter name", self.name)
        check_text("parameter value", self.value)
        pattern = _LEXICAL.get(self.kind)
        if pattern is not None and pattern.fullmatch(self.value) is None:
            raise ValueError(
                f"parameter {self.id!r}: {self.value!r} is not a valid {self.kind.value} value"
            )
        bounds = _INT_RANGE.get(self.kind)
        if bounds is not None and not bounds[0] <= int(self.value) <= bounds[1]:
            raise ValueError(
                f"parameter {self.id!r}: {self.value} is out of range for {self.kind.value}"
            )

    @classmethod
    def string(cls, id: str, name: str, value: str) -> NodeParameter:
        """A ``string`` parameter."""
        return cls(id, name, ParameterKind.STRING, value)

    @classmethod
    def integer(cls, id: str, name: str, value: int) -> NodeParameter:
        """An ``int`` parameter, or ``long`` when ``value`` does not fit in 32 bits."""
        kind = ParameterKind.INT if INT32_MIN <= value <= INT32_MAX else ParameterKind.LONG
        return cls(id, name, kind, str(int(value)))

    @classmethod
    def boolean(cls, id: str, name: str, value: bool) -> NodeParameter:
        """A ``boolean`` parameter (``"true"``/``"false"``)."""
        return cls(id, name, ParameterKind.BOOLEAN, "true" if value else "false")

    def sort_key(self) -> tuple[int, float, str]:
        """Key ordering numbers numerically and everything else lexically (numbers first)."""
        if self.kind in (ParameterKind.INT, ParameterKind.LONG):
            return (0, float(int(self.value)), "")
        if self.kind is ParameterKind.DOUBLE and self.value != "NaN":
            return (0, float(self.value.replace("INF", "inf")), "")
        return (1, 0.0, self.value)


@dataclass(frozen=True, slots=True)
class NodeMessage:
    """A node status message (``<message timestamp type [eventId]>text</message>``)."""

    timestamp: datetime
    type: MessageType
    text: str
    event_id: str = ""

    def __post_init__(self) -> None:
        check_aware("timestamp", self.timestamp)
        check_text("message text", self.text)
        check_text("event_id", self.event_id)


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """Node information as returned by ``getNode``/``getNodes``/... (XEP-0326 §3 Node Information).

    Empty strings mean "attribute absent" for ``display_name``/``node_type``/``local_id``/
    ``log_id``; None means absent for ``cache_type``/``parent_id``/``parent_cache_type``/
    ``last_changed``.
    """

    node_id: str
    source_id: str
    cache_type: str | None = None
    display_name: str = ""
    node_type: str = ""
    local_id: str = ""
    log_id: str = ""
    state: NodeState = NodeState.NONE
    has_children: bool = False
    children_ordered: bool = False
    is_readable: bool = False
    is_controllable: bool = False
    has_commands: bool = False
    parent_id: str | None = None
    parent_cache_type: str | None = None
    last_changed: datetime | None = None
    parameters: tuple[NodeParameter, ...] = ()
    messages: tuple[NodeMessage, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "parameters", tuple(self.parameters))
        object.__setattr__(self, "messages", tuple(self.messages))
        for what in (
            "node_id",
            "source_id",
            "cache_type",
            "display_name",
            "node_type",
            "local_id",
            "log_id",
            "parent_id",
            "parent_cache_type",
        ):
            check_text(what, getattr(self, what))
        check_aware("last_changed", self.last_changed)

    @property
    def ref(self) -> NodeRef:
        """The fully qualified reference of this node."""
        return NodeRef(self.node_id, self.source_id, self.cache_type)

    @property
    def parent_ref(self) -> NodeRef | None:
        """Reference of the parent node (same source), or None for a root node."""
        if self.parent_id is None:
            return None
        return NodeRef(self.parent_id, self.source_id, self.parent_cache_type)

    def parameter(self, id: str) -> NodeParameter | None:
        """The parameter with this ``id``, or None."""
        return next((p for p in self.parameters if p.id == id), None)


@dataclass(frozen=True, slots=True)
class SortOrder:
    """``<sortOrder parameterName [ascending]>`` of ``getChildNodes``."""

    parameter_name: str
    ascending: bool = True

    def __post_init__(self) -> None:
        check_text("parameter_name", self.parameter_name)


@dataclass(frozen=True, slots=True)
class ConcentratorRequest:
    """One parsed XEP-0326 request. Which fields apply depends on ``command``:

    * ``source_id``: ``getChildDataSources``, ``getAllNodes``, ``getRootNodes`` (None = absent);
    * ``node``: ``containsNode``, ``getNode``, ``getChildNodes``, ``getAncestors`` (required);
    * ``nodes``: ``containsNodes``, ``getNodes``;
    * ``parameters``/``messages``: the node-information commands;
    * ``only_if_derived_from``: ``getAllNodes``; ``sort_order``: ``getChildNodes``.

    Tokens and ``lang`` (``xml:lang``) are accepted by every command.
    """

    command: Command
    source_id: str | None = None
    node: NodeRef | None = None
    nodes: tuple[NodeRef, ...] = ()
    parameters: bool = False
    messages: bool = False
    only_if_derived_from: tuple[str, ...] = ()
    sort_order: tuple[SortOrder, ...] = ()
    service_tokens: tuple[str, ...] = ()
    device_tokens: tuple[str, ...] = ()
    user_tokens: tuple[str, ...] = ()
    lang: str | None = None

    def __post_init__(self) -> None:
        for attr in (
            "nodes",
            "only_if_derived_from",
            "sort_order",
            "service_tokens",
            "device_tokens",
            "user_tokens",
        ):
            object.__setattr__(self, attr, tuple(getattr(self, attr)))
        command = self.command
        if self.source_id is not None and command not in SOURCE_COMMANDS:
            raise ValueError(f"{command.value} takes no source_id")
        if (self.node is None) == (command in NODE_COMMANDS):
            raise ValueError(f"{command.value} {'needs' if self.node is None else 'takes no'} node")
        if self.nodes and command not in NODES_COMMANDS:
            raise ValueError(f"{command.value} takes no nodes")
        if (self.parameters or self.messages) and command not in NODE_INFO_COMMANDS:
            raise ValueError(f"{command.value} takes no parameters/messages flags")
        if self.only_if_derived_from and command is not Command.GET_ALL_NODES:
            raise ValueError(f"{command.value} takes no only_if_derived_from")
        if self.sort_order and command is not Command.GET_CHILD_NODES:
            raise ValueError(f"{command.value} takes no sort_order")
        check_text("source_id", self.source_id)
        check_text("lang", self.lang)
        for node_type in self.only_if_derived_from:
            check_text("only_if_derived_from", node_type)
        check_tokens((*self.service_tokens, *self.device_tokens, *self.user_tokens))

    @property
    def refs(self) -> tuple[NodeRef, ...]:
        """Every node reference of the request (``node`` and ``nodes``)."""
        return (self.node, *self.nodes) if self.node is not None else self.nodes


@dataclass(frozen=True, slots=True)
class ConcentratorResponse:
    """One ``…Response``. Which payload applies depends on ``command``:

    * ``values``: ``getCapabilities`` (command names);
    * ``data_sources``: the three data-source commands;
    * ``contains``: ``containsNode`` (exactly one value when OK) and ``containsNodes``;
    * ``nodes``: the node-information commands (``getNode``: exactly one node when OK).

    A response whose ``result`` is not OK carries no payload.
    """

    command: Command
    result: ResultCode = ResultCode.OK
    values: tuple[str, ...] = ()
    data_sources: tuple[DataSource, ...] = ()
    contains: tuple[bool, ...] = ()
    nodes: tuple[NodeInfo, ...] = ()

    def __post_init__(self) -> None:
        for attr in ("values", "data_sources", "contains", "nodes"):
            object.__setattr__(self, attr, tuple(getattr(self, attr)))
        command = self.command
        payloads = {
            "values": command is Command.GET_CAPABILITIES,
            "data_sources": command in DATA_SOURCE_COMMANDS,
            "contains": command in (Command.CONTAINS_NODE, Command.CONTAINS_NODES),
            "nodes": command in NODE_INFO_COMMANDS,
        }
        for attr, allowed in payloads.items():
            if getattr(self, attr) and (not allowed or self.result is not ResultCode.OK):
                raise ValueError(f"{command.response} result={self.result.value} takes no {attr}")
        if self.result is ResultCode.OK:
            if command is Command.GET_NODE and len(self.nodes) != 1:
                raise ValueError("an OK getNodeResponse carries exactly one node")
            if command is Command.CONTAINS_NODE and len(self.contains) != 1:
                raise ValueError("an OK containsNodeResponse carries exactly one value")
        for value in self.values:
            check_text("value", value)


class ConcentratorSource(Protocol):
    """What the thing side of the plugin browses (implemented by the application).

    Methods are synchronous lookups in the application's node tree; exceptions are caught by the
    plugin (answered with ``OtherError`` and logged). Node references passed in always carry a
    ``source_id``.
    """

    def data_sources(self) -> Sequence[DataSource]:
        """Every data source (flat list; ``parent_id`` gives the tree)."""
        ...

    def root_nodes(self, source_id: str) -> Sequence[NodeInfo] | None:
        """Root nodes of a source; None when there is no such source."""
        ...

    def node(self, ref: NodeRef) -> NodeInfo | None:
        """One node, or None when it does not exist."""
        ...

    def child_nodes(self, ref: NodeRef) -> Sequence[NodeInfo] | None:
        """Children of a node (in order); None when the node does not exist."""
        ...

    def all_nodes(self, source_id: str) -> Sequence[NodeInfo] | None:
        """Every node of a source; None when there is no such source."""
        ...
