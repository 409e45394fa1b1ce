"""The ``xep_0326_ncap`` slixmpp plugin: XEP-0326 thing side and client side, asyncio only.

Thing side: set :attr:`XEP_0326.source` (a :class:`~.model.ConcentratorSource`) and
:attr:`XEP_0326.authorize` (async ``requester -> bool``; the default denies everything). Every
IQ get/set whose payload is in ``urn:xmpp:iot:concentrators`` is answered:

* implemented command → ``<{command}Response result='…'>`` in an IQ **result**, whatever the
  code (``xmpp-iot-xeps.md`` §5.5: safest for generic routers). Not authorized (or authorizer
  failure) → ``InsufficientPrivileges`` with no data; unknown source/node → ``NotFound``; a
  source exception, an inconsistent tree or no source at all → ``OtherError`` (logged, never
  raised into the loop);
* unknown element in our namespace → ``<{name}Response result='NotImplemented'/>`` (IQ result),
  before any authorization (it reveals nothing);
* malformed request → IQ **error** ``modify/bad-request`` (with the parser's text) that *also*
  carries ``<{command}Response result='OtherError'/>``, so both RFC 6120 and XEP-0326 clients
  understand it (§5.5 allows error IQs with a proper ``<error>`` child).

Node references without ``sourceId`` (required by XEP-0326) address no node: ``NotFound``
(``containsNode`` answers ``false``). Read-only commands sent in an IQ set are served too.

Client side: ``await plugin.get_node(jid, ref)`` etc. return model objects or raise
:class:`~xep.errors.ConcentratorError` (non-OK code, also for plain stanza errors),
:class:`~xep.errors.ConcentratorTimeout` or :class:`~xep.errors.StanzaError` (garbage answer).
A ``…Response`` is accepted in both result and error IQs and its ``result`` always checked.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, ClassVar
from xml.etree.ElementTree import Element

from slixmpp import JID, Iq
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.plugins import BasePlugin
from slixmpp.xmlstream.handler import CoroutineCallback
from slixmpp.xmlstream.matcher.base import MatcherBase
from slixmpp.xmlstream.stanzabase import StanzaBase

from xep.errors import ConcentratorError, ConcentratorTimeout, StanzaError
from xep.xep_0326 import convert
from xep.xep_0326.model import (
    Command,
    ConcentratorRequest,
    ConcentratorResponse,
    ConcentratorSource,
    DataSource,
    NodeInfo,
    NodeRef,
    ResultCode,
    SortOrder,
)
from xep.xep_0326.stanza import register_stanzas

__all__ = ["CAPABILITIES", "XEP_0326", "Authorizer", "deny_all"]

_LOGGER = logging.getLogger(__name__)

NS = convert.NS
_HANDLER = "XEP-0326 ncap request"

#: ``async (requester full JID) -> allowed``.
Authorizer = Callable[[JID], Awaitable[bool]]

#: What ``getCapabilities`` answers: exactly the implemented commands.
CAPABILITIES: tuple[str, ...] = tuple(command.value for command in Command)

#: Stanza error condition → result code, for peers answering with plain RFC 6120 errors.
_CONDITION_CODES: dict[str, ResultCode] = {
    "item-not-found": ResultCode.NOT_FOUND,
    "forbidden": ResultCode.INSUFFICIENT_PRIVILEGES,
    "not-authorized": ResultCode.INSUFFICIENT_PRIVILEGES,
    "feature-not-implemented": ResultCode.NOT_IMPLEMENTED,
    "service-unavailable": ResultCode.NOT_IMPLEMENTED,
    "resource-constraint": ResultCode.LOCKED,
}


async def deny_all(requester: JID) -> bool:
    """The default authorizer: fail closed."""
    _LOGGER.debug("denying concentrator request from %s (no authorizer set)", requester)
    return False


def _payload(stanza: StanzaBase) -> Element | None:
    """The first child of ``stanza`` in the concentrators namespace."""
    return next((child for child in stanza.xml if convert.local_name(child) is not None), None)


class _IsConcentratorRequest(MatcherBase):
    """Matches ``<iq type='get'|'set'>`` with a payload in ``urn:xmpp:iot:concentrators``."""

    def __init__(self) -> None:
        super().__init__(NS)

    def match(self, xml: StanzaBase) -> bool:
        return isinstance(xml, Iq) and xml["type"] in ("get", "set") and _payload(xml) is not None


class _Inconsistent(Exception):
    """The source's node tree contradicts itself (dangling parent, cycle, too many nodes)."""


def _sorted_children(nodes: Sequence[NodeInfo], order: Sequence[SortOrder]) -> list[NodeInfo]:
    """Stable multi-key sort by parameter value; nodes lacking the parameter go last."""
    result = list(nodes)
    for key in reversed(order):
        present = [n for n in result if n.parameter(key.parameter_name) is not None]
        missing = [n for n in result if n.parameter(key.parameter_name) is None]

        def sort_key(node: NodeInfo, name: str = key.parameter_name) -> tuple[int, float, str]:
            parameter = node.parameter(name)
            assert parameter is not None
            return parameter.sort_key()

        present.sort(key=sort_key, reverse=not key.ascending)
        result = present + missing
    return result


class XEP_0326(BasePlugin):
    """XEP-0326 IoT Concentrators, thing and client side (see module docstring)."""

    name = "xep_0326_ncap"
    description = "XEP-0326: IoT Concentrators (NCAP asyncio implementation)"
    dependencies: ClassVar[set[str]] = {"xep_0030"}
    #: ``default_tz``: zone for received timestamps without one (None = local zone).
    #: ``emit_source_id``: put ``sourceId`` on node information (§10.5); False = bare XEP shape.
    default_config: ClassVar[dict[str, Any]] = {
        "default_tz": None,
        "emit_source_id": True,
    }

    # -- lifecycle --------------------------------------------------------------------------

    def plugin_init(self) -> None:
        #: Thing side: the node tree to browse. None → ``OtherError`` (capabilities still work).
        self.source: ConcentratorSource | None = None
        #: Thing side: access decision per requester; exceptions count as "deny".
        self.authorize: Authorizer = deny_all
        self._tz = self.config["default_tz"]
        self._with_source_id = bool(self.config["emit_source_id"])
        register_stanzas()
        self.xmpp.register_handler(
            CoroutineCallback(_HANDLER, _IsConcentratorRequest(), self._handle_request)
        )

    def session_bind(self, jid: JID | str) -> None:
        self.xmpp.plugin["xep_0030"].add_feature(NS)

    def plugin_end(self) -> None:
        self.xmpp.remove_handler(_HANDLER)
        self.xmpp.plugin["xep_0030"].del_feature(feature=NS)

    # -- thing side -------------------------------------------------------------------------

    async def _handle_request(self, iq: StanzaBase) -> None:
        payload = _payload(iq)
        if payload is None:  # the matcher guarantees one
            return
        local = convert.local_name(payload) or ""
        command = convert.command_of(payload)
        if command is None:
            self._reply(iq, convert.error_response_to_xml(local, ResultCode.NOT_IMPLEMENTED))
            return
        requester = iq["from"]
        try:
            allowed = await self.authorize(requester)
        except Exception:
            _LOGGER.exception("authorizer failed for <%s> from %s; denying", local, requester)
            allowed = False
        if allowed is not True:
            self._reply(
                iq, convert.error_response_to_xml(local, ResultCode.INSUFFICIENT_PRIVILEGES)
            )
            return
        try:
            request = convert.request_from_xml(payload)
        except StanzaError as err:
            reply = iq.reply()
            reply.append(convert.error_response_to_xml(local, ResultCode.OTHER_ERROR))
            reply["error"]["type"] = "modify"
            reply["error"]["condition"] = "bad-request"
            reply["error"]["text"] = str(err)
            reply.send()
            return
        try:
            response = self._execute(request)
            answer = convert.response_to_xml(response, with_source_id=self._with_source_id)
        except Exception:
            _LOGGER.exception("<%s> from %s failed", local, requester)
            answer = convert.error_response_to_xml(local, ResultCode.OTHER_ERROR)
        self._reply(iq, answer)

    @staticmethod
    def _reply(iq: StanzaBase, payload: Element) -> None:
        reply = iq.reply()
        reply.append(payload)
        reply.send()

    def _execute(self, request: ConcentratorRequest) -> ConcentratorResponse:
        """Answer one parsed request from :attr:`source` (source exceptions propagate)."""
        command = request.command
        if command is Command.GET_CAPABILITIES:
            return ConcentratorResponse(command, values=CAPABILITIES)
        source = self.source
        if source is None:
            _LOGGER.warning("<%s> answered OtherError: no concentrator source set", command.value)
            return ConcentratorResponse(command, ResultCode.OTHER_ERROR)
        not_found = ConcentratorResponse(command, ResultCode.NOT_FOUND)

        if command in (Command.GET_ALL_DATA_SOURCES, Command.GET_ROOT_DATA_SOURCES):
            sources = tuple(source.data_sources())
            if command is Command.GET_ROOT_DATA_SOURCES:
                sources = tuple(s for s in sources if s.parent_id is None)
            return ConcentratorResponse(command, data_sources=sources)
        if command is Command.GET_CHILD_DATA_SOURCES:
            sources = tuple(source.data_sources())
            if all(s.source_id != request.source_id for s in sources):
                return not_found
            children = tuple(s for s in sources if s.parent_id == request.source_id)
            return ConcentratorResponse(command, data_sources=children)

        if command in (Command.CONTAINS_NODE, Command.CONTAINS_NODES):
            flags = tuple(self._lookup(source, ref) is not None for ref in request.refs)
            return ConcentratorResponse(command, contains=flags)

        nodes: Sequence[NodeInfo] | None
        if command in (Command.GET_NODE, Command.GET_NODES):
            found = [self._lookup(source, ref) for ref in request.refs]
            nodes = None if any(n is None for n in found) else [n for n in found if n is not None]
        elif command in (Command.GET_ALL_NODES, Command.GET_ROOT_NODES):
            if request.source_id is None:
                return not_found
            if command is Command.GET_ROOT_NODES:
                nodes = source.root_nodes(request.source_id)
            else:
                nodes = source.all_nodes(request.source_id)
                wanted = request.only_if_derived_from
                if nodes is not None and wanted:
                    nodes = [n for n in nodes if n.node_type in wanted]
        elif command is Command.GET_CHILD_NODES:
            assert request.node is not None
            nodes = None
            if request.node.source_id is not None:
                nodes = source.child_nodes(request.node)
            if nodes is not None and request.sort_order:
                nodes = _sorted_children(nodes, request.sort_order)
        else:  # GET_ANCESTORS
            assert request.node is not None
            nodes = self._ancestors(source, request.node)
        if nodes is None:
            return not_found
        if len(nodes) > convert.MAX_NODES:
            raise _Inconsistent(f"{len(nodes)} nodes exceed the limit of {convert.MAX_NODES}")
        return ConcentratorResponse(
            command,
            nodes=tuple(self._trim(node, request.parameters, request.messages) for node in nodes),
        )

    @staticmethod
    def _lookup(source: ConcentratorSource, ref: NodeRef) -> NodeInfo | None:
        return None if ref.source_id is None else source.node(ref)

    @staticmethod
    def _trim(node: NodeInfo, parameters: bool, messages: bool) -> NodeInfo:
        if not isinstance(node, NodeInfo):
            raise TypeError(f"concentrator source returned {type(node).__name__}, not NodeInfo")
        changes: dict[str, Any] = {}
        if not parameters and node.parameters:
            changes["parameters"] = ()
        if not messages and node.messages:
            changes["messages"] = ()
        return dataclasses.replace(node, **changes) if changes else node

    def _ancestors(self, source: ConcentratorSource, ref: NodeRef) -> list[NodeInfo] | None:
        """The node, its parent, ..., the root; None if the node does not exist."""
        node = self._lookup(source, ref)
        if node is None:
            return None
        chain = [node]
        seen = {node.ref}
        parent_ref = node.parent_ref
        while parent_ref is not None:
            if parent_ref in seen or len(chain) >= convert.MAX_NODES:
                raise _Inconsistent(f"parent cycle or runaway depth above {ref}")
            parent = source.node(parent_ref)
            if parent is None:
                raise _Inconsistent(f"dangling parent {parent_ref} above {ref}")
            chain.append(parent)
            seen.add(parent.ref)
            parent_ref = parent.parent_ref
        return chain

    # -- client side ------------------------------------------------------------------------

    async def _call(
        self,
        to: JID | str,
        request: ConcentratorRequest,
        timeout: float,
        *,
        default_source: str = "",
        refs: Sequence[NodeRef] = (),
    ) -> ConcentratorResponse:
        """Send ``request`` and return the OK response (or raise, see module docstring)."""
        peer = JID(to)
        iq = self.xmpp.make_iq_get(ito=peer)
        iq.append(convert.request_to_xml(request))
        command = request.command
        try:
            async with asyncio.timeout(timeout):
                # slixmpp's own IQ timeout is a backstop; ours governs.
                answer = await iq.send(timeout=timeout + 5)  # type: ignore[no-untyped-call]
        except IqError as err:
            raise self._error_from(err.iq, command, default_source, refs) from err
        except (TimeoutError, IqTimeout) as err:
            raise ConcentratorTimeout(
                f"no answer to <{command.value}> from {peer} within {timeout} s"
            ) from err
        payload = self._response_payload(answer, command)
        if payload is None:
            raise StanzaError(f"the answer from {peer} lacks <{command.response}>")
        response = convert.response_from_xml(
            payload, default_source=default_source, refs=refs, default_tz=self._tz
        )
        if response.result is not ResultCode.OK:
            raise ConcentratorError(response.result)
        return response

    @staticmethod
    def _response_payload(iq: StanzaBase, command: Command) -> Element | None:
        return next(
            (child for child in iq.xml if convert.local_name(child) == command.response), None
        )

    def _error_from(
        self, iq: StanzaBase, command: Command, default_source: str, refs: Sequence[NodeRef]
    ) -> ConcentratorError:
        """The exception for an error IQ (§5.5: it may carry a ``…Response`` instead of, or
        besides, a proper ``<error>``)."""
        condition, text = "", ""
        if iq.xml.find(f"{{{iq.namespace}}}error") is not None:
            condition = iq["error"]["condition"]
            text = iq["error"]["text"]
        code = _CONDITION_CODES.get(condition, ResultCode.OTHER_ERROR)
        payload = self._response_payload(iq, command)
        if payload is not None:
            try:
                result = convert.response_from_xml(
                    payload, default_source=default_source, refs=refs, default_tz=self._tz
                ).result
            except StanzaError:
                _LOGGER.debug("ignoring malformed <%s> in an error IQ", command.response)
            else:
                if result is not ResultCode.OK:
                    code = result
        return ConcentratorError(code, text, condition)

    @staticmethod
    def _check_refs(refs: Iterable[NodeRef]) -> tuple[NodeRef, ...]:
        refs = tuple(refs)
        for ref in refs:
            if ref.source_id is None:
                raise ValueError(f"XEP-0326 node references need a source_id: {ref}")
        return refs

    async def _node_infos(
        self, to: JID | str, request: ConcentratorRequest, timeout: float
    ) -> tuple[NodeInfo, ...]:
        """The nodes of the OK response to a node-information ``request``.

        A received node without ``sourceId`` takes the source of the matching request reference
        (``getNode``/``getNodes``), else the source the request is about (its ``source_id``, or
        its node's).
        """
        if request.command in (Command.GET_NODE, Command.GET_NODES):
            response = await self._call(to, request, timeout, refs=request.refs)
        else:
            node = request.node
            source = request.source_id if node is None else node.source_id
            response = await self._call(to, request, timeout, default_source=source or "")
        return response.nodes

    async def get_capabilities(self, to: JID | str, *, timeout: float = 10.0) -> tuple[str, ...]:
        """The command names the concentrator implements."""
        request = ConcentratorRequest(Command.GET_CAPABILITIES)
        return (await self._call(to, request, timeout)).values

    async def get_all_data_sources(
        self, to: JID | str, *, timeout: float = 10.0
    ) -> tuple[DataSource, ...]:
        """Every data source (flat list)."""
        request = ConcentratorRequest(Command.GET_ALL_DATA_SOURCES)
        return (await self._call(to, request, timeout)).data_sources

    async def get_root_data_sources(
        self, to: JID | str, *, timeout: float = 10.0
    ) -> tuple[DataSource, ...]:
        """The root data sources."""
        request = ConcentratorRequest(Command.GET_ROOT_DATA_SOURCES)
        return (await self._call(to, request, timeout)).data_sources

    async def get_child_data_sources(
        self, to: JID | str, source_id: str, *, timeout: float = 10.0
    ) -> tuple[DataSource, ...]:
        """The child sources of ``source_id``."""
        request = ConcentratorRequest(Command.GET_CHILD_DATA_SOURCES, source_id=source_id)
        return (await self._call(to, request, timeout)).data_sources

    async def contains_node(self, to: JID | str, ref: NodeRef, *, timeout: float = 10.0) -> bool:
        """True if the concentrator has the node."""
        (ref,) = self._check_refs((ref,))
        request = ConcentratorRequest(Command.CONTAINS_NODE, node=ref)
        return (await self._call(to, request, timeout)).contains[0]

    async def contains_nodes(
        self, to: JID | str, refs: Iterable[NodeRef], *, timeout: float = 10.0
    ) -> tuple[bool, ...]:
        """One flag per reference, in order."""
        nodes = self._check_refs(refs)
        request = ConcentratorRequest(Command.CONTAINS_NODES, nodes=nodes)
        flags = (await self._call(to, request, timeout)).contains
        if len(flags) != len(nodes):
            raise StanzaError(f"containsNodesResponse has {len(flags)} values for {len(nodes)}")
        return flags

    async def get_node(
        self,
        to: JID | str,
        ref: NodeRef,
        *,
        parameters: bool = False,
        messages: bool = False,
        timeout: float = 10.0,
    ) -> NodeInfo:
        """Information about one node."""
        (ref,) = self._check_refs((ref,))
        request = ConcentratorRequest(
            Command.GET_NODE, node=ref, parameters=parameters, messages=messages
        )
        return (await self._node_infos(to, request, timeout))[0]

    async def get_nodes(
        self,
        to: JID | str,
        refs: Iterable[NodeRef],
        *,
        parameters: bool = False,
        messages: bool = False,
        timeout: float = 10.0,
    ) -> tuple[NodeInfo, ...]:
        """Information about several nodes."""
        nodes = self._check_refs(refs)
        request = ConcentratorRequest(
            Command.GET_NODES, nodes=nodes, parameters=parameters, messages=messages
        )
        return await self._node_infos(to, request, timeout)

    async def get_all_nodes(
        self,
        to: JID | str,
        source_id: str,
        *,
        only_if_derived_from: Iterable[str] = (),
        parameters: bool = False,
        messages: bool = False,
        timeout: float = 10.0,
    ) -> tuple[NodeInfo, ...]:
        """Every node of a source (optionally only of the given node types)."""
        request = ConcentratorRequest(
            Command.GET_ALL_NODES,
            source_id=source_id,
            only_if_derived_from=tuple(only_if_derived_from),
            parameters=parameters,
            messages=messages,
        )
        return await self._node_infos(to, request, timeout)

    async def get_root_nodes(
        self,
        to: JID | str,
        source_id: str,
        *,
        parameters: bool = False,
        messages: bool = False,
        timeout: float = 10.0,
    ) -> tuple[NodeInfo, ...]:
        """The root node(s) of a source."""
        request = ConcentratorRequest(
            Command.GET_ROOT_NODES, source_id=source_id, parameters=parameters, messages=messages
        )
        return await self._node_infos(to, request, timeout)

    async def get_child_nodes(
        self,
        to: JID | str,
        ref: NodeRef,
        *,
        sort_order: Iterable[SortOrder] = (),
        parameters: bool = False,
        messages: bool = False,
        timeout: float = 10.0,
    ) -> tuple[NodeInfo, ...]:
        """The children of a node."""
        (ref,) = self._check_refs((ref,))
        request = ConcentratorRequest(
            Command.GET_CHILD_NODES,
            node=ref,
            sort_order=tuple(sort_order),
            parameters=parameters,
            messages=messages,
        )
        return await self._node_infos(to, request, timeout)

    async def get_ancestors(
        self,
        to: JID | str,
        ref: NodeRef,
        *,
        parameters: bool = False,
        messages: bool = False,
        timeout: float = 10.0,
    ) -> tuple[NodeInfo, ...]:
        """The node itself, its parent, ..., the root."""
        (ref,) = self._check_refs((ref,))
        request = ConcentratorRequest(
            Command.GET_ANCESTORS, node=ref, parameters=parameters, messages=messages
        )
        return await self._node_infos(to, request, timeout)
