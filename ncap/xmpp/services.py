"""The NCAP's node tree as the XMPP IoT plugins see it.

One data source, ``MeteringTopology``: the gateway is the root node, its children are
the TIMs (node id = the TIM's configured name) and their children the channels (node id
``TIM/CHANNEL``). Three adapters serve that tree: `SensorSource` to XEP-0323 readouts and
event subscriptions, `ConcentratorSource` to XEP-0326 browsing, `ControlTarget` to
XEP-0325 control of actuator channels.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from slixmpp import JID

from ncap import __version__
from ncap.errors import NcapError
from ncap.sensors import Reading, SensorTree, TimNode
from tim_drivers.drivers.p1451_serial import ChannelInfo, ChannelKind
from xep.errors import ControlFailed
from xep.xep_0323.model import (
    Field,
    FieldType,
    NodeFailure,
    NodeFields,
    NodeRef,
    ReadoutRequest,
)
from xep.xep_0325.model import ControlParameter, ControlValue
from xep.xep_0325.model import ParameterKind as ControlKind
from xep.xep_0326.model import (
    DataSource,
    MessageType,
    NodeInfo,
    NodeMessage,
    NodeParameter,
    NodeState,
    ParameterKind,
)

_LOGGER = logging.getLogger(__name__)

SOURCE_ID = "MeteringTopology"
CHANNEL_SEPARATOR = "/"


class NodeKind(enum.Enum):
    GATEWAY = "ncap:Gateway"
    TIM = "ncap:Tim"
    CHANNEL = "ncap:Channel"


@dataclass(frozen=True, slots=True)
class Located:
    kind: NodeKind
    node_id: str
    tim: TimNode | None = None
    channel: ChannelInfo | None = None


def channel_node_id(tim: str, channel: str) -> str:
    return f"{tim}{CHANNEL_SEPARATOR}{channel}"


def is_switch(channel: ChannelInfo) -> bool:
    """A dimensionless 0..1 actuator without decimals is on/off, shown as a boolean."""
    return (
        not channel.unit
        and channel.decimals == 0
        and (channel.low_limit, channel.high_limit) == (0.0, 1.0)
    )


class Topology:
    def __init__(self, gateway_id: str, tree: SensorTree) -> None:
        self.gateway_id = gateway_id
        self.tree = tree

    def locate(self, ref: NodeRef) -> Located | None:
        """The node *ref* names, or None. A reference without sourceId is ours too."""
        if ref.source_id not in (None, SOURCE_ID):
            return None
        node_id = ref.node_id
        if node_id == self.gateway_id:
            return Located(NodeKind.GATEWAY, node_id)
        if node_id in self.tree:
            return Located(NodeKind.TIM, node_id, self.tree.node(node_id))
        tim_id, separator, channel_name = node_id.partition(CHANNEL_SEPARATOR)
        if not separator or tim_id not in self.tree:
            return None
        tim = self.tree.node(tim_id)
        for channel in self.channels(tim):
            if channel.name == channel_name:
                return Located(NodeKind.CHANNEL, node_id, tim, channel)
        return None

    @staticmethod
    def channels(tim: TimNode) -> tuple[ChannelInfo, ...]:
        info = tim.known_info
        return info.channels if info is not None else ()

    def all(self) -> list[Located]:
        found = [Located(NodeKind.GATEWAY, self.gateway_id)]
        for tim in self.tree.nodes():
            found.append(Located(NodeKind.TIM, tim.node_id, tim))
            found.extend(
                Located(NodeKind.CHANNEL, channel_node_id(tim.node_id, c.name), tim, c)
                for c in self.channels(tim)
            )
        return found


def _field(reading: Reading) -> Field:
    return Field.numeric(
        reading.field,
        reading.value,
        reading.unit,
        reading.decimals,
        writable=True if reading.writable else None,
    )


class SensorSource:
    """XEP-0323 readouts and event subscriptions over the node tree."""

    def __init__(self, topology: Topology) -> None:
        self._topology = topology

    def has_node(self, node: NodeRef) -> bool:
        return self._topology.locate(node) is not None

    async def readout(self, request: ReadoutRequest) -> AsyncIterator[NodeFields | NodeFailure]:
        if request.types and not request.types & (FieldType.MOMENTARY | FieldType.STATUS):
            return
        for tim, ref, names in self._targets(request):
            try:
                readings = await tim.read(names)
            except NcapError as err:
                yield NodeFailure(ref, datetime.now(UTC), str(err))
                continue
            if readings:
                yield NodeFields(
                    ref, max(r.timestamp for r in readings), tuple(map(_field, readings))
                )

    def fields_of(self, tim: TimNode, readings: Sequence[Reading]) -> list[NodeFields]:
        """A fresh reading of a TIM as event-subscription input: for the TIM and each channel."""
        if not readings:
            return []
        stamp = max(r.timestamp for r in readings)
        reports = [NodeFields(NodeRef(tim.node_id, SOURCE_ID), stamp, tuple(map(_field, readings)))]
        reports.extend(
            NodeFields(
                NodeRef(channel_node_id(tim.node_id, r.field), SOURCE_ID), r.timestamp, (_field(r),)
            )
            for r in readings
        )
        return reports

    def _targets(self, request: ReadoutRequest) -> list[tuple[TimNode, NodeRef, tuple[str, ...]]]:
        topology = self._topology
        located = [topology.locate(ref) for ref in request.nodes]
        whole = not request.nodes or any(
            where is not None and where.kind is NodeKind.GATEWAY for where in located
        )
        names = request.field_names
        if whole:
            return [(t, NodeRef(t.node_id, SOURCE_ID), names) for t in topology.tree.nodes()]
        targets = []
        for where in located:
            if where is None or where.tim is None:
                continue
            if where.channel is None:
                targets.append((where.tim, NodeRef(where.node_id, SOURCE_ID), names))
            elif not names or where.channel.name in names:
                channel_names = (where.channel.name,)
                targets.append((where.tim, NodeRef(where.node_id, SOURCE_ID), channel_names))
        return targets


class ConcentratorSource:
    """XEP-0326 browsing of the node tree."""

    def __init__(self, topology: Topology, started: datetime) -> None:
        self._topology = topology
        self._started = started

    def data_sources(self) -> Sequence[DataSource]:
        return [DataSource(SOURCE_ID, "Metering topology", last_changed=self._started)]

    def root_nodes(self, source_id: str) -> Sequence[NodeInfo] | None:
        if source_id != SOURCE_ID:
            return None
        return [self._info(self._topology.locate(NodeRef(self._topology.gateway_id)))]

    def node(self, ref: NodeRef) -> NodeInfo | None:
        where = self._topology.locate(ref)
        return None if where is None else self._info(where)

    def child_nodes(self, ref: NodeRef) -> Sequence[NodeInfo] | None:
        where = self._topology.locate(ref)
        if where is None:
            return None
        if where.kind is NodeKind.GATEWAY:
            tims = self._topology.tree.nodes()
            return [self._info(Located(NodeKind.TIM, t.node_id, t)) for t in tims]
        if where.kind is NodeKind.TIM and where.tim is not None:
            tim = where.tim
            return [
                self._info(Located(NodeKind.CHANNEL, channel_node_id(tim.node_id, c.name), tim, c))
                for c in self._topology.channels(tim)
            ]
        return []

    def all_nodes(self, source_id: str) -> Sequence[NodeInfo] | None:
        if source_id != SOURCE_ID:
            return None
        return [self._info(where) for where in self._topology.all()]

    def _info(self, where: Located | None) -> NodeInfo:
        assert where is not None
        if where.kind is NodeKind.GATEWAY:
            tims = self._topology.tree.nodes()
            return NodeInfo(
                node_id=where.node_id,
                source_id=SOURCE_ID,
                display_name=where.node_id,
                node_type=NodeKind.GATEWAY.value,
                has_children=bool(tims),
                is_readable=True,
                is_controllable=any(_actuators(self._topology, t) for t in tims),
                last_changed=self._started,
                parameters=(NodeParameter.string("version", "NCAP version", __version__),),
            )
        tim = where.tim
        assert tim is not None
        if where.kind is NodeKind.TIM:
            info = tim.known_info
            ready = tim.info is not None
            return NodeInfo(
                node_id=where.node_id,
                source_id=SOURCE_ID,
                display_name=info.name if info is not None else where.node_id,
                node_type=NodeKind.TIM.value,
                state=NodeState.NONE if ready else NodeState.ERROR_UNSIGNED,
                has_children=bool(self._topology.channels(tim)),
                is_readable=True,
                is_controllable=bool(_actuators(self._topology, tim)),
                parent_id=self._topology.gateway_id,
                parameters=_tim_parameters(tim),
                messages=()
                if ready
                else (NodeMessage(datetime.now(UTC), MessageType.ERROR, "TIM not available"),),
            )
        channel = where.channel
        assert channel is not None
        return NodeInfo(
            node_id=where.node_id,
            source_id=SOURCE_ID,
            display_name=channel.name,
            node_type=f"{NodeKind.CHANNEL.value}:{channel.kind.name.lower()}",
            state=NodeState.NONE if tim.info is not None else NodeState.ERROR_UNSIGNED,
            is_readable=channel.kind is not ChannelKind.EVENT_SENSOR,
            is_controllable=channel.kind is ChannelKind.ACTUATOR,
            parent_id=tim.node_id,
            parameters=(
                NodeParameter.integer("channel", "TransducerChannel number", channel.number),
                NodeParameter.string("unit", "Unit", channel.unit),
                *(
                    NodeParameter(key, label, ParameterKind.DOUBLE, text)
                    for key, label, limit in (
                        ("low", "Lower range limit", channel.low_limit),
                        ("high", "Upper range limit", channel.high_limit),
                    )
                    if (text := _limit(limit)) is not None
                ),
            ),
        )


def _limit(value: float) -> str | None:
    """A range limit as xs:double text; None for a limit the data sheet leaves open (NaN)."""
    return repr(value) if math.isfinite(value) else None


def _tim_parameters(tim: TimNode) -> tuple[NodeParameter, ...]:
    info = tim.known_info
    if info is None:
        return ()
    return (
        NodeParameter.string("uuid", "TIM UUID", info.uuid.hex()),
        NodeParameter.integer("channels", "TransducerChannels", len(info.channels)),
    )


def _actuators(topology: Topology, tim: TimNode) -> list[ChannelInfo]:
    return [c for c in topology.channels(tim) if c.kind is ChannelKind.ACTUATOR]


class ControlTarget:
    """XEP-0325 control of actuator channels.

    A channel node has one parameter named after the channel; a TIM node has one per
    actuator channel. On/off actuators are booleans, the others doubles within the TEDS
    range limits.
    """

    def __init__(self, topology: Topology) -> None:
        self._topology = topology

    def has_node(self, node: NodeRef) -> bool:
        return self._topology.locate(node) is not None

    def parameters(self, node: NodeRef | None) -> Sequence[ControlParameter]:
        where = None if node is None else self._topology.locate(node)
        if where is None or where.tim is None:
            return []
        tim = where.tim
        channels = [where.channel] if where.channel else _actuators(self._topology, tim)
        return [_parameter(tim, c) for c in channels if c.kind is ChannelKind.ACTUATOR]

    async def apply(
        self, requester: JID, nodes: tuple[NodeRef, ...], values: tuple[ControlValue, ...]
    ) -> None:
        for ref in nodes:
            where = self._topology.locate(ref)
            if where is None or where.tim is None:
                raise ControlFailed(f"no node {ref.node_id!r}")
            for value in values:
                try:
                    await where.tim.write(value.name, _number(value))
                except NcapError as err:
                    raise ControlFailed(str(err), value.name) from err
                _LOGGER.info(
                    "control: %s set %s %s = %s", requester, where.node_id, value.name, value.value
                )


def _number(value: ControlValue) -> float:
    if value.kind is ControlKind.BOOLEAN:
        return 1.0 if value.as_bool() else 0.0
    return value.as_float()


def _parameter(tim: TimNode, channel: ChannelInfo) -> ControlParameter:
    written = tim.last_written(channel.name)
    label = f"{channel.name} ({channel.unit})" if channel.unit else channel.name
    if is_switch(channel):
        value = "" if written is None else ("true" if written.value >= 0.5 else "false")
        return ControlParameter(channel.name, ControlKind.BOOLEAN, value, label=label)
    return ControlParameter(
        channel.name,
        ControlKind.DOUBLE,
        "" if written is None else f"{written.value:.{channel.decimals}f}",
        label=label,
        minimum=_limit(channel.low_limit),
        maximum=_limit(channel.high_limit),
    )
