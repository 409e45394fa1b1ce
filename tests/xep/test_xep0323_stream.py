"""The ``xep_0323_ncap`` plugin on slixmpp's in-memory test stream (no server).

``SlixTest.recv(xml)`` injects a stanza as if the server sent it; ``SlixTest.send(xml)`` asserts the
next stanza our client wrote. The client under test is ``tester@localhost/resource``.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import pytest
from slixmpp import JID
from slixmpp.test import SlixTest

import xep.xep_0323
from xep.dialect import XSF
from xep.errors import ReadoutError, ReadoutTimeout, StanzaError
from xep.xep_0323 import (
    Field,
    FieldType,
    NodeFailure,
    NodeFields,
    NodeRef,
    Readout,
    ReadoutRequest,
)

NS = "urn:xmpp:iot:sensordata"
T1 = datetime(2013, 3, 7, 16, 24, 30, tzinfo=UTC)
PEER = "client@example.org/amr"


class FakeSource:
    """A SensorDataSource yielding canned items, optionally gated or failing at the end."""

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
        self.closed = False

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
            self.closed = True


async def allow(requester: JID, request: ReadoutRequest) -> bool:
    return True


async def deny(requester: JID, request: ReadoutRequest) -> bool:
    return False


async def explode(requester: JID, request: ReadoutRequest) -> bool:
    raise RuntimeError("provisioning server on fire")


TEMPERATURE = NodeFields(NodeRef("Device01"), T1, (Field.numeric("Temperature", 23.4, "°C", 1),))
TEMPERATURE_XML = (
    "<node nodeId='Device01'><timestamp value='2013-03-07T16:24:30Z'>"
    "<numeric name='Temperature' momentary='true' automaticReadout='true' value='23.4' unit='°C'/>"
    "</timestamp></node>"
)


class TestSensorDataStream(SlixTest):
    def setUp(self) -> None:
        self.stream_start(mode="client", plugins=["xep_0030"])
        # The exact call the application makes:
        self.xmpp.register_plugin("xep_0323_ncap", module=xep.xep_0323)
        self.plugin = self.xmpp.plugin["xep_0323_ncap"]

    def tearDown(self) -> None:
        if "xep_0323_ncap" in self.xmpp.plugin:
            self.plugin.cancel_all()
        self.wait_()
        self.stream_close()

    def send(self, data: str | None, *args: object, **kwargs: object) -> None:  # type: ignore[override]
        # Our stanza classes are thin (attributes are not ``interfaces``), so SlixTest's third
        # comparison, rebuilding the stanza from ``.values``, would drop them: compare XML only.
        kwargs.setdefault("use_values", False)
        super().send(data, *args, **kwargs)  # type: ignore[arg-type]

    def req(self, seqnr: str = "1", inner: str = "", iq_id: str = "S0001", attrs: str = "") -> None:
        self.recv(
            f"<iq type='get' from='{PEER}' to='tester@localhost/resource' id='{iq_id}'>"
            f"<req xmlns='{NS}' seqnr='{seqnr}' momentary='true' {attrs}>{inner}</req></iq>"
        )

    def expect_error(self, etype: str, condition: str, text: str, iq_id: str = "S0001") -> None:
        self.send(
            f"<iq type='error' to='{PEER}' id='{iq_id}'><error type='{etype}'>"
            f"<{condition} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
            f"<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>{text}</text></error></iq>"
        )

    # -- registration ----------------------------------------------------------------------

    def test_registered_under_own_name_with_disco_feature(self) -> None:
        assert isinstance(self.plugin, xep.xep_0323.XEP_0323)
        assert self.plugin.name == "xep_0323_ncap"
        assert "xep_0323" not in self.xmpp.plugin  # slixmpp's own plugin stays unloaded
        self.recv(
            f"<iq type='get' from='{PEER}' to='tester@localhost/resource' id='d1'>"
            "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        )
        self.send(
            f"<iq type='result' to='{PEER}' id='d1'>"
            "<query xmlns='http://jabber.org/protocol/disco#info'>"
            f"<feature var='{NS}'/></query></iq>",
            method="mask",
        )

    # -- device side -------------------------------------------------------------------------

    def test_readout_accepted_then_fields_with_done_on_last(self) -> None:
        second = NodeFields(
            NodeRef("Device01"), T1, (Field.integer("Address", 7, types=FieldType.IDENTITY),)
        )
        source = FakeSource([TEMPERATURE, second])
        self.plugin.source = source
        self.plugin.authorize = allow
        self.req(inner="<node nodeId='Device01'/>", attrs="identity='true'")
        self.send(
            f"<iq type='result' to='{PEER}' id='S0001'><accepted xmlns='{NS}' seqnr='1'/></iq>"
        )
        # Both nodes fit the field limit of one message, so they travel together.
        self.send(
            f"<message to='{PEER}'><fields xmlns='{NS}' seqnr='1' done='true'>{TEMPERATURE_XML}"
            "<node nodeId='Device01'><timestamp value='2013-03-07T16:24:30Z'>"
            "<int name='Address' identity='true' automaticReadout='true' value='7'/>"
            "</timestamp></node></fields></message>"
        )
        self.send(None)
        assert source.requests == [
            ReadoutRequest(
                1, FieldType.MOMENTARY | FieldType.IDENTITY, nodes=(NodeRef("Device01"),)
            )
        ]
        assert self.plugin.active_sessions == frozenset()

    def test_many_small_nodes_are_batched_up_to_the_field_limit(self) -> None:
        nodes = [
            NodeFields(
                NodeRef("Device01"),
                T1,
                tuple(Field.numeric(f"f{n}_{i}", float(i), "V", 1) for i in range(5)),
            )
            for n in range(30)
        ]
        self.plugin.source = FakeSource(nodes)
        self.plugin.authorize = allow
        self.req(inner="<node nodeId='Device01'/>")
        self.send(
            f"<iq type='result' to='{PEER}' id='S0001'><accepted xmlns='{NS}' seqnr='1'/></iq>"
        )
        counts, done = [], []
        for _ in range(2):
            fields = ET.fromstring(self.xmpp.socket.next_sent(1)).find(f"{{{NS}}}fields")  # noqa: S314
            assert fields is not None
            counts.append(len(fields.findall(f".//{{{NS}}}numeric")))
            done.append(fields.get("done"))
        assert counts == [100, 50]
        assert done == [None, "true"]
        self.send(None)

    def test_failure_item_and_empty_readout(self) -> None:
        self.plugin.source = FakeSource([NodeFailure(NodeRef("Device01"), T1, "Timeout.")])
        self.plugin.authorize = allow
        self.req()
        self.send(
            f"<iq type='result' to='{PEER}' id='S0001'><accepted xmlns='{NS}' seqnr='1'/></iq>"
        )
        self.send(
            f"<message to='{PEER}'><failure xmlns='{NS}' seqnr='1' done='true'>"
            "<error nodeId='Device01' timestamp='2013-03-07T16:24:30Z'>Timeout.</error>"
            "</failure></message>"
        )
        self.plugin.source = FakeSource([])
        self.req(seqnr="2", iq_id="S0002")
        self.send(
            f"<iq type='result' to='{PEER}' id='S0002'><accepted xmlns='{NS}' seqnr='2'/></iq>"
        )
        self.send(f"<message to='{PEER}'><done xmlns='{NS}' seqnr='2'/></message>")

    def test_forbidden_when_authorize_says_no_and_no_data_is_sent(self) -> None:
        source = FakeSource([TEMPERATURE])
        self.plugin.source = source
        self.plugin.authorize = deny
        self.req()
        self.expect_error("cancel", "forbidden", "Read-out not permitted.")
        self.send(None)
        assert source.requests == []

    def test_default_authorizer_fails_closed(self) -> None:
        self.plugin.source = FakeSource([TEMPERATURE])
        self.req()
        self.expect_error("cancel", "forbidden", "Read-out not permitted.")
        self.send(None)

    def test_authorizer_exception_means_forbidden(self) -> None:
        self.plugin.source = FakeSource([TEMPERATURE])
        self.plugin.authorize = explode
        self.req()
        self.expect_error("cancel", "forbidden", "Read-out not permitted.")
        self.send(None)

    def test_unknown_node_is_item_not_found(self) -> None:
        self.plugin.source = FakeSource([TEMPERATURE])
        self.plugin.authorize = allow
        self.req(inner="<node nodeId='Device01'/><node nodeId='Nope'/>")
        self.expect_error("cancel", "item-not-found", "Unknown node 'Nope'.")
        self.send(None)

    def test_non_numeric_seqnr_is_bad_request(self) -> None:
        self.plugin.source = FakeSource([TEMPERATURE])
        self.plugin.authorize = allow
        self.req(seqnr="abc")
        self.expect_error("modify", "bad-request", "seqnr: 'abc' is not an integer")
        self.send(None)

    def test_future_when_is_refused_not_silently_read_now(self) -> None:
        source = FakeSource([TEMPERATURE])
        self.plugin.source = source
        self.plugin.authorize = allow
        self.req(attrs="when='2999-03-09T23:30:00Z'")
        self.expect_error(
            "cancel", "feature-not-implemented", "Scheduled read-outs are not supported."
        )
        assert source.requests == []

    def test_no_source_is_service_unavailable(self) -> None:
        self.plugin.authorize = allow
        self.req()
        self.expect_error("cancel", "service-unavailable", "No sensor data source.")

    def test_cancel_stops_the_readout(self) -> None:
        source = FakeSource([TEMPERATURE], gate=asyncio.Event())
        self.plugin.source = source
        self.plugin.authorize = allow
        self.req(seqnr="8")
        self.send(
            f"<iq type='result' to='{PEER}' id='S0001'><accepted xmlns='{NS}' seqnr='8'/></iq>"
        )
        assert self.plugin.active_sessions == frozenset({(PEER, 8)})
        self.recv(
            f"<iq type='get' from='{PEER}' to='tester@localhost/resource' id='S0008'>"
            f"<cancel xmlns='{NS}' seqnr='8'/></iq>"
        )
        self.send(
            f"<iq type='result' to='{PEER}' id='S0008'><cancelled xmlns='{NS}' seqnr='8'/></iq>"
        )
        self.wait_()
        assert source.gate is not None
        source.gate.set()
        self.wait_()
        self.send(None)
        assert source.closed
        assert self.plugin.active_sessions == frozenset()

    def test_cancel_as_iq_set_is_accepted_too(self) -> None:
        self.recv(
            f"<iq type='set' from='{PEER}' to='tester@localhost/resource' id='c1'>"
            f"<cancel xmlns='{NS}' seqnr='99'/></iq>"
        )
        self.send(
            f"<iq type='result' to='{PEER}' id='c1'><cancelled xmlns='{NS}' seqnr='99'/></iq>"
        )

    def test_source_exception_becomes_failure_done(self) -> None:
        self.plugin.source = FakeSource([TEMPERATURE], error=OSError("serial port gone"))
        self.plugin.authorize = allow
        self.req(inner="<node nodeId='Device01'/>")
        self.send(
            f"<iq type='result' to='{PEER}' id='S0001'><accepted xmlns='{NS}' seqnr='1'/></iq>"
        )
        self.send(
            f"<message to='{PEER}'><fields xmlns='{NS}' seqnr='1'>{TEMPERATURE_XML}</fields>"
            "</message>"
        )
        sent = self.xmpp.socket.next_sent(1)
        failure = ET.fromstring(sent).find(f"{{{NS}}}failure")  # noqa: S314 (our own output)
        assert failure is not None
        assert failure.get("done") == "true"
        assert b"Read-out failed: internal error." in sent
        assert b"serial port gone" not in sent
        assert self.plugin.active_sessions == frozenset()

    def test_too_many_sessions_is_resource_constraint(self) -> None:
        self.plugin._per_requester_limit = 1
        self.plugin.source = FakeSource([TEMPERATURE], gate=asyncio.Event())
        self.plugin.authorize = allow
        self.req(seqnr="1")
        self.send(
            f"<iq type='result' to='{PEER}' id='S0001'><accepted xmlns='{NS}' seqnr='1'/></iq>"
        )
        self.req(seqnr="1", iq_id="S0002")
        self.expect_error("cancel", "conflict", "seqnr 1 is already in use.", iq_id="S0002")
        self.req(seqnr="2", iq_id="S0003")
        self.expect_error(
            "wait", "resource-constraint", "Too many concurrent read-outs.", iq_id="S0003"
        )

    def test_plugin_end_cancels_running_sessions(self) -> None:
        source = FakeSource([TEMPERATURE], gate=asyncio.Event())
        self.plugin.source = source
        self.plugin.authorize = allow
        self.req()
        self.send(
            f"<iq type='result' to='{PEER}' id='S0001'><accepted xmlns='{NS}' seqnr='1'/></iq>"
        )
        self.xmpp.plugin.disable("xep_0323_ncap")
        self.wait_()
        assert source.closed
        assert "xep_0323_ncap" not in self.xmpp.plugin

    # -- client side -------------------------------------------------------------------------

    def start_readout(self, **kwargs: object) -> asyncio.Task[Readout]:
        self.plugin._seqnr = 0  # next seqnr is 1
        kwargs.setdefault("dialect", XSF)  # no disco#info round trip (see the dialect tests)
        loop = asyncio.get_event_loop()
        task = loop.create_task(self.plugin.request_readout("device@example.org", **kwargs))
        self.wait_()
        return task

    def expect_req(self, attrs: str = "momentary='true'", inner: str = "") -> None:
        body = f"<req xmlns='{NS}' seqnr='1' {attrs}>{inner}</req>"
        self.send(f"<iq type='get' to='device@example.org' id='1'>{body}</iq>")

    def test_client_collects_fields_until_done_attribute(self) -> None:
        task = self.start_readout(nodes=[NodeRef("Device01")], field_names=["Temperature"])
        self.expect_req(inner="<node nodeId='Device01'/><field name='Temperature'/>")
        self.recv(
            f"<iq type='result' from='device@example.org' to='tester@localhost/resource' "
            f"id='1'><accepted xmlns='{NS}' seqnr='1'/></iq>"
        )
        # Same seqnr from another device and unknown seqnrs are ignored.
        self.recv(
            f"<message from='other@example.org'><fields xmlns='{NS}' seqnr='1' done='true'>"
            f"{TEMPERATURE_XML}</fields></message>"
        )
        self.recv(
            f"<message from='device@example.org'><fields xmlns='{NS}' seqnr='77'>"
            f"{TEMPERATURE_XML}</fields></message>"
        )
        assert not task.done()
        self.recv(
            f"<message from='device@example.org/x'><failure xmlns='{NS}' seqnr='1'>"
            "<error nodeId='Device02' timestamp='2013-03-07T16:24:30Z'>Timeout.</error>"
            "</failure></message>"
        )
        assert not task.done()
        self.recv(
            f"<message from='device@example.org/x'><fields xmlns='{NS}' seqnr='1' "
            f"done='true'>{TEMPERATURE_XML}</fields></message>"
        )
        readout = self.run_coro(task)
        assert readout == Readout(
            1, (TEMPERATURE,), (NodeFailure(NodeRef("Device02"), T1, "Timeout."),)
        )
        assert self.plugin._readouts == {}

    def test_client_separate_done_and_missing_accepted(self) -> None:
        task = self.start_readout(types=FieldType.ALL)
        self.expect_req(attrs="all='true'")
        # Data before the IQ result, and an empty IQ result (no <accepted>).
        self.recv(
            f"<message from='device@example.org'><fields xmlns='{NS}' seqnr='1'>"
            f"{TEMPERATURE_XML}</fields></message>"
        )
        self.recv(
            "<iq type='result' from='device@example.org' to='tester@localhost/resource' id='1'/>"
        )
        self.recv(f"<message from='device@example.org'><done xmlns='{NS}' seqnr='1'/></message>")
        assert self.run_coro(task) == Readout(1, (TEMPERATURE,), ())

    def test_client_done_without_any_iq_result(self) -> None:
        task = self.start_readout()
        self.expect_req()
        self.recv(
            f"<message from='device@example.org'><fields xmlns='{NS}' seqnr='1' done='1'>"
            f"{TEMPERATURE_XML}</fields></message>"
        )
        assert self.run_coro(task).fields == (TEMPERATURE,)

    def test_client_iq_error_raises_readout_error(self) -> None:
        task = self.start_readout()
        self.expect_req()
        self.recv(
            "<iq type='error' from='device@example.org' to='tester@localhost/resource' id='1'>"
            "<error type='cancel'><forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
            "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>Not a friend.</text></error></iq>"
        )
        with pytest.raises(ReadoutError) as info:
            self.run_coro(task)
        assert (info.value.condition, info.value.text) == ("forbidden", "Not a friend.")
        self.send(None)  # no <cancel> after a rejection
        assert self.plugin._readouts == {}

    def test_client_legacy_rejected(self) -> None:
        task = self.start_readout()
        self.expect_req()
        self.recv(
            "<iq type='error' from='device@example.org' to='tester@localhost/resource' id='1'>"
            f"<rejected xmlns='{NS}' seqnr='1'><error>Access denied.</error></rejected></iq>"
        )
        with pytest.raises(ReadoutError) as info:
            self.run_coro(task)
        assert (info.value.condition, info.value.text) == ("undefined-condition", "Access denied.")

    def test_client_legacy_rejected_in_result(self) -> None:
        task = self.start_readout()
        self.expect_req()
        self.recv(
            "<iq type='result' from='device@example.org' to='tester@localhost/resource' id='1'>"
            f"<rejected xmlns='{NS}' seqnr='1'><error>No.</error></rejected></iq>"
        )
        with pytest.raises(ReadoutError, match=r"No\."):
            self.run_coro(task)

    def test_client_timeout_cancels_and_cleans_up(self) -> None:
        task = self.start_readout(timeout=0.05)
        self.expect_req()
        self.recv(
            f"<iq type='result' from='device@example.org' to='tester@localhost/resource' "
            f"id='1'><accepted xmlns='{NS}' seqnr='1'/></iq>"
        )
        with pytest.raises(ReadoutTimeout):
            self.run_coro(task)
        assert isinstance(task.exception(), TimeoutError)
        self.send(
            f"<iq type='get' to='device@example.org' id='2'><cancel xmlns='{NS}' seqnr='1'/></iq>"
        )
        assert self.plugin._readouts == {}

    def test_client_malformed_fields_raise_stanza_error(self) -> None:
        task = self.start_readout()
        self.expect_req()
        self.recv(
            f"<message from='device@example.org'><fields xmlns='{NS}' seqnr='1'>"
            "<node nodeId='n'><timestamp value='yesterday'/></node></fields></message>"
        )
        with pytest.raises(StanzaError, match="xs:dateTime"):
            self.run_coro(task)

    def test_two_plugins_talk_to_each_other_via_loopback(self) -> None:
        """Client side of this stream reads the device side of the same stream."""
        self.plugin.source = FakeSource([TEMPERATURE])
        self.plugin.authorize = allow
        task = self.start_readout()
        self.wait_for_send_queue()
        sent = self.xmpp.socket.next_sent(1)
        # Reflect our own request back as if it came from a peer, then feed back the answers.
        self.recv(
            sent.decode().replace(
                'to="device@example.org"',
                'from="device@example.org/d" to="tester@localhost/resource"',
            )
        )
        for _ in range(2):
            self.wait_for_send_queue()
            answer = self.xmpp.socket.next_sent(1).decode()
            self.recv(
                answer.replace(
                    'to="device@example.org/d"',
                    'from="device@example.org/d" to="tester@localhost/resource"',
                )
            )
        assert self.run_coro(task) == Readout(1, (TEMPERATURE,), ())
