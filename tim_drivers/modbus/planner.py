"""Read planner: the fewest read requests for a device's channels (pure, no I/O).

Rule (Telegraf's ``max_insert``, gateway-peers.md §2.2): sort the channels of one table
by address and walk them, extending the open request with the next channel unless

* the hole between the request's end and the channel is larger than ``max_gap``,
* the request would grow beyond ``max_count`` (125 registers / 2000 bits, or the
  device's lower cap),
* a remembered cut (see below) lies strictly inside the grown request.

A channel is never split across requests.  Under these rules the greedy walk gives the
minimum number of requests (every sub-run of a valid run is valid, so extending the
first request as far as it goes never hurts).

**Exception 02 learning.**  Some devices refuse a read that covers an unmapped address
with exception 02 (illegal data address).  The caller keeps one :class:`PlanMemory` per
device and, on exception 02, calls ``plan.split(request)``.  That cuts the request at its
largest internal hole (or, when it has no hole, between every channel) and remembers the
cuts, so no later plan merges across them.  A refused single-channel request marks that
channel unreadable; later plans leave it out (``memory.unreadable``).  Each split adds a
cut or an unreadable channel, so a device converges after finitely many splits.

**Poll intervals.**  Channels are planned per (table, poll interval) group: one
:class:`Plan` per group, and :class:`PollSchedule` says which plans are due.  Channels of
different intervals are never merged, which keeps the plan simple and predictable.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterable, Sequence
from typing import Generic, Protocol, TypeVar

from tim_drivers.errors import RegisterCodecError, UnexpectedReply
from tim_drivers.modbus.registers import Function

_LOGGER = logging.getLogger(__name__)

DEFAULT_MAX_GAP = 10


class Span(Protocol):
    """What the planner needs of a channel (``ChannelProfile`` satisfies it)."""

    @property
    def name(self) -> str: ...

    @property
    def function(self) -> Function: ...

    @property
    def address(self) -> int: ...

    @property
    def size(self) -> int: ...


class TimedSpan(Span, Protocol):
    @property
    def poll_interval_s(self) -> float: ...


S = TypeVar("S", bound=Span)
T = TypeVar("T", bound=TimedSpan)
V = TypeVar("V")


@dataclasses.dataclass(frozen=True, slots=True)
class Request(Generic[S]):
    """One read: ``count`` elements of ``function`` from ``address``."""

    function: Function
    address: int
    count: int
    channels: tuple[S, ...]

    @property
    def end(self) -> int:
        return self.address + self.count

    def slice(self, channel: S, response: Sequence[V]) -> Sequence[V]:
        """The registers (or bits) of ``channel`` inside this request's response."""
        start = channel.address - self.address
        if start < 0 or start + channel.size > self.count:
            raise RegisterCodecError(f"channel {channel.name!r} is not inside this request")
        self._check(response)
        return response[start : start + channel.size]

    def split_response(self, response: Sequence[V]) -> list[tuple[S, Sequence[V]]]:
        """Every channel with its part of the response, in address order."""
        self._check(response)
        return [(channel, self.slice(channel, response)) for channel in self.channels]

    def _check(self, response: Sequence[object]) -> None:
        # Bit reads come back padded to whole octets; register reads must match exactly.
        short = len(response) < self.count
        if short or (not self.function.is_bit and len(response) != self.count):
            raise UnexpectedReply(
                f"{self.function.value} read of {self.count} at {self.address} "
                f"answered with {len(response)} elements"
            )


@dataclasses.dataclass(slots=True)
class PlanMemory:
    """What a device taught us; the caller keeps one per device for its lifetime.

    ``cuts[function]`` holds addresses ``b`` (channel starts): no request may cover both
    ``b - 1`` and ``b``.  A cut inside one channel cannot be honoured (a channel is never
    split) and :meth:`Plan.split` never makes one.  ``unreadable[function]`` holds the
    names of channels the device refused on their own.
    """

    cuts: dict[Function, set[int]] = dataclasses.field(default_factory=dict)
    unreadable: dict[Function, set[str]] = dataclasses.field(default_factory=dict)

    def add_cut(self, function: Function, address: int) -> None:
        self.cuts.setdefault(function, set()).add(address)

    def mark_unreadable(self, function: Function, name: str) -> None:
        self.unreadable.setdefault(function, set()).add(name)

    def crosses(self, function: Function, start: int, end: int) -> bool:
        """Whether a remembered cut lies strictly inside ``[start, end)``."""
        return any(start < cut < end for cut in self.cuts.get(function, ()))

    def is_unreadable(self, function: Function, name: str) -> bool:
        return name in self.unreadable.get(function, ())


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    max_gap: int = DEFAULT_MAX_GAP
    max_registers: int = Function.INPUT.max_read
    max_bits: int = Function.COIL.max_read

    def max_count(self, function: Function) -> int:
        cap = self.max_bits if function.is_bit else self.max_registers
        return min(cap, function.max_read)


def plan_requests(
    function: Function,
    channels: Iterable[S],
    limits: Limits = Limits(),
    memory: PlanMemory | None = None,
) -> list[Request[S]]:
    """The fewest requests covering ``channels`` of ``function`` (see the module docstring).

    Channels of other tables and channels the memory marks unreadable are ignored.
    Channels must not overlap.
    """
    memory = memory if memory is not None else PlanMemory()
    max_count = limits.max_count(function)
    selected = sorted(
        (
            c
            for c in channels
            if c.function is function and not memory.is_unreadable(function, c.name)
        ),
        key=lambda c: (c.address, -c.size),
    )
    requests: list[Request[S]] = []
    group: list[S] = []
    start = end = 0
    for channel in selected:
        if channel.size > max_count:
            raise RegisterCodecError(
                f"channel {channel.name!r} ({channel.size}) exceeds {max_count} per request"
            )
        new_end = max(end, channel.address + channel.size)
        if group and (
            channel.address - end > limits.max_gap
            or new_end - start > max_count
            or memory.crosses(function, start, new_end)
        ):
            requests.append(Request(function, start, end - start, tuple(group)))
            group = []
        if not group:
            start, new_end = channel.address, channel.address + channel.size
        group.append(channel)
        end = new_end
    if group:
        requests.append(Request(function, start, end - start, tuple(group)))
    return requests


def _cuts_for(request: Request[S]) -> list[int]:
    """Where to cut a refused request: its largest hole, else between every channel."""
    holes: list[tuple[int, int]] = []  # (hole size, address after the hole)
    end = request.address
    for channel in request.channels:
        if channel.address >= end and channel.address > request.address:
            holes.append((channel.address - end, channel.address))
        end = max(end, channel.address + channel.size)
    if not holes:
        return []
    widest = max(size for size, _ in holes)
    if widest > 0:
        return [next(address for size, address in holes if size == widest)]
    return [address for _, address in holes]


@dataclasses.dataclass(frozen=True, slots=True)
class Plan(Generic[S]):
    """The requests of one (table, poll interval) group of one device."""

    function: Function
    interval_s: float
    channels: tuple[S, ...]
    limits: Limits
    memory: PlanMemory
    requests: tuple[Request[S], ...]

    @classmethod
    def build(
        cls,
        function: Function,
        channels: Iterable[S],
        limits: Limits = Limits(),
        memory: PlanMemory | None = None,
        interval_s: float = 0.0,
    ) -> Plan[S]:
        memory = memory if memory is not None else PlanMemory()
        mine = tuple(c for c in channels if c.function is function)
        requests = plan_requests(function, mine, limits, memory)
        return cls(function, interval_s, mine, limits, memory, tuple(requests))

    def replan(self) -> Plan[S]:
        """The same group planned again with the memory as it is now."""
        return Plan.build(self.function, self.channels, self.limits, self.memory, self.interval_s)

    def split(self, request: Request[S]) -> Plan[S]:
        """Learn from an exception 02 to ``request``; return the new plan.

        A multi-channel request is cut (cuts are remembered in the memory); a
        single-channel request marks its channel unreadable.
        """
        if request not in self.requests:
            raise ValueError("request is not part of this plan")
        cuts = _cuts_for(request)
        if cuts:
            for cut in cuts:
                self.memory.add_cut(request.function, cut)
            _LOGGER.info(
                "%s read %d+%d refused: never merging across %s again",
                request.function.value,
                request.address,
                request.count,
                cuts,
            )
        else:
            for channel in request.channels:
                self.memory.mark_unreadable(request.function, channel.name)
            _LOGGER.warning(
                "%s read %d+%d refused for channel(s) %s alone: marked unreadable",
                request.function.value,
                request.address,
                request.count,
                ", ".join(c.name for c in request.channels),
            )
        return self.replan()

    @property
    def unreadable(self) -> tuple[S, ...]:
        """Channels of this group left out because the device refused them alone."""
        return tuple(c for c in self.channels if self.memory.is_unreadable(self.function, c.name))

    @property
    def registers(self) -> int:
        """Elements read per cycle (holes included), for the start-up report."""
        return sum(r.count for r in self.requests)


def plan_device(
    channels: Iterable[T], limits: Limits = Limits(), memory: PlanMemory | None = None
) -> list[Plan[T]]:
    """One plan per (table, poll interval) group, in table then interval order."""
    memory = memory if memory is not None else PlanMemory()
    groups: dict[tuple[Function, float], list[T]] = {}
    for channel in channels:
        groups.setdefault((channel.function, channel.poll_interval_s), []).append(channel)
    order = list(Function)
    return [
        Plan.build(function, group, limits, memory, interval)
        for (function, interval), group in sorted(
            groups.items(), key=lambda item: (order.index(item[0][0]), item[0][1])
        )
    ]


class PollSchedule(Generic[S]):
    """Which plans are due, by their ``interval_s`` (time is the caller's monotonic clock).

    Every plan is due at the first call; afterwards each one is due ``interval_s`` after
    its previous slot.  A late caller gets the plan once, not once per missed slot.
    """

    def __init__(self, plans: Sequence[Plan[S]]) -> None:
        self.plans = list(plans)
        self._next: list[float | None] = [None] * len(self.plans)

    def replace(self, old: Plan[S], new: Plan[S]) -> None:
        """Swap in a re-planned group (after :meth:`Plan.split`), keeping its timing."""
        for index, plan in enumerate(self.plans):
            if plan is old:
                self.plans[index] = new
                return
        raise ValueError("plan is not part of this schedule")

    def due(self, now: float) -> list[Plan[S]]:
        due: list[Plan[S]] = []
        for index, plan in enumerate(self.plans):
            slot = self._next[index]
            if slot is not None and slot > now:
                continue
            due.append(plan)
            slot = now if slot is None else slot
            interval = max(plan.interval_s, 1e-6)
            if slot <= now:
                slot += (math.floor((now - slot) / interval) + 1) * interval
            self._next[index] = slot
        return due

    def next_due(self) -> float | None:
        """The earliest time a plan becomes due (``None`` before the first :meth:`due`)."""
        slots = [slot for slot in self._next if slot is not None]
        return min(slots) if len(slots) == len(self._next) and slots else None
