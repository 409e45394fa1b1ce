"""The ``iot_events_ncap`` slixmpp plugin: IoT-Events subscriptions, thing and client side.

Thing side: set :attr:`IoTEvents.source` (a :class:`~xep.xep_0323.model.SensorDataSource`, used
for node checks, the initial read-out and heartbeats) and :attr:`IoTEvents.authorize` (async
``(requester, equivalent ReadoutRequest) -> bool``; the default denies everything). Call
:meth:`IoTEvents.report` with every fresh reading; each subscription's
:class:`~.trigger.TriggerEvaluator` decides what to push as XEP-0323 ``<fields>`` messages.
Subscriptions are keyed by (subscriber full JID, seqnr) and dropped when that resource goes
unavailable, on :meth:`IoTEvents.drop` and when our session ends. Rate-limit flushes and
heartbeats run in one plugin-owned scheduler task that reads time from :attr:`IoTEvents.clock`.

Client side: ``sub = await plugin.subscribe(jid, ...)``, then ``async for fields in sub`` or
``await sub.next(timeout)``, and ``await sub.cancel()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
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

from xep.errors import StanzaError, SubscriptionError, SubscriptionTimeout
from xep.iot_events import convert
from xep.iot_events.model import FieldTrigger, SubscribeRequest
from xep.iot_events.stanza import register_stanzas
from xep.iot_events.trigger import TriggerEvaluator
from xep.xep_0323 import convert as sd_convert
from xep.xep_0323.model import (
    INT32_MAX,
    FailureMessage,
    FieldsMessage,
    FieldType,
    NodeFailure,
    NodeFields,
    NodeRef,
    ReadoutRequest,
    SensorDataSource,
)
from xep.xmlutil import local_name

__all__ = ["Authorizer", "IoTEvents", "Subscription", "deny_all"]

_LOGGER = logging.getLogger(__name__)

NS = convert.NS
SD_NS = sd_convert.NS

#: ``async (requester full JID, equivalent read-out request) -> allowed``.
#: ``async (requester, request) -> True | False | narrowed request`` (as for XEP-0323): a
#: narrowed answer restricts the subscription's nodes and field triggers.
Authorizer = Callable[[JID, ReadoutRequest], Awaitable[bool | ReadoutRequest]]

#: Text of the ``<failure>`` sent when the data source raises (details go to the log only).
SOURCE_FAILURE_TEXT = "Read-out failed: internal error."
# Client-side seqnrs are drawn from the upper half of xs:int, far from xep_0323_ncap's counter
# (which starts below 2**24), so a read-out and a subscription to one device never share a seqnr.
_SEQNR_LOW = 1 << 30
# Floor of the scheduler's sleep, so that a deadline in the past can never make it spin.
_MIN_SLEEP = 0.001


async def deny_all(requester: JID, request: ReadoutRequest) -> bool:
    """The default authorizer: fail closed."""
    _LOGGER.debug(
        "denying subscription seqnr=%s from %s (no authorizer set)", request.seqnr, requester
    )
    return False


def _sd_local(elem: Element) -> str | None:
    return local_name(elem, SD_NS)


def _consume(future: asyncio.Future) -> None:
    """Done-callback retrieving a fire-and-forget future's outcome (no 'never retrieved')."""
    if not future.cancelled():
        future.exception()


def _seconds(value: timedelta | float | None) -> timedelta | None:
    if value is None or isinstance(value, timedelta):
        return value
    return timedelta(seconds=value)


class _HasSensorDataPayload(MatcherBase):
    """Matches ``<message>`` stanzas with any child in ``urn:xmpp:iot:sensordata``."""

    def __init__(self) -> None:
        super().__init__(SD_NS)

    def match(self, xml: StanzaBase) -> bool:
        return isinstance(xml, Message) and any(_sd_local(child) for child in xml.xml)


@dataclass(eq=False, slots=True)
class _Sub:
    """Thing-side state of one accepted subscription."""

    key: tuple[str, int]
    subscriber: JID
    local: JID | None
    request: SubscribeRequest
    evaluator: TriggerEvaluator
    readout: asyncio.Task[None] | None = None


@dataclass(eq=False, slots=True)
class _Inflight:
    """A subscribe request waiting for its authorizer; ``revoked`` if the subscriber left."""

    full: str
    bare: str
    revoked: bool = False


class Subscription:
    """Client side of one subscription: an async iterator of the pushed :class:`NodeFields`.

    ``async for fields in sub`` ends when the subscription is closed (cancelled, device offline,
    session ended); :meth:`next` raises :class:`SubscriptionError` ``gone`` then. Events already
    queued are delivered first. When the consumer falls ``max_queued`` events behind, the oldest
    are dropped. ``failures`` keeps the last ``<failure>`` entries the device sent (e.g. a heartbeat
    read-out that failed).
    """

    def __init__(self, plugin: IoTEvents, peer: JID, request: SubscribeRequest, max_queued: int):
        self._plugin = plugin
        self.peer = peer
        self.request = request
        #: Full JID of the device resource that accepted (None until it answered).
        self.device: JID | None = None
        self.failures: deque[NodeFailure] = deque(maxlen=100)
        self._queue: asyncio.Queue[NodeFields | None] = asyncio.Queue()
        self._max_queued = max_queued
        self._closed: str | None = None

    @property
    def seqnr(self) -> int:
        return self.request.seqnr

    @property
    def closed(self) -> str | None:
        """Why the subscription ended, or None while it is active."""
        return self._closed

    def __repr__(self) -> str:
        state = f"closed={self._closed!r}" if self._closed else "active"
        return f"<Subscription {self.peer} seqnr={self.seqnr} {state}>"

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> NodeFields:
        try:
            return await self.next()
        except SubscriptionError as err:
            if err.condition == "gone":
                raise StopAsyncIteration from None
            raise

    async def next(self, timeout: float | None = None) -> NodeFields:
        """The next event; :class:`SubscriptionTimeout` if none within ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                item = await self._queue.get()
        except TimeoutError as err:
            raise SubscriptionTimeout(
                f"no event from {self.peer} (seqnr {self.seqnr}) within {timeout} s"
            ) from err
        if item is None:
            self._queue.put_nowait(None)  # leave the end marker for later calls
            raise SubscriptionError("gone", self._closed or "")
        return item

    async def cancel(self, timeout: float = 10.0) -> None:
        """Stop the subscription: close it here and send ``<unsubscribe>`` (errors are ignored)."""
        if self._closed is not None:
            return
        self._plugin._forget_subscription(self, "cancelled")
        await self._plugin._unsubscribe(self.device or self.peer, self.seqnr, timeout)

    # -- plugin side ------------------------------------------------------------------------

    def _push(self, item: NodeFields) -> None:
        if self._closed is not None:
            return
        while self._queue.qsize() >= self._max_queued:
            self._queue.get_nowait()
            _LOGGER.warning(
                "subscription %s seqnr=%s: consumer too slow, event dropped", self.peer, self.seqnr
            )
        self._queue.put_nowait(item)

    def _close(self, reason: str) -> None:
        if self._closed is None:
            self._closed = reason
            self._queue.put_nowait(None)


def _narrowed(request: SubscribeRequest, allowed: ReadoutRequest) -> SubscribeRequest:
    """The subscription cut down to the nodes and fields of an authority's narrowed request."""
    triggers = request.fields
    if allowed.field_names:
        wanted = set(allowed.field_names)
        triggers = tuple(t for t in triggers if t.name in wanted) or tuple(
            FieldTrigger(name)
            for name in dict.fromkeys(allowed.field_names)  # names once
        )
    return dataclasses.replace(request, nodes=allowed.nodes, fields=triggers)


class IoTEvents(BasePlugin):
    """IoT-Events subscriptions (protoXEP ``urn:xmpp:iot:events``), thing and client side."""

    name = "iot_events_ncap"
    description = "IoT - Events: sensor-data subscriptions (NCAP asyncio implementation)"
    dependencies: ClassVar[set[str]] = {"xep_0030"}
    #: ``max_subscriptions_per_requester`` (per bare JID) / ``max_subscriptions`` bound the
    #: thing-side subscriptions (beyond: ``wait/resource-constraint``). ``min_heartbeat``
    #: (seconds) is the shortest heartbeat we honour (shorter ``maxInterval`` is raised to it).
    #: ``max_queued``: client-side events kept per subscription. ``default_tz``: zone for received
    #: timestamps without one (None = local zone).
    default_config: ClassVar[dict[str, Any]] = {
        "max_subscriptions_per_requester": 16,
        "max_subscriptions": 256,
        "min_heartbeat": 1.0,
        "max_queued": 1000,
        "default_tz": None,
    }

    # -- lifecycle --------------------------------------------------------------------------

    def plugin_init(self) -> None:
        #: Thing side: node checks, initial read-outs and heartbeats. None → service-unavailable.
        self.source: SensorDataSource | None = None
        #: Thing side: access decision per subscription; exceptions count as "deny".
        self.authorize: Authorizer = deny_all
        #: Monotonic seconds; replace it to drive rate limits and heartbeats from a test.
        self.clock: Callable[[], float] = time.monotonic
        self._per_requester_limit = int(self.config["max_subscriptions_per_requester"])
        self._total_limit = int(self.config["max_subscriptions"])
        self._min_heartbeat = float(self.config["min_heartbeat"])
        self._max_queued = int(self.config["max_queued"])
        self._tz = self.config["default_tz"]
        self._subs: dict[tuple[str, int], _Sub] = {}
        self._inflight: set[_Inflight] = set()
        self._scheduler: asyncio.Task[None] | None = None
        self._kick = asyncio.Event()
        self._client_subs: dict[tuple[str, int], Subscription] = {}
        self._seqnr = random.randrange(_SEQNR_LOW, INT32_MAX)

        register_stanzas()
        self.xmpp.register_handler(
            CoroutineCallback(
                "IoT-Events subscribe",
                StanzaPath("iq/iot_events_subscribe"),
                self._handle_subscribe,
            )
        )
        self.xmpp.register_handler(
            Callback(
                "IoT-Events unsubscribe",
                StanzaPath("iq/iot_events_unsubscribe"),
                self._handle_unsubscribe,
            )
        )
        self.xmpp.register_handler(
            Callback("IoT-Events message", _HasSensorDataPayload(), self._handle_message)
        )
        self.xmpp.add_event_handler("presence_unavailable", self._on_unavailable)
        self.xmpp.add_event_handler("session_end", self._on_session_end)

    def session_bind(self, jid: JID | str) -> None:
        self.xmpp.plugin["xep_0030"].add_feature(NS)

    def plugin_end(self) -> None:
        self._reset("plugin unloaded")
        for handler in ("IoT-Events subscribe", "IoT-Events unsubscribe", "IoT-Events message"):
            self.xmpp.remove_handler(handler)
        self.xmpp.del_event_handler("presence_unavailable", self._on_unavailable)
        self.xmpp.del_event_handler("session_end", self._on_session_end)
        self.xmpp.plugin["xep_0030"].del_feature(feature=NS)

    def _reset(self, reason: str) -> None:
        for inflight in self._inflight:
            inflight.revoked = True
        for key in list(self._subs):
            self._remove(key)
        if self._scheduler is not None:
            self._scheduler.cancel()
            self._scheduler = None
        for sub in list(self._client_subs.values()):
            sub._close(reason)
        self._client_subs.clear()

    def _on_session_end(self, _event: object) -> None:
        self._reset("session ended")

    def _on_unavailable(self, presence: StanzaBase) -> None:
        sender = JID(presence["from"])

        def gone(jid: JID | str) -> bool:
            jid = JID(jid)
            return jid.full == sender.full if sender.resource else jid.bare == sender.bare

        # Thing side: the subscriber left.
        for inflight in self._inflight:
            if gone(inflight.full):
                inflight.revoked = True
        for key, sub in list(self._subs.items()):
            if gone(sub.subscriber):
                _LOGGER.debug("dropping subscription seqnr=%s: %s went offline", key[1], key[0])
                self._remove(key)
        # Client side: the device we subscribed to left.
        for client_sub in list(self._client_subs.values()):
            device = client_sub.device
            if device is not None and gone(device):
                self._forget_subscription(client_sub, f"{sender} went offline")

    # -- thing side: public -----------------------------------------------------------------

    @property
    def subscriptions(self) -> dict[tuple[str, int], SubscribeRequest]:
        """Active thing-side subscriptions by (subscriber full JID, seqnr)."""
        return {key: sub.request for key, sub in self._subs.items()}

    def report(self, fields: NodeFields) -> None:
        """A fresh reading: evaluate every subscription and push the events that fire.

        Never raises for delivery problems (they are logged); ``TypeError`` for a wrong argument.
        """
        if not isinstance(fields, NodeFields):
            raise TypeError(f"report() takes NodeFields, got {type(fields).__name__}")
        if not self._subs:
            return
        now = self.clock()
        for sub in list(self._subs.values()):
            try:
                decision = sub.evaluator.offer(fields, now)
                if decision.items:
                    self._send_event(sub, decision.items)
            except Exception:
                _LOGGER.exception("evaluating subscription seqnr=%s of %s failed", *sub.key[::-1])
        self.wake()

    def drop(self, jid: JID | str) -> None:
        """Friendship with ``jid`` ended: forget all subscriptions of that bare JID."""
        bare = JID(jid).bare
        for inflight in self._inflight:
            if inflight.bare == bare:
                inflight.revoked = True
        for key, sub in list(self._subs.items()):
            if sub.subscriber.bare == bare:
                self._remove(key)

    def wake(self) -> None:
        """Make the scheduler re-evaluate rate limits and heartbeats now (at :attr:`clock`)."""
        if not self._subs:
            return
        self._kick.set()
        if self._scheduler is None or self._scheduler.done():
            self._scheduler = self.xmpp.loop.create_task(
                self._schedule(), name="iot_events scheduler"
            )

    # -- thing side: requests ---------------------------------------------------------------

    def _send_error(self, iq: StanzaBase, etype: str, condition: str, text: str) -> None:
        reply = iq.reply()
        reply["error"]["type"] = etype
        reply["error"]["condition"] = condition
        if text:
            reply["error"]["text"] = text
        reply.send()

    async def _handle_subscribe(self, iq: StanzaBase) -> None:
        if iq["type"] not in ("get", "set"):
            return
        requester = JID(iq["from"])
        try:
            request = convert.subscribe_from_xml(iq["iot_events_subscribe"].xml)
        except StanzaError as err:
            self._send_error(iq, "modify", "bad-request", str(err))
            return

        inflight = _Inflight(requester.full, requester.bare)
        self._inflight.add(inflight)
        try:
            allowed = await self.authorize(requester, request.to_readout_request(datetime.now(UTC)))
        except Exception:
            _LOGGER.exception(
                "authorizer failed for subscription seqnr=%s from %s; denying",
                request.seqnr,
                requester,
            )
            allowed = False
        finally:
            self._inflight.discard(inflight)
        if isinstance(allowed, ReadoutRequest) and not inflight.revoked:
            request = _narrowed(request, allowed)
        elif allowed is not True or inflight.revoked:
            self._send_error(iq, "cancel", "forbidden", "Subscription not permitted.")
            return

        source = self.source
        if source is None:
            self._send_error(iq, "cancel", "service-unavailable", "No sensor data source.")
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
        others = [k for k in self._subs if k != key]
        mine = sum(1 for full, _ in others if JID(full).bare == requester.bare)
        if mine >= self._per_requester_limit or len(others) >= self._total_limit:
            self._send_error(iq, "wait", "resource-constraint", "Too many subscriptions.")
            return
        if key in self._subs:  # the same seqnr again: the new subscription replaces the old one
            self._remove(key)

        now = self.clock()
        sub = _Sub(
            key=key,
            subscriber=requester,
            local=iq["to"] if self.xmpp.is_component else None,
            request=request,
            evaluator=TriggerEvaluator(request, now, min_heartbeat=self._min_heartbeat),
        )
        self._subs[key] = sub
        reply = iq.reply()
        reply.append(sd_convert.accepted_to_xml(request.seqnr))
        reply.send()
        if request.initial_readout:
            self._start_readout(sub, now)
        self.wake()

    def _handle_unsubscribe(self, iq: StanzaBase) -> None:
        if iq["type"] not in ("get", "set"):
            return
        try:
            seqnr = convert.unsubscribe_from_xml(iq["iot_events_unsubscribe"].xml)
        except StanzaError as err:
            self._send_error(iq, "modify", "bad-request", str(err))
            return
        self._remove((JID(iq["from"]).full, seqnr))
        iq.reply(clear=True).send()  # empty result, even for an unknown seqnr

    def _remove(self, key: tuple[str, int]) -> None:
        sub = self._subs.pop(key, None)
        if sub is not None and sub.readout is not None:
            sub.readout.cancel()
            sub.readout = None

    # -- thing side: sending ----------------------------------------------------------------

    def _send_payload(self, sub: _Sub, payload: Element) -> None:
        msg = self.xmpp.make_message(mto=sub.subscriber, mfrom=sub.local)
        msg.append(payload)
        msg.send()

    def _send_event(self, sub: _Sub, items: tuple[NodeFields, ...]) -> None:
        seqnr = sub.request.seqnr
        self._send_payload(sub, sd_convert.fields_to_xml(FieldsMessage(seqnr, items, done=True)))

    def _send_item(self, sub: _Sub, item: NodeFields | NodeFailure, done: bool) -> None:
        seqnr = sub.request.seqnr
        if isinstance(item, NodeFields):
            payload = sd_convert.fields_to_xml(FieldsMessage(seqnr, (item,), done))
            sub.evaluator.note_sent(item)
        elif isinstance(item, NodeFailure):
            payload = sd_convert.failure_to_xml(FailureMessage(seqnr, (item,), done))
        else:
            raise TypeError(
                f"read-out source yielded {type(item).__name__}, expected NodeFields or NodeFailure"
            )
        self._send_payload(sub, payload)

    def _start_readout(self, sub: _Sub, now: float) -> None:
        """Initial read-out or heartbeat; skipped while the previous one still runs."""
        if sub.readout is not None and not sub.readout.done():
            return
        sub.evaluator.begin_readout(now)
        sub.readout = self.xmpp.loop.create_task(
            self._run_readout(sub),
            name=f"iot_events readout {sub.subscriber.full} #{sub.request.seqnr}",
        )

    async def _run_readout(self, sub: _Sub) -> None:
        me = asyncio.current_task()
        request = sub.request.to_readout_request(datetime.now(UTC))
        pending: NodeFields | NodeFailure | None = None
        iterator = None
        try:
            source = self.source
            if source is None:
                raise RuntimeError("no sensor data source")
            iterator = source.readout(request)
            # One item of look-ahead, so that the last message can carry done='true'.
            async for item in iterator:
                if pending is not None:
                    self._send_item(sub, pending, done=False)
                pending = item
            if pending is None:
                self._send_payload(sub, sd_convert.seqnr_to_xml("done", request.seqnr))
            else:
                self._send_item(sub, pending, done=True)
        except asyncio.CancelledError:
            raise
        except Exception:
            _LOGGER.exception("read-out for subscription seqnr=%s of %s failed", *sub.key[::-1])
            self._send_source_failure(sub, request, pending)
        finally:
            if sub.readout is me:
                sub.readout = None
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    def _send_source_failure(
        self, sub: _Sub, request: ReadoutRequest, pending: NodeFields | NodeFailure | None
    ) -> None:
        try:
            if isinstance(pending, NodeFields | NodeFailure):
                self._send_item(sub, pending, done=False)
            now = datetime.now(UTC)
            refs = request.nodes or (NodeRef(""),)
            failures = tuple(NodeFailure(ref, now, SOURCE_FAILURE_TEXT) for ref in refs)
            message = FailureMessage(request.seqnr, failures, done=True)
            self._send_payload(sub, sd_convert.failure_to_xml(message))
        except Exception:
            _LOGGER.exception("could not send <failure> for seqnr=%s", request.seqnr)

    # -- thing side: timers -----------------------------------------------------------------

    def _poll(self) -> None:
        now = self.clock()
        for sub in list(self._subs.values()):
            try:
                decision = sub.evaluator.poll(now)
                if decision.items:
                    self._send_event(sub, decision.items)
                if decision.heartbeat:
                    self._start_readout(sub, now)
            except Exception:
                _LOGGER.exception("timer of subscription seqnr=%s of %s failed", *sub.key[::-1])

    async def _schedule(self) -> None:
        """Plugin-owned task: sleeps until the earliest deadline (or a kick), then polls."""
        try:
            while self._subs:
                self._kick.clear()
                self._poll()
                deadlines = [
                    deadline
                    for sub in self._subs.values()
                    if (deadline := sub.evaluator.next_deadline()) is not None
                ]
                if not deadlines:
                    await self._kick.wait()
                    continue
                delay = max(min(deadlines) - self.clock(), _MIN_SLEEP)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._kick.wait()
        except asyncio.CancelledError:
            raise
        except Exception:
            _LOGGER.exception("IoT-Events scheduler failed; restarting on the next report")

    # -- client side ------------------------------------------------------------------------

    def _next_seqnr(self, peer: str) -> int:
        while True:
            self._seqnr = self._seqnr + 1 if self._seqnr < INT32_MAX else _SEQNR_LOW
            if (peer, self._seqnr) not in self._client_subs:
                return self._seqnr

    async def subscribe(
        self,
        to: JID | str,
        *,
        nodes: Iterable[NodeRef] = (),
        fields: Iterable[FieldTrigger | str] = (),
        types: FieldType = FieldType.MOMENTARY,
        min_interval: timedelta | float | None = None,
        max_interval: timedelta | float | None = None,
        max_age: timedelta | float | None = None,
        initial_readout: bool = True,
        timeout: float = 10.0,
    ) -> Subscription:
        """Subscribe to events from ``to``; durations are timedeltas or seconds.

        ``fields`` are triggers (a plain name means "any change"). Raises
        :class:`SubscriptionError` when the device refuses, :class:`SubscriptionTimeout` when it
        does not answer within ``timeout`` seconds (a best-effort ``<unsubscribe>`` follows), and
        ``ValueError`` for invalid arguments.
        """
        peer = JID(to)
        request = SubscribeRequest(
            seqnr=self._next_seqnr(peer.bare),
            types=types,
            nodes=tuple(nodes),
            fields=tuple(FieldTrigger(f) if isinstance(f, str) else f for f in fields),
            max_age=_seconds(max_age),
            min_interval=_seconds(min_interval),
            max_interval=_seconds(max_interval),
            initial_readout=initial_readout,
        )
        sub = Subscription(self, peer, request, self._max_queued)
        self._client_subs[(peer.bare, request.seqnr)] = sub
        iq = self.xmpp.make_iq_get(ito=peer)
        iq.append(convert.subscribe_to_xml(request))
        iq_future: asyncio.Future | None = None
        try:
            # slixmpp's own IQ timeout is a backstop; ours governs.
            iq_future = iq.send(timeout=timeout + 5)
            done, _ = await asyncio.wait({iq_future}, timeout=timeout)
            if not done:
                raise SubscriptionTimeout(
                    f"no answer to subscription seqnr {request.seqnr} from {peer} "
                    f"within {timeout} s"
                )
            result = iq_future.result()
        except IqError as err:
            self._forget_subscription(sub, "refused")
            raise self._subscription_error(err.iq) from err
        except (IqTimeout, SubscriptionTimeout, asyncio.CancelledError) as err:
            self._forget_subscription(sub, "no answer")
            self._send_unsubscribe(peer, request.seqnr)
            if isinstance(err, IqTimeout):
                raise SubscriptionTimeout(
                    f"no answer to subscription seqnr {request.seqnr}"
                ) from err
            raise
        finally:
            if iq_future is not None and not iq_future.done():
                iq_future.cancel()
        sub.device = JID(result["from"]) if result["from"] else peer
        for child in result.xml:
            if _sd_local(child) == "accepted":
                with contextlib.suppress(StanzaError):
                    if sd_convert.accepted_from_xml(child).seqnr != request.seqnr:
                        _LOGGER.debug(
                            "%s accepted seqnr=%s with another seqnr", peer, request.seqnr
                        )
        return sub

    @staticmethod
    def _subscription_error(iq: StanzaBase) -> SubscriptionError:
        if iq.xml.find(f"{{{iq.namespace}}}error") is None:
            return SubscriptionError("undefined-condition")
        return SubscriptionError(
            iq["error"]["condition"] or "undefined-condition", iq["error"]["text"]
        )

    def _forget_subscription(self, sub: Subscription, reason: str) -> None:
        key = (sub.peer.bare, sub.seqnr)
        if self._client_subs.get(key) is sub:
            del self._client_subs[key]
        sub._close(reason)

    async def _unsubscribe(self, to: JID, seqnr: int, timeout: float) -> None:
        iq = self.xmpp.make_iq_get(ito=to)
        iq.append(convert.unsubscribe_to_xml(seqnr))
        future = iq.send(timeout=timeout)
        try:
            done, _ = await asyncio.wait({future}, timeout=timeout)
        finally:
            if future.done():
                _consume(future)
            else:
                future.cancel()
        if not done:
            _LOGGER.debug("no answer to <unsubscribe seqnr=%s> from %s", seqnr, to)

    def _send_unsubscribe(self, to: JID, seqnr: int) -> None:
        """Fire-and-forget ``<unsubscribe>`` for an abandoned subscription request."""
        try:
            iq = self.xmpp.make_iq_get(ito=to)
            iq.append(convert.unsubscribe_to_xml(seqnr))
            iq.send(timeout=10).add_done_callback(_consume)
        except Exception:
            _LOGGER.debug("could not send <unsubscribe seqnr=%s> to %s", seqnr, to, exc_info=True)

    def _handle_message(self, msg: StanzaBase) -> None:
        sender = JID(msg["from"])
        for child in msg.xml:
            local = _sd_local(child)
            if local not in ("fields", "failure"):
                continue  # <done>/<started> carry nothing for a subscription
            try:
                seqnr = sd_convert.parse_seqnr(child)
            except StanzaError:
                continue
            sub = self._client_subs.get((sender.bare, seqnr))
            if sub is None:
                continue  # not ours (maybe a xep_0323_ncap read-out)
            if sub.device is None:
                sub.device = sender
            try:
                if local == "fields":
                    for item in sd_convert.fields_from_xml(child, default_tz=self._tz).items:
                        sub._push(item)
                else:
                    failure = sd_convert.failure_from_xml(child, default_tz=self._tz)
                    sub.failures.extend(failure.failures)
            except StanzaError as err:
                _LOGGER.warning(
                    "ignoring malformed <%s seqnr=%s> from %s: %s", local, seqnr, sender, err
                )
