"""A wire-timed Modbus RTU multi-drop simulator for benchmarks (its own process, one pty end).

A pty delivers a frame at once and carries no parity, so this simulator models the wire:

* ``Wire`` holds the line's framing (baud, bits per character) and gives a frame's wire
  time (``n * bits / baud``) and the RTU inter-frame silence t3.5 (3.5 characters, fixed
  1.75 ms above 19200 baud).
* A request that arrives sooner than t3.5 after the end of the previous frame on the line
  (any direction) is what the other drops on a real bus would misread: it is ignored and
  counted.
* Otherwise the reply is written when it would *end* on a real wire::

      arrival + request wire time + t3.5 (the slave sees the end of the frame)
              + turnaround + reply wire time

* It answers FC 1/2/3/4 for each slave id in its register images (exception 02 outside
  them); a dead slave id never answers; other ids are other drops' business (silent).
* Every frame on the line is logged: (direction, slave, function, octets, wire start,
  wire end, ignored), on the shared monotonic clock, and handed back at the end.

Run it with :func:`serve` in a ``multiprocessing`` process; stop it through ``stop``.
"""

from __future__ import annotations

import dataclasses
import os
import select
import struct
import termios
import time
import tty
from collections.abc import Mapping
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event

FIXED_SILENCE_S = 0.00175
SPIN_S = 0.0003  # busy-wait the last part of a deadline, time.sleep is coarser


def crc16(data: bytes) -> int:
    """CRC-16/Modbus (poly 0xA001 reflected, init 0xFFFF)."""
    crc = 0xFFFF
    for octet in data:
        crc ^= octet
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<H", crc16(body))


@dataclasses.dataclass(frozen=True, slots=True)
class Wire:
    baud: int
    bits: int  # per character: 10 for 8N1, 11 for 8E1

    def time(self, octets: int) -> float:
        return octets * self.bits / self.baud

    @property
    def silence(self) -> float:
        return FIXED_SILENCE_S if self.baud > 19200 else 3.5 * self.bits / self.baud


@dataclasses.dataclass(frozen=True, slots=True)
class Frame:
    direction: str  # "req" or "rsp"
    slave: int
    function: int
    octets: int
    start: float  # on the modelled wire, monotonic seconds
    end: float
    ignored: bool = False
    idle_before: float = 0.0  # idle line time before a request (s)


@dataclasses.dataclass(slots=True)
class SlaveImage:
    registers: dict[int, int]  # holding and input registers share one image
    bits: dict[int, bool]


def _wait_until(deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining > SPIN_S:
        time.sleep(remaining - SPIN_S)
    while time.monotonic() < deadline:
        pass


def _reply(image: SlaveImage, slave: int, function: int, address: int, count: int) -> bytes:
    if function in (1, 2):
        if not 1 <= count <= 2000 or any(
            a not in image.bits for a in range(address, address + count)
        ):
            return with_crc(bytes((slave, function | 0x80, 2)))
        data = bytearray((count + 7) // 8)
        for i in range(count):
            if image.bits[address + i]:
                data[i // 8] |= 1 << (i % 8)
        return with_crc(bytes((slave, function, len(data))) + bytes(data))
    regs = range(address, address + count)
    if not 1 <= count <= 125 or any(a not in image.registers for a in regs):
        return with_crc(bytes((slave, function | 0x80, 2)))
    payload = b"".join(struct.pack(">H", image.registers[a]) for a in regs)
    return with_crc(bytes((slave, function, len(payload))) + payload)


def open_raw(path: str) -> int:
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    tty.setraw(fd)
    attrs = termios.tcgetattr(fd)
    attrs[3] &= ~termios.ECHO
    termios.tcsetattr(fd, termios.TCSANOW, attrs)
    return fd


def serve(
    port: str | int,
    wire: Wire,
    slaves: Mapping[int, SlaveImage],
    dead: frozenset[int],
    turnaround_s: float,
    stop: Event,
    ready: Event,
    results: Connection,
) -> None:
    """Serve requests on ``port`` (a device path, or an open pty master's fd) until ``stop``
    is set; send the frame log to ``results``."""
    if isinstance(port, int):
        fd = port
        tty.setraw(fd)
        os.set_blocking(fd, False)
    else:
        fd = open_raw(port)
    frames: list[Frame] = []
    buffer = b""
    line_end = 0.0  # end of the last frame on the modelled wire
    resyncs = 0
    ready.set()
    try:
        while not stop.is_set():
            readable, _, _ = select.select([fd], [], [], 0.05)
            if not readable:
                continue
            arrived = time.monotonic()
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:
                continue
            buffer += chunk
            while len(buffer) >= 8:
                body = buffer[:8]
                if body[1] not in (1, 2, 3, 4) or crc16(body) != 0:
                    buffer = buffer[1:]  # not a read request: slide to resynchronise
                    resyncs += 1
                    continue
                buffer = buffer[8:]
                slave, function, address, count = struct.unpack(">BBHH", body[:6])
                idle = arrived - line_end
                req_end = arrived + wire.time(8)
                ignored = idle < wire.silence
                frames.append(Frame("req", slave, function, 8, arrived, req_end, ignored, idle))
                line_end = req_end
                if ignored or slave in dead or slave not in slaves:
                    continue
                reply = _reply(slaves[slave], slave, function, address, count)
                reply_end = req_end + wire.silence + turnaround_s + wire.time(len(reply))
                _wait_until(reply_end)
                os.write(fd, reply)
                written = time.monotonic()
                frames.append(
                    Frame(
                        "rsp",
                        slave,
                        function,
                        len(reply),
                        reply_end - wire.time(len(reply)),
                        written,
                    )
                )
                line_end = written
                arrived = written  # bytes already in the buffer arrived no sooner than now
    finally:
        os.close(fd)
        results.send((frames, resyncs))
        results.close()
