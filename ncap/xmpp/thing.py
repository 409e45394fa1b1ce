"""The thing's own XMPP client: presence, chat commands, and the XMPP IoT services —
XEP-0323 readouts, XEP-0325 control, XEP-0326 browsing and event subscriptions — over
the node tree of `ncap.xmpp.services`.

Who is served depends on whether the thing has been claimed (XEP-0347, ``ncap.xmpp.lifecycle``):

* unclaimed: only roster friends (presence subscription ``both`` or ``from``); subscription
  requests are declined, so nobody befriends the thing by asking;
* claimed: the owner is always served and always befriended; everyone else is decided by the
  owner's provisioning service (XEP-0324, ``ncap.provisioning``): friendship by ``isFriend``,
  read-outs, subscriptions and chat reads by ``canRead`` (its narrowing applied), control by
  ``canControl``. No answer in time means no. ``friend``/``unfriend``/``clearCache`` are obeyed
  from the provisioning service only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol, cast
from xml.etree.ElementTree import Element

from slixmpp import JID, Iq, Message, Presence
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath
from slixmpp.xmlstream.stanzabase import StanzaBase

from ncap.chat import ChatCommands, ChatSession, HistoryPoint, ReadAuthorizer
from ncap.config import RegistrySection
from ncap.provisioning import DecisionCache, ProvisioningClient
from ncap.sensors import SensorTree
from ncap.xmpp.adhoc import register_commands
from ncap.xmpp.connection import SecureClient, error_reply
from ncap.xmpp.lifecycle import ThingLifecycle, send_iq
from ncap.xmpp.registration import ClaimStore
from ncap.xmpp.services import (
    SOURCE_ID,
    ConcentratorSource,
    ControlTarget,
    NodeKind,
    SensorSource,
    Topology,
)
from xep.errors import StanzaError, XepError
from xep.xep_0323.model import FieldType, NodeRef, ReadoutRequest
from xep.xep_0324 import convert as prov_convert
from xep.xep_0324 import stanza as prov_stanza
from xep.xep_0324.model import ClearCacheResponse, Friend, Unfriend
from xep.xep_0325.model import ControlDecision, ControlRequest

_LOGGER = logging.getLogger(__name__)

ThingState = Literal["online", "alarm", "maintenance"]
FRIEND_SUBSCRIPTIONS = frozenset({"both", "from"})
KEEPALIVE_S = 60.0
SETTLE_S = 5.0


class GatewayServices(Protocol):
    """What the gateway offers the chat beyond the sensor tree (journal and alarm mailbox)."""

    def history(self, node: str, field: str, since: datetime) -> Sequence[HistoryPoint]: ...

    def alarms_text(self, recipient: str) -> str: ...

    def acknowledge(self, alarm_id: int, by: str) -> str: ...

    def alarm_choices(self, recipient: str) -> Sequence[tuple[str, str]]: ...

    def set_maintenance(self, on: bool, by: str) -> str: ...


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
        state_dir: Path | None = None,
        registry: RegistrySection | None = None,
        write_qr: Callable[[str, Path], Sequence[Path]] | None = None,
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
        # Subscription requests are decided in _on_subscribe (never automatically).
        self.auto_authorize = None
        self.auto_subscribe = False
        self._tree = tree
        self._commands = ChatCommands(tree)
        self._reconnect_delay = 1.0
        self._reconnect_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._roster_loaded = False
        self.online = asyncio.Event()
        self.offline = asyncio.Event()  # set while there is no session
        self.offline.set()
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
        self.lifecycle: ThingLifecycle | None = None
        self.services: GatewayServices | None = None  # set by the gateway
        self.state: ThingState = "online"
        self.status = ""
        self._owner_changed = asyncio.Event()
        self.provisioning: ProvisioningClient | None = None
        registry = registry or RegistrySection()
        self._answer_timeout = registry.answer_timeout_s
        self._cache = DecisionCache(
            state_dir / "provisioning-cache.json" if state_dir is not None else None
        )
        if state_dir is not None and registry.enabled:
            self.lifecycle = ThingLifecycle(
                self,
                ClaimStore(state_dir),
                tags=dict(registry.tags),
                nodes=self._registered_nodes,
                registry=registry.address,
                provisioning=registry.provisioning,
                self_owned=registry.self_owned,
                write_qr=write_qr,
                on_change=self._trust_changed,
            )
            self._trust_changed()
        prov_stanza.register_stanzas()
        self.register_handler(
            Callback(
                "ncap clearCache", StanzaPath("iq@type=set/prov_clearCache"), self._clear_cache
            )
        )
        for local in ("friend", "unfriend"):
            self.register_handler(
                Callback(f"ncap {local}", StanzaPath(f"message/prov_{local}"), self._on_advice)
            )
        self.register_plugin("xep_0050")
        register_commands(self, self._run_command, self._command_choices)
        self.add_event_handler("presence_subscribe", self._on_subscribe)
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
        if self.lifecycle is not None:
            await self.lifecycle.stop()
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
        self.cancel_connection_attempt()
        if self.transport is not None:
            await self.disconnect(wait=2.0, reason="NCAP stopping")
        self.online.clear()
        self.offline.set()

    def set_state(self, state: ThingState, status: str = "") -> None:
        """What the thing's presence shows: online, alarm (dnd) or maintenance (xa)."""
        if (state, status) == (self.state, self.status):
            return
        self.state, self.status = state, status
        if self.online.is_set():
            self._send_state()

    def _send_state(self) -> None:
        show = {"online": None, "alarm": "dnd", "maintenance": "xa"}[self.state]
        self.send_presence(pshow=show, pstatus=self.status or None)

    async def wait_owner(self, owner: str, timeout: float) -> None:
        """Until the registry has told this thing that *owner* claimed it."""
        async with asyncio.timeout(timeout):
            while not self.is_owner(owner):
                await self._owner_changed.wait()
                self._owner_changed.clear()

    # -- who may do what ---------------------------------------------------------------------

    @property
    def owner(self) -> str | None:
        return self.lifecycle.owner if self.lifecycle is not None else None

    def is_owner(self, jid: JID | str) -> bool:
        owner = self.owner
        return owner is not None and JID(jid).bare == owner

    async def may_befriend(self, requester: JID | str) -> bool:
        if self.owner is None:
            return False  # unclaimed: friendships are made by hand (the roster)
        if self.is_owner(requester):
            return True
        provisioning = self.provisioning
        return provisioning is not None and await provisioning.is_friend(requester)

    async def _may_read(self, requester: JID, request: ReadoutRequest) -> bool | ReadoutRequest:
        if self.owner is None:
            return self._friend_or_refused(requester, "readout")
        if self.is_owner(requester):
            return True
        provisioning = self.provisioning
        if provisioning is None:
            _LOGGER.info("readout by %s refused: no provisioning service", requester)
            return False
        return await provisioning.can_read(requester, request)

    async def _may_browse(self, requester: JID) -> bool:
        if self.owner is None:
            return self._friend_or_refused(requester, "browsing")
        return self.is_owner(requester) or await self.may_befriend(requester)

    async def _may_control(self, requester: JID, request: ControlRequest) -> ControlDecision:
        if self.owner is None:
            return ControlDecision(self._friend_or_refused(requester, "control"))
        if self.is_owner(requester):
            return ControlDecision(True)
        provisioning = self.provisioning
        if provisioning is None:
            return ControlDecision(False)
        return await provisioning.can_control(requester, request)

    async def _may_chat(self, requester: JID) -> bool:
        """Friends may chat; what a chat command reads is decided per node (_chat_reader)."""
        if self.owner is None:
            return self.is_friend(requester)
        return await self.may_befriend(requester)

    def _chat_reader(self, requester: JID) -> ReadAuthorizer:
        async def may_read(node_id: str, fields: Sequence[str]) -> tuple[str, ...] | None:
            request = ReadoutRequest(
                0,
                FieldType.MOMENTARY | FieldType.STATUS,
                (NodeRef(node_id, SOURCE_ID),),
                tuple(fields),
            )
            decision = await self._may_read(requester, request)
            if decision is True:
                return ()
            if isinstance(decision, ReadoutRequest) and decision.nodes:
                return decision.field_names
            return None

        return may_read

    def chat_session(self, requester: JID) -> ChatSession:
        """The chat commands (and ad-hoc commands) with *requester*'s rights."""
        services = self.services
        recipient = JID(requester).bare

        async def control(node_id: str, parameter: str, text: str) -> str:
            return await self._chat_control(requester, node_id, parameter, text)

        def ack(alarm_id: int) -> str:
            assert services is not None
            return services.acknowledge(alarm_id, recipient)

        may_maintain = services is not None and (
            self.is_owner(requester) or (self.owner is None and self.is_friend(requester))
        )

        def maintenance(on: bool) -> str:
            assert services is not None
            return services.set_maintenance(on, recipient)

        return ChatSession(
            maintenance=maintenance if may_maintain else None,
            may_read=self._chat_reader(requester),
            history=services.history if services is not None else None,
            control=control,
            alarms=(lambda: services.alarms_text(recipient)) if services is not None else None,
            ack=ack if services is not None else None,
        )

    async def _chat_control(self, requester: JID, node_id: str, parameter: str, text: str) -> str:
        ref = NodeRef(node_id, SOURCE_ID)
        target = self.control.target
        if target is None or not target.has_node(ref):
            return f"No node {node_id!r}. Send 'list' to see the nodes."
        declared = next((p for p in target.parameters(ref) if p.name == parameter), None)
        if declared is None:
            names = ", ".join(p.name for p in target.parameters(ref)) or "none"
            return f"{node_id} has no parameter {parameter!r} (it has: {names})"
        try:
            value = declared.value_of(text)
        except ValueError as err:
            return f"{parameter}: {err}"
        problem = declared.problem(value)
        if problem is not None:
            return f"{parameter}: {problem}"
        decision = await self._may_control(requester, ControlRequest((ref,), (value,)))
        allowed_nodes = decision.nodes is None or any(n.matches(ref) for n in decision.nodes)
        allowed_names = decision.parameters is None or parameter in decision.parameters
        if not (decision.allowed and allowed_nodes and allowed_names):
            return f"You may not set {parameter} of {node_id}."
        try:
            await target.apply(requester, (ref,), (value,))
        except XepError as err:
            return f"{node_id}: {parameter} not set: {err}"
        return f"{node_id}: {parameter} = {value.value}"

    def _friend_or_refused(self, requester: JID, what: str) -> bool:
        allowed = self.is_friend(requester)
        if not allowed:
            _LOGGER.info("%s by %s refused: not a friend", what, requester)
        return allowed

    def _registered_nodes(self) -> list[tuple[NodeRef, str]]:
        classes = {NodeKind.TIM: "TIM", NodeKind.CHANNEL: "Channel"}
        return [
            (NodeRef(node.node_id, SOURCE_ID), classes[node.kind])
            for node in self.topology.all()
            if node.kind in classes
        ]

    def _trust_changed(self) -> None:
        self._owner_changed.set()
        lifecycle = self.lifecycle
        service = lifecycle.provisioning if lifecycle is not None else None
        current = self.provisioning.service if self.provisioning is not None else None
        if service == current:
            return
        self._cache.clear()  # answers of another (or no) authority mean nothing now
        self.provisioning = (
            ProvisioningClient(service, self._ask, self._cache, timeout_s=self._answer_timeout)
            if service is not None
            else None
        )

    async def _ask(self, to: str, payload: Element, timeout: float) -> Element:
        answer = await send_iq(self, to, payload, timeout=timeout)
        if answer is None:
            raise StanzaError("empty answer")
        return answer

    # -- the provisioning service's orders ----------------------------------------------------

    def _trusted_authority(self, sender: JID) -> bool:
        return self.lifecycle is not None and self.lifecycle.is_provisioning(sender)

    def _clear_cache(self, stanza: StanzaBase) -> None:
        iq = cast(Iq, stanza)
        if not self._trusted_authority(iq["from"]):
            _LOGGER.warning("clearCache from untrusted %s refused", iq["from"])
            error_reply(iq, "cancel", "forbidden").send()
            return
        self._cache.clear()
        _LOGGER.info("provisioning cache cleared by %s", iq["from"])
        reply = iq.reply(clear=True)  # type: ignore[no-untyped-call]
        reply.append(prov_convert.to_xml(ClearCacheResponse()))
        reply.send()

    def _on_advice(self, stanza: StanzaBase) -> None:
        msg = cast(Message, stanza)
        if not self._trusted_authority(msg["from"]):
            _LOGGER.warning("friendship advice from untrusted %s ignored", msg["from"])
            return
        for child in msg.xml:
            try:
                advice = prov_convert.from_xml(child)
            except StanzaError:
                continue
            if isinstance(advice, Friend):
                _LOGGER.info("provisioning: befriend %s", advice.jid)
                self.send_presence(pto=JID(advice.jid).bare, ptype="subscribed")
            elif isinstance(advice, Unfriend) and not self.is_owner(advice.jid):
                bare = JID(advice.jid).bare
                _LOGGER.info("provisioning: unfriend %s", bare)
                self.send_presence(pto=bare, ptype="unsubscribed")
                self.send_presence(pto=bare, ptype="unsubscribe")
                self.events.drop(bare)

    async def _on_subscribe(self, presence: Presence) -> None:
        requester = presence["from"]
        try:
            allowed = await self.may_befriend(requester)
        except Exception:
            _LOGGER.exception("deciding the friendship of %s failed; leaving it pending", requester)
            return
        if allowed:
            _LOGGER.info("friendship with %s accepted", requester.bare)
            self.send_presence(pto=requester.bare, ptype="subscribed")
        elif self.owner is None:
            _LOGGER.info("friendship request of %s declined: the thing is unclaimed", requester)
            self.send_presence(pto=requester.bare, ptype="unsubscribed")
        else:
            # Left pending: the owner may still allow it (the service then sends 'friend').
            _LOGGER.info("friendship request of %s left pending: not allowed (yet)", requester)

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
        self._send_state()
        self.offline.clear()
        self.online.set()
        if self.lifecycle is not None:
            self.lifecycle.session_started()

    async def _run_command(self, requester: JID, line: str) -> str:
        """An ad-hoc command: the chat command line it stands for, with the same rights."""
        if not await self._may_chat(requester):
            return "You may not send this thing commands."
        return await self._commands.handle(line, self.chat_session(requester))

    def _command_choices(self, requester: JID, name: str) -> Sequence[tuple[str, str]]:
        if name == "nodes":
            return [(node.node_id, node.node_id) for node in self.topology.all()]
        if name == "alarms" and self.services is not None:
            return self.services.alarm_choices(JID(requester).bare)
        return ()

    async def _on_message(self, msg: Message) -> None:
        if msg["type"] not in ("chat", "normal") or not msg["body"]:
            return
        sender = msg["from"]
        if self.lifecycle is not None and (
            self.lifecycle.is_registry(sender) or self.lifecycle.is_provisioning(sender)
        ):
            return  # services do not chat
        if not await self._may_chat(sender):
            _LOGGER.info("chat from %s refused: not a friend", sender)
            error_reply(msg, "cancel", "forbidden", "You may not send this thing commands.").send()
            return
        try:
            answer = await self._commands.handle(msg["body"], self.chat_session(sender))
        except Exception:
            _LOGGER.exception("chat command from %s failed", sender)
            answer = "Sorry, that command failed inside the gateway; its log says why."
        msg.reply(answer).send()  # type: ignore[no-untyped-call]

    def _back_off_fully(self, _event: object) -> None:
        self._reconnect_delay = self.reconnect_max_s

    def _schedule_reconnect(self, _reason: object) -> None:
        self.online.clear()
        self.offline.set()
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
