"""LAN discovery of the XMPP server (XEP-0347 mDNS/DNS-SD): TXT codec, advertiser and browser.

The network tests run real zeroconf on 127.0.0.1 only. Linux loops multicast back on ``lo`` (even
without its MULTICAST flag) when the sending socket names 127.0.0.1 as its multicast interface, so
nothing reaches a real LAN. Should a machine not do that, the tests move into a throw-away network
namespace instead (set ``NCAP_LAN_TEST_NETNS=1`` to force that path).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from hypothesis import given
from hypothesis import strategies as st
from zeroconf import ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from ncap.errors import NcapError
from ncap.lan import (
    SERVICE_TYPE,
    LanAdvertiser,
    LanDiscoveryError,
    LanTxt,
    LanXmppServer,
    address_jids,
    build_txt,
    find_xmpp_server,
    multicast_loops_back,
    parse_txt,
)

LOOPBACK = "127.0.0.1"
MDNS_GROUP = "224.0.0.251"
CLONE_NEWNET = 0x40000000

# ---------------------------------------------------------------------------------------------
# TXT codec


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        pytest.param(
            {
                b"txtvers": b"1",
                b"ordom": b"example.com",
                b"regis": b"registry",
                b"provis": b"provisioning",
            },
            LanTxt("example.com", ("registry",), ("provisioning",)),
            id="xep-example",
        ),
        pytest.param({}, LanTxt(), id="empty-record-is-allowed"),
        pytest.param({b"txtvers": b"1"}, LanTxt(), id="version-only"),
        pytest.param({b"ordom": b"example.org"}, LanTxt("example.org"), id="no-txtvers"),
        pytest.param(
            {b"TxtVers": b"1", b"ORDOM": b"Example.ORG", b"Regis": b"r"},
            LanTxt("Example.ORG", ("r",)),
            id="keys-case-insensitive",
        ),
        pytest.param(
            {b"ordom": b"first.org", b"ORDOM": b"second.org"},
            LanTxt("first.org"),
            id="first-occurrence-wins",
        ),
        pytest.param(
            {b"ordom": b"example.org", b"regis": b"  reg1 reg2@example.org\tdisco.example.org "},
            LanTxt("example.org", ("reg1", "reg2@example.org", "disco.example.org")),
            id="address-lists",
        ),
        pytest.param({b"regis": None, b"provis": b""}, LanTxt(), id="empty-lists"),
        pytest.param(
            {b"ordom": "exämple.org".encode(), b"\xff\xfe": b"\x00", b"other": None},
            LanTxt("exämple.org"),
            id="idn-domain-unknown-keys-ignored",
        ),
        pytest.param({b"txtvers": b"2", b"ordom": b"example.org"}, None, id="unknown-version"),
        pytest.param({b"txtvers": None}, None, id="version-without-value"),
        pytest.param({b"ordom": None}, None, id="domain-without-value"),
        pytest.param({b"ordom": b""}, None, id="empty-domain"),
        pytest.param({b"ordom": b"\xc3("}, None, id="domain-not-utf8"),
        pytest.param({b"ordom": b"exa mple.org"}, None, id="domain-with-space"),
        pytest.param({b"ordom": b"example..org"}, None, id="domain-empty-label"),
        pytest.param({b"ordom": b"user@example.org"}, None, id="domain-is-a-jid"),
        pytest.param({b"ordom": b"example.org\x00"}, None, id="domain-control-char"),
        pytest.param({b"regis": b"\xff"}, None, id="registry-not-utf8"),
        pytest.param({b"regis": b"reg/resource"}, None, id="registry-full-jid"),
        pytest.param({b"provis": b"@example.org"}, None, id="provisioner-no-localpart"),
        pytest.param({b"provis": b"prov@"}, None, id="provisioner-no-domain"),
        pytest.param({b"provis": b"a@b@c"}, None, id="provisioner-two-ats"),
    ],
)
def test_parse_txt(properties: dict[bytes, bytes | None], expected: LanTxt | None) -> None:
    assert parse_txt(properties) == expected


_known_keys = st.sampled_from(["txtvers", "ordom", "regis", "provis"]).flatmap(
    lambda key: st.tuples(*(st.sampled_from([c, c.upper()]) for c in key)).map(
        lambda chars: "".join(chars).encode()
    )
)
_txt_values = st.none() | st.binary(max_size=40) | st.text(max_size=40).map(str.encode)


@given(st.dictionaries(st.binary(max_size=12) | _known_keys, _txt_values, max_size=8))
def test_parse_txt_never_raises(properties: dict[bytes, bytes | None]) -> None:
    result = parse_txt(properties)
    assert result is None or isinstance(result, LanTxt)


_label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-äö", min_size=1, max_size=12)
_domains = st.lists(_label, min_size=1, max_size=4).map(".".join)
_addresses = _label | _domains | st.tuples(_label, _domains).map("@".join)


@given(
    st.builds(
        LanTxt,
        st.none() | _domains,
        st.lists(_addresses, max_size=4).map(tuple),
        st.lists(_addresses, max_size=4).map(tuple),
    )
)
def test_build_txt_round_trips_valid_values(txt: LanTxt) -> None:
    assert parse_txt(build_txt(txt)) == txt


@given(
    st.builds(
        LanTxt,
        st.none() | st.text(max_size=300),
        st.lists(st.text(max_size=30), max_size=10).map(tuple),
        st.lists(st.text(max_size=30), max_size=3).map(tuple),
    )
)
def test_build_txt_round_trips_or_refuses(txt: LanTxt) -> None:
    try:
        properties = build_txt(txt)
    except LanDiscoveryError:
        return
    assert all(len(key) + 1 + len(value) <= 255 for key, value in properties.items())
    assert parse_txt(properties) == txt


def test_build_txt_layout() -> None:
    assert build_txt(LanTxt("example.org", ("reg", "disco.example.org"), ())) == {
        b"txtvers": b"1",
        b"ordom": b"example.org",
        b"regis": b"reg disco.example.org",
    }
    assert build_txt(LanTxt()) == {b"txtvers": b"1"}


@pytest.mark.parametrize(
    "txt",
    [
        LanTxt("bad domain"),
        LanTxt("example.org", ("two words",)),
        LanTxt("example.org", (), ("",)),
        LanTxt("x" * 250),
        LanTxt("example.org", tuple(f"registry{n}" for n in range(30))),
    ],
)
def test_build_txt_refuses(txt: LanTxt) -> None:
    with pytest.raises(LanDiscoveryError):
        build_txt(txt)


def test_discovery_error_is_an_ncap_error() -> None:
    assert issubclass(LanDiscoveryError, NcapError)


def test_address_jids() -> None:
    addresses = ("registry", "reg@other.org", "discovery.example.org")
    assert address_jids(addresses, "example.org") == (
        "registry@example.org",
        "reg@other.org",
        "discovery.example.org",
    )
    assert address_jids(addresses, None) == ("reg@other.org", "discovery.example.org")


def test_server_matches_domain_case_insensitively() -> None:
    server = LanXmppServer(LOOPBACK, 5222, "Example.ORG", ("registry",), (), "pronto")
    assert server.serves("example.org")
    assert server.serves(None)
    assert not server.serves("example.com")
    assert not LanXmppServer(LOOPBACK, 5222, None, (), (), "pronto").serves("example.org")
    assert server.registry_jids() == ("registry@Example.ORG",)


# ---------------------------------------------------------------------------------------------
# Argument checks (no sockets are opened)


@pytest.mark.parametrize(
    "interfaces",
    [LOOPBACK, [], ["not-an-address"], ["203.0.113.7"]],
    ids=["bare-string", "empty", "not-an-ip", "not-local"],
)
async def test_find_refuses_bad_interfaces(interfaces: list[str]) -> None:
    with pytest.raises(LanDiscoveryError):
        await find_xmpp_server("example.org", interfaces=interfaces, timeout=0.1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"host": "example.org"},
        {"host": "0.0.0.0"},  # noqa: S104 -- refused, never bound
        {"host": MDNS_GROUP},
        {"port": 0},
        {"port": 70000},
        {"domain": "not a domain"},
        {"registries": ["a b"]},
        {"instance": ""},
        {"instance": "has.dot"},
        {"instance": "x" * 64},
        {"interfaces": "all-of-them"},
    ],
)
def test_advertiser_refuses_bad_arguments(kwargs: dict[str, object]) -> None:
    arguments: dict[str, object] = {
        "host": LOOPBACK,
        "port": 5222,
        "domain": "example.org",
        "interfaces": [LOOPBACK],
    }
    arguments.update(kwargs)
    with pytest.raises(LanDiscoveryError):
        LanAdvertiser(**arguments)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Advertise and find, on loopback


def _setns(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns({path})")
    finally:
        os.close(fd)


@pytest.fixture(scope="module")
def mdns_loopback() -> Iterator[list[str]]:
    """Interfaces for the mDNS tests: 127.0.0.1, in a private network namespace if need be.

    A namespace moves only this thread (sockets belong to the namespace of the thread that made
    them), so the zeroconf sockets the tests open live there; the thread moves back afterwards.
    """
    if os.environ.get("NCAP_LAN_TEST_NETNS") != "1" and multicast_loops_back(LOOPBACK):
        yield [LOOPBACK]
        return
    name = f"ncap-lan-{uuid.uuid4().hex[:8]}"
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as err:
        os.close(home)
        pytest.fail(f"multicast does not loop back on lo, and no network namespace: {err}")
    try:
        subprocess.run(
            ["ip", "-n", name, "link", "set", "lo", "up", "multicast", "on"],
            check=True,
            timeout=10,
        )
        _setns(f"/run/netns/{name}")
        try:
            if not multicast_loops_back(LOOPBACK):
                pytest.fail("multicast does not loop back on lo, even in a network namespace")
            yield [LOOPBACK]
        finally:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.setns(home, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back to the test's namespace")
    finally:
        os.close(home)
        subprocess.run(["ip", "netns", "del", name], check=True, timeout=10)


def _unique(prefix: str) -> str:
    # Other runs may share this machine's loopback: never rely on being the only advertiser.
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# One advertisement serves the finding tests: probing its name takes zeroconf over a second.
@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def advertiser(mdns_loopback: list[str]) -> AsyncIterator[LanAdvertiser]:
    async with LanAdvertiser(
        LOOPBACK,
        5222,
        domain=f"{_unique('lan')}.test",
        registries=("registry", "discovery.lan.test"),
        provisioners=("provisioning@lan.test",),
        interfaces=mdns_loopback,
        instance=_unique("ncap-test"),
    ) as advertised:
        yield advertised


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.timeout(10)
async def test_find_server_of_domain(advertiser: LanAdvertiser, mdns_loopback: list[str]) -> None:
    domain = advertiser.server.domain
    assert domain is not None
    found = await find_xmpp_server(domain.upper(), interfaces=mdns_loopback, timeout=5)
    assert found == advertiser.server
    assert found.host == LOOPBACK
    assert found.registry_jids() == (f"registry@{domain}", "discovery.lan.test")


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.timeout(10)
async def test_find_any_server(advertiser: LanAdvertiser, mdns_loopback: list[str]) -> None:
    found = await find_xmpp_server(None, interfaces=mdns_loopback, timeout=5)
    assert found is not None
    # Another run on this machine might answer first; if it is ours, it must be exact.
    assert found == advertiser.server or found.instance != advertiser.instance


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.timeout(10)
async def test_other_domain_is_none_after_timeout(
    advertiser: LanAdvertiser, mdns_loopback: list[str]
) -> None:
    started = time.monotonic()
    found = await find_xmpp_server(
        _unique("other") + ".test", interfaces=mdns_loopback, timeout=0.5
    )
    elapsed = time.monotonic() - started
    assert found is None
    assert 0.45 < elapsed < 1.5


@pytest.mark.timeout(10)
async def test_advertiser_says_goodbye_on_exit(mdns_loopback: list[str]) -> None:
    domain = _unique("bye") + ".test"
    events: asyncio.Queue[tuple[str, ServiceStateChange]] = asyncio.Queue()

    def on_change(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        events.put_nowait((name, state_change))

    async def next_event_for(instance: str) -> ServiceStateChange:
        while True:
            name, change = await events.get()
            if name.startswith(instance + "."):
                return change

    async with AsyncZeroconf(interfaces=mdns_loopback) as watcher:
        browser = AsyncServiceBrowser(watcher.zeroconf, SERVICE_TYPE, handlers=[on_change])
        try:
            async with LanAdvertiser(
                LOOPBACK, 5222, domain=domain, interfaces=mdns_loopback, instance=_unique("bye")
            ) as advertised:
                change = await asyncio.wait_for(next_event_for(advertised.instance), 5)
                assert change is ServiceStateChange.Added
            # Goodbye packets (TTL 0), not cache expiry, make the browser drop it this fast.
            change = await asyncio.wait_for(next_event_for(advertised.instance), 3)
            assert change is ServiceStateChange.Removed
        finally:
            await browser.async_cancel()
    assert await find_xmpp_server(domain, interfaces=mdns_loopback, timeout=0.5) is None


@pytest.mark.timeout(10)
async def test_instance_with_junk_txt_is_skipped(
    mdns_loopback: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    domain = _unique("junk") + ".test"
    junk = AsyncServiceInfo(
        SERVICE_TYPE,
        f"{_unique('junk')}.{SERVICE_TYPE}",
        port=5222,
        properties={b"txtvers": b"1", b"ordom": domain.encode(), b"regis": b"\xff\xfe"},
        parsed_addresses=[LOOPBACK],
    )
    caplog.set_level(logging.DEBUG, logger="ncap.lan")
    async with AsyncZeroconf(interfaces=mdns_loopback) as responder:
        # Probing is beside the point here; cooperating_responders skips it.
        await responder.async_register_service(junk, cooperating_responders=True)
        assert await find_xmpp_server(domain, interfaces=mdns_loopback, timeout=0.5) is None
    assert "unreadable TXT record" in caplog.text
