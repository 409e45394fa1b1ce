"""The ``xep_0325_ncap`` slixmpp plugin: XEP-0325 thing side and client side, asyncio only.

Thing side: set :attr:`XEP_0325.target` (a :class:`ControlTarget`) and :attr:`XEP_0325.authorize`
(async ``(requester, request) -> ControlDecision``; the default denies everything). For every
``<set>`` (IQ or message) and ``<getForm>`` the plugin, in a task it owns:

1. authorizes (deny, exception or a non-decision → ``cancel/forbidden``; nothing applied);
2. narrows nodes/parameters to what the decision allows (never widens);
3. checks the nodes exist (``cancel/item-not-found``);
4. validates *every* value against *every* addressed node's declaration before touching
   anything: unknown parameter → ``cancel/item-not-found``, wrong type/read-only/not an
   option/out of range → ``modify/bad-request``, each with one ``paramError`` per parameter;
5. calls ``await target.apply(requester, nodes, values)`` once, values in document order.
   :class:`~xep.errors.ControlLocked` → ``wait/conflict``, :class:`~xep.errors.ControlFailed` →
   ``cancel/internal-server-error`` with its message (and ``paramError`` when it names a
   parameter), any other exception → ``cancel/internal-server-error`` with a generic text (the
   traceback goes to the log only).

IQ requests are answered with ``<setResponse/>`` (listing what was applied when narrowed) or a
stanza error; message requests are never answered, failures are logged. Requests of one full JID
are handled one after the other (FIFO, so control order is kept); at most
``max_pending_per_requester`` may wait (beyond: ``wait/resource-constraint``).

Client side: :meth:`XEP_0325.set`, :meth:`XEP_0325.send_set_message`, :meth:`XEP_0325.get_form`,
:meth:`XEP_0325.submit_form`; failures raise :class:`~xep.errors.ControlError`,
:class:`~xep.errors.ControlTimeout` or :class:`~xep.errors.StanzaError`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol
from xml.etree.ElementTree import Element

from slixmpp import JID, Iq
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.plugins import BasePlugin
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath
from slixmpp.xmlstream.stanzabase import StanzaBase

from xep.errors import ControlError, ControlFailed, ControlLocked, ControlTimeout, StanzaError
from xep.xep_0323.model import NodeRef
from xep.xep_0325 import convert
from xep.xep_0325.model import (
    ControlDecision,
    ControlForm,
    ControlParameter,
    ControlRequest,
    ControlValue,
    FormValue,
    SetResult,
    common_parameters,
)
from xep.xep_0325.stanza import register_stanzas

__all__ = ["XEP_0325", "Authorizer", "ControlTarget", "deny_all"]

_LOGGER = logging.getLogger(__name__)

NS = convert.NS
_SET_RESPONSE = f"{{{NS}}}setResponse"
_FORM = f"{{{convert.XDATA_NS}}}x"

#: ``async (requester full JID, request) -> decision``.
Authorizer = Callable[[JID, ControlRequest], Awaitable[ControlDecision]]

#: Stanza text when the target raised something other than ControlFailed (details: log only).
APPLY_FAILURE_TEXT = "Control action failed: internal error."
FORBIDDEN_TEXT = "Control not permitted."
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


async def deny_all(requester: JID, request: ControlRequest) -> ControlDecision:
    """The default authorizer: fail closed."""
    _LOGGER.debug("denying control request from %s (no authorizer set)", requester)
    return ControlDecision(False)


class ControlTarget(Protocol):
    """What the thing side of the plugin controls (implemented by the application)."""

    def has_node(self, node: NodeRef) -> bool:
        """True if the node exists. Requests without ``<node>`` address the thing itself and
        never call this."""
        ...

    def parameters(self, node: NodeRef | None) -> Sequence[ControlParameter]:
        """The control parameters of ``node`` (None: the thing itself), in write order."""
        ...

    async def apply(
        self, requester: JID, nodes: tuple[NodeRef, ...], values: tuple[ControlValue, ...]
    ) -> None:
        """Write ``values`` (already validated, document order) to ``nodes`` (empty: the thing
        itself). May raise :class:`~xep.errors.ControlFailed`/:class:`~xep.errors.ControlLocked`."""
        ...


class _Reject(Exception):
    """Internal: answer with this stanza error (or log it, for messages)."""

    def __init__(
        self, etype: str, condition: str, text: str, param_errors: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(condition, text)
        self.etype = etype
        self.condition = condition
        self.text = text
        self.param_errors = dict(param_errors or {})


@dataclass(slots=True)
class _Queue:
    """Per-requester serialization: one lock, and how many requests hold or wait for it."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    pending: int = 0


def _safe_text(text: str) -> str:
    return _NOT_XML_CHAR.sub("\ufffd", text)


def _node_hint(node: NodeRef | None) -> str:
    return "" if node is None else f" (node {node.node_id!r})"


class XEP_0325(BasePlugin):
    """XEP-0325 IoT Control, thing and client side (see module docstring)."""

    name = "xep_0325_ncap"
    description = "XEP-0325: IoT Control (NCAP asyncio implementation)"
    dependencies: ClassVar[set[str]] = {"xep_0030"}
    #: ``max_pending_per_requester``: requests of one full JID being handled or queued;
    #: ``max_pending``: all requests together (beyond either: ``wait/resource-constraint``).
    default_config: ClassVar[dict[str, Any]] = {
        "max_pending_per_requester": 4,
        "max_pending": 64,
    }

    # -- lifecycle --------------------------------------------------------------------------

    def plugin_init(self) -> None:
        #: Thing side: what gets controlled. None → ``cancel/service-unavailable``.
        self.target: ControlTarget | None = None
        #: Thing side: access decision per request; exceptions count as "deny".
        self.authorize: Authorizer = deny_all
        self._per_requester_limit = int(self.config["max_pending_per_requester"])
        self._total_limit = int(self.config["max_pending"])
        self._queues: dict[str, _Queue] = {}
        self._tasks: set[asyncio.Task[None]] = set()

        register_stanzas()
        self.xmpp.register_handler(
            Callback("XEP-0325 ncap set", StanzaPath("iq/control_set"), self._handle_iq_set)
        )
        self.xmpp.register_handler(
            Callback(
                "XEP-0325 ncap message", StanzaPath("message/control_set"), self._handle_message
            )
        )
        self.xmpp.register_handler(
            Callback(
                "XEP-0325 ncap getForm", StanzaPath("iq/control_getForm"), self._handle_get_form
            )
        )
        self.xmpp.add_event_handler("session_end", self._on_session_end)

    def session_bind(self, jid: JID | str) -> None:
        self.xmpp.plugin["xep_0030"].add_feature(NS)

    def plugin_end(self) -> None:
        self.cancel_all()
        for handler in ("XEP-0325 ncap set", "XEP-0325 ncap message", "XEP-0325 ncap getForm"):
            self.xmpp.remove_handler(handler)
        self.xmpp.del_event_handler("session_end", self._on_session_end)
        self.xmpp.plugin["xep_0030"].del_feature(feature=NS)

    @property
    def pending(self) -> int:
        """Thing-side requests being handled or queued."""
        return len(self._tasks)

    def cancel_all(self) -> None:
        """Cancel every thing-side request task (nothing is sent for them)."""
        for task in list(self._tasks):
            task.cancel()
        self._tasks.clear()
        self._queues.clear()

    def _on_session_end(self, _event: object) -> None:
        self.cancel_all()

    # -- thing side: plumbing ---------------------------------------------------------------

    def _spawn(
        self, requester: JID, label: str, work: Callable[[], Coroutine[Any, Any, None]]
    ) -> bool:
        """Run ``work()`` in a plugin-owned task, after earlier requests of ``requester``.

        False (and ``work`` never called) when the limits are reached.
        """
        key = requester.full
        queue = self._queues.get(key) or _Queue()
        if queue.pending >= self._per_requester_limit or len(self._tasks) >= self._total_limit:
            return False
        self._queues[key] = queue
        queue.pending += 1
        task = self.xmpp.loop.create_task(
            self._serialized(key, queue, work), name=f"xep_0325 {label} {key}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _serialized(
        self, key: str, queue: _Queue, work: Callable[[], Coroutine[Any, Any, None]]
    ) -> None:
        try:
            async with queue.lock:
                await work()
        except asyncio.CancelledError:
            raise
        except Exception:  # never into the loop
            _LOGGER.exception("control request from %s failed", key)
        finally:
            queue.pending -= 1
            if queue.pending <= 0 and self._queues.get(key) is queue:
                del self._queues[key]

    def _send_error(
        self,
        iq: StanzaBase,
        etype: str,
        condition: str,
        text: str,
        param_errors: Mapping[str, str] | None = None,
    ) -> None:
        reply = iq.reply()
        reply["error"]["type"] = etype
        reply["error"]["condition"] = condition
        if text:
            reply["error"]["text"] = text
        for var, var_text in (param_errors or {}).items():
            reply["error"].xml.append(convert.param_error_to_xml(var, var_text))
        reply.send()

    def _send_reject(self, iq: StanzaBase, reject: _Reject) -> None:
        self._send_error(iq, reject.etype, reject.condition, reject.text, reject.param_errors)

    # -- thing side: handlers ---------------------------------------------------------------

    def _handle_iq_set(self, iq: StanzaBase) -> None:
        if iq["type"] != "set":
            if iq["type"] == "get":
                self._send_error(iq, "modify", "bad-request", "<set> needs an IQ of type 'set'.")
            return
        requester = iq["from"]
        try:
            request = convert.set_from_xml(iq["control_set"].xml)
        except StanzaError as err:
            self._send_error(iq, "modify", "bad-request", str(err))
            return

        async def answer() -> None:
            try:
                result = await self._execute(requester, request)
            except _Reject as reject:
                self._send_reject(iq, reject)
                return
            reply = iq.reply()
            reply.append(convert.set_response_to_xml(result))
            reply.send()

        if not self._spawn(requester, "set", answer):
            self._send_error(
                iq, "wait", "resource-constraint", "Too many concurrent control requests."
            )

    def _handle_message(self, msg: StanzaBase) -> None:
        if msg["type"] == "error":
            return
        requester = msg["from"]
        try:
            request = convert.set_from_xml(msg["control_set"].xml)
        except StanzaError as err:
            _LOGGER.info("ignoring malformed control message from %s: %s", requester, err)
            return

        async def run() -> None:
            try:
                result = await self._execute(requester, request)
            except _Reject as reject:
                _LOGGER.info(
                    "control message from %s not applied: %s: %s %s",
                    requester,
                    reject.condition,
                    reject.text,
                    reject.param_errors or "",
                )
                return
            _LOGGER.debug("control message from %s applied: %s", requester, result)

        if not self._spawn(requester, "message", run):
            _LOGGER.warning("dropping control message from %s: too many pending", requester)

    def _handle_get_form(self, iq: StanzaBase) -> None:
        if iq["type"] != "get":
            if iq["type"] == "set":
                self._send_error(
                    iq, "modify", "bad-request", "<getForm> needs an IQ of type 'get'."
                )
            return
        requester = iq["from"]
        try:
            request = convert.get_form_from_xml(iq["control_getForm"].xml)
        except StanzaError as err:
            self._send_error(iq, "modify", "bad-request", str(err))
            return

        async def answer() -> None:
            try:
                form = await self._build_form(requester, request)
            except _Reject as reject:
                self._send_reject(iq, reject)
                return
            reply = iq.reply()
            reply.append(form)
            reply.send()

        if not self._spawn(requester, "getForm", answer):
            self._send_error(
                iq, "wait", "resource-constraint", "Too many concurrent control requests."
            )

    # -- thing side: the decisions ------------------------------------------------------------

    async def _decide(self, requester: JID, request: ControlRequest) -> ControlDecision:
        try:
            decision: object = await self.authorize(requester, request)
        except Exception:
            _LOGGER.exception("authorizer failed for control request from %s; denying", requester)
            decision = None
        if not isinstance(decision, ControlDecision):
            if decision is not None:
                _LOGGER.error("authorizer returned %r, not a ControlDecision; denying", decision)
            raise _Reject("cancel", "forbidden", FORBIDDEN_TEXT)
        if not decision.allowed:
            raise _Reject("cancel", "forbidden", FORBIDDEN_TEXT)
        return decision

    def _target(self) -> ControlTarget:
        if self.target is None:
            raise _Reject("cancel", "service-unavailable", "No control target.")
        return self.target

    @staticmethod
    def _narrow_nodes(request: ControlRequest, decision: ControlDecision) -> tuple[NodeRef, ...]:
        if decision.nodes is None or not request.nodes:
            return request.nodes
        allowed = set(decision.nodes)
        nodes = tuple(ref for ref in request.nodes if ref in allowed)
        if not nodes:
            raise _Reject("cancel", "forbidden", FORBIDDEN_TEXT)
        return nodes

    @staticmethod
    def _check_nodes(target: ControlTarget, nodes: Iterable[NodeRef]) -> None:
        for node in nodes:
            try:
                known = target.has_node(node)
            except Exception as err:
                _LOGGER.exception("has_node(%r) failed", node)
                raise _Reject("cancel", "internal-server-error", "Node lookup failed.") from err
            if not known:
                raise _Reject("cancel", "item-not-found", f"Unknown node {node.node_id!r}.")

    @staticmethod
    def _declarations(
        target: ControlTarget, nodes: tuple[NodeRef, ...]
    ) -> list[tuple[NodeRef | None, list[ControlParameter]]]:
        found: list[tuple[NodeRef | None, list[ControlParameter]]] = []
        for node in nodes or (None,):
            try:
                found.append((node, list(target.parameters(node))))
            except Exception as err:
                _LOGGER.exception("parameters(%r) failed", node)
                raise _Reject(
                    "cancel", "internal-server-error", "Parameter lookup failed."
                ) from err
        return found

    @staticmethod
    def _validate(
        items: Sequence[ControlValue | FormValue],
        declared: list[tuple[NodeRef | None, list[ControlParameter]]],
    ) -> tuple[ControlValue, ...]:
        """Typed values for ``items``, valid on every node -- or a _Reject listing every problem."""
        tables = [
            (node, {param.name: param for param in reversed(params)}) for node, params in declared
        ]
        values: list[ControlValue] = []
        errors: dict[str, str] = {}
        unknown = False
        first_bad: NodeRef | None = None
        for item in items:
            if item.name in errors:
                continue
            value: ControlValue | None = item if isinstance(item, ControlValue) else None
            for node, table in tables:
                problem: str | None = None
                param = table.get(item.name)
                if param is None:
                    problem, unknown = "Parameter not found.", True
                elif value is None:  # a form field: the first node's declaration types it
                    try:
                        value = param.value_of(item.value)
                    except ValueError:
                        problem = "Invalid parameter value."
                if problem is None and param is not None and value is not None:
                    problem = param.problem(value)
                if problem is not None:
                    errors[item.name] = problem
                    first_bad = first_bad or node
                    break
            else:
                if value is not None:
                    values.append(value)
        if errors:
            if unknown:
                text = "Unknown control parameter" + _node_hint(first_bad) + "."
                raise _Reject("cancel", "item-not-found", text, errors)
            text = "Invalid control parameter value" + _node_hint(first_bad) + "."
            raise _Reject("modify", "bad-request", text, errors)
        return tuple(values)

    async def _execute(self, requester: JID, request: ControlRequest) -> SetResult:
        decision = await self._decide(requester, request)
        target = self._target()
        nodes = self._narrow_nodes(request, decision)
        self._check_nodes(target, nodes)

        items: Sequence[ControlValue | FormValue] = request.values or request.form
        if decision.parameters is not None:
            allowed = set(decision.parameters)
            kept = [item for item in items if item.name in allowed]
            if items and not kept:
                raise _Reject("cancel", "forbidden", FORBIDDEN_TEXT)
            items = kept
        values = self._validate(items, self._declarations(target, nodes))

        if values:
            try:
                await target.apply(requester, nodes, values)
            except ControlLocked as err:
                raise self._failed("wait", "conflict", err) from err
            except ControlFailed as err:
                raise self._failed("cancel", "internal-server-error", err) from err
            except Exception as err:
                _LOGGER.exception("control target failed to apply %r for %s", values, requester)
                raise _Reject("cancel", "internal-server-error", APPLY_FAILURE_TEXT) from err
        applied = tuple(dict.fromkeys(value.name for value in values))
        narrowed = nodes != request.nodes or applied != request.parameter_names
        return SetResult(nodes, applied, narrowed)

    @staticmethod
    def _failed(etype: str, condition: str, err: ControlFailed) -> _Reject:
        text = _safe_text(err.message)
        params = {_safe_text(err.parameter): text} if err.parameter else None
        return _Reject(etype, condition, text, params)

    async def _build_form(self, requester: JID, request: ControlRequest) -> Element:
        decision = await self._decide(requester, request)
        target = self._target()
        nodes = self._narrow_nodes(request, decision)
        self._check_nodes(target, nodes)
        declared = [params for _, params in self._declarations(target, nodes)]
        params: Sequence[ControlParameter] = (
            declared[0] if len(declared) == 1 else common_parameters(declared)
        )
        if decision.parameters is not None:
            allowed = set(decision.parameters)
            params = [param for param in params if param.name in allowed]
        title = ", ".join(dict.fromkeys(ref.node_id for ref in nodes)) or "Control"
        return convert.form_to_xml(params, title=_safe_text(title))

    # -- client side ------------------------------------------------------------------------

    async def set(
        self,
        to: JID | str,
        values: Sequence[ControlValue],
        *,
        nodes: Iterable[NodeRef] = (),
        timeout: float = 10.0,
    ) -> SetResult:
        """Write typed ``values`` (in order) to ``to`` (or its ``nodes``) and wait for the answer.

        Returns what was applied (``narrowed`` when provisioning restricted it). Raises
        :class:`ControlError` on a stanza error (with the ``paramError`` details),
        :class:`ControlTimeout` without an answer in ``timeout`` seconds, and
        :class:`StanzaError` on a malformed ``setResponse``.
        """
        request = ControlRequest(nodes=tuple(nodes), values=tuple(values))
        return await self._send_set(JID(to), request, timeout)

    async def submit_form(
        self,
        to: JID | str,
        form_values: Mapping[str, str],
        *,
        nodes: Iterable[NodeRef] = (),
        session: str | None = None,
        timeout: float = 10.0,
    ) -> SetResult:
        """Submit a (partial) control form: only the fields in ``form_values`` are written.

        ``session`` is echoed as the hidden ``xdd session`` field (take it from
        :attr:`ControlForm.session`). Errors as in :meth:`set`.
        """
        fields = tuple(FormValue(name, value) for name, value in form_values.items())
        request = ControlRequest(nodes=tuple(nodes), form=fields, session=session)
        return await self._send_set(JID(to), request, timeout)

    def send_set_message(
        self, to: JID | str, values: Sequence[ControlValue], nodes: Iterable[NodeRef] = ()
    ) -> None:
        """Fire-and-forget ``<message><set>``: the device never answers."""
        request = ControlRequest(nodes=tuple(nodes), values=tuple(values))
        msg = self.xmpp.make_message(mto=JID(to))
        msg.append(convert.set_to_xml(request))
        msg.send()

    async def get_form(
        self, to: JID | str, *, nodes: Iterable[NodeRef] = (), timeout: float = 10.0
    ) -> ControlForm:
        """Read the control form of ``to`` (one node, or the common parameters of several)."""
        iq = self.xmpp.make_iq_get(ito=JID(to))
        iq.append(convert.get_form_to_xml(ControlRequest(nodes=tuple(nodes))))
        result = await self._query(iq, timeout, "getForm")
        form = result.xml.find(_FORM)
        if form is None:
            raise StanzaError("getForm result carries no data form")
        return convert.form_from_xml(form)

    async def _send_set(self, peer: JID, request: ControlRequest, timeout: float) -> SetResult:
        iq = self.xmpp.make_iq_set(ito=peer)
        iq.append(convert.set_to_xml(request))
        result = await self._query(iq, timeout, "set")
        names = request.parameter_names
        response = result.xml.find(_SET_RESPONSE)
        if response is None:  # a bare IQ result is an acknowledgement too
            return SetResult(request.nodes, names, False)
        code = convert.legacy_response_code(response)
        if code is not None and code != "OK":  # pre-0.3 device
            raise ControlError(convert.LEGACY_CONDITIONS.get(code, "undefined-condition"), code)
        return convert.set_response_from_xml(response, nodes=request.nodes, parameters=names)

    async def _query(self, iq: Iq, timeout: float, what: str) -> Iq:
        peer = iq["to"]
        try:
            async with asyncio.timeout(timeout):
                # slixmpp's own IQ timeout is a backstop; ours governs.
                return await iq.send(timeout=timeout + 5)
        except IqError as err:
            raise self._control_error(err.iq) from err
        except (IqTimeout, TimeoutError) as err:
            raise ControlTimeout(f"no answer to <{what}> from {peer} within {timeout} s") from err

    @staticmethod
    def _control_error(iq: StanzaBase) -> ControlError:
        condition, text, etype = "", "", "cancel"
        params: dict[str, str] = {}
        error = iq.xml.find(f"{{{iq.namespace}}}error")
        if error is not None:
            condition = iq["error"]["condition"]
            text = iq["error"]["text"]
            etype = iq["error"]["type"] or "cancel"
            params = convert.param_errors_from_xml(error)
        legacy = iq.xml.find(_SET_RESPONSE)
        if legacy is not None:
            # slixmpp's IqError touches iq['error'], which synthesizes cancel/
            # feature-not-implemented when a pre-0.3 peer sent only <setResponse responseCode>.
            if condition == "feature-not-implemented" and not text:
                condition = ""
            code = convert.legacy_response_code(legacy) or ""
            if not condition and code:
                condition = convert.LEGACY_CONDITIONS.get(code, "")
                text = text or code
        return ControlError(condition or "undefined-condition", text, params, etype)
