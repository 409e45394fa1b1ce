"""The gateway's sensor tree: one node per TIM, one field per channel.

A `TimNode` owns one TIM driver. It keeps (re)opening and discovering the TIM in
the background with a capped backoff, so a TIM that is missing at start-up or
vanishes later comes back without restarting the NCAP. Readers never wait for
discovery: a node that is not ready fails fast with `NodeUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from ncap.errors import NcapError
from tim_drivers.drivers.p1451_serial import ChannelInfo, ChannelKind, Sample, TimInfo
from tim_drivers.errors import CommandFailed, TimError, TimUnavailable

_LOGGER = logging.getLogger(__name__)

# Consecutive failed reads after which a TIM is discovered again.
REDISCOVER_AFTER_FAILURES = 3


class NodeUnavailable(NcapError):
    """The node exists but cannot be read right now."""


class UnknownNode(NcapError):
    """No node by that id."""


class NotWritable(NcapError):
    """A write to something that is not a writable actuator, or out of its range."""


class TimDriver(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def discover(self) -> TimInfo: ...
    async def read(self, channel: int) -> Sample: ...
    async def write(self, channel: int, value: float) -> None: ...
    def on_lost(self, callback: Callable[[Exception | None], None]) -> None: ...
    def on_event(self, callback: Callable[[Sample], None]) -> None: ...


@dataclass(frozen=True, slots=True)
class Reading:
    node: str
    field: str
    value: float
    unit: str
    decimals: int
    timestamp: datetime
    writable: bool = False

    @property
    def text(self) -> str:
        """The value with the channel's precision and unit, e.g. ``21.5 °C``."""
        number = f"{self.value:.{self.decimals}f}"
        return f"{number} {self.unit}" if self.unit else number


class TimNode:
    """One TIM behind the NCAP, kept discovered by a background task."""

    def __init__(
        self,
        node_id: str,
        driver: TimDriver,
        *,
        first_retry_s: float = 0.25,
        max_retry_s: float = 2.0,
    ) -> None:
        """Retries back off from *first_retry_s* to *max_retry_s*: reopening a port that is
        not there costs nothing, and a replugged adapter should be back within seconds."""
        self.node_id = node_id
        self._driver = driver
        driver.on_lost(self._port_gone)
        driver.on_event(self._event)
        self.on_readings: Callable[[list[Reading]], None] | None = None
        """Called with readings the TIM reported by itself (event sensor channels)."""
        self._first_retry_s = first_retry_s
        self._max_retry_s = max_retry_s
        self._info: TimInfo | None = None
        self._lost = asyncio.Event()
        self._ready = asyncio.Event()
        self._failures = 0
        self._written: dict[str, Reading] = {}
        self._events: dict[str, Reading] = {}
        self._known: TimInfo | None = None
        self._first_attempt = asyncio.Event()

    @property
    def info(self) -> TimInfo | None:
        """What discovery found, while the TIM is ready; None otherwise."""
        return self._info

    @property
    def known_info(self) -> TimInfo | None:
        """What the last successful discovery found, kept while the TIM is away."""
        return self._known

    async def wait_settled(self) -> None:
        """Wait until the first discovery attempt has succeeded or failed."""
        await self._first_attempt.wait()

    async def wait_lost(self, timeout: float | None) -> None:
        """Wait until the TIM is found gone (its port vanished, or it stopped answering)."""
        async with asyncio.timeout(timeout):
            await self._lost.wait()

    async def wait_ready(self, timeout: float | None) -> TimInfo:
        async with asyncio.timeout(timeout):
            await self._ready.wait()
        assert self._info is not None
        return self._info

    async def run(self) -> None:
        """Open and discover the TIM; do it again whenever the link is lost.

        Problems are logged once until the TIM is back (then at INFO), not on every retry.
        """
        delay = self._first_retry_s
        failing = False
        while True:
            try:
                await self._driver.open()
                info = await self._driver.discover()
            except Exception as err:
                if not isinstance(err, TimError):
                    # A driver bug must not end this task for good: log it, keep retrying.
                    _LOGGER.exception("tim=%s discovery failed", self.node_id)
                elif not failing:
                    _LOGGER.warning("tim=%s not available: %s (retrying)", self.node_id, err)
                else:
                    _LOGGER.debug("tim=%s still not available: %s", self.node_id, err)
                failing = True
                await self._close_quietly()
                self._first_attempt.set()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_retry_s)
                continue
            delay = self._first_retry_s
            self._failures = 0
            self._info = self._known = info
            self._lost.clear()
            self._ready.set()
            self._first_attempt.set()
            _LOGGER.info(
                "tim=%s %s: %s, channels %s",
                self.node_id,
                "back" if failing else "online",
                info.name,
                ", ".join(channel.name for channel in info.channels),
            )
            failing = False
            await self._lost.wait()
            _LOGGER.warning("tim=%s link lost; reopening", self.node_id)
            failing = True
            await self._close_quietly()

    async def read(self, field_names: Iterable[str] = ()) -> list[Reading]:
        """Read the named channels (all when none are named).

        Sensors are sampled now; an actuator is reported with the last value this NCAP
        wrote to it, an event sensor with the last value it reported by itself; either is
        left out while unknown.
        """
        info = self._ready_info()
        wanted = set(field_names)
        readings = []
        for channel in info.channels:
            if wanted and channel.name not in wanted:
                continue
            if channel.kind is ChannelKind.ACTUATOR:
                written = self._written.get(channel.name)
                if written is not None:
                    readings.append(written)
                continue
            if channel.kind is ChannelKind.EVENT_SENSOR:
                reported = self._events.get(channel.name)
                if reported is not None:
                    readings.append(reported)
                continue
            with self._translated(channel.name):
                sample = await self._driver.read(channel.number)
            readings.append(
                Reading(
                    node=self.node_id,
                    field=channel.name,
                    value=sample.value,
                    unit=sample.unit,
                    decimals=channel.decimals,
                    timestamp=sample.timestamp,
                )
            )
        return readings

    async def write(self, channel_name: str, value: float) -> None:
        """Set an actuator channel (value in its display unit)."""
        channel = self.channel(channel_name)
        if channel.kind is not ChannelKind.ACTUATOR:
            raise NotWritable(f"{self.node_id} channel {channel_name} is not an actuator")
        # A TEDS without range limits (NaN) sets no bounds.
        if value < channel.low_limit or value > channel.high_limit:
            raise NotWritable(
                f"{self.node_id} channel {channel_name}: {value:g} is outside "
                f"{channel.low_limit:g}..{channel.high_limit:g}"
            )
        with self._translated(channel_name):
            await self._driver.write(channel.number, value)
        self._written[channel_name] = Reading(
            node=self.node_id,
            field=channel_name,
            value=value,
            unit=channel.unit,
            decimals=channel.decimals,
            timestamp=datetime.now(UTC),
            writable=True,
        )

    def channel(self, name: str) -> ChannelInfo:
        for channel in self._ready_info().channels:
            if channel.name == name:
                return channel
        raise UnknownNode(f"TIM {self.node_id} has no channel {name!r}")

    def last_written(self, channel_name: str) -> Reading | None:
        return self._written.get(channel_name)

    def _ready_info(self) -> TimInfo:
        info = self._info
        if info is None:
            raise NodeUnavailable(f"TIM {self.node_id} is not available")
        return info

    @contextlib.contextmanager
    def _translated(self, channel_name: str) -> Iterator[None]:
        """Turn driver errors into NodeUnavailable, and notice a TIM that needs discovering."""
        try:
            yield
        except TimUnavailable as err:
            self._mark_lost()
            raise NodeUnavailable(f"TIM {self.node_id} went away: {err}") from err
        except TimError as err:
            self._failures += 1
            if isinstance(err, CommandFailed) or self._failures >= REDISCOVER_AFTER_FAILURES:
                # A TIM that rebooted behind an open port refuses commands for channels
                # it no longer has in Operating: discover it again.
                self._mark_lost()
            raise NodeUnavailable(f"TIM {self.node_id} channel {channel_name}: {err}") from err
        self._failures = 0

    async def close(self) -> None:
        await self._close_quietly()

    def _event(self, sample: Sample) -> None:
        info = self._info
        channel = (
            next((c for c in info.channels if c.number == sample.channel), None) if info else None
        )
        if channel is None:
            return
        reading = Reading(
            node=self.node_id,
            field=channel.name,
            value=sample.value,
            unit=sample.unit,
            decimals=channel.decimals,
            timestamp=sample.timestamp,
        )
        self._events[channel.name] = reading
        if self.on_readings is not None:
            self.on_readings([reading])

    def _port_gone(self, error: Exception | None) -> None:
        _LOGGER.debug("tim=%s port went away: %s", self.node_id, error)
        self._mark_lost()

    def _mark_lost(self) -> None:
        """Stop serving this TIM until the background task has discovered it again."""
        self._info = None
        self._written.clear()  # a TIM that went away may come back with other outputs
        self._events.clear()
        self._ready.clear()
        self._lost.set()

    async def _close_quietly(self) -> None:
        with contextlib.suppress(TimError, OSError):
            await self._driver.close()


class SensorTree:
    """The nodes the NCAP serves, by node id."""

    def __init__(self, nodes: Sequence[TimNode]) -> None:
        self._nodes: Mapping[str, TimNode] = {node.node_id: node for node in nodes}

    @property
    def node_ids(self) -> list[str]:
        return list(self._nodes)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._nodes

    def node(self, node_id: str) -> TimNode:
        try:
            return self._nodes[node_id]
        except KeyError:
            raise UnknownNode(f"no node {node_id!r}") from None

    def nodes(self) -> list[TimNode]:
        return list(self._nodes.values())

    async def settle(self, timeout: float) -> None:
        """Wait (at most *timeout* s) until every TIM's first discovery attempt has ended."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                for node in self._nodes.values():
                    await node.wait_settled()
