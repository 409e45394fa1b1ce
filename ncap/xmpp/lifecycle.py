"""The claim lifecycle of a thing over XMPP (XEP-0347 with XEP-0324 trust delegation).

:class:`ThingLifecycle` runs once per session: it finds the registry and the provisioning
service (configured, else by disco on the server), registers the gateway and its nodes while
unclaimed, writes the claim URI and QR code, and obeys ``claimed``/``removed``/``disowned``
from the registry only. ``on_change`` is called whenever owner or trust changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast
from xml.etree.ElementTree import Element

from slixmpp import JID, Iq
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream.handler import CoroutineCallback
from slixmpp.xmlstream.matcher import StanzaPath
from slixmpp.xmlstream.stanzabase import StanzaBase

from ncap.errors import NcapError
from ncap.files import write_private
from ncap.xmpp.connection import error_reply
from ncap.xmpp.registration import (
    CLAIM_URI_FILE,
    ClaimState,
    ClaimStore,
    forget_claim_files,
    new_claim_key,
    node_registrations,
    registration_tags,
)
from xep.errors import StanzaError
from xep.xep_0323.model import NodeRef
from xep.xep_0324.model import NS as PROVISIONING_NS
from xep.xep_0347 import convert as disco_convert
from xep.xep_0347 import stanza as disco_stanza
from xep.xep_0347.model import NS as DISCOVERY_NS
from xep.xep_0347.model import Claimed, Disowned, Register, Removed, Update
from xep.xep_0347.uri import claim_uri

if TYPE_CHECKING:
    from slixmpp import ClientXMPP

_LOGGER = logging.getLogger(__name__)

DISCOVERY_FEATURE = DISCOVERY_NS
PROVISIONING_FEATURE = PROVISIONING_NS
REQUEST_TIMEOUT_S = 10.0


async def send_iq(
    client: ClientXMPP,
    to: str,
    payload: Element,
    *,
    kind: Literal["get", "set"] = "get",
    timeout: float,
) -> Element | None:
    """Send ``payload`` in an IQ ``kind`` to ``to``; the result's first child (None if empty).

    Raises slixmpp's IqError (error answer) or IqTimeout.
    """
    iq = client.make_iq(ito=to, itype=kind)
    iq.append(payload)
    result = await iq.send(timeout=timeout)  # type: ignore[no-untyped-call]
    children = list(result.xml)
    return children[0] if children else None


async def find_service(client: ClientXMPP, feature: str, timeout: float) -> str | None:
    """The first item of the server's disco#items that advertises ``feature``."""
    disco = client.plugin["xep_0030"]
    domain = client.boundjid.domain
    try:
        items = await disco.get_items(jid=JID(domain), timeout=timeout)
    except (IqError, IqTimeout) as err:
        _LOGGER.info("disco#items on %s failed: %s", domain, err)
        return None
    for item_jid, _node, _name in items["disco_items"]["items"]:
        try:
            info = await disco.get_info(jid=item_jid, timeout=timeout)
        except (IqError, IqTimeout):
            continue
        if feature in info["disco_info"]["features"]:
            return str(JID(item_jid).bare)
    return None


async def has_feature(client: ClientXMPP, address: str, feature: str, timeout: float) -> bool:
    try:
        info = await client.plugin["xep_0030"].get_info(jid=JID(address), timeout=timeout)
    except (IqError, IqTimeout):
        return False
    return feature in info["disco_info"]["features"]


class ThingLifecycle:
    def __init__(
        self,
        client: ClientXMPP,
        store: ClaimStore,
        *,
        tags: dict[str, str | float],
        nodes: Callable[[], Iterable[tuple[NodeRef, str]]],
        registry: str | None,
        provisioning: str | None,
        self_owned: bool = False,
        write_qr: Callable[[str, Path], Sequence[Path]] | None = None,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self._client = client
        self._store = store
        self._tags = tags
        self._nodes = nodes
        self._configured_registry = registry
        self._configured_provisioning = provisioning
        self._self_owned = self_owned
        self._write_qr = write_qr
        self._on_change = on_change
        self.state: ClaimState = store.load()
        self.registered = asyncio.Event()
        self._changed = asyncio.Condition()
        self._session_task: asyncio.Task[None] | None = None
        disco_stanza.register_stanzas()
        for local in ("claimed", "removed", "disowned"):
            client.register_handler(
                CoroutineCallback(
                    f"ncap thing {local}",
                    StanzaPath(f"iq@type=set/disco_{local}"),
                    self._on_registry_set,
                )
            )

    # -- what the rest of the thing asks --------------------------------------------------

    @property
    def owner(self) -> str | None:
        return self.state.owner

    @property
    def provisioning(self) -> str | None:
        return self.state.provisioning if self.state.claimed else None

    @property
    def claim_uri(self) -> str | None:
        """The claim URI while the thing can be claimed, else None."""
        if self.state.claimed or self._self_owned or self.state.registry is None:
            return None
        tags = registration_tags(self._tags, self.state.key)
        return claim_uri(tags, self.state.registry)

    def suggest(self, registry: str | None, provisioning: str | None) -> None:
        """Addresses heard of on the LAN; configured ones take precedence."""
        self._configured_registry = self._configured_registry or registry
        self._configured_provisioning = self._configured_provisioning or provisioning

    async def wait_for(self, predicate: Callable[[ClaimState], bool], timeout: float) -> None:
        """Until ``predicate(state)`` holds (checked after every change of the claim state)."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: predicate(self.state))

    def _save(self) -> None:
        self._store.save(self.state)
        asyncio.get_running_loop().create_task(self._notify_changed())

    async def _notify_changed(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def is_registry(self, jid: JID | str) -> bool:
        return self.state.registry is not None and JID(jid).bare == JID(self.state.registry).bare

    def is_provisioning(self, jid: JID | str) -> bool:
        service = self.provisioning
        return service is not None and JID(jid).bare == JID(service).bare

    # -- per session ----------------------------------------------------------------------

    def session_started(self) -> None:
        if self._session_task is not None and not self._session_task.done():
            self._session_task.cancel()
        self._session_task = asyncio.get_running_loop().create_task(
            self._run_session(), name="ncap registry session"
        )

    async def stop(self) -> None:
        if self._session_task is not None:
            self._session_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._session_task

    async def _run_session(self) -> None:
        try:
            await self._find_services()
            if self.state.registry is None:
                return
            if not self.state.claimed:
                await self.register()
            elif self.state.public and not self.state.removed and not self._self_owned:
                await self._update_meta()
            self.registered.set()  # the registry knows what it should about us
        except (IqError, IqTimeout, StanzaError, NcapError) as err:
            _LOGGER.warning("thing registry: %s", err)
        except asyncio.CancelledError:
            raise
        except Exception:
            _LOGGER.exception("thing registry session failed")

    async def _find_services(self) -> None:
        client = self._client
        registry = self._configured_registry or self.state.registry
        if registry is None or (
            self._configured_registry is None
            and not await has_feature(client, registry, DISCOVERY_FEATURE, REQUEST_TIMEOUT_S)
        ):
            registry = await find_service(client, DISCOVERY_FEATURE, REQUEST_TIMEOUT_S)
        provisioning = self._configured_provisioning
        if (
            provisioning is None
            and registry is not None
            and await has_feature(client, registry, PROVISIONING_FEATURE, REQUEST_TIMEOUT_S)
        ):
            provisioning = registry
        if provisioning is None:
            provisioning = self.state.provisioning or await find_service(
                client, PROVISIONING_FEATURE, REQUEST_TIMEOUT_S
            )
        if (registry, provisioning) != (self.state.registry, self.state.provisioning):
            _LOGGER.info("thing registry %s, provisioning service %s", registry, provisioning)
            self.state.registry = registry
            self.state.provisioning = provisioning
            self._save()
            self._on_change()
        if registry is None:
            _LOGGER.warning("no thing registry found; the thing stays unclaimed, friends only")

    async def register(self) -> None:
        """Register the gateway (with the claim key) and its nodes; handle 'already claimed'."""
        registry = self.state.registry
        assert registry is not None
        tags = registration_tags(self._tags, None if self._self_owned else self.state.key)
        answer = await send_iq(
            self._client,
            registry,
            disco_convert.to_xml(Register(tags, None, self._self_owned)),
            kind="set",
            timeout=REQUEST_TIMEOUT_S,
        )
        if answer is not None:
            parsed = disco_convert.from_xml(answer)
            if isinstance(parsed, Claimed):
                self._claimed_by(parsed.jid, parsed.public)
                return
        for registration in node_registrations(self._nodes()):
            await send_iq(
                self._client,
                registry,
                disco_convert.to_xml(registration),
                kind="set",
                timeout=REQUEST_TIMEOUT_S,
            )
        self.registered.set()
        if self._self_owned:
            _LOGGER.info("registered as a self-owned public thing at %s", registry)
            return
        self._publish_claim()

    async def _update_meta(self) -> None:
        """Public things keep their tags current (XEP-0347 meta updates); the answer also
        tells a thing that was disowned or removed while it was away."""
        registry = self.state.registry
        assert registry is not None
        tags = registration_tags(self._tags, None)
        try:
            answer = await send_iq(
                self._client,
                registry,
                disco_convert.to_xml(Update(tags)),
                kind="set",
                timeout=REQUEST_TIMEOUT_S,
            )
        except IqError as err:
            if err.condition != "item-not-found":
                raise
            _LOGGER.warning("the registry no longer lists this thing (removed by its owner)")
            self.state.removed = True
            self._save()
            return
        if answer is not None and isinstance(disco_convert.from_xml(answer), Disowned):
            self._disowned()
            await self.register()

    # -- claim files ----------------------------------------------------------------------

    def _publish_claim(self) -> None:
        uri = self.claim_uri
        if uri is None:
            return
        directory = self._store.directory
        write_private(directory / CLAIM_URI_FILE, (uri + "\n").encode())
        written = [directory / CLAIM_URI_FILE]
        if self._write_qr is not None:
            try:
                written.extend(self._write_qr(uri, directory))
            except (NcapError, OSError) as err:
                _LOGGER.warning("cannot write the claim QR code: %s", err)
        _LOGGER.warning(
            "this thing is not claimed yet; claim it with: ncap claim %s (QR code: %s)",
            uri,
            ", ".join(str(p) for p in written),
        )
        if sys.stderr.isatty():
            with contextlib.suppress(ImportError, NcapError):
                from ncap.qr import terminal_qr

                print(terminal_qr(uri), file=sys.stderr)

    # -- registry → thing -----------------------------------------------------------------

    async def _on_registry_set(self, stanza: StanzaBase) -> None:
        iq = cast(Iq, stanza)
        if not self.is_registry(iq["from"]):
            _LOGGER.warning("ignoring registry request from untrusted %s", iq["from"])
            error_reply(iq, "cancel", "forbidden").send()
            return
        payload = next(iter(iq.xml), None)
        try:
            parsed = disco_convert.from_xml(payload) if payload is not None else None
        except StanzaError as err:
            error_reply(iq, "modify", "bad-request", str(err)).send()
            return
        if isinstance(parsed, Claimed) and parsed.node is None:
            self._claimed_by(parsed.jid, parsed.public)
        elif isinstance(parsed, Removed) and parsed.node is None:
            _LOGGER.warning("the owner removed this thing from the registry")
            self.state.removed = True
            self._save()
        elif isinstance(parsed, Disowned) and parsed.node is None:
            self._disowned()
        # Node notifications need nothing: our nodes follow the gateway's state.
        iq.reply(clear=True).send()  # type: ignore[no-untyped-call]
        if isinstance(parsed, Disowned) and parsed.node is None:
            self.session_started()  # register again with the new key

    def _claimed_by(self, owner: str, public: bool) -> None:
        owner = JID(owner).bare
        _LOGGER.warning("claimed by %s", owner)
        self.state.owner = owner
        self.state.public = public
        self.state.removed = False
        self.state.key = new_claim_key()  # the old key was shown on stickers: never again
        self._save()
        forget_claim_files(self._store.directory)
        # Offer the owner our presence and ask for theirs.
        self._client.send_presence(pto=owner, ptype="subscribed")
        self._client.send_presence(pto=owner, ptype="subscribe")
        self.registered.set()
        self._on_change()

    def _disowned(self) -> None:
        owner = self.state.owner
        _LOGGER.warning("disowned by %s", owner)
        self.state.owner = None
        self.state.public = False
        self.state.removed = False
        self.state.key = new_claim_key()
        self._save()
        if owner is not None:
            self._client.send_presence(pto=owner, ptype="unsubscribed")
            self._client.send_presence(pto=owner, ptype="unsubscribe")
        self.registered.clear()
        self._on_change()
