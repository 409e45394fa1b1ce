"""XEP-0347 claim lifecycle and XEP-0324 provisioning through the real Prosody with the
``ncap-registry`` component attached: register, claim, owner/stranger decisions, clearCache,
search, remove, unregister, disown, the service going away, and wrong claim keys."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.etree.ElementTree import Element, SubElement

import pytest
from slixmpp import JID, Message, Presence
from slixmpp.exceptions import IqError

from integration.conftest import TIMEOUT, Rig, _simulator
from integration.proc import readline_within
from ncap.app import Gateway
from ncap.claim import RegistryToolError, claim, disown, remove, search
from ncap.config import load_config, write_secret
from ncap.demo import write_config
from ncap.lan import LanAdvertiser, multicast_loops_back
from ncap.registry.cli import start_registry, stop_registry
from ncap.registry.service import CLAIM_ATTEMPTS, RegistryComponent
from ncap.rig.prosody import Account, PrivateProsody
from ncap.rig.pty import PtyPair
from ncap.unregister import unregister_gateway
from ncap.xmpp.connection import SecureClient
from ncap.xmpp.lifecycle import send_iq
from xep.errors import ReadoutError
from xep.xep_0323.model import NodeRef
from xep.xep_0324 import convert as prov_convert
from xep.xep_0324.model import ClearCache
from xep.xep_0347 import convert as disco_convert
from xep.xep_0347.model import KEY, MetaTag, Register, SearchOperator, SearchTerm
from xep.xep_0347.uri import parse_disco_uri

pytestmark = pytest.mark.integration

_workdirs = itertools.count()


@pytest.fixture(scope="module")
def peers() -> Iterator[Rig]:
    """Prosody with the thing/owner/stranger accounts and one simulated environment sensor."""
    with tempfile.TemporaryDirectory(prefix="ncap-prov-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        workdir.chmod(0o755)
        prosody = stack.enter_context(PrivateProsody(workdir / "prosody"))
        thing = prosody.register("thing")
        owner = prosody.register("owner")
        stranger = prosody.register("stranger")
        pty = stack.enter_context(PtyPair(workdir / "pty-env"))
        _simulator(stack, pty.a_path, "env-sensor.toml")
        yield Rig(prosody, thing, owner, stranger, {"env-sensor": pty.b_path}, workdir)


@dataclass
class Setup:
    rig: Rig
    registry: RegistryComponent
    gateway: Gateway
    workdir: Path
    claim_uri: str | None

    @property
    def thing(self) -> JID:
        return self.gateway.client.boundjid


async def _registry(rig: Rig, workdir: Path) -> RegistryComponent:
    prosody = rig.prosody
    return await start_registry(
        prosody.registry_domain,
        prosody.component_secret,
        workdir / "registry.sqlite",
        server=prosody.host,
        port=prosody.component_port,
        timeout=TIMEOUT,
    )


@contextlib.asynccontextmanager
async def _setup(rig: Rig) -> AsyncIterator[Setup]:
    """A fresh registry database and gateway state; the gateway registered, not claimed."""
    workdir = rig.workdir / f"case-{next(_workdirs)}"
    workdir.mkdir()
    registry = await _registry(rig, workdir)
    config = load_config(
        write_config(
            workdir, rig.prosody, rig.thing, rig.ports, registry=rig.prosody.registry_domain
        )
    )
    gateway = Gateway(config)
    setup = Setup(rig, registry, gateway, workdir, None)
    try:
        await gateway.start()
        await gateway.wait_ready(TIMEOUT)
        lifecycle = gateway.client.lifecycle
        assert lifecycle is not None
        async with asyncio.timeout(TIMEOUT):
            await lifecycle.registered.wait()
        setup.claim_uri = lifecycle.claim_uri
        yield setup
    finally:
        await gateway.stop()
        await stop_registry(setup.registry)  # a test may have replaced it


@contextlib.asynccontextmanager
async def _client(rig: Rig, who: Account) -> AsyncIterator[SecureClient]:
    client = rig.client(who)
    await client.start(TIMEOUT)
    client.send_presence()
    try:
        yield client
    finally:
        await client.disconnect(wait=1.0)


async def _claim(setup: Setup, owner: SecureClient, *, public: bool = False) -> str:
    assert setup.claim_uri is not None
    uri = parse_disco_uri(setup.claim_uri)
    assert uri.registry == setup.rig.prosody.registry_domain
    claimed = await claim(owner, uri.registry, uri, public=public, timeout=TIMEOUT)
    await setup.gateway.client.wait_owner(owner.boundjid.bare, TIMEOUT)
    return claimed


class Inbox:
    """Chat with the registry: what a client receives from it, and what it says to it."""

    def __init__(self, client: SecureClient, sender: str) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.client = client
        self.sender = sender

        def on_message(msg: Message) -> None:
            if msg["from"].bare == sender and msg["body"]:
                self.queue.put_nowait(msg["body"])

        client.add_event_handler("message", on_message)

    async def next(self) -> str:
        async with asyncio.timeout(TIMEOUT):
            return await self.queue.get()

    async def question(self, wants: str) -> int:
        """The number of the next question put to the owner, which must contain *wants*."""
        text = await self.next()
        assert wants in text
        number = re.search(r"#(\d+)", text)
        assert number is not None
        return int(number.group(1))

    async def say(self, text: str) -> str:
        """Send *text* to the registry; its reply."""
        self.client.send_message(mto=JID(self.sender), mbody=text, mtype="chat")
        return await self.next()


async def _readout_fields(client: SecureClient, thing: JID, node: str) -> list[str]:
    readout = await client.sensordata.request_readout(thing, nodes=[NodeRef(node)], timeout=TIMEOUT)
    return sorted(f.name for n in readout.fields for f in n.fields)


async def test_claim_owner_reads_stranger_is_denied_and_the_owner_is_asked(
    peers: Rig,
) -> None:
    async with (
        _setup(peers) as setup,
        _client(peers, peers.owner) as owner,
        _client(peers, peers.stranger) as stranger,
    ):
        assert setup.claim_uri is not None
        assert (setup.workdir / "state" / "claim.png").is_file()
        assert (setup.workdir / "state" / "claim.png").stat().st_mode & 0o777 == 0o600
        inbox = Inbox(owner, peers.prosody.registry_domain)
        assert await _claim(setup, owner) == setup.thing.bare
        assert not (setup.workdir / "state" / "claim.png").exists()  # the key is spent
        assert setup.registry.store.get(setup.thing.bare) is not None
        assert setup.registry.store.get(setup.thing.bare).key is None  # type: ignore[union-attr]

        # The owner reads without being on the roster by hand: ownership is enough.
        assert await _readout_fields(owner, setup.thing, "env-sensor") == [
            "humidity",
            "pressure",
            "temperature",
        ]
        with pytest.raises(ReadoutError) as refused:
            await _readout_fields(stranger, setup.thing, "env-sensor")
        assert refused.value.condition == "forbidden"
        number = await inbox.question("stranger@ncap.test wants to read")

        # The owner allows one field; the service clears the thing's cache.
        assert "allowed (only temperature)" in await inbox.say(f"allow {number} temperature")
        assert await _readout_fields(stranger, setup.thing, "env-sensor") == ["temperature"]
        # Asking for a field outside the rule leaves nothing: refused.
        with pytest.raises(ReadoutError):
            await stranger.sensordata.request_readout(
                setup.thing,
                nodes=[NodeRef("env-sensor")],
                field_names=["pressure"],
                timeout=TIMEOUT,
            )

        # Only the provisioning service may clear the thing's cache.
        with pytest.raises(IqError) as not_yours:
            await send_iq(
                stranger,
                setup.thing.full,
                prov_convert.to_xml(ClearCache()),
                kind="set",
                timeout=TIMEOUT,
            )
        assert not_yours.value.condition == "forbidden"

        # The owner changes their mind: 'forget' clears the thing's cache, the stranger is out.
        assert "Forgot" in await inbox.say(f"forget {peers.stranger.jid}")
        with pytest.raises(ReadoutError):
            await _readout_fields(stranger, setup.thing, "env-sensor")


async def test_owner_decides_through_the_ad_hoc_command(peers: Rig) -> None:
    async with (
        _setup(peers) as setup,
        _client(peers, peers.owner) as owner,
        _client(peers, peers.stranger) as stranger,
    ):
        inbox = Inbox(owner, peers.prosody.registry_domain)
        await _claim(setup, owner)
        with pytest.raises(ReadoutError):
            await _readout_fields(stranger, setup.thing, "env-sensor/humidity")
        await inbox.next()
        registry = peers.prosody.registry_domain
        start = Element(
            "{http://jabber.org/protocol/commands}command", node="decide", action="execute"
        )
        iq = owner.make_iq_set(ito=JID(registry))
        iq.append(start)
        form_page = await iq.send(timeout=TIMEOUT)
        command = form_page.xml.find("{http://jabber.org/protocol/commands}command")
        assert command is not None
        session = command.get("sessionid")
        options = command.findall(".//{jabber:x:data}field[@var='question']/{jabber:x:data}option")
        assert len(options) == 1
        assert "stranger@" in (options[0].get("label") or "")
        submit = Element(
            "{http://jabber.org/protocol/commands}command",
            node="decide",
            action="complete",
            sessionid=session or "",
        )
        form = SubElement(submit, "{jabber:x:data}x", type="submit")
        for var, value in (
            ("question", options[0].findtext("{jabber:x:data}value") or ""),
            ("decision", "allow"),
            ("names", ""),
        ):
            field = SubElement(form, "{jabber:x:data}field", var=var)
            SubElement(field, "{jabber:x:data}value").text = value
        done = owner.make_iq_set(ito=JID(registry))
        done.append(submit)
        result = await done.send(timeout=TIMEOUT)
        note = result.xml.find(".//{http://jabber.org/protocol/commands}note")
        assert note is not None
        assert "allowed" in (note.text or "")
        assert await _readout_fields(stranger, setup.thing, "env-sensor/humidity") == ["humidity"]


async def test_stopped_provisioning_service_denies_strangers_but_serves_the_owner(
    peers: Rig,
) -> None:
    async with (
        _setup(peers) as setup,
        _client(peers, peers.owner) as owner,
        _client(peers, peers.stranger) as stranger,
    ):
        await _claim(setup, owner)
        await stop_registry(setup.registry)
        with pytest.raises(ReadoutError) as refused:
            await _readout_fields(stranger, setup.thing, "env-sensor")
        assert refused.value.condition == "forbidden"
        assert await _readout_fields(owner, setup.thing, "env-sensor/temperature") == [
            "temperature"
        ]
        provisioning = setup.gateway.client.provisioning
        assert provisioning is not None
        assert provisioning.failures >= 1
        setup.registry = await _registry(peers, setup.workdir)  # for the teardown


async def test_wrong_claim_key_is_rejected_and_rate_limited(peers: Rig) -> None:
    async with _setup(peers) as setup, _client(peers, peers.stranger) as stranger:
        assert setup.claim_uri is not None
        uri = parse_disco_uri(setup.claim_uri)
        assert uri.registry is not None
        wrong = type(uri)(
            tuple(MetaTag(KEY, "0" * 32) if t.key == KEY else t for t in uri.tags),
            registry=uri.registry,
        )
        for _ in range(CLAIM_ATTEMPTS):
            with pytest.raises(RegistryToolError, match="item-not-found"):
                await claim(stranger, uri.registry, wrong, public=False, timeout=TIMEOUT)
        # Even the right key is refused now: guessing is throttled, not just failing.
        with pytest.raises(RegistryToolError, match="resource-constraint"):
            await claim(stranger, uri.registry, uri, public=False, timeout=TIMEOUT)
        assert setup.gateway.client.owner is None


async def test_public_search_remove_and_self_owned_things(peers: Rig) -> None:
    meter = await asyncio.to_thread(peers.prosody.register, "meter")
    async with (
        _setup(peers) as setup,
        _client(peers, peers.owner) as owner,
        _client(peers, peers.stranger) as stranger,
        _client(peers, meter) as meter_client,
    ):
        registry = peers.prosody.registry_domain
        await _claim(setup, owner, public=True)
        by_model = (SearchTerm(SearchOperator.EQ, "MODEL", False, value="NCAP demo"),)
        found = await search(stranger, registry, by_model, timeout=TIMEOUT)
        assert [t.jid for t in found.things if t.node is None] == [setup.thing.bare]
        assert all(tag.key != KEY for t in found.things for tag in t.tags)
        channels = {t.node.node_id for t in found.things if t.node is not None}
        assert "env-sensor/temperature" not in channels  # nodes carry NAME/CLASS, not MODEL
        by_class = (SearchTerm(SearchOperator.EQ, "CLASS", False, value="Channel"),)
        nodes = await search(stranger, registry, by_class, timeout=TIMEOUT)
        assert {"env-sensor/temperature", "env-sensor/humidity"} <= {
            t.node.node_id for t in nodes.things if t.node is not None
        }
        key_search = (SearchTerm(SearchOperator.MASK, KEY, False, value="*"),)
        assert (await search(stranger, registry, key_search, timeout=TIMEOUT)).things == ()

        # A self-owned thing is public at once, without a claim.
        tags = (MetaTag("MAN", "meter.invalid"), MetaTag("SN", "42"), MetaTag.number("V", 1.5))
        await send_iq(
            meter_client,
            registry,
            disco_convert.to_xml(Register(tags, None, self_owned=True)),
            kind="set",
            timeout=TIMEOUT,
        )
        version = (SearchTerm(SearchOperator.RANGE, "V", True, low=1.0, high=2.0),)
        found = await search(stranger, registry, version, timeout=TIMEOUT)
        assert [t.jid for t in found.things] == [meter.jid]

        # Remove: hidden from searches, and the thing is told.
        await remove(owner, registry, setup.thing.bare, timeout=TIMEOUT)
        assert (await search(stranger, registry, by_model, timeout=TIMEOUT)).things == ()
        lifecycle = setup.gateway.client.lifecycle
        assert lifecycle is not None
        await lifecycle.wait_for(lambda state: state.removed, TIMEOUT)


async def test_disown_unclaims_the_thing_which_registers_again(peers: Rig) -> None:
    async with _setup(peers) as setup, _client(peers, peers.owner) as owner:
        await _claim(setup, owner)
        lifecycle = setup.gateway.client.lifecycle
        assert lifecycle is not None
        lifecycle.registered.clear()
        await disown(owner, peers.prosody.registry_domain, setup.thing.bare, timeout=TIMEOUT)
        assert setup.gateway.client.owner is None
        async with asyncio.timeout(TIMEOUT):
            await lifecycle.registered.wait()
        fresh = lifecycle.claim_uri
        assert fresh is not None
        assert fresh != setup.claim_uri
        assert (setup.workdir / "state" / "claim.uri").read_text().strip() == fresh
        # The old key was spent; the new one claims again.
        uri = parse_disco_uri(fresh)
        assert uri.registry is not None
        assert await claim(owner, uri.registry, uri, public=False, timeout=TIMEOUT)


async def test_unregister_removes_the_thing_from_the_registry(peers: Rig) -> None:
    async with _setup(peers) as setup:
        store = setup.registry.store
        assert store.get(setup.thing.bare) is not None
        await setup.gateway.stop()
        config = load_config(setup.workdir / "ncap.toml")
        assert await unregister_gateway(config, TIMEOUT) == peers.prosody.registry_domain
        assert store.get(setup.thing.bare) is None
        assert store.get(setup.thing.bare, NodeRef("env-sensor", "MeteringTopology")) is None
        assert not (setup.workdir / "state" / "claim.uri").exists()


async def test_friendship_request_waits_for_the_owner_and_is_granted(peers: Rig) -> None:
    async with (
        _setup(peers) as setup,
        _client(peers, peers.owner) as owner,
        _client(peers, peers.stranger) as stranger,
    ):
        inbox = Inbox(owner, peers.prosody.registry_domain)
        await _claim(setup, owner)
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_available(presence: Presence) -> None:
            # The stranger sees the thing online: the friendship is there.
            if presence["from"].bare == setup.thing.bare and not granted.done():
                granted.set_result(None)

        stranger.add_event_handler("presence_available", on_available)
        stranger.send_presence(pto=setup.thing.bare, ptype="subscribe")
        number = await inbox.question("wants to befriend")
        assert not granted.done()  # pending, neither granted nor refused
        assert "allowed" in await inbox.say(f"allow {number}")
        async with asyncio.timeout(TIMEOUT):
            await granted
        # A friend allowed by the owner may chat; the reply comes from the thing.
        replies: asyncio.Queue[str] = asyncio.Queue()
        stranger.add_event_handler(
            "message",
            lambda msg: (
                replies.put_nowait(msg["body"])
                if msg["from"].bare == setup.thing.bare and msg["type"] == "chat"
                else None
            ),
        )
        stranger.send_message(mto=setup.thing, mbody="list", mtype="chat")
        async with asyncio.timeout(TIMEOUT):
            assert "env-sensor" in await replies.get()
        # Friendship is not reading: that is asked of the owner separately.
        stranger.send_message(mto=setup.thing, mbody="read env-sensor", mtype="chat")
        async with asyncio.timeout(TIMEOUT):
            assert "may not read" in await replies.get()


async def test_gateway_finds_server_and_registry_on_the_lan(peers: Rig) -> None:
    if not multicast_loops_back("127.0.0.1"):
        pytest.skip("multicast does not loop back on lo here (mDNS is covered by test_lan)")
    workdir = peers.workdir / f"case-{next(_workdirs)}"
    workdir.mkdir()
    prosody = peers.prosody
    registry = await _registry(peers, workdir)
    text = write_config(workdir, prosody, peers.thing, peers.ports).read_text()
    # No server, no registry: both come from the DNS-SD announcement.
    text = re.sub(r"(?m)^server = .*\nport = \d+\n", "", text)
    text = text.replace("[xmpp]\n", '[xmpp]\nlan_interfaces = ["127.0.0.1"]\n')
    (workdir / "ncap.toml").write_text(text)
    advertiser = LanAdvertiser(
        "127.0.0.1",
        prosody.c2s_port,
        domain=prosody.domain,
        interfaces=["127.0.0.1"],
        registries=[prosody.registry_domain],
    )
    gateway = Gateway(load_config(workdir / "ncap.toml"))
    try:
        async with advertiser:
            await gateway.start()
            await gateway.wait_ready(TIMEOUT)
        lifecycle = gateway.client.lifecycle
        assert lifecycle is not None
        async with asyncio.timeout(TIMEOUT):
            await lifecycle.registered.wait()
        assert lifecycle.state.registry == prosody.registry_domain
    finally:
        await gateway.stop()
        await stop_registry(registry)


def test_ncap_registry_command_attaches_and_stops_on_sigterm(peers: Rig) -> None:
    prosody = peers.prosody
    workdir = peers.workdir / f"case-{next(_workdirs)}"
    workdir.mkdir()
    secret = workdir / "secret"
    write_secret(secret, prosody.component_secret)
    command = [
        sys.executable,
        "-m",
        "ncap.registry.cli",
        "--component",
        prosody.registry_domain,
        "--secret-file",
        str(secret),
        "--database",
        str(workdir / "registry.sqlite"),
        "--port",
        str(prosody.component_port),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert readline_within(process, TIMEOUT).strip() == f"ready {prosody.registry_domain}"
        assert (workdir / "registry.sqlite").stat().st_mode & 0o777 == 0o600
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=TIMEOUT) == 0
    secret.chmod(0o644)  # readable by others: refused before anything starts
    refused = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert refused.returncode == 78
    assert "secret" in refused.stderr


async def test_public_thing_updates_its_tags_when_it_comes_back(peers: Rig) -> None:
    async with _setup(peers) as setup, _client(peers, peers.stranger) as stranger:
        async with _client(peers, peers.owner) as owner:
            await _claim(setup, owner, public=True)
        await setup.gateway.stop()
        config = setup.workdir / "ncap.toml"
        config.write_text(config.read_text().replace('SN = "demo-0001"', 'SN = "demo-0002"'))
        again = Gateway(load_config(config))
        try:
            await again.start()
            lifecycle = again.client.lifecycle
            assert lifecycle is not None
            async with asyncio.timeout(TIMEOUT):
                await lifecycle.registered.wait()
            assert lifecycle.owner == peers.owner.jid
            serial = (SearchTerm(SearchOperator.EQ, "SN", False, value="demo-0002"),)
            found = await search(stranger, peers.prosody.registry_domain, serial, timeout=TIMEOUT)
            assert [t.jid for t in found.things] == [setup.thing.bare]
        finally:
            await again.stop()
