"""Pseudo-terminal helpers for the tim_drivers tests (not a test module)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from tim_drivers.codec.framing import FrameDecoder, LinkFrame


@dataclass
class RawPty:
    master: int
    slave: int

    @property
    def path(self) -> str:
        return os.ttyname(self.slave)

    def close_master(self) -> None:
        if self.master >= 0:
            os.close(self.master)
            self.master = -1


@contextlib.contextmanager
def open_raw_pty() -> Iterator[RawPty]:
    """A raw pty pair.  The slave fd stays open so the master never sees EIO early."""
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    pair = RawPty(master, slave)
    try:
        yield pair
    finally:
        pair.close_master()
        os.close(slave)


Responder = Callable[[LinkFrame], bytes]


class ScriptedTim:
    """A fake TIM on the pty master: every received frame is recorded and passed to
    ``respond``, whose octets are written back."""

    def __init__(self, pair: RawPty, respond: Responder) -> None:
        self.pair = pair
        self.respond = respond
        self.received: list[LinkFrame] = []
        self.got_frame = asyncio.Event()
        self._decoder = FrameDecoder()
        os.set_blocking(pair.master, False)
        asyncio.get_running_loop().add_reader(pair.master, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.pair.master, 4096)
        except OSError:
            self.stop()
            return
        for frame in self._decoder.feed(data):
            self.received.append(frame)
            self.got_frame.set()
            answer = self.respond(frame)
            if answer and self.pair.master >= 0:
                os.write(self.pair.master, answer)

    def stop(self) -> None:
        if self.pair.master >= 0:
            asyncio.get_running_loop().remove_reader(self.pair.master)
