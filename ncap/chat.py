"""The chat command language people use from Gajim, Conversations or any client.

Pure text in, text out; transports (XMPP chat, later SIP MESSAGE) call
`ChatCommands.handle` and send back what it returns.
"""

from __future__ import annotations

import shlex
from collections.abc import Awaitable, Callable, Sequence

from ncap.errors import NcapError
from ncap.sensors import Reading, SensorTree

HELP = """Commands:
  help                     this text
  list                     the nodes (TIMs) and their fields
  read [NODE [FIELD...]]   read sensors now (every node when none is named)"""

MAX_COMMAND_LENGTH = 1024

#: ``async (node id, field names asked) -> field names allowed (empty: all asked) or None``.
ReadAuthorizer = Callable[[str, Sequence[str]], Awaitable[tuple[str, ...] | None]]


async def read_anything(_node_id: str, _fields: Sequence[str]) -> tuple[str, ...] | None:
    return ()


class ChatCommands:
    def __init__(self, tree: SensorTree) -> None:
        self._tree = tree

    async def handle(self, text: str, may_read: ReadAuthorizer = read_anything) -> str:
        """The answer to one command; ``may_read`` decides, node by node, what is read."""
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
            return await self._read(args, may_read)
        return f"Unknown command {verb!r}. Send 'help' for the commands."

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


def format_readings(node_id: str, readings: Sequence[Reading]) -> str:
    """A small aligned table that reads well in a chat window."""
    if not readings:
        return f"{node_id}: no matching fields"
    stamp = max(reading.timestamp for reading in readings)
    width = max(len(reading.field) for reading in readings)
    lines = [f"{node_id} at {stamp:%Y-%m-%d %H:%M:%S} UTC"]
    lines.extend(f"  {reading.field.ljust(width)}  {reading.text}" for reading in readings)
    return "\n".join(lines)
