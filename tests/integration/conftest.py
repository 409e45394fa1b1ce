"""The integration rig: a private Prosody, the thing/owner/stranger accounts, and two simulated
TIMs (an environment sensor and a relay) on pseudo-terminal pairs; and a gateway serving them."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from integration.proc import readline_within
from ncap.app import Gateway
from ncap.config import load_config
from ncap.demo import DEMO_TIMS, find_profile, write_config
from ncap.rig.prosody import Account, PrivateProsody
from ncap.rig.pty import PtyPair
from ncap.xmpp.connection import SecureClient

TIMEOUT = 20.0
POLL_INTERVAL_S = 0.2


@dataclass
class Rig:
    prosody: PrivateProsody
    thing: Account
    owner: Account
    stranger: Account
    ports: dict[str, Path]
    workdir: Path

    def client(self, who: Account) -> SecureClient:
        return SecureClient(
            who.jid,
            who.password,
            ca_file=self.prosody.ca_file,
            server=self.prosody.host,
            port=self.prosody.c2s_port,
        )


def _simulator(stack: ExitStack, port: Path, profile: str) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tim_drivers.sim",
            "--port",
            str(port),
            "--profile",
            str(find_profile(profile)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    stack.callback(process.wait, 10)
    stack.callback(process.terminate)
    assert readline_within(process, TIMEOUT).strip() == "ready"


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    with tempfile.TemporaryDirectory(prefix="ncap-it-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        workdir.chmod(0o755)  # Prosody runs as its own user below it
        prosody = stack.enter_context(PrivateProsody(workdir / "prosody"))
        thing = prosody.register("thing")
        owner = prosody.register("owner")
        stranger = prosody.register("stranger")
        prosody.make_friends(thing, owner)
        ports = {}
        for name, profile in DEMO_TIMS.items():
            pty = stack.enter_context(PtyPair(workdir / f"pty-{name}"))
            _simulator(stack, pty.a_path, profile)
            ports[name] = pty.b_path
        yield Rig(prosody, thing, owner, stranger, ports, workdir)


@pytest.fixture
async def gateway(rig: Rig) -> AsyncIterator[Gateway]:
    config = load_config(
        write_config(
            rig.workdir, rig.prosody, rig.thing, rig.ports, poll_interval_s=POLL_INTERVAL_S
        )
    )
    gateway = Gateway(config)
    await gateway.start()
    try:
        await gateway.wait_ready(TIMEOUT)
        yield gateway
    finally:
        await gateway.stop()


@pytest.fixture
async def owner(rig: Rig) -> AsyncIterator[SecureClient]:
    async with _connected(rig, rig.owner) as client:
        yield client


@pytest.fixture
async def stranger(rig: Rig) -> AsyncIterator[SecureClient]:
    async with _connected(rig, rig.stranger) as client:
        yield client


class _connected:
    def __init__(self, rig: Rig, who: Account) -> None:
        self.client = rig.client(who)

    async def __aenter__(self) -> SecureClient:
        await self.client.start(TIMEOUT)
        self.client.send_presence()
        return self.client

    async def __aexit__(self, *_exc: object) -> None:
        await self.client.disconnect(wait=1.0)
