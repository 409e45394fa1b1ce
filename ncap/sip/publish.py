"""PUBLISH the thing's presence to an upstream presence server (RFC 3903, the bridge as EPA).

One publication for the thing's AOR: an initial PUBLISH with the PIDF body, then refreshes
(``SIP-If-Match``, no body) before the granted expiry, modifications (``SIP-If-Match`` + body)
when the document changes (at most one per ``min_interval``), removal (``Expires: 0``) on
:meth:`PresencePublisher.aclose`. Always the newest ``SIP-ETag``. 412 (the server lost our
etag) starts over with an initial PUBLISH; 423 retries with its ``Min-Expires``; other
failures are retried after ``retry_after`` seconds. One Call-ID per publication, CSeq growing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from sipstack.digest import DigestClient
from sipstack.errors import SipError
from sipstack.fields import CSeq, new_call_id, new_tag
from sipstack.message import SipRequest, SipResponse
from sipstack.transport import Destination
from sipstack.ua import UserAgent

__all__ = ["PresencePublisher"]

_LOGGER = logging.getLogger(__name__)

PIDF = "application/pidf+xml"


class PresencePublisher:
    """Keeps one presence publication for ``aor`` alive at ``destination``."""

    def __init__(
        self,
        ua: UserAgent,
        aor: str,
        destination: Destination,
        document: Callable[[str], bytes],
        *,
        auth: DigestClient | None = None,
        expires: int = 3600,
        min_interval: float = 5.0,
        retry_after: float = 30.0,
    ) -> None:
        self.ua = ua
        self.aor = aor
        self.destination = destination
        self._document = document  # aor -> PIDF for it
        self.auth = auth
        self.expires = expires
        self.min_interval = min_interval
        self.retry_after = retry_after
        self.etag: str | None = None
        self.granted = 0
        self.published: bytes | None = None
        self.last_status: int | None = None
        self._call_id = new_call_id(ua.host)
        self._from_tag = new_tag()
        self._cseq = 0
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_modify = float("-inf")

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sip-publish")

    def changed(self) -> None:
        """The document may have changed: publish it if it did (rate-limited)."""
        self._changed.set()

    async def aclose(self) -> None:
        """Stop and remove the publication (``Expires: 0``)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.etag is not None:
            await self._publish(body=None, expires=0)
            self.etag = None

    async def _run(self) -> None:
        while True:
            if self.etag is None:
                body = self._document(self.aor)
                if not await self._initial(body):
                    await asyncio.sleep(self.retry_after)
                    continue
            # Refresh a little before the granted expiry (at least 5 s ahead, at most 10 %).
            lead = max(5.0, self.granted * 0.1)
            deadline = time.monotonic() + max(1.0, self.granted - lead)
            refresh = True
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(_loop_time(deadline)):
                    while True:
                        await self._changed.wait()
                        self._changed.clear()
                        if self._document(self.aor) != self.published:
                            refresh = False
                            break
            if refresh:
                response = await self._publish(body=None, expires=self.expires)
            else:
                wait = self._last_modify + self.min_interval - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)  # the rate limit, not synchronisation
                self._last_modify = time.monotonic()
                response = await self._publish(body=self._document(self.aor), expires=self.expires)
            if response.status == 412:
                _LOGGER.info("PUBLISH %s: 412, publishing afresh", self.aor)
                self.etag = None
            elif not 200 <= response.status < 300:
                _LOGGER.warning("PUBLISH %s: %d", self.aor, response.status)
                self.etag = None
                await asyncio.sleep(self.retry_after)

    async def _initial(self, body: bytes) -> bool:
        self.etag = None
        response = await self._publish(body=body, expires=self.expires)
        if response.status == 423:
            minimum = response.headers.get("Min-Expires")
            if minimum is not None and minimum.strip().isdigit():
                self.expires = int(minimum.strip())
                response = await self._publish(body=body, expires=self.expires)
        return 200 <= response.status < 300

    async def _publish(self, *, body: bytes | None, expires: int) -> SipResponse:
        self._cseq += 1
        request = SipRequest("PUBLISH", self.aor, body=body or b"")
        request.headers.add("From", f"<{self.aor}>;tag={self._from_tag}")
        request.headers.add("To", f"<{self.aor}>")
        request.headers.add("Call-ID", self._call_id)
        request.headers.add("CSeq", f"{self._cseq} PUBLISH")
        request.headers.add("Event", "presence")
        request.headers.add("Expires", str(expires))
        if self.etag is not None:
            request.headers.add("SIP-If-Match", self.etag)
        if body is not None:
            request.headers.add("Content-Type", PIDF)
        response = await self.ua.request(request, destination=self.destination, auth=self.auth)
        self.last_status = response.status
        with contextlib.suppress(SipError):
            self._cseq = max(self._cseq, CSeq.parse(response.header_value("CSeq")).number)
        if 200 <= response.status < 300:
            self.etag = response.headers.get("SIP-ETag") or self.etag
            granted = response.expires
            self.granted = expires if granted is None else granted
            if body is not None:
                self.published = body
        return response


def _loop_time(monotonic_deadline: float) -> float:
    """A ``time.monotonic`` deadline on the running loop's clock."""
    loop = asyncio.get_running_loop()
    return loop.time() + (monotonic_deadline - time.monotonic())
