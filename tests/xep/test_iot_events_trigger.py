"""The pure trigger evaluator: decision tables and hypothesis properties (time is passed in)."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xep.iot_events.model import FieldTrigger, SubscribeRequest
from xep.iot_events.trigger import Decision, TriggerEvaluator, field_fires
from xep.xep_0323.model import Field, FieldKind, FieldType, NodeFields, NodeRef, QoS

T0 = datetime(2024, 1, 1, tzinfo=UTC)
NODE = NodeRef("Device01")
OTHER = NodeRef("Device02")


def num(name: str, value: float, decimals: int = 1, **kwargs: object) -> Field:
    return Field.numeric(name, value, "°C", decimals, **kwargs)  # type: ignore[arg-type]


def report(*fields: Field, node: NodeRef = NODE, second: int = 0) -> NodeFields:
    return NodeFields(node, T0 + timedelta(seconds=second), fields)


def sub(*triggers: FieldTrigger, **kwargs: object) -> SubscribeRequest:
    return SubscribeRequest(1, fields=triggers, **kwargs)  # type: ignore[arg-type]


# -- field_fires: one field against the reference last sent -------------------------------------

BY_05 = sub(FieldTrigger("T", changed_by=0.5))
UP_1 = sub(FieldTrigger("T", changed_up=1.0))
DOWN_1 = sub(FieldTrigger("T", changed_down=1.0))
UP_1_DOWN_2 = sub(FieldTrigger("T", changed_up=1.0, changed_down=2.0))
BY_WINS = sub(FieldTrigger("T", changed_by=3.0, changed_up=0.1, changed_down=0.1))
CURRENT_20 = sub(FieldTrigger("T", current_value=20.0, changed_by=0.5))
CURRENT_ONLY = sub(FieldTrigger("T", current_value=20.0))
NAMED = sub(FieldTrigger("T"))
ANY = sub()

FIRES = [
    # (name, subscription, reference, new, fires)
    ("first value is news", BY_05, None, num("T", 20.0), True),
    ("below changed_by", BY_05, num("T", 20.0), num("T", 20.4), False),
    ("exactly changed_by", BY_05, num("T", 20.0), num("T", 20.5), True),
    ("changed_by downwards", BY_05, num("T", 20.0), num("T", 19.5), True),
    ("up only: rise", UP_1, num("T", 20.0), num("T", 21.0), True),
    ("up only: small rise", UP_1, num("T", 20.0), num("T", 20.9), False),
    ("up only: big fall ignored", UP_1, num("T", 20.0), num("T", 0.0), False),
    ("down only: fall", DOWN_1, num("T", 20.0), num("T", 19.0), True),
    ("down only: rise ignored", DOWN_1, num("T", 20.0), num("T", 99.0), False),
    ("asymmetric: fall 1.5", UP_1_DOWN_2, num("T", 20.0), num("T", 18.5), False),
    ("asymmetric: fall 2", UP_1_DOWN_2, num("T", 20.0), num("T", 18.0), True),
    ("changed_by overrides up", BY_WINS, num("T", 20.0), num("T", 21.0), False),
    ("changed_by overrides down", BY_WINS, num("T", 20.0), num("T", 17.0), True),
    ("current_value is the reference", CURRENT_20, None, num("T", 20.4), False),
    ("current_value crossed", CURRENT_20, None, num("T", 19.5), True),
    ("current_value, no threshold: same", CURRENT_ONLY, None, num("T", 20.0), False),
    ("current_value, no threshold: other", CURRENT_ONLY, None, num("T", 20.1), True),
    ("sent value beats current_value", CURRENT_20, num("T", 25.0), num("T", 25.2), False),
    ("named, no threshold: same", NAMED, num("T", 20.0), num("T", 20.0), False),
    ("named, no threshold: tiny change", NAMED, num("T", 20.0), num("T", 20.1), True),
    ("no triggers: any change", ANY, num("T", 20.0), num("T", 20.1), True),
    ("no triggers: no change", ANY, num("T", 20.0), num("T", 20.0), False),
    ("precision alone is no change", ANY, num("T", 20.0, 1), num("T", 20.0, 2), False),
    ("unit change", ANY, num("T", 20.0), Field.numeric("T", 20.0, "K", 1), True),
    (
        "QoS change within threshold",
        BY_05,
        num("T", 20.0),
        num("T", 20.0, qos=QoS.AUTOMATIC_READOUT | QoS.ERROR),
        True,
    ),
    (
        "NaN to NaN",
        ANY,
        Field("T", FieldKind.NUMERIC, "NaN"),
        Field("T", FieldKind.NUMERIC, "NaN"),
        False,
    ),
    ("number to NaN", BY_05, num("T", 20.0), Field("T", FieldKind.NUMERIC, "NaN"), True),
    ("INF to number", BY_05, Field("T", FieldKind.NUMERIC, "INF"), num("T", 1e308), True),
    ("int vs numeric, same value", ANY, Field.integer("T", 20), Field.numeric("T", 20, ""), False),
    ("int thresholds", BY_05, Field.integer("T", 3), Field.integer("T", 4), True),
    ("boolean change", BY_05, Field.boolean("T", False), Field.boolean("T", True), True),
    (
        "boolean lexical change 1/true",
        ANY,
        Field("T", FieldKind.BOOLEAN, "1"),
        Field.boolean("T", True),
        True,
    ),
    ("string same", BY_05, Field.string("T", "open"), Field.string("T", "open"), False),
    ("enum change", ANY, Field.enumeration("T", "a", "x"), Field.enumeration("T", "b", "x"), True),
    ("kind change", ANY, Field.string("T", "1"), Field.integer("T", 1), True),
    ("current_value on a string field", CURRENT_20, None, Field.string("T", "20"), True),
]


@pytest.mark.parametrize(
    ("name", "request_", "reference", "new", "fires"), FIRES, ids=[row[0] for row in FIRES]
)
def test_field_fires(
    name: str, request_: SubscribeRequest, reference: Field | None, new: Field, fires: bool
) -> None:
    assert field_fires(request_, reference, new) is fires


# -- the evaluator -----------------------------------------------------------------------------


def test_scope_filters_nodes_types_and_names() -> None:
    request = SubscribeRequest(
        1,
        types=FieldType.MOMENTARY,
        nodes=(NODE,),
        fields=(FieldTrigger("T", changed_by=1), FieldTrigger("Untyped")),
    )
    evaluator = TriggerEvaluator(request, 0.0)
    t = num("T", 1.0)
    status = num("T", 1.0, types=FieldType.STATUS)
    untyped = num("Untyped", 1.0, types=FieldType(0))
    other = num("H", 1.0)
    assert evaluator.scope(report(t, status, untyped, other)) == report(t, untyped)
    assert evaluator.scope(report(t, node=OTHER)) is None
    assert evaluator.scope(report(other)) is None
    # a sourceId-less request node addresses the node in every source
    assert evaluator.scope(report(t, node=NodeRef("Device01", "src"))) is not None


def test_first_report_is_sent_then_thresholds_apply_to_the_last_sent_value() -> None:
    evaluator = TriggerEvaluator(BY_05, 0.0)
    first = report(num("T", 20.0))
    assert evaluator.offer(first, 1.0) == Decision((first,))
    assert not evaluator.offer(report(num("T", 20.3)), 2.0)
    # drift adds up: 20.6 is 0.6 away from the last *sent* 20.0, although only 0.3 from 20.3
    drift = report(num("T", 20.6), second=3)
    assert evaluator.offer(drift, 3.0) == Decision((drift,))
    assert evaluator.reference(NODE, "T") == num("T", 20.6)
    assert evaluator.last_sent == 3.0


def test_unnamed_fields_neither_trigger_nor_travel() -> None:
    evaluator = TriggerEvaluator(BY_05, 0.0)
    evaluator.offer(report(num("T", 20.0)), 0.0)
    assert not evaluator.offer(report(num("T", 20.0), num("Humidity", 99.0)), 1.0)
    sent = evaluator.offer(report(num("T", 21.0), num("Humidity", 10.0)), 2.0)
    assert sent == Decision((report(num("T", 21.0)),))


def test_whole_in_scope_snapshot_is_sent_and_becomes_reference() -> None:
    request = sub(FieldTrigger("T", changed_by=1.0), FieldTrigger("H", changed_by=10.0))
    evaluator = TriggerEvaluator(request, 0.0)
    evaluator.offer(report(num("T", 20.0), num("H", 50.0)), 0.0)
    snapshot = report(num("T", 21.0), num("H", 55.0))
    assert evaluator.offer(snapshot, 1.0) == Decision((snapshot,))
    assert evaluator.reference(NODE, "H") == num("H", 55.0)
    # H is now measured from 55, so 64 does not fire although it is 14 away from 50
    assert not evaluator.offer(report(num("T", 21.0), num("H", 64.0)), 2.0)


def test_min_interval_coalesces_to_the_latest_values() -> None:
    request = sub(FieldTrigger("T", changed_by=1.0), min_interval=timedelta(seconds=10))
    evaluator = TriggerEvaluator(request, 0.0)
    first = report(num("T", 20.0))
    assert evaluator.offer(first, 0.0) == Decision((first,))
    assert not evaluator.offer(report(num("T", 25.0), second=2), 2.0)  # fires, but too early
    assert evaluator.next_deadline() == 10.0
    # a later report for the same node replaces the held-back value, even below the threshold
    assert not evaluator.offer(report(num("T", 20.5), second=5), 5.0)
    assert evaluator.pending == (report(num("T", 20.5), second=5),)
    assert not evaluator.poll(9.999)
    assert evaluator.poll(10.0) == Decision((report(num("T", 20.5), second=5),))
    assert evaluator.pending == ()
    assert not evaluator.poll(100.0)  # nothing left, no heartbeat configured
    assert evaluator.next_deadline() is None


def test_coalescing_keeps_every_node_and_each_fields_own_timestamp() -> None:
    request = sub(min_interval=timedelta(seconds=10))
    evaluator = TriggerEvaluator(request, 0.0)
    evaluator.offer(report(num("T", 1.0), num("H", 1.0)), 0.0)
    evaluator.offer(report(num("T", 2.0), second=1), 1.0)
    evaluator.offer(report(num("H", 2.0), second=2), 2.0)
    evaluator.offer(report(num("X", 7.0), node=OTHER, second=3), 3.0)
    assert evaluator.poll(10.0).items == (
        report(num("T", 2.0), second=1),
        report(num("H", 2.0), second=2),
        report(num("X", 7.0), node=OTHER, second=3),
    )


def test_report_after_the_interval_is_sent_at_once() -> None:
    request = sub(min_interval=timedelta(seconds=10))
    evaluator = TriggerEvaluator(request, 0.0)
    evaluator.offer(report(num("T", 1.0)), 0.0)
    late = report(num("T", 2.0), second=10)
    assert evaluator.offer(late, 10.0) == Decision((late,))


def test_heartbeat_when_nothing_was_sent_for_max_interval() -> None:
    request = sub(
        FieldTrigger("T", changed_by=5.0),
        min_interval=timedelta(seconds=2),
        max_interval=timedelta(seconds=60),
    )
    evaluator = TriggerEvaluator(request, 100.0)
    assert evaluator.next_deadline() == 160.0
    assert not evaluator.poll(159.0)
    assert evaluator.poll(160.0) == Decision(heartbeat=True)
    assert evaluator.last_sent == 160.0
    assert evaluator.next_deadline() == 220.0
    evaluator.note_sent(report(num("T", 20.0)))  # what the heartbeat read-out sent
    assert evaluator.reference(NODE, "T") == num("T", 20.0)
    assert evaluator.offer(report(num("T", 30.0)), 200.0)  # an event restarts the heartbeat
    assert evaluator.next_deadline() == 260.0


def test_heartbeat_never_shorter_than_min_heartbeat() -> None:
    request = sub(max_interval=timedelta(milliseconds=10))
    evaluator = TriggerEvaluator(request, 0.0, min_heartbeat=1.0)
    assert evaluator.heartbeat_interval == 1.0
    assert not evaluator.poll(0.5)
    assert evaluator.poll(1.0).heartbeat


def test_begin_readout_supersedes_held_back_values() -> None:
    request = sub(min_interval=timedelta(seconds=10))
    evaluator = TriggerEvaluator(request, 0.0)
    evaluator.offer(report(num("T", 1.0)), 0.0)
    evaluator.offer(report(num("T", 2.0)), 1.0)
    assert evaluator.pending
    evaluator.begin_readout(2.0)
    assert evaluator.pending == ()
    assert evaluator.last_sent == 2.0
    assert evaluator.next_deadline() is None


def test_initial_readout_values_are_the_reference() -> None:
    evaluator = TriggerEvaluator(BY_05, 0.0)
    evaluator.begin_readout(0.0)
    evaluator.note_sent(report(num("T", 20.0), num("Unnamed", 1.0)))
    assert evaluator.reference(NODE, "Unnamed") is None  # out of scope
    assert not evaluator.offer(report(num("T", 20.2)), 1.0)


# -- properties -------------------------------------------------------------------------------

values = st.floats(min_value=-1000, max_value=1000, allow_nan=False).map(lambda v: round(v, 2))
steps = st.lists(
    st.tuples(st.floats(min_value=0, max_value=20, allow_nan=False), st.booleans(), values),
    max_size=40,
)
intervals = st.none() | st.floats(min_value=0.001, max_value=30).map(lambda s: timedelta(seconds=s))


def simulate(
    evaluator: TriggerEvaluator, script: list[tuple[float, bool, float]]
) -> tuple[list[float], float, list[NodeFields]]:
    """Feed (time step, poll-or-report, value) steps; return send times, end time, sent items."""
    now = 0.0
    sends: list[float] = []
    sent: list[NodeFields] = []
    for step, is_poll, value in script:
        now += step
        decision = (
            evaluator.poll(now) if is_poll else evaluator.offer(report(num("T", value, 2)), now)
        )
        if decision:
            sends.append(now)
            sent.extend(decision.items)
    return sends, now, sent


@settings(max_examples=300)
@given(steps, intervals, intervals, st.none() | st.floats(min_value=0.01, max_value=50))
def test_never_two_sends_closer_than_min_interval(
    script: list[tuple[float, bool, float]],
    low: timedelta | None,
    high: timedelta | None,
    changed_by: float | None,
) -> None:
    if low is not None and high is not None and low > high:
        low, high = high, low
    request = sub(FieldTrigger("T", changed_by=changed_by), min_interval=low, max_interval=high)
    evaluator = TriggerEvaluator(request, 0.0)
    sends, _, _ = simulate(evaluator, script)
    gap = evaluator.min_interval
    assert all(later >= earlier + gap for earlier, later in itertools.pairwise(sends))


@settings(max_examples=300)
@given(steps, intervals, st.floats(min_value=0.01, max_value=50))
def test_a_change_of_changed_by_is_always_sent_eventually(
    script: list[tuple[float, bool, float]], low: timedelta | None, changed_by: float
) -> None:
    """After the reports stop and the pending deadline passes, the subscriber's last value is
    within ``changed_by`` of the latest reading: no big change is ever lost."""
    request = sub(FieldTrigger("T", changed_by=changed_by), min_interval=low)
    evaluator = TriggerEvaluator(request, 0.0)
    _, now, _ = simulate(evaluator, script)
    deadline = evaluator.next_deadline()
    if deadline is not None:  # only held-back values (no heartbeat configured)
        assert evaluator.poll(max(now, deadline))
    assert evaluator.next_deadline() is None
    reported = [value for _, is_poll, value in script if not is_poll]
    if reported:
        last_sent = evaluator.reference(NODE, "T")
        assert last_sent is not None
        assert abs(reported[-1] - last_sent.as_float()) < changed_by


@given(steps, intervals)
def test_any_change_subscription_sends_only_changes_and_ends_on_the_latest(
    script: list[tuple[float, bool, float]], low: timedelta | None
) -> None:
    evaluator = TriggerEvaluator(sub(min_interval=low), 0.0)
    _, now, sent = simulate(evaluator, script)
    deadline = evaluator.next_deadline()
    if deadline is not None:
        sent.extend(evaluator.poll(max(now, deadline)).items)
    values_sent = [item.fields[0].as_float() for item in sent]
    if low is None:  # no rate limit: consecutive sends always differ
        assert all(a != b for a, b in itertools.pairwise(values_sent))
    reported = [value for _, is_poll, value in script if not is_poll]
    assert values_sent[-1:] == reported[-1:]


@given(steps, st.floats(min_value=0.5, max_value=30), st.floats(min_value=0.0, max_value=1.0))
def test_heartbeat_gap_is_bounded_when_polled_at_deadlines(
    script: list[tuple[float, bool, float]], heartbeat: float, fraction: float
) -> None:
    """Polling at every deadline, the gap between two sends never exceeds max_interval."""
    request = sub(
        FieldTrigger("T", changed_by=1e9),  # reports never fire: only heartbeats
        min_interval=timedelta(seconds=heartbeat * fraction),
        max_interval=timedelta(seconds=heartbeat),
    )
    evaluator = TriggerEvaluator(request, 0.0)
    evaluator.note_sent(report(num("T", 0.0)))  # known value: later reports never fire
    sends = [0.0]
    now = 0.0
    for step, _, value in script:
        now += step
        deadline = evaluator.next_deadline()
        while deadline is not None and deadline <= now:
            assert evaluator.poll(deadline).heartbeat
            sends.append(deadline)
            deadline = evaluator.next_deadline()
        evaluator.offer(report(num("T", value)), now)
    gaps = [b - a for a, b in itertools.pairwise(sends)]
    assert all(math.isclose(gap, evaluator.heartbeat_interval or 0) for gap in gaps)


@pytest.mark.parametrize("module", ["model", "convert", "trigger"])
def test_pure_modules_import_no_io(module: str) -> None:
    """model/convert/trigger stay sans-IO: no asyncio, slixmpp, clock or sockets."""
    import ast
    from pathlib import Path

    import xep.iot_events

    path = Path(xep.iot_events.__file__).with_name(f"{module}.py")
    imported: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    io = {"asyncio", "slixmpp", "time", "socket", "selectors", "serial", "logging"}
    assert {name.split(".")[0] for name in imported} & io == set()
    assert not any(
        name.startswith(("xep.iot_events.events", "xep.xep_0323.sensordata")) for name in imported
    )
