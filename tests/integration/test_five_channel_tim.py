"""A simulated TIM with five channels is discovered and served over XEP-0323 through Prosody,
each value in its SI display unit and within the range its TEDS declares."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import pytest

from integration.conftest import TIMEOUT
from ncap.app import Gateway
from ncap.config import load_config
from ncap.demo import simulated_tims, write_config
from ncap.rig.prosody import PrivateProsody
from ncap.xmpp.connection import SecureClient
from ncap.xmpp.services import SOURCE_ID
from xep.xep_0323.model import NodeRef

pytestmark = pytest.mark.integration


async def test_five_channels_with_si_values_through_prosody() -> None:
    with tempfile.TemporaryDirectory(prefix="ncap-weather-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)  # Prosody runs as its own user below it
        async with contextlib.AsyncExitStack() as stack:
            prosody = PrivateProsody(workdir / "prosody")
            thing = prosody.register("thing")
            owner = prosody.register("owner")
            prosody.make_friends(thing, owner)
            prosody.start()
            stack.callback(prosody.stop)
            ports = await simulated_tims(stack, workdir, {"weather": "weather.toml"})
            gateway = Gateway(load_config(write_config(workdir, prosody, thing, ports)))
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
                thing_jid, nodes=[NodeRef("weather")], timeout=TIMEOUT
            )
            (node,) = readout.fields
            # The simulator's waveforms (hardware/tims/weather.toml) in display units: kelvin
            # shown as °C, ratio as %; a missed conversion lands far outside these bands.
            expected = {
                "air-temperature": ("°C", 8.0, 16.0),
                "relative-humidity": ("%", 58.0, 82.0),
                "barometric-pressure": ("Pa", 100900.0, 101700.0),
                "wind-speed": ("m/s", 1.0, 8.0),
                "illuminance": ("lx", 1000.0, 59000.0),
            }
            assert {f.name: f.unit for f in node.fields} == {k: v[0] for k, v in expected.items()}
            for field in node.fields:
                _unit, low, high = expected[field.name]
                assert low <= float(field.value) <= high, (field.name, field.value)
            channels = await client.concentrator.get_child_nodes(
                thing_jid, NodeRef("weather", SOURCE_ID), timeout=TIMEOUT
            )
            assert len(channels) == 5
            for channel in channels:
                info = await client.concentrator.get_node(
                    thing_jid, channel.ref, parameters=True, timeout=TIMEOUT
                )
                name = info.node_id.split("/", 1)[1]
                field = next(f for f in node.fields if f.name == name)
                assert field.unit == info.parameter("unit").value
                low = float(info.parameter("low").value)
                high = float(info.parameter("high").value)
                assert low <= float(field.value) <= high, (name, field.value, low, high)
