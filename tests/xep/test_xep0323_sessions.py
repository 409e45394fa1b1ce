"""The ``xep_0323_ncap`` plugin on slixmpp's in-memory stream: dialects, negotiation, parallel
sessions, split read-outs, device-side filtering, hostile requests, and two plugins end to end.

Stanzas are quoted whole on one line where that keeps them readable, hence the long lines.
The stream under test is ``tester@localhost/resource``; ``SlixTest.recv`` injects what the server
would deliver and ``SlixTest.send`` checks what we wrote.
"""

# ruff: noqa: E501

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

from slixmpp import JID, ClientXMPP
from slixmpp.test import SlixTest

import xep.xep_0323
from xep.dialect import IEEE, XSF, Dialect
from xep.xep_0323 import Field, FieldType, NodeFailure, NodeFields, NodeRef, ReadoutRequest
from xep.xep_0323.convert import MAX_FIELDS_PER_MESSAGE

XSF_NS = "urn:xmpp:iot:sensordata"
IEEE_NS = "urn:ieee:iot:sd:1.0"
NF_NS = "urn:nf:iot:sd:1.0"
DISCO = "http://jabber.org/protocol/disco#info"
ME = "tester@localhost/resource"
PEER = "client@example.org/amr"
T1 = datetime(2013, 3, 7, 16, 24, 30, tzinfo=UTC)
TEMPERATURE = NodeFields(NodeRef("Device01"), T1, (Field.numeric("Temperature", 23.4, "°C", 1),))


class Source:
    """A SensorDataSource yielding canned items, optionally waiting for a gate first."""

    def __init__(
        self, items: Sequence[NodeFields | NodeFailure] = (), gate: asyncio.Event | None = None
    ) -> None:
        self.items = list(items)
        self.gate = gate
        self.requests: list[ReadoutRequest] = []

    def has_node(self, node: NodeRef) -> bool:
        return node.node_id.startswith("Device")

    async def readout(self, request: ReadoutRequest) -> AsyncIterator[NodeFields | NodeFailure]:
        self.requests.append(request)
        if self.gate is not None:
            await self.gate.wait()
        for item in self.items:
            yield item


async def allow(requester: JID, request: ReadoutRequest) -> bool:
    return True


def parse(data: bytes | str) -> ET.Element:
    return ET.fromstring(data)  # noqa: S314 (our own output)


class StreamCase(SlixTest):
    def setUp(self) -> None:
        self.stream_start(mode="client", plugins=["xep_0030"])
        self.xmpp.register_plugin("xep_0323_ncap", module=xep.xep_0323)
        self.plugin = self.xmpp.plugin["xep_0323_ncap"]
        self.plugin.authorize = allow

    def tearDown(self) -> None:
        self.plugin.cancel_all()
        self.wait_()
        self.stream_close()

    def send(self, data: str | None, *args: object, **kwargs: object) -> None:  # type: ignore[override]
        kwargs.setdefault("use_values", False)  # thin stanza classes: compare XML only
        super().send(data, *args, **kwargs)  # type: ignore[arg-type]

    def sent(self) -> list[ET.Element]:
        """Everything written so far, parsed."""
        out: list[ET.Element] = []
        for _ in range(3):
            self.wait_()
            self.wait_for_send_queue()
            while (data := self.xmpp.socket.next_sent()) is not None:
                out.append(parse(data))
        return out

    def iq(self, payload: str, iq_id: str = "I1", sender: str = PEER, itype: str = "get") -> None:
        self.recv(f"<iq type='{itype}' from='{sender}' to='{ME}' id='{iq_id}'>{payload}</iq>")


class TestDeviceSide(StreamCase):
    def test_disco_advertises_every_dialect(self) -> None:
        self.iq(f"<query xmlns='{DISCO}'/>", "d1")
        self.send(
            f"<iq type='result' to='{PEER}' id='d1'><query xmlns='{DISCO}'>"
            f"<feature var='{XSF_NS}'/><feature var='{IEEE_NS}'/><feature var='{NF_NS}'/>"
            "</query></iq>",
            method="mask",
        )

    def test_ieee_request_is_answered_in_ieee(self) -> None:
        source = Source([TEMPERATURE])
        self.plugin.source = source
        self.iq(
            f"<req xmlns='{IEEE_NS}' id='0f3c9a7e' m='true' from='2013-03-07T00:00:00Z'>"
            "<nd id='Device01'/><f n='Temperature'/></req>"
        )
        self.send(
            f"<iq type='result' to='{PEER}' id='I1'><accepted xmlns='{IEEE_NS}' id='0f3c9a7e'/></iq>"
        )
        self.send(
            f"<message to='{PEER}'><resp xmlns='{IEEE_NS}' id='0f3c9a7e' more='false'>"
            "<nd id='Device01'><ts v='2013-03-07T16:24:30Z'>"
            "<q n='Temperature' m='true' ar='true' v='23.4' u='°C'/></ts></nd></resp></message>"
        )
        self.send(None)
        (request,) = source.requests
        assert request.request_id == "0f3c9a7e"
        assert request.field_names == ("Temperature",)
        assert request.from_time == datetime(2013, 3, 7, tzinfo=UTC)

    def test_nf_namespace_is_answered_in_nf(self) -> None:
        self.plugin.source = Source([])
        self.iq(f"<req xmlns='{NF_NS}' id='5'/>")
        self.send(f"<iq type='result' to='{PEER}' id='I1'><accepted xmlns='{NF_NS}' id='5'/></iq>")
        self.send(f"<message to='{PEER}'><done xmlns='{NF_NS}' id='5'/></message>")

    def test_ieee_failure_empty_cancel_and_errors(self) -> None:
        self.plugin.source = Source([NodeFailure(NodeRef("Device01"), T1, "Timeout.")])
        self.iq(f"<req xmlns='{IEEE_NS}' id='a'/>")
        self.send(
            f"<iq type='result' to='{PEER}' id='I1'><accepted xmlns='{IEEE_NS}' id='a'/></iq>"
        )
        self.send(
            f"<message to='{PEER}'><resp xmlns='{IEEE_NS}' id='a' more='false'>"
            "<nd id='Device01'><ts v='2013-03-07T16:24:30Z'><err>Timeout.</err></ts></nd>"
            "</resp></message>"
        )
        self.plugin.source = Source([], gate=asyncio.Event())
        self.iq(f"<req xmlns='{IEEE_NS}' id='b'/>", "I2")
        self.send(
            f"<iq type='result' to='{PEER}' id='I2'><accepted xmlns='{IEEE_NS}' id='b'/></iq>"
        )
        assert self.plugin.active_requests == frozenset({(PEER, IEEE_NS, "b")})
        self.iq(f"<cancel xmlns='{IEEE_NS}' id='b'/>", "I3")
        self.send(f"<iq type='result' to='{PEER}' id='I3'/>")  # IEEE: empty result
        assert self.plugin.active_requests == frozenset()
        self.iq(f"<req xmlns='{IEEE_NS}' m='true'/>", "I4")
        self.send(
            f"<iq type='error' to='{PEER}' id='I4'><error type='modify'>"
            "<bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
            "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>"
            "&lt;req&gt; lacks the required 'id' attribute</text></error></iq>"
        )
        self.iq(f"<req xmlns='{IEEE_NS}' id='c'><nd id='Nope'/></req>", "I5")
        self.send(
            f"<iq type='error' to='{PEER}' id='I5'><error type='cancel'>"
            "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
            "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>Unknown node 'Nope'.</text>"
            "</error></iq>"
        )

    def test_parallel_sessions_keyed_by_full_jid_namespace_and_id(self) -> None:
        gate = asyncio.Event()
        self.plugin.source = Source([TEMPERATURE], gate=gate)
        other, third = "client@example.org/other", "someone@example.net/x"
        for iq_id, sender, payload in (
            ("A", PEER, f"<req xmlns='{XSF_NS}' seqnr='1'/>"),
            ("B", PEER, f"<req xmlns='{XSF_NS}' seqnr='2'/>"),
            ("C", other, f"<req xmlns='{XSF_NS}' seqnr='1'/>"),
            ("D", third, f"<req xmlns='{XSF_NS}' seqnr='1'/>"),
            ("E", PEER, f"<req xmlns='{IEEE_NS}' id='1'/>"),
        ):
            self.iq(payload, iq_id, sender)
        answers = self.sent()
        assert [a.get("type") for a in answers] == ["result"] * 5
        assert self.plugin.active_sessions == frozenset(
            {(PEER, 1), (PEER, 2), (other, 1), (third, 1)}
        )
        assert len(self.plugin.active_requests) == 5
        # The same seqnr again from the same requester is a conflict, not a new session.
        self.iq(f"<req xmlns='{XSF_NS}' seqnr='2'/>", "F")
        (conflict,) = self.sent()
        assert conflict.get("type") == "error"
        assert conflict.find(".//{urn:ietf:params:xml:ns:xmpp-stanzas}conflict") is not None
        gate.set()
        messages = self.sent()
        seen = set()
        for message in messages:
            (payload,) = list(message)
            ident = payload.get("seqnr") or payload.get("id")
            seen.add((message.get("to"), payload.tag, ident))
            assert payload.get("done") == "true" or payload.get("more") == "false"
        assert seen == {
            (PEER, f"{{{XSF_NS}}}fields", "1"),
            (PEER, f"{{{XSF_NS}}}fields", "2"),
            (other, f"{{{XSF_NS}}}fields", "1"),
            (third, f"{{{XSF_NS}}}fields", "1"),
            (PEER, f"{{{IEEE_NS}}}resp", "1"),
        }
        assert self.plugin.active_requests == frozenset()

    def test_large_readout_is_split(self) -> None:
        fields = tuple(Field.numeric(f"R{i}", i, "V", 0) for i in range(5000))
        self.plugin.source = Source(
            [NodeFields(NodeRef("Device01"), T1, fields), NodeFailure(NodeRef("Device02"), T1, "x")]
        )
        for dialect in (XSF, IEEE):
            names = dialect.sensordata
            self.iq(f"<req xmlns='{names.namespace}' {names.id_attr}='7'/>", dialect.name)
            accepted, *messages = self.sent()
            assert accepted.get("type") == "result"
            assert len(messages) == 51
            counts = [
                len(m.findall(f".//{{{names.namespace}}}{names.timestamp}/*")) for m in messages
            ]
            # 50 x 100 fields, then the failure (an IEEE <err> sits in nd/ts, an XSF <error> not)
            assert counts == [MAX_FIELDS_PER_MESSAGE] * 50 + [int(names.failure is None)]
            last = [
                (p.get("done") == "true") if names.more_attr is None else p.get("more") == "false"
                for m in messages
                for p in m
            ]
            assert last == [False] * 50 + [True]
            assert max(len(ET.tostring(m, encoding="utf-8")) for m in messages) < 32 * 1024

    def test_device_filters_by_field_names_and_types(self) -> None:
        fields = (
            Field.numeric("Temperature", 1, "K", 0),
            Field.numeric("Temperature", 2, "K", 0, types=FieldType.PEAK),
            Field.numeric("Humidity", 3, "%", 0),
            Field.integer("Address", 7, types=FieldType.IDENTITY),
        )
        only_identity = NodeFields(NodeRef("Device02"), T1, fields[3:])
        failure = NodeFailure(NodeRef("Device03"), T1, "Timeout.")
        self.plugin.source = Source(
            [NodeFields(NodeRef("Device01"), T1, fields), only_identity, failure]
        )
        self.iq(
            f"<req xmlns='{XSF_NS}' seqnr='1' momentary='true'><field name='Temperature'/></req>"
        )
        _, *messages = self.sent()
        names = [f.get("name") for m in messages for f in m.iter() if f.get("name")]
        values = [f.get("value") for m in messages for f in m.iter() if f.get("name")]
        assert names == ["Temperature"]
        assert values == ["1"]
        assert len(messages) == 2  # Device02 had nothing wanted: not sent; the failure is
        assert messages[-1][0].tag == f"{{{XSF_NS}}}failure"
        # Switched off: the source's answer goes out as it is.
        self.plugin._filter = False
        self.iq(
            f"<req xmlns='{XSF_NS}' seqnr='2' momentary='true'><field name='Temperature'/></req>",
            "I2",
        )
        _, *messages = self.sent()
        assert sum(1 for m in messages for f in m.iter() if f.get("name")) == 5

    def test_historical_request_reaches_the_source(self) -> None:
        source = Source([])
        self.plugin.source = source
        self.iq(
            f"<req xmlns='{XSF_NS}' seqnr='3' historicalDay='true' historicalHour='1' "
            "from='2013-03-01T00:00:00Z' to='2013-03-07T00:00:00+01:00'/>"
        )
        self.sent()
        self.iq(f"<req xmlns='{IEEE_NS}' id='4' h='true' from='2013-03-01T00:00:00Z'/>", "I2")
        self.sent()
        xsf, ieee = source.requests
        assert xsf.types == FieldType.HISTORICAL_DAY | FieldType.HISTORICAL_HOUR
        assert xsf.from_time == datetime(2013, 3, 1, tzinfo=UTC)
        assert xsf.to_time == datetime(2013, 3, 6, 23, tzinfo=UTC)
        assert ieee.types == FieldType.HISTORICAL
        assert ieee.from_time == datetime(2013, 3, 1, tzinfo=UTC)

    def test_hostile_requests_get_errors_and_the_plugin_keeps_answering(self) -> None:
        self.plugin.source = Source([TEMPERATURE])
        deep_ours = "<x>" * 2000 + "</x>" * 2000
        deep_foreign = "<y xmlns='urn:other'>" + "<y>" * 2000 + "</y>" * 2000 + "</y>"
        cases = [
            (
                f"<req xmlns='{XSF_NS}' seqnr='1'>" + "<field name='f'/>" * 5000 + "</req>",
                "too many <field>",
            ),
            (
                f"<req xmlns='{XSF_NS}' seqnr='1'>" + "<node nodeId='Device1'/>" * 3000 + "</req>",
                "too many <node>",
            ),
            (f"<req xmlns='{IEEE_NS}' id='1'>" + "<f n='f'/>" * 5000 + "</req>", "too many <f>"),
            (f"<req xmlns='{XSF_NS}' seqnr='1'>{deep_ours}</req>", "unexpected element <x>"),
            (f"<req xmlns='{XSF_NS}' seqnr='1'><bogus/></req>", "unexpected element <bogus>"),
            (f"<req xmlns='{XSF_NS}' seqnr='1' userToken='{'t ' * 100}'/>", "too many userToken"),
            (f"<req xmlns='{XSF_NS}' seqnr='1' from='the dawn of time'/>", "xs:dateTime"),
        ]
        for index, (payload, text) in enumerate(cases):
            self.iq(payload, f"bad{index}")
            (answer,) = self.sent()
            assert answer.get("type") == "error", text
            assert answer.find(".//{urn:ietf:params:xml:ns:xmpp-stanzas}bad-request") is not None
            assert text in (answer.findtext(".//{urn:ietf:params:xml:ns:xmpp-stanzas}text") or "")
        assert self.plugin.active_requests == frozenset()
        # Foreign extension elements, however deep, are ignored; the plugin still works.
        self.iq(f"<req xmlns='{XSF_NS}' seqnr='1' unknownAttr='x'>{deep_foreign}</req>", "good")
        accepted, fields = self.sent()
        assert accepted.get("type") == "result"
        assert fields[0].get("done") == "true"


class TestNegotiation(StreamCase):
    def start(self, to: str = "device@example.org/d", **kwargs: object) -> asyncio.Task:  # type: ignore[type-arg]
        task = asyncio.get_event_loop().create_task(self.plugin.request_readout(to, **kwargs))
        self.wait_()
        return task

    def disco_answer(self, iq_id: str, *features: str, to: str = "device@example.org/d") -> None:
        body = "".join(f"<feature var='{f}'/>" for f in features)
        self.recv(
            f"<iq type='result' from='{to}' to='{ME}' id='{iq_id}'>"
            f"<query xmlns='{DISCO}'><identity category='client' type='pc'/>{body}</query></iq>"
        )

    def test_ieee_only_peer_gets_ieee_and_the_answer_is_cached(self) -> None:
        self.plugin._seqnr = 0
        task = self.start()
        self.send(f"<iq type='get' to='device@example.org/d' id='1'><query xmlns='{DISCO}'/></iq>")
        self.disco_answer("1", IEEE_NS, "urn:xmpp:ping")
        self.send(
            f"<iq type='get' to='device@example.org/d' id='2'><req xmlns='{IEEE_NS}' id='1' m='true'/></iq>"
        )
        self.recv(
            f"<iq type='result' from='device@example.org/d' to='{ME}' id='2'>"
            f"<accepted xmlns='{IEEE_NS}' id='1'/></iq>"
        )
        self.recv(
            f"<message from='device@example.org/d' to='{ME}'><resp xmlns='{IEEE_NS}' id='1' more='true'>"
            "<nd id='Device01'><ts v='2013-03-07T16:24:30Z'><q n='Temperature' m='true' v='23.4' u='°C'/>"
            "</ts></nd></resp></message>"
        )
        assert not task.done()
        self.recv(
            f"<message from='device@example.org/d' to='{ME}'><done xmlns='{IEEE_NS}' id='1'/></message>"
        )
        readout = self.run_coro(task)
        assert readout.fields[0].fields[0].value == "23.4"
        # Cached: the second read-out goes straight out in IEEE.
        task = self.start(types=FieldType.ALL)
        self.send(
            f"<iq type='get' to='device@example.org/d' id='3'><req xmlns='{IEEE_NS}' id='2' all='true'/></iq>"
        )
        self.recv(
            f"<message from='device@example.org/d' to='{ME}'><resp xmlns='{IEEE_NS}' id='2'/></message>"
        )
        assert self.run_coro(task).fields == ()
        # An explicit dialect overrides the cache.
        task = self.start(dialect=XSF)
        self.send(
            f"<iq type='get' to='device@example.org/d' id='4'>"
            f"<req xmlns='{XSF_NS}' seqnr='3' momentary='true'/></iq>"
        )
        self.recv(
            f"<message from='device@example.org/d'><done xmlns='{XSF_NS}' seqnr='3'/></message>"
        )
        self.run_coro(task)
        # Going offline forgets the answer.
        self.recv(f"<presence type='unavailable' from='device@example.org/d' to='{ME}'/>")
        assert self.plugin._dialect_cache == {}

    def negotiated(self, *answer: str, error: bool = False) -> Dialect:
        task = asyncio.get_event_loop().create_task(
            self.plugin.negotiate_dialect("thing@example.org/t")
        )
        self.wait_()
        (query,) = self.sent()
        iq_id = query.get("id") or ""
        if error:
            self.recv(
                f"<iq type='error' from='thing@example.org/t' to='{ME}' id='{iq_id}'>"
                "<error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
                "</error></iq>"
            )
        else:
            self.disco_answer(iq_id, *answer, to="thing@example.org/t")
        result: Dialect = self.run_coro(task)
        self.plugin._dialect_cache.clear()
        return result

    def test_preference_order_and_fallbacks(self) -> None:
        assert self.negotiated(IEEE_NS, XSF_NS) is XSF
        assert self.negotiated(NF_NS, IEEE_NS) is IEEE
        assert self.negotiated(NF_NS).name == "nf"
        assert self.negotiated("urn:xmpp:ping") is XSF
        assert self.negotiated(error=True) is XSF

    def test_disco_timeout_gives_xsf_uncached(self) -> None:
        dialect = self.run_coro(self.plugin.negotiate_dialect("slow@example.org/x", timeout=0.05))
        assert dialect is XSF
        assert self.plugin._dialect_cache == {}


class TestTwoPeers(SlixTest):
    """A thing and a client, each a full slixmpp stream with the plugin, routed to each other."""

    def setUp(self) -> None:
        self.stream_start(jid="thing@example.org/t", plugins=["xep_0030"])
        self.thing: ClientXMPP = self.xmpp
        self.thing.register_plugin("xep_0323_ncap", module=xep.xep_0323)
        self.thing_plugin = self.thing.plugin["xep_0323_ncap"]
        self.thing_plugin.authorize = allow
        self.stream_start(jid="client@example.org/c", plugins=["xep_0030"])
        self.client: ClientXMPP = self.xmpp
        self.client.register_plugin("xep_0323_ncap", module=xep.xep_0323)
        self.client_plugin = self.client.plugin["xep_0323_ncap"]

    def tearDown(self) -> None:
        for xmpp in (self.thing, self.client):
            self.xmpp = xmpp
            self.stream_close()

    def flush(self, xmpp: ClientXMPP) -> list[bytes]:
        loop = asyncio.get_event_loop()
        future = asyncio.ensure_future(xmpp.run_filters())
        loop.run_until_complete(xmpp.waiting_queue.join())
        future.cancel()
        out = []
        while (data := xmpp.socket.next_sent()) is not None:
            out.append(data)
        return out

    def route(self, task: asyncio.Task) -> int:  # type: ignore[type-arg]
        """Deliver stanzas between both streams, stamping ``from`` like a server, until done."""
        delivered = 0
        for _ in range(500):
            moved = False
            for src, dst in ((self.client, self.thing), (self.thing, self.client)):
                for data in self.flush(src):
                    stanza = parse(data)
                    stanza.set("from", src.boundjid.full)
                    dst.data_received(ET.tostring(stanza, encoding="unicode"))
                    delivered += 1
                    moved = True
            self.wait_()
            if not moved and task.done():
                break
        return delivered

    def readout(self, **kwargs: object) -> tuple[asyncio.Task, int]:  # type: ignore[type-arg]
        coro = self.client_plugin.request_readout("thing@example.org/t", **kwargs)
        task = asyncio.get_event_loop().create_task(coro)
        self.wait_()
        return task, self.route(task)

    def test_negotiated_xsf_readout_of_5000_fields(self) -> None:
        fields = tuple(Field.numeric(f"R{i:04d}", i / 100, "A", 2) for i in range(5000))
        big = NodeFields(NodeRef("Device01", "src"), T1, fields)
        failure = NodeFailure(NodeRef("Device02"), T1, "Timeout.")
        self.thing_plugin.source = Source([big, failure])
        task, delivered = self.readout(types=FieldType.ALL, timeout=30)
        readout = task.result()
        assert readout.fields == (big,)  # 50 parts merged back
        assert readout.failures == (failure,)
        assert delivered == 4 + 51  # disco#info get/result, req/accepted, 50 x fields + failure
        assert self.client_plugin._dialect_cache == {"thing@example.org/t": XSF}

    def test_ieee_end_to_end_with_filters(self) -> None:
        fields = (Field.numeric("Temperature", 21.5, "°C", 2), Field.boolean("Relay", True))
        self.thing_plugin.source = Source([NodeFields(NodeRef("Device01"), T1, fields)])
        task, _ = self.readout(
            dialect=IEEE, field_names=["Temperature"], from_time=T1, to_time=T1, timeout=5
        )
        readout = task.result()
        assert readout.fields == (NodeFields(NodeRef("Device01"), T1, fields[:1]),)
        assert readout.fields[0].fields[0].value == "21.50"
        (request,) = self.thing_plugin.source.requests
        assert (request.from_time, request.to_time) == (T1, T1)

    def test_ieee_only_thing_is_negotiated(self) -> None:
        self.thing.plugin.disable("xep_0323_ncap")  # re-enable with one dialect only
        self.thing.register_plugin(
            "xep_0323_ncap", pconfig={"dialects": (IEEE,)}, module=xep.xep_0323
        )
        plugin = self.thing.plugin["xep_0323_ncap"]
        plugin.authorize = allow
        plugin.source = Source([TEMPERATURE])
        task, _ = self.readout(timeout=5)
        assert task.result().fields == (TEMPERATURE,)
        assert self.client_plugin._dialect_cache == {"thing@example.org/t": IEEE}
