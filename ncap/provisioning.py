"""The thing's side of XEP-0324: ask the owner's provisioning service, remember its answers.

Once the thing is claimed, every friendship, read-out and control request of anyone but the
owner is put to the provisioning service as ``isFriend`` / ``canRead`` / ``canControl``. The
answers (including the nodes and fields they narrow a request to) are kept in a small LRU cache
persisted on disk, so a power cut does not make every thing ask again at once. Only
``clearCache`` from the service empties it.

Failing closed: when the service does not answer within ``timeout_s``, answers with an error,
or nothing trustworthy is configured, the answer is *no*. Only definite answers are cached.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from xml.etree.ElementTree import Element

from slixmpp import JID
from slixmpp.exceptions import IqError, IqTimeout

from ncap.files import write_private
from xep.errors import StanzaError
from xep.xep_0323.model import NodeRef, ReadoutRequest, narrow_request
from xep.xep_0324 import convert
from xep.xep_0324.model import (
    CanControl,
    CanControlResponse,
    CanRead,
    CanReadResponse,
    IsFriend,
    IsFriendResponse,
)
from xep.xep_0325.model import ControlDecision, ControlRequest

_LOGGER = logging.getLogger(__name__)

CACHE_ENTRIES = 1024
_Answer = TypeVar("_Answer")

#: ``async (to, payload, timeout) -> answer payload``: sends an IQ get, returns the first child.
AskFunction = Callable[[str, Element, float], Awaitable[Element]]


class DecisionCache:
    """An LRU of provisioning answers (JSON-able values by string key), saved to ``path``.

    The file is rewritten atomically (temp file, fsync, rename) with mode 0600 after each
    change; a missing or unreadable file starts an empty cache (it only saves questions).
    """

    def __init__(self, path: Path | None, max_entries: int = CACHE_ENTRIES) -> None:
        self._path = path
        self._max = max_entries
        self._entries: OrderedDict[str, Any] = OrderedDict()
        if path is not None:
            self._load(path)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Any:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: str, value: Any) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
        self._save()

    def clear(self) -> None:
        self._entries.clear()
        self._save()

    def _load(self, path: Path) -> None:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as err:
            _LOGGER.warning("provisioning cache %s unreadable (%s); starting empty", path, err)
            return
        if isinstance(raw, dict):
            for key, value in list(raw.items())[-self._max :]:
                if isinstance(key, str):
                    self._entries[key] = value

    def _save(self) -> None:
        if self._path is None:
            return
        data = json.dumps(self._entries, separators=(",", ":")).encode()
        try:
            write_private(self._path, data)
        except OSError as err:
            # The cache only saves questions: losing it is safe, failing the request is not.
            _LOGGER.warning("cannot save provisioning cache %s: %s", self._path, err)


def _node_json(nodes: tuple[NodeRef, ...]) -> list[list[str | None]]:
    return [[n.node_id, n.source_id, n.cache_type] for n in nodes]


def _nodes_from_json(raw: Any) -> tuple[NodeRef, ...]:
    return tuple(NodeRef(str(n[0]), n[1], n[2]) for n in raw)


def _well_formed(cached: Any, names_key: str) -> dict[str, Any] | None:
    """``cached`` if it is a read/control answer as stored here, else None: an entry of another
    version or a damaged file is asked again instead of breaking every decision."""
    if not isinstance(cached, dict) or not isinstance(cached.get("result"), bool):
        return None
    if "nodes" not in cached or names_key not in cached:
        return None
    nodes, names = cached.get("nodes"), cached.get(names_key)
    if names is not None and not (
        isinstance(names, list) and all(isinstance(name, str) for name in names)
    ):
        return None
    if nodes is not None:
        if not isinstance(nodes, list) or not all(
            isinstance(n, list) and len(n) == 3 for n in nodes
        ):
            return None
        try:
            _nodes_from_json(nodes)
        except (TypeError, ValueError):
            return None
    return cached


def _tokens_json(request: ReadoutRequest | ControlRequest) -> list[tuple[str, ...]]:
    # A token may be what got the answer: the same question without it is another one.
    return [request.service_tokens, request.device_tokens, request.user_tokens]


class ProvisioningClient:
    """Asks one provisioning service (a component or a bare JID) and caches what it says."""

    def __init__(
        self, service: str, ask: AskFunction, cache: DecisionCache, *, timeout_s: float = 5.0
    ) -> None:
        self.service = JID(service).bare
        self._ask = ask
        self._cache = cache
        self._timeout = timeout_s
        self.questions = 0
        self.failures = 0

    def clear_cache(self) -> None:
        self._cache.clear()

    async def is_friend(self, requester: JID | str) -> bool:
        bare = JID(requester).bare
        key = f"friend {bare}"
        cached = self._cache.get(key)
        if isinstance(cached, bool):
            return cached
        answer = await self._question(convert.to_xml(IsFriend(bare)), IsFriendResponse)
        if answer is None:
            return False
        self._cache.put(key, answer.result)
        return answer.result

    async def can_read(
        self, requester: JID | str, request: ReadoutRequest
    ) -> bool | ReadoutRequest:
        """True (everything asked), a narrowed request, or False."""
        bare = JID(requester).bare
        key = json.dumps(
            [
                "read",
                bare,
                request.types.value,
                _node_json(request.nodes),
                request.field_names,
                _tokens_json(request),
            ]
        )
        cached = _well_formed(self._cache.get(key), "fields")
        if cached is None:
            question = CanRead(
                bare,
                request.types,
                request.nodes,
                request.field_names,
                request.service_tokens,
                request.device_tokens,
                request.user_tokens,
            )
            answer = await self._question(convert.to_xml(question), CanReadResponse)
            if answer is None:
                return False
            cached = {
                "result": answer.result,
                "nodes": _node_json(answer.nodes) if answer.nodes else None,
                "fields": list(answer.field_names) if answer.field_names else None,
            }
            self._cache.put(key, cached)
        if not cached.get("result"):
            return False
        nodes = None if cached["nodes"] is None else _nodes_from_json(cached["nodes"])
        fields = None if cached["fields"] is None else tuple(cached["fields"])
        if nodes is None and fields is None:
            return True
        narrowed = narrow_request(request, nodes, fields)
        return False if narrowed is None else narrowed

    async def can_control(self, requester: JID | str, request: ControlRequest) -> ControlDecision:
        bare = JID(requester).bare
        names = request.parameter_names
        key = json.dumps(["control", bare, _node_json(request.nodes), names, _tokens_json(request)])
        cached = _well_formed(self._cache.get(key), "parameters")
        if cached is None:
            question = CanControl(
                bare,
                request.nodes,
                names,
                request.service_tokens,
                request.device_tokens,
                request.user_tokens,
            )
            answer = await self._question(convert.to_xml(question), CanControlResponse)
            if answer is None:
                return ControlDecision(False)
            cached = {
                "result": answer.result,
                "nodes": _node_json(answer.nodes) if answer.nodes else None,
                "parameters": list(answer.parameters) if answer.parameters else None,
            }
            self._cache.put(key, cached)
        if not cached.get("result"):
            return ControlDecision(False)
        nodes = None if cached["nodes"] is None else _nodes_from_json(cached["nodes"])
        params = None if cached["parameters"] is None else tuple(cached["parameters"])
        return ControlDecision(True, nodes, params)

    async def _question(self, payload: Element, expected: type[_Answer]) -> _Answer | None:
        """The service's answer, or None (fail closed) on timeout, error or nonsense."""
        self.questions += 1
        try:
            async with asyncio.timeout(self._timeout):
                element = await self._ask(self.service, payload, self._timeout)
            answer = convert.from_xml(element)
        except (TimeoutError, IqTimeout):
            reason = "no answer in time"
        except IqError as err:
            reason = f"error {err.condition}"
        except StanzaError as err:
            reason = f"malformed answer: {err}"
        else:
            if isinstance(answer, expected):
                return answer
            reason = f"unexpected answer {type(answer).__name__}"
        self.failures += 1
        _LOGGER.warning("provisioning service %s: %s; denying", self.service, reason)
        return None
