"""Threshold alarms: rule validation, the evaluator, the SQLite mailbox and the chat lines."""

from __future__ import annotations

import dataclasses
import math
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)

from ncap.alarms import (
    DEFAULT_RETENTION,
    Alarm,
    AlarmChange,
    AlarmCounts,
    AlarmError,
    AlarmEvaluator,
    AlarmMailbox,
    AlarmRule,
    InvalidAlarmRule,
    format_alarm,
    format_summary,
)
from ncap.errors import NcapError
from ncap.sensors import Reading

NODE = "env-sensor"
T0 = datetime(2026, 11, 21, 10, 2, tzinfo=UTC)
OWNER = "owner@example.org"
PHONE = "sip:owner@example.org"
FRIEND = "friend@example.org"

TEMP_HIGH = AlarmRule("temp-high", NODE, "temperature", above=30)
HUMIDITY_BAND = AlarmRule(
    "humidity", NODE, "humidity", above=70, below=30, hysteresis=2, severity="critical"
)


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def mailbox(tmp_path: Path, clock: FakeClock) -> Iterator[AlarmMailbox]:
    with AlarmMailbox(tmp_path / "alarms.db", clock=clock) as opened:
        yield opened


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def change(
    kind: str, alarm_rule: AlarmRule = TEMP_HIGH, value: float | None = None, minutes: float = 0
) -> AlarmChange:
    """A change as the evaluator reports it: raised by a value just beyond the rule's threshold
    (31.2 for ``TEMP_HIGH``), cleared by one well inside (29 for ``TEMP_HIGH``)."""
    if alarm_rule.above is not None:
        beyond, inside = alarm_rule.above + 1.2, alarm_rule.above - alarm_rule.hysteresis - 1
    else:
        assert alarm_rule.below is not None
        beyond, inside = alarm_rule.below - 1.2, alarm_rule.below + alarm_rule.hysteresis + 1
    evaluator = AlarmEvaluator([alarm_rule])
    (raised,) = evaluator.observe(
        alarm_rule.node, alarm_rule.field, beyond if value is None else value, at(minutes)
    )
    if kind == "raised":
        return raised
    (cleared,) = evaluator.observe(alarm_rule.node, alarm_rule.field, inside, at(minutes))
    return cleared


# -- rules ------------------------------------------------------------------------------------


def test_rule_keeps_numbers_as_floats() -> None:
    made = AlarmRule("a", "env-sensor/temperature", "temperature", below=5, hysteresis=1)
    assert made.below == 5.0
    assert isinstance(made.below, float)
    assert made.above is None
    assert made.severity == "warning"


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"name": ""}, "alarm name"),
        ({"name": "has space"}, "alarm name"),
        ({"name": "ünïcode"}, "alarm name"),
        ({"name": "x" * 65}, "longer than"),
        ({"node": ""}, "node"),
        ({"node": "env sensor"}, "spaces"),
        ({"field": " temperature"}, "unprintable"),
        ({"field": "temp\n"}, "unprintable"),
        ({"above": None, "below": None}, "give 'above', 'below' or both"),
        ({"above": math.nan}, "finite"),
        ({"above": math.inf}, "finite"),
        ({"above": True}, "finite"),
        ({"above": "30"}, "finite"),
        ({"hysteresis": -0.5}, "hysteresis must be >= 0"),
        ({"hysteresis": math.nan}, "finite"),
        ({"below": 30}, "must be under"),
        ({"below": 31}, "must be under"),
        ({"below": 20, "hysteresis": 5}, "more than twice the hysteresis"),
        ({"severity": "fatal"}, "severity"),
    ],
)
def test_invalid_rules_are_refused(fields: dict[str, object], problem: str) -> None:
    arguments: dict[str, object] = {
        "name": "temp-high",
        "node": NODE,
        "field": "temperature",
        "above": 30.0,
    }
    arguments.update(fields)
    with pytest.raises(InvalidAlarmRule, match=problem) as caught:
        AlarmRule(**arguments)  # type: ignore[arg-type]
    # Config models (pydantic) turn ValueErrors into validation errors.
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, NcapError)


def test_rule_names_must_be_unique() -> None:
    with pytest.raises(InvalidAlarmRule, match="two alarms are named 'temp-high'"):
        AlarmEvaluator([TEMP_HIGH, AlarmRule("temp-high", "other", "temperature", below=0)])


# -- the evaluator ----------------------------------------------------------------------------


def run(alarm_rule: AlarmRule, values: list[float]) -> list[tuple[str, float]]:
    evaluator = AlarmEvaluator([alarm_rule])
    seen: list[tuple[str, float]] = []
    for step, value in enumerate(values):
        for item in evaluator.observe(alarm_rule.node, alarm_rule.field, value, at(step)):
            seen.append((item.kind, item.value))
    return seen


ABOVE_30 = AlarmRule("r", NODE, "t", above=30)
BELOW_10 = AlarmRule("r", NODE, "t", below=10)
ABOVE_30_H2 = AlarmRule("r", NODE, "t", above=30, hysteresis=2)
BELOW_10_H1 = AlarmRule("r", NODE, "t", below=10, hysteresis=1)
BAND_10_30_H2 = AlarmRule("r", NODE, "t", above=30, below=10, hysteresis=2)


@pytest.mark.parametrize(
    ("alarm_rule", "values", "expected"),
    [
        pytest.param(ABOVE_30, [29, 30, 30.1, 31, 30, 29], [("raised", 30.1), ("cleared", 30)]),
        pytest.param(ABOVE_30, [30, 30, 30], [], id="exactly-at-above-does-not-raise"),
        pytest.param(BELOW_10, [10, 10], [], id="exactly-at-below-does-not-raise"),
        pytest.param(
            BELOW_10, [11, 9, 8, 10, 9.5], [("raised", 9), ("cleared", 10), ("raised", 9.5)]
        ),
        pytest.param(
            ABOVE_30_H2,
            [31, 29, 28.5, 28.0001, 28, 31],
            [("raised", 31), ("cleared", 28), ("raised", 31)],
            id="above-hysteresis",
        ),
        pytest.param(
            BELOW_10_H1, [12, 9.9, 10.5, 10.99, 11, 12], [("raised", 9.9), ("cleared", 11)]
        ),
        pytest.param(
            BAND_10_30_H2,
            [20, 31, 29, 5, 28, 35, 12, 9],
            [("raised", 31), ("cleared", 28), ("raised", 35), ("cleared", 12), ("raised", 9)],
            id="both-one-alarm-across-the-band",
        ),
        pytest.param(
            ABOVE_30,
            [math.nan, math.inf, 31, math.nan, -math.inf, 20],
            [("raised", 31), ("cleared", 20)],
            id="nan-and-inf-ignored",
        ),
        pytest.param(BAND_10_30_H2, [math.inf, -math.inf, math.nan], [], id="inf-never-raises"),
    ],
)
def test_evaluator_table(
    alarm_rule: AlarmRule, values: list[float], expected: list[tuple[str, float]]
) -> None:
    assert run(alarm_rule, values) == expected


def test_change_carries_rule_threshold_and_text() -> None:
    evaluator = AlarmEvaluator([TEMP_HIGH, HUMIDITY_BAND])
    (raised,) = evaluator.observe(NODE, "temperature", 31.2, T0, "°C")
    assert raised.kind == "raised"
    assert raised.rule is TEMP_HIGH
    assert (raised.node, raised.field, raised.direction) == (NODE, "temperature", "above")
    assert (raised.value, raised.threshold, raised.timestamp) == (31.2, 30.0, T0)
    assert raised.text == "env-sensor temperature 31.2 °C above 30"
    assert evaluator.is_raised("temp-high")

    (cleared,) = evaluator.observe(NODE, "temperature", 28.25, at(3), "°C", decimals=1)
    assert (cleared.kind, cleared.threshold) == ("cleared", 30.0)
    assert cleared.text == "env-sensor temperature 28.2 °C back below 30"
    assert not evaluator.is_raised("temp-high")

    (low,) = evaluator.observe(NODE, "humidity", 12.5, T0, "%")
    assert (low.direction, low.threshold) == ("below", 30.0)
    assert low.text == "env-sensor humidity 12.5 % below 30"
    (back,) = evaluator.observe(NODE, "humidity", 50, T0)
    assert back.text == "env-sensor humidity 50 back between 30 and 70"


def test_evaluator_matches_node_and_field_exactly() -> None:
    channel_rule = AlarmRule("ch", "env-sensor/temperature", "temperature", above=30)
    evaluator = AlarmEvaluator([TEMP_HIGH, channel_rule])
    assert evaluator.watches(NODE, "temperature")
    assert not evaluator.watches(NODE, "pressure")
    assert evaluator.observe(NODE, "pressure", 1e9, T0) == []
    assert evaluator.observe("other", "temperature", 99, T0) == []
    assert [
        c.rule.name for c in evaluator.observe("env-sensor/temperature", "temperature", 31, T0)
    ] == ["ch"]


def test_two_rules_on_one_field_change_independently() -> None:
    warm = AlarmRule("warm", NODE, "temperature", above=25)
    hot = AlarmRule("hot", NODE, "temperature", above=30, severity="critical")
    evaluator = AlarmEvaluator([warm, hot])
    assert [c.rule.name for c in evaluator.observe(NODE, "temperature", 27, T0)] == ["warm"]
    assert [c.rule.name for c in evaluator.observe(NODE, "temperature", 31, T0)] == ["hot"]
    changes = evaluator.observe(NODE, "temperature", 20, T0)
    assert [(c.rule.name, c.kind) for c in changes] == [("warm", "cleared"), ("hot", "cleared")]


def test_observe_reading() -> None:
    evaluator = AlarmEvaluator([TEMP_HIGH])
    reading = Reading(NODE, "temperature", 31.234, "°C", 1, T0)
    (raised,) = evaluator.observe_reading(reading)
    assert raised.text == "env-sensor temperature 31.2 °C above 30"
    assert raised.value == 31.234


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
observed = st.one_of(finite, st.sampled_from([math.nan, math.inf, -math.inf, 0.0, 10.0, 30.0]))


@st.composite
def rules(draw: st.DrawFn) -> AlarmRule:
    hysteresis = draw(st.sampled_from([0.0, 0.5, 2.0]))
    shape = draw(st.sampled_from(["above", "below", "both"]))
    above = 30.0 if shape != "below" else None
    below = 10.0 if shape != "above" else None
    return AlarmRule("r", NODE, "t", above=above, below=below, hysteresis=hysteresis)


@settings(max_examples=300, deadline=None)
@given(rules(), st.lists(observed, max_size=60))
def test_changes_alternate_and_respect_thresholds(
    alarm_rule: AlarmRule, values: list[float]
) -> None:
    evaluator = AlarmEvaluator([alarm_rule])
    kinds: list[str] = []
    for step, value in enumerate(values):
        changes = evaluator.observe(NODE, "t", value, at(step))
        assert len(changes) <= 1
        for item in changes:
            assert math.isfinite(item.value)
            if item.kind == "raised":
                assert alarm_rule.breached(item.value) is not None
            else:
                assert alarm_rule.back_inside(item.value)
            kinds.append(item.kind)
    # A raise is followed by at most one clear, which is followed by a raise, and so on.
    assert kinds == ["raised", "cleared"] * (len(kinds) // 2) + ["raised"] * (len(kinds) % 2)
    assert evaluator.is_raised("r") == (kinds[-1:] == ["raised"])


# -- the mailbox ------------------------------------------------------------------------------


def test_record_raise_and_clear_one_alarm(mailbox: AlarmMailbox) -> None:
    raised = mailbox.record(change("raised", minutes=0))
    assert raised is not None
    assert raised.id == 1
    assert (raised.rule, raised.node, raised.field) == ("temp-high", NODE, "temperature")
    assert (raised.state, raised.value, raised.threshold, raised.severity) == (
        "raised",
        31.2,
        30.0,
        "warning",
    )
    assert raised.raised_at == T0
    assert (raised.cleared_at, raised.acked_by, raised.acked_at) == (None, None, None)
    # A second raise of an open rule is the same alarm (e.g. an evaluator that forgot it).
    assert mailbox.record(change("raised", value=40, minutes=1)) == raised

    cleared = mailbox.record(change("cleared", minutes=3))
    assert cleared is not None
    assert cleared.id == raised.id
    assert (cleared.state, cleared.cleared_at, cleared.cleared_value) == ("cleared", at(3), 29.0)
    assert cleared.text == raised.text
    # Nothing left open to clear.
    assert mailbox.record(change("cleared", minutes=4)) is None

    again = mailbox.record(change("raised", minutes=5))
    assert again is not None
    assert again.id == 2
    assert [alarm.id for alarm in mailbox.listing(10)] == [2, 1]
    assert [alarm.id for alarm in mailbox.active()] == [2]


def test_new_and_old_per_recipient(mailbox: AlarmMailbox) -> None:
    first = mailbox.record(change("raised"))
    second = mailbox.record(change("raised", HUMIDITY_BAND, value=80))
    assert first is not None
    assert second is not None
    assert mailbox.counts(OWNER) == (2, 0)
    assert mailbox.counts(PHONE) == (2, 0)
    assert [a.id for a in mailbox.undelivered(OWNER)] == [1, 2]

    assert mailbox.mark_delivered(OWNER, [first.id, 999]) == 1
    assert mailbox.mark_delivered(OWNER, [first.id]) == 0
    assert mailbox.counts(OWNER) == (1, 1)
    assert mailbox.counts(PHONE) == (2, 0)
    assert [a.id for a in mailbox.undelivered(OWNER)] == [2]
    # Recipients are compared as bare JIDs (case-insensitive); URIs keep their case.
    assert mailbox.counts("Owner@Example.ORG") == (1, 1)
    assert mailbox.counts("SIP:owner@example.org") == (2, 0)
    assert mailbox.counts("sip:Owner@example.org") == (2, 0)
    assert mailbox.detailed_counts(OWNER) == AlarmCounts(new=1, old=1, new_urgent=1, old_urgent=0)

    # A clear does not make a delivered alarm new again.
    mailbox.record(change("cleared"))
    assert mailbox.counts(OWNER) == (1, 1)

    acked = mailbox.acknowledge(first.id, by=PHONE)
    assert acked is not None
    assert (acked.acked_by, acked.acked_at) == (PHONE, T0)
    assert mailbox.counts(OWNER) == (1, 0)
    assert mailbox.counts(PHONE) == (1, 0)
    assert mailbox.mark_delivered(FRIEND, [first.id]) == 0  # acknowledged: nothing to deliver
    assert mailbox.undelivered(FRIEND) == [mailbox.get(second.id)]

    mailbox.mark_delivered(OWNER, [second.id])
    assert mailbox.detailed_counts(OWNER) == AlarmCounts(0, 1, 0, 1)
    mailbox.acknowledge(second.id, by=OWNER)
    assert mailbox.counts(OWNER) == (0, 0)
    assert mailbox.undelivered(OWNER) == []


def test_acknowledge_is_idempotent_and_for_everyone(
    mailbox: AlarmMailbox, clock: FakeClock
) -> None:
    raised = mailbox.record(change("raised"))
    assert raised is not None
    assert mailbox.any_active_unacked()
    clock.now = at(5)
    first = mailbox.acknowledge(raised.id, "Owner@Example.org")
    assert first is not None
    assert (first.acked_by, first.acked_at, first.state) == (OWNER, at(5), "raised")
    clock.now = at(9)
    assert mailbox.acknowledge(raised.id, FRIEND) == first
    assert mailbox.acknowledge(12345, OWNER) is None
    # Acknowledged but still raised: active, yet no reason for the alarm presence.
    assert [a.id for a in mailbox.active()] == [raised.id]
    assert not mailbox.any_active_unacked()


def test_persists_across_reopen_and_restores_the_evaluator(tmp_path: Path) -> None:
    path = tmp_path / "alarms.db"
    evaluator = AlarmEvaluator([TEMP_HIGH, HUMIDITY_BAND])
    with AlarmMailbox(path) as mailbox:
        for item in evaluator.observe(NODE, "temperature", 31.2, T0, "°C"):
            mailbox.record(item)
        for item in evaluator.observe(NODE, "humidity", 90, T0, "%"):
            mailbox.record(item)
        mailbox.mark_delivered(OWNER, [1])
        mailbox.acknowledge(2, OWNER)
        before = mailbox.listing(10)

    with AlarmMailbox(path) as mailbox:
        assert mailbox.listing(10) == before
        assert mailbox.counts(OWNER) == (0, 1)
        # A fresh evaluator learns which rules are open, so a normal value clears them.
        restarted = AlarmEvaluator([TEMP_HIGH, HUMIDITY_BAND], active=mailbox.active())
        assert restarted.is_raised("temp-high")
        assert restarted.is_raised("humidity")
        (cleared,) = restarted.observe(NODE, "temperature", 25, at(10), "°C")
        assert cleared.kind == "cleared"
        closed = mailbox.record(cleared)
        assert closed is not None
        assert (closed.id, closed.cleared_at) == (1, at(10))
        assert [a.id for a in mailbox.active()] == [2]


def test_file_and_sidecars_are_private(tmp_path: Path) -> None:
    path = tmp_path / "alarms.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    with AlarmMailbox(path) as mailbox:
        mailbox.record(change("raised"))
        for name in ("alarms.db", "alarms.db-wal", "alarms.db-shm"):
            mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
            assert mode == 0o600, (name, oct(mode))


def test_recorded_alarm_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "alarms.db"
    script = f"""
import os, signal
from datetime import UTC, datetime
from pathlib import Path
from ncap.alarms import AlarmEvaluator, AlarmMailbox, AlarmRule
rule = AlarmRule("temp-high", "env-sensor", "temperature", above=30)
mailbox = AlarmMailbox(Path({str(path)!r}))
for item in AlarmEvaluator([rule]).observe("env-sensor", "temperature", 31.2, datetime.now(UTC)):
    mailbox.record(item)
os.kill(os.getpid(), signal.SIGKILL)
"""
    done = subprocess.run([sys.executable, "-c", script], timeout=30, check=False)
    assert done.returncode == -signal.SIGKILL
    with AlarmMailbox(path) as mailbox:
        (alarm,) = mailbox.active()
        assert (alarm.rule, alarm.value) == ("temp-high", 31.2)
        # WAL mode is a property of the file; synchronous=FULL is set on every open.
        assert mailbox.record(change("raised")) == alarm


def test_retention_deletes_only_acknowledged_and_cleared(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "alarms.db"
    bands = [AlarmRule(f"r{n}", NODE, f"f{n}", above=1) for n in range(4)]
    with AlarmMailbox(path, clock=clock) as mailbox:
        for alarm_rule in bands:
            mailbox.record(change("raised", alarm_rule))
        # r0: cleared and acked at T0.  r1: cleared, never acked.  r2: acked, still raised.
        # r3: cleared at T0 but acked 20 days later (retention runs from the later of the two).
        mailbox.record(change("cleared", bands[0]))
        mailbox.acknowledge(1, OWNER)
        mailbox.record(change("cleared", bands[1]))
        mailbox.acknowledge(3, OWNER)
        mailbox.record(change("cleared", bands[3]))
        clock.now = T0 + timedelta(days=20)
        mailbox.acknowledge(4, OWNER)

        clock.now = T0 + DEFAULT_RETENTION + timedelta(seconds=1)
        assert mailbox.purge() == 1
        assert [a.id for a in mailbox.listing(10)] == [4, 3, 2]
        clock.now = T0 + timedelta(days=365)
        assert mailbox.purge() == 1
        assert [a.id for a in mailbox.listing(10)] == [3, 2]
        # Ids are never reused, even after the highest one was deleted.
        newest = mailbox.record(change("raised", bands[3], minutes=60 * 24 * 365))
        assert newest is not None
        assert newest.id == 5

    clock.now = T0 + timedelta(days=3650)
    with AlarmMailbox(path, clock=clock) as reopened:
        # Unacknowledged alarms stay however old they are.
        assert [a.id for a in reopened.listing(10)] == [5, 3, 2]


def test_record_purges_on_the_way(tmp_path: Path, clock: FakeClock) -> None:
    with AlarmMailbox(tmp_path / "a.db", clock=clock, retention=timedelta(hours=1)) as mailbox:
        mailbox.record(change("raised"))
        mailbox.record(change("cleared"))
        mailbox.acknowledge(1, OWNER)
        clock.now = at(61)
        mailbox.record(change("raised", HUMIDITY_BAND, value=90, minutes=61))
        assert [a.id for a in mailbox.listing(5)] == [2]


@pytest.mark.parametrize(
    "recipient", ["", "owner@example.org/phone", "two words@x", "@example.org", "a@b@c", 5]
)
def test_bad_recipients_are_refused(mailbox: AlarmMailbox, recipient: object) -> None:
    with pytest.raises(AlarmError):
        mailbox.counts(recipient)  # type: ignore[arg-type]


def test_misuse_raises_alarm_errors(tmp_path: Path, mailbox: AlarmMailbox) -> None:
    naive = dataclasses.replace(change("raised"), timestamp=datetime(2026, 1, 1))
    with pytest.raises(AlarmError, match="timezone-aware"):
        mailbox.record(naive)
    with pytest.raises(AlarmError, match="listing limit"):
        mailbox.listing(0)
    with pytest.raises(AlarmError, match="integers"):
        mailbox.acknowledge("1", OWNER)  # type: ignore[arg-type]
    with pytest.raises(AlarmError, match="cannot be negative"):
        AlarmMailbox(tmp_path / "x.db", retention=timedelta(seconds=-1))
    with pytest.raises(AlarmError, match="cannot open"):
        AlarmMailbox(tmp_path / "missing" / "alarms.db")
    mailbox.close()
    mailbox.close()
    with pytest.raises(AlarmError, match="closed"):
        mailbox.active()


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "alarms.db"
    path.write_bytes(b"this is not SQLite, just some text that is long enough" * 100)
    with pytest.raises(AlarmError, match=str(path)):
        AlarmMailbox(path)


class MailboxModel(RuleBasedStateMachine):
    """The mailbox against a dict model: counts, undelivered lists and at most one open alarm."""

    ids = Bundle("ids")
    RULES = (TEMP_HIGH, HUMIDITY_BAND, AlarmRule("door", "door", "open", above=0.5))
    PEOPLE = (OWNER, PHONE, FRIEND)

    def __init__(self) -> None:
        super().__init__()
        self.workdir = tempfile.TemporaryDirectory(prefix="ncap-alarms-")
        self.mailbox = AlarmMailbox(Path(self.workdir.name) / "alarms.db")
        self.open: dict[str, int] = {}
        self.acked: set[int] = set()
        self.cleared: set[int] = set()
        self.delivered: dict[str, set[int]] = {person: set() for person in self.PEOPLE}
        self.all: list[int] = []

    def teardown(self) -> None:
        self.mailbox.close()
        self.workdir.cleanup()

    @rule(target=ids, which=st.sampled_from(RULES))
    def raise_(self, which: AlarmRule) -> int:
        alarm = self.mailbox.record(change("raised", which))
        assert alarm is not None
        if which.name in self.open:
            assert alarm.id == self.open[which.name]
        else:
            assert alarm.id > max(self.all, default=0)
            self.open[which.name] = alarm.id
            self.all.append(alarm.id)
        return alarm.id

    @rule(which=st.sampled_from(RULES))
    def clear(self, which: AlarmRule) -> None:
        alarm = self.mailbox.record(change("cleared", which))
        expected = self.open.pop(which.name, None)
        assert (alarm.id if alarm else None) == expected
        if expected is not None:
            assert expected not in self.cleared
            self.cleared.add(expected)

    @precondition(lambda self: bool(self.all))
    @rule(person=st.sampled_from(PEOPLE), data=st.data())
    def deliver(self, person: str, data: st.DataObject) -> None:
        chosen = data.draw(st.sets(st.sampled_from(self.all)))
        fresh = {i for i in chosen if i not in self.acked and i not in self.delivered[person]}
        assert self.mailbox.mark_delivered(person, chosen) == len(fresh)
        self.delivered[person] |= fresh

    @rule(alarm_id=consumes(ids), person=st.sampled_from(PEOPLE))
    def ack(self, alarm_id: int, person: str) -> None:
        alarm = self.mailbox.acknowledge(alarm_id, person)
        assert alarm is not None
        assert alarm.acked_by is not None
        self.acked.add(alarm_id)

    @invariant()
    def counts_match(self) -> None:
        unacked = [i for i in self.all if i not in self.acked]
        for person in self.PEOPLE:
            new = [i for i in unacked if i not in self.delivered[person]]
            assert self.mailbox.counts(person) == (len(new), len(unacked) - len(new))
            assert [a.id for a in self.mailbox.undelivered(person)] == new
        assert sorted(a.id for a in self.mailbox.active()) == sorted(self.open.values())
        assert self.mailbox.any_active_unacked() == any(
            i not in self.acked for i in self.open.values()
        )


MailboxModel.TestCase.settings = settings(max_examples=50, stateful_step_count=20, deadline=None)
test_mailbox_matches_model = MailboxModel.TestCase


# -- chat formatting --------------------------------------------------------------------------


def stored(**overrides: object) -> Alarm:
    fields: dict[str, object] = {
        "id": 12,
        "rule": "temp-high",
        "node": NODE,
        "field": "temperature",
        "severity": "critical",
        "direction": "above",
        "value": 31.2,
        "threshold": 30.0,
        "unit": "°C",
        "text": "env-sensor temperature 31.2 °C above 30",
        "raised_at": T0,
        "cleared_at": None,
        "cleared_value": None,
        "acked_by": None,
        "acked_at": None,
    }
    fields.update(overrides)
    return Alarm(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        ({}, "#12 CRITICAL env-sensor temperature 31.2 °C above 30 since 10:02Z"),
        (
            {"cleared_at": at(3), "acked_by": "owner@x", "acked_at": at(4)},
            "#12 CRITICAL env-sensor temperature 31.2 °C above 30 since 10:02Z (cleared 10:05Z)"
            " [acked by owner@x]",
        ),
        (
            {"severity": "warning", "raised_at": T0 - timedelta(days=1), "acked_by": "a@b"},
            "#12 WARNING env-sensor temperature 31.2 °C above 30 since 2026-11-20 10:02Z"
            " [acked by a@b]",
        ),
    ],
)
def test_format_alarm(overrides: dict[str, object], line: str) -> None:
    assert format_alarm(stored(**overrides), now=at(10)) == line


def test_format_alarm_converts_to_utc() -> None:
    from datetime import timezone

    paris = timezone(timedelta(hours=1))
    alarm = stored(raised_at=T0.astimezone(paris))
    assert format_alarm(alarm, now=at(1)).endswith("since 10:02Z")


@pytest.mark.parametrize(
    ("new", "old", "text"),
    [
        (
            2,
            1,
            "2 new alarms, 1 waiting for acknowledgement. "
            "Send 'alarms' to list them, 'ack ID' to acknowledge.",
        ),
        (1, 0, "1 new alarm. Send 'alarms' to list it, 'ack ID' to acknowledge."),
        (
            0,
            3,
            "3 alarms waiting for acknowledgement. "
            "Send 'alarms' to list them, 'ack ID' to acknowledge.",
        ),
        (0, 0, "No alarms waiting."),
    ],
)
def test_format_summary(new: int, old: int, text: str) -> None:
    assert format_summary(new, old) == text


def test_module_has_no_xmpp_imports() -> None:
    source = Path(__file__).parents[2].joinpath("ncap", "alarms.py").read_text()
    assert "slixmpp" not in source
    assert "ncap.xmpp" not in source
