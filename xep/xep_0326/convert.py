"""Pure conversion between XEP-0326 XML (``xml.etree`` elements) and :mod:`.model`.

``*_to_xml`` functions build elements in the ``urn:xmpp:iot:concentrators`` namespace from model
objects (they trust the model, which validates itself). ``*_from_xml`` functions parse received
elements and raise :class:`~xep.errors.StanzaError` -- and nothing else -- on malformed input.

Wire rules applied here (``xmpp-iot-xeps.md`` §1, §5, §10):

* timestamps are emitted in UTC with ``Z``; a received timestamp without a zone is read in
  ``default_tz`` (default: the local zone);
* booleans are parsed from ``true``/``false``/``1``/``0``; optional flags are emitted only when
  true, the required ``hasChildren`` always;
* node information is emitted with ``sourceId`` (§10.5 "always include sourceId in responses";
  XEP-0326's ``NodeInformation`` lacks it, ``NodeSourceInformation`` has it). Pass
  ``with_source_id=False`` for the bare XEP shape. A received node without ``sourceId`` gets it
  from the request (``default_source``/``refs``);
* requests are strict: an unknown child element in our namespace is an error. Responses are
  lenient (§5.2): unknown children are ignored, and the payload of a response whose ``result``
  is not ``OK`` is ignored too;
* a node without ``state`` is read as ``None`` and without ``hasChildren`` as false (legacy
  peers); every other required attribute is enforced.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import tzinfo
from xml.etree.ElementTree import Element, SubElement

from xep.errors import StanzaError
from xep.xep_0323.convert import format_datetime, parse_datetime
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
from xep.xmlutil import (
    WS,
    XML_LANG,
    bool_attr,
    local_of,
    parse_bool,
    parse_tokens,
    qname,
    set_tokens,
)

__all__ = [
    "MAX_DATA_SOURCES",
    "MAX_DERIVED_FROM",
    "MAX_MESSAGES",
    "MAX_NODES",
    "MAX_PARAMETERS",
    "MAX_REQUEST_NODES",
    "MAX_SORT_KEYS",
    "MAX_TOKENS",
    "MAX_VALUES",
    "NS",
    "XML_LANG",
    "command_of",
    "data_source_from_xml",
    "data_source_to_xml",
    "error_response_to_xml",
    "local_name",
    "message_from_xml",
    "message_to_xml",
    "node_info_from_xml",
    "node_info_to_xml",
    "parameter_from_xml",
    "parameter_to_xml",
    "request_from_xml",
    "request_to_xml",
    "response_from_xml",
    "response_to_xml",
]

NS = "urn:xmpp:iot:concentrators"

#: Most ``<node>`` references accepted in one ``containsNodes``/``getNodes`` request.
MAX_REQUEST_NODES = 256
#: Most ``<onlyIfDerivedFrom>`` children accepted in one ``getAllNodes``.
MAX_DERIVED_FROM = 64
#: Most ``<sortOrder>`` children accepted in one ``getChildNodes``.
MAX_SORT_KEYS = 8
#: Most tokens of one kind (service/device/user) accepted in one request.
MAX_TOKENS = 16
#: Most ``<node>`` elements accepted (and sent by the thing side) in one response.
MAX_NODES = 4096
#: Most ``<dataSource>`` elements accepted in one response.
MAX_DATA_SOURCES = 256
#: Most ``<value>`` elements accepted in one ``getCapabilities``/``containsNodes`` response.
MAX_VALUES = 4096
#: Most parameters accepted per node.
MAX_PARAMETERS = 256
#: Most status messages accepted per node.
MAX_MESSAGES = 256

_COMMAND_BY_LOCAL: dict[str, Command] = {command.value: command for command in Command}
_COMMAND_BY_RESPONSE: dict[str, Command] = {command.response: command for command in Command}
_KIND_BY_TAG: dict[str, ParameterKind] = {kind.value: kind for kind in ParameterKind}
_STATE_BY_TEXT: dict[str, NodeState] = {state.value: state for state in NodeState}
_RESULT_BY_TEXT: dict[str, ResultCode] = {code.value: code for code in ResultCode}
_MESSAGE_TYPE_BY_TEXT: dict[str, MessageType] = {kind.value: kind for kind in MessageType}


def _q(local: str) -> str:
    return qname(NS, local)


def _local(elem: Element) -> str | None:
    """Local name of ``elem`` if it is in our namespace, else None."""
    return local_of(elem.tag, NS)


def _ours(elem: Element) -> list[Element]:
    """Children in our namespace (foreign extension elements are skipped)."""
    return [child for child in elem if _local(child) is not None]


def _set_flag(elem: Element, name: str, value: bool) -> None:
    if value:
        elem.set(name, "true")


def _required(elem: Element, name: str) -> str:
    value = elem.get(name)
    if value is None:
        raise StanzaError(f"<{_local(elem) or elem.tag}> lacks the required {name!r} attribute")
    return value


def command_of(elem: Element) -> Command | None:
    """The implemented command a request element asks for, or None (other tag or namespace)."""
    local = _local(elem)
    return None if local is None else _COMMAND_BY_LOCAL.get(local)


def local_name(elem: Element) -> str | None:
    """Local name of ``elem`` if it is in the concentrators namespace, else None."""
    return _local(elem)


# -- node references -----------------------------------------------------------------------------


def _set_ref(elem: Element, ref: NodeRef) -> None:
    if ref.source_id is not None:
        elem.set("sourceId", ref.source_id)
    elem.set("nodeId", ref.node_id)
    if ref.cache_type is not None:
        elem.set("cacheType", ref.cache_type)


def _ref_from_xml(elem: Element) -> NodeRef:
    """``sourceId`` (required by XEP-0326 but tolerated missing), ``nodeId``, ``cacheType``."""
    try:
        return NodeRef(_required(elem, "nodeId"), elem.get("sourceId"), elem.get("cacheType"))
    except ValueError as err:  # StanzaError is a ValueError too
        raise StanzaError(str(err)) from err


# -- requests ------------------------------------------------------------------------------------


def request_to_xml(request: ConcentratorRequest) -> Element:
    """The request element of ``request.command``."""
    elem = Element(_q(request.command.value))
    if request.source_id is not None:
        elem.set("sourceId", request.source_id)
    if request.node is not None:
        _set_ref(elem, request.node)
    _set_flag(elem, "parameters", request.parameters)
    _set_flag(elem, "messages", request.messages)
    if request.lang is not None:
        elem.set(XML_LANG, request.lang)
    set_tokens(elem, request)
    for ref in request.nodes:
        _set_ref(SubElement(elem, _q("node")), ref)
    for node_type in request.only_if_derived_from:
        SubElement(elem, _q("onlyIfDerivedFrom")).text = node_type
    for order in request.sort_order:
        sort = SubElement(elem, _q("sortOrder"), {"parameterName": order.parameter_name})
        if not order.ascending:
            sort.set("ascending", "false")
    return elem


def request_from_xml(elem: Element) -> ConcentratorRequest:
    """Parse a request element of one of the implemented commands.

    Attributes a command does not define are ignored; unknown child elements in our namespace
    are errors.
    """
    command = command_of(elem)
    if command is None:
        raise StanzaError(f"not an implemented XEP-0326 request: {elem.tag!r}")
    source_id = elem.get("sourceId") if command in SOURCE_COMMANDS else None
    node = _ref_from_xml(elem) if command in NODE_COMMANDS else None
    with_info = command in NODE_INFO_COMMANDS
    nodes: list[NodeRef] = []
    derived: list[str] = []
    sort_order: list[SortOrder] = []
    for child in _ours(elem):
        local = _local(child)
        if local == "node" and command in NODES_COMMANDS:
            if len(nodes) >= MAX_REQUEST_NODES:
                raise StanzaError(
                    f"too many <node> elements in <{command.value}> (limit {MAX_REQUEST_NODES})"
                )
            nodes.append(_ref_from_xml(child))
        elif local == "onlyIfDerivedFrom" and command is Command.GET_ALL_NODES:
            if len(derived) >= MAX_DERIVED_FROM:
                raise StanzaError(
                    f"too many <onlyIfDerivedFrom> elements (limit {MAX_DERIVED_FROM})"
                )
            derived.append((child.text or "").strip(WS))
        elif local == "sortOrder" and command is Command.GET_CHILD_NODES:
            if len(sort_order) >= MAX_SORT_KEYS:
                raise StanzaError(f"too many <sortOrder> elements (limit {MAX_SORT_KEYS})")
            try:
                sort_order.append(
                    SortOrder(
                        _required(child, "parameterName"), bool_attr(child, "ascending", True)
                    )
                )
            except ValueError as err:
                raise StanzaError(str(err)) from err
        else:
            raise StanzaError(f"unexpected element <{local}> in <{command.value}>")
    try:
        return ConcentratorRequest(
            command=command,
            source_id=source_id,
            node=node,
            nodes=tuple(nodes),
            parameters=with_info and bool_attr(elem, "parameters"),
            messages=with_info and bool_attr(elem, "messages"),
            only_if_derived_from=tuple(derived),
            sort_order=tuple(sort_order),
            service_tokens=parse_tokens(elem, "serviceToken", MAX_TOKENS),
            device_tokens=parse_tokens(elem, "deviceToken", MAX_TOKENS),
            user_tokens=parse_tokens(elem, "userToken", MAX_TOKENS),
            lang=elem.get(XML_LANG),
        )
    except ValueError as err:  # model invariants (StanzaError is a ValueError too)
        raise StanzaError(str(err)) from err


# -- data sources, parameters, messages, node information ----------------------------------------


def data_source_to_xml(source: DataSource) -> Element:
    """``<dataSource sourceId name hasChildren [lastChanged]/>`` (``parent_id`` is not sent)."""
    elem = Element(_q("dataSource"), {"sourceId": source.source_id, "name": source.name})
    elem.set("hasChildren", "true" if source.has_children else "false")
    if source.last_changed is not None:
        elem.set("lastChanged", format_datetime(source.last_changed))
    return elem


def data_source_from_xml(elem: Element, *, default_tz: tzinfo | None = None) -> DataSource:
    """Parse ``<dataSource>``."""
    if _local(elem) != "dataSource":
        raise StanzaError(f"expected <dataSource xmlns='{NS}'>, got {elem.tag!r}")
    changed = elem.get("lastChanged")
    try:
        return DataSource(
            _required(elem, "sourceId"),
            _required(elem, "name"),
            bool_attr(elem, "hasChildren"),
            None if changed is None else parse_datetime(changed, default_tz=default_tz),
        )
    except ValueError as err:
        raise StanzaError(str(err)) from err


def parameter_to_xml(parameter: NodeParameter) -> Element:
    """``<{kind} id name value/>``."""
    return Element(
        _q(parameter.kind.value),
        {"id": parameter.id, "name": parameter.name, "value": parameter.value},
    )


def parameter_from_xml(elem: Element) -> NodeParameter:
    """Parse one parameter element (``boolean``, ``color``, ..., ``time``)."""
    local = _local(elem)
    kind = _KIND_BY_TAG.get(local or "")
    if kind is None:
        raise StanzaError(f"unknown parameter element {elem.tag!r}")
    value = _required(elem, "value")
    if kind is not ParameterKind.STRING:
        value = value.strip(WS)  # xs whiteSpace=collapse; never reformat otherwise
    try:
        return NodeParameter(_required(elem, "id"), _required(elem, "name"), kind, value)
    except ValueError as err:
        raise StanzaError(str(err)) from err


def message_to_xml(message: NodeMessage) -> Element:
    """``<message timestamp type [eventId]>text</message>``."""
    elem = Element(
        _q("message"),
        {"timestamp": format_datetime(message.timestamp), "type": message.type.value},
    )
    if message.event_id:
        elem.set("eventId", message.event_id)
    elem.text = message.text
    return elem


def message_from_xml(elem: Element, *, default_tz: tzinfo | None = None) -> NodeMessage:
    """Parse a node status ``<message>``."""
    if _local(elem) != "message":
        raise StanzaError(f"expected <message xmlns='{NS}'>, got {elem.tag!r}")
    kind_text = _required(elem, "type")
    kind = _MESSAGE_TYPE_BY_TEXT.get(kind_text.strip(WS))
    if kind is None:
        raise StanzaError(f"unknown message type {kind_text!r}")
    try:
        return NodeMessage(
            parse_datetime(_required(elem, "timestamp"), default_tz=default_tz),
            kind,
            elem.text or "",
            elem.get("eventId", ""),
        )
    except ValueError as err:
        raise StanzaError(str(err)) from err


def _fill_node_info(elem: Element, info: NodeInfo, with_source_id: bool) -> None:
    elem.set("nodeId", info.node_id)
    if with_source_id:
        elem.set("sourceId", info.source_id)
    for attr, text in (
        ("displayName", info.display_name),
        ("nodeType", info.node_type),
        ("localId", info.local_id),
        ("logId", info.log_id),
    ):
        if text:
            elem.set(attr, text)
    if info.cache_type is not None:
        elem.set("cacheType", info.cache_type)
    elem.set("state", info.state.value)
    elem.set("hasChildren", "true" if info.has_children else "false")
    _set_flag(elem, "childrenOrdered", info.children_ordered)
    _set_flag(elem, "isReadable", info.is_readable)
    _set_flag(elem, "isControllable", info.is_controllable)
    _set_flag(elem, "hasCommands", info.has_commands)
    if info.parent_id is not None:
        elem.set("parentId", info.parent_id)
    if info.parent_cache_type is not None:
        elem.set("parentCacheType", info.parent_cache_type)
    if info.last_changed is not None:
        elem.set("lastChanged", format_datetime(info.last_changed))
    elem.extend(parameter_to_xml(parameter) for parameter in info.parameters)
    elem.extend(message_to_xml(message) for message in info.messages)


def node_info_to_xml(info: NodeInfo, *, with_source_id: bool = True) -> Element:
    """``<node …/>`` with the node information (parameters and messages as children)."""
    elem = Element(_q("node"))
    _fill_node_info(elem, info, with_source_id)
    return elem


def node_info_from_xml(
    elem: Element, *, default_source: str = "", default_tz: tzinfo | None = None
) -> NodeInfo:
    """Parse node information from the attributes and children of ``elem`` (a ``<node>`` or a
    ``getNodeResponse``). Unknown children are ignored; ``default_source`` applies when the
    element has no ``sourceId``."""
    state_text = elem.get("state")
    state = NodeState.NONE
    if state_text is not None:
        found = _STATE_BY_TEXT.get(state_text.strip(WS))
        if found is None:
            raise StanzaError(f"unknown node state {state_text!r}")
        state = found
    parameters: list[NodeParameter] = []
    messages: list[NodeMessage] = []
    for child in _ours(elem):
        local = _local(child)
        if local == "message":
            if len(messages) >= MAX_MESSAGES:
                raise StanzaError(f"too many <message> elements in a node (limit {MAX_MESSAGES})")
            messages.append(message_from_xml(child, default_tz=default_tz))
        elif local in _KIND_BY_TAG:
            if len(parameters) >= MAX_PARAMETERS:
                raise StanzaError(f"too many parameters in a node (limit {MAX_PARAMETERS})")
            parameters.append(parameter_from_xml(child))
    changed = elem.get("lastChanged")
    try:
        return NodeInfo(
            node_id=_required(elem, "nodeId"),
            source_id=elem.get("sourceId", default_source),
            cache_type=elem.get("cacheType"),
            display_name=elem.get("displayName", ""),
            node_type=elem.get("nodeType", ""),
            local_id=elem.get("localId", ""),
            log_id=elem.get("logId", ""),
            state=state,
            has_children=bool_attr(elem, "hasChildren"),
            children_ordered=bool_attr(elem, "childrenOrdered"),
            is_readable=bool_attr(elem, "isReadable"),
            is_controllable=bool_attr(elem, "isControllable"),
            has_commands=bool_attr(elem, "hasCommands"),
            parent_id=elem.get("parentId"),
            parent_cache_type=elem.get("parentCacheType"),
            last_changed=None
            if changed is None
            else parse_datetime(changed, default_tz=default_tz),
            parameters=tuple(parameters),
            messages=tuple(messages),
        )
    except ValueError as err:
        raise StanzaError(str(err)) from err


# -- responses -----------------------------------------------------------------------------------


def response_to_xml(response: ConcentratorResponse, *, with_source_id: bool = True) -> Element:
    """The ``…Response`` element, payload included."""
    command = response.command
    elem = Element(_q(command.response), {"result": response.result.value})
    if command is Command.GET_NODE:
        if response.nodes:
            _fill_node_info(elem, response.nodes[0], with_source_id)
    elif command is Command.CONTAINS_NODE:
        if response.contains:
            elem.text = "true" if response.contains[0] else "false"
    else:
        for value in response.values:
            SubElement(elem, _q("value")).text = value
        for flag in response.contains:
            SubElement(elem, _q("value")).text = "true" if flag else "false"
        elem.extend(data_source_to_xml(source) for source in response.data_sources)
        elem.extend(
            node_info_to_xml(info, with_source_id=with_source_id) for info in response.nodes
        )
    return elem


def _source_for(elem: Element, default_source: str, refs: Sequence[NodeRef]) -> str:
    """Source of a received node without ``sourceId``: the first matching request reference."""
    node_id, cache_type = elem.get("nodeId"), elem.get("cacheType")
    for ref in refs:
        if (
            ref.node_id == node_id
            and ref.source_id is not None
            and (ref.cache_type is None or cache_type is None or ref.cache_type == cache_type)
        ):
            return ref.source_id
    return default_source


def response_from_xml(
    elem: Element,
    *,
    default_source: str = "",
    refs: Sequence[NodeRef] = (),
    default_tz: tzinfo | None = None,
) -> ConcentratorResponse:
    """Parse a ``…Response`` of one of the implemented commands.

    Nodes without ``sourceId`` take the source of the first request reference in ``refs`` with
    the same ``nodeId`` (``getNodes``), else ``default_source``.
    """
    local = _local(elem) or ""
    command = _COMMAND_BY_RESPONSE.get(local)
    if command is None:
        raise StanzaError(f"not an implemented XEP-0326 response: {elem.tag!r}")
    result_text = _required(elem, "result")
    result = _RESULT_BY_TEXT.get(result_text.strip(WS))
    if result is None:
        raise StanzaError(f"unknown result code {result_text!r}")
    if result is not ResultCode.OK:
        return ConcentratorResponse(command, result)
    values: list[str] = []
    sources: list[DataSource] = []
    nodes: list[NodeInfo] = []
    if command is Command.GET_NODE:
        source = _source_for(elem, default_source, refs)
        nodes.append(node_info_from_xml(elem, default_source=source, default_tz=default_tz))
    elif command is Command.CONTAINS_NODE:
        values.append(elem.text or "")
    for child in _ours(elem):
        child_local = _local(child)
        if child_local == "value" and command in (Command.GET_CAPABILITIES, Command.CONTAINS_NODES):
            if len(values) >= MAX_VALUES:
                raise StanzaError(f"too many <value> elements (limit {MAX_VALUES})")
            values.append(child.text or "")
        elif child_local == "dataSource" and command in DATA_SOURCE_COMMANDS:
            if len(sources) >= MAX_DATA_SOURCES:
                raise StanzaError(f"too many <dataSource> elements (limit {MAX_DATA_SOURCES})")
            sources.append(data_source_from_xml(child, default_tz=default_tz))
        elif (
            child_local == "node"
            and command in NODE_INFO_COMMANDS
            and command is not Command.GET_NODE
        ):
            if len(nodes) >= MAX_NODES:
                raise StanzaError(f"too many <node> elements (limit {MAX_NODES})")
            source = _source_for(child, default_source, refs)
            nodes.append(node_info_from_xml(child, default_source=source, default_tz=default_tz))
    try:
        if command is Command.GET_CAPABILITIES:
            return ConcentratorResponse(command, result, values=tuple(v.strip(WS) for v in values))
        if command in (Command.CONTAINS_NODE, Command.CONTAINS_NODES):
            flags = tuple(parse_bool(v, f"<{local}> value") for v in values)
            return ConcentratorResponse(command, result, contains=flags)
        return ConcentratorResponse(
            command, result, data_sources=tuple(sources), nodes=tuple(nodes)
        )
    except ValueError as err:
        raise StanzaError(str(err)) from err


def error_response_to_xml(command_local: str, result: ResultCode) -> Element:
    """A payload-less ``<{command_local}Response result>`` (also for unimplemented commands)."""
    return Element(_q(command_local + "Response"), {"result": result.value})
