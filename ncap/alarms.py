"""Threshold alarms: rules, a pure evaluator, and a durable per-recipient mailbox.

No XMPP or SIP here: the gateway feeds readings to :class:`AlarmEvaluator`, records what it
reports in :class:`AlarmMailbox`, and the chat, presence and SIP message-summary code read the
mailbox.

**Rules and the evaluator.** An :class:`AlarmRule` watches one field of one node. It raises when
the value is strictly above ``above`` or strictly below ``below`` (a value exactly at a threshold
does not raise). A raised rule clears only once the value is back inside by at least
``hysteresis``: at or below ``above - hysteresis`` and at or above ``below + hysteresis``. Between
the two nothing changes. Debouncing is done by hysteresis only: there is no time-based delay,
so a noisy value near a threshold with ``hysteresis = 0`` raises and clears on every crossing,
and each raise is a new alarm kept until acknowledged. Give noisy channels a hysteresis. A rule
with both thresholds is one alarm: while it is raised a value that jumps from above to below
keeps the same alarm open. NaN and infinite values are ignored (they neither raise nor clear).
For each rule the changes therefore alternate raised, cleared, raised, ...

The evaluator's state is in memory. After a restart, pass the mailbox's open alarms
(``AlarmEvaluator(rules, active=mailbox.active())``) so that a value that went back to normal
while the gateway was down clears them.

**The mailbox** keeps every alarm in SQLite until it is both acknowledged and cleared, and then
for ``retention`` more (30 days by default) before deleting it. Unacknowledged alarms are never
deleted. Ids come from ``AUTOINCREMENT``: monotonic and never reused, even after deletion. A
rule has at most one open (raised, not cleared) alarm; a clear closes it.

*New and old.* Per recipient (a bare JID or a SIP URI) an unacknowledged alarm is *new* until
it was delivered to that recipient and *old* afterwards; acknowledging (by anyone) takes it out
of both counts for everyone. Critical alarms are also counted apart, so the SIP bridge can fill
an RFC 3842 ``new/old (new-urgent/old-urgent)`` line from :meth:`AlarmMailbox.detailed_counts`.
Delivery is per alarm, not per change: a clear does not make a delivered alarm new again.

*Durability.* WAL mode with ``synchronous=FULL``: every call that changes something is one
transaction, fsynced before it returns, so once :meth:`AlarmMailbox.record` returned, the alarm
survives kill -9 and a power cut (given storage that honours fsync). A failed write (disk full)
rolls back the whole call and raises :class:`AlarmError`; the file stays consistent.

*Permissions.* The file is created 0600 (tightened if it exists), and so are its ``-wal`` and
``-shm`` files. One connection, used from one thread (the asyncio loop); each call is short.
"""

# SQL is assembled only from the constant fragments below; values are always bound parameters.
# ruff: noqa: S608

from __future__ import annotations

import math
import re
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, get_args

from ncap.errors import NcapError
from ncap.files import PrivateDatabase

if TYPE_CHECKING:
    from ncap.sensors import Reading

__all__ = [
    "DEFAULT_RETENTION",
    "SCHEMA_VERSION",
    "Alarm",
    "AlarmChange",
    "AlarmCounts",
    "AlarmError",
    "AlarmEvaluator",
    "AlarmMailbox",
    "AlarmRule",
    "ChangeKind",
    "Direction",
    "InvalidAlarmRule",
    "Severity",
    "format_alarm",
    "format_summary",
]

Severity = Literal["warning", "critical"]
Direction = Literal["above", "below"]
ChangeKind = Literal["raised", "cleared"]
_SEVERITIES: tuple[str, ...] = get_args(Severity)

SCHEMA_VERSION = 1
DEFAULT_RETENTION = timedelta(days=30)
MAX_LISTING = 1000
_MAX_NAME = 64
_MAX_ID = 256
_MAX_ADDRESS = 3071
_RULE_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_URI_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class AlarmError(NcapError):
    """The alarm mailbox failed (database error, closed) or was misused."""


class InvalidAlarmRule(AlarmError, ValueError):
    """An alarm rule (or a set of rules) is invalid. A ``ValueError`` too, for config models."""


# -- rules ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlarmRule:
    """One threshold alarm on ``node``'s ``field``; validated on construction."""

    name: str
    node: str
    field: str
    above: float | None = None
    below: float | None = None
    hysteresis: float = 0.0
    severity: Severity = "warning"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _RULE_NAME.fullmatch(self.name):
            raise InvalidAlarmRule(f"alarm name {self.name!r}: use letters, digits, '_', '.', '-'")
        if len(self.name) > _MAX_NAME:
            raise InvalidAlarmRule(f"alarm name {self.name!r}: longer than {_MAX_NAME}")
        _check_identifier(self.name, "node", self.node, spaces=False)
        _check_identifier(self.name, "field", self.field, spaces=True)
        above = _optional_finite(self.name, "above", self.above)
        below = _optional_finite(self.name, "below", self.below)
        hysteresis = _optional_finite(self.name, "hysteresis", self.hysteresis)
        if above is None and below is None:
            raise InvalidAlarmRule(f"alarm {self.name}: give 'above', 'below' or both")
        if hysteresis is None or hysteresis < 0:
            raise InvalidAlarmRule(f"alarm {self.name}: hysteresis must be >= 0")
        # Otherwise a raised alarm could never find a value that clears it.
        if above is not None and below is not None and above - below <= 2 * hysteresis:
            raise InvalidAlarmRule(
                f"alarm {self.name}: 'below' ({below:g}) must be under 'above' ({above:g}) "
                f"by more than twice the hysteresis ({hysteresis:g})"
            )
        if self.severity not in _SEVERITIES:
            raise InvalidAlarmRule(f"alarm {self.name}: severity must be warning or critical")
        object.__setattr__(self, "above", above)
        object.__setattr__(self, "below", below)
        object.__setattr__(self, "hysteresis", hysteresis)

    def breached(self, value: float) -> Direction | None:
        """Which threshold ``value`` is strictly beyond, if any."""
        if self.above is not None and value > self.above:
            return "above"
        if self.below is not None and value < self.below:
            return "below"
        return None

    def back_inside(self, value: float) -> bool:
        """Whether ``value`` is inside the thresholds by at least the hysteresis."""
        if self.above is not None and value > self.above - self.hysteresis:
            return False
        return not (self.below is not None and value < self.below + self.hysteresis)

    def threshold(self, direction: Direction) -> float:
        """The threshold for ``direction`` (the other one if the rule has no such threshold)."""
        wanted, other = (
            (self.above, self.below) if direction == "above" else (self.below, self.above)
        )
        chosen = wanted if wanted is not None else other
        assert chosen is not None  # a rule always has a threshold
        return chosen


def _check_identifier(rule: str, what: str, value: object, *, spaces: bool) -> None:
    if not isinstance(value, str) or not value or len(value) > _MAX_ID:
        raise InvalidAlarmRule(f"alarm {rule}: {what} must be 1 to {_MAX_ID} characters")
    if value != value.strip() or any(not c.isprintable() for c in value):
        raise InvalidAlarmRule(f"alarm {rule}: {what} {value!r} has unprintable characters")
    if not spaces and any(c.isspace() for c in value):
        raise InvalidAlarmRule(f"alarm {rule}: {what} {value!r} has spaces")


def _optional_finite(rule: str, what: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidAlarmRule(f"alarm {rule}: {what} must be a finite number, not {value!r}")
    return float(value)


# -- the evaluator ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlarmChange:
    """A rule was raised or cleared by one observed value.

    ``threshold`` is the threshold the alarm was raised for (also on its clear); ``text`` reads
    like ``env-sensor temperature 31.2 °C above 30`` or ``... 28.1 °C back below 30``.
    """

    kind: ChangeKind
    rule: AlarmRule
    direction: Direction
    value: float
    threshold: float
    unit: str
    timestamp: datetime
    text: str

    @property
    def node(self) -> str:
        return self.rule.node

    @property
    def field(self) -> str:
        return self.rule.field


class AlarmEvaluator:
    """Turns observed values into raise and clear changes; pure apart from its in-memory state.

    ``active`` lists open alarms (e.g. ``mailbox.active()``) whose rules start raised; entries
    for rules that no longer exist are ignored.
    """

    def __init__(self, rules: Iterable[AlarmRule], *, active: Iterable[Alarm] = ()) -> None:
        self._rules = tuple(rules)
        by_name: dict[str, AlarmRule] = {}
        self._watching: dict[tuple[str, str], list[AlarmRule]] = {}
        for rule in self._rules:
            if not isinstance(rule, AlarmRule):
                raise InvalidAlarmRule(f"not an alarm rule: {rule!r}")
            if rule.name in by_name:
                raise InvalidAlarmRule(f"two alarms are named {rule.name!r}")
            by_name[rule.name] = rule
            self._watching.setdefault((rule.node, rule.field), []).append(rule)
        self._by_name = by_name
        # The direction each raised rule was raised for.
        self._raised: dict[str, Direction] = {}
        for alarm in active:
            if alarm.rule in by_name and alarm.cleared_at is None:
                self._raised[alarm.rule] = alarm.direction

    @property
    def rules(self) -> tuple[AlarmRule, ...]:
        return self._rules

    def is_raised(self, rule_name: str) -> bool:
        return rule_name in self._raised

    def watches(self, node_id: str, field: str) -> bool:
        """Whether any rule looks at this field (callers may skip the others cheaply)."""
        return (node_id, field) in self._watching

    def observe(
        self,
        node_id: str,
        field: str,
        value: float,
        timestamp: datetime,
        unit: str = "",
        *,
        decimals: int | None = None,
    ) -> list[AlarmChange]:
        """The changes (at most one per rule) caused by one value of ``node_id``'s ``field``.

        ``unit`` and ``decimals`` only shape the text (``decimals=None``: up to 10 significant
        digits).
        """
        rules = self._watching.get((node_id, field))
        if not rules or not math.isfinite(value):
            return []
        changes: list[AlarmChange] = []
        for rule in rules:
            raised_for = self._raised.get(rule.name)
            if raised_for is None:
                direction = rule.breached(value)
                if direction is None:
                    continue
                self._raised[rule.name] = direction
                kind: ChangeKind = "raised"
            elif rule.back_inside(value):
                del self._raised[rule.name]
                direction, kind = raised_for, "cleared"
            else:
                continue
            threshold = rule.threshold(direction)
            changes.append(
                AlarmChange(
                    kind=kind,
                    rule=rule,
                    direction=direction,
                    value=value,
                    threshold=threshold,
                    unit=unit,
                    timestamp=timestamp,
                    text=_change_text(rule, kind, direction, value, threshold, unit, decimals),
                )
            )
        return changes

    def observe_reading(self, reading: Reading) -> list[AlarmChange]:
        """:meth:`observe` for a :class:`ncap.sensors.Reading`."""
        return self.observe(
            reading.node,
            reading.field,
            reading.value,
            reading.timestamp,
            reading.unit,
            decimals=reading.decimals,
        )


def _change_text(
    rule: AlarmRule,
    kind: ChangeKind,
    direction: Direction,
    value: float,
    threshold: float,
    unit: str,
    decimals: int | None,
) -> str:
    number = _number(value) if decimals is None else f"{value:.{max(decimals, 0)}f}"
    measured = f"{rule.node} {rule.field} {number}" + (f" {unit}" if unit else "")
    if kind == "raised":
        return f"{measured} {direction} {_number(threshold)}"
    if rule.above is not None and rule.below is not None:
        return f"{measured} back between {_number(rule.below)} and {_number(rule.above)}"
    back = "below" if direction == "above" else "above"
    return f"{measured} back {back} {_number(threshold)}"


def _number(value: float) -> str:
    return f"{value:.10g}"


# -- the mailbox ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Alarm:
    """One stored alarm: raised once, cleared at most once, acknowledged at most once."""

    id: int
    rule: str
    node: str
    field: str
    severity: Severity
    direction: Direction
    value: float
    threshold: float
    unit: str
    text: str
    raised_at: datetime
    cleared_at: datetime | None
    cleared_value: float | None
    acked_by: str | None
    acked_at: datetime | None

    @property
    def state(self) -> Literal["raised", "cleared"]:
        return "raised" if self.cleared_at is None else "cleared"

    @property
    def acknowledged(self) -> bool:
        return self.acked_at is not None


class AlarmCounts(NamedTuple):
    """Unacknowledged alarms for one recipient; the urgent ones (critical) are subsets."""

    new: int
    old: int
    new_urgent: int
    old_urgent: int


_SCHEMA = """
CREATE TABLE alarm (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: ids are never reused
    rule TEXT NOT NULL,
    node TEXT NOT NULL,
    field TEXT NOT NULL,
    severity TEXT NOT NULL,
    direction TEXT NOT NULL,
    value REAL NOT NULL,
    threshold REAL NOT NULL,
    unit TEXT NOT NULL,
    text TEXT NOT NULL,
    raised_us INTEGER NOT NULL,            -- microseconds since the epoch, UTC
    cleared_us INTEGER,
    cleared_value REAL,
    acked_by TEXT,
    acked_us INTEGER
);
-- At most one open alarm per rule; also how a clear finds it.
CREATE UNIQUE INDEX alarm_open ON alarm (rule) WHERE cleared_us IS NULL;
CREATE INDEX alarm_unacked ON alarm (id) WHERE acked_us IS NULL;
CREATE TABLE delivery (
    alarm_id INTEGER NOT NULL REFERENCES alarm (id) ON DELETE CASCADE,
    recipient TEXT NOT NULL,
    delivered_us INTEGER NOT NULL,
    PRIMARY KEY (recipient, alarm_id)
) WITHOUT ROWID;
CREATE INDEX delivery_alarm ON delivery (alarm_id);
"""

_COLUMNS = (
    "id, rule, node, field, severity, direction, value, threshold, unit, text, raised_us, "
    "cleared_us, cleared_value, acked_by, acked_us"
)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class AlarmMailbox(PrivateDatabase):
    """The durable alarm store; see the module docstring for the rules."""

    error = AlarmError
    what = "alarm mailbox"

    def __init__(
        self,
        path: Path,
        *,
        retention: timedelta = DEFAULT_RETENTION,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        if retention < timedelta(0):
            raise AlarmError("the alarm retention cannot be negative")
        self._retention = retention
        self._clock = clock
        super().__init__(path, schema=_SCHEMA, version=SCHEMA_VERSION, synchronous="FULL")
        try:
            self.purge()
        except BaseException:
            self.close()
            raise

    # -- recording ------------------------------------------------------------------------

    def record(self, change: AlarmChange) -> Alarm | None:
        """Store a change; answer the alarm it opened or closed.

        A raise while the rule already has an open alarm answers that alarm unchanged (e.g. a
        restarted evaluator that was not given the open alarms). A clear closes the rule's open
        alarm; with no open alarm there is nothing to close and the answer is None.
        Acknowledged, cleared alarms past the retention are deleted on the way.
        """
        at = _micros(change.timestamp)
        rule = change.rule
        with self._write() as tx:
            if change.kind == "raised":
                row = tx.execute(
                    f"SELECT {_COLUMNS} FROM alarm WHERE rule = ? AND cleared_us IS NULL",
                    (rule.name,),
                ).fetchone()
                if row is None:
                    row = tx.execute(
                        "INSERT INTO alarm (rule, node, field, severity, direction, value, "
                        "threshold, unit, text, raised_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                        f"RETURNING {_COLUMNS}",
                        (
                            rule.name,
                            rule.node,
                            rule.field,
                            rule.severity,
                            change.direction,
                            change.value,
                            change.threshold,
                            change.unit,
                            change.text,
                            at,
                        ),
                    ).fetchone()
            else:
                row = tx.execute(
                    "UPDATE alarm SET cleared_us = max(?, raised_us), cleared_value = ? "
                    f"WHERE rule = ? AND cleared_us IS NULL RETURNING {_COLUMNS}",
                    (at, change.value, rule.name),
                ).fetchone()
            self._purge(tx)
        return None if row is None else _alarm(row)

    # -- recipients -----------------------------------------------------------------------

    def mark_delivered(self, recipient: str, ids: Iterable[int]) -> int:
        """Note that these alarms reached ``recipient``; answer how many were new to them.

        Unknown and acknowledged ids are skipped.
        """
        who = _address(recipient)
        wanted = sorted({_alarm_id(alarm_id) for alarm_id in ids})
        now = _micros(self._clock())
        marked = 0
        with self._write() as tx:
            for alarm_id in wanted:
                marked += tx.execute(
                    "INSERT OR IGNORE INTO delivery (alarm_id, recipient, delivered_us) "
                    "SELECT id, ?, ? FROM alarm WHERE id = ? AND acked_us IS NULL",
                    (who, now, alarm_id),
                ).rowcount
        return marked

    def undelivered(self, recipient: str) -> list[Alarm]:
        """The alarms that are new for ``recipient``, oldest first."""
        who = _address(recipient)
        with self._read() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM alarm WHERE acked_us IS NULL AND NOT EXISTS "
                "(SELECT 1 FROM delivery WHERE recipient = ? AND alarm_id = alarm.id) "
                "ORDER BY id",
                (who,),
            ).fetchall()
        return [_alarm(row) for row in rows]

    def counts(self, recipient: str) -> tuple[int, int]:
        """``(new, old)`` for ``recipient``: for "2 new, 1 old" and RFC 3842 ``new/old``."""
        detailed = self.detailed_counts(recipient)
        return detailed.new, detailed.old

    def detailed_counts(self, recipient: str) -> AlarmCounts:
        """New and old counts with their critical (RFC 3842 urgent) subsets."""
        who = _address(recipient)
        with self._read() as db:
            row = db.execute(
                "SELECT count(*) - count(delivery.alarm_id), count(delivery.alarm_id), "
                "  total(delivery.alarm_id IS NULL AND severity = 'critical'), "
                "  total(delivery.alarm_id IS NOT NULL AND severity = 'critical') "
                "FROM alarm LEFT JOIN delivery "
                "  ON delivery.recipient = ? AND delivery.alarm_id = alarm.id "
                "WHERE alarm.acked_us IS NULL",
                (who,),
            ).fetchone()
        return AlarmCounts(int(row[0]), int(row[1]), int(row[2]), int(row[3]))

    def acknowledge(self, alarm_id: int, by: str) -> Alarm | None:
        """Acknowledge an alarm for everyone; None if there is no such alarm.

        Idempotent: acknowledging again answers the alarm as first acknowledged.
        """
        number = _alarm_id(alarm_id)
        who = _address(by)
        now = _micros(self._clock())
        with self._write() as tx:
            tx.execute(
                "UPDATE alarm SET acked_by = ?, acked_us = ? WHERE id = ? AND acked_us IS NULL",
                (who, now, number),
            )
            # Acknowledged alarms are neither new nor old: their delivery marks are moot.
            tx.execute("DELETE FROM delivery WHERE alarm_id = ?", (number,))
            row = tx.execute(
                f"SELECT {_COLUMNS} FROM alarm WHERE id = ?",
                (number,),
            ).fetchone()
        return None if row is None else _alarm(row)

    # -- queries --------------------------------------------------------------------------

    def get(self, alarm_id: int) -> Alarm | None:
        number = _alarm_id(alarm_id)
        with self._read() as db:
            row = db.execute(
                f"SELECT {_COLUMNS} FROM alarm WHERE id = ?",
                (number,),
            ).fetchone()
        return None if row is None else _alarm(row)

    def active(self) -> list[Alarm]:
        """The open alarms (raised, not cleared, acknowledged or not), oldest first."""
        return self._select("WHERE cleared_us IS NULL ORDER BY id")

    def unacknowledged(self) -> list[Alarm]:
        """Every alarm nobody acknowledged yet, oldest first."""
        return self._select("WHERE acked_us IS NULL ORDER BY id")

    def listing(self, limit: int = 20) -> list[Alarm]:
        """The ``limit`` most recent alarms, most recent first."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= MAX_LISTING:
            raise AlarmError(f"listing limit must be 1 to {MAX_LISTING}, not {limit!r}")
        return self._select("ORDER BY id DESC LIMIT ?", (limit,))

    def any_active_unacked(self) -> bool:
        """Whether some alarm is raised and not acknowledged (the thing's presence: alarm)."""
        with self._read() as db:
            row = db.execute(
                "SELECT EXISTS (SELECT 1 FROM alarm WHERE cleared_us IS NULL AND acked_us IS NULL)"
            ).fetchone()
        return bool(row[0])

    def _select(self, tail: str, args: Sequence[Any] = ()) -> list[Alarm]:
        with self._read() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM alarm {tail}", args).fetchall()
        return [_alarm(row) for row in rows]

    # -- retention ------------------------------------------------------------------------

    def purge(self) -> int:
        """Delete acknowledged, cleared alarms closed longer ago than the retention."""
        with self._write() as tx:
            return self._purge(tx)

    def _purge(self, tx: sqlite3.Connection) -> int:
        cutoff = _micros(self._clock() - self._retention)
        return tx.execute(
            "DELETE FROM alarm WHERE acked_us IS NOT NULL AND cleared_us IS NOT NULL "
            "AND max(acked_us, cleared_us) < ?",
            (cutoff,),
        ).rowcount


def _alarm(row: Sequence[Any]) -> Alarm:
    return Alarm(
        id=row[0],
        rule=row[1],
        node=row[2],
        field=row[3],
        severity=row[4],
        direction=row[5],
        value=row[6],
        threshold=row[7],
        unit=row[8],
        text=row[9],
        raised_at=_from_micros(row[10]),
        cleared_at=None if row[11] is None else _from_micros(row[11]),
        cleared_value=row[12],
        acked_by=row[13],
        acked_at=None if row[14] is None else _from_micros(row[14]),
    )


def _micros(moment: datetime) -> int:
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        raise AlarmError(f"alarm times must be timezone-aware datetimes, not {moment!r}")
    # Integer microseconds round-trip exactly, unlike float seconds.
    return (moment - _EPOCH) // _MICROSECOND


def _from_micros(micros: int) -> datetime:
    return _EPOCH + micros * _MICROSECOND


def _alarm_id(alarm_id: object) -> int:
    if isinstance(alarm_id, bool) or not isinstance(alarm_id, int):
        raise AlarmError(f"alarm ids are integers, not {alarm_id!r}")
    return alarm_id


def _address(address: object) -> str:
    """A recipient as stored: a bare JID lower-cased, or a URI with its scheme lower-cased.

    SIP URIs are otherwise kept as given (their user part is case-sensitive); callers pass one
    canonical form per person.
    """
    if not isinstance(address, str) or not address or len(address) > _MAX_ADDRESS:
        raise AlarmError(f"not a recipient address: {address!r}")
    if any(c.isspace() or not c.isprintable() for c in address):
        raise AlarmError(f"not a recipient address: {address!r}")
    scheme = _URI_SCHEME.match(address)
    if scheme:
        return scheme.group().lower() + address[scheme.end() :]
    local, at, domain = address.rpartition("@")
    if "/" in address or "@" in local or (at and not local) or not domain:
        raise AlarmError(f"not a bare JID or URI: {address!r}")
    return address.lower()


# -- chat formatting --------------------------------------------------------------------------


def format_alarm(alarm: Alarm, *, now: datetime | None = None) -> str:
    """One chat line, e.g. ``#12 CRITICAL env-sensor temperature 31.2 °C above 30 since 10:02Z
    (cleared 10:05Z) [acked by owner@x]``.

    Times are UTC; those not on ``now``'s (UTC) day also show the date.
    """
    today = (now if now is not None else _utc_now()).astimezone(UTC).date()
    line = (
        f"#{alarm.id} {alarm.severity.upper()} {alarm.text} since {_when(alarm.raised_at, today)}"
    )
    if alarm.cleared_at is not None:
        line += f" (cleared {_when(alarm.cleared_at, today)})"
    if alarm.acked_by is not None:
        line += f" [acked by {alarm.acked_by}]"
    return line


def _when(moment: datetime, today: date) -> str:
    utc = moment.astimezone(UTC)
    return utc.strftime("%H:%MZ") if utc.date() == today else utc.strftime("%Y-%m-%d %H:%MZ")


def format_summary(new: int, old: int) -> str:
    """What waits for a recipient, e.g. when they come online."""
    if new <= 0 and old <= 0:
        return "No alarms waiting."
    parts = []
    if new > 0:
        parts.append(f"{new} new alarm{'s' if new != 1 else ''}")
    if old > 0:
        parts.append(
            f"{old} waiting for acknowledgement"
            if parts
            else f"{old} alarm{'s' if old != 1 else ''} waiting for acknowledgement"
        )
    hint = "Send 'alarms' to list them, 'ack ID' to acknowledge."
    if new + old == 1:
        hint = "Send 'alarms' to list it, 'ack ID' to acknowledge."
    return f"{', '.join(parts)}. {hint}"
