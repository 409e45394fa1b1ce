"""The ``xep_0323_ncap`` slixmpp plugin: XEP-0323 device side and client side, asyncio only.

Device side: set :attr:`XEP_0323.source` (a :class:`~.model.SensorDataSource`) and
:attr:`XEP_0323.authorize` (async ``(requester, request) -> bool``; the default denies everything).
Each accepted read-out runs as a plugin-owned task keyed by (requester full JID, seqnr).

Client side: ``await plugin.request_readout(jid, ...)`` returns a :class:`~.model.Readout` or raises
:class:`~xep.errors.ReadoutError` / :class:`~xep.errors.ReadoutTimeout` /
:class:`~xep.errors.StanzaError`.

Dialects (:mod:`xep.dialect`): the device side answers requests in every dialect of the
``dialects`` config (default XSF ``urn:xmpp:iot:sensordata``, IEEE ``urn:ieee:iot:sd:1.0`` and NF
``urn:nf:iot:sd:1.0``), always in the dialect the request came in, and advertises each namespace
as a disco feature. The client side speaks the dialect given to :meth:`XEP_0323.request_readout`,
or negotiates one through the target's disco#info (first of XSF, IEEE, NF it advertises; XSF if
none or no answer), cached per full JID until that JID goes unavailable.

Filtering: the request's field names and types are hints (XEP-0323 §2.1). The source gets them;
the device side additionally drops the fields the source yields that the request does not want
(config ``filter_results``, default on) -- cheaper on the wire, and a source can never hand out
more than was asked and authorized. Node lists are *not* filtered here, as reading a node implies
its descendants. Clients still filter themselves (:meth:`~.model.Readout.filtered`), as peers
other than ours may send more.

Large read-outs: every :class:`~.model.NodeFields` is cut by :func:`~.convert.split_fields` into
messages of at most :data:`~.convert.MAX_FIELDS_PER_MESSAGE` fields and about
:data:`~.convert.MAX_MESSAGE_BYTES` of XML, only the very last one marked done; the client merges
consecutive parts of one node and timestamp back together.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal
from xml.etree.ElementTree import Element

from slixmpp import JID, Iq, Message
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.plugins import BasePlugin
from slixmpp.xmlstream.handler import Callback, CoroutineCallback
from slixmpp.xmlstream.matcher.base import MatcherBase
from slixmpp.xmlstream.stanzabase import StanzaBase

from xep.dialect import DIALECTS, XSF, Dialect, by_namespace
from xep.errors import ReadoutError, ReadoutTimeout, StanzaError, XepError
from xep.xep_0323 import convert
from xep.xep_0323.model import (
    INT32_MAX,
    FailureMessage,
    FieldsMessage,
    FieldType,
    NodeFailure,
    NodeFields,
    NodeRef,
    Readout,
    ReadoutRequest,
    SensorDataSource,
)
from xep.xep_0323.stanza import register_stanzas
from xep.xmlutil import local_name

__all__ = ["XEP_0323", "Authorizer", "deny_all"]

_LOGGER = logging.getLogger(__name__)

NS = convert.NS
_DISCO_INFO = "http://jabber.org/protocol/disco#info"

#: ``async (requester full JID, request) -> allowed``.
#: ``async (requester, request) -> True | False | narrowed request``: a
#: :class:`~.model.ReadoutRequest` answer (see :func:`~.model.narrow_request`) is served instead
#: of the original, with its field filter enforced.
Authorizer = Callable[[JID, ReadoutRequest], Awaitable[bool | ReadoutRequest]]

#: Text of the ``<failure>`` sent when the data source raises (details go to the log only).
SOURCE_FAILURE_TEXT = "Read-out failed: internal error."
# A `when` this close to now is read at once; later ones would need a queued read-out.
WHEN_TOLERANCE = timedelta(seconds=5)

# (full or bare JID, namespace, wire id)
_Key = tuple[str, str, str]
_Payload = FieldsMessage | FailureMessage


async def deny_all(requester: JID, request: ReadoutRequest) -> bool:
    """The default authorizer: fail closed."""
    _LOGGER.debug("denying read-out seqnr=%s from %s (no authorizer set)", request.seqnr, requester)
    return False


def _local(elem: Element) -> str | None:
    return local_name(elem, NS)


def _split_tag(tag: object) -> tuple[Dialect, str] | None:
    """(dialect, local name) of a Clark-notation tag in a known sensor data namespace."""
    if not isinstance(tag, str) or not tag.startswith("{"):
        return None
    namespace, _, local = tag[1:].partition("}")
    dialect = by_namespace(namespace)
    return None if dialect is None else (dialect, local)


class _HasChild(MatcherBase):
    """Matches ``Iq``/``Message`` stanzas having a child whose tag is in ``tags``."""

    def __init__(self, stanza: type[StanzaBase], tags: Iterable[str]) -> None:
        self._stanza = stanza
        self._tags = frozenset(tags)
        super().__init__(sorted(self._tags))

    def match(self, xml: StanzaBase) -> bool:
        return isinstance(xml, self._stanza) and any(child.tag in self._tags for child in xml.xml)


@dataclass(slots=True)
class _Collector:
    """Client-side state of one outstanding read-out."""

    seqnr: int
    future: asyncio.Future[None]
    fields: list[NodeFields] = field(default_factory=list)
    failures: list[NodeFailure] = field(default_factory=list)
    queued: bool = False

    def add_fields(self, items: Iterable[NodeFields]) -> None:
        """Append, merging a part that continues the previous node and timestamp (split)."""
        for item in items:
            last = self.fields[-1] if self.fields else None
            if last is not None and (last.node, last.timestamp) == (item.node, item.timestamp):
                self.fields[-1] = NodeFields(last.node, last.timestamp, last.fields + item.fields)
            else:
                self.fields.append(item)

    def finish(self, error: BaseException | None = None) -> None:
        if self.future.done():
            return
        if error is None:
            self.future.set_result(None)
        else:
            self.future.set_exception(error)


@dataclass(slots=True)
class _Session:
    """Device-side state of one running read-out."""

    task: asyncio.Task[None]
    request: ReadoutRequest
    dialect: Dialect
    #: Provisioning narrowed the request: its field filter is enforced whatever the config.
    narrowed: bool = False


def _consume(future: asyncio.Future) -> None:
    """Done-callback retrieving a fire-and-forget future's outcome (no 'never retrieved')."""
    if not future.cancelled():
        future.exception()


class XEP_0323(BasePlugin):
    """XEP-0323 IoT Sensor Data, device and client side (see module docstring)."""

    name = "xep_0323_ncap"
    description = "XEP-0323: IoT Sensor Data (NCAP asyncio implementation)"
    dependencies: ClassVar[set[str]] = {"xep_0030"}
    #: ``max_sessions_per_requester``/``max_sessions`` bound concurrent device-side read-outs
    #: (beyond: ``wait/resource-constraint``). ``default_tz``: zone for received timestamps
    #: without one (None = local zone). ``dialects``: the dialects the device side serves and
    #: advertises. ``filter_results``: drop fields the request did not ask for (device side).
    default_config: ClassVar[dict[str, Any]] = {
        "max_sessions_per_requester": 8,
        "max_sessions": 64,
        "default_tz": None,
        "dialects": DIALECTS,
        "filter_results": True,
    }

    # -- lifecycle --------------------------------------------------------------------------

    def plugin_init(self) -> None:
        #: Device side: where read-outs come from. None → ``cancel/service-unavailable``.
        self.source: SensorDataSource | None = None
        #: Device side: access decision per request; exceptions count as "deny".
        self.authorize: Authorizer = deny_all
        self._per_requester_limit = int(self.config["max_sessions_per_requester"])
        self._total_limit = int(self.config["max_sessions"])
        self._tz = self.config["default_tz"]
        self._served: tuple[Dialect, ...] = tuple(self.config["dialects"])
        self._filter = bool(self.config["filter_results"])
        self._sessions: dict[_Key, _Session] = {}
        self._readouts: dict[_Key, _Collector] = {}
        self._dialect_cache: dict[str, Dialect] = {}
        self._seqnr = random.randrange(1, 1 << 24)
        self._handlers: list[str] = []

        register_stanzas()
        for dialect in self._served:
            names = dialect.sensordata
            req = f"XEP-0323 ncap req {dialect.name}"
            cancel = f"XEP-0323 ncap cancel {dialect.name}"
            self.xmpp.register_handler(
                CoroutineCallback(req, _HasChild(Iq, [names.tag(names.req)]), self._handle_req)
            )
            self.xmpp.register_handler(
                Callback(cancel, _HasChild(Iq, [names.tag(names.cancel)]), self._handle_cancel)
            )
            self._handlers += [req, cancel]
        message_tags = {
            d.sensordata.tag(local)
            for d in DIALECTS
            for local in (d.sensordata.fields, d.sensordata.failure, "done", "started")
            if local is not None
        }
        self.xmpp.register_handler(
            Callback(
                "XEP-0323 ncap message", _HasChild(Message, message_tags), self._handle_message
            )
        )
        self._handlers.append("XEP-0323 ncap message")
        self.xmpp.add_event_handler("presence_unavailable", self._on_unavailable)
        self.xmpp.add_event_handler("session_end", self._on_session_end)

    def session_bind(self, jid: JID | str) -> None:
        # slixmpp calls this *before* plugin_init when the stream is already bound.
        for dialect in tuple(self.config["dialects"]):
            self.xmpp.plugin["xep_0030"].add_feature(dialect.sensordata.namespace)

    def plugin_end(self) -> None:
        self.cancel_all()
        for collector in list(self._readouts.values()):
            collector.finish(XepError("xep_0323_ncap plugin was unloaded"))
        self._readouts.clear()
        for handler in self._handlers:
            self.xmpp.remove_handler(handler)
        self.xmpp.del_event_handler("presence_unavailable", self._on_unavailable)
        self.xmpp.del_event_handler("session_end", self._on_session_end)
        for dialect in self._served:
            self.xmpp.plugin["xep_0030"].del_feature(feature=dialect.sensordata.namespace)

    # -- device side ------------------------------------------------------------------------

    @property
    def active_sessions(self) -> frozenset[tuple[str, int]]:
        """Running device-side read-outs as (requester full JID, seqnr) -- the seqnr is 0 for
        IEEE requests with a non-integer id (see :attr:`active_requests`)."""
        return frozenset((key[0], session.request.seqnr) for key, session in self._sessions.items())

    @property
    def active_requests(self) -> frozenset[tuple[str, str, str]]:
        """Running device-side read-outs as (requester full JID, namespace, wire id)."""
        return frozenset(self._sessions)

    def cancel_all(self, requester: JID | str | None = None) -> None:
        """Cancel device-side read-outs (of one full JID, or all). No message is sent."""
        full = None if requester is None else JID(requester).full
        for key, session in list(self._sessions.items()):
            if full is None or key[0] == full:
                del self._sessions[key]
                session.task.cancel()

    def _on_unavailable(self, presence: StanzaBase) -> None:
        self.cancel_all(presence["from"])
        self._dialect_cache.pop(presence["from"].full, None)

    def _on_session_end(self, _event: object) -> None:
        self.cancel_all()
        self._dialect_cache.clear()

    def _reply(self, iq: StanzaBase, itype: Literal["result", "error"] = "result") -> Iq:
        """An empty answer to ``iq``. Not ``iq.reply()``: that deep-copies the whole request
        first, which overflows the recursion limit on a hostile, deeply nested payload."""
        reply = self.xmpp.make_iq(id=iq["id"], ito=iq["from"], itype=itype)
        if self.xmpp.is_component:
            reply["from"] = iq["to"]
        return reply

    def _send_error(self, iq: StanzaBase, etype: str, condition: str, text: str) -> None:
        reply = self._reply(iq, "error")
        reply["error"]["type"] = etype
        reply["error"]["condition"] = condition
        if text:
            reply["error"]["text"] = text
        reply.send()

    @staticmethod
    def _payload(stanza: StanzaBase, logical: str) -> tuple[Dialect, Element] | None:
        """The first child of ``stanza`` that is a ``logical`` element of a known dialect."""
        for child in stanza.xml:
            found = _split_tag(child.tag)
            if found is not None and found[1] == getattr(found[0].sensordata, logical):
                return found[0], child
        return None

    async def _handle_req(self, iq: StanzaBase) -> None:
        if iq["type"] not in ("get", "set"):
            return
        found = self._payload(iq, "req")
        if found is None or found[0] not in self._served:
            return
        dialect, elem = found
        requester = iq["from"]
        try:
            request = convert.request_from_xml(elem, default_tz=self._tz, dialect=dialect)
        except StanzaError as err:
            self._send_error(iq, "modify", "bad-request", str(err))
            return

        try:
            allowed = await self.authorize(requester, request)
        except Exception:
            _LOGGER.exception(
                "authorizer failed for seqnr=%s from %s; denying", request.wire_id, requester
            )
            allowed = False
        narrowed = isinstance(allowed, ReadoutRequest)
        if narrowed:
            # The authority narrowed the read-out: serve that, and filter fields strictly.
            assert isinstance(allowed, ReadoutRequest)
            request = allowed
        elif allowed is not True:
            self._send_error(iq, "cancel", "forbidden", "Read-out not permitted.")
            return

        source = self.source
        if source is None:
            self._send_error(iq, "cancel", "service-unavailable", "No sensor data source.")
            return
        if request.when is not None and request.when > datetime.now(UTC) + WHEN_TOLERANCE:
            # Accepting would promise a queued read-out (§2.1) that this plugin does not do.
            self._send_error(
                iq, "cancel", "feature-not-implemented", "Scheduled read-outs are not supported."
            )
            return
        for node in request.nodes:
            try:
                known = source.has_node(node)
            except Exception:
                _LOGGER.exception("has_node(%r) failed", node)
                self._send_error(iq, "cancel", "internal-server-error", "Node lookup failed.")
                return
            if not known:
                self._send_error(iq, "cancel", "item-not-found", f"Unknown node {node.node_id!r}.")
                return

        key = (requester.full, dialect.sensordata.namespace, request.wire_id)
        if key in self._sessions:
            name = dialect.sensordata.id_attr
            self._send_error(
                iq, "cancel", "conflict", f"{name} {request.wire_id} is already in use."
            )
            return
        mine = sum(1 for full, _, _ in self._sessions if full == requester.full)
        if mine >= self._per_requester_limit or len(self._sessions) >= self._total_limit:
            self._send_error(iq, "wait", "resource-constraint", "Too many concurrent read-outs.")
            return

        reply = self._reply(iq)
        reply.append(
            convert.accepted_to_xml(request.seqnr, dialect=dialect, request_id=request.request_id)
        )
        reply.send()
        local = iq["to"] if self.xmpp.is_component else None
        task = asyncio.get_running_loop().create_task(
            self._run_session(key, requester, local, request, source, dialect),
            name=f"xep_0323 readout {requester.full} #{request.wire_id}",
        )
        self._sessions[key] = _Session(task, request, dialect, narrowed)

    def _send_payload(self, to: JID, local: JID | None, payload: Element) -> None:
        msg = self.xmpp.make_message(mto=to, mfrom=local)
        msg.append(payload)
        msg.send()

    def _filtered(
        self, request: ReadoutRequest, item: NodeFields | NodeFailure, key: _Key | None = None
    ) -> NodeFields | NodeFailure | None:
        """The item as it will be sent (fields filtered), or None when nothing of it is wanted."""
        if isinstance(item, NodeFailure):
            return item
        if not isinstance(item, NodeFields):
            raise TypeError(
                f"read-out source yielded {type(item).__name__}, expected NodeFields or NodeFailure"
            )
        session = self._sessions.get(key) if key is not None else None
        if not self._filter and not (session is not None and session.narrowed):
            return item
        wanted = tuple(fld for fld in item.fields if request.wants(fld))
        if item.fields and not wanted:
            return None
        return NodeFields(item.node, item.timestamp, wanted)

    def _split(
        self, request: ReadoutRequest, batch: list[NodeFields], dialect: Dialect
    ) -> list[_Payload]:
        """Messages (not done) carrying a batch of nodes, within the size limits."""
        message = FieldsMessage(request.seqnr, tuple(batch), False, request.request_id)
        return list(convert.split_fields(message, dialect=dialect))

    def _send_parts(
        self, to: JID, local: JID | None, parts: Iterable[_Payload], dialect: Dialect
    ) -> None:
        for part in parts:
            if isinstance(part, FieldsMessage):
                payload = convert.fields_to_xml(part, dialect=dialect)
            else:
                payload = convert.failure_to_xml(part, dialect=dialect)
            self._send_payload(to, local, payload)

    async def _run_session(
        self,
        key: _Key,
        requester: JID,
        local: JID | None,
        request: ReadoutRequest,
        source: SensorDataSource,
        dialect: Dialect,
    ) -> None:
        me = asyncio.current_task()
        # Nodes are gathered into batches of up to MAX_FIELDS_PER_MESSAGE fields (one message
        # each instead of one per node), and one message is held back so that the last one
        # can carry done='true'.
        pending: list[_Payload] = []
        batch: list[NodeFields] = []
        batch_fields = 0
        iterator = None

        def hold(parts: list[_Payload]) -> None:
            nonlocal pending
            self._send_parts(requester, local, pending, dialect)
            pending = parts

        try:
            iterator = source.readout(request)
            async for produced in iterator:
                item = self._filtered(request, produced, key)
                if item is None:
                    continue
                size = len(item.fields) if isinstance(item, NodeFields) else 0
                full = batch_fields + size > convert.MAX_FIELDS_PER_MESSAGE
                if batch and (isinstance(item, NodeFailure) or full):
                    hold(self._split(request, batch, dialect))
                    batch, batch_fields = [], 0
                if isinstance(item, NodeFailure):
                    hold([FailureMessage(request.seqnr, (item,), False, request.request_id)])
                else:
                    batch.append(item)
                    batch_fields += len(item.fields)
            if batch:
                hold(self._split(request, batch, dialect))
            if not pending:
                done = convert.seqnr_to_xml(
                    "done", request.seqnr, dialect=dialect, request_id=request.request_id
                )
                self._send_payload(requester, local, done)
            else:
                pending[-1] = dataclasses.replace(pending[-1], done=True)
                self._send_parts(requester, local, pending, dialect)
        except asyncio.CancelledError:
            raise
        except Exception:
            _LOGGER.exception("read-out %s for %s failed", request.wire_id, requester)
            unsent = pending + (self._split(request, batch, dialect) if batch else [])
            self._send_source_failure(requester, local, request, unsent, dialect)
        finally:
            session = self._sessions.get(key)
            if session is not None and session.task is me:
                del self._sessions[key]
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    def _send_source_failure(
        self,
        requester: JID,
        local: JID | None,
        request: ReadoutRequest,
        pending: list[_Payload],
        dialect: Dialect,
    ) -> None:
        try:
            self._send_parts(requester, local, pending, dialect)
        except Exception:
            _LOGGER.exception("could not send the last items of %s", request.wire_id)
        now = datetime.now(UTC)
        refs = request.nodes or (NodeRef(""),)
        failures = tuple(NodeFailure(ref, now, SOURCE_FAILURE_TEXT) for ref in refs)
        message = FailureMessage(request.seqnr, failures, True, request.request_id)
        self._send_payload(requester, local, convert.failure_to_xml(message, dialect=dialect))

    def _handle_cancel(self, iq: StanzaBase) -> None:
        if iq["type"] not in ("get", "set"):
            return
        found = self._payload(iq, "cancel")
        if found is None or found[0] not in self._served:
            return
        dialect, elem = found
        try:
            seqnr, request_id = convert.parse_wire_id(elem, dialect=dialect)
        except StanzaError as err:
            self._send_error(iq, "modify", "bad-request", str(err))
            return
        wire_id = str(seqnr) if request_id is None else request_id
        session = self._sessions.pop((iq["from"].full, dialect.sensordata.namespace, wire_id), None)
        if session is not None:
            session.task.cancel()
        # Idempotent: an unknown or already finished read-out is "cancelled" too.
        reply = self._reply(iq)
        if dialect.sensordata.cancelled is not None:
            reply.append(
                convert.seqnr_to_xml("cancelled", seqnr, dialect=dialect, request_id=request_id)
            )
        reply.send()

    # -- client side ------------------------------------------------------------------------

    def _next_seqnr(self, peer: str) -> int:
        while True:
            self._seqnr = self._seqnr + 1 if self._seqnr < INT32_MAX else 1
            wire_id = str(self._seqnr)
            if not any(key[0] == peer and key[2] == wire_id for key in self._readouts):
                return self._seqnr

    async def negotiate_dialect(self, to: JID | str, *, timeout: float = 10.0) -> Dialect:
        """The dialect to use with ``to``: the first of XSF, IEEE, NF its disco#info lists.

        XSF when it lists none of them or answers disco#info with an error; both outcomes are
        cached per full JID (until it goes unavailable). A disco#info timeout also gives XSF,
        uncached. :class:`TimeoutError` only if ``timeout`` passes.
        """
        peer = JID(to)
        cached = self._dialect_cache.get(peer.full)
        if cached is not None:
            return cached
        try:
            info = await self.xmpp.plugin["xep_0030"].get_info(jid=peer, timeout=timeout)
        except IqError:
            features: set[str] = set()
        except IqTimeout:
            _LOGGER.debug("no disco#info from %s; assuming %s", peer, XSF)
            return XSF
        else:
            features = {
                child.get("var", "")
                for query in info.xml.iter(f"{{{_DISCO_INFO}}}query")
                for child in query.iter(f"{{{_DISCO_INFO}}}feature")
            }
        chosen = next((d for d in DIALECTS if d.sensordata.namespace in features), XSF)
        self._dialect_cache[peer.full] = chosen
        return chosen

    async def request_readout(
        self,
        to: JID | str,
        *,
        nodes: Iterable[NodeRef] = (),
        field_names: Iterable[str] = (),
        types: FieldType = FieldType.MOMENTARY,
        timeout: float = 10.0,
        dialect: Dialect | None = None,
        from_time: datetime | None = None,
        to_time: datetime | None = None,
    ) -> Readout:
        """Read sensor data from ``to`` and wait for the whole read-out.

        ``dialect`` None negotiates it (:meth:`negotiate_dialect`, within ``timeout``).
        ``from_time``/``to_time`` bound historical values (aware datetimes).

        Raises :class:`ReadoutError` when the device rejects the request (stanza error or legacy
        ``<rejected>``), :class:`ReadoutTimeout` when no ``done`` arrives within ``timeout``
        seconds in total (a best-effort ``<cancel>`` is then sent), and :class:`StanzaError` when
        the device sends a malformed payload for this read-out. The result holds what the device
        sent; use :meth:`Readout.filtered` to apply the request's filters on this side too.
        """
        peer = JID(to)
        seqnr = self._next_seqnr(peer.bare)
        request = ReadoutRequest(
            seqnr=seqnr,
            types=types,
            nodes=tuple(nodes),
            field_names=tuple(field_names),
            from_time=from_time,
            to_time=to_time,
        )
        collector = _Collector(seqnr, asyncio.get_running_loop().create_future())
        key: _Key | None = None
        chosen = dialect or XSF
        iq_future: asyncio.Future | None = None
        rejected = False
        try:
            async with asyncio.timeout(timeout):
                if dialect is None:
                    chosen = await self.negotiate_dialect(peer, timeout=timeout)
                key = (peer.bare, chosen.sensordata.namespace, request.wire_id)
                self._readouts[key] = collector
                iq = self.xmpp.make_iq_get(ito=peer)
                iq.append(convert.request_to_xml(request, dialect=chosen))
                # slixmpp's own IQ timeout is a backstop; ours governs.
                iq_future = iq.send(timeout=timeout + 5)
                waiting: set[asyncio.Future] = {iq_future, collector.future}
                while not collector.future.done():
                    finished, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                    if iq_future in finished:
                        waiting.discard(iq_future)
                        try:
                            self._check_answer(iq_future, collector, chosen)
                        except ReadoutError:
                            rejected = True
                            raise
                collector.future.result()  # raises StanzaError if a payload was garbage
            return Readout(
                seqnr, tuple(collector.fields), tuple(collector.failures), queued=collector.queued
            )
        except TimeoutError as err:
            if isinstance(err, ReadoutTimeout):
                raise
            raise ReadoutTimeout(
                f"no complete read-out from {peer} (seqnr {seqnr}) within {timeout} s"
            ) from err
        finally:
            if key is not None:
                self._readouts.pop(key, None)
            if not collector.future.done():
                collector.future.cancel()
                if not rejected and iq_future is not None:
                    self._send_cancel(peer, seqnr, chosen)
            elif not collector.future.cancelled():
                collector.future.exception()
            if iq_future is not None:
                if iq_future.done():
                    _consume(iq_future)
                else:
                    iq_future.cancel()

    def _check_answer(
        self, iq_future: asyncio.Future, collector: _Collector, dialect: Dialect
    ) -> None:
        """Inspect the IQ answer to ``req``: raise on rejection, note ``accepted``."""
        try:
            result = iq_future.result()
        except IqError as err:
            raise self._readout_error(err.iq) from err
        except IqTimeout as err:
            raise ReadoutTimeout(f"no answer to read-out request seqnr {collector.seqnr}") from err
        names = dialect.sensordata
        for child in result.xml:
            local = names.local(child.tag)
            try:
                if local is not None and local == names.rejected:  # pre-0.3 device
                    _, text = convert.rejected_from_xml(child)
                    raise ReadoutError("undefined-condition", text)
                if local == names.accepted:
                    accepted = convert.accepted_from_xml(child, dialect=dialect)
                    if accepted.wire_id == str(collector.seqnr):
                        collector.queued = accepted.queued
            except StanzaError:
                _LOGGER.debug("ignoring malformed <%s> from %s", local, result["from"])

    @staticmethod
    def _readout_error(iq: StanzaBase) -> ReadoutError:
        condition, text = "", ""
        if iq.xml.find(f"{{{iq.namespace}}}error") is not None:
            condition = iq["error"]["condition"]
            text = iq["error"]["text"]
        legacy = [child for child in iq.xml if _local(child) == "rejected"]
        if legacy:
            # slixmpp's IqError touches iq['error'], which *synthesizes* a cancel/
            # feature-not-implemented element when the peer sent none (pre-0.3 peers send only
            # <rejected>). That default is indistinguishable afterwards, so treat it as absent.
            if condition == "feature-not-implemented" and not text:
                condition = ""
            with contextlib.suppress(StanzaError):
                text = text or convert.rejected_from_xml(legacy[0])[1]
        return ReadoutError(condition or "undefined-condition", text)

    def _send_cancel(self, peer: JID, seqnr: int, dialect: Dialect = XSF) -> None:
        """Fire-and-forget ``<cancel>`` for an abandoned read-out."""
        try:
            iq = self.xmpp.make_iq_get(ito=peer)
            iq.append(convert.seqnr_to_xml("cancel", seqnr, dialect=dialect))
            iq.send(timeout=10).add_done_callback(_consume)
        except Exception:
            _LOGGER.debug("could not send <cancel seqnr=%s> to %s", seqnr, peer, exc_info=True)

    def _handle_message(self, msg: StanzaBase) -> None:
        peer = msg["from"].bare
        for child in msg.xml:
            found = _split_tag(child.tag)
            if found is None:
                continue
            dialect, local = found
            names = dialect.sensordata
            if local not in (names.fields, names.failure, names.done, names.started):
                continue
            try:
                wire_id = convert.wire_id_from_xml(child, dialect=dialect)
            except StanzaError:
                _LOGGER.debug("ignoring <%s> without valid id from %s", local, msg["from"])
                continue
            collector = self._readouts.get((peer, names.namespace, wire_id))
            if collector is None or collector.future.done():
                _LOGGER.debug(
                    "ignoring <%s %s=%s> from %s: no such read-out",
                    local,
                    names.id_attr,
                    wire_id,
                    msg["from"],
                )
                continue
            try:
                if local in (names.fields, names.failure):
                    fields, failures = convert.results_from_xml(
                        child, default_tz=self._tz, dialect=dialect
                    )
                    collector.add_fields(fields.items)
                    collector.failures.extend(failures.failures)
                    done = fields.done
                else:
                    done = local == names.done
            except StanzaError as err:
                collector.finish(err)
                continue
            if done:
                collector.finish()
