"""Helpers for driving real processes from tests with bounded waits (no sleeps)."""

from __future__ import annotations

import os
import selectors
import subprocess
import time
from typing import TextIO


def readline_within(process: subprocess.Popen[str], timeout: float) -> str:
    """One line of the process's stdout, or AssertionError after *timeout* seconds."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise AssertionError(f"no output from {process.args!r} within {timeout} s")
    return process.stdout.readline()


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait for a process that is not our child to end (its pidfd becomes readable)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            return bool(selector.select(timeout))
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def line_with(stream: TextIO, needle: str, timeout: float) -> str:
    """The first line of *stream* containing *needle*, read within *timeout* seconds."""
    end = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        while (left := end - time.monotonic()) > 0 and selector.select(left):
            line = stream.readline()
            if not line:
                break
            if needle in line:
                return line
    raise AssertionError(f"no line with {needle!r} within {timeout} s")
