"""Publishing the journal to the server's PubSub service (XEP-0060), acknowledged delivery.

One node per thing, by default on the thing's own account (PEP: the server lets every account
create nodes there, unlike most PubSub components), named ``ncap/<thing bare JID>``, with
persistent items and whitelist access: the owner and configured members only, so no payload is
ever sent to anyone else. Each
item carries a batch of journal entries (:mod:`ncap.pubsub_items`); an entry leaves the
journal's "pending" set only when the server answered the publish with a result. Up to
``window`` publishes are in flight at once, which is what makes draining a backlog fast.

After a disconnection everything not yet acknowledged is published again: a subscriber may
see a batch twice (the sequence numbers tell it), never miss one that was acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from slixmpp import JID
from slixmpp.exceptions import IqError, IqTimeout

from ncap.pubsub_items import EntryLike, batch_to_xml

if TYPE_CHECKING:
    from slixmpp import ClientXMPP

_LOGGER = logging.getLogger(__name__)

NODE_CONFIG = "http://jabber.org/protocol/pubsub#node_config"
PUBLISH_TIMEOUT_S = 20.0


class JournalFeed(Protocol):
    def pending(self, after_seq: int, limit: int) -> Sequence[EntryLike]: ...

    def ack(self, seqs: Iterable[int]) -> int: ...


def node_name(thing: str) -> str:
    return f"ncap/{JID(thing).bare}"


class Publisher:
    def __init__(
        self,
        client: ClientXMPP,
        journal: JournalFeed,
        *,
        online: asyncio.Event,
        offline: asyncio.Event,
        service: str | None = None,
        node: str | None = None,
        members: Callable[[], Sequence[str]] = tuple,
        batch_max: int = 250,
        window: int = 8,
        max_items: int = 10_000,
        on_acked: Callable[[int], None] = lambda _n: None,
        on_published: Callable[[int], None] = lambda _n: None,
    ) -> None:
        self._client = client
        self._journal = journal
        self._online = online
        self._offline = offline
        self._service = service
        self._node = node
        self._members = members
        self._batch_max = batch_max
        self._window = window
        self._max_items = max_items
        self._on_acked = on_acked
        self._on_published = on_published
        self.committed = asyncio.Event()
        self.published_items = 0
        self.acked_entries = 0
        self.failures = 0
        self.ready = asyncio.Event()  # the node exists and is configured this session

    @property
    def service(self) -> str:
        return self._service or self._client.boundjid.bare

    @property
    def node(self) -> str:
        return self._node or node_name(self._client.boundjid.bare)

    def wake(self) -> None:
        """New entries were committed to the journal."""
        self.committed.set()

    async def run(self) -> None:
        while True:
            await self._online.wait()
            try:
                await self._session()
            except (IqError, IqTimeout) as err:
                self.failures += 1
                _LOGGER.warning("publishing to %s/%s: %s", self.service, self.node, err)
                # Wait for the next session rather than hammering this one.
                await self._offline.wait()
            finally:
                self.ready.clear()

    async def _session(self) -> None:
        await self._ensure_node()
        self.ready.set()
        slots = asyncio.Semaphore(self._window)
        inflight: set[asyncio.Task[None]] = set()
        after = 0  # everything not acknowledged is sent again in each session
        try:
            while self._online.is_set():
                self.committed.clear()
                batch = list(self._journal.pending(after, self._batch_max))
                if not batch:
                    await _first_of(self.committed.wait(), self._offline.wait())
                    continue
                after = batch[-1].seq
                await slots.acquire()
                task = asyncio.get_running_loop().create_task(self._publish(batch, slots))
                inflight.add(task)
                task.add_done_callback(inflight.discard)
        finally:
            for task in inflight:
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.gather(*inflight, return_exceptions=True)

    async def _publish(self, batch: list[EntryLike], slots: asyncio.Semaphore) -> None:
        try:
            item_id, payload = batch_to_xml(self._client.boundjid.bare, batch)
            pubsub: Any = self._client.plugin["xep_0060"]  # slixmpp's plugin is untyped
            self._on_published(len(batch))
            await pubsub.publish(
                JID(self.service), self.node, id=item_id, payload=payload, timeout=PUBLISH_TIMEOUT_S
            )
        except (IqError, IqTimeout) as err:
            self.failures += 1
            _LOGGER.info(
                "publish of %s not acknowledged (%s); it stays in the journal", batch[0].seq, err
            )
            return
        finally:
            slots.release()
        self.published_items += 1
        acked = self._journal.ack(entry.seq for entry in batch)
        self.acked_entries += acked
        self._on_acked(acked)

    async def _ensure_node(self) -> None:
        pubsub: Any = self._client.plugin["xep_0060"]
        service, node = JID(self.service), self.node
        config = self._node_config()
        try:
            await pubsub.create_node(service, node, config=config, timeout=PUBLISH_TIMEOUT_S)
            _LOGGER.info("created PubSub node %s on %s", node, service)
        except IqError as err:
            if err.condition != "conflict":
                raise
            await pubsub.set_node_config(service, node, config, timeout=PUBLISH_TIMEOUT_S)
        members = [(JID(jid).bare, "member") for jid in self._members()]
        if members:
            await pubsub.modify_affiliations(
                service, node, affiliations=members, timeout=PUBLISH_TIMEOUT_S
            )

    def _node_config(self) -> Any:
        forms: Any = self._client.plugin["xep_0004"]
        form = forms.make_form("submit")
        form.add_field(var="FORM_TYPE", ftype="hidden", value=NODE_CONFIG)
        form.add_field(var="pubsub#persist_items", value=True)
        form.add_field(var="pubsub#max_items", value=str(self._max_items))
        form.add_field(var="pubsub#access_model", value="whitelist")
        form.add_field(var="pubsub#deliver_payloads", value=True)
        form.add_field(var="pubsub#send_last_published_item", value="never")
        return form


async def _first_of(*aws: Any) -> None:
    tasks = [asyncio.ensure_future(aw) for aw in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
