"""Find the XMPP server on the LAN by mDNS/DNS-SD, and advertise one (XEP-0347 "find XMPP server").

A server publishes ``<instance>._xmpp-client._tcp.local.`` with SRV, A/AAAA and a TXT record::

    txtvers=1  ordom=example.org  regis=registry  provis=provisioning

``ordom`` is the server's origin domain; ``regis`` and ``provis`` are space-separated lists of
registry and provisioning-server addresses (the XEP calls them "username portions" of JIDs but
allows whole JIDs).

Decoding the TXT record is the pure function `parse_txt`; it never raises: a record it cannot read
unambiguously yields ``None`` and that instance is skipped. `build_txt` is its inverse and raises
`LanDiscoveryError` for values that could not be read back.

Every network entry point takes ``interfaces`` without a default: either IP addresses of this
machine (tests and the demo pass ``["127.0.0.1"]``, so nothing is sent on a real LAN) or the
explicit word ``"all"`` (every IPv4 interface, for a thing installed on a real network).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Self

import ifaddr
from zeroconf import Error as ZeroconfError
from zeroconf import InterfaceChoice, IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from ncap.errors import NcapError

_LOGGER = logging.getLogger(__name__)

SERVICE_TYPE = "_xmpp-client._tcp.local."
TXT_VERSION = b"1"

Interfaces = Sequence[str] | Literal["all"]

# One TXT string is length-prefixed by a single byte (RFC 6763 §6.1).
_MAX_TXT_STRING = 255
# A DNS label, and so an instance name or host name label, is at most 63 bytes.
_MAX_LABEL = 63
# Characters never valid in a JID domain or localpart that matter here (RFC 7622), plus '/'
# because a registry or provisioning address is a bare JID.
_FORBIDDEN_IN_ADDRESS = frozenset("/\\\"&'<>")
_HOST_LABEL_JUNK = re.compile(r"[^a-z0-9-]+")


class LanDiscoveryError(NcapError):
    """LAN discovery could not start, or a value to advertise cannot be published."""


@dataclass(frozen=True)
class LanTxt:
    """The XEP-0347 part of an ``_xmpp-client._tcp`` TXT record."""

    domain: str | None = None
    registries: tuple[str, ...] = ()
    provisioners: tuple[str, ...] = ()


@dataclass(frozen=True)
class LanXmppServer:
    """An XMPP server found on the LAN. ``host`` is an IP address as text."""

    host: str
    port: int
    domain: str | None
    registries: tuple[str, ...]
    provisioners: tuple[str, ...]
    instance: str

    def serves(self, domain: str | None) -> bool:
        """Whether this server is the one for ``domain`` (any server when ``domain`` is None)."""
        if domain is None:
            return True
        return self.domain is not None and self.domain.casefold() == domain.casefold()

    def registry_jids(self) -> tuple[str, ...]:
        """The ``regis`` entries as JIDs (see `address_jids`)."""
        return address_jids(self.registries, self.domain)

    def provisioner_jids(self) -> tuple[str, ...]:
        """The ``provis`` entries as JIDs (see `address_jids`)."""
        return address_jids(self.provisioners, self.domain)


def address_jids(addresses: Iterable[str], domain: str | None) -> tuple[str, ...]:
    """Turn ``regis``/``provis`` entries into JIDs.

    An entry with ``@`` is a bare JID and an entry with a dot is a component address; both are
    kept. Anything else is a user name on the origin domain (the XEP's wording), so it gets
    ``@domain`` -- or is dropped when the server published no domain.
    """
    jids: list[str] = []
    for address in addresses:
        if "@" in address or "." in address:
            jids.append(address)
        elif domain is not None:
            jids.append(f"{address}@{domain}")
    return tuple(jids)


# ---------------------------------------------------------------------------------------------
# TXT record codec (pure)


def _has_forbidden_char(text: str) -> bool:
    return any(
        char.isspace()
        or char in _FORBIDDEN_IN_ADDRESS
        # Control, format, surrogate, private-use and unassigned code points.
        or unicodedata.category(char).startswith("C")
        for char in text
    )


def _is_domain(text: str) -> bool:
    if not text or _has_forbidden_char(text) or "@" in text:
        return False
    return all(text.split("."))  # no empty label, no leading or trailing dot


def _is_address(text: str) -> bool:
    """A user name, a bare JID (``user@domain``) or a component address."""
    local, at, domain = text.partition("@")
    if not at:
        return bool(text) and not _has_forbidden_char(text)
    return bool(local) and not _has_forbidden_char(local) and _is_domain(domain)


def _first_values(properties: Mapping[bytes, bytes | None]) -> dict[str, bytes | None]:
    """Known keys, case-folded; only the first occurrence of a key counts (RFC 6763 §6.4)."""
    values: dict[str, bytes | None] = {}
    for key, value in properties.items():
        try:
            name = key.decode("ascii").lower()
        except UnicodeDecodeError:
            continue  # not a key of ours; unknown keys are ignored
        values.setdefault(name, value)
    return values


def _text(value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _address_list(value: bytes | None) -> tuple[str, ...] | None:
    """Space-separated addresses; a key without a value means an empty list. None if junk."""
    if value is None:
        return ()
    text = _text(value)
    if text is None:
        return None
    addresses = tuple(text.split())
    return addresses if all(_is_address(address) for address in addresses) else None


def parse_txt(properties: Mapping[bytes, bytes | None]) -> LanTxt | None:
    """Decode a TXT record's key/value pairs; None if it cannot be read unambiguously.

    Keys are case-insensitive and unknown keys are ignored. An empty record is valid (DNS-SD lets
    a server publish nothing) and means "some XMPP server, domain unknown". A ``txtvers`` other
    than 1 is a format we do not know, so the record counts as junk. Never raises.
    """
    values = _first_values(properties)
    if "txtvers" in values and values["txtvers"] != TXT_VERSION:
        return None

    domain: str | None = None
    if "ordom" in values:
        domain = _text(values["ordom"])
        if domain is None or not _is_domain(domain):
            return None

    registries = _address_list(values.get("regis"))
    provisioners = _address_list(values.get("provis"))
    if registries is None or provisioners is None:
        return None
    return LanTxt(domain=domain, registries=registries, provisioners=provisioners)


def build_txt(txt: LanTxt) -> dict[bytes, bytes]:
    """The TXT key/value pairs for ``txt``; `parse_txt` reads them back unchanged.

    Raises `LanDiscoveryError` for a value that is not a domain or address, or that does not fit
    a TXT string.
    """
    properties = {b"txtvers": TXT_VERSION}
    if txt.domain is not None:
        if not _is_domain(txt.domain):
            raise LanDiscoveryError(f"not a domain name: {txt.domain!r}")
        properties[b"ordom"] = txt.domain.encode("utf-8")
    for key, addresses in ((b"regis", txt.registries), (b"provis", txt.provisioners)):
        if not addresses:
            continue
        for address in addresses:
            if not _is_address(address):
                raise LanDiscoveryError(f"not a JID or user name: {address!r}")
        properties[key] = " ".join(addresses).encode("utf-8")
    for key, value in properties.items():
        if len(key) + 1 + len(value) > _MAX_TXT_STRING:
            raise LanDiscoveryError(f"TXT entry {key.decode()} is longer than 255 bytes")
    return properties


# ---------------------------------------------------------------------------------------------
# Interfaces


def _local_addresses() -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    found: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            text = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            found.add(ipaddress.ip_address(text))
    return found


def _zeroconf_interfaces(interfaces: Interfaces) -> tuple[InterfaceChoice | list[str], IPVersion]:
    """Check the caller's interface choice and translate it for zeroconf."""
    if interfaces == "all":
        # IPv4 mDNS is what every responder speaks; it avoids IPv6 scope handling.
        return InterfaceChoice.All, IPVersion.V4Only
    if isinstance(interfaces, str) or not interfaces:
        raise LanDiscoveryError(
            f"interfaces must be a list of IP addresses or 'all': {interfaces!r}"
        )
    versions = set()
    local = _local_addresses()
    for text in interfaces:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise LanDiscoveryError(f"interface {text!r} is not an IP address") from None
        # A scoped IPv6 address compares unequal to its unscoped twin listed by ifaddr.
        if ipaddress.ip_address(text.partition("%")[0]) not in local:
            raise LanDiscoveryError(f"{text} is not an address of this machine")
        versions.add(address.version)
    if len(versions) > 1:
        return list(interfaces), IPVersion.All
    return list(interfaces), IPVersion.V4Only if 4 in versions else IPVersion.V6Only


def _open_zeroconf(interfaces: Interfaces) -> AsyncZeroconf:
    choice, ip_version = _zeroconf_interfaces(interfaces)
    try:
        return AsyncZeroconf(interfaces=choice, ip_version=ip_version)
    except (OSError, RuntimeError) as err:
        raise LanDiscoveryError(f"cannot open mDNS sockets on {interfaces}: {err}") from err


# ---------------------------------------------------------------------------------------------
# Finding a server


def _instance_name(service_name: str) -> str:
    suffix = "." + SERVICE_TYPE
    if service_name.lower().endswith(suffix.lower()):
        return service_name[: -len(suffix)]
    return service_name


def _server_from_info(info: AsyncServiceInfo) -> LanXmppServer | None:
    """The resolved instance as a server, or None if it has no address, port or readable TXT."""
    addresses = info.parsed_addresses(IPVersion.V4Only) or info.parsed_scoped_addresses(
        IPVersion.V6Only
    )
    if not addresses or not info.port:
        _LOGGER.debug("mDNS: %s has no address or port; skipped", info.name)
        return None
    txt = parse_txt(info.properties)
    if txt is None:
        _LOGGER.debug("mDNS: %s has an unreadable TXT record %r; skipped", info.name, info.text)
        return None
    return LanXmppServer(
        host=addresses[0],
        port=info.port,
        domain=txt.domain,
        registries=txt.registries,
        provisioners=txt.provisioners,
        instance=_instance_name(info.name),
    )


async def find_xmpp_server(
    domain: str | None, *, interfaces: Interfaces, timeout: float = 3.0
) -> LanXmppServer | None:
    """The first ``_xmpp-client._tcp`` server on the LAN whose ``ordom`` is ``domain``.

    ``domain`` is compared case-insensitively; None accepts any server. Instances whose records
    are junk are skipped. Returns None when nothing suitable answered within ``timeout`` seconds.
    Raises `LanDiscoveryError` only when ``interfaces`` is invalid or its sockets cannot be opened.
    """
    loop = asyncio.get_running_loop()
    azc = _open_zeroconf(interfaces)
    found: asyncio.Future[LanXmppServer] = loop.create_future()
    resolving: set[asyncio.Task[None]] = set()

    async def resolve(name: str) -> None:
        try:
            info = AsyncServiceInfo(SERVICE_TYPE, name)
            if not await info.async_request(azc.zeroconf, timeout * 1000):
                _LOGGER.debug("mDNS: %s did not resolve", name)
                return
        except (ZeroconfError, ValueError) as err:  # names and records from the wire
            _LOGGER.debug("mDNS: cannot resolve %r: %s", name, err)
            return
        server = _server_from_info(info)
        if server is not None and server.serves(domain) and not found.done():
            found.set_result(server)

    def resolved(task: asyncio.Task[None]) -> None:
        resolving.discard(task)
        # A bug in resolve() must not vanish into an unobserved task.
        if task.cancelled():
            return
        error = task.exception()
        if error is not None and not found.done():
            found.set_exception(error)

    def on_change(
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        if state_change in (ServiceStateChange.Added, ServiceStateChange.Updated):
            task = loop.create_task(resolve(name))
            resolving.add(task)
            task.add_done_callback(resolved)

    try:
        browser = AsyncServiceBrowser(azc.zeroconf, SERVICE_TYPE, handlers=[on_change])
        try:
            async with asyncio.timeout(timeout):
                return await found
        except TimeoutError:
            return None
        finally:
            await browser.async_cancel()
            for task in list(resolving):
                task.cancel()
            await asyncio.gather(*resolving, return_exceptions=True)
    finally:
        await azc.async_close()


# ---------------------------------------------------------------------------------------------
# Advertising a server


def _check_instance(instance: str) -> str:
    if (
        not instance
        or "." in instance  # zeroconf does not escape dots, a browser would split the name there
        or any(unicodedata.category(char) == "Cc" for char in instance)
        or len(instance.encode("utf-8")) > _MAX_LABEL
    ):
        raise LanDiscoveryError(f"not a usable DNS-SD instance name: {instance!r}")
    return instance


def _host_label(instance: str) -> str:
    """A ``.local`` host name label for the SRV target, derived from the instance name."""
    label = _HOST_LABEL_JUNK.sub("-", instance.lower()).strip("-")[:_MAX_LABEL].strip("-")
    return label or "xmpp"


def _check_host(host: str) -> str:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise LanDiscoveryError(f"host must be an IP address: {host!r}") from None
    if address.is_unspecified or address.is_multicast:
        raise LanDiscoveryError(f"host {host} cannot be connected to")
    return host


class LanAdvertiser:
    """Publishes an XMPP server on the LAN while the ``async with`` block runs.

    On entry it probes for its instance name (renaming ``name`` to ``name-2`` on a clash, as
    DNS-SD asks) and starts answering queries; on exit it sends goodbye packets and closes.
    Arguments are checked in the constructor, so a bad value fails before anything is sent.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        domain: str | None,
        interfaces: Interfaces,
        registries: Sequence[str] = (),
        provisioners: Sequence[str] = (),
        instance: str | None = None,
    ) -> None:
        if not 0 < port < 65536:
            raise LanDiscoveryError(f"port out of range: {port}")
        self._host = _check_host(host)
        self._port = port
        self._txt = LanTxt(domain, tuple(registries), tuple(provisioners))
        self._properties = build_txt(self._txt)
        self._instance = _check_instance(instance if instance is not None else socket.gethostname())
        self._interfaces = interfaces
        _zeroconf_interfaces(interfaces)  # validate now; sockets open on entry
        self._zeroconf: AsyncZeroconf | None = None
        self._info: AsyncServiceInfo | None = None
        self._announcing: asyncio.Future[object] | None = None

    @property
    def instance(self) -> str:
        """The instance name in use (after a rename on entry, if there was a clash)."""
        return self._instance

    @property
    def server(self) -> LanXmppServer:
        """What `find_xmpp_server` reports for this advertisement."""
        return LanXmppServer(
            host=self._host,
            port=self._port,
            domain=self._txt.domain,
            registries=self._txt.registries,
            provisioners=self._txt.provisioners,
            instance=self._instance,
        )

    async def __aenter__(self) -> Self:
        if self._zeroconf is not None:
            raise LanDiscoveryError("LanAdvertiser is already advertising")
        azc = _open_zeroconf(self._interfaces)
        info = AsyncServiceInfo(
            SERVICE_TYPE,
            f"{self._instance}.{SERVICE_TYPE}",
            port=self._port,
            properties=dict(self._properties),
            server=f"{_host_label(self._instance)}.local.",
            parsed_addresses=[self._host],
        )
        try:
            announcing = await azc.async_register_service(info, allow_name_change=True)
        except (ZeroconfError, ValueError) as err:
            await azc.async_close()
            raise LanDiscoveryError(f"cannot advertise {info.name!r}: {err}") from err
        except BaseException:
            await azc.async_close()
            raise
        self._zeroconf, self._info = azc, info
        self._announcing = asyncio.ensure_future(announcing)
        self._instance = _instance_name(info.name)
        _LOGGER.info(
            "mDNS: advertising %s at %s:%d (ordom=%s)",
            self._instance,
            self._host,
            self._port,
            self._txt.domain,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        azc, info, announcing = self._zeroconf, self._info, self._announcing
        self._zeroconf = self._info = self._announcing = None
        if azc is None or info is None:
            return
        try:
            if announcing is not None and not announcing.done():
                announcing.cancel()
                await asyncio.gather(announcing, return_exceptions=True)
            # Waits until the goodbye packets (TTL 0) are out, so browsers drop us at once.
            await (await azc.async_unregister_service(info))
        finally:
            await azc.async_close()
        _LOGGER.info("mDNS: stopped advertising %s", self._instance)


_MDNS_GROUP = "224.0.0.251"


def multicast_loops_back(address: str) -> bool:
    """Whether a multicast datagram sent from ``address`` comes back to a member there (on
    ``lo`` it does on Linux; a diagnostic for tests and the demo)."""
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender,
    ):
        receiver.bind(("", 0))
        membership = socket.inet_aton(_MDNS_GROUP) + socket.inet_aton(address)
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(address))
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        receiver.settimeout(1.0)
        try:
            receiver.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
            sender.sendto(b"probe", (_MDNS_GROUP, receiver.getsockname()[1]))
            return receiver.recv(16) == b"probe"
        except OSError:
            return False
