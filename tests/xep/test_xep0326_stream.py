"""The ``xep_0326_ncap`` plugin on slixmpp's in-memory test stream (no server).

``SlixTest.recv(xml)`` injects a stanza as if the server sent it; ``SlixTest.send(xml)`` asserts the
next stanza our client wrote. The client under test is ``tester@localhost/resource``.
"""
# ruff: noqa: E501 (XML test vectors read better unwrapped)

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from slixmpp import JID
from slixmpp.test import SlixTest

import xep.xep_0326
from xep.errors import ConcentratorError, ConcentratorTimeout, StanzaError
from xep.xep_0326 import (
    CAPABILITIES,
    DataSource,
    MessageType,
    NodeInfo,
    NodeMessage,
    NodeParameter,
    NodeRef,
    NodeState,
    ResultCode,
    SortOrder,
)

NS = "urn:xmpp:iot:concentrators"
PEER = "client@example.org/client"
SRC = "MeteringTopology"
T1 = datetime(2013, 3, 19, 17, 58, 1, tzinfo=UTC)

NCAP = NodeInfo("NCAP", SRC, node_type="Ncap.Gateway", has_children=True, children_ordered=True)
TIM1 = NodeInfo(
    "TIM-1",
    SRC,
    node_type="Ncap.Tim",
    state=NodeState.WARNING_UNSIGNED,
    has_children=True,
    parent_id="NCAP",
    last_changed=T1,
    parameters=(NodeParameter.integer("addr", "Address", 2), NodeParameter.string("sn", "SN", "b")),
    messages=(NodeMessage(T1, MessageType.WARNING, "CRC errors", "E1"),),
)
TIM2 = NodeInfo(
    "TIM-2",
    SRC,
    node_type="Ncap.Tim",
    has_children=True,
    parent_id="NCAP",
    parameters=(NodeParameter.integer("addr", "Address", 1),),
)
CH1 = NodeInfo("TIM-1/1", SRC, node_type="Ncap.Channel", is_readable=True, parent_id="TIM-1")

TIM1_XML = (
    f"<node nodeId='TIM-1' sourceId='{SRC}' nodeType='Ncap.Tim' state='WarningUnsigned' "
    "hasChildren='true' parentId='NCAP' lastChanged='2013-03-19T17:58:01Z'/>"
)
TIM2_XML = (
    f"<node nodeId='TIM-2' sourceId='{SRC}' nodeType='Ncap.Tim' state='None' hasChildren='true' "
    "parentId='NCAP'/>"
)
NCAP_XML = (
    f"<node nodeId='NCAP' sourceId='{SRC}' nodeType='Ncap.Gateway' state='None' "
    "hasChildren='true' childrenOrdered='true'/>"
)


class FakeTree:
    """A ConcentratorSource over a fixed tree; ``error`` makes every lookup raise."""

    def __init__(self, nodes: Sequence[NodeInfo] = (NCAP, TIM1, TIM2, CH1)) -> None:
        self.nodes = list(nodes)
        self.error: Exception | None = None
        self.lookups: list[object] = []

    def _check(self, arg: object) -> None:
        self.lookups.append(arg)
        if self.error is not None:
            raise self.error

    def data_sources(self) -> Sequence[DataSource]:
        self._check(None)
        return (
            DataSource(SRC, "Topology", True, T1),
            DataSource("Sub", "Sub source", parent_id=SRC),
        )

    def root_nodes(self, source_id: str) -> Sequence[NodeInfo] | None:
        self._check(source_id)
        if source_id != SRC:
            return None
        return [n for n in self.nodes if n.parent_id is None]

    def node(self, ref: NodeRef) -> NodeInfo | None:
        self._check(ref)
        return next((n for n in self.nodes if ref.matches(n.ref)), None)

    def child_nodes(self, ref: NodeRef) -> Sequence[NodeInfo] | None:
        if self.node(ref) is None:
            return None
        return [n for n in self.nodes if n.parent_id == ref.node_id]

    def all_nodes(self, source_id: str) -> Sequence[NodeInfo] | None:
        self._check(source_id)
        return list(self.nodes) if source_id == SRC else None


async def allow(requester: JID) -> bool:
    return True


async def deny(requester: JID) -> bool:
    return False


async def explode(requester: JID) -> bool:
    raise RuntimeError("provisioning server on fire")


class TestConcentratorStream(SlixTest):
    def setUp(self) -> None:
        self.stream_start(mode="client", plugins=["xep_0030"])
        # The exact call the application makes:
        self.xmpp.register_plugin("xep_0326_ncap", module=xep.xep_0326)
        self.plugin = self.xmpp.plugin["xep_0326_ncap"]
        self.tree = FakeTree()

    def tearDown(self) -> None:
        self.wait_()
        self.stream_close()

    def send(self, data: str | None, *args: object, **kwargs: object) -> None:  # type: ignore[override]
        # Our stanza classes are thin (attributes are not ``interfaces``): compare XML only.
        kwargs.setdefault("use_values", False)
        super().send(data, *args, **kwargs)  # type: ignore[arg-type]

    def serve(self) -> None:
        self.plugin.source = self.tree
        self.plugin.authorize = allow

    def ask(self, inner: str, iq_id: str = "c1", itype: str = "get") -> None:
        self.recv(
            f"<iq type='{itype}' from='{PEER}' to='tester@localhost/resource' id='{iq_id}'>"
            f"{inner}</iq>"
        )

    def expect(self, inner: str, iq_id: str = "c1") -> None:
        self.send(f"<iq type='result' to='{PEER}' id='{iq_id}'>{inner}</iq>")

    # -- registration ----------------------------------------------------------------------

    def test_registered_under_own_name_with_disco_feature(self) -> None:
        assert isinstance(self.plugin, xep.xep_0326.XEP_0326)
        assert self.plugin.name == "xep_0326_ncap"
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

    def test_plugin_end_removes_handler(self) -> None:
        self.serve()
        self.xmpp.plugin.disable("xep_0326_ncap")
        assert "xep_0326_ncap" not in self.xmpp.plugin
        self.ask(f"<getCapabilities xmlns='{NS}'/>")
        self.send(
            f"<iq type='error' to='{PEER}' id='c1'><error type='cancel'>"
            "<feature-not-implemented xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
            "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>No handlers registered for this "
            "request.</text></error></iq>"
        )

    # -- thing side: every command -----------------------------------------------------------

    def test_get_capabilities_lists_exactly_what_is_implemented(self) -> None:
        self.serve()
        self.ask(f"<getCapabilities xmlns='{NS}'/>")
        values = "".join(f"<value>{name}</value>" for name in CAPABILITIES)
        self.expect(
            f"<getCapabilitiesResponse xmlns='{NS}' result='OK'>{values}</getCapabilitiesResponse>"
        )
        assert set(CAPABILITIES) == {
            "getCapabilities",
            "getAllDataSources",
            "getRootDataSources",
            "getChildDataSources",
            "containsNode",
            "containsNodes",
            "getNode",
            "getNodes",
            "getAllNodes",
            "getRootNodes",
            "getChildNodes",
            "getAncestors",
        }

    def test_data_source_commands(self) -> None:
        self.serve()
        top = (
            f"<dataSource sourceId='{SRC}' name='Topology' hasChildren='true' "
            "lastChanged='2013-03-19T17:58:01Z'/>"
        )
        sub = "<dataSource sourceId='Sub' name='Sub source' hasChildren='false'/>"
        self.ask(f"<getAllDataSources xmlns='{NS}' xml:lang='en'/>")
        self.expect(
            f"<getAllDataSourcesResponse xmlns='{NS}' result='OK'>{top}{sub}</getAllDataSourcesResponse>"
        )
        self.ask(f"<getRootDataSources xmlns='{NS}'/>", "c2")
        self.expect(
            f"<getRootDataSourcesResponse xmlns='{NS}' result='OK'>{top}</getRootDataSourcesResponse>",
            "c2",
        )
        self.ask(f"<getChildDataSources xmlns='{NS}' sourceId='{SRC}'/>", "c3")
        self.expect(
            f"<getChildDataSourcesResponse xmlns='{NS}' result='OK'>{sub}</getChildDataSourcesResponse>",
            "c3",
        )
        self.ask(f"<getChildDataSources xmlns='{NS}' sourceId='Nope'/>", "c4")
        self.expect(f"<getChildDataSourcesResponse xmlns='{NS}' result='NotFound'/>", "c4")

    def test_contains_node_and_nodes(self) -> None:
        self.serve()
        self.ask(f"<containsNode xmlns='{NS}' sourceId='{SRC}' nodeId='TIM-1'/>")
        self.expect(f"<containsNodeResponse xmlns='{NS}' result='OK'>true</containsNodeResponse>")
        self.ask(f"<containsNode xmlns='{NS}' sourceId='{SRC}' nodeId='TIM-9'/>", "c2")
        self.expect(
            f"<containsNodeResponse xmlns='{NS}' result='OK'>false</containsNodeResponse>", "c2"
        )
        self.ask(
            f"<containsNodes xmlns='{NS}'><node sourceId='{SRC}' nodeId='NCAP'/>"
            f"<node nodeId='NCAP'/><node sourceId='Other' nodeId='NCAP'/></containsNodes>",
            "c3",
        )
        self.expect(
            f"<containsNodesResponse xmlns='{NS}' result='OK'><value>true</value><value>false</value>"
            "<value>false</value></containsNodesResponse>",
            "c3",
        )

    def test_get_node_without_and_with_parameters_and_messages(self) -> None:
        self.serve()
        self.ask(f"<getNode xmlns='{NS}' sourceId='{SRC}' nodeId='TIM-1' xml:lang='en'/>")
        self.expect(
            f"<getNodeResponse xmlns='{NS}' result='OK' nodeId='TIM-1' sourceId='{SRC}' "
            "nodeType='Ncap.Tim' state='WarningUnsigned' hasChildren='true' parentId='NCAP' "
            "lastChanged='2013-03-19T17:58:01Z'/>"
        )
        self.ask(f"<getNode xmlns='{NS}' sourceId='{SRC}' nodeId='TIM-1' parameters='true'/>", "c2")
        self.expect(
            f"<getNodeResponse xmlns='{NS}' result='OK' nodeId='TIM-1' sourceId='{SRC}' "
            "nodeType='Ncap.Tim' state='WarningUnsigned' hasChildren='true' parentId='NCAP' "
            "lastChanged='2013-03-19T17:58:01Z'><int id='addr' name='Address' value='2'/>"
            "<string id='sn' name='SN' value='b'/></getNodeResponse>",
            "c2",
        )
        self.ask(f"<getNode xmlns='{NS}' sourceId='{SRC}' nodeId='TIM-1' messages='1'/>", "c3")
        self.expect(
            f"<getNodeResponse xmlns='{NS}' result='OK' nodeId='TIM-1' sourceId='{SRC}' "
            "nodeType='Ncap.Tim' state='WarningUnsigned' hasChildren='true' parentId='NCAP' "
            "lastChanged='2013-03-19T17:58:01Z'><message timestamp='2013-03-19T17:58:01Z' "
            "type='Warning' eventId='E1'>CRC errors</message></getNodeResponse>",
            "c3",
        )

    def test_get_node_not_found_and_missing_source_id(self) -> None:
        self.serve()
        self.ask(f"<getNode xmlns='{NS}' sourceId='{SRC}' nodeId='Nope'/>")
        self.expect(f"<getNodeResponse xmlns='{NS}' result='NotFound'/>")
        self.ask(f"<getNode xmlns='{NS}' nodeId='TIM-1'/>", "c2")
        self.expect(f"<getNodeResponse xmlns='{NS}' result='NotFound'/>", "c2")
        assert all(isinstance(ref, NodeRef) and ref.source_id for ref in self.tree.lookups)

    def test_get_nodes_all_or_nothing(self) -> None:
        self.serve()
        self.ask(
            f"<getNodes xmlns='{NS}'><node sourceId='{SRC}' nodeId='TIM-2'/>"
            f"<node sourceId='{SRC}' nodeId='TIM-1'/></getNodes>"
        )
        self.expect(
            f"<getNodesResponse xmlns='{NS}' result='OK'>{TIM2_XML}{TIM1_XML}</getNodesResponse>"
        )
        self.ask(
            f"<getNodes xmlns='{NS}'><node sourceId='{SRC}' nodeId='TIM-2'/>"
            f"<node sourceId='{SRC}' nodeId='Nope'/></getNodes>",
            "c2",
        )
        self.expect(f"<getNodesResponse xmlns='{NS}' result='NotFound'/>", "c2")

    def test_get_all_nodes_with_type_filter(self) -> None:
        self.serve()
        self.ask(
            f"<getAllNodes xmlns='{NS}' sourceId='{SRC}'>"
            "<onlyIfDerivedFrom>Ncap.Tim</onlyIfDerivedFrom></getAllNodes>"
        )
        self.expect(
            f"<getAllNodesResponse xmlns='{NS}' result='OK'>{TIM1_XML}{TIM2_XML}</getAllNodesResponse>"
        )
        self.ask(f"<getAllNodes xmlns='{NS}' sourceId='Nope'/>", "c2")
        self.expect(f"<getAllNodesResponse xmlns='{NS}' result='NotFound'/>", "c2")
        self.ask(f"<getAllNodes xmlns='{NS}'/>", "c3")
        self.expect(f"<getAllNodesResponse xmlns='{NS}' result='NotFound'/>", "c3")

    def test_get_root_nodes(self) -> None:
        self.serve()
        self.ask(f"<getRootNodes xmlns='{NS}' sourceId='{SRC}'/>")
        self.expect(
            f"<getRootNodesResponse xmlns='{NS}' result='OK'>{NCAP_XML}</getRootNodesResponse>"
        )
        self.ask(f"<getRootNodes xmlns='{NS}' sourceId='Nope'/>", "c2")
        self.expect(f"<getRootNodesResponse xmlns='{NS}' result='NotFound'/>", "c2")

    def test_get_child_nodes_in_order_and_sorted(self) -> None:
        self.serve()
        self.ask(f"<getChildNodes xmlns='{NS}' sourceId='{SRC}' nodeId='NCAP'/>")
        self.expect(
            f"<getChildNodesResponse xmlns='{NS}' result='OK'>{TIM1_XML}{TIM2_XML}</getChildNodesResponse>"
        )
        self.ask(
            f"<getChildNodes xmlns='{NS}' sourceId='{SRC}' nodeId='NCAP'>"
            "<sortOrder parameterName='addr'/></getChildNodes>",
            "c2",
        )
        self.expect(
            f"<getChildNodesResponse xmlns='{NS}' result='OK'>{TIM2_XML}{TIM1_XML}</getChildNodesResponse>",
            "c2",
        )
        self.ask(f"<getChildNodes xmlns='{NS}' sourceId='{SRC}' nodeId='Nope'/>", "c3")
        self.expect(f"<getChildNodesResponse xmlns='{NS}' result='NotFound'/>", "c3")
        self.ask(f"<getChildNodes xmlns='{NS}' nodeId='NCAP'/>", "c4")
        self.expect(f"<getChildNodesResponse xmlns='{NS}' result='NotFound'/>", "c4")

    def test_get_ancestors_walks_parent_ids(self) -> None:
        self.serve()
        self.ask(
            f"<getAncestors xmlns='{NS}' sourceId='{SRC}' nodeId='TIM-1/1' parameters='false'/>"
        )
        channel = (
            f"<node nodeId='TIM-1/1' sourceId='{SRC}' nodeType='Ncap.Channel' state='None' "
            "hasChildren='false' isReadable='true' parentId='TIM-1'/>"
        )
        self.expect(
            f"<getAncestorsResponse xmlns='{NS}' result='OK'>{channel}{TIM1_XML}{NCAP_XML}</getAncestorsResponse>"
        )
        self.ask(f"<getAncestors xmlns='{NS}' sourceId='{SRC}' nodeId='Nope'/>", "c2")
        self.expect(f"<getAncestorsResponse xmlns='{NS}' result='NotFound'/>", "c2")

    def test_get_ancestors_inconsistent_tree_is_other_error(self) -> None:
        self.serve()
        loop_a = NodeInfo("A", SRC, parent_id="B")
        loop_b = NodeInfo("B", SRC, parent_id="A")
        orphan = NodeInfo("O", SRC, parent_id="Gone")
        self.tree.nodes = [loop_a, loop_b, orphan]
        with self.assertLogs("xep.xep_0326.concentrator", "ERROR"):
            self.ask(f"<getAncestors xmlns='{NS}' sourceId='{SRC}' nodeId='A'/>")
            self.expect(f"<getAncestorsResponse xmlns='{NS}' result='OtherError'/>")
        with self.assertLogs("xep.xep_0326.concentrator", "ERROR"):
            self.ask(f"<getAncestors xmlns='{NS}' sourceId='{SRC}' nodeId='O'/>", "c2")
            self.expect(f"<getAncestorsResponse xmlns='{NS}' result='OtherError'/>", "c2")

    def test_request_in_iq_set_is_served_too(self) -> None:
        self.serve()
        self.ask(f"<getRootNodes xmlns='{NS}' sourceId='{SRC}'/>", itype="set")
        self.expect(
            f"<getRootNodesResponse xmlns='{NS}' result='OK'>{NCAP_XML}</getRootNodesResponse>"
        )

    # -- thing side: refusals and failures ---------------------------------------------------

    def test_default_authorizer_fails_closed_with_no_data(self) -> None:
        self.plugin.source = self.tree
        for number, inner in enumerate(
            [
                f"<getCapabilities xmlns='{NS}'/>",
                f"<getAllDataSources xmlns='{NS}'/>",
                f"<getNode xmlns='{NS}' sourceId='{SRC}' nodeId='NCAP'/>",
                f"<getAllNodes xmlns='{NS}' sourceId='{SRC}'/>",
            ]
        ):
            self.ask(inner, f"c{number}")
            tag = inner.split()[0][1:]
            self.expect(
                f"<{tag}Response xmlns='{NS}' result='InsufficientPrivileges'/>", f"c{number}"
            )
        assert self.tree.lookups == []

    def test_explicit_deny_and_authorizer_exception(self) -> None:
        self.plugin.source = self.tree
        self.plugin.authorize = deny
        self.ask(f"<getRootNodes xmlns='{NS}' sourceId='{SRC}'/>")
        self.expect(f"<getRootNodesResponse xmlns='{NS}' result='InsufficientPrivileges'/>")
        self.plugin.authorize = explode
        with self.assertLogs("xep.xep_0326.concentrator", "ERROR"):
            self.ask(f"<getRootNodes xmlns='{NS}' sourceId='{SRC}'/>", "c2")
            self.expect(
                f"<getRootNodesResponse xmlns='{NS}' result='InsufficientPrivileges'/>", "c2"
            )
        assert self.tree.lookups == []

    def test_unknown_element_is_not_implemented(self) -> None:
        # Even for strangers: the answer reveals nothing.
        self.ask(f"<moveNodeUp xmlns='{NS}' sourceId='{SRC}' nodeId='TIM-2'/>", itype="set")
        self.expect(f"<moveNodeUpResponse xmlns='{NS}' result='NotImplemented'/>")
        self.ask(f"<getNodeCommands xmlns='{NS}' sourceId='{SRC}' nodeId='TIM-2'/>", "c2")
        self.expect(f"<getNodeCommandsResponse xmlns='{NS}' result='NotImplemented'/>", "c2")

    def test_malformed_request_is_bad_request_carrying_other_error(self) -> None:
        self.serve()
        self.ask(f"<getNode xmlns='{NS}' sourceId='{SRC}'/>")
        self.send(
            f"<iq type='error' to='{PEER}' id='c1'>"
            f"<getNodeResponse xmlns='{NS}' result='OtherError'/><error type='modify'>"
            "<bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
            "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>&lt;getNode&gt; lacks the required "
            "'nodeId' attribute</text></error></iq>"
        )

    def test_source_exception_is_other_error_and_logged(self) -> None:
        self.serve()
        self.tree.error = OSError("serial port gone")
        for number, inner in enumerate(
            [
                f"<getAllDataSources xmlns='{NS}'/>",
                f"<containsNode xmlns='{NS}' sourceId='{SRC}' nodeId='NCAP'/>",
                f"<getNode xmlns='{NS}' sourceId='{SRC}' nodeId='NCAP'/>",
                f"<getChildNodes xmlns='{NS}' sourceId='{SRC}' nodeId='NCAP'/>",
                f"<getAncestors xmlns='{NS}' sourceId='{SRC}' nodeId='NCAP'/>",
            ]
        ):
            with self.assertLogs("xep.xep_0326.concentrator", "ERROR") as logs:
                self.ask(inner, f"c{number}")
                tag = inner.split()[0][1:]
                self.expect(f"<{tag}Response xmlns='{NS}' result='OtherError'/>", f"c{number}")
            assert "serial port gone" in "\n".join(logs.output)

    def test_source_returning_garbage_is_other_error(self) -> None:
        self.serve()
        self.tree.root_nodes = lambda source_id: ["not a node"]  # type: ignore[method-assign]
        with self.assertLogs("xep.xep_0326.concentrator", "ERROR"):
            self.ask(f"<getRootNodes xmlns='{NS}' sourceId='{SRC}'/>")
            self.expect(f"<getRootNodesResponse xmlns='{NS}' result='OtherError'/>")

    def test_no_source_is_other_error_but_capabilities_work(self) -> None:
        self.plugin.authorize = allow
        self.ask(f"<getRootNodes xmlns='{NS}' sourceId='{SRC}'/>")
        self.expect(f"<getRootNodesResponse xmlns='{NS}' result='OtherError'/>")
        self.ask(f"<getCapabilities xmlns='{NS}'/>", "c2")
        self.wait_for_send_queue()
        assert b'result="OK"' in self.xmpp.socket.next_sent(1)

    def test_results_and_errors_in_our_namespace_are_not_answered(self) -> None:
        self.serve()
        self.ask(f"<getNodeResponse xmlns='{NS}' result='OK' nodeId='x'/>", itype="result")
        self.ask(f"<getNodeResponse xmlns='{NS}' result='NotFound'/>", "c2", itype="error")
        self.send(None)

    # -- client side -------------------------------------------------------------------------

    def call(self, method: str, *args: Any, **kwargs: Any) -> asyncio.Task[Any]:
        coro = getattr(self.plugin, method)("concentrator@example.org", *args, **kwargs)
        task = asyncio.get_event_loop().create_task(coro)
        self.wait_()
        return task

    def expect_request(self, inner: str, iq_id: str = "1") -> None:
        self.send(f"<iq type='get' to='concentrator@example.org' id='{iq_id}'>{inner}</iq>")

    def answer(self, inner: str, itype: str = "result", iq_id: str = "1") -> None:
        self.recv(
            f"<iq type='{itype}' from='concentrator@example.org' to='tester@localhost/resource' "
            f"id='{iq_id}'>{inner}</iq>"
        )

    def test_client_get_capabilities(self) -> None:
        task = self.call("get_capabilities")
        self.expect_request(f"<getCapabilities xmlns='{NS}'/>")
        self.answer(
            f"<getCapabilitiesResponse xmlns='{NS}' result='OK'><value>getNode</value>"
            "<value>getRootNodes</value></getCapabilitiesResponse>"
        )
        assert self.run_coro(task) == ("getNode", "getRootNodes")

    def test_client_get_root_nodes_fills_source_from_request(self) -> None:
        task = self.call("get_root_nodes", SRC, parameters=True)
        self.expect_request(f"<getRootNodes xmlns='{NS}' sourceId='{SRC}' parameters='true'/>")
        self.answer(
            f"<getRootNodesResponse xmlns='{NS}' result='OK'><node nodeId='NCAP' state='None' "
            "hasChildren='true'><string id='sn' name='SN' value='x'/></node></getRootNodesResponse>"
        )
        (node,) = self.run_coro(task)
        assert node == NodeInfo(
            "NCAP", SRC, has_children=True, parameters=(NodeParameter.string("sn", "SN", "x"),)
        )

    def test_client_get_node_and_child_nodes_and_ancestors(self) -> None:
        task = self.call("get_node", NodeRef("TIM-1", SRC), messages=True)
        self.expect_request(
            f"<getNode xmlns='{NS}' sourceId='{SRC}' nodeId='TIM-1' messages='true'/>"
        )
        self.answer(
            f"<getNodeResponse xmlns='{NS}' result='OK' nodeId='TIM-1' state='None' hasChildren='false'/>"
        )
        assert self.run_coro(task) == NodeInfo("TIM-1", SRC)

        task = self.call(
            "get_child_nodes", NodeRef("NCAP", SRC), sort_order=[SortOrder("addr", False)]
        )
        self.expect_request(
            f"<getChildNodes xmlns='{NS}' sourceId='{SRC}' nodeId='NCAP'>"
            "<sortOrder parameterName='addr' ascending='false'/></getChildNodes>",
            "2",
        )
        self.answer(
            f"<getChildNodesResponse xmlns='{NS}' result='OK'>{TIM1_XML}{TIM2_XML}</getChildNodesResponse>",
            iq_id="2",
        )
        assert [n.node_id for n in self.run_coro(task)] == ["TIM-1", "TIM-2"]

        task = self.call("get_ancestors", NodeRef("TIM-1", SRC))
        self.expect_request(f"<getAncestors xmlns='{NS}' sourceId='{SRC}' nodeId='TIM-1'/>", "3")
        self.answer(
            f"<getAncestorsResponse xmlns='{NS}' result='OK'>{TIM1_XML}{NCAP_XML}</getAncestorsResponse>",
            iq_id="3",
        )
        assert [n.node_id for n in self.run_coro(task)] == ["TIM-1", "NCAP"]

    def test_client_get_nodes_all_nodes_and_contains(self) -> None:
        task = self.call("get_nodes", [NodeRef("a", "S1"), NodeRef("b", "S2")])
        self.expect_request(
            f"<getNodes xmlns='{NS}'><node sourceId='S1' nodeId='a'/><node sourceId='S2' nodeId='b'/></getNodes>"
        )
        self.answer(
            f"<getNodesResponse xmlns='{NS}' result='OK'><node nodeId='a' state='None' hasChildren='false'/>"
            "<node nodeId='b' state='None' hasChildren='false'/></getNodesResponse>"
        )
        assert self.run_coro(task) == (NodeInfo("a", "S1"), NodeInfo("b", "S2"))

        task = self.call("get_all_nodes", SRC, only_if_derived_from=["Ncap.Tim"])
        self.expect_request(
            f"<getAllNodes xmlns='{NS}' sourceId='{SRC}'><onlyIfDerivedFrom>Ncap.Tim</onlyIfDerivedFrom></getAllNodes>",
            "2",
        )
        self.answer(f"<getAllNodesResponse xmlns='{NS}' result='OK'/>", iq_id="2")
        assert self.run_coro(task) == ()

        task = self.call("contains_node", NodeRef("a", SRC))
        self.expect_request(f"<containsNode xmlns='{NS}' sourceId='{SRC}' nodeId='a'/>", "3")
        self.answer(
            f"<containsNodeResponse xmlns='{NS}' result='OK'> 1 </containsNodeResponse>", iq_id="3"
        )
        assert self.run_coro(task) is True

        task = self.call("contains_nodes", [NodeRef("a", SRC), NodeRef("b", SRC)])
        self.expect_request(
            f"<containsNodes xmlns='{NS}'><node sourceId='{SRC}' nodeId='a'/><node sourceId='{SRC}' nodeId='b'/></containsNodes>",
            "4",
        )
        self.answer(
            f"<containsNodesResponse xmlns='{NS}' result='OK'><value>false</value></containsNodesResponse>",
            iq_id="4",
        )
        with pytest.raises(StanzaError, match="1 values for 2"):
            self.run_coro(task)

    def test_client_data_sources(self) -> None:
        task = self.call("get_all_data_sources")
        self.expect_request(f"<getAllDataSources xmlns='{NS}'/>")
        self.answer(
            f"<getAllDataSourcesResponse xmlns='{NS}' result='OK'><dataSource sourceId='{SRC}' "
            "name='Topology' hasChildren='false' lastChanged='2013-03-19T17:58:01Z'/></getAllDataSourcesResponse>"
        )
        assert self.run_coro(task) == (DataSource(SRC, "Topology", False, T1),)
        task = self.call("get_child_data_sources", SRC)
        self.expect_request(f"<getChildDataSources xmlns='{NS}' sourceId='{SRC}'/>", "2")
        self.answer(f"<getChildDataSourcesResponse xmlns='{NS}' result='NotFound'/>", iq_id="2")
        with pytest.raises(ConcentratorError) as info:
            self.run_coro(task)
        assert info.value.result_code is ResultCode.NOT_FOUND

    def test_client_response_inside_error_iq(self) -> None:
        task = self.call("get_node", NodeRef("x", SRC))
        self.expect_request(f"<getNode xmlns='{NS}' sourceId='{SRC}' nodeId='x'/>")
        self.answer(
            f"<getNodeResponse xmlns='{NS}' result='InsufficientPrivileges'/>", itype="error"
        )
        with pytest.raises(ConcentratorError) as info:
            self.run_coro(task)
        assert info.value.result_code is ResultCode.INSUFFICIENT_PRIVILEGES
        assert str(info.value) == "InsufficientPrivileges"

    def test_client_response_and_error_child_in_error_iq(self) -> None:
        task = self.call("get_root_nodes", SRC)
        self.expect_request(f"<getRootNodes xmlns='{NS}' sourceId='{SRC}'/>")
        self.answer(
            f"<getRootNodesResponse xmlns='{NS}' result='OtherError'/><error type='modify'>"
            "<bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
            "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>Nope.</text></error>",
            itype="error",
        )
        with pytest.raises(ConcentratorError) as info:
            self.run_coro(task)
        error = info.value
        assert (error.result_code, error.condition, error.text) == (
            ResultCode.OTHER_ERROR,
            "bad-request",
            "Nope.",
        )

    def test_client_plain_stanza_error_is_mapped(self) -> None:
        task = self.call("get_node", NodeRef("x", SRC))
        self.expect_request(f"<getNode xmlns='{NS}' sourceId='{SRC}' nodeId='x'/>")
        self.answer(
            "<error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>",
            itype="error",
        )
        with pytest.raises(ConcentratorError) as info:
            self.run_coro(task)
        assert (info.value.result_code, info.value.condition) == (
            ResultCode.NOT_FOUND,
            "item-not-found",
        )

    def test_client_not_implemented_in_result_iq(self) -> None:
        task = self.call("get_ancestors", NodeRef("x", SRC))
        self.expect_request(f"<getAncestors xmlns='{NS}' sourceId='{SRC}' nodeId='x'/>")
        self.answer(f"<getAncestorsResponse xmlns='{NS}' result='NotImplemented'/>")
        with pytest.raises(ConcentratorError) as info:
            self.run_coro(task)
        assert info.value.result_code is ResultCode.NOT_IMPLEMENTED

    def test_client_garbage_and_missing_response_raise_stanza_error(self) -> None:
        task = self.call("get_node", NodeRef("x", SRC))
        self.expect_request(f"<getNode xmlns='{NS}' sourceId='{SRC}' nodeId='x'/>")
        self.answer(f"<getNodeResponse xmlns='{NS}' result='OK' nodeId='x' state='Weird'/>")
        with pytest.raises(StanzaError, match="unknown node state"):
            self.run_coro(task)
        task = self.call("get_capabilities")
        self.expect_request(f"<getCapabilities xmlns='{NS}'/>", "2")
        self.answer("", iq_id="2")
        with pytest.raises(StanzaError, match="lacks <getCapabilitiesResponse>"):
            self.run_coro(task)

    def test_client_timeout(self) -> None:
        task = self.call("get_capabilities", timeout=0.05)
        self.expect_request(f"<getCapabilities xmlns='{NS}'/>")
        with pytest.raises(ConcentratorTimeout):
            self.run_coro(task)
        assert isinstance(task.exception(), TimeoutError)

    def test_client_refuses_refs_without_source_id(self) -> None:
        with pytest.raises(ValueError, match="source_id"):
            self.run_coro(self.plugin.get_node("concentrator@example.org", NodeRef("x")))
        self.send(None)

    def test_client_browses_own_thing_side_via_loopback(self) -> None:
        """Client side of this stream browses the thing side of the same stream."""
        self.serve()
        task = self.call("get_child_nodes", NodeRef("NCAP", SRC), parameters=True)
        self.wait_for_send_queue()
        sent = self.xmpp.socket.next_sent(1).decode()
        # Reflect our request as if a peer sent it (own id, so it cannot satisfy our own wait).
        self.recv(
            sent.replace('id="1"', 'id="r1"').replace(
                'to="concentrator@example.org"',
                'from="concentrator@example.org/c" to="tester@localhost/resource"',
            )
        )
        self.wait_for_send_queue()
        answer = self.xmpp.socket.next_sent(1).decode()
        self.recv(
            answer.replace('id="r1"', 'id="1"').replace(
                'to="concentrator@example.org/c"',
                'from="concentrator@example.org" to="tester@localhost/resource"',
            )
        )
        assert self.run_coro(task) == (replace(TIM1, messages=()), TIM2)
