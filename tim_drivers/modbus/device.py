"""A Modbus device as a virtual TIM: the same shape as :class:`SerialTim` (the NCAP's TimDriver).

* :meth:`ModbusDevice.discover` describes the profile (:func:`describe_device`): one
  channel per profile channel, numbered 1, 2, ... in profile order; a writable channel is
  an actuator.  Units, limits and decimals are the profile's display values.
* :meth:`ModbusDevice.poll` runs every plan that is due (:class:`PollSchedule`) and
  returns fresh samples; :meth:`read` serves one channel, from the cache when the cached
  value is younger than half the channel's poll interval, else by running the planned
  request that covers it (which refreshes every channel of that request).
* Exception 02 on a read splits the plan (:meth:`Plan.split`, remembered in the
  device's :class:`PlanMemory`) and the split requests are retried in the same call.
* Writes obey the profile: only a channel declared ``writable`` is written
  (:class:`WriteRefused` otherwise, before anything goes on the wire); the value is
  encoded, written (FC05 / FC06 / FC16), read back and compared register by register.
* A slave that times out is backed off by its bus (:class:`SlaveSilent`); :meth:`poll`
  then returns no samples without touching the wire, so live slaves keep their rate.

String channels have no numeric value: they are decoded into :meth:`text` but never
produce a :class:`Sample`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from tim_drivers.drivers.p1451_serial import ChannelInfo, ChannelKind, Sample, TimInfo
from tim_drivers.errors import (
    ModbusExceptionReply,
    RegisterCodecError,
    SlaveSilent,
    TimError,
    TimTimeout,
    WriteRefused,
    WriteVerifyFailed,
)
from tim_drivers.modbus.bus import LostCallback, ModbusBus
from tim_drivers.modbus.describe import describe_device, device_uuid
from tim_drivers.modbus.planner import Limits, Plan, PlanMemory, PollSchedule, Request, plan_device
from tim_drivers.modbus.profile import ChannelProfile, DeviceProfile
from tim_drivers.modbus.registers import DataType, Function, Value

_LOGGER = logging.getLogger(__name__)

ILLEGAL_DATA_ADDRESS = 2


@dataclasses.dataclass(frozen=True, slots=True)
class _Cached:
    value: Value
    timestamp: datetime
    at: float  # monotonic


def _decimals(channel: ChannelProfile) -> int:
    fmt = channel.format
    if fmt.precision is not None:
        return fmt.precision
    if fmt.data_type in (DataType.F32, DataType.F64) or fmt.scaled:
        return 1
    return 0


class ModbusDevice:
    """One slave on one :class:`ModbusBus`, presented as a TIM (see the module docstring)."""

    def __init__(
        self,
        bus: ModbusBus,
        profile: DeviceProfile,
        *,
        slave_id: int | None = None,
        limits: Limits | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bus = bus
        self.profile = profile
        self.slave_id = profile.slave_id if slave_id is None else slave_id
        if not 1 <= self.slave_id <= 247:
            raise TimError(f"slave id {self.slave_id} outside 1..247")
        if limits is None:
            # Without a gap of its own the profile reads across gaps as long as that is
            # cheaper on this wire than another request.
            gap = profile.max_gap if profile.max_gap_set else bus.settings.break_even_gap
            limits = Limits(gap, profile.max_registers, profile.max_bits)
        self.limits = limits
        self.memory = PlanMemory()
        self.schedule: PollSchedule[ChannelProfile] = PollSchedule(
            plan_device(profile.channels, self.limits, self.memory)
        )
        self._clock = clock
        self._cache: dict[str, _Cached] = {}
        self._info: TimInfo | None = None
        self._lost_callback: LostCallback | None = None
        self._event_callback: Callable[[Sample], None] | None = None
        self._opened = False

    @property
    def name(self) -> str:
        return f"bus={self.bus.name} slave={self.slave_id} ({self.profile.name})"

    @property
    def info(self) -> TimInfo | None:
        return self._info

    # --- TimDriver ----------------------------------------------------------------------

    async def open(self) -> None:
        """Open the bus (a shared bus is connected once, by its first user)."""
        if not self._opened:
            await self.bus.open()
            self._opened = True

    async def close(self) -> None:
        if self._opened:
            self._opened = False
            await self.bus.close()

    def on_lost(self, callback: LostCallback) -> None:
        """Have ``callback`` called when the bus connection drops (TCP); stored once."""
        if self._lost_callback is None:
            self.bus.add_lost_callback(self._lost)
        self._lost_callback = callback

    def _lost(self, err: Exception | None) -> None:
        if self._opened and self._lost_callback is not None:
            self._lost_callback(err)

    def on_event(self, callback: Callable[[Sample], None]) -> None:
        """Stored for the protocol's sake: Modbus has no events, it is never called."""
        self._event_callback = callback

    async def discover(self) -> TimInfo:
        description = describe_device(self.profile, slave_id=self.slave_id)
        channels = tuple(
            ChannelInfo(
                number=item.number,
                name=item.channel.name,
                kind=ChannelKind.ACTUATOR if item.channel.writable else ChannelKind.SENSOR,
                unit=item.channel.unit,
                low_limit=math.nan if item.channel.low_limit is None else item.channel.low_limit,
                high_limit=math.nan if item.channel.high_limit is None else item.channel.high_limit,
                decimals=_decimals(item.channel),
                teds=item.teds,
            )
            for item in description.channels
        )
        self._info = TimInfo(
            uuid=description.meta.uuid or device_uuid(self.profile, self.slave_id),
            name=self.profile.name,
            channels=channels,
            meta=description.meta,
        )
        return self._info

    async def read(self, channel: int) -> Sample:
        profile = self._channel(channel)
        cached = self._cache.get(profile.name)
        if cached is not None and self._clock() - cached.at < profile.poll_interval_s / 2:
            return self._sample(channel, profile, cached)
        if profile.format.data_type is DataType.STRING:
            raise TimError(f"{self.name} ch={channel}: a string channel has no numeric value")
        plan = self._plan_of(profile)
        if self.memory.is_unreadable(profile.function, profile.name):
            raise ModbusExceptionReply(
                f"{self.name} ch={channel}: the device refuses {profile.name!r} (exception 02)",
                code=ILLEGAL_DATA_ADDRESS,
            )
        request = next(r for r in plan.requests if profile in r.channels)
        await self._run(plan, {c.name for c in request.channels})
        cached = self._cache.get(profile.name)
        if cached is None:
            raise ModbusExceptionReply(
                f"{self.name} ch={channel}: the device refuses {profile.name!r} (exception 02)",
                code=ILLEGAL_DATA_ADDRESS,
            )
        return self._sample(channel, profile, cached)

    async def write(self, channel: int, value: float) -> None:
        profile = self._channel(channel)
        if not profile.writable:
            raise WriteRefused(f"{self.name} ch={channel} {profile.name!r} is not writable")
        try:
            registers = profile.encode(self._typed(profile, value))
        except RegisterCodecError as err:
            raise WriteRefused(f"{self.name} ch={channel}: {err}") from err
        slave = self.slave_id
        if profile.function is Function.COIL:
            await self.bus.write(5, profile.address, [bool(registers[0])], slave)
        elif len(registers) == 1:
            await self.bus.write(6, profile.address, registers, slave)
        else:
            await self.bus.write(16, profile.address, registers, slave)
        back = await self.bus.read(profile.function.read_code, profile.address, profile.size, slave)
        if [int(v) for v in back] != registers:
            raise WriteVerifyFailed(
                f"{self.name} ch={channel}: wrote {registers}, read back {list(back)}"
            )
        self._store(profile, back)

    # --- polling ------------------------------------------------------------------------

    def next_due(self) -> float | None:
        """Monotonic time the next plan is due, the slave's backoff included."""
        due = self.schedule.next_due()
        if due is None:
            return None
        backoff = self.bus.backoff_remaining(self.slave_id)
        return max(due, self._clock() + backoff) if backoff else due

    async def poll(self) -> list[Sample]:
        """Run every due plan; the fresh samples of numeric channels, in channel order."""
        if self.bus.backed_off(self.slave_id):
            return []
        fresh: set[str] = set()
        for plan in self.schedule.due(self._clock()):
            try:
                fresh |= await self._run(plan, None)
            except SlaveSilent:
                break
            except TimTimeout as err:
                _LOGGER.debug("%s: poll stopped: %s", self.name, err)
                break
            except TimError as err:
                _LOGGER.warning("%s: %s read failed: %s", self.name, plan.function.value, err)
        samples = []
        for number, profile in enumerate(self.profile.channels, 1):
            cached = self._cache.get(profile.name)
            if profile.name in fresh and cached is not None and self._numeric(profile):
                samples.append(self._sample(number, profile, cached))
        return samples

    def text(self, channel: int) -> str | None:
        """The last decoded value of any channel as text (strings included)."""
        cached = self._cache.get(self._channel(channel).name)
        return None if cached is None else str(cached.value)

    async def _run(self, plan: Plan[ChannelProfile], wanted: set[str] | None) -> set[str]:
        """Run ``plan``'s requests (only those covering ``wanted`` if given).

        Exception 02 splits the plan, swaps it into the schedule and retries the split
        requests; returns the names of the channels decoded.
        """
        done: set[str] = set()
        targets = {c.name for c in plan.channels} if wanted is None else set(wanted)
        for _ in range(4 * len(plan.channels) + 4):
            pending = [
                r for r in plan.requests if any(c.name in targets - done for c in r.channels)
            ]
            if not pending:
                return done
            request = pending[0]
            try:
                values = await self._read_request(request)
            except ModbusExceptionReply as err:
                if err.code != ILLEGAL_DATA_ADDRESS:
                    raise
                new = plan.split(request)
                self.schedule.replace(plan, new)
                plan = new
                targets -= {c.name for c in plan.unreadable}
                continue
            for channel, part in request.split_response(values):
                self._store(channel, part)
                done.add(channel.name)
        raise TimError(f"{self.name}: exception-02 learning did not converge")  # pragma: no cover

    async def _read_request(self, request: Request[ChannelProfile]) -> Sequence[int | bool]:
        return await self.bus.read(
            request.function.read_code, request.address, request.count, self.slave_id
        )

    # --- helpers ------------------------------------------------------------------------

    def _channel(self, channel: int) -> ChannelProfile:
        if not 1 <= channel <= len(self.profile.channels):
            raise TimError(f"{self.name} has no channel {channel}")
        return self.profile.channels[channel - 1]

    def _plan_of(self, profile: ChannelProfile) -> Plan[ChannelProfile]:
        for plan in self.schedule.plans:
            if profile in plan.channels:
                return plan
        raise TimError(f"{self.name}: channel {profile.name!r} is in no plan")  # pragma: no cover

    def _store(self, profile: ChannelProfile, part: Sequence[int | bool]) -> None:
        value = profile.decode([int(v) for v in part])
        self._cache[profile.name] = _Cached(value, datetime.now(UTC), self._clock())

    @staticmethod
    def _numeric(profile: ChannelProfile) -> bool:
        return profile.format.data_type is not DataType.STRING

    @staticmethod
    def _typed(profile: ChannelProfile, value: float) -> Value:
        if not math.isfinite(value):
            raise RegisterCodecError(f"{value!r} is not a finite number")
        kind = profile.format.data_type
        if kind is DataType.BOOL:
            if value not in (0.0, 1.0):
                raise RegisterCodecError(f"a bit is 0 or 1, not {value!r}")
            return value == 1.0
        if kind is DataType.STRING:
            raise RegisterCodecError("a string channel cannot be written with a number")
        return value

    @staticmethod
    def _sample(number: int, profile: ChannelProfile, cached: _Cached) -> Sample:
        value = cached.value
        if isinstance(value, str):
            raise TimError(f"channel {number} {profile.name!r} has no numeric value")
        return Sample(number, float(value), profile.unit, cached.timestamp)


__all__ = ["ModbusDevice"]
