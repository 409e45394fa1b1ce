"""The SIP presence bridge of a running gateway (real Prosody, env-sensor simulator) through
SIPp: digest-authenticated presence watching with an alarm turning the thing busy, refused
credentials and identities, MESSAGE queries answered by MESSAGE, message-summary counts."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from integration.conftest import TIMEOUT, Rig, _simulator
from ncap.app import Gateway
from ncap.config import load_config, write_secret
from ncap.demo import write_config
from ncap.rig.kamailio import PrivateKamailio
from ncap.rig.prosody import PrivateProsody
from ncap.rig.pty import PtyPair
from ncap.rig.sipp import SippResult, SippRun, TracedMessage
from ncap.sensors import Reading
from ncap.sip.bridge import SipBridge, SipUser, ThingStatus
from ncap.sip.publish import PresencePublisher
from sipstack.digest import DigestClient
from sipstack.message import SipRequest
from sipstack.pidf import build_pidf
from sipstack.transaction import TimerConfig
from sipstack.transport import Destination
from sipstack.ua import IncomingRequest, UserAgent

pytestmark = pytest.mark.integration

SCENARIOS = Path(__file__).parent.parent / "sip" / "scenarios"
DOMAIN = "sip.test"
THING = "thing"
OWNER = ("boss", "b0ss-secret")
NOBODY = ("nobody", "n0body-secret")  # a SIP account that stands for no XMPP address
NOTIFY_INTERVAL_S = 1.5
_cases = itertools.count()
_cseqs = itertools.count(100)  # in-dialog SUBSCRIBEs of the protocol test


@pytest.fixture(scope="module")
def peers() -> Iterator[Rig]:
    with tempfile.TemporaryDirectory(prefix="ncap-sip-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        workdir.chmod(0o755)
        prosody = stack.enter_context(PrivateProsody(workdir / "prosody"))
        thing = prosody.register("thing")
        owner = prosody.register("owner")
        stranger = prosody.register("stranger")
        prosody.make_friends(thing, owner)
        pty = stack.enter_context(PtyPair(workdir / "pty-env"))
        _simulator(stack, pty.a_path, "env-sensor.toml")
        yield Rig(prosody, thing, owner, stranger, {"env-sensor": pty.b_path}, workdir)


def _sip_config(workdir: Path, reply_contact: str | None, more: str = "") -> str:
    secrets = workdir / "sip-secrets"
    secrets.mkdir(mode=0o700)
    for name, password in (OWNER, NOBODY):
        write_secret(secrets / name, password)
    contact = f'contact = "{reply_contact}"\n' if reply_contact else ""
    return (
        '\n[[alarm]]\nname = "overheat"\nnode = "env-sensor/temperature"\nfield = "temperature"\n'
        'above = 1000\nhysteresis = 5000\nseverity = "critical"\n'
        f'\n[sip]\nenabled = true\nudp_port = 0\ndomain = "{DOMAIN}"\nthing_user = "{THING}"\n'
        f'owner_user = "{OWNER[0]}"\nmin_notify_interval_s = {NOTIFY_INTERVAL_S}\n'
        # SIPp answers only the first challenge, and only MD5.
        'digest_algorithms = ["MD5", "SHA-256"]\n'
        f'\n[sip.users.{OWNER[0]}]\npassword_file = "{secrets / OWNER[0]}"\n{contact}'
        f'\n[sip.users.{NOBODY[0]}]\npassword_file = "{secrets / NOBODY[0]}"\n' + more
    )


@contextlib.asynccontextmanager
async def _gateway(
    rig: Rig, reply_contact: str | None = None, *, more: str = "", poll_s: float = 0.1
) -> AsyncIterator[Gateway]:
    workdir = rig.workdir / f"case-{next(_cases)}"
    workdir.mkdir()
    config = write_config(
        workdir,
        rig.prosody,
        rig.thing,
        rig.ports,
        poll_interval_s=poll_s,
        extra=_sip_config(workdir, reply_contact, more),
    )
    gateway = Gateway(load_config(config))
    await gateway.start()
    try:
        await gateway.wait_ready(TIMEOUT)
        yield gateway
    finally:
        await gateway.stop()


def _bridge(gateway: Gateway) -> SipBridge:
    assert gateway.sip is not None
    return gateway.sip


def _sipp(gateway: Gateway, scenario: str, **kwargs: object) -> SippRun:
    workdir = Path(tempfile.mkdtemp(prefix=f"sipp-{scenario}-"))
    return SippRun(
        SCENARIOS / f"{scenario}.xml",
        workdir,
        target=("127.0.0.1", _bridge(gateway).port()),
        service=THING,
        timeout=TIMEOUT,
        auth_uri=f"{THING}@{DOMAIN}",  # the digest uri must name the Request-URI
        **kwargs,  # type: ignore[arg-type]
    )


async def _reading_summary_shown(gateway: Gateway) -> None:
    """Until the bridge has a temperature reading for its presence note."""
    async with asyncio.timeout(TIMEOUT):
        while "temperature" not in gateway.sip_view.status().note:  # type: ignore[union-attr]
            await asyncio.sleep(0.05)


def _overheat(gateway: Gateway) -> None:
    """A reading past the alarm threshold, through the gateway's own reporting path."""
    node = gateway.tree.node("env-sensor")
    reading = Reading("env-sensor", "temperature", 1500.0, "°C", 1, datetime.now(UTC))
    gateway._report(node, [reading])


def _is_notify(message: TracedMessage) -> bool:
    return message.direction == "received" and message.method == "NOTIFY"


async def test_watcher_sees_the_reading_then_busy_when_an_alarm_is_raised(peers: Rig) -> None:
    async with _gateway(peers) as gateway:
        await _reading_summary_shown(gateway)
        watcher = _sipp(gateway, "presence_watch", keys={"domain": DOMAIN, "watcher": OWNER[0]},
                        auth=OWNER)  # fmt: skip
        await watcher.start_async()
        try:
            await watcher.wait_for_message_async(_is_notify, TIMEOUT)
            _overheat(gateway)  # within the rate-limit window: the next NOTIFY has it
            result = await watcher.wait_async(TIMEOUT)
        finally:
            watcher.stop()
        assert result.ok, result.describe()
        assert result.responses(401, to="SUBSCRIBE"), "digest auth was required"
        first, change, final = result.requests("NOTIFY")
        entity = f'entity="sip:{THING}@{DOMAIN}"'
        assert entity in first.body
        assert entity in change.body
        assert f"<contact>sip:{THING}@{DOMAIN}</contact>" in first.body
        assert "<basic>open</basic>" in first.body
        assert "temperature" in first.body
        assert "°C" in first.body
        assert "rpid:busy" not in first.body
        assert "<rpid:busy/>" in change.body
        assert "ALARM" in change.body
        assert (final.header("Subscription-State") or "").startswith("terminated")
        assert final.body == ""
        assert _bridge(gateway).subscriptions == 0


async def test_subscribe_needs_credentials_and_wrong_ones_are_refused(peers: Rig) -> None:
    async with _gateway(peers) as gateway:
        keys = {"domain": DOMAIN, "watcher": OWNER[0]}
        challenge = await _sipp(gateway, "subscribe_challenge", keys=keys).run_async()
        assert challenge.ok, challenge.describe()
        offered = challenge.responses(401)[0].headers("WWW-Authenticate")
        assert any("SHA-256" in value for value in offered)
        assert any("MD5" in value for value in offered)
        wrong = await _sipp(
            gateway, "presence_watch", keys=keys, auth=(OWNER[0], "not-the-password")
        ).run_async()
        assert not wrong.ok
        assert wrong.responses(403, to="SUBSCRIBE")
        assert not wrong.requests("NOTIFY")


async def test_a_sip_user_who_stands_for_nobody_is_forbidden(peers: Rig) -> None:
    async with _gateway(peers) as gateway:
        keys = {"domain": DOMAIN, "watcher": NOBODY[0]}
        refused = await _sipp(gateway, "presence_watch", keys=keys, auth=NOBODY).run_async()
        assert not refused.ok
        assert refused.responses(403, to="SUBSCRIBE")
        message = await _sipp(
            gateway, "message_uac", keys={**keys, "sender": NOBODY[0], "text": "read"}, auth=NOBODY
        ).run_async()
        assert message.responses(403, to="MESSAGE")


async def _ask(gateway: Gateway, text: str, inbox: SippRun) -> str:
    """Send ``text`` as the owner; return the text of the MESSAGE the thing answers with."""
    await inbox.start_async()
    try:
        query = await _sipp(
            gateway,
            "message_uac",
            keys={"domain": DOMAIN, "sender": OWNER[0], "text": text},
            auth=OWNER,
        ).run_async()
        assert query.ok, query.describe()
        result = await inbox.wait_async(TIMEOUT)
    finally:
        inbox.stop()
    assert result.ok, result.describe()
    (reply,) = result.requests("MESSAGE")
    assert (reply.header("From") or "").startswith(f"<sip:{THING}@{DOMAIN}>")
    return reply.body


def _inbox() -> SippRun:
    workdir = Path(tempfile.mkdtemp(prefix="sipp-inbox-"))
    return SippRun(SCENARIOS / "message_uas.xml", workdir, timeout=TIMEOUT)


async def _fetch_summary(gateway: Gateway) -> str:
    keys = {"domain": DOMAIN, "watcher": OWNER[0]}
    result: SippResult = await _sipp(gateway, "mwi_fetch", keys=keys, auth=OWNER).run_async()
    assert result.ok, result.describe()
    (notify,) = result.requests("NOTIFY")
    assert notify.header("Content-Type") == "application/simple-message-summary"
    return notify.body


async def test_message_queries_and_the_alarm_mailbox(peers: Rig) -> None:
    # The inbox needs its port before the gateway's config names it as the owner's contact.
    inbox = _inbox()
    await inbox.start_async()
    contact = inbox.local_uri.replace("sip:", f"sip:{OWNER[0]}@")
    inbox.stop()
    async with _gateway(peers, reply_contact=contact) as gateway:
        await _reading_summary_shown(gateway)
        answer = await _ask(gateway, "read", _inbox_on(inbox))
        assert "temperature" in answer
        assert "humidity" in answer

        assert "Messages-Waiting: no" in await _fetch_summary(gateway)
        _overheat(gateway)
        summary = await _fetch_summary(gateway)
        assert "Messages-Waiting: yes" in summary
        assert f"Message-Account: sip:{THING}@{DOMAIN}" in summary
        assert "Voice-Message: 1/0 (1/0)" in summary

        listing = await _ask(gateway, "alarms", _inbox_on(inbox))
        assert "#1" in listing or "1" in listing
        assert "Voice-Message: 0/1 (0/1)" in await _fetch_summary(gateway)
        acked = await _ask(gateway, "ack 1", _inbox_on(inbox))
        assert acked.startswith("Acknowledged")
        assert "Messages-Waiting: no" in await _fetch_summary(gateway)


def _inbox_on(previous: SippRun) -> SippRun:
    """A fresh inbox on the same local port (the configured contact)."""
    workdir = Path(tempfile.mkdtemp(prefix="sipp-inbox-"))
    port = int(previous.local_uri.rsplit(":", 1)[1])
    return SippRun(SCENARIOS / "message_uas.xml", workdir, local_port=port, timeout=TIMEOUT)


def _etag(publisher: PresencePublisher) -> str | None:
    return publisher.etag


KAMAILIO_USERS = {THING: "th1ng-at-kam", "watcher": "w4tch"}


async def test_presence_is_published_to_kamailio_and_its_watcher_sees_the_alarm(
    peers: Rig,
) -> None:
    with tempfile.TemporaryDirectory(prefix="ncap-kam-") as kamdir:
        kamailio = PrivateKamailio(Path(kamdir), DOMAIN, users=KAMAILIO_USERS)
        with kamailio:
            secret = peers.workdir / f"kam-secret-{next(_cases)}"
            write_secret(secret, KAMAILIO_USERS[THING])
            upstream = (
                f"\n[sip.publish]\nenabled = true\nport = {kamailio.udp_port}\n"
                f'user = "{THING}"\npassword_file = "{secret}"\nexpires_s = 120\n'
            )
            # One reading only (a long poll interval): the next change is the alarm.
            async with _gateway(peers, more=upstream, poll_s=3600) as gateway:
                await _reading_summary_shown(gateway)
                (publisher,) = _bridge(gateway).publishers
                async with asyncio.timeout(TIMEOUT):
                    while publisher.published is None or b"temperature" not in publisher.published:
                        await asyncio.sleep(0.05)
                etag = publisher.etag
                watcher = SippRun(
                    SCENARIOS / "presence_watch.xml",
                    Path(tempfile.mkdtemp(prefix="sipp-kam-watch-")),
                    target=(kamailio.host, kamailio.udp_port),
                    service=THING,
                    keys={"domain": DOMAIN, "watcher": "watcher"},
                    auth=("watcher", KAMAILIO_USERS["watcher"]),
                    auth_uri=f"{THING}@{DOMAIN}",
                    timeout=TIMEOUT,
                )
                await watcher.start_async()
                try:
                    await watcher.wait_for_message_async(_is_notify, TIMEOUT)
                    _overheat(gateway)
                    result = await watcher.wait_async(TIMEOUT)
                finally:
                    watcher.stop()
                assert publisher.etag is not None
                assert publisher.etag != etag  # the modification got a new etag
            assert _etag(publisher) is None  # removed on stop
    assert result.ok, result.describe()
    first, change, _final = result.requests("NOTIFY")
    assert "<basic>open</basic>" in first.body
    assert "temperature" in first.body
    assert "<rpid:busy/>" in change.body
    assert "ALARM" in change.body


async def test_publisher_starts_over_after_412() -> None:
    document = {"note": "one"}

    def pidf(aor: str) -> bytes:
        return build_pidf(aor, basic="open", note=document["note"])

    workdir = Path(tempfile.mkdtemp(prefix="sipp-esc-"))
    with SippRun(SCENARIOS / "esc_stub_412.xml", workdir, timeout=TIMEOUT) as esc:
        port = int(esc.local_uri.rsplit(":", 1)[1])
        # Short timers: the final removal goes to the stub after it has gone.
        async with UserAgent("127.0.0.1", timers=TimerConfig(t1=0.02, t2=0.1)) as ua:
            publisher = PresencePublisher(
                ua,
                f"sip:{THING}@{DOMAIN}",
                Destination("127.0.0.1", port),
                pidf,
                min_interval=0.0,
            )
            publisher.start()
            async with asyncio.timeout(TIMEOUT):
                while publisher.etag != "etag-one":
                    await asyncio.sleep(0.01)
                document["note"] = "two"
                publisher.changed()
                while publisher.etag != "etag-two":
                    await asyncio.sleep(0.01)
            assert publisher.published is not None
            assert b"two" in publisher.published
            result = await esc.wait_async(TIMEOUT)
            await publisher.aclose()
    assert result.ok, result.describe()
    _initial, conditional, fresh = result.requests("PUBLISH")
    assert conditional.header("SIP-If-Match") == "etag-one"
    assert fresh.header("SIP-If-Match") is None
    assert "two" in fresh.body


async def test_publisher_retries_a_too_brief_expiry_with_min_expires() -> None:
    # Kamailio applies min_expires to SUBSCRIBE only, so the ESC here is a sipstack UAS.
    seen: list[tuple[str | None, str | None]] = []

    async def esc(incoming: IncomingRequest) -> None:
        request = incoming.request
        seen.append((request.headers.get("Expires"), request.headers.get("SIP-If-Match")))
        if (request.expires or 0) and (request.expires or 0) < 300:
            incoming.respond(423, headers=[("Min-Expires", "300")])
        else:
            granted = str(request.expires)
            incoming.respond(200, headers=[("SIP-ETag", f"e{len(seen)}"), ("Expires", granted)])

    async with UserAgent("127.0.0.1") as server, UserAgent("127.0.0.1") as ua:
        server.on("PUBLISH", esc)
        publisher = PresencePublisher(
            ua,
            f"sip:{THING}@{DOMAIN}",
            Destination("127.0.0.1", server.port()),
            lambda aor: build_pidf(aor, basic="open", note="ok"),
            expires=120,
        )
        publisher.start()
        async with asyncio.timeout(TIMEOUT):
            while publisher.etag is None:
                await asyncio.sleep(0.01)
        assert publisher.expires == 300
        assert publisher.granted == 300
        await publisher.aclose()
    assert seen == [("120", None), ("300", None), ("0", "e2")]


class _FakeThing:
    """A ThingView for the notifier's protocol checks (no gateway needed)."""

    def __init__(self) -> None:
        self.note = "temperature 21.5 °C"

    def status(self) -> ThingStatus:
        return ThingStatus("open", None, self.note)

    def alarm_counts(self, identity: str) -> tuple[int, int, int, int]:
        return (0, 0, 0, 0)

    async def may_see(self, identity: str) -> bool:
        return identity == OWNER[0]

    async def command(self, identity: str, text: str) -> str:
        return f"echo {text}"


def _subscribe(
    ua: UserAgent, event: str, expires: int, to_tag: str | None = None, call_id: str | None = None
) -> SipRequest:
    request = SipRequest("SUBSCRIBE", f"sip:{THING}@{DOMAIN}")
    to = f"<sip:{THING}@{DOMAIN}>" + (f";tag={to_tag}" if to_tag else "")
    for name, value in (
        ("From", f"<sip:{OWNER[0]}@{DOMAIN}>;tag=w1"),
        ("To", to),
        ("Event", event),
        ("Expires", str(expires)),
        ("Contact", f"<{ua.contact_uri(OWNER[0])}>"),
    ):
        request.headers.add(name, value)
    if call_id is not None:
        request.headers.add("Call-ID", call_id)
        request.headers.add("CSeq", f"{next(_cseqs)} SUBSCRIBE")
    return request


async def test_notifier_error_responses_refresh_and_unsubscribe() -> None:
    thing = _FakeThing()
    bridge = SipBridge(
        thing,
        thing_user=THING,
        domain=DOMAIN,
        users={OWNER[0]: SipUser(OWNER[1])},
        min_notify_interval=0.0,
        poll_interval=0.05,
    )
    notifies: asyncio.Queue[SipRequest] = asyncio.Queue()

    async def on_notify(incoming: IncomingRequest) -> None:
        notifies.put_nowait(incoming.request)
        incoming.respond(200)

    await bridge.start()
    try:
        async with UserAgent("127.0.0.1") as ua, asyncio.timeout(TIMEOUT):
            ua.on("NOTIFY", on_notify)
            to_bridge = Destination("127.0.0.1", bridge.port())
            auth = DigestClient(*OWNER)  # SHA-256, the bridge's first choice
            bad_event = await ua.request(_subscribe(ua, "dialog", 60), destination=to_bridge)
            assert bad_event.status == 489
            offered = ",".join(bad_event.headers.get_all("Allow-Events")).replace(" ", "")
            assert set(offered.split(",")) == {"presence", "message-summary"}
            brief = await ua.request(
                _subscribe(ua, "presence", 5), destination=to_bridge, auth=auth
            )
            assert brief.status == 423
            assert brief.headers.get("Min-Expires") == "60"
            unknown = _subscribe(ua, "presence", 60, to_tag="nosuchdialog")
            assert (await ua.request(unknown, destination=to_bridge)).status == 481

            ok = await ua.request(
                _subscribe(ua, "presence", 999999), destination=to_bridge, auth=auth
            )
            assert ok.status == 200
            assert ok.headers.get("Expires") == "3600"  # clamped
            assert ok.headers.get("Contact") is not None
            tag = ok.to_addr.tag
            assert tag is not None
            first = await notifies.get()
            assert (first.headers.get("Subscription-State") or "").startswith("active")
            assert b"temperature 21.5" in first.body

            thing.note = "temperature 30.0 °C"
            changed = await notifies.get()
            assert b"temperature 30.0" in changed.body

            refresh = _subscribe(ua, "presence", 120, to_tag=tag, call_id=ok.call_id)
            refreshed = await ua.request(refresh, destination=to_bridge)
            assert refreshed.status == 200
            assert refreshed.headers.get("Expires") == "120"
            assert b"temperature 30.0" in (await notifies.get()).body  # full state again

            bye = await ua.request(
                _subscribe(ua, "presence", 0, to_tag=tag, call_id=ok.call_id), destination=to_bridge
            )
            assert bye.status == 200
            final = await notifies.get()
            assert final.headers.get("Subscription-State") == "terminated;reason=timeout"
            assert bridge.subscriptions == 0

            # MESSAGE for the alarm mailbox (RFC 3841 caller preferences): the 'alarms' listing.
            ua.on("MESSAGE", on_notify)  # the reply comes back to where we sent from
            message = SipRequest("MESSAGE", f"sip:{THING}@{DOMAIN}", body=b"read")
            for name, value in (
                ("From", f"<sip:{OWNER[0]}@{DOMAIN}>"),
                ("To", f"<sip:{THING}@{DOMAIN}>"),
                ("Content-Type", "text/plain"),
                ("Accept-Contact", '*;actor="msg-taker";explicit'),
            ):
                message.headers.add(name, value)
            accepted = await ua.request(message, destination=to_bridge, auth=auth)
            assert accepted.status == 200
            assert accepted.body == b""
            reply = await notifies.get()
            assert reply.method == "MESSAGE"
            assert reply.body == b"echo alarms"
    finally:
        await bridge.aclose()
