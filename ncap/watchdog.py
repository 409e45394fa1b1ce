"""A watchdog that vouches for progress, not just for a running event loop.

Each *source* (a bus poller, the XMPP uplink) reports progress, or is asked through a probe.
The watchdog pings systemd (``WATCHDOG=1``) only while every source has progressed within its
own window; one stalled source is enough to stop the pings, and systemd then restarts us
(``WatchdogSec=``, ``Restart=on-failure``). A timer that pinged unconditionally would only
prove that the event loop turns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from ncap.sdnotify import Notifier

__all__ = ["ProgressWatchdog"]

_LOGGER = logging.getLogger(__name__)


@dataclass
class _Source:
    window_s: float
    last_progress: float
    probe: Callable[[], bool] | None


class ProgressWatchdog:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._sources: dict[str, _Source] = {}
        self.pings = 0
        """WATCHDOG=1 notifications sent so far."""

    def watch(self, name: str, window_s: float, probe: Callable[[], bool] | None = None) -> None:
        """Watch *name*: it stalls when it has not progressed for *window_s* seconds.

        A *probe* is asked on every check; True counts as progress at that moment. A new
        source starts as having just progressed, so it gets one full window to show life.
        """
        if window_s <= 0:
            raise ValueError(f"window of {name!r} must be positive, not {window_s}")
        self._sources[name] = _Source(window_s, self._clock(), probe)

    def progress(self, name: str) -> None:
        """*name* has just made progress. Names not watched are ignored."""
        source = self._sources.get(name)
        if source is not None:
            source.last_progress = self._clock()

    @property
    def names(self) -> list[str]:
        return list(self._sources)

    def stalled(self) -> list[str]:
        """The sources that have not progressed within their window, in watch order."""
        now = self._clock()
        late = []
        for name, source in self._sources.items():
            if source.probe is not None and source.probe():
                source.last_progress = now
            if now - source.last_progress > source.window_s:
                late.append(name)
        return late

    def check(self, notifier: Notifier) -> list[str]:
        """Ping *notifier* (when systemd watches us) if nothing has stalled; return the
        stalled sources."""
        late = self.stalled()
        if not late and notifier.watchdog_s is not None and notifier.watchdog():
            self.pings += 1
        return late

    async def run(
        self,
        notifier: Notifier,
        interval_s: float,
        on_check: Callable[[list[str]], None] | None = None,
    ) -> None:
        """Check every *interval_s* seconds until cancelled, handing the stalled sources to
        *on_check* each time. A stall is logged when it starts and when it ends, not on every
        check."""
        previous: list[str] = []
        while True:
            late = self.check(notifier)
            if late != previous:
                if late:
                    _LOGGER.error("no progress from %s: no watchdog pings", ", ".join(late))
                else:
                    _LOGGER.warning("every source makes progress again: watchdog pings resume")
                previous = late
            if on_check is not None:
                on_check(late)
            await asyncio.sleep(interval_s)
