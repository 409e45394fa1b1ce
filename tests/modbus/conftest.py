"""Fixtures for the Modbus tests; the servers themselves live in :mod:`modbus_peer`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from modbus_peer import Peer, Store, start_tcp, stop

from ncap.rig import PtyPair


@pytest.fixture
async def tcp_peer() -> AsyncIterator[Peer]:
    """A Modbus/TCP server on 127.0.0.1 with slaves 1 and 2 (slave 9 is silent)."""
    peer = await start_tcp(Store([1, 2]))
    try:
        yield peer
    finally:
        await stop(peer)


@pytest.fixture
def modbus_pty() -> Iterator[PtyPair]:
    with PtyPair() as pair:
        yield pair
