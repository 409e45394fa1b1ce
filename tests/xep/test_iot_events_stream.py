"""The ``iot_events_ncap`` plugin on slixmpp's in-memory test stream (no server, no real waiting).

``SlixTest.recv(xml)`` injects a stanza as if the server sent it; ``SlixTest.send(xml)`` asserts the
next stanza our client wrote. The client under test is ``tester@localhost/resource``. Time is a
fake clock (``plugin.clock``) advanced by the test; ``plugin.wake()`` makes the scheduler look at
it, so rate limits and heartbeats are exercised through the real scheduler task without sleeping.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from slixmpp import JID
from slixmpp.test import SlixTest

import xep.iot_events
from xep.errors import SubscriptionError, SubscriptionTimeout
from xep.iot_events import FieldTrigger, SubscribeRequest, Subscription
from xep.xep_0323 import Field, FieldType, NodeFailure, NodeFields, NodeRef, ReadoutRequest

NS = "urn:xmpp:iot:events"
SD = "urn:xmpp:iot:sensordata"
T1 = datetime(2013, 3, 7, 16, 24, 30, tzinfo=UTC)
PEER = "client@example.org/amr"
ME = "tester@localhost/resource"
DEVICE = "device@example.org/d"  # IQs go to a full JID (a server answers bare-JID IQs itself)


class FakeSource:
    """A SensorDataSource yielding canned items (or failing), recording the requests."""

    def __init__(
        self,
        items: Sequence[NodeFields | NodeFailure] = (),
        nodes: Sequence[str] = ("Device01",),
        error: Exception | None = None,
        gate: asyncio.Event | None = None,
    ) -> None:
        self.items = list(items)
        self.nodes = set(nodes)
        self.error = error
        self.gate = gate
        self.requests: list[ReadoutRequest] = []
        self.closed = 0

    def has_node(self, node: NodeRef) -> bool:
        return node.node_id in self.nodes

    async def readout(self, request: ReadoutRequest) -> AsyncIterator[NodeFields | NodeFailure]:
        self.requests.append(request)
        try:
            if self.gate is not None:
                await self.gate.wait()
            for item in self.items:
                yield item
            if self.error is not None:
                raise self.error
        finally:
            self.closed += 1


async def allow(requester: JID, request: ReadoutRequest) -> bool:
    return True


async def deny(requester: JID, request: ReadoutRequest) -> bool:
    return False


async def explode(requester: JID, request: ReadoutRequest) -> bool:
    raise RuntimeError("provisioning server on fire")


def temperature(value: float) -> NodeFields:
    return NodeFields(NodeRef("Device01"), T1, (Field.numeric("Temperature", value, "°C", 1),))


def temperature_xml(value: str) -> str:
    return (
        "<node nodeId='Device01'><timestamp value='2013-03-07T16:24:30Z'>"
        "<numeric name='Temperature' momentary='true' automaticReadout='true' "
        f"value='{value}' unit='°C'/></timestamp></node>"
    )


def event(value: str, seqnr: str = "1", to: str = PEER) -> str:
    return (
        f"<message to='{to}'><fields xmlns='{SD}' seqnr='{seqnr}' done='true'>"
        f"{temperature_xml(value)}</fields></message>"
    )


class _Base(SlixTest):
    def setUp(self) -> None:
        self.stream_start(mode="client", plugins=["xep_0030"])
        # The exact call the application makes:
        self.xmpp.register_plugin("iot_events_ncap", module=xep.iot_events)
        self.plugin = self.xmpp.plugin["iot_events_ncap"]
        self.now = 0.0
        self.plugin.clock = lambda: self.now
        # Nothing may escape into the event loop (unretrieved task exceptions etc.).
        self.loop_errors: list[dict[str, object]] = []
        self.xmpp.loop.set_exception_handler(
            lambda _loop, context: self.loop_errors.append(context)
        )

    def tearDown(self) -> None:
        if "iot_events_ncap" in self.xmpp.plugin:
            self.xmpp.plugin.disable("iot_events_ncap")
        self.wait_()
        self.stream_close()
        self.xmpp.loop.set_exception_handler(None)
        assert self.loop_errors == []

    def send(self, data: str | None, *args: object, **kwargs: object) -> None:  # type: ignore[override]
        # Our stanza classes are thin (attributes are not ``interfaces``): compare XML only.
        kwargs.setdefault("use_values", False)
        if data is None:  # everything queued is flushed first, so no need to wait long
            kwargs.setdefault("timeout", 0.05)
        super().send(data, *args, **kwargs)  # type: ignore[arg-type]

    def advance(self, seconds: float) -> None:
        """Move the fake clock and let the scheduler see it."""
        self.now += seconds
        self.plugin.wake()
        self.wait_()


class TestThingSide(_Base):
    def subscribe(
        self, attrs: str = "", inner: str = "", seqnr: str = "1", iq_id: str = "E1", frm: str = PEER
    ) -> None:
        self.recv(
            f"<iq type='get' from='{frm}' to='{ME}' id='{iq_id}'>"
            f"<subscribe xmlns='{NS}' seqnr='{seqnr}' momentary='true' {attrs}>{inner}"
            "</subscribe></iq>"
        )

    def expect_accepted(self, seqnr: str = "1", iq_id: str = "E1", to: str = PEER) -> None:
        self.send(
            f"<iq type='result' to='{to}' id='{iq_id}'>"
            f"<accepted xmlns='{SD}' seqnr='{seqnr}'/></iq>"
        )

    def expect_error(self, etype: str, condition: str, text: str, iq_id: str = "E1") -> None:
        self.send(
            f"<iq type='error' to='{PEER}' id='{iq_id}'><error type='{etype}'>"
            f"<{condition} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
            f"<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>{text}</text></error></iq>"
        )

    def accept_subscription(
        self, attrs: str = "", inner: str = "", gate: asyncio.Event | None = None, **kwargs: str
    ) -> FakeSource:
        source = FakeSource([temperature(20.0)], gate=gate)
        self.plugin.source = source
        self.plugin.authorize = allow
        self.subscribe(attrs, inner, **kwargs)
        self.expect_accepted(kwargs.get("seqnr", "1"), kwargs.get("iq_id", "E1"))
        return source

    # -- registration -------------------------------------------------------------------------

    def test_registered_under_own_name_with_disco_feature(self) -> None:
        assert isinstance(self.plugin, xep.iot_events.IoTEvents)
        self.recv(
            f"<iq type='get' from='{PEER}' to='{ME}' id='d1'>"
            "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        )
        self.send(
            f"<iq type='result' to='{PEER}' id='d1'>"
            "<query xmlns='http://jabber.org/protocol/disco#info'>"
            f"<feature var='{NS}'/></query></iq>",
            method="mask",
        )

    # -- subscribe ----------------------------------------------------------------------------

    def test_accepted_with_initial_readout(self) -> None:
        source = self.accept_subscription(
            "req='true' maxAge='PT1H'", "<node nodeId='Device01'/><field name='Temperature'/>"
        )
        self.send(event("20.0"))
        self.send(None)
        (request,) = source.requests
        assert request.seqnr == 1
        assert request.nodes == (NodeRef("Device01"),)
        assert request.field_names == ("Temperature",)
        assert request.from_time is not None  # maxAge → history depth
        assert self.plugin.subscriptions == {
            (PEER, 1): SubscribeRequest(
                1,
                FieldType.MOMENTARY,
                nodes=(NodeRef("Device01"),),
                fields=(FieldTrigger("Temperature"),),
                max_age=timedelta(hours=1),
                initial_readout=True,
            )
        }

    def test_authorizer_sees_the_equivalent_readout_request(self) -> None:
        seen: list[tuple[JID, ReadoutRequest]] = []

        async def record(requester: JID, request: ReadoutRequest) -> bool:
            seen.append((requester, request))
            return True

        self.plugin.source = FakeSource()
        self.plugin.authorize = record
        self.subscribe("userToken='u1'", "<field name='Temperature' changedBy='1'/>")
        self.expect_accepted()
        assert seen == [
            (
                JID(PEER),
                ReadoutRequest(
                    1, FieldType.MOMENTARY, field_names=("Temperature",), user_tokens=("u1",)
                ),
            )
        ]

    def test_report_below_threshold_is_quiet_above_is_sent(self) -> None:
        self.accept_subscription("req='true'", "<field name='Temperature' changedBy='0.5'/>")
        self.send(event("20.0"))  # initial read-out: the reference is 20.0
        self.plugin.report(temperature(20.4))
        self.send(None)
        self.plugin.report(temperature(19.5))
        self.send(event("19.5"))
        self.plugin.report(temperature(19.5))
        self.send(None)

    def test_no_initial_readout_first_report_is_sent(self) -> None:
        source = self.accept_subscription()
        self.send(None)
        assert source.requests == []
        self.plugin.report(temperature(21.0))
        self.send(event("21.0"))
        self.plugin.report(temperature(21.0))  # no field triggers: any change, and none
        self.send(None)

    def test_reports_for_other_nodes_and_types_are_ignored(self) -> None:
        self.accept_subscription(inner="<node nodeId='Device01'/>")
        self.plugin.report(
            NodeFields(NodeRef("Device02"), T1, (Field.numeric("Temperature", 1, "°C", 1),))
        )
        self.plugin.report(
            NodeFields(
                NodeRef("Device01"), T1, (Field.integer("Errors", 3, types=FieldType.STATUS),)
            )
        )
        self.send(None)

    def test_min_interval_coalesces_and_sends_the_latest(self) -> None:
        self.accept_subscription("minInterval='PT10S'", "<field name='Temperature' changedBy='1'/>")
        self.plugin.report(temperature(20.0))
        self.send(event("20.0"))
        self.now = 2.0
        self.plugin.report(temperature(25.0))
        self.now = 5.0
        self.plugin.report(temperature(26.0))
        self.send(None)
        self.advance(4.9)  # t = 9.9
        self.send(None)
        self.advance(0.1)  # t = 10
        self.send(event("26.0"))
        self.advance(100)
        self.send(None)

    def test_heartbeat_reads_the_source(self) -> None:
        source = self.accept_subscription("maxInterval='PT60S'")
        self.advance(59)
        self.send(None)
        self.advance(1)
        self.send(event("20.0"))
        assert len(source.requests) == 1
        self.plugin.report(temperature(20.0))  # same as the heartbeat sent: nothing new
        self.send(None)
        self.advance(60)
        self.send(event("20.0"))

    def test_failing_source_during_heartbeat_sends_failure(self) -> None:
        source = self.accept_subscription("maxInterval='PT1M'", "<node nodeId='Device01'/>")
        source.items = []
        source.error = OSError("serial port gone")
        self.advance(60)
        self.wait_for_send_queue()
        sent = self.xmpp.socket.next_sent(1)
        failure = ET.fromstring(sent).find(f"{{{SD}}}failure")  # noqa: S314 (our own output)
        assert failure is not None
        assert (failure.get("seqnr"), failure.get("done")) == ("1", "true")
        error = failure.find(f"{{{SD}}}error")
        assert error is not None
        assert error.get("nodeId") == "Device01"
        assert b"Read-out failed: internal error." in sent
        assert b"serial port gone" not in sent
        # the subscription survives; the next heartbeat tries again
        assert (PEER, 1) in self.plugin.subscriptions
        source.error = None
        source.items = [temperature(20.0)]
        self.advance(60)
        self.send(event("20.0"))

    def test_empty_readout_sends_done(self) -> None:
        source = FakeSource([])
        self.plugin.source = source
        self.plugin.authorize = allow
        self.subscribe("req='1'")
        self.expect_accepted()
        self.send(f"<message to='{PEER}'><done xmlns='{SD}' seqnr='1'/></message>")

    def test_unsubscribe_known_and_unknown(self) -> None:
        self.accept_subscription()
        self.recv(
            f"<iq type='get' from='{PEER}' to='{ME}' id='U1'>"
            f"<unsubscribe xmlns='{NS}' seqnr='1'/></iq>"
        )
        self.send(f"<iq type='result' to='{PEER}' id='U1'/>")
        assert self.plugin.subscriptions == {}
        self.plugin.report(temperature(30.0))
        self.send(None)
        self.recv(
            f"<iq type='set' from='{PEER}' to='{ME}' id='U2'>"
            f"<unsubscribe xmlns='{NS}' seqnr='42'/></iq>"
        )
        self.send(f"<iq type='result' to='{PEER}' id='U2'/>")

    def test_unsubscribe_only_affects_the_sender(self) -> None:
        self.accept_subscription()
        self.recv(
            f"<iq type='get' from='client@example.org/other' to='{ME}' id='U1'>"
            f"<unsubscribe xmlns='{NS}' seqnr='1'/></iq>"
        )
        self.send("<iq type='result' to='client@example.org/other' id='U1'/>")
        assert (PEER, 1) in self.plugin.subscriptions

    def test_unsubscribe_without_seqnr_is_bad_request(self) -> None:
        self.recv(
            f"<iq type='get' from='{PEER}' to='{ME}' id='U1'><unsubscribe xmlns='{NS}'/></iq>"
        )
        self.expect_error(
            "modify",
            "bad-request",
            "&lt;unsubscribe&gt; lacks the required 'seqnr' attribute",
            "U1",
        )

    def test_forbidden_when_authorize_says_no(self) -> None:
        source = FakeSource([temperature(20.0)])
        self.plugin.source = source
        self.plugin.authorize = deny
        self.subscribe("req='true'")
        self.expect_error("cancel", "forbidden", "Subscription not permitted.")
        self.send(None)
        assert source.requests == []
        assert self.plugin.subscriptions == {}

    def test_default_authorizer_fails_closed(self) -> None:
        self.plugin.source = FakeSource()
        self.subscribe()
        self.expect_error("cancel", "forbidden", "Subscription not permitted.")

    def test_authorizer_exception_means_forbidden(self) -> None:
        self.plugin.source = FakeSource()
        self.plugin.authorize = explode
        self.subscribe()
        self.expect_error("cancel", "forbidden", "Subscription not permitted.")

    def test_unknown_node_is_item_not_found(self) -> None:
        self.plugin.source = FakeSource()
        self.plugin.authorize = allow
        self.subscribe(inner="<node nodeId='Device01'/><node nodeId='Nope'/>")
        self.expect_error("cancel", "item-not-found", "Unknown node 'Nope'.")
        assert self.plugin.subscriptions == {}

    def test_no_source_is_service_unavailable(self) -> None:
        self.plugin.authorize = allow
        self.subscribe()
        self.expect_error("cancel", "service-unavailable", "No sensor data source.")

    def test_garbage_is_bad_request(self) -> None:
        self.plugin.source = FakeSource()
        self.plugin.authorize = allow
        self.subscribe("minInterval='5 seconds'")
        self.expect_error(
            "modify",
            "bad-request",
            "minInterval: '5 seconds' is not a non-negative xs:duration",
        )
        self.subscribe(inner="<field name='T' changedBy='-1'/>", iq_id="E2")
        self.expect_error(
            "modify", "bad-request", "changed_by must be a positive finite number, got -1.0", "E2"
        )

    def test_limits_are_resource_constraint(self) -> None:
        self.plugin._per_requester_limit = 2
        self.accept_subscription(seqnr="1", iq_id="E1")
        self.subscribe(seqnr="2", iq_id="E2", frm="client@example.org/other")
        self.expect_accepted("2", "E2", to="client@example.org/other")
        self.subscribe(seqnr="3", iq_id="E3")
        self.expect_error("wait", "resource-constraint", "Too many subscriptions.", "E3")
        # the same seqnr again replaces the old subscription and needs no extra room
        self.subscribe("minInterval='PT1S'", seqnr="1", iq_id="E4")
        self.expect_accepted("1", "E4")
        assert self.plugin.subscriptions[(PEER, 1)].min_interval is not None
        self.plugin._per_requester_limit = 10
        self.plugin._total_limit = 2
        self.recv(
            f"<iq type='get' from='someone@example.org/x' to='{ME}' id='E5'>"
            f"<subscribe xmlns='{NS}' seqnr='1'/></iq>"
        )
        self.send(
            "<iq type='error' to='someone@example.org/x' id='E5'><error type='wait'>"
            "<resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
            "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>Too many subscriptions.</text>"
            "</error></iq>"
        )

    def test_subscriber_going_offline_drops_its_subscriptions(self) -> None:
        self.accept_subscription(seqnr="1", iq_id="E1")
        self.subscribe(seqnr="1", iq_id="E2", frm="client@example.org/other")
        self.expect_accepted("1", "E2", to="client@example.org/other")
        self.recv(f"<presence type='unavailable' from='{PEER}' to='{ME}'/>")
        assert set(self.plugin.subscriptions) == {("client@example.org/other", 1)}
        self.plugin.report(temperature(30.0))
        self.send(event("30.0", to="client@example.org/other"))
        self.send(None)

    def test_drop_forgets_every_resource_of_the_bare_jid(self) -> None:
        self.accept_subscription(seqnr="1", iq_id="E1")
        self.subscribe(seqnr="2", iq_id="E2", frm="client@example.org/other")
        self.expect_accepted("2", "E2", to="client@example.org/other")
        self.plugin.drop("client@example.org")
        assert self.plugin.subscriptions == {}
        self.plugin.report(temperature(30.0))
        self.send(None)

    def test_subscriber_leaving_while_being_authorized_is_not_subscribed(self) -> None:
        gate = asyncio.Event()

        async def slow(requester: JID, request: ReadoutRequest) -> bool:
            await gate.wait()
            return True

        self.plugin.source = FakeSource()
        self.plugin.authorize = slow
        self.subscribe()
        self.recv(f"<presence type='unavailable' from='{PEER}' to='{ME}'/>")
        gate.set()
        self.wait_()
        self.expect_error("cancel", "forbidden", "Subscription not permitted.")
        assert self.plugin.subscriptions == {}

    def test_session_end_drops_everything_and_stops_tasks(self) -> None:
        gate = asyncio.Event()  # the initial read-out hangs
        source = self.accept_subscription("req='true' maxInterval='PT1M'", gate=gate)
        scheduler = self.plugin._scheduler
        assert scheduler is not None
        assert not scheduler.done()
        assert source.closed == 0
        self.xmpp.event("session_end")
        self.wait_()
        assert self.plugin.subscriptions == {}
        assert scheduler.done()
        assert source.closed == 1  # the hanging read-out was cancelled and closed

    def test_plugin_end_cancels_readouts_and_scheduler(self) -> None:
        gate = asyncio.Event()
        source = self.accept_subscription("req='true' maxInterval='PT1M'", gate=gate)
        scheduler = self.plugin._scheduler
        assert source.closed == 0
        self.xmpp.plugin.disable("iot_events_ncap")
        self.wait_()
        assert scheduler is not None
        assert scheduler.done()
        assert source.closed == 1
        self.send(None)  # no event, no failure
        assert "iot_events_ncap" not in self.xmpp.plugin

    def test_report_rejects_wrong_type_and_survives_broken_subscriptions(self) -> None:
        self.accept_subscription()
        with pytest.raises(TypeError):
            self.plugin.report({"Temperature": 20})  # type: ignore[arg-type]

        class Broken:
            def offer(self, fields: NodeFields, now: float) -> None:
                raise RuntimeError("bug")

        self.plugin._subs[(PEER, 1)].evaluator = Broken()
        self.plugin.report(temperature(20.0))  # logged, not raised
        self.send(None)


class TestClientSide(_Base):
    def start_subscribe(self, **kwargs: object) -> asyncio.Task[Subscription]:
        self.plugin._seqnr = 99  # next seqnr is 100
        task = self.xmpp.loop.create_task(self.plugin.subscribe(DEVICE, **kwargs))
        self.wait_()
        return task

    def expect_subscribe(self, attrs: str = "momentary='true' req='true'", inner: str = "") -> None:
        body = f"<subscribe xmlns='{NS}' seqnr='100' {attrs}>{inner}</subscribe>"
        self.send(f"<iq type='get' to='{DEVICE}' id='1'>{body}</iq>")

    def accept(self, iq_id: str = "1") -> None:
        self.recv(
            f"<iq type='result' from='device@example.org/d' to='{ME}' id='{iq_id}'>"
            f"<accepted xmlns='{SD}' seqnr='100'/></iq>"
        )

    def push(self, value: str, frm: str = "device@example.org/d", seqnr: str = "100") -> None:
        self.recv(
            f"<message from='{frm}' to='{ME}'><fields xmlns='{SD}' seqnr='{seqnr}' done='true'>"
            f"{temperature_xml(value)}</fields></message>"
        )

    def test_subscribe_receives_pushes(self) -> None:
        task = self.start_subscribe(
            nodes=[NodeRef("Device01")],
            fields=[FieldTrigger("Temperature", changed_by=0.5), "Door"],
            min_interval=5,
            max_interval=60.0,
        )
        self.expect_subscribe(
            "momentary='true' minInterval='PT5S' maxInterval='PT1M' req='true'",
            "<node nodeId='Device01'/><field name='Temperature' changedBy='0.5'/>"
            "<field name='Door'/>",
        )
        self.accept()
        sub = self.run_coro(task)
        assert (sub.seqnr, sub.device) == (100, JID("device@example.org/d"))
        self.push("20.0")
        self.push("99.0", seqnr="7")  # another seqnr: not ours
        self.push("99.0", frm="other@example.org/d")  # another device
        self.push("21.0")
        assert self.run_coro(sub.next(timeout=1)) == temperature(20.0)
        assert self.run_coro(sub.next(timeout=1)) == temperature(21.0)
        with pytest.raises(SubscriptionTimeout):
            self.run_coro(sub.next(timeout=0.01))

    def test_async_for_and_cancel(self) -> None:
        task = self.start_subscribe(initial_readout=False)
        self.expect_subscribe("momentary='true'")
        self.accept()
        sub = self.run_coro(task)
        self.push("20.0")
        self.push("21.0")
        self.recv(
            f"<message from='device@example.org/d' to='{ME}'><failure xmlns='{SD}' seqnr='100' "
            "done='true'><error nodeId='Device01' timestamp='2013-03-07T16:24:30Z'>Timeout."
            "</error></failure></message>"
        )
        assert list(sub.failures) == [NodeFailure(NodeRef("Device01"), T1, "Timeout.")]
        cancel = self.xmpp.loop.create_task(sub.cancel())
        self.wait_()
        self.send(
            "<iq type='get' to='device@example.org/d' id='2'>"
            f"<unsubscribe xmlns='{NS}' seqnr='100'/></iq>"
        )
        self.recv(f"<iq type='result' from='device@example.org/d' to='{ME}' id='2'/>")
        self.run_coro(cancel)
        self.push("22.0")  # too late: ignored

        async def collect() -> list[NodeFields]:
            return [fields async for fields in sub]

        assert self.run_coro(collect()) == [temperature(20.0), temperature(21.0)]
        assert sub.closed == "cancelled"
        with pytest.raises(SubscriptionError, match="gone"):
            self.run_coro(sub.next())
        self.run_coro(sub.cancel())  # idempotent, sends nothing
        self.send(None)

    def test_refusal_raises_subscription_error(self) -> None:
        task = self.start_subscribe()
        self.expect_subscribe()
        self.recv(
            f"<iq type='error' from='device@example.org/d' to='{ME}' id='1'>"
            "<error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
            "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>Unknown node.</text></error></iq>"
        )
        with pytest.raises(SubscriptionError) as info:
            self.run_coro(task)
        assert (info.value.condition, info.value.text) == ("item-not-found", "Unknown node.")
        assert self.plugin._client_subs == {}
        self.send(None)  # no unsubscribe after a refusal

    def test_no_answer_raises_timeout_and_unsubscribes(self) -> None:
        task = self.start_subscribe(timeout=0.01)
        self.expect_subscribe()
        with pytest.raises(SubscriptionTimeout) as info:
            self.run_coro(task)
        assert isinstance(info.value, TimeoutError)
        self.send(
            f"<iq type='get' to='{DEVICE}' id='2'><unsubscribe xmlns='{NS}' seqnr='100'/></iq>"
        )
        assert self.plugin._client_subs == {}

    def test_invalid_arguments_raise_value_error_before_sending(self) -> None:
        with pytest.raises(ValueError, match="longer than max_interval"):
            self.run_coro(
                self.plugin.subscribe("device@example.org", min_interval=10, max_interval=5)
            )
        self.send(None)

    def test_device_going_offline_ends_the_iteration(self) -> None:
        task = self.start_subscribe()
        self.expect_subscribe()
        self.accept()
        sub = self.run_coro(task)
        self.push("20.0")
        self.recv(f"<presence type='unavailable' from='device@example.org/d' to='{ME}'/>")
        assert sub.closed == "device@example.org/d went offline"

        async def collect() -> list[NodeFields]:
            return [fields async for fields in sub]

        assert self.run_coro(collect()) == [temperature(20.0)]

    def test_malformed_push_is_ignored(self) -> None:
        task = self.start_subscribe()
        self.expect_subscribe()
        self.accept()
        sub = self.run_coro(task)
        self.recv(
            f"<message from='device@example.org/d' to='{ME}'><fields xmlns='{SD}' seqnr='100'>"
            "<node nodeId='n'><timestamp value='yesterday'/></node></fields></message>"
        )
        self.push("20.0")
        assert self.run_coro(sub.next(timeout=1)) == temperature(20.0)

    def test_slow_consumer_loses_the_oldest_events(self) -> None:
        self.plugin._max_queued = 2
        task = self.start_subscribe()
        self.expect_subscribe()
        self.accept()
        sub = self.run_coro(task)
        for value in ("1.0", "2.0", "3.0"):
            self.push(value)
        assert self.run_coro(sub.next(timeout=1)) == temperature(2.0)
        assert self.run_coro(sub.next(timeout=1)) == temperature(3.0)

    def test_session_end_closes_client_subscriptions(self) -> None:
        task = self.start_subscribe()
        self.expect_subscribe()
        self.accept()
        sub = self.run_coro(task)
        self.xmpp.event("session_end")
        with pytest.raises(SubscriptionError, match="gone: session ended"):
            self.run_coro(sub.next(timeout=1))

    def test_thing_and_client_on_one_stream_via_loopback(self) -> None:
        """The client side of this stream subscribes to the thing side of the same stream."""
        self.plugin.source = FakeSource([temperature(20.0)])
        self.plugin.authorize = allow
        task = self.start_subscribe(fields=[FieldTrigger("Temperature", changed_by=1.0)])

        def reflect() -> None:
            self.wait_for_send_queue()
            sent = self.xmpp.socket.next_sent(1).decode()
            if f'to="{DEVICE}"' in sent:  # client side → thing side, as if from PEER
                sent = sent.replace(f'to="{DEVICE}"', f'from="{PEER}" to="{ME}"')
            else:  # thing side → client side, as if from DEVICE
                sent = sent.replace(f'to="{PEER}"', f'from="{DEVICE}" to="{ME}"')
            self.recv(sent)

        reflect()  # our <subscribe> arrives at our thing side, as if from PEER
        reflect()  # the thing's IQ result goes back to our client side
        sub = self.run_coro(task)
        reflect()  # initial read-out
        assert self.run_coro(sub.next(timeout=1)) == temperature(20.0)
        self.plugin.report(temperature(20.5))
        self.plugin.report(temperature(21.0))
        reflect()
        assert self.run_coro(sub.next(timeout=1)) == temperature(21.0)
        self.send(None)
