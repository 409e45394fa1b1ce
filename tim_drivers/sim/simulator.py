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
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import struct
import time
from collections.abc import Callable
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


class TimSimulator:
    """One simulated TIM built from a :class:`TimProfile`."""

    def __init__(
        self,
        profile: TimProfile,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_segment: int = DEFAULT_SEGMENT,
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
        self._latched: dict[int, float] = {}
        self._written: dict[int, float] = {}
        self._last: tuple[int, bytes, LinkFrame] | None = None
        self.commands = 0  # commands answered (replays excluded)
        self.replays = 0

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_segment: int = DEFAULT_SEGMENT,
    ) -> TimSimulator:
        return cls(load_profile(path), clock=clock, max_segment=max_segment)

    @property
    def decode_errors(self) -> int:
        return self._decoder.errors

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
        """Feed received octets (any chunking); return the octets to send back."""
        out = bytearray()
        for frame in self._decoder.feed(data):
            answer = self.handle_frame(frame)
            if answer is not None:
                out += answer.to_bytes()
        return bytes(out)

    def handle_frame(self, frame: LinkFrame) -> LinkFrame | None:
        if frame.kind is not FrameKind.COMMAND:
            return None
        last = self._last
        if last is not None and last[0] == frame.seq and last[1] == frame.payload:
            self.replays += 1
            _LOGGER.debug("seq=%d duplicate: replaying last answer", frame.seq)
            return last[2]
        answer = self._answer(frame)
        self.commands += 1
        self._last = (frame.seq, frame.payload, answer)
        return answer

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
            self._operating.clear()
            self._latched.clear()
            self._written.clear()
            return None
        if not 1 <= channel <= len(self.profile.channels):
            return NakReason.UNKNOWN_COMMAND
        if key == (CommandClass.XDCR_EITHER, XdcrEitherCmd.OPERATE):
            self._operating.add(channel)
            return None
        if key == (CommandClass.XDCR_EITHER, XdcrEitherCmd.IDLE):
            self._operating.discard(channel)
            self._latched.pop(channel, None)
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
            answer = self.handle(data)
            if answer:
                outgoing.extend(answer)
                flush()

        loop.add_reader(fd, readable)
        try:
            if on_ready is not None:
                on_ready()
            await finished
        finally:
            loop.remove_reader(fd)
            loop.remove_writer(fd)


def _name_teds(name: str) -> bytes:
    return UserNameTeds(TedsId(0, TedsAccessCode.USER_NAME, 1, 1), 0, name).to_bytes()


def _nak(seq: int, reason: NakReason) -> LinkFrame:
    return LinkFrame(FrameKind.NAK, seq, bytes((reason,)))
