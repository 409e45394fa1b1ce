"""Read planner: minimal request count (checked against brute force), limits, exception 02."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tim_drivers.errors import RegisterCodecError, UnexpectedReply
from tim_drivers.modbus.planner import (
    Limits,
    Plan,
    PlanMemory,
    PollSchedule,
    Request,
    plan_device,
    plan_requests,
)
from tim_drivers.modbus.registers import Function


@dataclasses.dataclass(frozen=True, slots=True)
class Ch:
    name: str
    address: int
    size: int
    function: Function = Function.HOLDING
    poll_interval_s: float = 10.0

    @property
    def end(self) -> int:
        return self.address + self.size


def layout(spec: Sequence[tuple[int, int]], function: Function = Function.HOLDING) -> list[Ch]:
    """Channels from (gap before, size) pairs; never overlapping."""
    out: list[Ch] = []
    address = 0
    for index, (gap, size) in enumerate(spec):
        address += gap
        out.append(Ch(f"c{index}", address, size, function))
        address += size
    return out


maps = st.lists(st.tuples(st.integers(0, 14), st.integers(1, 4)), min_size=0, max_size=7)


# --- reference: brute force over every grouping ----------------------------------------


def _partitions(items: list[Ch]) -> Iterator[list[list[Ch]]]:
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for partition in _partitions(rest):
        yield [[first], *partition]
        for index in range(len(partition)):
            yield [*partition[:index], [first, *partition[index]], *partition[index + 1 :]]


def _feasible(block: list[Ch], max_gap: int, max_count: int, cuts: set[int]) -> bool:
    block = sorted(block, key=lambda c: c.address)
    start, end = block[0].address, max(c.end for c in block)
    if end - start > max_count or any(start < cut < end for cut in cuts):
        return False
    covered = set()
    for channel in block:
        covered.update(range(channel.address, channel.end))
    run = 0
    for address in range(start, end):
        run = 0 if address in covered else run + 1
        if run > max_gap:
            return False
    return True


def brute_force_minimum(channels: list[Ch], max_gap: int, max_count: int, cuts: set[int]) -> int:
    return min(
        len(partition)
        for partition in _partitions(channels)
        if all(_feasible(block, max_gap, max_count, cuts) for block in partition)
    )


def check_invariants(
    requests: Sequence[Request[Ch]], channels: Sequence[Ch], limits: Limits, function: Function
) -> None:
    placed = [c for r in requests for c in r.channels]
    assert sorted(placed, key=lambda c: c.name) == sorted(channels, key=lambda c: c.name)
    for request in requests:
        assert request.function is function
        assert 1 <= request.count <= limits.max_count(function)
        assert request.address == min(c.address for c in request.channels)
        assert request.end == max(c.end for c in request.channels)
        for channel in request.channels:  # never split
            assert request.address <= channel.address
            assert channel.end <= request.end
        end = request.address
        for channel in request.channels:
            assert channel.address - end <= limits.max_gap
            end = max(end, channel.end)


@settings(max_examples=150, deadline=None)
@given(
    spec=maps,
    max_gap=st.integers(0, 8),
    max_count=st.integers(4, 20),
    data=st.data(),
)
def test_request_count_is_minimal(
    spec: list[tuple[int, int]], max_gap: int, max_count: int, data: st.DataObject
) -> None:
    channels = layout(spec)
    # Cuts are learnt at channel starts (a channel itself is never split).
    starts = sorted({c.address for c in channels})
    cuts = data.draw(st.sets(st.sampled_from(starts), max_size=3)) if starts else set()
    limits = Limits(max_gap=max_gap, max_registers=max_count)
    memory = PlanMemory()
    for cut in cuts:
        memory.add_cut(Function.HOLDING, cut)
    requests = plan_requests(Function.HOLDING, channels, limits, memory)
    check_invariants(requests, channels, limits, Function.HOLDING)
    for request in requests:
        assert not memory.crosses(Function.HOLDING, request.address, request.end)
    if channels:
        assert len(requests) == brute_force_minimum(channels, max_gap, max_count, cuts)
    else:
        assert requests == []


@settings(deadline=None)
@given(spec=st.lists(st.tuples(st.integers(0, 200), st.integers(1, 8)), max_size=60))
def test_limits_on_large_maps(spec: list[tuple[int, int]]) -> None:
    for function in Function:
        size_cap = 1 if function.is_bit else 8
        channels = layout([(gap, min(size, size_cap)) for gap, size in spec], function)
        limits = Limits(max_gap=30)
        requests = plan_requests(function, channels, limits)
        check_invariants(requests, channels, limits, function)


def test_bit_tables_use_2000_and_registers_125() -> None:
    coils = [Ch(f"b{i}", i, 1, Function.COIL) for i in range(0, 4000)]
    requests = plan_requests(Function.COIL, coils)
    assert [r.count for r in requests] == [2000, 2000]
    registers = [Ch(f"r{i}", 2 * i, 2) for i in range(100)]
    assert [r.count for r in plan_requests(Function.HOLDING, registers)] == [124, 76]
    capped = plan_requests(Function.HOLDING, registers, Limits(max_registers=16))
    assert all(r.count <= 16 for r in capped)
    assert len(capped) == 13


def test_gap_rule_example() -> None:
    # SDM120-like: six floats 6 apart, then a block at 70, then one at 342.
    channels = [Ch(f"x{a}", a, 2, Function.INPUT) for a in (0, 6, 12, 18, 24, 30, 70, 72, 342)]
    requests = plan_requests(Function.INPUT, channels, Limits(max_gap=10))
    assert [(r.address, r.count) for r in requests] == [(0, 32), (70, 4), (342, 2)]
    no_gap = plan_requests(Function.INPUT, channels, Limits(max_gap=0))
    assert len(no_gap) == 8  # only 70 and 72 are adjacent


def test_other_tables_are_ignored_and_oversized_channels_refused() -> None:
    channels = [Ch("h", 0, 2), Ch("i", 0, 2, Function.INPUT)]
    assert [r.channels for r in plan_requests(Function.INPUT, channels)] == [(channels[1],)]
    with pytest.raises(RegisterCodecError):
        plan_requests(Function.HOLDING, [Ch("big", 0, 20)], Limits(max_registers=16))


def test_slicing_the_response() -> None:
    a, b = Ch("a", 10, 2), Ch("b", 15, 1)
    (request,) = plan_requests(Function.HOLDING, [b, a])
    assert (request.address, request.count, request.channels) == (10, 6, (a, b))
    response = [100, 101, 102, 103, 104, 105]
    assert list(request.slice(a, response)) == [100, 101]
    assert [list(v) for _, v in request.split_response(response)] == [[100, 101], [105]]
    with pytest.raises(UnexpectedReply):
        request.split_response(response[:-1])
    with pytest.raises(UnexpectedReply):
        request.split_response([*response, 0])
    with pytest.raises(RegisterCodecError):
        request.slice(Ch("elsewhere", 40, 1), response)
    coil = Ch("coil", 3, 1, Function.COIL)
    (bits,) = plan_requests(Function.COIL, [coil])
    padded = [True, False, False, False, False, False, False, False]  # padded to 8 bits
    assert list(bits.slice(coil, padded)) == [True]


# --- exception 02 learning --------------------------------------------------------------


def refuses(request: Request[Ch], holes: set[int]) -> bool:
    """A device answering 02 for any read that covers an unmapped address."""
    return any(request.address <= hole < request.end for hole in holes)


def converge(plan: Plan[Ch], holes: set[int], limit: int = 500) -> tuple[Plan[Ch], int]:
    for step in range(limit):
        refused = next((r for r in plan.requests if refuses(r, holes)), None)
        if refused is None:
            return plan, step
        plan = plan.split(refused)
    raise AssertionError("exception-02 learning did not converge")


@settings(max_examples=200, deadline=None)
@given(spec=maps, data=st.data())
def test_exception_02_split_converges(spec: list[tuple[int, int]], data: st.DataObject) -> None:
    channels = layout(spec)
    end = max((c.end for c in channels), default=0) + 2
    holes = data.draw(st.sets(st.integers(0, end), max_size=6))
    limits = Limits(max_gap=data.draw(st.integers(0, 14)), max_registers=30)
    memory = PlanMemory()
    plan, steps = converge(Plan.build(Function.HOLDING, channels, limits, memory), holes)
    bad = {c.name for c in channels if any(c.address <= h < c.end for h in holes)}
    good = [c for c in channels if c.name not in bad]
    assert {c.name for c in plan.unreadable} == bad
    check_invariants(plan.requests, good, limits, Function.HOLDING)
    assert not any(refuses(r, holes) for r in plan.requests)
    assert steps <= 2 * len(channels)
    # What was learnt is kept: a new plan with the same memory needs no further split.
    again = Plan.build(Function.HOLDING, channels, limits, memory)
    assert again.requests == plan.requests


def test_split_at_largest_gap_then_per_channel() -> None:
    channels = [Ch("a", 0, 2), Ch("b", 3, 2), Ch("c", 10, 2), Ch("d", 12, 1)]
    memory = PlanMemory()
    plan = Plan.build(Function.HOLDING, channels, Limits(max_gap=10), memory)
    assert [(r.address, r.count) for r in plan.requests] == [(0, 13)]
    plan = plan.split(plan.requests[0])  # largest hole: 5..9
    assert memory.cuts == {Function.HOLDING: {10}}
    assert [(r.address, r.count) for r in plan.requests] == [(0, 5), (10, 3)]
    plan = plan.split(plan.requests[1])  # contiguous c, d: cut between every channel
    assert [(r.address, r.count) for r in plan.requests] == [(0, 5), (10, 2), (12, 1)]
    plan = plan.split(plan.requests[2])  # d alone refused: unreadable
    assert [c.name for c in plan.unreadable] == ["d"]
    assert [(r.address, r.count) for r in plan.requests] == [(0, 5), (10, 2)]
    with pytest.raises(ValueError, match="not part"):
        plan.split(Request(Function.HOLDING, 0, 1, (channels[0],)))


def test_memory_is_shared_by_interval_groups() -> None:
    fast = [Ch("a", 0, 1, poll_interval_s=1.0), Ch("b", 4, 1, poll_interval_s=1.0)]
    slow = [Ch("c", 0, 1, Function.INPUT, 60.0), Ch("d", 4, 1, poll_interval_s=60.0)]
    memory = PlanMemory()
    plans = plan_device([*fast, *slow], Limits(), memory)
    assert [(p.function, p.interval_s) for p in plans] == [
        (Function.INPUT, 60.0),
        (Function.HOLDING, 1.0),
        (Function.HOLDING, 60.0),
    ]
    plans[1].split(plans[1].requests[0])
    assert [(r.address, r.count) for r in plans[2].replan().requests] == [(4, 1)]
    assert len(plan_device([*fast, *slow], Limits(), memory)[1].requests) == 2


def test_poll_schedule() -> None:
    fast = Plan.build(Function.HOLDING, [Ch("a", 0, 1)], interval_s=1.0)
    slow = Plan.build(Function.HOLDING, [Ch("b", 9, 1)], interval_s=5.0)
    schedule = PollSchedule([fast, slow])
    assert schedule.next_due() is None
    assert schedule.due(0.0) == [fast, slow]
    assert schedule.due(0.5) == []
    assert schedule.next_due() == 1.0
    assert schedule.due(1.0) == [fast]
    assert schedule.due(5.0) == [fast, slow]
    assert schedule.due(12.3) == [fast, slow]  # late: once each, not once per missed slot
    assert schedule.due(12.9) == []
    assert schedule.due(13.0) == [fast]
    replanned = fast.replan()
    schedule.replace(fast, replanned)
    assert schedule.due(14.0) == [replanned]
    with pytest.raises(ValueError, match="not part"):
        schedule.replace(fast, replanned)
