"""Where readings go once read: the journal, alarms, event subscribers and the PubSub uplink.

:class:`Uplink` owns the durable state of the gateway (``journal.sqlite``, ``alarms.sqlite``
in the state directory) and the tasks that move it on: the group commit of the journal and the
publisher. Every reading gets a journal sequence number before anyone else sees it; alarms are
evaluated on the same readings, kept in the mailbox until each recipient has had them, and
shown in the thing's presence.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from slixmpp import JID, Presence

from ncap.alarms import (
    Alarm,
    AlarmChange,
    AlarmEvaluator,
    AlarmMailbox,
    AlarmRule,
    InvalidAlarmRule,
    format_alarm,
    format_summary,
)
from ncap.chat import HistoryPoint
from ncap.config import Config
from ncap.errors import ConfigError
from ncap.journal import Journal, JournalError
from ncap.metrics import Metrics
from ncap.sensors import Reading
from ncap.xmpp.publisher import Publisher
from ncap.xmpp.thing import ThingClient

_LOGGER = logging.getLogger(__name__)

ALARM_LIST_LIMIT = 20


class Uplink:
    def __init__(
        self, config: Config, client: ThingClient, state_dir: Path, metrics: Metrics
    ) -> None:
        self._config = config
        self._metrics = metrics
        self._client = client
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        journal = config.journal
        self.journal = Journal(
            state_dir / "journal.sqlite",
            max_entries=journal.max_entries,
            history_s=journal.history_days * 86400,
        )
        self.mailbox = AlarmMailbox(state_dir / "alarms.sqlite")
        rules = []
        for index, section in enumerate(config.alarm):
            # Readings belong to the TIM node; "TIM/FIELD" names the same field.
            node = section.node.removesuffix(f"/{section.field}")
            try:
                rules.append(
                    AlarmRule(
                        section.name,
                        node,
                        section.field,
                        section.above,
                        section.below,
                        section.hysteresis,
                        section.severity,
                    )
                )
            except InvalidAlarmRule as err:
                raise ConfigError(f"alarm[{index}]", str(err)) from None
        self.evaluator = AlarmEvaluator(rules, active=self.mailbox.active())
        publish = config.publish
        self.publisher: Publisher | None = None
        if publish.enabled:
            self.publisher = Publisher(
                client,
                self.journal,
                online=client.online,
                offline=client.offline,
                service=publish.service,
                node=publish.node,
                members=self._members,
                batch_max=publish.batch_max,
                window=publish.window,
                max_items=publish.max_items,
                on_acked=metrics.readings_acked.inc,
                on_published=metrics.readings_published.inc,
            )
        self._tasks: list[asyncio.Task[None]] = []
        self._maintenance = False
        self._dropped_seen = self.journal.stats().dropped_readings
        metrics.journal_depth.set_function(lambda: self.journal.stats().depth)
        metrics.journal_bytes.set_function(lambda: self.journal.stats().size_bytes)
        metrics.uplink_online.set_function(lambda: int(client.online.is_set()))
        metrics.subscribers.set_function(lambda: len(client.events.subscriptions))
        client.services = self
        client.add_event_handler("presence_available", self._on_available)
        client.add_event_handler("session_secured", self._on_session)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._commit_loop(), name="journal-commit"))
        if self.publisher is not None:
            self._tasks.append(loop.create_task(self.publisher.run(), name="pubsub-publish"))
        self._show_state()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        try:
            await self.journal.commit()
        except JournalError as err:
            _LOGGER.error("journal: last commit failed: %s", err)
        self.journal.close()
        self.mailbox.close()

    async def _commit_loop(self) -> None:
        interval = self._config.journal.commit_interval_s
        committed = -1
        while True:
            await asyncio.sleep(interval)
            try:
                seq = await self.journal.commit()
            except JournalError as err:
                _LOGGER.error("journal: %s", err)
                continue
            self._count_drops()
            if seq != committed:
                committed = seq
                if self.publisher is not None:
                    self.publisher.wake()

    def _count_drops(self) -> None:
        dropped = self.journal.stats().dropped_readings
        if dropped > self._dropped_seen:
            self._metrics.readings_dropped.inc(dropped - self._dropped_seen)
            self._dropped_seen = dropped

    # -- readings in ----------------------------------------------------------------------------

    def record(self, readings: Sequence[Reading]) -> None:
        """Fresh readings of one TIM: into the journal; alarms evaluated."""
        self._metrics.readings_in.inc(len(readings))
        for reading in readings:
            value = f"{reading.value:.{reading.decimals}f}"
            self.journal.append(
                "reading",
                reading.node,
                reading.field,
                value,
                reading.unit or None,
                reading.timestamp,
            )
            for change in self.evaluator.observe_reading(reading):
                self._alarm(change)

    def _alarm(self, change: AlarmChange) -> None:
        alarm = self.mailbox.record(change)
        if alarm is None:
            return
        extra = {"id": alarm.id, "state": change.kind, "text": change.text}
        self.journal.append(
            "alarm",
            change.node,
            change.field,
            repr(change.value),
            change.unit or None,
            change.timestamp,
            json.dumps(extra),
        )
        _LOGGER.warning("alarm #%d %s: %s", alarm.id, change.kind, change.text)
        if change.kind == "raised":
            self._metrics.alarms_raised.inc()
        if change.kind == "raised":
            for recipient in self._recipients():
                if self._is_available(recipient):
                    self._deliver(recipient, [alarm])
        self._show_state()

    # -- alarm delivery -----------------------------------------------------------------------

    def _members(self) -> Sequence[str]:
        owner = self._client.owner
        members = list(self._config.publish.members)
        return [owner, *members] if owner else members

    def _recipients(self) -> list[str]:
        owner = self._client.owner
        if owner is not None:
            return [owner]
        roster = self._client.client_roster
        return [jid for jid in roster if self._client.is_friend(jid)]

    def _is_available(self, bare: str) -> bool:
        roster = self._client.client_roster
        return roster.has_jid(bare) and bool(roster.presence(JID(bare)))

    def _deliver(self, recipient: str, alarms: Sequence[Alarm]) -> None:
        _LOGGER.debug("alarms %s to %s", [a.id for a in alarms], recipient)
        for alarm in alarms:
            self._client.send_message(mto=JID(recipient), mbody=format_alarm(alarm), mtype="chat")
        self.mailbox.mark_delivered(recipient, [alarm.id for alarm in alarms])

    def _on_available(self, presence: Presence) -> None:
        bare = JID(presence["from"]).bare
        if bare not in self._recipients():
            _LOGGER.debug("%s is online; not an alarm recipient", bare)
            return
        waiting = self.mailbox.undelivered(bare)
        _LOGGER.debug("%s is online; %d alarms waiting", bare, len(waiting))
        if not waiting:
            return
        new, old = self.mailbox.counts(bare)
        self._client.send_message(mto=JID(bare), mbody=format_summary(new, old), mtype="chat")
        self._deliver(bare, waiting)

    def _on_session(self, _event: object) -> None:
        self._show_state()

    def _show_state(self) -> None:
        """Presence: maintenance wins (the owner said so), then an unacknowledged alarm."""
        active = [a for a in self.mailbox.active() if not a.acknowledged]
        if self._maintenance:
            self._client.set_state("maintenance", "maintenance")
        elif active:
            self._client.set_state("alarm", f"ALARM: {active[-1].text}")
        else:
            self._client.set_state("online")

    def set_maintenance(self, on: bool, by: str) -> str:
        self._maintenance = on
        _LOGGER.warning("maintenance %s (by %s)", "on" if on else "off", by)
        self._show_state()
        return "Maintenance mode on." if on else "Maintenance mode off."

    # -- what the chat asks (GatewayServices) -------------------------------------------------

    def history(self, node: str, field: str, since: datetime) -> Sequence[HistoryPoint]:
        return [
            HistoryPoint(entry.timestamp, entry.value, entry.unit)
            for entry in self.journal.history(node, field, since)
        ]

    def alarms_text(self, recipient: str) -> str:
        listing = [a for a in self.mailbox.listing(ALARM_LIST_LIMIT) if not a.acknowledged]
        new, old = self.mailbox.counts(recipient)
        if not listing:
            return "No alarms are waiting."
        self.mailbox.mark_delivered(recipient, [alarm.id for alarm in listing])
        return "\n".join([format_summary(new, old), *map(format_alarm, listing)])

    def acknowledge(self, alarm_id: int, by: str) -> str:
        alarm = self.mailbox.acknowledge(alarm_id, by)
        if alarm is None:
            return f"There is no alarm #{alarm_id}."
        self._show_state()
        return f"Acknowledged: {format_alarm(alarm)}"

    def alarm_choices(self, recipient: str) -> Sequence[tuple[str, str]]:
        return [(str(a.id), format_alarm(a)) for a in self.mailbox.unacknowledged()]
