"""TLF-1 request/response link to one TIM over a serial port (pyserial-asyncio-fast).

One :class:`TimLink` per serial port.  It owns the sequence numbers, allows one
outstanding command at a time, waits for the matching REPLY/ACK/NAK, retries with the
same sequence number on timeout (the TIM replays its last reply for a duplicate), and
hands TIM-initiated messages to a callback.  This is the only layer that retries.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

import serial
import serial.rs485
import serial_asyncio_fast

from tim_drivers.codec import p1451
from tim_drivers.codec.framing import FrameDecoder, FrameKind, LinkFrame
from tim_drivers.errors import (
    CommandFailed,
    FrameError,
    TimTimeout,
    TimUnavailable,
    UnexpectedReply,
)

_LOGGER = logging.getLogger(__name__)

DEFAULT_RETRIES = 3
MAX_TIMEOUT = 30.0  # seconds; no single wait in this module is longer
OPEN_TIMEOUT = 5.0
CLOSE_TIMEOUT = 2.0
STALE_PARTIAL_FRAME = 0.1  # seconds; a partial frame older than this is dropped (§12.2)
_RETRYABLE_NAKS = frozenset({p1451.NakReason.CRC, p1451.NakReason.BUSY})

TimInitiatedCallback = Callable[[p1451.TimInitiated], None]
LostCallback = Callable[[Exception | None], None]
# Pause before retrying a command the TIM refused as busy or garbled (grows per attempt).
NAK_BACKOFF_S = 0.01


@dataclass(frozen=True, slots=True)
class SerialSettings:
    """How to open the port.  ``rs485`` switches on kernel RS-485 mode (RTS driven by
    the driver); pseudo-terminals and most USB dongles must leave it off."""

    port: str
    baudrate: int = 115200
    bytesize: int = 8
    parity: str = "N"
    stopbits: float = 1
    rs485: bool = False


class _Protocol(asyncio.Protocol):
    def __init__(self, link: TimLink) -> None:
        self._link = link

    def data_received(self, data: bytes) -> None:
        self._link._on_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._link._on_connection_lost(exc)


class TimLink:
    """A TLF-1 link to one TIM.  Use ``await open()`` / ``await close()``."""

    def __init__(
        self,
        settings: SerialSettings,
        *,
        on_tim_initiated: TimInitiatedCallback | None = None,
        on_lost: LostCallback | None = None,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        """``on_lost`` is called when the port goes away by itself (a USB adapter unplugged),
        not when :meth:`close` closes it."""
        self.settings = settings
        self._on_tim_initiated = on_tim_initiated
        self.on_lost = on_lost
        self._retries = retries
        self._decoder = FrameDecoder()
        self._lock = asyncio.Lock()
        self._transport: asyncio.Transport | None = None
        self._closed: asyncio.Future[None] | None = None
        self._pending: tuple[int, asyncio.Future[LinkFrame]] | None = None
        self._closing = False
        self.stale_frames = 0
        """Answers that matched no outstanding command (late, duplicated, wrong seq)."""
        self._last_rx = 0.0
        # A random start makes a stale "replay last reply" after an NCAP restart unlikely.
        self._seq = random.randrange(256)

    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    @property
    def decode_errors(self) -> int:
        """Frames dropped by the decoder (noise, CRC errors) since the link was created."""
        return self._decoder.errors

    async def open(self) -> None:
        if self.is_open:
            return
        loop = asyncio.get_running_loop()
        settings = self.settings
        try:
            async with asyncio.timeout(OPEN_TIMEOUT):
                transport, _ = await serial_asyncio_fast.create_serial_connection(
                    loop,
                    lambda: _Protocol(self),
                    settings.port,
                    baudrate=settings.baudrate,
                    bytesize=settings.bytesize,
                    parity=settings.parity,
                    stopbits=settings.stopbits,
                    exclusive=True,
                )
        except (serial.SerialException, OSError, ValueError) as err:
            raise TimUnavailable(f"cannot open {settings.port}: {err}") from err
        if settings.rs485:
            try:
                port = transport.serial
                if port is None:
                    raise ValueError("transport has no serial port")
                port.rs485_mode = serial.rs485.RS485Settings()
            except (serial.SerialException, OSError, ValueError) as err:
                self._closing = True  # our own close: not a vanished port
                transport.close()
                raise TimUnavailable(f"{settings.port}: RS-485 mode refused: {err}") from err
        self._transport = transport
        self._closed = loop.create_future()
        self._closing = False
        self._decoder.reset()
        _LOGGER.debug("port=%s opened", settings.port)

    async def close(self) -> None:
        transport, closed = self._transport, self._closed
        if transport is None or closed is None:
            return
        self._closing = True
        transport.close()
        try:
            await asyncio.wait_for(asyncio.shield(closed), CLOSE_TIMEOUT)
        except TimeoutError:
            _LOGGER.warning(
                "port=%s did not close within %.1f s", self.settings.port, CLOSE_TIMEOUT
            )
        self._transport = None

    async def request(
        self, command: p1451.Command, *, timeout: float, expect_reply: bool = True
    ) -> p1451.Reply | None:
        """Send ``command`` and wait for its answer.

        Returns the :class:`~p1451.Reply`, or ``None`` when ``expect_reply`` is false and
        the TIM acknowledged.  Raises :class:`CommandFailed` (failed reply or NAK),
        :class:`TimTimeout` after ``1 + retries`` silent attempts of ``timeout`` seconds,
        :class:`TimUnavailable` when the port is closed or lost, and
        :class:`UnexpectedReply` for an ACK where a reply was expected.
        """
        if not 0 < timeout <= MAX_TIMEOUT:
            raise ValueError(f"timeout {timeout} outside (0, {MAX_TIMEOUT}]")
        async with self._lock:
            refused: LinkFrame | None = None
            seq, wire = self._next_frame(command)
            for attempt in range(1 + self._retries):
                answer = await self._exchange(seq, wire, timeout)
                if answer is None:
                    _LOGGER.debug(
                        "port=%s seq=%d attempt %d timed out", self.settings.port, seq, attempt + 1
                    )
                    continue
                if (
                    answer.kind is FrameKind.NAK
                    and answer.payload[:1]
                    and (answer.payload[0] in _RETRYABLE_NAKS)
                ):
                    _LOGGER.debug(
                        "port=%s seq=%d NAK %d, retrying",
                        self.settings.port,
                        seq,
                        answer.payload[0],
                    )
                    # The command was not executed: retry after a pause (a busy TIM needs
                    # one), under a fresh seq so that no replayed NAK answers it.
                    refused = answer
                    await asyncio.sleep(NAK_BACKOFF_S * (attempt + 1))
                    seq, wire = self._next_frame(command)
                    continue
                return self._interpret(command, answer, expect_reply)
            if refused is not None:
                return self._interpret(command, refused, expect_reply)
            raise TimTimeout(
                f"port={self.settings.port}: no answer to {command.cmd_class}/{command.function}"
                f" ch={command.channel} after {1 + self._retries} attempts of {timeout:.2f} s"
            )

    def _next_frame(self, command: p1451.Command) -> tuple[int, bytes]:
        seq = self._seq
        self._seq = (self._seq + 1) & 0xFF
        return seq, LinkFrame(FrameKind.COMMAND, seq, command.to_bytes()).to_bytes()

    async def _exchange(self, seq: int, wire: bytes, timeout: float) -> LinkFrame | None:
        transport = self._transport
        if transport is None or transport.is_closing():
            raise TimUnavailable(f"port={self.settings.port} is not open")
        future: asyncio.Future[LinkFrame] = asyncio.get_running_loop().create_future()
        self._pending = (seq, future)
        try:
            transport.write(wire)
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
            # cancellation that arrives just as the reply does, and the caller never stops.
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            return None
        finally:
            self._pending = None

    @staticmethod
    def _interpret(
        command: p1451.Command, answer: LinkFrame, expect_reply: bool
    ) -> p1451.Reply | None:
        what = f"{command.cmd_class}/{command.function} ch={command.channel}"
        if answer.kind is FrameKind.NAK:
            reason = answer.payload[0] if answer.payload else None
            raise CommandFailed(f"{what}: NAK reason {reason}", reason=reason)
        if answer.kind is FrameKind.ACK:
            if expect_reply:
                raise UnexpectedReply(f"{what}: ACK where a reply was expected")
            return None
        reply = p1451.Reply.from_bytes(answer.payload)
        if not reply.success:
            raise CommandFailed(f"{what}: TIM replied failure", data=reply.data)
        return reply

    # --- protocol callbacks -----------------------------------------------------------

    def _on_data(self, data: bytes) -> None:
        now = asyncio.get_running_loop().time()
        if self._decoder.pending and now - self._last_rx > STALE_PARTIAL_FRAME:
            self._decoder.reset()
        self._last_rx = now
        for frame in self._decoder.feed(data):
            self._on_frame(frame)

    def _on_frame(self, frame: LinkFrame) -> None:
        if frame.kind is FrameKind.TIM_INITIATED:
            self._dispatch_tim_initiated(frame)
            return
        if frame.kind is FrameKind.COMMAND:
            _LOGGER.debug("port=%s ignoring COMMAND frame from the TIM", self.settings.port)
            return
        pending = self._pending
        if pending is None or pending[0] != frame.seq or pending[1].done():
            self.stale_frames += 1
            _LOGGER.debug("port=%s stale %s seq=%d", self.settings.port, frame.kind.name, frame.seq)
            return
        pending[1].set_result(frame)

    def _dispatch_tim_initiated(self, frame: LinkFrame) -> None:
        try:
            message = p1451.TimInitiated.from_bytes(frame.payload)
        except FrameError as err:
            _LOGGER.debug("port=%s bad TIM-initiated message: %s", self.settings.port, err)
            return
        if self._on_tim_initiated is None:
            _LOGGER.debug("port=%s TIM-initiated message ignored: %s", self.settings.port, message)
            return
        try:
            self._on_tim_initiated(message)
        except Exception:
            _LOGGER.exception("port=%s TIM-initiated callback failed", self.settings.port)

    def _on_connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            _LOGGER.warning("port=%s connection lost: %s", self.settings.port, exc)
        pending = self._pending
        if pending is not None and not pending[1].done():
            pending[1].set_exception(TimUnavailable(f"port={self.settings.port} lost: {exc}"))
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        self._transport = None
        if not self._closing and self.on_lost is not None:
            try:
                self.on_lost(exc)
            except Exception:
                _LOGGER.exception("port=%s on_lost callback failed", self.settings.port)
