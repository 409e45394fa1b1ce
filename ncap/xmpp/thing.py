"""The thing's own XMPP client: presence, chat commands, and the XMPP IoT services —
XEP-0323 readouts, XEP-0325 control, XEP-0326 browsing and event subscriptions — over
the node tree of `ncap.xmpp.services`.

Only roster friends (presence subscription ``both`` or ``from``) are served.
Subscription requests are declined automatically until provisioning decides
them, so nobody befriends the thing by asking.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path

from slixmpp import JID, Message

from ncap.chat import ChatCommands
from ncap.sensors import SensorTree
from ncap.xmpp.connection import SecureClient
from ncap.xmpp.services import ConcentratorSource, ControlTarget, SensorSource, Topology
from xep.xep_0323.model import ReadoutRequest
from xep.xep_0325.model import ControlDecision, ControlRequest

_LOGGER = logging.getLogger(__name__)

FRIEND_SUBSCRIPTIONS = frozenset({"both", "from"})
KEEPALIVE_S = 60.0
SETTLE_S = 5.0


class ThingClient(SecureClient):
    def __init__(
        self,
        jid: str,
        password: str,
        tree: SensorTree,
        *,
        gateway_id: str,
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
        self._tree = tree
        self._commands = ChatCommands(tree)
        self._reconnect_delay = 1.0
        self._reconnect_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._roster_loaded = False
        self.online = asyncio.Event()
        self.topology = Topology(gateway_id, tree)
        self.sensor_source = SensorSource(self.topology)
        self.sensordata.source = self.sensor_source
        self.sensordata.authorize = self._may_read
        self.events.source = self.sensor_source
        self.events.authorize = self._may_read
        self.concentrator.source = ConcentratorSource(self.topology, datetime.now(UTC))
        self.concentrator.authorize = self._may_browse
        self.control.target = ControlTarget(self.topology)
        self.control.authorize = self._may_control
        self.add_event_handler("roster_update", self._forget_former_friends)
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
        return self._friend_or_refused(requester, "readout")

    async def _may_browse(self, requester: JID) -> bool:
        return self._friend_or_refused(requester, "browsing")

    async def _may_control(self, requester: JID, _request: ControlRequest) -> ControlDecision:
        return ControlDecision(self._friend_or_refused(requester, "control"))

    def _friend_or_refused(self, requester: JID, what: str) -> bool:
        allowed = self.is_friend(requester)
        if not allowed:
            _LOGGER.info("%s by %s refused: not a friend", what, requester)
        return allowed

    def _forget_former_friends(self, _event: object) -> None:
        """Event subscriptions end with the friendship."""
        subscribers = {JID(full).bare for full, _seqnr in self.events.subscriptions}
        for bare in subscribers:
            if not self.is_friend(bare):
                self.events.drop(bare)

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
        # Come online once the TIMs have had their first chance to be discovered, so that
        # the first readout after our presence finds them (a missing TIM delays us at most
        # SETTLE_S).
        await self._tree.settle(SETTLE_S)
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
