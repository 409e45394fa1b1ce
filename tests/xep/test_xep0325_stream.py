"""The ``xep_0325_ncap`` plugin on slixmpp's in-memory test stream (no server).

``SlixTest.recv(xml)`` injects a stanza as if the server sent it; ``SlixTest.send(xml)`` asserts the
next stanza our client wrote. The client under test is ``tester@localhost/resource``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from slixmpp import JID
from slixmpp.test import SlixTest

import xep.xep_0325
from xep.errors import ControlError, ControlFailed, ControlLocked, ControlTimeout, StanzaError
from xep.xep_0325 import (
    ControlDecision,
    ControlForm,
    ControlParameter,
    ControlRequest,
    ControlValue,
    NodeRef,
    ParameterKind,
    SetResult,
)

NS = "urn:xmpp:iot:control"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
PEER = "master@example.org/amr"
ME = "tester@localhost/resource"

OUTPUT = ControlParameter("Output", ParameterKind.BOOLEAN, "false", label="Output")
ANALOG = ControlParameter("Output", ParameterKind.INT, "0", minimum="0", maximum="4095")
FADE = ControlParameter(
    "FadeTimeMilliseconds",
    ParameterKind.INT,
    "300",
    label="Fade Time (ms):",
    description="Time in milliseconds used to fade the light to the desired level.",
    minimum="0",
    maximum="4095",
)
PERCENT = ControlParameter(
    "OutputPercent", ParameterKind.INT, "100", label="Output (%):", minimum="0", maximum="100"
)
MODE = ControlParameter("Mode", ParameterKind.STRING, "Auto", options=("Auto", "Manual"))
SERIAL = ControlParameter("Serial", ParameterKind.STRING, "X1", read_only=True)
ANGLE = ControlParameter(
    "HorizontalAngle", ParameterKind.DOUBLE, "0", minimum="-180", maximum="180", group="direction"
)


class FakeTarget:
    """A ControlTarget with canned declarations; records every apply()."""

    def __init__(
        self,
        params: dict[str | None, Sequence[ControlParameter]],
        error: Exception | None = None,
        gate: asyncio.Event | None = None,
    ) -> None:
        self.params = params
        self.error = error
        self.gate = gate
        self.applied: list[tuple[str, tuple[NodeRef, ...], tuple[ControlValue, ...]]] = []
        self.started = 0

    def has_node(self, node: NodeRef) -> bool:
        return node.node_id in self.params

    def parameters(self, node: NodeRef | None) -> Sequence[ControlParameter]:
        return self.params[None if node is None else node.node_id]

    async def apply(
        self, requester: JID, nodes: tuple[NodeRef, ...], values: tuple[ControlValue, ...]
    ) -> None:
        self.started += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        self.applied.append((requester.full, nodes, values))


DIMMER = {None: [FADE, PERCENT, OUTPUT]}
CONCENTRATOR: dict[str | None, Sequence[ControlParameter]] = {
    "DigitalOutput1": [OUTPUT],
    "DigitalOutput2": [OUTPUT, MODE],
    "DigitalOutput3": [OUTPUT],
    "AnalogOutput1": [ANALOG],
}


async def allow(requester: JID, request: ControlRequest) -> ControlDecision:
    return ControlDecision(True)


async def deny(requester: JID, request: ControlRequest) -> ControlDecision:
    return ControlDecision(False)


async def explode(requester: JID, request: ControlRequest) -> ControlDecision:
    raise RuntimeError("provisioning server on fire")


async def yes(requester: JID, request: ControlRequest) -> bool:
    return True  # not a ControlDecision: must be treated as "deny"


def nodes_xml(*ids: str) -> str:
    return "".join(f"<node nodeId='{node_id}'/>" for node_id in ids)


class ControlStreamTest(SlixTest):
    def setUp(self) -> None:
        self.stream_start(mode="client", plugins=["xep_0030"])
        # The exact call the application makes:
        self.xmpp.register_plugin("xep_0325_ncap", module=xep.xep_0325)
        self.plugin = self.xmpp.plugin["xep_0325_ncap"]

    def tearDown(self) -> None:
        if "xep_0325_ncap" in self.xmpp.plugin:
            self.plugin.cancel_all()
        self.wait_()
        self.stream_close()

    def send(self, data: str | None, *args: object, **kwargs: object) -> None:  # type: ignore[override]
        # Our stanza classes are thin (attributes are not ``interfaces``): compare XML only.
        kwargs.setdefault("use_values", False)
        super().send(data, *args, **kwargs)  # type: ignore[arg-type]

    def iq_set(self, inner: str, iq_id: str = "1", attrs: str = "xml:lang='en'") -> None:
        self.recv(
            f"<iq type='set' from='{PEER}' to='{ME}' id='{iq_id}'>"
            f"<set xmlns='{NS}' {attrs}>{inner}</set></iq>"
        )

    def expect_result(self, inner: str = "", iq_id: str = "1") -> None:
        payload = f"<setResponse xmlns='{NS}'>{inner}</setResponse>"
        self.send(f"<iq type='result' to='{PEER}' id='{iq_id}'>{payload}</iq>")

    def expect_error(
        self,
        etype: str,
        condition: str,
        text: str,
        params: dict[str, str] | None = None,
        iq_id: str = "1",
    ) -> None:
        extra = "".join(
            f"<paramError xmlns='{NS}' var='{var}'>{var_text}</paramError>"
            for var, var_text in (params or {}).items()
        )
        self.send(
            f"<iq type='error' to='{PEER}' id='{iq_id}'><error type='{etype}'>"
            f"<{condition} xmlns='{STANZAS}'/><text xmlns='{STANZAS}'>{text}</text>{extra}"
            "</error></iq>"
        )


class TestThingSide(ControlStreamTest):
    def test_registered_under_own_name_with_disco_feature(self) -> None:
        assert isinstance(self.plugin, xep.xep_0325.XEP_0325)
        assert "xep_0325" not in self.xmpp.plugin  # slixmpp's own plugin stays unloaded
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

    def test_single_set_is_applied_and_acknowledged(self) -> None:
        seen: list[ControlRequest] = []

        async def record(requester: JID, request: ControlRequest) -> ControlDecision:
            seen.append(request)
            return ControlDecision(True)

        target = FakeTarget({None: [OUTPUT]})
        self.plugin.target = target
        self.plugin.authorize = record
        self.iq_set("<boolean name='Output' value=' true '/>")
        self.expect_result()
        assert target.applied == [(PEER, (), (ControlValue.boolean("Output", True),))]
        assert seen == [ControlRequest(values=(ControlValue.boolean("Output", True),), lang="en")]

    def test_values_applied_once_in_document_order(self) -> None:
        target = FakeTarget(DIMMER)
        self.plugin.target = target
        self.plugin.authorize = allow
        self.iq_set(
            "<int name='FadeTimeMilliseconds' value='500'/><int name='OutputPercent' value='10'/>"
            "<boolean name='Output' value='1'/>"
        )
        self.expect_result()
        ((_, nodes, values),) = target.applied
        assert nodes == ()
        assert [(v.name, v.value) for v in values] == [
            ("FadeTimeMilliseconds", "500"),
            ("OutputPercent", "10"),
            ("Output", "1"),
        ]

    def test_multi_node_all_or_nothing(self) -> None:
        target = FakeTarget(CONCENTRATOR)
        self.plugin.target = target
        self.plugin.authorize = allow
        self.iq_set(
            nodes_xml("DigitalOutput1", "DigitalOutput2", "AnalogOutput1")
            + "<boolean name='Output' value='true'/>"
        )
        self.expect_error(
            "modify",
            "bad-request",
            "Invalid control parameter value (node 'AnalogOutput1').",
            {"Output": "Invalid parameter type."},
        )
        assert target.applied == []
        assert target.started == 0
        # The same command to the digital outputs only goes through, once, to all of them.
        self.iq_set(
            nodes_xml("DigitalOutput1", "DigitalOutput2") + "<boolean name='Output' value='true'/>",
            iq_id="2",
        )
        self.expect_result(iq_id="2")
        assert target.applied == [
            (
                PEER,
                (NodeRef("DigitalOutput1"), NodeRef("DigitalOutput2")),
                (ControlValue.boolean("Output", True),),
            )
        ]

    def test_unknown_parameter_is_item_not_found(self) -> None:
        target = FakeTarget(DIMMER)
        self.plugin.target = target
        self.plugin.authorize = allow
        self.iq_set("<int name='OutputPercent' value='10'/><int name='Nope' value='1'/>")
        self.expect_error(
            "cancel",
            "item-not-found",
            "Unknown control parameter.",
            {"Nope": "Parameter not found."},
        )
        assert target.applied == []

    def test_every_offending_parameter_is_listed(self) -> None:
        target = FakeTarget({None: [FADE, PERCENT, MODE, SERIAL, ANGLE]})
        self.plugin.target = target
        self.plugin.authorize = allow
        self.iq_set(
            "<int name='FadeTimeMilliseconds' value='500'/>"  # fine
            "<int name='OutputPercent' value='200'/>"
            "<string name='Mode' value='Turbo'/>"
            "<string name='Serial' value='X2'/>"
            "<double name='HorizontalAngle' value='NaN'/>"
        )
        self.expect_error(
            "modify",
            "bad-request",
            "Invalid control parameter value.",
            {
                "OutputPercent": "Value out of range.",
                "Mode": "Value is not one of the allowed options.",
                "Serial": "Parameter is read-only.",
                "HorizontalAngle": "Value out of range.",
            },
        )
        assert target.applied == []

    def test_unknown_node_is_item_not_found(self) -> None:
        target = FakeTarget(CONCENTRATOR)
        self.plugin.target = target
        self.plugin.authorize = allow
        self.iq_set(nodes_xml("DigitalOutput1", "Nope") + "<boolean name='Output' value='1'/>")
        self.expect_error("cancel", "item-not-found", "Unknown node 'Nope'.")
        assert target.applied == []

    def test_forbidden_applies_nothing(self) -> None:
        target = FakeTarget({None: [OUTPUT]})
        self.plugin.target = target
        for iq_id, authorizer in enumerate((None, deny, explode, yes)):
            if authorizer is not None:
                self.plugin.authorize = authorizer  # None: the default, which fails closed
            self.iq_set("<boolean name='Output' value='true'/>", iq_id=str(iq_id))
            self.expect_error("cancel", "forbidden", "Control not permitted.", iq_id=str(iq_id))
        assert target.applied == []

    def test_malformed_set_is_bad_request(self) -> None:
        self.plugin.target = FakeTarget({None: [ANALOG]})
        self.plugin.authorize = allow
        self.iq_set("<int name='Output' value='2147483648'/>")
        self.expect_error(
            "modify", "bad-request", "parameter 'Output': 2147483648 is out of range for int"
        )

    def test_no_target_is_service_unavailable(self) -> None:
        self.plugin.authorize = allow
        self.iq_set("<boolean name='Output' value='true'/>")
        self.expect_error("cancel", "service-unavailable", "No control target.")

    def test_narrowed_nodes_are_listed_in_set_response(self) -> None:
        async def some_nodes(requester: JID, request: ControlRequest) -> ControlDecision:
            return ControlDecision(
                True, nodes=(NodeRef("DigitalOutput2"), NodeRef("DigitalOutput3"))
            )

        target = FakeTarget(CONCENTRATOR)
        self.plugin.target = target
        self.plugin.authorize = some_nodes
        self.iq_set(
            nodes_xml("DigitalOutput1", "DigitalOutput2", "DigitalOutput3")
            + "<boolean name='Output' value='false'/>",
            iq_id="19",
        )
        self.expect_result(
            nodes_xml("DigitalOutput2", "DigitalOutput3") + "<parameter name='Output'/>", iq_id="19"
        )
        assert target.applied[0][1] == (NodeRef("DigitalOutput2"), NodeRef("DigitalOutput3"))

    def test_narrowed_parameters_are_listed_and_the_rest_is_not_applied(self) -> None:
        async def only_percent(requester: JID, request: ControlRequest) -> ControlDecision:
            return ControlDecision(True, parameters=("OutputPercent",))

        target = FakeTarget(DIMMER)
        self.plugin.target = target
        self.plugin.authorize = only_percent
        self.iq_set(
            "<int name='FadeTimeMilliseconds' value='500'/><int name='OutputPercent' value='10'/>"
        )
        self.expect_result("<parameter name='OutputPercent'/>")
        assert target.applied == [(PEER, (), (ControlValue.integer("OutputPercent", 10),))]
        # Narrowed to nothing at all is a refusal.
        self.iq_set("<int name='FadeTimeMilliseconds' value='500'/>", iq_id="2")
        self.expect_error("cancel", "forbidden", "Control not permitted.", iq_id="2")

    def test_message_set_is_applied_without_any_reply(self) -> None:
        target = FakeTarget(CONCENTRATOR)
        self.plugin.target = target
        self.plugin.authorize = allow
        self.recv(
            f"<message from='{PEER}' to='{ME}'><set xmlns='{NS}'>"
            f"{nodes_xml('DigitalOutput1')}<boolean name='Output' value='false'/></set></message>"
        )
        self.wait_()
        self.send(None)
        assert target.applied == [
            (PEER, (NodeRef("DigitalOutput1"),), (ControlValue.boolean("Output", False),))
        ]

    def test_failing_message_set_is_silent_and_applies_nothing(self) -> None:
        target = FakeTarget(CONCENTRATOR)
        self.plugin.target = target
        self.plugin.authorize = allow
        for inner in (
            nodes_xml("AnalogOutput1") + "<boolean name='Output' value='false'/>",  # wrong type
            nodes_xml("Nope") + "<boolean name='Output' value='false'/>",  # unknown node
            "<bogus/>",  # malformed
        ):
            self.recv(f"<message from='{PEER}' to='{ME}'><set xmlns='{NS}'>{inner}</set></message>")
        self.plugin.authorize = deny
        self.recv(
            f"<message from='{PEER}' to='{ME}'><set xmlns='{NS}'>"
            f"{nodes_xml('DigitalOutput1')}<boolean name='Output' value='false'/></set></message>"
        )
        self.wait_()
        self.send(None)
        assert target.applied == []

    def test_form_submit_is_applied_with_declared_types(self) -> None:
        target = FakeTarget(DIMMER)
        self.plugin.target = target
        self.plugin.authorize = allow
        self.iq_set(
            "<x type='submit' xmlns='jabber:x:data'>"
            "<field var='xdd session' type='hidden'><value>325ED0F3</value></field>"
            "<field var='FadeTimeMilliseconds' type='text-single'><value>500</value></field>"
            "<field var='OutputPercent' type='text-single'><value>10</value></field>"
            "</x>",
            iq_id="5",
        )
        self.expect_result(iq_id="5")
        assert target.applied == [
            (
                PEER,
                (),
                (
                    ControlValue.integer("FadeTimeMilliseconds", 500),
                    ControlValue.integer("OutputPercent", 10),
                ),
            )
        ]

    def test_form_submit_with_bad_value_is_rejected(self) -> None:
        target = FakeTarget(DIMMER)
        self.plugin.target = target
        self.plugin.authorize = allow
        self.iq_set(
            "<x type='submit' xmlns='jabber:x:data'>"
            "<field var='FadeTimeMilliseconds'><value>500</value></field>"
            "<field var='OutputPercent'><value>200</value></field>"
            "<field var='Output'><value>maybe</value></field>"
            "</x>",
            iq_id="6",
        )
        self.expect_error(
            "modify",
            "bad-request",
            "Invalid control parameter value.",
            {"OutputPercent": "Value out of range.", "Output": "Invalid parameter value."},
            iq_id="6",
        )
        assert target.applied == []

    def test_form_submit_to_nodes_with_different_types_is_rejected(self) -> None:
        target = FakeTarget(CONCENTRATOR)
        self.plugin.target = target
        self.plugin.authorize = allow
        self.iq_set(
            nodes_xml("DigitalOutput1", "AnalogOutput1") + "<x type='submit' xmlns='jabber:x:data'>"
            "<field var='Output' type='boolean'><value>true</value></field></x>",
            iq_id="11",
        )
        self.expect_error(
            "modify",
            "bad-request",
            "Invalid control parameter value (node 'AnalogOutput1').",
            {"Output": "Invalid parameter type."},
            iq_id="11",
        )

    def test_empty_form_submit_changes_nothing(self) -> None:
        target = FakeTarget(DIMMER)
        self.plugin.target = target
        self.plugin.authorize = allow
        self.iq_set(
            "<x type='submit' xmlns='jabber:x:data'>"
            "<field var='xdd session' type='hidden'><value>s</value></field></x>"
        )
        self.expect_result()
        assert target.started == 0

    def test_apply_failures_become_errors_and_the_plugin_keeps_answering(self) -> None:
        target = FakeTarget({None: [OUTPUT]})
        self.plugin.target = target
        self.plugin.authorize = allow
        cases = [
            (
                ControlFailed("Relay did not switch.", parameter="Output"),
                ("cancel", "internal-server-error", "Relay did not switch."),
                {"Output": "Relay did not switch."},
            ),
            (
                ControlLocked("Locked by the local panel."),
                ("wait", "conflict", "Locked by the local panel."),
                None,
            ),
            (
                OSError("serial port gone"),
                ("cancel", "internal-server-error", "Control action failed: internal error."),
                None,
            ),
        ]
        for number, (error, (etype, condition, text), params) in enumerate(cases):
            target.error = error
            self.iq_set("<boolean name='Output' value='true'/>", iq_id=str(number))
            self.expect_error(etype, condition, text, params, iq_id=str(number))
        target.error = None
        self.iq_set("<boolean name='Output' value='true'/>", iq_id="ok")
        self.expect_result(iq_id="ok")
        assert len(target.applied) == 1
        assert self.plugin.pending == 0

    def test_requests_of_one_requester_are_serialized_and_bounded(self) -> None:
        self.plugin._per_requester_limit = 2
        target = FakeTarget({None: [OUTPUT]}, gate=asyncio.Event())
        self.plugin.target = target
        self.plugin.authorize = allow
        self.iq_set("<boolean name='Output' value='true'/>", iq_id="a")
        self.iq_set("<boolean name='Output' value='false'/>", iq_id="b")
        self.iq_set("<boolean name='Output' value='true'/>", iq_id="c")
        self.expect_error(
            "wait", "resource-constraint", "Too many concurrent control requests.", iq_id="c"
        )
        self.wait_()
        assert target.started == 1  # the second waits for the first
        assert target.gate is not None
        target.gate.set()
        self.expect_result(iq_id="a")
        self.expect_result(iq_id="b")
        assert [values[0].value for _, _, values in target.applied] == ["true", "false"]

    def test_plugin_end_and_session_end_cancel_pending_requests(self) -> None:
        target = FakeTarget({None: [OUTPUT]}, gate=asyncio.Event())
        self.plugin.target = target
        self.plugin.authorize = allow
        self.iq_set("<boolean name='Output' value='true'/>", iq_id="a")
        self.wait_()
        assert self.plugin.pending == 1
        self.xmpp.event("session_end")
        self.wait_()
        assert self.plugin.pending == 0
        self.iq_set("<boolean name='Output' value='true'/>", iq_id="b")
        self.wait_()
        self.xmpp.plugin.disable("xep_0325_ncap")
        self.wait_()
        assert "xep_0325_ncap" not in self.xmpp.plugin
        assert target.applied == []

    # -- getForm ----------------------------------------------------------------------------

    def get_form(self, inner: str = "", iq_id: str = "3") -> None:
        self.recv(
            f"<iq type='get' from='{PEER}' to='{ME}' id='{iq_id}'>"
            f"<getForm xmlns='{NS}' xml:lang='en'>{inner}</getForm></iq>"
        )

    def test_get_form_single(self) -> None:
        self.plugin.target = FakeTarget({None: [FADE, OUTPUT, MODE, SERIAL, ANGLE]})
        self.plugin.authorize = allow
        self.get_form()
        xdv = "http://jabber.org/protocol/xdata-validate"
        xdd = "urn:xmpp:xdata:dynamic"
        self.send(
            f"<iq type='result' to='{PEER}' id='3'><x xmlns='jabber:x:data' type='form'>"
            "<title>Control</title>"
            "<field var='FadeTimeMilliseconds' type='text-single' label='Fade Time (ms):'>"
            "<desc>Time in milliseconds used to fade the light to the desired level.</desc>"
            f"<value>300</value><validate xmlns='{xdv}' datatype='xs:int'>"
            "<range min='0' max='4095'/></validate>"
            f"<notSame xmlns='{xdd}'/></field>"
            "<field var='Output' type='boolean' label='Output'><value>false</value>"
            f"<validate xmlns='{xdv}' datatype='xs:boolean'/><notSame xmlns='{xdd}'/></field>"
            "<field var='Mode' type='list-single'><value>Auto</value>"
            "<option label='Auto'><value>Auto</value></option>"
            "<option label='Manual'><value>Manual</value></option>"
            f"<validate xmlns='{xdv}' datatype='xs:string'/><notSame xmlns='{xdd}'/></field>"
            "<field var='Serial' type='text-single'><value>X1</value>"
            f"<validate xmlns='{xdv}' datatype='xs:string'/><notSame xmlns='{xdd}'/>"
            f"<readOnly xmlns='{xdd}'/></field>"
            "<field var='HorizontalAngle' type='text-single'><value>0</value>"
            f"<validate xmlns='{xdv}' datatype='xs:double'><range min='-180' max='180'/>"
            f"</validate><notSame xmlns='{xdd}'/>"
            f"<parameterGroup xmlns='{NS}' name='direction'/></field>"
            "</x></iq>"
        )

    def test_get_form_multi_node_has_common_parameters_only(self) -> None:
        self.plugin.target = FakeTarget(CONCENTRATOR)
        self.plugin.authorize = allow
        self.get_form(nodes_xml("DigitalOutput1", "DigitalOutput2"), iq_id="8")
        self.send(
            f"<iq type='result' to='{PEER}' id='8'><x xmlns='jabber:x:data' type='form'>"
            "<title>DigitalOutput1, DigitalOutput2</title>"
            "<field var='Output' type='boolean' label='Output'><value>false</value>"
            "<validate xmlns='http://jabber.org/protocol/xdata-validate' datatype='xs:boolean'/>"
            "<notSame xmlns='urn:xmpp:xdata:dynamic'/></field></x></iq>"
        )
        # Nothing in common: an empty form, not an error.
        self.get_form(nodes_xml("DigitalOutput1", "AnalogOutput1"), iq_id="9")
        self.send(
            f"<iq type='result' to='{PEER}' id='9'><x xmlns='jabber:x:data' type='form'>"
            "<title>DigitalOutput1, AnalogOutput1</title></x></iq>"
        )

    def test_get_form_errors(self) -> None:
        self.plugin.target = FakeTarget(CONCENTRATOR)
        self.get_form(iq_id="4")
        self.expect_error("cancel", "forbidden", "Control not permitted.", iq_id="4")
        self.plugin.authorize = allow
        self.get_form(nodes_xml("Nope"), iq_id="5")
        self.expect_error("cancel", "item-not-found", "Unknown node 'Nope'.", iq_id="5")

    def test_get_form_honours_parameter_narrowing(self) -> None:
        async def only_output(requester: JID, request: ControlRequest) -> ControlDecision:
            return ControlDecision(True, parameters=("Output",))

        self.plugin.target = FakeTarget(DIMMER)
        self.plugin.authorize = only_output
        self.get_form()
        self.send(
            f"<iq type='result' to='{PEER}' id='3'><x xmlns='jabber:x:data' type='form'>"
            "<title>Control</title>"
            "<field var='Output' type='boolean' label='Output'><value>false</value>"
            "<validate xmlns='http://jabber.org/protocol/xdata-validate' datatype='xs:boolean'/>"
            "<notSame xmlns='urn:xmpp:xdata:dynamic'/></field></x></iq>"
        )


class TestClientSide(ControlStreamTest):
    DEVICE = "dimmer@example.org"

    def start(self, coro: object) -> asyncio.Task[object]:
        task = asyncio.get_event_loop().create_task(coro)  # type: ignore[arg-type]
        self.wait_()
        return task

    def answer(self, payload: str, iq_type: str = "result", iq_id: str = "1") -> None:
        self.recv(
            f"<iq type='{iq_type}' from='{self.DEVICE}' to='{ME}' id='{iq_id}'>{payload}</iq>"
        )

    def test_set_sends_typed_values_and_returns_result(self) -> None:
        values = [
            ControlValue.integer("FadeTimeMilliseconds", 500),
            ControlValue.color("C", 51, 153, 255),
        ]
        task = self.start(self.plugin.set(self.DEVICE, values))
        self.send(
            f"<iq type='set' to='{self.DEVICE}' id='1'><set xmlns='{NS}'>"
            "<int name='FadeTimeMilliseconds' value='500'/><color name='C' value='3399FF'/>"
            "</set></iq>"
        )
        self.answer(f"<setResponse xmlns='{NS}'/>")
        assert self.run_coro(task) == SetResult((), ("FadeTimeMilliseconds", "C"), False)

    def test_set_narrowed_response_with_legacy_response_code(self) -> None:
        nodes = [NodeRef(f"DigitalOutput{i}") for i in (1, 2, 3)]
        task = self.start(
            self.plugin.set(self.DEVICE, [ControlValue.boolean("Output", False)], nodes=nodes)
        )
        self.send(
            f"<iq type='set' to='{self.DEVICE}' id='1'><set xmlns='{NS}'>"
            f"{nodes_xml('DigitalOutput1', 'DigitalOutput2', 'DigitalOutput3')}"
            "<boolean name='Output' value='false'/></set></iq>"
        )
        self.answer(
            f"<setResponse xmlns='{NS}' responseCode='OK'>"
            f"{nodes_xml('DigitalOutput2', 'DigitalOutput3')}</setResponse>"
        )
        assert self.run_coro(task) == SetResult(tuple(nodes[1:]), ("Output",), True)

    def test_set_error_carries_param_errors(self) -> None:
        task = self.start(self.plugin.set(self.DEVICE, [ControlValue.boolean("Output", True)]))
        self.answer(
            "<error type='modify'>"
            f"<bad-request xmlns='{STANZAS}'/>"
            f"<paramError xmlns='{NS}' var='Output'>Invalid parameter type.</paramError>"
            "</error>",
            iq_type="error",
        )
        with pytest.raises(ControlError) as info:
            self.run_coro(task)
        err = info.value
        assert (err.condition, err.error_type, err.text) == ("bad-request", "modify", "")
        assert err.param_errors == {"Output": "Invalid parameter type."}

    def test_set_legacy_error_response_code(self) -> None:
        task = self.start(self.plugin.set(self.DEVICE, [ControlValue.boolean("Output", True)]))
        self.answer(
            f"<setResponse xmlns='{NS}' responseCode='InsufficientPrivileges'/>", iq_type="error"
        )
        with pytest.raises(ControlError) as info:
            self.run_coro(task)
        assert (info.value.condition, info.value.text) == ("forbidden", "InsufficientPrivileges")

    def test_set_legacy_failure_in_result(self) -> None:
        task = self.start(self.plugin.set(self.DEVICE, [ControlValue.boolean("Output", True)]))
        self.answer(f"<setResponse xmlns='{NS}' responseCode='Locked'/>")
        with pytest.raises(ControlError, match="conflict"):
            self.run_coro(task)

    def test_set_timeout(self) -> None:
        task = self.start(
            self.plugin.set(self.DEVICE, [ControlValue.boolean("Output", True)], timeout=0.05)
        )
        with pytest.raises(ControlTimeout):
            self.run_coro(task)
        assert isinstance(task.exception(), TimeoutError)

    def test_bare_result_is_an_acknowledgement(self) -> None:
        task = self.start(self.plugin.set(self.DEVICE, [ControlValue.boolean("Output", True)]))
        self.answer("")
        assert self.run_coro(task) == SetResult((), ("Output",), False)

    def test_send_set_message(self) -> None:
        self.plugin.send_set_message(
            "concentrator@example.org",
            [ControlValue.boolean("Output", False)],
            nodes=[NodeRef("DigitalOutput1")],
        )
        self.send(
            f"<message to='concentrator@example.org'><set xmlns='{NS}'>"
            "<node nodeId='DigitalOutput1'/><boolean name='Output' value='false'/></set></message>"
        )

    def test_get_form_parses_parameters(self) -> None:
        task = self.start(self.plugin.get_form(self.DEVICE))
        self.send(f"<iq type='get' to='{self.DEVICE}' id='1'><getForm xmlns='{NS}'/></iq>")
        # The spec's dimmer form (XEP-0325 example "Getting a control form"), prefixes declared.
        self.answer(
            "<x type='form' xmlns='jabber:x:data'"
            " xmlns:xdv='http://jabber.org/protocol/xdata-validate'"
            " xmlns:xdl='http://jabber.org/protocol/xdata-layout'"
            " xmlns:xdd='urn:xmpp:xdata:dynamic'>"
            "<title>Dimmer</title>"
            "<xdl:page label='Output'><xdl:fieldref var='FadeTimeMilliseconds'/></xdl:page>"
            "<field var='xdd session' type='hidden'><value>325ED0F3</value></field>"
            "<field var='FadeTimeMilliseconds' type='text-single' label='Fade Time (ms):'>"
            "<desc>Time in milliseconds used to fade the light to the desired level.</desc>"
            "<value>300</value><xdv:validate datatype='xs:int'><xdv:range min='0' max='4095'/>"
            "</xdv:validate><xdd:notSame/></field>"
            "<field var='MainSwitch' type='boolean' label='Main switch'>"
            "<desc>If the dimmer is turned on or off.</desc><value>true</value><xdd:notSame/>"
            "</field></x>"
        )
        form = self.run_coro(task)
        assert form == ControlForm(
            (
                FADE,
                ControlParameter(
                    "MainSwitch",
                    ParameterKind.BOOLEAN,
                    "true",
                    label="Main switch",
                    description="If the dimmer is turned on or off.",
                ),
            ),
            title="Dimmer",
            session="325ED0F3",
        )

    def test_get_form_without_form_is_stanza_error(self) -> None:
        task = self.start(self.plugin.get_form(self.DEVICE, nodes=[NodeRef("n")]))
        self.send(
            f"<iq type='get' to='{self.DEVICE}' id='1'><getForm xmlns='{NS}'>"
            "<node nodeId='n'/></getForm></iq>"
        )
        self.answer("")
        with pytest.raises(StanzaError, match="no data form"):
            self.run_coro(task)

    def test_submit_form(self) -> None:
        task = self.start(
            self.plugin.submit_form(
                self.DEVICE, {"FadeTimeMilliseconds": "500", "OutputPercent": "10"}, session="S1"
            )
        )
        self.send(
            f"<iq type='set' to='{self.DEVICE}' id='1'><set xmlns='{NS}'>"
            "<x xmlns='jabber:x:data' type='submit'>"
            "<field var='xdd session' type='hidden'><value>S1</value></field>"
            "<field var='FadeTimeMilliseconds'><value>500</value></field>"
            "<field var='OutputPercent'><value>10</value></field></x></set></iq>"
        )
        self.answer(f"<setResponse xmlns='{NS}'/>")
        assert self.run_coro(task) == SetResult((), ("FadeTimeMilliseconds", "OutputPercent"))

    def test_loopback_get_form_then_submit(self) -> None:
        """The client side of this stream controls the thing side of the same stream."""
        target = FakeTarget(DIMMER)
        self.plugin.target = target
        self.plugin.authorize = allow

        def reflect() -> None:
            self.wait_for_send_queue()
            sent = self.xmpp.socket.next_sent(1).decode()
            # Requests and answers both appear to come from the (bare) device JID, the only
            # sender slixmpp accepts for an IQ answer to a bare JID.
            self.recv(sent.replace(f'to="{self.DEVICE}"', f'from="{self.DEVICE}" to="{ME}"'))

        task = self.start(self.plugin.get_form(self.DEVICE))
        reflect()  # request in
        reflect()  # form back
        form = self.run_coro(task)
        assert form.parameters == (FADE, PERCENT, OUTPUT)
        task = self.start(self.plugin.submit_form(self.DEVICE, {"OutputPercent": "42"}))
        reflect()
        reflect()
        assert self.run_coro(task) == SetResult((), ("OutputPercent",))
        assert target.applied == [(self.DEVICE, (), (ControlValue.integer("OutputPercent", 42),))]
