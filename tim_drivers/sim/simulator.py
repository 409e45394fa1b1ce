"""A simulated IEEE 1451.0 TIM speaking TLF-1, for tests, demos and bench work.

:meth:`TimSimulator.handle` is the pure-ish core (bytes in, bytes out; the only impurity
is the clock that drives the simulated values).  :meth:`TimSimulator.serve` and
:meth:`TimSimulator.serve_fd` put it on a serial port / pty.

Behaviour, per ieee1451.md §3 and §12.2:

* Query TEDS / Read TEDS segment for the Meta-TEDS, PHY TEDS and User's name TEDS of the
  TIM (channel 0) and the TransducerChannel and User's name TEDS of each channel.
  Unknown TEDS: Query says NotAvail, Read answers offset 0xFFFFFFFF.
* Operate / Idle / Trigger / Write data-set / Reset: link ACK.  Trigger needs the
  channel in Operating; it latches the current value.
* Read data-set segment: UInt32 octet offset + one Float32 sample in PhyUnits.
* Read status-event register: four zero octets.
* Anything else, or a command for a channel that does not exist or is in the wrong state:
  NAK reason 4.  A malformed message: NAK reason 2.
* A frame repeating the last one (same seq and payload) gets the last answer replayed;
  comparing the payload too avoids replaying to a restarted NCAP that reuses the seq.
* Event sensor channels (ChanType 2) in Operating send TIM-initiated messages (TLF-1 kind
  3, 1451.0 Table 14 layout) when their value crosses ``event_threshold`` (either way)
  and/or every ``event_period`` s.  Content (our choice [O]): source channel, class 3,
  function 1 (Read data-set segment), args = UInt32 offset 0 + the Float32 value, i.e.
  the octets a Read data-set segment reply would carry.  :meth:`TimSimulator.poll_events`
  produces them; :meth:`TimSimulator.serve_fd` calls it every 20 ms.

Fault injection (:class:`FaultConfig`) and counters (:class:`SimStats`) are for link
tests: see their docstrings for what is counted as a *delivered* reading.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import errno
import logging
import os
import random
import struct
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import serial

from tim_drivers.codec import p1451
from tim_drivers.codec.framing import MAX_PAYLOAD, FrameDecoder, FrameKind, LinkFrame
from tim_drivers.codec.p1451 import (
    AnyStateCmd,
    CommandClass,
    CommonCmd,
    NakReason,
    TedsAccessCode,
    TedsAttribute,
    XdcrEitherCmd,
    XdcrIdleCmd,
    XdcrOperateCmd,
)
from tim_drivers.codec.teds import (
    FLOAT32_SAMPLE,
    CalKey,
    ChannelTeds,
    ChanType,
    MetaTeds,
    TedsId,
    UserNameTeds,
    serial_phy_teds,
)
from tim_drivers.errors import FrameError, TimUnavailable
from tim_drivers.sim.profile import TimProfile, load_profile

_LOGGER = logging.getLogger(__name__)

# Largest TEDS chunk per Read TEDS segment reply: payload - reply header - offset.
DEFAULT_SEGMENT = MAX_PAYLOAD - 3 - 4
_READ_CHUNK = 4096
EVENT_POLL = 0.02  # seconds between event checks in serve_fd
CORRUPT_MODES = ("byte", "frame")


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """Faults the simulator injects (all off by default).

    * ``drop``: probability that a received frame is ignored (no answer, no state change).
    * ``corrupt``: with ``corrupt_mode="byte"`` the probability that each octet the
      simulator sends (delimiters included) is XORed with a random non-zero mask; with
      ``"frame"`` the probability that a sent frame gets exactly one such flipped octet.
    * ``delay``: seconds added before each answer / TIM-initiated message is written
      (applies in :meth:`TimSimulator.serve_fd`; :meth:`TimSimulator.handle` is instant).
    * ``reboot_after``: after this many received frames (dropped ones included) the TIM
      reboots once, like a power loss: every channel goes back to Idle and latched
      values, written actuator values and the last-reply cache are forgotten.  The port
      stays open.
    * ``seed``: seeds the fault generator, so a run is reproducible (None: random).
    """

    drop: float = 0.0
    corrupt: float = 0.0
    corrupt_mode: str = "byte"
    delay: float = 0.0
    reboot_after: int | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("drop", "corrupt"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} probability {value} outside 0..1")
        if self.corrupt_mode not in CORRUPT_MODES:
            raise ValueError(f"corrupt_mode {self.corrupt_mode!r} not one of {CORRUPT_MODES}")
        if not 0.0 <= self.delay <= 60.0:
            raise ValueError(f"delay {self.delay} s outside 0..60")
        if self.reboot_after is not None and self.reboot_after < 1:
            raise ValueError(f"reboot_after {self.reboot_after} < 1")


@dataclass(slots=True)
class SimStats:
    """Counters since the simulator was created.

    A *reading* is the reply to one executed Read data-set segment command (replays of
    the same reply are the same reading).  It is *delivered* when at least one
    transmission of it left the simulator with no corrupted octet **and** the octet sent
    just before it (the previous frame's delimiter) was not corrupted either, so a TLF-1
    receiver is in sync at its start and decodes it whatever its stale-frame timing.
    A receiver that reads continuously and waits longer than the reply delay therefore
    gets at least ``readings_delivered`` samples.
    """

    frames_received: int = 0
    frames_dropped: int = 0
    commands: int = 0  # commands executed (replays excluded)
    replays: int = 0
    frames_sent: int = 0
    frames_corrupted: int = 0
    octets_corrupted: int = 0
    reboots: int = 0
    readings_sent: int = 0
    readings_delivered: int = 0
    reading_transmissions_corrupted: int = 0
    events_sent: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(slots=True)
class _Answer:
    seq: int
    payload: bytes
    frame: LinkFrame
    reading: bool = False
    sent: bool = False
    delivered: bool = False


@dataclass(slots=True)
class _EventState:
    above: bool | None = None
    due: float | None = None
    pending: list[float] = field(default_factory=list)


class TimSimulator:
    """One simulated TIM built from a :class:`TimProfile`."""

    def __init__(
        self,
        profile: TimProfile,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_segment: int = DEFAULT_SEGMENT,
        faults: FaultConfig | None = None,
    ) -> None:
        if not 1 <= max_segment <= DEFAULT_SEGMENT:
            raise ValueError(f"max_segment {max_segment} outside 1..{DEFAULT_SEGMENT}")
        self.profile = profile
        self._clock = clock
        self._start = clock()
        self._max_segment = max_segment
        self._decoder = FrameDecoder()
        self._teds = self._build_teds(profile)
        self._operating: set[int] = set()
        self._groups: dict[int, set[int]] = {}  # AddressGroup -> member channels
        self._latched: dict[int, float] = {}
        self._written: dict[int, float] = {}
        self._last: _Answer | None = None
        self._faults = faults or FaultConfig()
        self._random = random.Random(self._faults.seed)
        self.stats = SimStats()
        self._in_sync = True  # the last octet sent was an intact delimiter
        self._events: dict[int, _EventState] = {}
        self._event_seq = 0

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_segment: int = DEFAULT_SEGMENT,
        faults: FaultConfig | None = None,
    ) -> TimSimulator:
        return cls(load_profile(path), clock=clock, max_segment=max_segment, faults=faults)

    @property
    def decode_errors(self) -> int:
        return self._decoder.errors

    @property
    def faults(self) -> FaultConfig:
        return self._faults

    @faults.setter
    def faults(self, faults: FaultConfig) -> None:
        """Change the faults at run time (e.g. after a clean discovery); reseeds."""
        self._faults = faults
        self._random = random.Random(faults.seed)

    @property
    def commands(self) -> int:
        """Commands executed (replays excluded)."""
        return self.stats.commands

    @property
    def replays(self) -> int:
        return self.stats.replays

    @property
    def operating(self) -> frozenset[int]:
        """Channels currently in Operating."""
        return frozenset(self._operating)

    @staticmethod
    def _build_teds(profile: TimProfile) -> dict[tuple[int, int], bytes]:
        teds: dict[tuple[int, int], bytes] = {
            (0, TedsAccessCode.META): MetaTeds(
                uuid=profile.uuid,
                ohold_off=profile.ohold_off,
                shold_off=profile.shold_off,
                test_time=profile.test_time,
                max_chan=len(profile.channels),
            ).to_bytes(),
            (0, TedsAccessCode.PHY): serial_phy_teds(profile.baudrate).to_bytes(),
            (0, TedsAccessCode.USER_NAME): _name_teds(profile.name),
        }
        for number, channel in enumerate(profile.channels, 1):
            teds[(number, TedsAccessCode.CHANNEL)] = ChannelTeds(
                cal_key=CalKey.CAL_NONE,
                chan_type=channel.kind,
                phy_units=channel.units,
                low_limit=channel.low_limit,
                high_limit=channel.high_limit,
                o_error=channel.o_error,
                sample=FLOAT32_SAMPLE,
                update_time=channel.update_time,
            ).to_bytes()
            teds[(number, TedsAccessCode.USER_NAME)] = _name_teds(channel.name)
        return teds

    def teds(self, channel: int, code: int) -> bytes | None:
        """The TEDS image this TIM serves, or None."""
        return self._teds.get((channel, code))

    def value(self, channel: int) -> float:
        """Current value of ``channel`` (1-based) in its PhyUnits."""
        if channel in self._written:
            return self._written[channel]
        return self.profile.channels[channel - 1].value_at(self._clock() - self._start)

    # --- the core ---------------------------------------------------------------------

    def handle(self, data: bytes) -> bytes:
        """Feed received octets (any chunking); return the octets to send back.

        Faults (drop, corruption, reboot) are applied here; the delay is not.
        """
        out = bytearray()
        for frame in self._decoder.feed(data):
            self.stats.frames_received += 1
            if self.faults.drop and self._random.random() < self.faults.drop:
                self.stats.frames_dropped += 1
                _LOGGER.debug("seq=%d dropped (fault injection)", frame.seq)
            else:
                answer = self._respond(frame)
                if answer is not None:
                    out += self._emit(answer.frame, answer)
            reboot_after = self.faults.reboot_after
            if reboot_after is not None and self.stats.frames_received == reboot_after:
                self.reboot()
        return bytes(out)

    def handle_frame(self, frame: LinkFrame) -> LinkFrame | None:
        """Answer one frame, without fault injection or statistics of what is sent."""
        answer = self._respond(frame)
        return None if answer is None else answer.frame

    def reboot(self) -> None:
        """Lose all volatile state, as after a power cycle (the port stays open)."""
        self.stats.reboots += 1
        self._operating.clear()
        self._latched.clear()
        self._written.clear()
        self._events.clear()
        self._last = None
        _LOGGER.info("TIM %s rebooted", self.profile.name)

    def _respond(self, frame: LinkFrame) -> _Answer | None:
        if frame.kind is not FrameKind.COMMAND:
            return None
        last = self._last
        if last is not None and last.seq == frame.seq and last.payload == frame.payload:
            self.stats.replays += 1
            _LOGGER.debug("seq=%d duplicate: replaying last answer", frame.seq)
            return last
        answer = _Answer(frame.seq, frame.payload, self._answer(frame))
        answer.reading = (
            answer.frame.kind is FrameKind.REPLY
            and answer.frame.payload[:1] != b"\x00"  # a successful reply
            and _is_read_data_set(frame.payload)
        )
        self.stats.commands += 1
        self._last = answer
        return answer

    def _emit(self, frame: LinkFrame, answer: _Answer | None = None) -> bytes:
        """Encode ``frame`` for the wire, corrupt it as configured and count it."""
        wire = bytearray(frame.to_bytes())
        flipped = self._corrupt(wire)
        intact = flipped == 0 and self._in_sync
        self._in_sync = wire[-1] == 0
        stats = self.stats
        stats.frames_sent += 1
        if flipped:
            stats.frames_corrupted += 1
            stats.octets_corrupted += flipped
        if answer is not None and answer.reading:
            if not answer.sent:
                answer.sent = True
                stats.readings_sent += 1
            if flipped:
                stats.reading_transmissions_corrupted += 1
            if intact and not answer.delivered:
                answer.delivered = True
                stats.readings_delivered += 1
        return bytes(wire)

    def _corrupt(self, wire: bytearray) -> int:
        """Flip octets of ``wire`` in place per the fault config; return how many."""
        probability = self.faults.corrupt
        if not probability:
            return 0
        rng = self._random
        if self.faults.corrupt_mode == "frame":
            if rng.random() >= probability:
                return 0
            wire[rng.randrange(len(wire))] ^= rng.randrange(1, 256)
            return 1
        flipped = 0
        for index in range(len(wire)):
            if rng.random() < probability:
                wire[index] ^= rng.randrange(1, 256)
                flipped += 1
        return flipped

    # --- events -----------------------------------------------------------------------

    def poll_events(self) -> bytes:
        """TIM-initiated messages due now (threshold crossings, periodic reports)."""
        out = bytearray()
        now = self._clock()
        for number, channel in enumerate(self.profile.channels, 1):
            if channel.kind is not ChanType.EVENT_SENSOR or number not in self._operating:
                continue
            state = self._events.setdefault(number, _EventState())
            value = self.value(number)
            send = False
            if channel.event_threshold is not None:
                above = value >= channel.event_threshold
                send = state.above is not None and above != state.above
                state.above = above
            if channel.event_period is not None:
                if state.due is None:
                    state.due = now + channel.event_period
                elif now >= state.due:
                    send = True
                    state.due = max(state.due + channel.event_period, now)
            if send:
                out += self._emit(self._event_frame(number, value))
                self.stats.events_sent += 1
        return bytes(out)

    def _event_frame(self, channel: int, value: float) -> LinkFrame:
        args = p1451.Segment(0, struct.pack(">f", value)).to_bytes()
        message = p1451.TimInitiated(
            channel, CommandClass.XDCR_OPERATE, XdcrOperateCmd.READ_DATA_SET_SEGMENT, args
        )
        seq = self._event_seq
        self._event_seq = (seq + 1) & 0xFF
        return LinkFrame(FrameKind.TIM_INITIATED, seq, message.to_bytes())

    def _answer(self, frame: LinkFrame) -> LinkFrame:
        try:
            command = p1451.Command.from_bytes(frame.payload)
            result = self._execute(command)
        except FrameError as err:
            _LOGGER.debug("seq=%d malformed command: %s", frame.seq, err)
            return _nak(frame.seq, NakReason.LENGTH)
        if isinstance(result, p1451.Reply):
            return LinkFrame(FrameKind.REPLY, frame.seq, result.to_bytes())
        if result is None:
            return LinkFrame(FrameKind.ACK, frame.seq)
        return _nak(frame.seq, result)

    def _execute_multicast(self, command: p1451.Command) -> NakReason | None:
        """Operate, Idle or Trigger sent to every channel or to an AddressGroup."""
        multicast = {
            (CommandClass.XDCR_EITHER, XdcrEitherCmd.OPERATE),
            (CommandClass.XDCR_EITHER, XdcrEitherCmd.IDLE),
            (CommandClass.XDCR_OPERATE, XdcrOperateCmd.TRIGGER),
        }
        if (command.cmd_class, command.function) not in multicast:
            return NakReason.UNKNOWN_COMMAND  # data sets are read one channel at a time
        if command.channel == p1451.GLOBAL_CHANNEL:
            members = set(range(1, len(self.profile.channels) + 1))
        else:
            members = self._groups.get(command.channel, set())
        if not members:
            return NakReason.UNKNOWN_COMMAND
        for member in sorted(members):
            if command.cmd_class == CommandClass.XDCR_OPERATE and member not in self._operating:
                continue  # a trigger reaches the members that are Operating
            self._execute(dataclasses.replace(command, channel=member))
        return None

    def _execute(self, command: p1451.Command) -> p1451.Reply | NakReason | None:
        """Run one command: a Reply, None for ACK, or a NAK reason."""
        key = (command.cmd_class, command.function)
        channel = command.channel
        if key == (CommandClass.COMMON, CommonCmd.QUERY_TEDS):
            return self._query_teds(channel, command.args)
        if key == (CommandClass.COMMON, CommonCmd.READ_TEDS_SEGMENT):
            return self._read_teds(channel, command.args)
        if key == (CommandClass.COMMON, CommonCmd.READ_STATUS_EVENT):
            return p1451.Reply(True, bytes(4))
        if key == (CommandClass.ANY_STATE, AnyStateCmd.RESET):
            self._groups.clear()
            self._operating.clear()
            self._latched.clear()
            self._written.clear()
            self._events.clear()
            return None
        if channel == p1451.GLOBAL_CHANNEL or p1451.is_address_group(channel):
            return self._execute_multicast(command)
        if not 1 <= channel <= len(self.profile.channels):
            return NakReason.UNKNOWN_COMMAND
        if key == (CommandClass.XDCR_IDLE, XdcrIdleCmd.ADDRESS_GROUP_DEFINITION):
            if channel in self._operating or len(command.args) != 2:
                return NakReason.UNKNOWN_COMMAND  # XdcrIdle commands need Idle
            group = int.from_bytes(command.args, "big")
            if not p1451.is_address_group(group):
                return NakReason.UNKNOWN_COMMAND
            self._groups.setdefault(group, set()).add(channel)
            return None
        if key == (CommandClass.XDCR_EITHER, XdcrEitherCmd.OPERATE):
            self._operating.add(channel)
            return None
        if key == (CommandClass.XDCR_EITHER, XdcrEitherCmd.IDLE):
            self._operating.discard(channel)
            self._latched.pop(channel, None)
            self._events.pop(channel, None)
            return None
        if command.cmd_class == CommandClass.XDCR_OPERATE and channel not in self._operating:
            return NakReason.UNKNOWN_COMMAND  # XdcrOperate commands need Operating
        if key == (CommandClass.XDCR_OPERATE, XdcrOperateCmd.TRIGGER):
            self._latched[channel] = self.value(channel)
            return None
        if key == (CommandClass.XDCR_OPERATE, XdcrOperateCmd.READ_DATA_SET_SEGMENT):
            return self._read_data_set(channel, command.args)
        if key == (CommandClass.XDCR_OPERATE, XdcrOperateCmd.WRITE_DATA_SET_SEGMENT):
            return self._write_data_set(channel, command.args)
        return NakReason.UNKNOWN_COMMAND

    def _query_teds(self, channel: int, args: bytes) -> p1451.Reply:
        if len(args) != 1:
            return p1451.Reply(False)
        image = self.teds(channel, args[0])
        if image is None:
            info = p1451.TedsInfo(TedsAttribute.NOT_AVAILABLE, 0, 0, 0, 0)
        else:
            checksum = int.from_bytes(image[-2:], "big")
            info = p1451.TedsInfo(TedsAttribute.READ_ONLY, 0, len(image), checksum, len(image))
        return p1451.Reply(True, info.to_bytes())

    def _read_teds(self, channel: int, args: bytes) -> p1451.Reply:
        try:
            code, offset, _ = p1451.parse_segment_args(args, with_code=True)
        except FrameError:
            return p1451.Reply(False)
        image = self.teds(channel, code)
        if image is None:
            segment = p1451.Segment(p1451.UNSUPPORTED_OFFSET)
        elif offset >= len(image):
            segment = p1451.Segment(len(image))
        else:
            segment = p1451.Segment(offset, image[offset : offset + self._max_segment])
        return p1451.Reply(True, segment.to_bytes())

    def _read_data_set(self, channel: int, args: bytes) -> p1451.Reply:
        try:
            _, offset, _ = p1451.parse_segment_args(args, with_code=False)
        except FrameError:
            return p1451.Reply(False)
        value = self._latched.get(channel)
        data = struct.pack(">f", self.value(channel) if value is None else value)
        if offset >= len(data):
            return p1451.Reply(True, p1451.Segment(len(data)).to_bytes())
        return p1451.Reply(True, p1451.Segment(offset, data[offset:]).to_bytes())

    def _write_data_set(self, channel: int, args: bytes) -> NakReason | None:
        if self.profile.channels[channel - 1].kind is not ChanType.ACTUATOR:
            return NakReason.UNKNOWN_COMMAND
        try:
            _, offset, data = p1451.parse_segment_args(args, with_code=False)
        except FrameError:
            return NakReason.LENGTH
        if offset != 0 or len(data) != 4:
            return NakReason.LENGTH
        self._written[channel] = float(struct.unpack(">f", data)[0])
        return None

    # --- I/O --------------------------------------------------------------------------

    async def serve(self, port: str, *, on_ready: Callable[[], None] | None = None) -> None:
        """Open ``port`` (a serial device or pty path) and answer until it goes away."""
        try:
            device = serial.Serial(port, baudrate=self.profile.baudrate, timeout=0)
        except (serial.SerialException, OSError, ValueError) as err:
            raise TimUnavailable(f"cannot open {port}: {err}") from err
        try:
            await self.serve_fd(device.fileno(), on_ready=on_ready)
        finally:
            device.close()

    async def serve_fd(self, fd: int, *, on_ready: Callable[[], None] | None = None) -> None:
        """Answer on an open file descriptor (e.g. a pty master) until EOF/EIO.

        The descriptor is made non-blocking and is not closed.
        """
        loop = asyncio.get_running_loop()
        os.set_blocking(fd, False)
        finished: asyncio.Future[None] = loop.create_future()
        outgoing = bytearray()

        def finish() -> None:
            if not finished.done():
                finished.set_result(None)

        def flush() -> None:
            try:
                sent = os.write(fd, outgoing)
            except BlockingIOError:
                sent = 0
            except OSError as err:
                _LOGGER.debug("write failed: %s", err)
                finish()
                return
            del outgoing[:sent]
            if outgoing:
                loop.add_writer(fd, flush)
            else:
                loop.remove_writer(fd)

        def readable() -> None:
            try:
                data = os.read(fd, _READ_CHUNK)
            except BlockingIOError:
                return
            except OSError as err:  # EIO: the other side of a pty has gone
                if err.errno != errno.EIO:
                    _LOGGER.debug("read failed: %s", err)
                finish()
                return
            if not data:
                finish()
                return
            send(self.handle(data))

        delayed: collections.deque[bytes] = collections.deque()

        def send(data: bytes) -> None:
            if not data:
                return
            delay = self.faults.delay
            if delay <= 0:
                write(data)
                return
            delayed.append(data)
            loop.call_later(delay, release)

        def release() -> None:
            # One timer per queued chunk; each releases the oldest, so the order holds
            # even when two timers fall due together.
            if delayed:
                write(delayed.popleft())

        def write(data: bytes) -> None:
            if finished.done():
                return
            outgoing.extend(data)
            flush()

        async def poll_events() -> None:
            while True:
                await asyncio.sleep(EVENT_POLL)
                send(self.poll_events())

        has_events = any(c.kind is ChanType.EVENT_SENSOR for c in self.profile.channels)
        poller = asyncio.create_task(poll_events()) if has_events else None
        loop.add_reader(fd, readable)
        try:
            if on_ready is not None:
                on_ready()
            await finished
        finally:
            loop.remove_reader(fd)
            loop.remove_writer(fd)
            if poller is not None:
                poller.cancel()


def _name_teds(name: str) -> bytes:
    return UserNameTeds(TedsId(0, TedsAccessCode.USER_NAME, 1, 1), 0, name).to_bytes()


def _is_read_data_set(payload: bytes) -> bool:
    """True for a (well-formed enough) Read data-set segment command."""
    return len(payload) >= 4 and (payload[2], payload[3]) == (
        CommandClass.XDCR_OPERATE,
        XdcrOperateCmd.READ_DATA_SET_SEGMENT,
    )


def _nak(seq: int, reason: NakReason) -> LinkFrame:
    return LinkFrame(FrameKind.NAK, seq, bytes((reason,)))
