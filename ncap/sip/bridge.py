"""SIP presence notifier, message-summary and MESSAGE queries for one gateway.

The gateway is one SIP presentity, ``sip:<thing user>@<domain>`` (the gateway name by
default): a gateway is one XMPP thing too, and its presence already folds every node into one
state (online / alarm / maintenance). Any Request-URI whose user part is the thing user
addresses it, whatever the host, so watchers may use the domain or our IP address.

* ``SUBSCRIBE`` ``Event: presence`` (RFC 6665 + 3856): 200 with To-tag, Contact and the
  clamped Expires, then at once a NOTIFY with the full PIDF document; entity and contact are
  exactly the URI subscribed to. Changes are polled from the :class:`ThingView` and sent
  coalesced, at most one NOTIFY per ``min_notify_interval`` per subscription, one in flight.
  Refresh, unsubscribe (Expires 0: NOTIFY terminated;reason=timeout), expiry, fetch.
  ``Event: message-summary`` (RFC 3842): the alarm counts of the subscriber's identity.
* ``MESSAGE`` (RFC 3428): the chat command language; 200 at once, the answer as a new MESSAGE
  to the user's configured contact, else back to where the request came from.
  ``Accept-Contact: *;actor="msg-taker"`` routes to the alarm mailbox (the ``alarms`` listing).
* Digest auth (401, SHA-256 and MD5) on SUBSCRIBE and MESSAGE; the authenticated user name is
  the identity the view authorizes (fails closed: 403).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from ncap.sip.publish import PresencePublisher
from sipstack.digest import AuthOutcome, DigestClient, DigestServer
from sipstack.errors import SipError
from sipstack.fields import ContactPreference, NameAddr, SubscriptionState, new_call_id, new_tag
from sipstack.message import SipRequest, SipResponse
from sipstack.mwi import alarm_summary
from sipstack.pidf import build_pidf
from sipstack.transport import Destination
from sipstack.ua import IncomingRequest, UserAgent
from sipstack.uri import SipUri

__all__ = ["SipBridge", "SipUser", "ThingStatus", "ThingView"]

_LOGGER = logging.getLogger(__name__)

PIDF = "application/pidf+xml"
CPIM_PIDF = "application/cpim-pidf+xml"
SUMMARY = "application/simple-message-summary"
PACKAGES = ("presence", "message-summary")
TEXT = "text/plain;charset=UTF-8"
MAX_MESSAGE_BYTES = 1300  # RFC 3428: page mode stays below the path MTU


@dataclass(frozen=True)
class ThingStatus:
    """What the presence shows: basic status, an RPID activity and a human note."""

    basic: Literal["open", "closed"]
    activity: Literal["busy", "away"] | None
    note: str


class ThingView(Protocol):
    """The gateway as the bridge sees it; identities are authenticated SIP user names."""

    def status(self) -> ThingStatus: ...

    def alarm_counts(self, identity: str) -> tuple[int, int, int, int]:
        """``(new, old, new urgent, old urgent)`` unacknowledged alarms for ``identity``."""
        ...

    async def may_see(self, identity: str) -> bool: ...

    async def command(self, identity: str, text: str) -> str: ...


@dataclass(frozen=True)
class SipUser:
    """A SIP account: its password and, optionally, where replies to it go (a static contact)."""

    password: str
    contact: str | None = None


@dataclass(eq=False)
class _Subscription:
    event: str
    entity: str  # the Request-URI as subscribed: PIDF entity and contact
    identity: str
    call_id: str
    local_tag: str
    remote: str  # the subscriber's From (with its tag): our NOTIFY's To
    target: str  # the subscriber's Contact URI: our NOTIFY's Request-URI
    routes: list[str]
    destination: Destination  # where NOTIFYs go: the route set, else the target
    source: tuple[str, int]  # where the SUBSCRIBE came from (refreshes from there need no auth)
    expires_at: float
    cseq: int = 0
    last_body: bytes | None = None
    last_sent: float = float("-inf")
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    accept_type: str = PIDF


class SipBridge:
    """The notifier + MESSAGE server on a :class:`~sipstack.ua.UserAgent` of its own."""

    def __init__(
        self,
        view: ThingView,
        *,
        thing_user: str,
        domain: str,
        users: Mapping[str, SipUser],
        host: str = "127.0.0.1",
        udp_port: int | None = 0,
        tcp_port: int | None = None,
        tls_port: int | None = None,
        tls_context: ssl.SSLContext | None = None,
        auth_required: bool = True,
        min_expires: int = 60,
        max_expires: int = 3600,
        min_notify_interval: float = 5.0,
        poll_interval: float = 0.5,
        max_subscriptions: int = 256,
        digest_algorithms: Sequence[str] = ("SHA-256", "MD5"),
    ) -> None:
        self.view = view
        self.thing_user = thing_user
        self.domain = domain
        self.users = dict(users)
        self.auth_required = auth_required
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.min_notify_interval = min_notify_interval
        self.poll_interval = poll_interval
        self.max_subscriptions = max_subscriptions
        self.ua = UserAgent(
            host,
            udp_port=udp_port,
            tcp_port=tcp_port,
            tls_port=tls_port,
            tls_server_context=tls_context,
            user_agent="ncap-sip-bridge",
            accept=(TEXT,),
            allow_events=PACKAGES,
        )
        self.digest = DigestServer(domain, secrets.token_bytes(32), algorithms=digest_algorithms)
        self._subscriptions: dict[tuple[str, str, str], _Subscription] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._poller: asyncio.Task[None] | None = None
        self.publishers: list[PresencePublisher] = []
        self.ua.on("SUBSCRIBE", self._on_subscribe)
        self.ua.on("MESSAGE", self._on_message)

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def thing_uri(self) -> str:
        return f"sip:{self.thing_user}@{self.domain}"

    @property
    def subscriptions(self) -> int:
        return len(self._subscriptions)

    def port(self, transport: str = "UDP") -> int:
        return self.ua.port(transport)

    def publish_to(
        self,
        destination: Destination,
        *,
        aor: str | None = None,
        auth: DigestClient | None = None,
        expires: int = 3600,
    ) -> PresencePublisher:
        """Also PUBLISH the presence (of ``aor``, default the thing's URI) upstream."""
        publisher = PresencePublisher(
            self.ua,
            aor or self.thing_uri,
            destination,
            self.presence_document,
            auth=auth,
            expires=expires,
            min_interval=self.min_notify_interval,
        )
        self.publishers.append(publisher)
        return publisher

    async def start(self) -> None:
        await self.ua.start()
        for publisher in self.publishers:
            publisher.start()
        self._poller = asyncio.get_running_loop().create_task(self._poll(), name="sip-poll")

    async def aclose(self) -> None:
        """Tell every watcher the subscription ended (deactivated), then stop."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        ending = list(self._subscriptions.values())
        self._subscriptions.clear()
        for sub in ending:
            if sub.task is not None:
                sub.task.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await asyncio.gather(
                    *(self._terminate(sub, "deactivated") for sub in ending),
                    return_exceptions=True,
                )
        for publisher in self.publishers:
            await publisher.aclose()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.ua.aclose()

    def changed(self) -> None:
        """Something changed: check every subscription now (the poll does it anyway)."""
        for sub in self._subscriptions.values():
            sub.wake.set()

    # -- authentication -------------------------------------------------------------------------

    def _authenticate(self, incoming: IncomingRequest) -> str | None:
        """The authenticated user, or None after answering 401/400/403 ourselves."""
        request = incoming.request
        if not self.auth_required:
            return request.from_addr.sip_uri().user or ""
        now = time.time()

        def password_of(name: str) -> str | None:
            user = self.users.get(name)
            return None if user is None else user.password

        result = self.digest.verify(request, now, password_of=password_of)
        if result.ok and result.username is not None:
            return result.username
        if result.outcome in (AuthOutcome.MALFORMED, AuthOutcome.WRONG_URI):
            incoming.respond(400, "Bad Authorization")
        elif result.outcome in (AuthOutcome.BAD_RESPONSE, AuthOutcome.UNKNOWN_USER):
            incoming.respond(403, "Wrong Credentials")
        else:
            incoming.respond(401, headers=self.digest.challenges(now, stale=result.stale))
        return None

    def _addresses_thing(self, request: SipRequest) -> bool:
        try:
            return SipUri.parse(request.uri).user == self.thing_user
        except SipError:
            return False

    # -- SUBSCRIBE ------------------------------------------------------------------------------

    async def _on_subscribe(self, incoming: IncomingRequest) -> None:
        request = incoming.request
        to_tag = request.to_addr.tag
        existing: _Subscription | None = None
        if to_tag is not None:
            key = (request.call_id, request.from_addr.tag or "", to_tag)
            existing = self._subscriptions.get(key)
            if existing is None:
                incoming.respond(481)
                return
        event = request.event
        if event is None or event.package not in PACKAGES:
            incoming.respond(489, headers=[("Allow-Events", ", ".join(PACKAGES))])
            return
        if existing is not None and incoming.source == existing.source:
            # An in-dialog request from the authenticated watcher's own address: the dialog
            # (random tags) stands for the credentials, as SIPp and phones expect.
            identity: str | None = existing.identity
        else:
            identity = self._authenticate(incoming)
        if identity is None:
            return
        if existing is not None and identity != existing.identity:
            incoming.respond(403)
            return
        if to_tag is None and not self._addresses_thing(request):
            incoming.respond(404)
            return
        if not await self.view.may_see(identity):
            incoming.respond(403)
            return
        accept_type = self._body_type(request, event.package)
        if accept_type is None:
            incoming.respond(406)
            return
        expires = request.expires
        expires = self.max_expires if expires is None else min(expires, self.max_expires)
        if 0 < expires < self.min_expires:
            incoming.respond(423, headers=[("Min-Expires", str(self.min_expires))])
            return
        if existing is not None:
            await self._refresh(incoming, existing, expires)
            return
        contacts = request.contacts
        if not contacts:
            incoming.respond(400, "Missing Contact")
            return
        if expires > 0 and len(self._subscriptions) >= self.max_subscriptions:
            incoming.respond(503, headers=[("Retry-After", "60")])
            return
        sub = _Subscription(
            event=event.package,
            entity=request.uri,
            identity=identity,
            call_id=request.call_id,
            local_tag=new_tag(),
            remote=request.header_value("From"),
            target=str(contacts[0].uri),
            routes=request.headers.get_all("Record-Route"),
            destination=_notify_destination(incoming, str(contacts[0].uri)),
            source=incoming.source,
            expires_at=time.monotonic() + expires,
            accept_type=accept_type,
        )
        incoming.respond(
            200,
            to_tag=sub.local_tag,
            dialog=True,
            headers=[("Expires", str(expires)), ("Contact", f"<{self._contact(incoming)}>")],
        )
        if expires == 0:  # a fetch: one terminated NOTIFY with the state
            await self._send_notify(sub, SubscriptionState.terminated("timeout"), body=True)
            return
        self._subscriptions[(sub.call_id, NameAddr.parse(sub.remote).tag or "", sub.local_tag)] = (
            sub
        )
        sub.task = asyncio.get_running_loop().create_task(self._notifier(sub))
        sub.wake.set()

    def _contact(self, incoming: IncomingRequest) -> str:
        return self.ua.contact_uri(self.thing_user, incoming.transport)

    @staticmethod
    def _body_type(request: SipRequest, package: str) -> str | None:
        accepted = [
            item.split(";", 1)[0].strip().lower()
            for value in request.headers.get_all("Accept")
            for item in value.split(",")
            if item.strip()
        ]
        wanted = PIDF if package == "presence" else SUMMARY
        if not accepted or wanted in accepted or "*/*" in accepted:
            return wanted
        if package == "presence" and CPIM_PIDF in accepted:
            return CPIM_PIDF  # older phones: the same document under the old name
        return None

    async def _refresh(self, incoming: IncomingRequest, sub: _Subscription, expires: int) -> None:
        key = (sub.call_id, NameAddr.parse(sub.remote).tag or "", sub.local_tag)
        incoming.respond(
            200,
            headers=[("Expires", str(expires)), ("Contact", f"<{self._contact(incoming)}>")],
        )
        if expires == 0:
            self._subscriptions.pop(key, None)
            if sub.task is not None:
                sub.task.cancel()
            await self._terminate(sub, "timeout")
            return
        sub.expires_at = time.monotonic() + expires
        sub.last_body = None  # a refresh gets the full state again
        sub.wake.set()

    def _body(self, sub: _Subscription) -> bytes:
        if sub.event == "message-summary":
            return alarm_summary(sub.entity, *self.view.alarm_counts(sub.identity))
        return self.presence_document(sub.entity)

    def presence_document(self, entity: str) -> bytes:
        """The full PIDF document for presentity ``entity`` (its entity and contact)."""
        status = self.view.status()
        return build_pidf(
            entity,
            basic=status.basic,
            note=status.note or None,
            activities=(status.activity,) if status.activity else (),
        )

    async def _notifier(self, sub: _Subscription) -> None:
        """One NOTIFY in flight per dialog; changes coalesced to the newest full state."""
        while True:
            await sub.wake.wait()
            sub.wake.clear()
            body = self._body(sub)
            if body == sub.last_body:
                continue
            delay = sub.last_sent + self.min_notify_interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # the rate limit, not synchronisation
                body = self._body(sub)
            remaining = max(0, int(sub.expires_at - time.monotonic()))
            ok = await self._send_notify(sub, SubscriptionState.active(remaining), body=True)
            if not ok:
                self._drop(sub)
                return

    def _drop(self, sub: _Subscription) -> None:
        for key, value in list(self._subscriptions.items()):
            if value is sub:
                del self._subscriptions[key]

    async def _terminate(self, sub: _Subscription, reason: str) -> None:
        await self._send_notify(sub, SubscriptionState.terminated(reason), body=False)

    async def _send_notify(
        self, sub: _Subscription, state: SubscriptionState, *, body: bool
    ) -> bool:
        sub.cseq += 1
        content = self._body(sub) if body else b""
        headers = [
            ("From", f"<{sub.entity}>;tag={sub.local_tag}"),
            ("To", sub.remote),
            ("Call-ID", sub.call_id),
            ("CSeq", f"{sub.cseq} NOTIFY"),
            ("Event", sub.event),
            ("Subscription-State", str(state)),
            ("Contact", f"<{self.ua.contact_uri(self.thing_user, sub.destination.transport)}>"),
        ]
        headers += [("Route", value) for value in sub.routes]
        if body:
            headers.append(("Content-Type", sub.accept_type))
        notify = SipRequest("NOTIFY", sub.target, body=content)
        for name, value in headers:
            notify.headers.add(name, value)
        sub.last_sent = time.monotonic()
        if body:
            sub.last_body = content
        response = await self.ua.request(notify, destination=sub.destination)
        if not 200 <= response.status < 300:
            _LOGGER.info("NOTIFY to %s: %d; subscription dropped", sub.target, response.status)
            return False
        return True

    async def _poll(self) -> None:
        while True:
            now = time.monotonic()
            for sub in list(self._subscriptions.values()):
                if sub.expires_at <= now:
                    self._drop(sub)
                    if sub.task is not None:
                        sub.task.cancel()
                    self._spawn(self._terminate(sub, "timeout"))
                else:
                    sub.wake.set()
            for publisher in self.publishers:
                publisher.changed()
            await asyncio.sleep(self.poll_interval)

    def _spawn(self, work: object) -> None:
        assert asyncio.iscoroutine(work)
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- MESSAGE --------------------------------------------------------------------------------

    async def _on_message(self, incoming: IncomingRequest) -> None:
        request = incoming.request
        identity = self._authenticate(incoming)
        if identity is None:
            return
        if not self._addresses_thing(request):
            incoming.respond(404)
            return
        if not await self.view.may_see(identity):
            incoming.respond(403)
            return
        content_type = (request.content_type or "text/plain").split(";", 1)[0].strip().lower()
        if content_type != "text/plain":
            incoming.respond(415, headers=[("Accept", "text/plain")])
            return
        try:
            text = request.body.decode("utf-8").strip()
        except UnicodeDecodeError:
            incoming.respond(400, "Body Not UTF-8")
            return
        if _wants_mailbox(request):
            text = "alarms"
        incoming.respond(200)
        answer = await self.view.command(identity, text)
        self._spawn(self._reply(incoming, identity, answer))

    async def _reply(self, incoming: IncomingRequest, identity: str, answer: str) -> None:
        request = incoming.request
        sender = request.from_addr
        user = self.users.get(identity)
        if user is not None and user.contact is not None:
            destination = Destination.from_uri(user.contact)
            target = user.contact
        else:
            destination = incoming.reply_destination()
            target = str(sender.uri)
        body = answer.encode("utf-8")
        if len(body) > MAX_MESSAGE_BYTES:
            body = body[: MAX_MESSAGE_BYTES - 3].decode("utf-8", "ignore").encode() + b"..."
        reply = SipRequest("MESSAGE", target, body=body)
        reply.headers.add("From", f"<{request.uri}>;tag={new_tag()}")
        reply.headers.add("To", f"<{sender.uri}>")
        reply.headers.add("Call-ID", new_call_id(self.ua.host))
        reply.headers.add("CSeq", "1 MESSAGE")
        reply.headers.add("Content-Type", TEXT)
        response: SipResponse = await self.ua.request(reply, destination=destination)
        if not 200 <= response.status < 300:
            _LOGGER.info("reply MESSAGE to %s: %d", target, response.status)


def _notify_destination(incoming: IncomingRequest, target: str) -> Destination:
    """Where in-dialog requests go (RFC 6665 §4.4.1, RFC 3261 §12.2.1.1): the first Record-Route
    (our route set), else the remote target, the SUBSCRIBE's Contact. A stream flow the watcher
    opened stays the way back, as phones behind NAT need (their Contact is not reachable)."""
    back = incoming.reply_destination()
    if back.transport != "UDP":
        return back
    routes = incoming.request.headers.get_all("Record-Route")
    try:
        first_hop = NameAddr.parse(routes[0]).uri if routes else SipUri.parse(target)
        return Destination.from_uri(first_hop)
    except SipError:
        return back


def _wants_mailbox(request: SipRequest) -> bool:
    for value in request.headers.get_all("Accept-Contact"):
        for item in value.split(","):
            with contextlib.suppress(SipError):
                if ContactPreference.parse(item).wants("actor", "msg-taker"):
                    return True
    return False
