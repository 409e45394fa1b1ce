"""Following a thing's PubSub node: live batches, catch-up after an absence, sequence accounting.

The subscriber side of :mod:`ncap.xmpp.publisher`, used by ``ncap follow`` and the chaos tests:
every batch's sequence numbers are recorded, duplicates counted, and the items the service kept
are fetched again after each (re)connection, so nothing acknowledged by the server is missed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any
from xml.etree.ElementTree import Element

from slixmpp import JID, Message
from slixmpp.exceptions import IqError, IqTimeout

from ncap.pubsub_items import NS, Batch, batch_from_xml
from ncap.xmpp.connection import SecureClient
from xep.errors import StanzaError

_LOGGER = logging.getLogger(__name__)

EVENT_NS = "http://jabber.org/protocol/pubsub#event"
PUBSUB_NS = "http://jabber.org/protocol/pubsub"


class Follower:
    def __init__(
        self,
        client: SecureClient,
        service: str,
        node: str,
        on_batch: Callable[[Batch], None] = lambda _b: None,
    ) -> None:
        self._client = client
        self.service = service
        self.node = node
        self._on_batch = on_batch
        self.seen: set[int] = set()
        self.duplicates = 0
        self.batches = 0
        self.changed = asyncio.Event()
        client.add_event_handler("pubsub_publish", self._on_publish)

    def _accept(self, payload: Element) -> None:
        try:
            batch = batch_from_xml(payload)
        except StanzaError as err:
            _LOGGER.warning("ignoring an item of %s: %s", self.node, err)
            return
        fresh = [seq for seq in batch.seqs if seq not in self.seen]
        self.duplicates += len(batch.seqs) - len(fresh)
        self.seen.update(fresh)
        self.batches += 1
        self.changed.set()
        self._on_batch(batch)

    def _on_publish(self, msg: Message) -> None:
        if JID(msg["from"]).bare != JID(self.service).bare:
            return
        # The raw XML, not slixmpp's item views (iterating those can loop forever).
        for items in msg.xml.iter(f"{{{EVENT_NS}}}items"):
            if items.get("node") == self.node:
                self._accept_items(items)

    def _accept_items(self, items: Element) -> None:
        for payload in items.iterfind(f"{{*}}item/{{{NS}}}batch"):
            self._accept(payload)

    async def subscribe(self, timeout: float) -> None:
        pubsub: Any = self._client.plugin["xep_0060"]
        await pubsub.subscribe(JID(self.service), self.node, timeout=timeout)

    async def catch_up(self, timeout: float) -> int:
        """Fetch the items the service keeps; returns how many sequence numbers were new."""
        before = len(self.seen)
        pubsub: Any = self._client.plugin["xep_0060"]
        try:
            result = await pubsub.get_items(JID(self.service), self.node, timeout=timeout)
        except (IqError, IqTimeout) as err:
            _LOGGER.warning("cannot fetch the items of %s: %s", self.node, err)
            raise
        for items in result.xml.iter(f"{{{PUBSUB_NS}}}items"):
            self._accept_items(items)
        return len(self.seen) - before

    async def wait_for(self, predicate: Callable[[Follower], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not predicate(self):
                self.changed.clear()
                await self.changed.wait()
