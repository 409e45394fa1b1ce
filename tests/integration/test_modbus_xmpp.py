"""A Modbus TCP device (a real pymodbus server) served over XEP-0323 through Prosody like a TIM,
and its writable register controlled over XEP-0325 within the profile's write policy."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import pytest

from integration.conftest import TIMEOUT
from ncap.app import Gateway
from ncap.config import load_config
from ncap.demo import write_config
from ncap.rig.prosody import PrivateProsody
from ncap.xmpp.connection import SecureClient
from ncap.xmpp.services import SOURCE_ID
from xep.errors import ControlError
from xep.xep_0323.model import NodeRef
from xep.xep_0325.model import ControlValue

pytestmark = pytest.mark.integration

PEER_MODULE = Path(__file__).resolve().parents[1] / "modbus" / "modbus_peer.py"


def _peer_module() -> ModuleType:
    """The Modbus tests' server helper (tests/modbus is not a package)."""
    if "modbus_peer" in sys.modules:
        return sys.modules["modbus_peer"]
    spec = importlib.util.spec_from_file_location("modbus_peer", PEER_MODULE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["modbus_peer"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


async def test_modbus_device_is_served_like_a_tim() -> None:
    peers = _peer_module()
    store = peers.Store([1])
    store.put(1, "input", 1, [215, 452])  # XY-MD02: 21.5 °C, 45.2 %RH (i16 x 0.1)
    peer = await peers.start_tcp(store)
    with tempfile.TemporaryDirectory(prefix="ncap-modbus-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)  # Prosody runs as its own user below it
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(peers.stop, peer)
            prosody = PrivateProsody(workdir / "prosody")
            thing = prosody.register("thing")
            owner = prosody.register("owner")
            prosody.make_friends(thing, owner)
            prosody.start()
            stack.callback(prosody.stop)
            # No TIMs: only the Modbus climate sensor, as the demo configures it.
            config = write_config(workdir, prosody, thing, {}, modbus_port=peer.port)
            gateway = Gateway(load_config(config))
            await gateway.start()
            stack.push_async_callback(gateway.stop)
            await gateway.wait_ready(TIMEOUT)

            client = SecureClient(
                owner.jid,
                owner.password,
                ca_file=prosody.ca_file,
                server=prosody.host,
                port=prosody.c2s_port,
            )
            await client.start(TIMEOUT)
            stack.push_async_callback(client.disconnect, 1.0)
            thing_jid = gateway.client.boundjid
            readout = await client.sensordata.request_readout(
                thing_jid,
                nodes=[NodeRef("climate")],
                field_names=["temperature", "humidity"],
                timeout=TIMEOUT,
            )
            (node,) = readout.fields
            assert {(f.name, f.value, f.unit) for f in node.fields} == {
                ("temperature", "21.5", "°C"),
                ("humidity", "45.2", "%RH"),
            }
            # Packet inspection: a register the profile does not declare writable cannot
            # be written, whatever arrives over XMPP; nothing reaches the wire.
            before = len(peer.requests)
            with pytest.raises(ControlError):
                await client.control.set(
                    thing_jid,
                    [ControlValue.double("temperature", 30.0)],
                    nodes=[NodeRef("climate/temperature", SOURCE_ID)],
                    timeout=TIMEOUT,
                )
            assert all(r.function not in (5, 6, 15, 16) for r in peer.requests[before:])

            # A declared writable holding register is written, read back and verified.
            await client.control.set(
                thing_jid,
                [ControlValue.double("temperature_correction", -1.5)],
                nodes=[NodeRef("climate/temperature_correction", SOURCE_ID)],
                timeout=TIMEOUT,
            )
            assert store.get(1, "holding", 0x0103, 1) == [(-15) & 0xFFFF]
            writes = [r for r in peer.requests[before:] if r.function in (6, 16)]
            assert [w.address for w in writes] == [0x0103]
