"""The ``xep_0323_ncap`` slixmpp plugin: XEP-0323 device side and client side, asyncio only.

Device side: set :attr:`XEP_0323.source` (a :class:`~.model.SensorDataSource`) and
:attr:`XEP_0323.authorize` (async ``(requester, request) -> bool``; the default denies everything).
Each accepted read-out runs as a plugin-owned task keyed by (requester full JID, seqnr).

Client side: ``await plugin.request_readout(jid, ...)`` returns a :class:`~.model.Readout` or raises
:class:`~xep.errors.ReadoutError` / :class:`~xep.errors.ReadoutTimeout` /
:class:`~xep.errors.StanzaError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from xml.etree.ElementTree import Element

from slixmpp import JID, Message
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.plugins import BasePlugin
from slixmpp.xmlstream.handler import Callback, CoroutineCallback
from slixmpp.xmlstream.matcher import StanzaPath
from slixmpp.xmlstream.matcher.base import MatcherBase
from slixmpp.xmlstream.stanzabase import StanzaBase

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

__all__ = ["XEP_0323", "Authorizer", "deny_all"]

_LOGGER = logging.getLogger(__name__)

NS = convert.NS
_PREFIX = "{" + NS + "}"

#: ``async (requester full JID, request) -> allowed``.
Authorizer = Callable[[JID, ReadoutRequest], Awaitable[bool]]

#: Text of the ``<failure>`` sent when the data source raises (details go to the log only).
SOURCE_FAILURE_TEXT = "Read-out failed: internal error."
# A `when` this close to now is read at once; later ones would need a queued read-out.
WHEN_TOLERANCE = timedelta(seconds=5)


async def deny_all(requester: JID, request: ReadoutRequest) -> bool:
    """The default authorizer: fail closed."""
    _LOGGER.debug("denying read-out seqnr=%s from %s (no authorizer set)", request.seqnr, requester)
    return False


def _local(elem: Element) -> str | None:
    tag = elem.tag
    return tag[len(_PREFIX) :] if isinstance(tag, str) and tag.startswith(_PREFIX) else None


class _HasSensorDataPayload(MatcherBase):
    """Matches ``<message>`` stanzas with any child in ``urn:xmpp:iot:sensordata``."""

    def __init__(self) -> None:
        super().__init__(NS)

    def match(self, xml: StanzaBase) -> bool:
        return isinstance(xml, Message) and any(_local(child) for child in xml.xml)


@dataclass(slots=True)
class _Collector:
    """Client-side state of one outstanding read-out."""

    seqnr: int
    future: asyncio.Future[None]
    fields: list[NodeFields] = field(default_factory=list)
    failures: list[NodeFailure] = field(default_factory=list)
    queued: bool = False

    def finish(self, error: BaseException | None = None) -> None:
        if self.future.done():
            return
        if error is None:
            self.future.set_result(None)
        else:
            self.future.set_exception(error)


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
    #: without one (None = local zone).
    default_config: ClassVar[dict[str, Any]] = {
        "max_sessions_per_requester": 8,
        "max_sessions": 64,
        "default_tz": None,
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
        self._sessions: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._readouts: dict[tuple[str, int], _Collector] = {}
        self._seqnr = random.randrange(1, 1 << 24)

        register_stanzas()
        self.xmpp.register_handler(
            CoroutineCallback(
                "XEP-0323 ncap req", StanzaPath("iq/sensordata_req"), self._handle_req
            )
        )
        self.xmpp.register_handler(
            Callback(
                "XEP-0323 ncap cancel", StanzaPath("iq/sensordata_cancel"), self._handle_cancel
            )
        )
        self.xmpp.register_handler(
            Callback("XEP-0323 ncap message", _HasSensorDataPayload(), self._handle_message)
        )
        self.xmpp.add_event_handler("presence_unavailable", self._on_unavailable)
        self.xmpp.add_event_handler("session_end", self._on_session_end)

    def session_bind(self, jid: JID | str) -> None:
        self.xmpp.plugin["xep_0030"].add_feature(NS)

    def plugin_end(self) -> None:
        self.cancel_all()
        for collector in list(self._readouts.values()):
            collector.finish(XepError("xep_0323_ncap plugin was unloaded"))
        self._readouts.clear()
        for handler in ("XEP-0323 ncap req", "XEP-0323 ncap cancel", "XEP-0323 ncap message"):
            self.xmpp.remove_handler(handler)
        self.xmpp.del_event_handler("presence_unavailable", self._on_unavailable)
        self.xmpp.del_event_handler("session_end", self._on_session_end)
        self.xmpp.plugin["xep_0030"].del_feature(feature=NS)

    # -- device side ------------------------------------------------------------------------

    @property
    def active_sessions(self) -> frozenset[tuple[str, int]]:
        """Running device-side read-outs as (requester full JID, seqnr)."""
        return frozenset(self._sessions)

    def cancel_all(self, requester: JID | str | None = None) -> None:
        """Cancel device-side read-outs (of one full JID, or all). No message is sent."""
        full = None if requester is None else JID(requester).full
        for key, task in list(self._sessions.items()):
            if full is None or key[0] == full:
                del self._sessions[key]
                task.cancel()

    def _on_unavailable(self, presence: StanzaBase) -> None:
        self.cancel_all(presence["from"])

    def _on_session_end(self, _event: object) -> None:
        self.cancel_all()

    def _send_error(self, iq: StanzaBase, etype: str, condition: str, text: str) -> None:
        reply = iq.reply()
        reply["error"]["type"] = etype
        reply["error"]["condition"] = condition
        if text:
            reply["error"]["text"] = text
        reply.send()

    async def _handle_req(self, iq: StanzaBase) -> None:
        if iq["type"] not in ("get", "set"):
            return
        requester = iq["from"]
        try:
            request = convert.request_from_xml(iq["sensordata_req"].xml, default_tz=self._tz)
        except StanzaError as err:
            self._send_error(iq, "modify", "bad-request", str(err))
            return

        try:
            allowed = await self.authorize(requester, request)
        except Exception:
            _LOGGER.exception(
                "authorizer failed for seqnr=%s from %s; denying", request.seqnr, requester
            )
            allowed = False
        if allowed is not True:
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

        key = (requester.full, request.seqnr)
        if key in self._sessions:
            self._send_error(iq, "cancel", "conflict", f"seqnr {request.seqnr} is already in use.")
            return
        mine = sum(1 for full, _ in self._sessions if full == requester.full)
        if mine >= self._per_requester_limit or len(self._sessions) >= self._total_limit:
            self._send_error(iq, "wait", "resource-constraint", "Too many concurrent read-outs.")
            return

        reply = iq.reply()
        reply.append(convert.accepted_to_xml(request.seqnr))
        reply.send()
        local = iq["to"] if self.xmpp.is_component else None
        task = asyncio.get_running_loop().create_task(
            self._run_session(key, requester, local, request, source),
            name=f"xep_0323 readout {requester.full} #{request.seqnr}",
        )
        self._sessions[key] = task

    def _send_payload(self, to: JID, local: JID | None, payload: Element) -> None:
        msg = self.xmpp.make_message(mto=to, mfrom=local)
        msg.append(payload)
        msg.send()

    def _send_item(
        self, to: JID, local: JID | None, seqnr: int, item: NodeFields | NodeFailure, done: bool
    ) -> None:
        if isinstance(item, NodeFields):
            payload = convert.fields_to_xml(FieldsMessage(seqnr, (item,), done))
        elif isinstance(item, NodeFailure):
            payload = convert.failure_to_xml(FailureMessage(seqnr, (item,), done))
        else:
            raise TypeError(
                f"read-out source yielded {type(item).__name__}, expected NodeFields or NodeFailure"
            )
        self._send_payload(to, local, payload)

    async def _run_session(
        self,
        key: tuple[str, int],
        requester: JID,
        local: JID | None,
        request: ReadoutRequest,
        source: SensorDataSource,
    ) -> None:
        seqnr = request.seqnr
        me = asyncio.current_task()
        pending: NodeFields | NodeFailure | None = None
        iterator = None
        try:
            iterator = source.readout(request)
            # One item of look-ahead, so that the last message can carry done='true'.
            async for item in iterator:
                if pending is not None:
                    self._send_item(requester, local, seqnr, pending, done=False)
                pending = item
            if pending is None:
                self._send_payload(requester, local, convert.seqnr_to_xml("done", seqnr))
            else:
                self._send_item(requester, local, seqnr, pending, done=True)
        except asyncio.CancelledError:
            raise
        except Exception:
            _LOGGER.exception("read-out seqnr=%s for %s failed", seqnr, requester)
            self._send_source_failure(requester, local, request, pending)
        finally:
            if self._sessions.get(key) is me:
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
        pending: NodeFields | NodeFailure | None,
    ) -> None:
        try:
            if isinstance(pending, NodeFields | NodeFailure):
                self._send_item(requester, local, request.seqnr, pending, done=False)
        except Exception:
            _LOGGER.exception("could not send the last item of seqnr=%s", request.seqnr)
        now = datetime.now(UTC)
        refs = request.nodes or (NodeRef(""),)
        failures = tuple(NodeFailure(ref, now, SOURCE_FAILURE_TEXT) for ref in refs)
        payload = convert.failure_to_xml(FailureMessage(request.seqnr, failures, done=True))
        self._send_payload(requester, local, payload)

    def _handle_cancel(self, iq: StanzaBase) -> None:
        if iq["type"] not in ("get", "set"):
            return
        try:
            seqnr = convert.seqnr_from_xml(iq["sensordata_cancel"].xml, "cancel")
        except StanzaError as err:
            self._send_error(iq, "modify", "bad-request", str(err))
            return
        task = self._sessions.pop((iq["from"].full, seqnr), None)
        if task is not None:
            task.cancel()
        # Idempotent: an unknown or already finished seqnr is "cancelled" too.
        reply = iq.reply()
        reply.append(convert.seqnr_to_xml("cancelled", seqnr))
        reply.send()

    # -- client side ------------------------------------------------------------------------

    def _next_seqnr(self, peer: str) -> int:
        while True:
            self._seqnr = self._seqnr + 1 if self._seqnr < INT32_MAX else 1
            if (peer, self._seqnr) not in self._readouts:
                return self._seqnr

    async def request_readout(
        self,
        to: JID | str,
        *,
        nodes: Iterable[NodeRef] = (),
        field_names: Iterable[str] = (),
        types: FieldType = FieldType.MOMENTARY,
        timeout: float = 10.0,
    ) -> Readout:
        """Read sensor data from ``to`` and wait for the whole read-out.

        Raises :class:`ReadoutError` when the device rejects the request (stanza error or legacy
        ``<rejected>``), :class:`ReadoutTimeout` when no ``done`` arrives within ``timeout``
        seconds in total (a best-effort ``<cancel>`` is then sent), and :class:`StanzaError` when
        the device sends a malformed payload for this read-out.
        """
        peer = JID(to)
        seqnr = self._next_seqnr(peer.bare)
        request = ReadoutRequest(
            seqnr=seqnr, types=types, nodes=tuple(nodes), field_names=tuple(field_names)
        )
        key = (peer.bare, seqnr)
        collector = _Collector(seqnr, asyncio.get_running_loop().create_future())
        self._readouts[key] = collector
        iq = self.xmpp.make_iq_get(ito=peer)
        iq.append(convert.request_to_xml(request))
        iq_future: asyncio.Future | None = None
        rejected = False
        try:
            async with asyncio.timeout(timeout):
                # slixmpp's own IQ timeout is a backstop; ours governs.
                iq_future = iq.send(timeout=timeout + 5)
                waiting: set[asyncio.Future] = {iq_future, collector.future}
                while not collector.future.done():
                    finished, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                    if iq_future in finished:
                        waiting.discard(iq_future)
                        try:
                            self._check_answer(iq_future, collector)
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
            self._readouts.pop(key, None)
            if not collector.future.done():
                collector.future.cancel()
                if not rejected:
                    self._send_cancel(peer, seqnr)
            elif not collector.future.cancelled():
                collector.future.exception()
            if iq_future is not None:
                if iq_future.done():
                    _consume(iq_future)
                else:
                    iq_future.cancel()

    def _check_answer(self, iq_future: asyncio.Future, collector: _Collector) -> None:
        """Inspect the IQ answer to ``req``: raise on rejection, note ``accepted``."""
        try:
            result = iq_future.result()
        except IqError as err:
            raise self._readout_error(err.iq) from err
        except IqTimeout as err:
            raise ReadoutTimeout(f"no answer to read-out request seqnr {collector.seqnr}") from err
        for child in result.xml:
            local = _local(child)
            try:
                if local == "rejected":  # pre-0.3 device
                    _, text = convert.rejected_from_xml(child)
                    raise ReadoutError("undefined-condition", text)
                if local == "accepted":
                    accepted = convert.accepted_from_xml(child)
                    if accepted.seqnr == collector.seqnr:
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

    def _send_cancel(self, peer: JID, seqnr: int) -> None:
        """Fire-and-forget ``<cancel>`` for an abandoned read-out."""
        try:
            iq = self.xmpp.make_iq_get(ito=peer)
            iq.append(convert.seqnr_to_xml("cancel", seqnr))
            iq.send(timeout=10).add_done_callback(_consume)
        except Exception:
            _LOGGER.debug("could not send <cancel seqnr=%s> to %s", seqnr, peer, exc_info=True)

    def _handle_message(self, msg: StanzaBase) -> None:
        peer = msg["from"].bare
        for child in msg.xml:
            local = _local(child)
            if local not in ("fields", "failure", "done", "started"):
                continue
            try:
                seqnr = convert.parse_seqnr(child)
            except StanzaError:
                _LOGGER.debug("ignoring <%s> without valid seqnr from %s", local, msg["from"])
                continue
            collector = self._readouts.get((peer, seqnr))
            if collector is None or collector.future.done():
                _LOGGER.debug(
                    "ignoring <%s seqnr=%s> from %s: no such read-out", local, seqnr, msg["from"]
                )
                continue
            try:
                if local == "fields":
                    fields = convert.fields_from_xml(child, default_tz=self._tz)
                    collector.fields.extend(fields.items)
                    done = fields.done
                elif local == "failure":
                    failure = convert.failure_from_xml(child, default_tz=self._tz)
                    collector.failures.extend(failure.failures)
                    done = failure.done
                else:
                    done = local == "done"
            except StanzaError as err:
                collector.finish(err)
                continue
            if done:
                collector.finish()
