"""The socat pty pair: raw bytes both ways through pyserial, and stop by PID."""

from __future__ import annotations

import os

import pytest
import serial

from ncap.rig import PtyPair

pytestmark = pytest.mark.integration

TIMEOUT = 5.0
EVERY_BYTE = bytes(range(256))  # includes CR, LF, XON/XOFF, ^C: the line must be raw


def _open(path: os.PathLike[str]) -> serial.Serial:
    return serial.Serial(os.fspath(path), baudrate=115200, timeout=TIMEOUT)  # 8N1


def test_bytes_cross_in_both_directions(pty_pair: PtyPair) -> None:
    with _open(pty_pair.a_path) as a, _open(pty_pair.b_path) as b:
        a.write(EVERY_BYTE)
        assert b.read(len(EVERY_BYTE)) == EVERY_BYTE
        b.write(EVERY_BYTE[::-1])
        assert a.read(len(EVERY_BYTE)) == EVERY_BYTE[::-1]


def test_ends_can_be_reopened(pty_pair: PtyPair) -> None:
    for _ in range(3):
        with _open(pty_pair.a_path) as a, _open(pty_pair.b_path) as b:
            a.write(b"ping")
            assert b.read(4) == b"ping"


def test_stop_leaves_no_process() -> None:
    pair = PtyPair()
    pair.start()
    pid = pair.pid
    assert pid is not None
    assert pair.a_path.is_symlink()
    pair.stop()
    assert pair.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not pair.directory.exists()
    pair.stop()  # idempotent
