"""Composition root: builds the TIM nodes and the thing's XMPP client, runs them, stops them."""

from __future__ import annotations

import asyncio
import functools
import logging

from ncap.config import Config, ModbusSection, read_secret
from ncap.errors import ConfigError, NcapError
from ncap.hardware import device_profile
from ncap.sensors import Reading, SensorTree, TimNode
from ncap.xmpp.thing import ThingClient
from tim_drivers.drivers.p1451_serial import SerialTim
from tim_drivers.errors import TimError
from tim_drivers.modbus.bus import ModbusBus, ModbusBusSettings
from tim_drivers.modbus.device import ModbusDevice
from tim_drivers.modbus.profile import load_profile
from tim_drivers.transport.serial_link import SerialSettings

_LOGGER = logging.getLogger(__name__)

STOP_TIMEOUT_S = 5.0


class Gateway:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._intervals: dict[str, float] = {}
        nodes = []
        for tim in config.tim:
            settings = SerialSettings(
                port=tim.port,
                baudrate=tim.baudrate,
                parity=tim.parity,
                stopbits=tim.stopbits,
                rs485=tim.rs485,
            )
            nodes.append(TimNode(tim.name, SerialTim(settings)))
            self._intervals[tim.name] = tim.poll_interval_s
        for index, section in enumerate(config.modbus):
            try:
                bus = ModbusBus(_bus_settings(section))
            except TimError as err:
                raise ConfigError(f"modbus[{index}]", str(err)) from err
            for number, device in enumerate(section.device):
                key = f"modbus[{index}].device[{number}].profile"
                try:
                    profile = load_profile(device_profile(device.profile))
                except (NcapError, TimError) as err:
                    raise ConfigError(key, str(err)) from err
                driver = ModbusDevice(bus, profile, slave_id=device.slave_id)
                nodes.append(TimNode(device.name, driver))
                self._intervals[device.name] = profile.poll_interval_s
        self.tree = SensorTree(nodes)
        xmpp = config.xmpp
        self.client = ThingClient(
            f"{xmpp.jid}/{xmpp.resource}",
            read_secret(xmpp.password_file),
            self.tree,
            gateway_id=config.gateway.name,
            ca_file=xmpp.ca_file,
            server=xmpp.server,
            port=xmpp.port,
            reconnect_max_s=xmpp.reconnect_max_s,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        intervals = self._intervals
        for node in self.tree.nodes():
            node.on_readings = functools.partial(self._report, node)
            self._tasks.append(loop.create_task(node.run(), name=f"tim-{node.node_id}"))
            self._tasks.append(
                loop.create_task(
                    self._poll(node, intervals[node.node_id]), name=f"poll-{node.node_id}"
                )
            )
        self.client.open()

    async def _poll(self, node: TimNode, interval: float) -> None:
        """Read the TIM every *interval* seconds and hand the readings to event subscribers."""
        while not self._stopping:
            await node.wait_ready(None)
            try:
                readings = await node.read()
            except NcapError as err:
                _LOGGER.debug("poll of %s failed: %s", node.node_id, err)
            else:
                self._report(node, readings)
            await asyncio.sleep(interval)

    def _report(self, node: TimNode, readings: list[Reading]) -> None:
        """Fresh readings of a TIM, polled or reported by the TIM, to event subscribers."""
        for fields in self.client.sensor_source.fields_of(node, readings):
            self.client.events.report(fields)

    async def wait_ready(self, timeout: float) -> None:
        """Wait until the XMPP session is up and every TIM has been discovered."""
        async with asyncio.timeout(timeout):
            await self.client.online.wait()
            for node in self.tree.nodes():
                await node.wait_ready(timeout)

    async def stop(self) -> None:
        self._stopping = True
        await self.client.stop()
        for task in self._tasks:
            task.cancel()
        done, stuck = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT_S)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                _LOGGER.error("task %s had failed", task.get_name(), exc_info=task.exception())
        for task in stuck:
            _LOGGER.error("task %s did not stop within %.0f s", task.get_name(), STOP_TIMEOUT_S)
        self._tasks = []
        for node in self.tree.nodes():
            await node.close()
        _LOGGER.info("gateway stopped")


def _bus_settings(section: ModbusSection) -> ModbusBusSettings:
    return ModbusBusSettings(
        kind=section.kind,
        port=section.port,
        host=section.host,
        tcp_port=section.tcp_port,
        baudrate=section.baudrate,
        parity=section.parity,
        stopbits=section.stopbits,
        rs485=section.rs485,
        timeout_s=section.timeout_s,
    )


async def run_until_signalled(gateway: Gateway, stop: asyncio.Event) -> None:
    await gateway.start()
    try:
        await stop.wait()
    finally:
        await gateway.stop()
