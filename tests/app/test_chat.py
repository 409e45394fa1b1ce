"""Chat command language over a sensor tree with a scripted TIM driver."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ncap.chat import HELP, ChatCommands, format_readings
from ncap.sensors import Reading, SensorTree, TimNode
from tim_drivers.codec.teds import ChannelTeds
from tim_drivers.drivers.p1451_serial import ChannelInfo, ChannelKind, Sample, TimInfo
from tim_drivers.errors import TimTimeout

STAMP = datetime(2026, 11, 21, 12, 0, 5, tzinfo=UTC)


class ScriptedTim:
    """A driver double answering from a table: the codec and link are tested elsewhere."""

    def __init__(self, values: dict[int, float], *, fail: bool = False) -> None:
        self.values = values
        self.fail = fail

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def on_lost(self, callback: object) -> None:
        return None

    def on_event(self, callback: object) -> None:
        return None

    async def discover(self) -> TimInfo:
        raise NotImplementedError  # replaced by _online() below

    async def read(self, channel: int) -> Sample:
        if self.fail:
            raise TimTimeout("no reply")
        return Sample(channel=channel, value=self.values[channel], unit="°C", timestamp=STAMP)


def _online(node: TimNode, names: list[str]) -> TimNode:
    channels = tuple(
        ChannelInfo(
            number=i,
            name=name,
            kind=ChannelKind.SENSOR,
            unit="°C",
            low_limit=-40.0,
            high_limit=125.0,
            decimals=1,
            teds=ChannelTeds.__new__(ChannelTeds),
        )
        for i, name in enumerate(names, start=1)
    )
    node._info = TimInfo(uuid=b"\0" * 10, name="sim", channels=channels, meta=None)  # type: ignore[arg-type]
    return node


@pytest.fixture
def commands() -> ChatCommands:
    good = _online(TimNode("env", ScriptedTim({1: 21.54, 2: 19.0})), ["indoor", "outdoor"])
    bad = _online(TimNode("broken", ScriptedTim({}, fail=True)), ["x"])
    return ChatCommands(SensorTree([good, bad, TimNode("absent", ScriptedTim({}))]))


async def test_help_and_unknown(commands: ChatCommands) -> None:
    assert await commands.handle("help") == HELP
    assert await commands.handle("  ") == HELP
    assert "Unknown command 'frobnicate'" in await commands.handle("frobnicate")


async def test_read_one_node_and_one_field(commands: ChatCommands) -> None:
    assert await commands.handle("read env") == (
        "env at 2026-11-21 12:00:05 UTC\n  indoor   21.5 °C\n  outdoor  19.0 °C"
    )
    assert (
        await commands.handle("READ env outdoor")
        == "env at 2026-11-21 12:00:05 UTC\n  outdoor  19.0 °C"
    )


async def test_read_everything_reports_failures_per_node(commands: ChatCommands) -> None:
    text = await commands.handle("read")
    assert "indoor   21.5 °C" in text
    assert "broken: TIM broken channel x: no reply" in text
    assert "absent: TIM absent is not available" in text


async def test_unknown_node_and_list(commands: ChatCommands) -> None:
    assert await commands.handle("read nope") == "No node 'nope'. Send 'list' to see the nodes."
    listing = await commands.handle("list")
    assert "env (sim)\n  indoor [°C] sensor" in listing
    assert "absent (not available)" in listing


async def test_garbage_is_answered_not_raised(commands: ChatCommands) -> None:
    assert "too long" in await commands.handle("x" * 5000)
    assert "Unknown command" in await commands.handle('"unbalanced quote')


def test_format_readings_empty() -> None:
    assert format_readings("env", []) == "env: no matching fields"
    reading = Reading("env", "t", 1.0, "", 2, STAMP)
    assert reading.text == "1.00"
