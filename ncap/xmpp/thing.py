"""The thing's own XMPP client: presence, XEP-0323 readouts and chat commands.

Only roster friends (presence subscription ``both`` or ``from``) are served.
Subscription requests are declined automatically until provisioning decides
them, so nobody befriends the thing by asking.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

from slixmpp import JID, Message

from ncap.chat import ChatCommands
from ncap.errors import NcapError
from ncap.sensors import SensorTree
from ncap.xmpp.connection import SecureClient
from xep.xep_0323.model import Field, FieldType, NodeFailure, NodeFields, NodeRef, ReadoutRequest

_LOGGER = logging.getLogger(__name__)

FRIEND_SUBSCRIPTIONS = frozenset({"both", "from"})
KEEPALIVE_S = 60.0


class TreeSource:
    """Serves the sensor tree to the XEP-0323 plugin."""

    def __init__(self, tree: SensorTree) -> None:
        self._tree = tree

    def has_node(self, node: NodeRef) -> bool:
        return node.node_id in self._tree

    async def readout(self, request: ReadoutRequest) -> AsyncIterator[NodeFields | NodeFailure]:
        if request.types and not request.types & FieldType.MOMENTARY:
            return
        node_ids = [node.node_id for node in request.nodes] or self._tree.node_ids
        for node_id in node_ids:
            try:
                readings = await self._tree.node(node_id).read(request.field_names)
            except NcapError as err:
                yield NodeFailure(NodeRef(node_id), datetime.now(UTC), str(err))
                continue
            if not readings:
                continue
            yield NodeFields(
                NodeRef(node_id),
                max(reading.timestamp for reading in readings),
                tuple(
                    Field.numeric(reading.field, reading.value, reading.unit, reading.decimals)
                    for reading in readings
                ),
            )


class ThingClient(SecureClient):
    def __init__(
        self,
        jid: str,
        password: str,
        tree: SensorTree,
        *,
        ca_file: Path | None,
        server: str | None,
        port: int,
        reconnect_max_s: float = 60.0,
    ) -> None:
        super().__init__(
            jid,
            password,
            ca_file=ca_file,
            server=server,
            port=port,
            reconnect_max_s=reconnect_max_s,
            keepalive_s=KEEPALIVE_S,
        )
        self.auto_authorize = False
        self.auto_subscribe = False
        self._commands = ChatCommands(tree)
        self._reconnect_delay = 1.0
        self._reconnect_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._roster_loaded = False
        self.online = asyncio.Event()
        self.sensordata.source = TreeSource(tree)
        self.sensordata.authorize = self._may_read
        self.add_event_handler("session_secured", self._on_session_secured)
        self.add_event_handler("message", self._on_message)
        self.add_event_handler("disconnected", self._schedule_reconnect)
        # Retrying a refused password or an untrusted certificate soon cannot help and
        # may lock the account: wait the longest delay before trying again.
        self.add_event_handler("failed_all_auth", self._back_off_fully)
        self.add_event_handler("ssl_invalid_chain", self._back_off_fully)

    def is_friend(self, jid: JID | str) -> bool:
        bare = JID(jid).bare
        if not self._roster_loaded or not self.client_roster.has_jid(bare):
            return False
        return self.client_roster[bare]["subscription"] in FRIEND_SUBSCRIPTIONS

    async def stop(self) -> None:
        self._stopping = True
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
        self.cancel_connection_attempt()
        if self.transport is not None:
            await self.disconnect(wait=2.0, reason="NCAP stopping")
        self.online.clear()

    async def _may_read(self, requester: JID, _request: ReadoutRequest) -> bool:
        allowed = self.is_friend(requester)
        if not allowed:
            _LOGGER.info("readout from %s refused: not a friend", requester)
        return allowed

    async def _on_session_secured(self, _event: object) -> None:
        self._reconnect_delay = 1.0
        # slixmpp keeps roster entries the fresh roster no longer has; a friend removed
        # while we were away must not stay a friend.
        self._roster_loaded = False
        for bare in list(self.client_roster):
            del self.client_roster[bare]
        self.client_roster.version = ""  # ask for the whole roster, not changes since
        await self.get_roster()
        self._roster_loaded = True
        self.send_presence()
        self.online.set()

    async def _on_message(self, msg: Message) -> None:
        if msg["type"] not in ("chat", "normal") or not msg["body"]:
            return
        sender = msg["from"]
        if not self.is_friend(sender):
            _LOGGER.info("chat from %s refused: not a friend", sender)
            error = msg.reply(clear=True)  # type: ignore[no-untyped-call]
            error["type"] = "error"
            error["error"]["type"] = "cancel"
            error["error"]["condition"] = "forbidden"
            error["error"]["text"] = "Only friends of this thing may send it commands."
            error.send()
            return
        try:
            answer = await self._commands.handle(msg["body"])
        except Exception:
            _LOGGER.exception("chat command from %s failed", sender)
            answer = "Sorry, that command failed inside the gateway; its log says why."
        msg.reply(answer).send()  # type: ignore[no-untyped-call]

    def _back_off_fully(self, _event: object) -> None:
        self._reconnect_delay = self.reconnect_max_s

    def _schedule_reconnect(self, _reason: object) -> None:
        self.online.clear()
        if self._stopping or (self._reconnect_task and not self._reconnect_task.done()):
            return
        self._reconnect_task = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        delay = self._reconnect_delay
        self._reconnect_delay = min(delay * 2, self.reconnect_max_s)
        _LOGGER.warning("xmpp %s: disconnected; reconnecting in %.0f s", self.boundjid.bare, delay)
        await asyncio.sleep(delay)
        if not self._stopping:
            self.open()
