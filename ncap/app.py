"""Composition root: builds the TIM nodes and the thing's XMPP client, runs them, stops them."""

from __future__ import annotations

import asyncio
import functools
import logging
from pathlib import Path

from ncap.config import Config, ModbusSection, read_secret
from ncap.errors import ConfigError, NcapError
from ncap.hardware import device_profile
from ncap.metrics import Metrics, MetricsServer
from ncap.sdnotify import Notifier
from ncap.sensors import Reading, SensorTree, TimNode
from ncap.sip.bridge import SipBridge
from ncap.sip.view import GatewayView, bridge_from_config
from ncap.uplink import Uplink
from ncap.watchdog import ProgressWatchdog
from ncap.xmpp.thing import ThingClient
from tim_drivers.drivers.p1451_serial import SerialTim
from tim_drivers.errors import TimError
from tim_drivers.modbus.bus import ModbusBus, ModbusBusSettings
from tim_drivers.modbus.device import ModbusDevice
from tim_drivers.modbus.profile import load_profile
from tim_drivers.transport.serial_link import SerialSettings

_LOGGER = logging.getLogger(__name__)

STOP_TIMEOUT_S = 5.0
LAN_WAIT_S = 3.0
# How long READY=1 waits for every TIM's first discovery attempt.
SETTLE_S = 5.0
# STATUS= refresh without a systemd watchdog; beyond the reconnect wait, uplink slack.
STATUS_INTERVAL_S = 5.0
UPLINK_GRACE_S = 60.0


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
            state_dir=config.gateway.resolved_state_dir(),
            registry=config.registry,
            write_qr=write_claim_qr,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.watchdog = ProgressWatchdog()
        self._bus_of = _buses(config)
        self.metrics = Metrics()
        self.uplink = Uplink(config, self.client, config.gateway.resolved_state_dir(), self.metrics)
        self.metrics_server: MetricsServer | None = None
        self.client.add_event_handler("session_secured", self._count_session)
        self.sip_view: GatewayView | None = None
        self.sip: SipBridge | None = None
        if config.sip.enabled:
            users = {name: user.jid for name, user in config.sip.users.items() if user.jid}
            self.sip_view = GatewayView(
                self.client,
                self.uplink,
                self.tree,
                owner_user=config.sip.owner_user,
                user_jids=users,
            )
            self.sip = bridge_from_config(config.sip, self.sip_view, config.gateway.name)
        self._sessions = 0

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
        self._watch_progress()
        self.uplink.start()
        if self.sip is not None:
            await self.sip.start()
        metrics = self.config.metrics
        if metrics.enabled:
            self.metrics_server = MetricsServer(self.metrics, metrics.host, metrics.port)
            await self.metrics_server.start()
        if self.config.xmpp.server is None and self.config.xmpp.lan_discovery:
            await self._find_server_on_lan()
        self.client.open()

    async def _find_server_on_lan(self) -> None:
        """XEP-0347 server discovery: an ``_xmpp-client._tcp`` service on the LAN for our
        domain; its registry and provisioning hints are used when none is configured."""
        from ncap.lan import find_xmpp_server

        xmpp = self.config.xmpp
        interfaces = list(xmpp.lan_interfaces) or "all"
        try:
            found = await find_xmpp_server(xmpp.domain, interfaces=interfaces, timeout=LAN_WAIT_S)
        except NcapError as err:
            _LOGGER.warning("cannot look for the XMPP server on the LAN: %s", err)
            return
        if found is None:
            _LOGGER.info("no XMPP server for %s on the LAN; using DNS", xmpp.domain)
            return
        _LOGGER.info(
            "XMPP server for %s found on the LAN at %s:%d", xmpp.domain, found.host, found.port
        )
        self.client.use_server(found.host, found.port)
        lifecycle = self.client.lifecycle
        if lifecycle is not None:
            lifecycle.suggest(
                next(iter(found.registry_jids()), None), next(iter(found.provisioner_jids()), None)
            )

    async def _poll(self, node: TimNode, interval: float) -> None:
        """Read the TIM every *interval* seconds and hand the readings to event subscribers."""
        while not self._stopping:
            await node.wait_ready(None)
            bus = self._bus_of[node.node_id]
            try:
                readings = await node.read()
            except NcapError as err:
                _LOGGER.debug("poll of %s failed: %s", node.node_id, err)
                self.metrics.bus_errors.labels(bus).inc()
            else:
                self.metrics.bus_reads.labels(bus).inc()
                self._report(node, readings)
                self.watchdog.progress(bus)
            await asyncio.sleep(interval)

    def _report(self, node: TimNode, readings: list[Reading]) -> None:
        """Fresh readings of a TIM, polled or reported by the TIM: into the journal first
        (sequence numbers, alarms), then to event subscribers."""
        self.uplink.record(readings)
        if self.sip_view is not None:
            self.sip_view.observe(readings)
        for fields in self.client.sensor_source.fields_of(node, readings):
            self.client.events.report(fields)

    def _count_session(self, _event: object) -> None:
        self._sessions += 1
        if self._sessions > 1:
            self.metrics.reconnects.inc()

    def _watch_progress(self) -> None:
        """Each bus must read successfully within max(stall_after_s, 3 poll intervals); the
        uplink must be online, or connecting, or waiting to reconnect (at most
        reconnect_max_s) on purpose."""
        windows: dict[str, float] = {}
        for node_id, bus in self._bus_of.items():
            window = max(self.config.gateway.stall_after_s, 3 * self._intervals[node_id])
            windows[bus] = max(windows.get(bus, 0.0), window)
        for bus, window in windows.items():
            self.watchdog.watch(bus, window)
        uplink_window = 2 * self.config.xmpp.reconnect_max_s + UPLINK_GRACE_S
        self.watchdog.watch("xmpp", uplink_window, probe=self._uplink_alive)

    def _uplink_alive(self) -> bool:
        client = self.client
        return client.online.is_set() or client.is_connected() or client.is_connecting()

    def status_line(self, stalled: list[str]) -> str:
        """One line for ``systemctl status``: nodes online, the uplink, what stalls."""
        nodes = self.tree.nodes()
        online = sum(1 for node in nodes if node.info is not None)
        uplink = "online" if self.client.online.is_set() else "connecting"
        text = f"{online}/{len(nodes)} nodes online, xmpp {uplink}"
        return f"{text}; stalled: {', '.join(stalled)}" if stalled else text

    async def wait_ready(self, timeout: float) -> None:
        """Wait until the XMPP session is up and every TIM has been discovered."""
        async with asyncio.timeout(timeout):
            await self.client.online.wait()
            for node in self.tree.nodes():
                await node.wait_ready(timeout)

    async def stop(self) -> None:
        self._stopping = True
        if self.sip is not None:
            await self.sip.aclose()  # watchers get their terminated NOTIFY first
            self.sip = None
        if self.metrics_server is not None:
            await self.metrics_server.aclose()
            self.metrics_server = None
        await self.client.stop()
        for task in self._tasks:
            task.cancel()
        if not self._tasks:
            return  # stopped already
        done, stuck = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT_S)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                _LOGGER.error("task %s had failed", task.get_name(), exc_info=task.exception())
        for task in stuck:
            _LOGGER.error("task %s did not stop within %.0f s", task.get_name(), STOP_TIMEOUT_S)
        self._tasks = []
        for node in self.tree.nodes():
            await node.close()
        await self.uplink.stop()
        _LOGGER.info("gateway stopped")


def write_claim_qr(uri: str, directory: Path) -> list[Path]:
    """The claim QR code as PNG and SVG beside the claim state (0600: it holds the key)."""
    from ncap.qr import save_qr

    return list(save_qr(uri, directory, stem="claim", mode=0o600))


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


async def run_until_signalled(
    gateway: Gateway, stop: asyncio.Event, notifier: Notifier | None = None
) -> None:
    """Run *gateway* until *stop* is set, telling systemd (``$NOTIFY_SOCKET``) how it goes:
    READY=1 once every TIM had its first discovery attempt and the uplink was tried, STATUS=
    lines as nodes come and go, WATCHDOG=1 only while every bus and the uplink progress,
    STOPPING=1 on the way out."""
    notifier = Notifier.from_environment() if notifier is None else notifier
    supervisor: asyncio.Task[None] | None = None
    await gateway.start()
    try:
        await gateway.tree.settle(SETTLE_S)
        notifier.ready(gateway.status_line([]))
        supervisor = asyncio.get_running_loop().create_task(
            _supervise(gateway, notifier), name="watchdog"
        )
        await stop.wait()
    finally:
        notifier.stopping("stopping")
        if supervisor is not None:
            supervisor.cancel()
        await gateway.stop()
        notifier.close()


async def _supervise(gateway: Gateway, notifier: Notifier) -> None:
    shown = gateway.status_line([])

    def show(stalled: list[str]) -> None:
        nonlocal shown
        text = gateway.status_line(stalled)
        if text != shown:
            notifier.status(text)
            shown = text

    # systemd's own advice: ping at half the timeout. Without a watchdog, only STATUS= lines.
    interval = notifier.watchdog_s / 2 if notifier.watchdog_s else STATUS_INTERVAL_S
    await gateway.watchdog.run(notifier, interval, on_check=show)


def _buses(config: Config) -> dict[str, str]:
    """The bus each node is polled over: its own serial line for a TIM, the Modbus bus (shared
    by its devices) for a Modbus device. One dead slave on a live bus is not a stalled bus."""
    buses = {tim.name: f"tim {tim.name}" for tim in config.tim}
    for section in config.modbus:
        buses.update({device.name: f"modbus {section.name}" for device in section.device})
    return buses
