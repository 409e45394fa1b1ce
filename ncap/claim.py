"""Owner tools for the thing registry (XEP-0347): claim, search, remove, disown.

``ncap claim`` takes the claim URI printed by the thing (``iotdisco:...``) or a photo/scan of its
QR code, sends ``mine`` to the registry the URI names (``R=``; else ``--registry``; else the one
found by disco on the owner's server), and asks for the thing's presence, which the thing grants
to its owner.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from slixmpp import JID
from slixmpp.exceptions import IqError, IqTimeout

from ncap.errors import NcapError
from ncap.xmpp.connection import SecureClient
from ncap.xmpp.lifecycle import DISCOVERY_FEATURE, find_service, send_iq
from xep.errors import StanzaError
from xep.xep_0347 import convert
from xep.xep_0347.model import Claimed, Disown, Found, Mine, Remove, Search, SearchTerm
from xep.xep_0347.uri import DiscoUri, parse_disco_uri

_URI_PREFIXES = ("iotdisco:", "iotdisco;")


class RegistryToolError(NcapError):
    """The registry refused the request, or the claim URI/QR code is unusable."""


def claim_uri_from(argument: str) -> DiscoUri:
    """A claim URI given as text, or read from the QR code in the image file ``argument``."""
    text = argument.strip()
    if not text.lower().startswith(_URI_PREFIXES):
        path = Path(argument)
        if not path.is_file():
            raise RegistryToolError(f"{argument!r} is neither an iotdisco: URI nor an image file")
        from ncap.qr import decode_qr_image

        text = decode_qr_image(path)
    try:
        uri = parse_disco_uri(text)
    except StanzaError as err:
        raise RegistryToolError(f"not a claim URI: {err}") from None
    if not uri.is_claim:
        raise RegistryToolError("that URI does not claim a thing (it has no KEY)")
    return uri


@contextlib.asynccontextmanager
async def registry_session(
    jid: str,
    password: str,
    registry: str | None,
    *,
    ca_file: Path | None,
    server: str | None,
    port: int,
    timeout: float,
) -> AsyncIterator[tuple[SecureClient, str]]:
    """A logged-in client and the registry address (given, or found by disco)."""
    client = SecureClient(jid, password, ca_file=ca_file, server=server, port=port)
    await client.start(timeout)
    try:
        address = registry or await find_service(client, DISCOVERY_FEATURE, timeout)
        if address is None:
            raise RegistryToolError(f"no thing registry found on {client.boundjid.domain}")
        yield client, address
    finally:
        await client.disconnect(wait=1.0)


async def _ask(client: SecureClient, registry: str, payload: object, timeout: float) -> object:
    try:
        answer = await send_iq(
            client,
            registry,
            convert.to_xml(payload),  # type: ignore[arg-type]
            kind="get" if isinstance(payload, Search) else "set",
            timeout=timeout,
        )
    except IqTimeout:
        raise RegistryToolError(f"{registry} did not answer within {timeout:g} s") from None
    except IqError as err:
        text = err.text or {
            "item-not-found": "no such thing, or it is not yours",
            "resource-constraint": "too many failed attempts; wait a minute",
            "not-allowed": "the thing is not online",
        }.get(err.condition, "")
        raise RegistryToolError(f"{registry} refused ({err.condition}): {text}") from None
    if answer is None:
        return None
    try:
        return convert.from_xml(answer)
    except StanzaError as err:
        raise RegistryToolError(f"{registry} answered nonsense: {err}") from None


async def claim(
    client: SecureClient, registry: str, uri: DiscoUri, *, public: bool, timeout: float
) -> str:
    """Claim the thing; returns its JID (with ``#node`` when a node was claimed)."""
    answer = await _ask(client, registry, Mine(uri.tags, public), timeout)
    if not isinstance(answer, Claimed):
        raise RegistryToolError(f"{registry} accepted the claim but did not say what was claimed")
    thing = JID(answer.jid).bare
    # The thing grants its presence to its owner; ask for it, and offer ours.
    client.send_presence(pto=thing, ptype="subscribe")
    client.send_presence(pto=thing, ptype="subscribed")
    return thing if answer.node is None else f"{thing}#{answer.node.node_id}"


async def search(
    client: SecureClient,
    registry: str,
    terms: tuple[SearchTerm, ...],
    *,
    offset: int = 0,
    max_count: int = 20,
    timeout: float,
) -> Found:
    answer = await _ask(client, registry, Search(terms, offset, max_count), timeout)
    if not isinstance(answer, Found):
        raise RegistryToolError(f"{registry} answered a search without results")
    return answer


async def remove(client: SecureClient, registry: str, thing: str, *, timeout: float) -> None:
    await _ask(client, registry, Remove(JID(thing).bare), timeout)


async def disown(client: SecureClient, registry: str, thing: str, *, timeout: float) -> None:
    await _ask(client, registry, Disown(JID(thing).bare), timeout)
    # A thing we gave up owes us nothing, nor we it.
    client.send_presence(pto=JID(thing).bare, ptype="unsubscribe")
    client.send_presence(pto=JID(thing).bare, ptype="unsubscribed")


def format_found(found: Found) -> str:
    lines = []
    for thing in found.things:
        node = f" node {thing.node.node_id}" if thing.node is not None else ""
        tags = " ".join(
            f"{tag.name}={tag.value:g}"
            if isinstance(tag.value, float)
            else f"{tag.name}={tag.value}"
            for tag in thing.tags
        )
        owner = f" (owner {thing.owner})" if thing.owner else ""
        lines.append(f"{thing.jid}{node}{owner}: {tags}")
    if found.more:
        lines.append("(more: use --offset)")
    return "\n".join(lines) or "(nothing found)"
