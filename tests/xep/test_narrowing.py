"""Narrowing a request to what a provisioning authority allowed (XEP-0324 ``canReadResponse``).

``narrow_request`` (XEP-0323 read-outs) and the IoT-Events helper ``_narrowed`` that applies the
narrowed read-out request to a subscription. Tables of cases plus hypothesis properties: a
narrowing never widens, and keeps everything both the request and the authority cover.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xep.iot_events.events import _narrowed
from xep.iot_events.model import FieldTrigger, SubscribeRequest
from xep.xep_0323.model import FieldType, NodeRef, ReadoutRequest, narrow_request

D2, D3, D4 = NodeRef("Device02"), NodeRef("Device03"), NodeRef("Device04")
D2_S1, D2_S2 = NodeRef("Device02", "S1"), NodeRef("Device02", "S2")
D2_S1_C = NodeRef("Device02", "S1", "C")
D2_C = NodeRef("Device02", None, "C")


def req(nodes: tuple[NodeRef, ...] = (), fields: tuple[str, ...] = ()) -> ReadoutRequest:
    return ReadoutRequest(seqnr=7, types=FieldType.MOMENTARY, nodes=nodes, field_names=fields)


Nodes = tuple[NodeRef, ...] | None
Names = tuple[str, ...] | None

CASES: list[tuple[str, ReadoutRequest, Nodes, Names, ReadoutRequest | None]] = [
    ("no narrowing", req((D2,), ("T",)), None, None, req((D2,), ("T",))),
    ("no narrowing of everything", req(), None, None, req()),
    ("all nodes narrowed to some", req(), (D2, D3), None, req((D2, D3))),
    ("named nodes keep the allowed ones", req((D2, D3, D4)), (D4, D2), None, req((D2, D4))),
    ("an allowed bare id covers every source", req((D2_S1, D3)), (D2,), None, req((D2_S1,))),
    (
        "a request for any source is cut to the allowed one",
        req((D2,)),
        (D2_S1,),
        None,
        req((D2_S1,)),
    ),
    (
        "every allowed source of a bare request",
        req((D2,)),
        (D2_S1, D2_S2, D3),
        None,
        req((D2_S1, D2_S2)),
    ),
    ("source and cache type meet", req((D2_S1,)), (D2_C,), None, req((D2_S1_C,))),
    ("other sources are not allowed", req((D2_S2,)), (D2_S1,), None, None),
    ("no allowed node asked", req((D4,)), (D2, D3), None, None),
    ("no node allowed at all", req((D2,)), (), None, None),
    ("no node allowed of all", req(), (), None, None),
    ("all fields narrowed to some", req(), None, ("T", "P"), req((), ("T", "P"))),
    (
        "named fields keep the allowed ones",
        req((), ("T", "P", "Q")),
        None,
        ("Q", "T"),
        req((), ("T", "Q")),
    ),
    ("no allowed field asked", req((), ("P",)), None, ("T",), None),
    ("no field allowed at all", req((), ("P",)), None, (), None),
    ("both narrowed", req((D2, D3), ("T", "P")), (D3,), ("P",), req((D3,), ("P",))),
    ("nodes fine, fields gone", req((D2,), ("T",)), (D2,), ("P",), None),
    ("fields fine, nodes gone", req((D2,), ("T",)), (D3,), ("T",), None),
]


@pytest.mark.parametrize(
    ("request_", "nodes", "fields", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_narrow_request(
    request_: ReadoutRequest, nodes: Nodes, fields: Names, expected: ReadoutRequest | None
) -> None:
    assert narrow_request(request_, nodes, fields) == expected


def test_narrowing_keeps_everything_else() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    original = ReadoutRequest(
        seqnr=42,
        types=FieldType.PEAK | FieldType.HISTORICAL_DAY,
        nodes=(D2, D3),
        field_names=("T",),
        from_time=when - timedelta(days=1),
        to_time=when,
        when=when,
        service_tokens=("S",),
        device_tokens=("D",),
        user_tokens=("U1", "U2"),
    )
    narrowed = narrow_request(original, (D3,), None)
    assert narrowed is not None
    assert narrowed.nodes == (D3,)
    assert narrowed == ReadoutRequest(**{**_fields(original), "nodes": (D3,)})


def _fields(request: ReadoutRequest) -> dict[str, object]:
    return {name: getattr(request, name) for name in ReadoutRequest.__dataclass_fields__}


# -- properties ------------------------------------------------------------------------------------

ids = st.sampled_from(["a", "b", "c"])
opt = st.none() | st.sampled_from(["s", "t"])
refs = st.builds(NodeRef, ids, opt, st.none() | st.sampled_from(["x", "y"]))
concrete = st.builds(NodeRef, ids, st.sampled_from(["s", "t"]), st.sampled_from(["x", "y"]))
names = st.sampled_from(["T", "P", "Q", "R"])
ref_lists = st.lists(refs, max_size=4).map(tuple)
name_lists = st.lists(names, max_size=4).map(tuple)
requests = st.builds(req, ref_lists, name_lists)


@given(requests, st.none() | ref_lists, st.none() | name_lists, concrete, names)
def test_narrowing_never_widens(
    original: ReadoutRequest,
    nodes: Nodes,
    fields: Names,
    node: NodeRef,
    field: str,
) -> None:
    narrowed = narrow_request(original, nodes, fields)
    if narrowed is None:
        return
    if narrowed.wants_node(node):
        assert original.wants_node(node)
        assert nodes is None or any(ok.matches(node) for ok in nodes)
    if narrowed.wants_field(field):
        assert original.wants_field(field)
        assert fields is None or field in fields


@given(requests, st.none() | ref_lists, st.none() | name_lists, concrete, names)
def test_narrowing_keeps_what_both_allow(
    original: ReadoutRequest,
    nodes: Nodes,
    fields: Names,
    node: NodeRef,
    field: str,
) -> None:
    node_ok = original.wants_node(node) and (nodes is None or any(o.matches(node) for o in nodes))
    field_ok = original.wants_field(field) and (fields is None or field in fields)
    narrowed = narrow_request(original, nodes, fields)
    if node_ok and field_ok:
        assert narrowed is not None
        assert narrowed.wants_node(node)
        assert narrowed.wants_field(field)


@given(requests, st.none() | ref_lists, st.none() | name_lists)
def test_narrowing_twice_changes_nothing(
    original: ReadoutRequest, nodes: Nodes, fields: Names
) -> None:
    once = narrow_request(original, nodes, fields)
    if once is not None:
        assert narrow_request(once, nodes, fields) == once


# -- IoT-Events: applying a narrowed read-out request to a subscription ----------------------------

T_BY_2 = FieldTrigger("T", changed_by=2.0)
P_UP = FieldTrigger("P", changed_up=1.0)


def sub(
    nodes: tuple[NodeRef, ...] = (), triggers: tuple[FieldTrigger, ...] = ()
) -> SubscribeRequest:
    return SubscribeRequest(
        seqnr=5,
        types=FieldType.MOMENTARY,
        nodes=nodes,
        fields=triggers,
        min_interval=timedelta(seconds=1),
        max_interval=timedelta(minutes=1),
        initial_readout=True,
        user_tokens=("U",),
    )


EVENT_CASES: list[tuple[str, SubscribeRequest, ReadoutRequest, SubscribeRequest]] = [
    ("nothing narrowed", sub((D2,), (T_BY_2,)), req((D2,), ("T",)), sub((D2,), (T_BY_2,))),
    ("all nodes narrowed", sub(), req((D2, D3)), sub((D2, D3))),
    ("named nodes narrowed", sub((D2, D3)), req((D3,)), sub((D3,))),
    (
        "triggers kept with their thresholds",
        sub((), (T_BY_2, P_UP)),
        req((), ("P",)),
        sub((), (P_UP,)),
    ),
    (
        "every field becomes plain triggers",
        sub((D2,)),
        req((D2,), ("T", "Q")),
        sub((D2,), (FieldTrigger("T"), FieldTrigger("Q"))),
    ),
    (
        "no field narrowing keeps triggers",
        sub((), (T_BY_2,)),
        req((D4,), ()),
        sub((D4,), (T_BY_2,)),
    ),
]


@pytest.mark.parametrize(
    ("subscription", "allowed", "expected"),
    [case[1:] for case in EVENT_CASES],
    ids=[case[0] for case in EVENT_CASES],
)
def test_narrowed_subscription(
    subscription: SubscribeRequest, allowed: ReadoutRequest, expected: SubscribeRequest
) -> None:
    assert _narrowed(subscription, allowed) == expected


def test_narrowed_subscription_tolerates_a_field_allowed_twice() -> None:
    """A service may list a field twice; triggers must stay unique."""
    narrowed = _narrowed(sub(), req((), ("T", "T", "P")))
    assert narrowed.field_names == ("T", "P")


trigger_lists = st.lists(
    st.builds(FieldTrigger, names, st.none(), st.none() | st.sampled_from([0.5, 2.0])),
    max_size=4,
    unique_by=lambda trigger: trigger.name,
).map(tuple)


@given(ref_lists, trigger_lists, st.none() | ref_lists, st.none() | name_lists)
def test_narrowed_subscription_reads_what_the_narrowed_request_reads(
    nodes: tuple[NodeRef, ...],
    triggers: tuple[FieldTrigger, ...],
    allowed_nodes: Nodes,
    allowed_fields: Names,
) -> None:
    subscription = sub(nodes, triggers)
    narrowed = narrow_request(subscription.to_readout_request(), allowed_nodes, allowed_fields)
    if narrowed is None:
        return
    result = _narrowed(subscription, narrowed)
    assert result.nodes == narrowed.nodes
    assert set(result.field_names) == set(narrowed.field_names)
    for trigger in result.fields:  # a kept trigger keeps its thresholds
        original = subscription.trigger(trigger.name)
        assert original is None or original == trigger
    # Everything but nodes and triggers is the subscriber's.
    assert (result.seqnr, result.types, result.min_interval, result.max_interval) == (
        subscription.seqnr,
        subscription.types,
        subscription.min_interval,
        subscription.max_interval,
    )
    assert result.initial_readout
    assert result.user_tokens == ("U",)
