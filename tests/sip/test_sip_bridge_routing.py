"""Where the bridge sends NOTIFYs over UDP (RFC 6665 §4.4.1): to the route set's first hop when
the SUBSCRIBE was record-routed, else to the watcher's Contact, not back to where the SUBSCRIBE
came from; in-dialog refreshes from the subscriber's address still need no new credentials."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from ncap.sip.bridge import SipBridge, SipUser, ThingStatus
from sipstack.digest import DigestClient
from sipstack.message import SipRequest
from sipstack.transport import Destination
from sipstack.ua import IncomingRequest, UserAgent

DOMAIN = "sip.test"
THING = "thing"
OWNER = ("boss", "b0ss-secret")
TIMEOUT = 5.0


class _Thing:
    def status(self) -> ThingStatus:
        return ThingStatus("open", None, "temperature 21.5 °C")

    def alarm_counts(self, identity: str) -> tuple[int, int, int, int]:
        return (0, 0, 0, 0)

    async def may_see(self, identity: str) -> bool:
        return identity == OWNER[0]

    async def command(self, identity: str, text: str) -> str:
        return text


@pytest.fixture
async def bridge() -> AsyncIterator[SipBridge]:
    bridge = SipBridge(
        _Thing(),
        thing_user=THING,
        domain=DOMAIN,
        users={OWNER[0]: SipUser(OWNER[1])},
        min_notify_interval=0.0,
    )
    await bridge.start()
    try:
        yield bridge
    finally:
        await bridge.aclose()


def _subscribe(contact: str, *more: tuple[str, str]) -> SipRequest:
    request = SipRequest("SUBSCRIBE", f"sip:{THING}@{DOMAIN}")
    for name, value in (
        ("From", f"<sip:{OWNER[0]}@{DOMAIN}>;tag=route1"),
        ("To", f"<sip:{THING}@{DOMAIN}>"),
        ("Event", "presence"),
        ("Expires", "60"),
        ("Contact", f"<{contact}>"),
        *more,
    ):
        request.headers.add(name, value)
    return request


def _inbox(ua: UserAgent) -> asyncio.Queue[SipRequest]:
    notifies: asyncio.Queue[SipRequest] = asyncio.Queue()

    async def on_notify(incoming: IncomingRequest) -> None:
        notifies.put_nowait(incoming.request)
        incoming.respond(200)

    ua.on("NOTIFY", on_notify)
    return notifies


async def test_notify_goes_to_the_contact_and_refresh_from_the_source_needs_no_auth(
    bridge: SipBridge,
) -> None:
    async with (
        UserAgent("127.0.0.1") as sender,
        UserAgent("127.0.0.1") as phone,
        asyncio.timeout(TIMEOUT),
    ):
        at_sender, at_phone = _inbox(sender), _inbox(phone)
        to_bridge = Destination("127.0.0.1", bridge.port())
        ok = await sender.request(
            _subscribe(phone.contact_uri(OWNER[0])),
            destination=to_bridge,
            auth=DigestClient(*OWNER),
        )
        assert ok.status == 200
        notify = await at_phone.get()
        assert notify.uri == phone.contact_uri(OWNER[0])
        assert b"temperature 21.5" in notify.body

        tag = ok.to_addr.tag
        refresh = _subscribe(phone.contact_uri(OWNER[0]))
        refresh.headers.set("To", f"<sip:{THING}@{DOMAIN}>;tag={tag}")
        refresh.headers.add("Call-ID", ok.call_id)
        refresh.headers.add("CSeq", "50 SUBSCRIBE")
        assert (await sender.request(refresh, destination=to_bridge)).status == 200
        assert (await at_phone.get()).body == notify.body  # a refresh gets the full state
        await bridge.aclose()  # while the phone is there for the final NOTIFY
        final = await at_phone.get()
        assert final.headers.get("Subscription-State") == "terminated;reason=deactivated"
        assert at_sender.empty()


async def test_a_record_routed_subscription_is_notified_through_the_route(
    bridge: SipBridge,
) -> None:
    async with (
        UserAgent("127.0.0.1") as sender,
        UserAgent("127.0.0.1") as proxy,
        asyncio.timeout(TIMEOUT),
    ):
        at_proxy = _inbox(proxy)
        record_route = f"<sip:127.0.0.1:{proxy.port()};lr>"
        ok = await sender.request(
            _subscribe("sip:boss@192.0.2.1:5060", ("Record-Route", record_route)),
            destination=Destination("127.0.0.1", bridge.port()),
            auth=DigestClient(*OWNER),
        )
        assert ok.status == 200
        notify = await at_proxy.get()
        assert notify.uri == "sip:boss@192.0.2.1:5060"  # the remote target, via the route
        assert notify.headers.get("Route") == record_route
        await bridge.aclose()  # while the proxy is there for the final NOTIFY
        assert (await at_proxy.get()).headers.get("Route") == record_route
