"""The chat command language people use from Gajim, Conversations or any client.

Pure text in, text out; transports (XMPP chat, later SIP MESSAGE) call
`ChatCommands.handle` and send back what it returns.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from statistics import fmean

from ncap.errors import NcapError
from ncap.sensors import Reading, SensorTree

HELP = """Commands:
  help                       this text
  list                       the nodes (TIMs) and their fields
  read [NODE [FIELD...]]     read sensors now (every node when none is named)
  history NODE FIELD [1h]    what the field read lately (s, m, h or d)
  set NODE PARAMETER VALUE   change an actuator, e.g. set relay/relay relay true
  alarms                     alarms that are active or waiting for acknowledgement
  ack ID                     acknowledge alarm ID
  maintenance on|off         show the thing as under maintenance (owner only)"""

MAX_COMMAND_LENGTH = 1024

#: ``async (node id, field names asked) -> field names allowed (empty: all asked) or None``.
ReadAuthorizer = Callable[[str, Sequence[str]], Awaitable[tuple[str, ...] | None]]


async def read_anything(_node_id: str, _fields: Sequence[str]) -> tuple[str, ...] | None:
    return ()


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    timestamp: datetime
    value: str
    unit: str | None


@dataclass(frozen=True, slots=True)
class ChatSession:
    """What one requester may do, bound to the gateway's services (None: not available)."""

    may_read: ReadAuthorizer = read_anything
    #: ``(node, field, since) -> points`` after the read rights were checked.
    history: Callable[[str, str, datetime], Sequence[HistoryPoint]] | None = None
    #: ``async (node, parameter, value) -> answer``; decides control rights itself.
    control: Callable[[str, str, str], Awaitable[str]] | None = None
    alarms: Callable[[], str] | None = None
    ack: Callable[[int], str] | None = None
    maintenance: Callable[[bool], str] | None = None


MAX_PERIOD = timedelta(days=31)
HISTORY_LINES = 12
_PERIOD = re.compile(r"(\d{1,6})([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_period(text: str) -> timedelta | None:
    match = _PERIOD.fullmatch(text.strip().lower())
    if match is None:
        return None
    period = timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    return period if timedelta(0) < period <= MAX_PERIOD else None


class ChatCommands:
    def __init__(self, tree: SensorTree) -> None:
        self._tree = tree

    async def handle(self, text: str, session: ChatSession | None = None) -> str:
        """The answer to one command, with the rights and services of ``session``."""
        session = session or ChatSession()
        if len(text) > MAX_COMMAND_LENGTH:
            return "That message is too long to be a command. Send 'help' for the commands."
        try:
            words = shlex.split(text.strip())
        except ValueError:
            words = text.split()
        if not words:
            return HELP
        verb, args = words[0].lower(), words[1:]
        if verb in {"help", "?"}:
            return HELP
        if verb == "list":
            return self._list()
        if verb == "read":
            return await self._read(args, session.may_read)
        if verb == "history":
            return await self._history(args, session)
        if verb == "set":
            if len(args) != 3:
                return "Usage: set NODE PARAMETER VALUE, e.g. set relay/relay relay true"
            if session.control is None:
                return "Control is not available here."
            return await session.control(*args)
        if verb == "alarms":
            return session.alarms() if session.alarms else "Alarms are not available here."
        if verb == "ack":
            if len(args) != 1 or not args[0].lstrip("#").isdigit():
                return "Usage: ack ID (the number 'alarms' shows)"
            if session.ack is None:
                return "Alarms are not available here."
            return session.ack(int(args[0].lstrip("#")))
        if verb == "maintenance":
            if len(args) != 1 or args[0].lower() not in ("on", "off"):
                return "Usage: maintenance on|off"
            if session.maintenance is None:
                return "Only the owner may change maintenance mode."
            return session.maintenance(args[0].lower() == "on")
        return f"Unknown command {verb!r}. Send 'help' for the commands."

    async def _history(self, args: Sequence[str], session: ChatSession) -> str:
        if len(args) not in (2, 3):
            return "Usage: history NODE FIELD [PERIOD], e.g. history env-sensor temperature 1h"
        node_id, field = args[0], args[1]
        period = parse_period(args[2] if len(args) == 3 else "1h")
        if period is None:
            return "The period is a number and s, m, h or d, at most 31d (e.g. 30m, 2h)."
        if session.history is None:
            return "History is not available here."
        allowed = await session.may_read(node_id, [field])
        if allowed is None or (allowed and field not in allowed):
            return f"{node_id}: you may not read {field}"
        since = datetime.now(UTC) - period
        return format_history(
            node_id,
            field,
            args[2] if len(args) == 3 else "1h",
            session.history(node_id, field, since),
        )

    def _list(self) -> str:
        if not self._tree.node_ids:
            return "No nodes are configured."
        lines = []
        for node in self._tree.nodes():
            info = node.info
            if info is None:
                lines.append(f"{node.node_id} (not available)")
                continue
            lines.append(f"{node.node_id} ({info.name})")
            lines.extend(
                f"  {channel.name} [{channel.unit or '-'}] {channel.kind.name.lower()}"
                for channel in info.channels
            )
        return "\n".join(lines)

    async def _read(self, args: Sequence[str], may_read: ReadAuthorizer) -> str:
        if args:
            node_id, field_names = args[0], args[1:]
            if node_id not in self._tree:
                return f"No node {node_id!r}. Send 'list' to see the nodes."
            node_ids = [node_id]
        else:
            node_ids, field_names = self._tree.node_ids, []
        blocks = []
        for node_id in node_ids:
            allowed = await may_read(node_id, field_names)
            if allowed is None:
                blocks.append(f"{node_id}: you may not read this node")
                continue
            try:
                readings = await self._tree.node(node_id).read(allowed or field_names)
            except NcapError as err:
                blocks.append(f"{node_id}: {err}")
                continue
            blocks.append(format_readings(node_id, readings))
        return "\n".join(blocks) if blocks else "No nodes are configured."


def format_history(node_id: str, field: str, period: str, points: Sequence[HistoryPoint]) -> str:
    """A summary line and the latest values, oldest first."""
    if not points:
        return f"{node_id} {field}: nothing recorded in the last {period}"
    unit = f" {points[-1].unit}" if points[-1].unit else ""
    numbers = []
    for point in points:
        try:
            numbers.append(float(point.value))
        except ValueError:
            continue
    head = f"{node_id} {field}, last {period}: {len(points)} values"
    if numbers:
        head += f", min {min(numbers):g} max {max(numbers):g} mean {fmean(numbers):.4g}{unit}"
    lines = [head]
    shown = points[-HISTORY_LINES:]
    if len(points) > len(shown):
        lines.append(f"  … {len(points) - len(shown)} earlier values")
    lines.extend(f"  {p.timestamp.astimezone(UTC):%H:%M:%S}Z  {p.value}{unit}" for p in shown)
    return "\n".join(lines)


def format_readings(node_id: str, readings: Sequence[Reading]) -> str:
    """A small aligned table that reads well in a chat window."""
    if not readings:
        return f"{node_id}: no matching fields"
    stamp = max(reading.timestamp for reading in readings)
    width = max(len(reading.field) for reading in readings)
    lines = [f"{node_id} at {stamp:%Y-%m-%d %H:%M:%S} UTC"]
    lines.extend(f"  {reading.field.ljust(width)}  {reading.text}" for reading in readings)
    return "\n".join(lines)
