"""The MicroPython TIM firmware core (hardware/tim-firmware/tim_core.py) under CPython.

The core is loaded by path, checked against the NCAP's own codecs, fuzzed, and served on
one end of a real pty with the NCAP's SerialTim driver on the other end.
"""

from __future__ import annotations

import ast
import asyncio
import collections
import importlib.util
import os
import random
import struct
import sys
import time
import tty
import types
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tim_drivers.codec import cobs, p1451
from tim_drivers.codec.framing import FrameDecoder, FrameKind, LinkFrame, crc16_ccitt_false
from tim_drivers.codec.teds import ChannelTeds, MetaTeds, TedsBlock, UserNameTeds
from tim_drivers.drivers.p1451_serial import ChannelKind, Sample, SerialTim
from tim_drivers.errors import CommandFailed, TimError
from tim_drivers.transport.serial_link import SerialSettings

pytestmark = pytest.mark.timeout(20)

FIRMWARE = Path(__file__).resolve().parents[2] / "hardware" / "tim-firmware"


def _load(name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(f"firmware_{name}", FIRMWARE / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tc: Any = _load("tim_core")

UUID = bytes.fromhex("a1b2c3d4e5f600010002")
ROOM_K = 294.65  # 21.5 °C


class Bench:
    """A TimCore with a settable temperature sensor (ch 1) and a recorded actuator (ch 2)."""

    def __init__(self, *, max_segment: int | None = None, ohold_off: float = 0.2) -> None:
        self.kelvin: float | None = ROOM_K
        self.reads = 0
        self.written: list[float] = []
        channels = [
            {
                "name": "temperature",
                "units": {"kelvins": 1},
                "low": 233.15,
                "high": 358.15,
                "error": 0.5,
                "update_time": 0.01,
            },
            {"name": "led", "type": tc.CHAN_ACTUATOR, "low": 0.0, "high": 1.0},
        ]
        self.teds = tc.build_teds("bench-tim", UUID, channels, ohold_off=ohold_off)
        self.core = tc.TimCore(self.teds, {1: self.read}, {2: self.write}, max_segment=max_segment)

    def read(self) -> float | None:
        self.reads += 1
        return self.kelvin

    def write(self, value: float) -> None:
        self.written.append(value)


def _ask(core: Any, command: p1451.Command, seq: int = 7) -> LinkFrame:
    wire = LinkFrame(FrameKind.COMMAND, seq, command.to_bytes()).to_bytes()
    frames = FrameDecoder().feed(core.feed(wire))
    assert len(frames) == 1, frames
    assert frames[0].seq == seq
    return frames[0]


def _reply(frame: LinkFrame) -> p1451.Reply:
    assert frame.kind is FrameKind.REPLY, frame
    return p1451.Reply.from_bytes(frame.payload)


def _nak(frame: LinkFrame) -> int:
    assert frame.kind is FrameKind.NAK, frame
    assert len(frame.payload) == 1
    return frame.payload[0]


# --- the core against the NCAP's codecs --------------------------------------------------


def test_crc_check_value() -> None:
    assert tc.crc16(b"123456789") == 0x29B1


@given(st.binary(max_size=1100))
def test_cobs_and_crc_agree_with_ncap(data: bytes) -> None:
    encoded = tc.cobs_encode(data)
    assert encoded == cobs.encode(data)
    assert tc.cobs_decode(encoded) == data
    assert tc.crc16(data) == crc16_ccitt_false(data)


@given(st.integers(0, 255), st.binary(max_size=1024))
def test_frames_agree_with_ncap(seq: int, payload: bytes) -> None:
    wire = tc.build_frame(tc.KIND_REPLY, seq, payload)
    assert wire == LinkFrame(FrameKind.REPLY, seq, payload).to_bytes()
    packet = tc.cobs_decode(wire[:-1])
    assert tc.parse_packet(packet) == (tc.PARSE_OK, tc.KIND_REPLY, seq, payload)


def test_teds_parse_with_ncap_codec() -> None:
    teds = Bench().teds
    meta = MetaTeds.from_bytes(teds[0][tc.TEDS_META])
    assert (meta.uuid, meta.max_chan, meta.ohold_off) == (UUID, 2, pytest.approx(0.2))
    assert UserNameTeds.from_bytes(teds[0][tc.TEDS_USER_NAME]).name == "bench-tim"
    phy = TedsBlock.from_bytes(teds[0][tc.TEDS_PHY])
    assert phy.teds_id is not None
    assert (phy.teds_id.family, phy.teds_id.access_code) == (2, 13)
    baud = phy.find(128)
    assert baud is not None
    assert int.from_bytes(baud.value, "big") == 115200
    temperature = ChannelTeds.from_bytes(teds[1][tc.TEDS_CHANNEL])
    assert temperature.phy_units is not None
    assert temperature.phy_units.is_kelvin
    assert (temperature.chan_type, temperature.cal_key) == (0, 0)
    assert temperature.low_limit == pytest.approx(233.15)
    assert temperature.sample is not None
    assert (temperature.sample.dat_model, temperature.sample.mod_length) == (1, 4)
    led = ChannelTeds.from_bytes(teds[2][tc.TEDS_CHANNEL])
    assert led.chan_type == 1
    assert UserNameTeds.from_bytes(teds[2][tc.TEDS_USER_NAME]).name == "led"


def test_uuid_layout() -> None:
    # 1 arc-second North, 2 West, manufacturer 3, year 2026, serial 5.
    value = int.from_bytes(tc.make_uuid(1, -2, 3, 2026, 5), "big")
    assert value >> 79 == 1  # North
    assert (value >> 59) & 0xFFFFF == 1
    assert (value >> 58) & 1 == 0  # West
    assert (value >> 38) & 0xFFFFF == 2
    assert (value >> 34) & 0xF == 3
    assert (value >> 22) & 0xFFF == 2026
    assert value & 0x3FFFFF == 5


# --- the core without I/O -----------------------------------------------------------------


def test_teds_commands() -> None:
    core = Bench(max_segment=16).core
    info = p1451.TedsInfo.from_bytes(_reply(_ask(core, p1451.query_teds(1, 3))).data)
    image = core.teds[1][3]
    assert (info.attributes, info.size, info.max_size) == (1, len(image), len(image))
    assert info.checksum == int.from_bytes(image[-2:], "big")
    segment = p1451.Segment.from_bytes(_reply(_ask(core, p1451.read_teds_segment(1, 3, 16))).data)
    assert (segment.offset, segment.data) == (16, image[16:32])
    beyond = p1451.Segment.from_bytes(_reply(_ask(core, p1451.read_teds_segment(1, 3, 999))).data)
    assert (beyond.offset, beyond.data) == (len(image), b"")
    # A TEDS the TIM does not have: not available / offset all ones.
    missing = p1451.TedsInfo.from_bytes(_reply(_ask(core, p1451.query_teds(0, 14))).data)
    assert not missing.available
    unsupported = p1451.Segment.from_bytes(_reply(_ask(core, p1451.read_teds_segment(0, 14))).data)
    assert (unsupported.offset, unsupported.data) == (p1451.UNSUPPORTED_OFFSET, b"")
    # Unknown channel, unknown command, malformed arguments.
    assert _nak(_ask(core, p1451.query_teds(9, 3))) == tc.NAK_UNKNOWN
    assert _nak(_ask(core, p1451.Command(0, 6, 1))) == tc.NAK_UNKNOWN
    assert _nak(_ask(core, p1451.Command(0, 1, 1, b"\x01\x02"))) == tc.NAK_LENGTH
    assert _reply(_ask(core, p1451.read_status_event(0))).data == bytes(4)


def test_sensor_and_actuator_commands() -> None:
    bench = Bench()
    core = bench.core
    # Class 3 needs Operating.
    assert _nak(_ask(core, p1451.trigger(1), seq=1)) == tc.NAK_UNKNOWN
    assert _ask(core, p1451.operate(1), seq=2).kind is FrameKind.ACK
    assert _ask(core, p1451.trigger(1), seq=3).kind is FrameKind.ACK
    bench.kelvin = 300.0  # the latched sample is what Trigger saw
    data = p1451.Segment.from_bytes(_reply(_ask(core, p1451.read_data_set(1), seq=4)).data)
    assert data.offset == 0
    assert struct.unpack(">f", data.data) == (pytest.approx(ROOM_K),)
    # The actuator: write needs Operating, reaches the hook, reads back.
    value = struct.pack(">f", 1.0)
    assert _nak(_ask(core, p1451.write_data_set(2, 0, value), seq=5)) == tc.NAK_UNKNOWN
    assert _ask(core, p1451.operate(2), seq=6).kind is FrameKind.ACK
    assert _ask(core, p1451.write_data_set(2, 0, value), seq=7).kind is FrameKind.ACK
    assert bench.written == [1.0]
    assert _nak(_ask(core, p1451.write_data_set(2, 0, b"\x01"), seq=8)) == tc.NAK_LENGTH
    assert _nak(_ask(core, p1451.write_data_set(1, 0, value), seq=9)) == tc.NAK_UNKNOWN
    assert _ask(core, p1451.trigger(2), seq=10).kind is FrameKind.ACK
    readback = p1451.Segment.from_bytes(_reply(_ask(core, p1451.read_data_set(2), seq=11)).data)
    assert readback.data == value
    # Reset: back to Idle.
    assert _ask(core, p1451.reset(), seq=12).kind is FrameKind.ACK
    assert _nak(_ask(core, p1451.read_data_set(1), seq=13)) == tc.NAK_UNKNOWN
    # Global channel.
    assert _ask(core, p1451.operate(p1451.GLOBAL_CHANNEL), seq=14).kind is FrameKind.ACK
    assert _ask(core, p1451.trigger(p1451.GLOBAL_CHANNEL), seq=15).kind is FrameKind.ACK


def test_busy_and_failing_hooks() -> None:
    bench = Bench()
    core = bench.core
    _ask(core, p1451.operate(1), seq=1)
    bench.kelvin = None  # no sample ready: NAK busy, and not cached for replay
    assert _nak(_ask(core, p1451.trigger(1), seq=2)) == tc.NAK_BUSY
    bench.kelvin = ROOM_K
    assert _ask(core, p1451.trigger(1), seq=2).kind is FrameKind.ACK
    core.busy = True
    assert _nak(_ask(core, p1451.trigger(1), seq=3)) == tc.NAK_BUSY
    core.busy = False

    def broken() -> float:
        raise OSError("sensor unplugged")

    core.read_hooks[1] = broken
    failed = _reply_any(_ask(core, p1451.trigger(1), seq=4))
    assert not failed.success


def _reply_any(frame: LinkFrame) -> p1451.Reply:
    assert frame.kind is FrameKind.REPLY
    return p1451.Reply.from_bytes(frame.payload)


def test_duplicate_seq_replays_last_answer() -> None:
    bench = Bench()
    core = bench.core
    _ask(core, p1451.operate(2), seq=40)
    write = LinkFrame(
        FrameKind.COMMAND, 41, p1451.write_data_set(2, 0, struct.pack(">f", 1.0)).to_bytes()
    ).to_bytes()
    first = core.feed(write)
    assert core.feed(write) == first  # the same answer, and the hook ran once
    assert bench.written == [1.0]
    assert core.replays == 1
    # Same seq, different command (e.g. a restarted NCAP): executed, not replayed.
    other = LinkFrame(FrameKind.COMMAND, 41, p1451.read_status_event(0).to_bytes()).to_bytes()
    assert _reply(FrameDecoder().feed(core.feed(other))[0]).data == bytes(4)


def test_noise_and_crc_errors() -> None:
    core = Bench().core
    good = LinkFrame(FrameKind.COMMAND, 3, p1451.query_teds(0, 1).to_bytes()).to_bytes()
    # Noise before a delimiter is dropped; a frame split over several feeds still works.
    out = core.feed(b"\x55\xaa\x13") + core.feed(b"\x37\x00" + good[:5]) + core.feed(good[5:])
    frames = FrameDecoder().feed(out)
    assert [f.kind for f in frames] == [FrameKind.REPLY]
    assert core.errors == 1
    # A bad CRC on a command frame: NAK 1 with its seq.
    packet = LinkFrame(FrameKind.COMMAND, 4, p1451.query_teds(0, 1).to_bytes()).to_packet()
    bad = cobs.encode(packet[:-1] + bytes((packet[-1] ^ 0xFF,))) + b"\x00"
    assert _nak(FrameDecoder().feed(core.feed(bad))[0]) == tc.NAK_CRC
    # Frames from the TIM side (REPLY kind) or another version are ignored.
    assert core.feed(LinkFrame(FrameKind.REPLY, 5, b"").to_bytes()) == b""
    assert core.feed(cobs.encode(b"\x21\x05\x00\x00") + b"\x00") == b""
    # An over-long run without a delimiter is dropped whole, then the link resyncs.
    assert core.feed(b"\x01" * (tc.MAX_ENCODED + 10)) == b""
    assert core.feed(b"\x01\x00") == b""
    assert _reply(FrameDecoder().feed(core.feed(good))[0]).success


# --- fuzzing: no parser ever raises ----------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_feed_never_raises(chunks: list[bytes]) -> None:
    core = Bench().core
    for chunk in chunks:
        out = core.feed(chunk)
        assert isinstance(out, bytes)
        FrameDecoder().feed(out)  # whatever the TIM sends is well-formed TLF-1


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80), st.integers(0, 255))
def test_parsers_never_raise(data: bytes, seq: int) -> None:
    tc.cobs_decode(data)
    tc.parse_packet(data)
    tc.parse_command(data)
    core = Bench().core
    kind, _ = core.execute(data)
    assert kind in (tc.KIND_REPLY, tc.KIND_ACK, tc.KIND_NAK)
    # Any payload in a valid frame gets exactly one answer with the same seq.
    frames = FrameDecoder().feed(core.feed(LinkFrame(FrameKind.COMMAND, seq, data).to_bytes()))
    assert len(frames) == 1
    assert frames[0].seq == seq


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 3),
    st.sampled_from([0, 1, 2, 3, 4, 7, 9]),
    st.integers(0, 16),
    st.binary(max_size=12),
)
def test_commands_never_raise(channel: int, cmd_class: int, function: int, args: bytes) -> None:
    bench = Bench()
    bench.core.execute(p1451.Command(0xFFFF, 4, 1).to_bytes())
    kind, _ = bench.core.execute(tc.build_command(channel, cmd_class, function, args))
    assert kind in (tc.KIND_REPLY, tc.KIND_ACK, tc.KIND_NAK)


# --- MicroPython compatibility ---------------------------------------------------------------

_FORBIDDEN_MODULES = {"dataclasses", "enum", "typing", "abc", "__future__", "functools"}


def _guarded_imports(tree: ast.Module) -> set[int]:
    """Line numbers of imports inside ``try: ... except ImportError``."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try):
            for inner in node.body:
                for sub in ast.walk(inner):
                    if isinstance(sub, ast.Import | ast.ImportFrom):
                        lines.add(sub.lineno)
    return lines


@pytest.mark.parametrize("name", ["tim_core.py", "main.py"])
def test_micropython_constructs(name: str) -> None:
    tree = ast.parse((FIRMWARE / name).read_text(encoding="utf-8"))
    guarded = _guarded_imports(tree)
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
            )
            for module in modules:
                if module.split(".")[0] in _FORBIDDEN_MODULES and node.lineno not in guarded:
                    problems.append(f"{node.lineno}: imports {module}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            attr = node.func.attr
            if attr in ("to_bytes", "from_bytes") and node.keywords:
                problems.append(f"{node.lineno}: keyword arguments to {attr}")
            if attr in ("hex", "fromhex", "clear"):
                problems.append(f"{node.lineno}: .{attr}() (missing or partial in MicroPython)")
        elif isinstance(node, ast.Match):
            problems.append(f"{node.lineno}: match statement")
        elif isinstance(node, ast.arg | ast.AnnAssign) and node.annotation is not None:
            problems.append(f"{node.lineno}: annotation")
        elif isinstance(node, ast.FunctionDef) and node.returns is not None:
            problems.append(f"{node.lineno}: return annotation")
        elif isinstance(node, ast.ClassDef) and node.decorator_list:
            problems.append(f"{node.lineno}: class decorator (dataclass?)")
    assert not problems, problems


def test_main_py_needs_micropython() -> None:
    with pytest.raises(ImportError, match="machine"):
        _load("main")


def test_main_py_teds_with_fake_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """main.py's TIM description, run against a stub ``machine`` module."""
    led_state = [0]

    class Pin:
        OUT = 1

        def __init__(self, _name: object, _mode: int | None = None) -> None:
            pass

        def value(self, new: int | None = None) -> int:
            if new is not None:
                led_state[0] = new
            return led_state[0]

    class ADC:
        def __init__(self, _channel: int) -> None:
            pass

        def read_u16(self) -> int:
            return round(0.706 / 3.3 * 65535)  # 27 °C

    machine = types.ModuleType("machine")
    machine.Pin = Pin  # type: ignore[attr-defined]
    machine.ADC = ADC  # type: ignore[attr-defined]
    machine.unique_id = lambda: b"\xe6\x61\x41\x04\x03\x2f\x2b\x28"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "machine", machine)
    monkeypatch.setitem(sys.modules, "tim_core", tc)
    main = _load("main")
    core = main.make_core()
    meta = MetaTeds.from_bytes(core.teds[0][tc.TEDS_META])
    assert meta.max_chan == 2
    assert ChannelTeds.from_bytes(core.teds[1][tc.TEDS_CHANNEL]).phy_units.is_kelvin
    assert main.read_temperature() == pytest.approx(300.15, abs=0.1)
    main.write_led(1.0)
    assert main.read_led() == 1.0


# --- over a real pty, against the NCAP driver ----------------------------------------------

Mangle = Callable[[bytes], bytes]


class PtyTim:
    """Serves a TimCore on a pty master fd from the running event loop.

    ``mangle_in`` / ``mangle_out`` are one-shot filters for the next chunk read from the
    NCAP / the next answer written to it.  ``answers`` records every frame the TIM sent.
    """

    def __init__(self, core: Any) -> None:
        self.core = core
        master, slave = os.openpty()
        tty.setraw(master)
        tty.setraw(slave)
        self.master, self.slave = master, slave
        self.path = os.ttyname(slave)
        self.mangle_in: list[Mangle] = []
        self.mangle_out: list[Mangle] = []
        self.answers: list[LinkFrame] = []
        self._decoder = FrameDecoder()
        os.set_blocking(master, False)
        asyncio.get_running_loop().add_reader(master, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.master, 4096)
        except OSError:
            return
        if self.mangle_in:
            data = self.mangle_in.pop(0)(data)
        answer = self.core.feed(data)
        if not answer:
            return
        self.answers += self._decoder.feed(answer)
        if self.mangle_out:
            answer = self.mangle_out.pop(0)(answer)
        os.write(self.master, answer)

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.master)
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
async def served() -> AsyncIterator[tuple[Bench, PtyTim, SerialTim]]:
    bench = Bench(max_segment=16)  # small segments exercise the driver's read loop
    server = PtyTim(bench.core)
    tim = SerialTim(SerialSettings(server.path))
    await tim.open()
    try:
        yield bench, server, tim
    finally:
        await tim.close()
        server.close()


def _corrupt_crc(data: bytes) -> bytes:
    frame = LinkFrame.from_bytes(data)
    packet = frame.to_packet()
    return cobs.encode(packet[:-1] + bytes((packet[-1] ^ 0x5A,))) + b"\x00"


@pytest.mark.integration
async def test_driver_discovers_reads_writes(
    served: tuple[Bench, PtyTim, SerialTim],
) -> None:
    bench, _server, tim = served
    info = await asyncio.wait_for(tim.discover(), 10)
    assert info.name == "bench-tim"
    assert info.uuid == UUID
    assert [(c.number, c.name, c.kind, c.unit) for c in info.channels] == [
        (1, "temperature", ChannelKind.SENSOR, "°C"),
        (2, "led", ChannelKind.ACTUATOR, ""),
    ]
    temperature = info.channels[0]
    assert (temperature.low_limit, temperature.high_limit) == (-40, 85)
    sample = await asyncio.wait_for(tim.read(1), 5)
    assert (sample.value, sample.unit) == (pytest.approx(21.5, abs=1e-4), "°C")
    bench.kelvin = 250.0
    assert (await tim.read(1)).value == pytest.approx(-23.15, abs=1e-4)
    await asyncio.wait_for(tim.write(2, 1.0), 5)
    assert bench.written == [1.0]
    assert (await tim.read(2)).value == 1.0
    await tim.write(2, 0.0)
    assert bench.written == [1.0, 0.0]


@pytest.mark.integration
async def test_driver_survives_noise_corruption_and_replays(
    served: tuple[Bench, PtyTim, SerialTim],
) -> None:
    bench, server, tim = served
    core = bench.core
    await asyncio.wait_for(tim.discover(), 10)

    # Terminated noise before a command, noise towards the NCAP before the answer.
    server.mangle_in.append(lambda data: b"\x13\x37\xfe\x00" + data)
    server.mangle_out.append(lambda data: b"\x42\x99\x07\x00" + data)
    assert (await tim.read(1)).value == pytest.approx(21.5, abs=1e-4)
    errors = core.errors
    assert errors >= 1

    # Unterminated noise glued to a command: the frame is lost, the driver times out
    # (OHoldOff 0.2 s) and resends with the same seq.
    server.mangle_in.append(lambda data: b"\xff\xfe\xfd" + data)
    assert (await tim.read(1)).value == pytest.approx(21.5, abs=1e-4)
    assert core.errors > errors

    # A command with a bad CRC: the TIM NAKs reason 1, the driver resends.
    server.mangle_in.append(_corrupt_crc)
    await tim.write(2, 1.0)
    assert any(f.kind is FrameKind.NAK and f.payload == b"\x01" for f in server.answers)
    assert bench.written == [1.0]

    # The TIM's ACK to a write is lost: the driver resends the same seq, the TIM replays
    # its last answer and the actuator is not written twice.
    replays = core.replays
    server.mangle_out.extend(
        [lambda data: b"", lambda data: b""]
    )  # Operate's ACK, then the write's
    await tim.write(2, 0.0)
    assert core.replays == replays + 2
    assert bench.written == [1.0, 0.0]

    # A busy TIM (NAK 3) is retried by the driver until it gives up, saying why.
    core.busy = True
    with pytest.raises(CommandFailed) as refused:
        await tim.write(2, 1.0)
    assert refused.value.reason == 3
    core.busy = False
    assert bench.written == [1.0, 0.0]
    assert (await tim.read(1)).value == pytest.approx(21.5, abs=1e-4)


# --- soak: the firmware core over a pty that corrupts and drops -------------------------------

FIRMWARE_SOAK_SECONDS = float(os.environ.get("FIRMWARE_SOAK_SECONDS", "10"))
SOAK_CORRUPT = 0.01  # per octet the firmware sends
SOAK_DROP = 0.01  # per frame the firmware receives
MAX_FAILED_IN_A_ROW = 3
_READ_DATA_SET = p1451.read_data_set(0)


class FaultyPtyTim(PtyTim):
    """A PtyTim that drops received frames and corrupts sent octets, and counts both.

    Received octets are cut into whole frames at their delimiters (the NCAP's side is not
    corrupted, so every frame it sends arrives whole); each is dropped with probability
    ``drop`` or fed to the core alone, so each answer belongs to one known command.

    A *reading* is the reply to one executed Read data-set segment command (a replay of it
    is the same reading).  It is *delivered* when one transmission of it left with no
    corrupted octet and the octet sent just before it (the previous frame's delimiter) was
    intact too: the NCAP's decoder is then in sync at its start and must decode it.
    """

    def __init__(self, core: Any, seed: int) -> None:
        super().__init__(core)
        self.random = random.Random(seed)
        self.drop = 0.0
        self.corrupt = 0.0
        self.stats: collections.Counter[str] = collections.Counter()
        self._pending = b""
        self._in_sync = True  # the last octet sent was an intact delimiter
        self._reading: list[bool] | None = None  # [delivered] of the last executed reply

    def _readable(self) -> None:
        try:
            data = os.read(self.master, 4096)
        except OSError:
            return
        *frames, self._pending = (self._pending + data).split(b"\x00")
        out = bytearray()
        for encoded in frames:
            if not encoded:
                continue
            self.stats["frames_received"] += 1
            if self.drop and self.random.random() < self.drop:
                self.stats["frames_dropped"] += 1
                continue
            out += self._answer(encoded + b"\x00")
        if out:
            os.write(self.master, bytes(out))

    def _answer(self, wire: bytes) -> bytes:
        replays = self.core.replays
        answer = self.core.feed(wire)
        if not answer:
            return b""
        if self.core.replays == replays:  # executed: a new answer
            self._reading = [False] if self._is_reading(wire, answer) else None
        else:
            self.stats["replays"] += 1
        out = bytearray(answer)
        flipped = 0
        for index in range(len(out)):
            if self.corrupt and self.random.random() < self.corrupt:
                out[index] ^= self.random.randrange(1, 256)
                flipped += 1
        intact = flipped == 0 and self._in_sync
        self._in_sync = out[-1] == 0
        self.stats["frames_sent"] += 1
        if flipped:
            self.stats["frames_corrupted"] += 1
            self.stats["octets_corrupted"] += flipped
        if self._reading is not None:
            if self.core.replays == replays:
                self.stats["readings_sent"] += 1
            if not intact:
                self.stats["reading_transmissions_not_intact"] += 1
            elif not self._reading[0]:
                self._reading[0] = True
                self.stats["readings_delivered"] += 1
        return bytes(out)

    @staticmethod
    def _is_reading(command: bytes, answer: bytes) -> bool:
        """A successful reply to a Read data-set segment command."""
        asked = LinkFrame.from_bytes(command).payload
        frame = LinkFrame.from_bytes(answer)
        return (
            frame.kind is FrameKind.REPLY
            and frame.payload[:1] != b"\x00"
            and asked[2:4] == _READ_DATA_SET.to_bytes()[2:4]
        )


def _longest_failure_run(outcomes: list[bool]) -> int:
    longest = run = 0
    for ok in outcomes:
        run = 0 if ok else run + 1
        longest = max(longest, run)
    return longest


@pytest.mark.integration
@pytest.mark.timeout(FIRMWARE_SOAK_SECONDS + 60)
async def test_firmware_corruption_soak() -> None:
    """SerialTim reads continuously from the firmware core over a faulty pty.

    Asserted: every read gives a Sample of the channel asked or raises a TimError; faults
    really happened; no more than MAX_FAILED_IN_A_ROW reads fail in a row and the last
    read succeeds; and ``readings_delivered <= samples <= readings_sent``.  The lower
    bound holds because the core answers at once (well inside the driver's reply timeout)
    and a delivered reply is decoded by a receiver in sync; each read yields at most one
    sample, from one reading, so a sample beyond the delivered ones needs a reading whose
    every transmission was not intact.
    """
    bench = Bench()
    server = FaultyPtyTim(bench.core, seed=21451)
    samples = 0
    outcomes: list[bool] = []  # one per read: True = sample
    errors: collections.Counter[str] = collections.Counter()
    try:
        async with SerialTim(SerialSettings(server.path)) as tim:
            # Discovery reads the TEDS; the soak is about the steady state, so the
            # faults start afterwards.
            info = await asyncio.wait_for(tim.discover(), 10)
            await tim.write(2, 1.0)  # the actuator reads back what was written
            server.drop, server.corrupt = SOAK_DROP, SOAK_CORRUPT
            numbers = [channel.number for channel in info.channels]

            async def read_once() -> None:
                nonlocal samples
                number = numbers[len(outcomes) % len(numbers)]
                try:
                    sample = await tim.read(number)
                except TimError as err:
                    errors[type(err).__name__] += 1
                    outcomes.append(False)
                    return
                assert isinstance(sample, Sample)
                assert sample.channel == number
                assert sample.value == pytest.approx(21.5 if number == 1 else 1.0, abs=1e-4)
                samples += 1
                outcomes.append(True)

            deadline = time.monotonic() + FIRMWARE_SOAK_SECONDS
            while time.monotonic() < deadline:
                await read_once()
            # Past the deadline, read on until a read succeeds (bounded): the link is up.
            for _ in range(MAX_FAILED_IN_A_ROW + 1):
                if outcomes[-1]:
                    break
                await read_once()
    finally:
        server.close()
    stats = server.stats
    print(
        f"\nfirmware soak {FIRMWARE_SOAK_SECONDS:g} s: {len(outcomes)} reads, "
        f"{samples} samples, errors {dict(errors)}, harness {dict(stats)}, "
        f"core errors {bench.core.errors} replays {bench.core.replays}"
    )
    assert stats["frames_corrupted"] > 0
    assert stats["frames_dropped"] > 0
    assert samples > 0
    assert _longest_failure_run(outcomes) <= MAX_FAILED_IN_A_ROW
    assert outcomes[-1], "the last read failed: the link stayed down"
    assert samples >= stats["readings_delivered"]
    assert samples - stats["readings_delivered"] <= stats["reading_transmissions_not_intact"]
    assert samples <= stats["readings_sent"]
