"""The gateway as the SIP bridge sees it, and the bridge built from the ``[sip]`` section.

Authorization follows the XMPP rules (``ncap.xmpp.thing``): the SIP user named ``owner_user``
is the owner (whoever the XMPP owner is; it is the local administrator's statement in the
config); another SIP user stands for the XMPP address in its ``jid`` key and may see the thing
when the owner or the provisioning service would befriend that address, and read what
provisioning allows. A SIP user with neither is refused (403): fail closed.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from pathlib import Path

from slixmpp import JID

from ncap.chat import ChatCommands, ChatSession
from ncap.config import SipSection, read_secret
from ncap.sensors import Reading, SensorTree
from ncap.sip.bridge import SipBridge, SipUser, ThingStatus
from ncap.uplink import Uplink
from ncap.xmpp.thing import ThingClient
from sipstack.digest import DigestClient
from sipstack.transport import Destination

__all__ = ["GatewayView", "bridge_from_config", "reading_summary", "server_tls_context"]

NOTE_FIELDS = 6  # a presence note is a glance, not a table


def reading_summary(readings: Sequence[Reading]) -> str:
    """``temperature 21.5 °C, humidity 45 %`` (one reading per field); with several nodes,
    ``env-sensor: temperature 21.5 °C; relay: coil-current 0.000 A``."""
    shown = readings[:NOTE_FIELDS]
    by_node: dict[str, list[str]] = {}
    for reading in shown:
        by_node.setdefault(reading.node, []).append(f"{reading.field} {reading.text}")
    if len(by_node) == 1:
        text = ", ".join(next(iter(by_node.values())))
    else:
        text = "; ".join(f"{node}: {', '.join(parts)}" for node, parts in by_node.items())
    if len(readings) > NOTE_FIELDS:
        text += f" (+{len(readings) - NOTE_FIELDS} more)"
    return text


class GatewayView:
    """Presence, alarm counts and chat commands of one gateway for SIP identities."""

    def __init__(
        self,
        client: ThingClient,
        uplink: Uplink,
        tree: SensorTree,
        *,
        owner_user: str | None,
        user_jids: dict[str, str],
    ) -> None:
        self._client = client
        self._uplink = uplink
        self._commands = ChatCommands(tree)
        self._owner_user = owner_user
        self._user_jids = dict(user_jids)
        self._latest: dict[tuple[str, str], Reading] = {}
        self.running = True

    def observe(self, readings: Sequence[Reading]) -> None:
        """Fresh readings (the gateway calls this beside ``Uplink.record``)."""
        for reading in readings:
            self._latest[(reading.node, reading.field)] = reading

    def status(self) -> ThingStatus:
        client = self._client
        summary = reading_summary(list(self._latest.values()))
        if not self.running or not client.online.is_set():
            return ThingStatus("closed", None, "offline" + (f": {summary}" if summary else ""))
        if client.state == "alarm":
            return ThingStatus("open", "busy", client.status or "ALARM")
        if client.state == "maintenance":
            return ThingStatus("open", "away", "maintenance" + (f": {summary}" if summary else ""))
        return ThingStatus("open", None, summary or "online")

    def _jid(self, identity: str) -> str | None:
        if identity == self._owner_user:
            return self._client.owner or f"{identity}@sip.invalid"
        return self._user_jids.get(identity)

    def alarm_counts(self, identity: str) -> tuple[int, int, int, int]:
        jid = self._jid(identity)
        if jid is None:
            return (0, 0, 0, 0)
        counts = self._uplink.mailbox.detailed_counts(jid)
        return (counts.new, counts.old, counts.new_urgent, counts.old_urgent)

    async def may_see(self, identity: str) -> bool:
        if identity == self._owner_user:
            return True
        jid = self._user_jids.get(identity)
        return jid is not None and await self._client.may_befriend(jid)

    async def command(self, identity: str, text: str) -> str:
        jid = self._jid(identity)
        if jid is None:
            return "You may not send this thing commands."
        session = self._client.chat_session(JID(jid))
        if identity == self._owner_user and self._client.owner is None:
            session = self._owner_session(jid)
        return await self._commands.handle(text, session)

    def _owner_session(self, recipient: str) -> ChatSession:
        """The owner's rights while the thing is unclaimed (the config names the owner)."""
        uplink = self._uplink
        return ChatSession(
            history=uplink.history,
            alarms=lambda: uplink.alarms_text(recipient),
            ack=lambda alarm_id: uplink.acknowledge(alarm_id, recipient),
            maintenance=lambda on: uplink.set_maintenance(on, recipient),
        )


def bridge_from_config(section: SipSection, view: GatewayView, gateway_name: str) -> SipBridge:
    """The bridge the ``[sip]`` section describes (secrets read now: 0600 files)."""
    users = {
        name: SipUser(read_secret(user.password_file), user.contact)
        for name, user in section.users.items()
    }
    bridge = SipBridge(
        view,
        thing_user=section.thing_user or gateway_name,
        domain=section.domain or section.host,
        users=users,
        host=section.host,
        udp_port=section.udp_port,
        tcp_port=section.tcp_port,
        tls_port=section.tls_port,
        tls_context=_tls_context(section),
        auth_required=section.auth_required,
        min_notify_interval=section.min_notify_interval_s,
        max_subscriptions=section.max_subscriptions,
        digest_algorithms=section.digest_algorithms,
    )
    upstream = section.publish
    if upstream.enabled:
        auth = None
        if upstream.user is not None and upstream.password_file is not None:
            auth = DigestClient(upstream.user, read_secret(upstream.password_file))
        bridge.publish_to(
            Destination(upstream.host, upstream.port, upstream.transport),
            aor=upstream.aor,
            auth=auth,
            expires=upstream.expires_s,
        )
    return bridge


def server_tls_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """A TLS listener context: TLS 1.2 or newer, no client certificates asked for."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


def _tls_context(section: SipSection) -> ssl.SSLContext | None:
    # load_config has checked the pair (ConfigError, exit 78); a vanished file fails here.
    if section.tls_port is None or section.tls_cert_file is None or section.tls_key_file is None:
        return None
    return server_tls_context(section.tls_cert_file, section.tls_key_file)
