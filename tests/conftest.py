"""Shared fixtures. Integration fixtures start real peers on loopback and stop them by PID."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ncap.rig import PrivateProsody, PtyPair


@pytest.fixture
def prosody_workdir() -> Iterator[Path]:
    """A work directory the ``prosody`` user can reach (pytest's ``tmp_path`` is root-only)."""
    with tempfile.TemporaryDirectory(prefix="ncap-prosody-") as workdir:
        yield Path(workdir)


@pytest.fixture
def prosody(prosody_workdir: Path) -> Iterator[PrivateProsody]:
    """A started private Prosody on 127.0.0.1 (domain ``ncap.test``), stopped afterwards."""
    server = PrivateProsody(prosody_workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pty_pair() -> Iterator[PtyPair]:
    """Two connected pseudo-terminals (``a_path`` <-> ``b_path``), joined by socat."""
    with PtyPair() as pair:
        yield pair
