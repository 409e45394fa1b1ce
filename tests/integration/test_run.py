"""`ncap run --config FILE` as its own process: serves readouts, stops cleanly on SIGTERM,
and says clearly when the server's certificate is not trusted."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from integration.proc import line_with, readline_within
from ncap.demo import find_profile, write_config
from ncap.reader import session_with
from ncap.rig.pki import make_ca
from ncap.rig.prosody import Account, PrivateProsody
from ncap.rig.pty import PtyPair
from xep.xep_0323.model import NodeRef

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 30.0


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[PrivateProsody, Account, Account, PtyPair, Path]]:
    with tempfile.TemporaryDirectory(prefix="ncap-run-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)  # Prosody runs as its own user below it
        with PrivateProsody(workdir / "prosody") as prosody, PtyPair(workdir / "pty") as pty:
            thing = prosody.register("thing")
            owner = prosody.register("owner")
            prosody.make_friends(thing, owner)
            yield prosody, thing, owner, pty, workdir


def _start(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ncap", "run", "--config", str(config)],
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


def _stop(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=TIMEOUT)


async def test_run_serves_readouts_and_stops_on_sigterm(
    server: tuple[PrivateProsody, Account, Account, PtyPair, Path],
) -> None:
    prosody, thing, owner, pty, workdir = server
    simulator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tim_drivers.sim",
            "--port",
            str(pty.a_path),
            "--profile",
            str(find_profile("env-sensor.toml")),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert readline_within(simulator, TIMEOUT).strip() == "ready"
        gateway = _start(write_config(workdir, prosody, thing, {"env-sensor": pty.b_path}))
        try:
            # The bare JID is resolved through the thing's presence, and the first event
            # pushed for the TIM node says the TIM is up: no guessing how long either takes.
            connection = session_with(
                owner.jid,
                owner.password,
                thing.jid,
                ca_file=prosody.ca_file,
                server=prosody.host,
                port=prosody.c2s_port,
                timeout=TIMEOUT,
            )
            async with connection as (client, target):
                subscription = await client.events.subscribe(
                    target,
                    nodes=[NodeRef("env-sensor")],
                    initial_readout=False,
                    timeout=TIMEOUT,
                )
                await subscription.next(TIMEOUT)
                await subscription.cancel(TIMEOUT)
                readout = await client.sensordata.request_readout(target, timeout=TIMEOUT)
            assert {f.name for node in readout.fields for f in node.fields} == {
                "temperature",
                "humidity",
                "pressure",
            }
        finally:
            assert _stop(gateway) == 0
    finally:
        simulator.terminate()
        simulator.wait(timeout=TIMEOUT)


async def test_run_with_an_untrusted_ca_says_so(
    server: tuple[PrivateProsody, Account, Account, PtyPair, Path],
) -> None:
    prosody, thing, _owner, pty, workdir = server
    config = write_config(workdir, prosody, thing, {"env-sensor": pty.b_path})
    other = make_ca(Path(tempfile.mkdtemp(prefix="ncap-other-ca-")))
    text = config.read_text().replace(str(prosody.ca_file), str(other.cert))
    config.write_text(text)
    gateway = _start(config)
    try:
        assert gateway.stderr is not None
        line = await asyncio.to_thread(line_with, gateway.stderr, "not trusted", TIMEOUT)
        assert f"not trusted by the CA in {other.cert}" in line
    finally:
        _stop(gateway)
