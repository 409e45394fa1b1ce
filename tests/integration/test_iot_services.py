"""XEP-0323/0325/0326 and IoT events between two clients through the real Prosody:
the thing (the NCAP with a simulated environment sensor and relay) and its owner."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from slixmpp import JID

from integration.conftest import TIMEOUT, Rig
from ncap.app import Gateway
from ncap.xmpp.connection import SecureClient
from ncap.xmpp.services import SOURCE_ID
from xep.dialect import IEEE, XSF
from xep.errors import ConcentratorError, ControlError, ReadoutError, SubscriptionError
from xep.iot_events.model import FieldTrigger
from xep.xep_0323.model import FieldType, NodeRef
from xep.xep_0325.model import ControlValue
from xep.xep_0326.model import NodeState, ResultCode

pytestmark = pytest.mark.integration


def _thing(gateway: Gateway) -> JID:
    return gateway.client.boundjid


def _node(node_id: str) -> NodeRef:
    return NodeRef(node_id, SOURCE_ID)


async def test_readout_of_one_channel_node(gateway: Gateway, owner: SecureClient) -> None:
    readout = await owner.sensordata.request_readout(
        _thing(gateway), nodes=[NodeRef("env-sensor/temperature")], timeout=TIMEOUT
    )
    (node,) = readout.fields
    assert node.node.node_id == "env-sensor/temperature"
    assert [(f.name, f.unit) for f in node.fields] == [("temperature", "°C")]


async def test_ieee_dialect_readout_is_negotiated_and_served(
    gateway: Gateway, owner: SecureClient
) -> None:
    thing = _thing(gateway)
    info = await owner.plugin["xep_0030"].get_info(jid=thing, timeout=TIMEOUT)
    features = set(info["disco_info"]["features"])
    assert {XSF.sensordata.namespace, IEEE.sensordata.namespace} <= features
    readout = await owner.sensordata.request_readout(
        thing,
        nodes=[NodeRef("env-sensor")],
        field_names=["pressure"],
        dialect=IEEE,
        timeout=TIMEOUT,
    )
    assert [f.name for node in readout.fields for f in node.fields] == ["pressure"]


async def test_parallel_sessions_from_one_and_several_requesters(
    rig: Rig, gateway: Gateway, owner: SecureClient
) -> None:
    friend = await asyncio.to_thread(rig.prosody.register, "second")
    await asyncio.to_thread(rig.prosody.make_friends, rig.thing, friend)
    second = rig.client(friend)
    await second.start(TIMEOUT)
    try:
        thing = _thing(gateway)
        readouts = await asyncio.gather(
            *(owner.sensordata.request_readout(thing, timeout=TIMEOUT) for _ in range(4)),
            *(second.sensordata.request_readout(thing, timeout=TIMEOUT) for _ in range(4)),
        )
    finally:
        await second.disconnect(wait=1.0)
    assert len({r.seqnr for r in readouts[:4]}) == 4
    for readout in readouts:
        assert readout.failures == ()
        assert {n.node.node_id for n in readout.fields} == {"env-sensor", "relay"}


async def test_cancel_is_answered_and_the_thing_keeps_serving(
    gateway: Gateway, owner: SecureClient
) -> None:
    thing = _thing(gateway)
    readout = asyncio.ensure_future(owner.sensordata.request_readout(thing, timeout=TIMEOUT))
    await asyncio.sleep(0)  # let the request leave, then give up on it
    readout.cancel()
    with pytest.raises(asyncio.CancelledError):
        await readout
    again = await owner.sensordata.request_readout(thing, timeout=TIMEOUT)
    assert again.fields


async def test_historical_readout_is_answered_without_data(
    gateway: Gateway, owner: SecureClient
) -> None:
    now = datetime.now(UTC)
    readout = await owner.sensordata.request_readout(
        _thing(gateway),
        types=FieldType.HISTORICAL,
        from_time=now - timedelta(hours=1),
        to_time=now,
        timeout=TIMEOUT,
    )
    assert readout.fields == ()
    assert readout.failures == ()


async def _relay_value(owner: SecureClient, gateway: Gateway) -> str | None:
    readout = await owner.sensordata.request_readout(
        _thing(gateway), nodes=[NodeRef("relay/relay")], timeout=TIMEOUT
    )
    return next((f.value for n in readout.fields for f in n.fields if f.name == "relay"), None)


async def test_control_sets_the_relay(gateway: Gateway, owner: SecureClient) -> None:
    result = await owner.control.set(
        _thing(gateway),
        [ControlValue.boolean("relay", True)],
        nodes=[_node("relay/relay")],
        timeout=TIMEOUT,
    )
    assert not result.narrowed
    assert await _relay_value(owner, gateway) == "1"
    form = await owner.control.get_form(_thing(gateway), nodes=[_node("relay")], timeout=TIMEOUT)
    assert form.find("relay") is not None


async def test_control_is_all_or_nothing(gateway: Gateway, owner: SecureClient) -> None:
    thing = _thing(gateway)
    await owner.control.set(
        thing, [ControlValue.boolean("relay", True)], nodes=[_node("relay")], timeout=TIMEOUT
    )
    # The temperature channel has no 'relay' parameter: nothing may be applied anywhere.
    with pytest.raises(ControlError) as refused:
        await owner.control.set(
            thing,
            [ControlValue.boolean("relay", False)],
            nodes=[_node("relay"), _node("env-sensor/temperature")],
            timeout=TIMEOUT,
        )
    assert refused.value.condition == "item-not-found"
    assert "relay" in refused.value.param_errors
    assert await _relay_value(owner, gateway) == "1"


async def test_subscription_pushes_on_change(gateway: Gateway, owner: SecureClient) -> None:
    thing = _thing(gateway)
    subscription = await owner.events.subscribe(
        thing,
        nodes=[_node("relay")],
        fields=[FieldTrigger("relay")],
        initial_readout=False,
        timeout=TIMEOUT,
    )
    try:
        for wanted in (True, False):
            await owner.control.set(
                thing,
                [ControlValue.boolean("relay", wanted)],
                nodes=[_node("relay")],
                timeout=TIMEOUT,
            )
            pushed = await subscription.next(TIMEOUT)
            while (value := _value(pushed, "relay")) != ("1" if wanted else "0"):
                pushed = await subscription.next(TIMEOUT)  # an older value still in flight
            assert value == ("1" if wanted else "0")
            assert {f.name for f in pushed.fields} == {"relay"}
    finally:
        await subscription.cancel(TIMEOUT)


def _value(fields: object, name: str) -> str | None:
    return next((f.value for f in fields.fields if f.name == name), None)  # type: ignore[attr-defined]


async def test_browse_the_concentrator_tree(gateway: Gateway, owner: SecureClient) -> None:
    thing = _thing(gateway)
    concentrator = owner.concentrator
    (root,) = await concentrator.get_root_nodes(thing, SOURCE_ID, timeout=TIMEOUT)
    assert root.node_id == "demo"
    tims = await concentrator.get_child_nodes(thing, root.ref, timeout=TIMEOUT)
    assert [t.node_id for t in tims] == ["env-sensor", "relay"]
    assert all(t.state is NodeState.NONE and t.parent_id == "demo" for t in tims)
    channels = await concentrator.get_child_nodes(thing, _node("relay"), timeout=TIMEOUT)
    assert {c.node_id: c.is_controllable for c in channels} == {
        "relay/relay": True,
        "relay/coil-current": False,
    }
    temperature = await concentrator.get_node(
        thing, _node("env-sensor/temperature"), parameters=True, timeout=TIMEOUT
    )
    assert temperature.parameter("unit").value == "°C"
    chain = await concentrator.get_ancestors(
        thing, _node("env-sensor/temperature"), timeout=TIMEOUT
    )
    assert [n.node_id for n in chain] == ["env-sensor/temperature", "env-sensor", "demo"]
    assert await concentrator.contains_node(thing, _node("relay/coil-current"), timeout=TIMEOUT)
    assert not await concentrator.contains_node(thing, _node("relay/nope"), timeout=TIMEOUT)


async def test_a_stranger_gets_none_of_it(gateway: Gateway, stranger: SecureClient) -> None:
    thing = _thing(gateway)
    with pytest.raises(ReadoutError, match="forbidden"):
        await stranger.sensordata.request_readout(thing, timeout=TIMEOUT)
    with pytest.raises(ControlError) as control:
        await stranger.control.set(
            thing, [ControlValue.boolean("relay", True)], nodes=[_node("relay")], timeout=TIMEOUT
        )
    assert control.value.condition == "forbidden"
    with pytest.raises(ConcentratorError) as browse:
        await stranger.concentrator.get_root_nodes(thing, SOURCE_ID, timeout=TIMEOUT)
    assert browse.value.result_code is ResultCode.INSUFFICIENT_PRIVILEGES
    with pytest.raises(SubscriptionError) as subscribe:
        await stranger.events.subscribe(thing, nodes=[_node("relay")], timeout=TIMEOUT)
    assert subscribe.value.condition == "forbidden"
