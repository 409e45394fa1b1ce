"""The thing's XEP-0324 client: the persisted decision cache and the questions to the service.

The service is a fake ``ask`` coroutine answering with elements built by the real codec; no
network. Timeouts use a fake that never answers and a small ``timeout_s``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path
from xml.etree.ElementTree import Element

import pytest
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.stanza import Iq

from ncap.provisioning import DecisionCache, ProvisioningClient
from xep.xep_0323.model import FieldType, NodeRef, ReadoutRequest
from xep.xep_0324 import convert
from xep.xep_0324.model import (
    CanControl,
    CanControlResponse,
    CanRead,
    CanReadResponse,
    IsFriend,
    IsFriendResponse,
    ProvisioningElement,
)
from xep.xep_0325.model import ControlDecision, ControlRequest, ControlValue, ParameterKind

SERVICE = "provisioning.example.org"
REQUESTER = "client1@example.org/phone"
BARE = "client1@example.org"
D2, D3, D4 = NodeRef("Device02"), NodeRef("Device03"), NodeRef("Device04")

Respond = Callable[[ProvisioningElement], "Element | BaseException | None"]


class FakeService:
    """``ask``: records each question and answers with ``respond(question)``.

    ``respond`` returns the answer element, an exception to raise, or None to never answer.
    """

    def __init__(self, respond: Respond) -> None:
        self.respond = respond
        self.asked: list[tuple[str, ProvisioningElement, float]] = []

    async def __call__(self, to: str, payload: Element, timeout: float) -> Element:
        question = convert.from_xml(payload)
        self.asked.append((to, question, timeout))
        answer = self.respond(question)
        if answer is None:
            await asyncio.Event().wait()  # never answers; the client's timeout ends this
        if isinstance(answer, BaseException):
            raise answer
        assert isinstance(answer, Element)
        return answer

    @property
    def questions(self) -> list[ProvisioningElement]:
        return [question for _, question, _ in self.asked]


def answer(item: ProvisioningElement) -> Respond:
    element = convert.to_xml(item)
    return lambda _question: element


def iq_error(condition: str = "item-not-found") -> IqError:
    iq = Iq(stype="error")
    iq["error"]["condition"] = condition
    iq["error"]["type"] = "cancel"
    return IqError(iq)


def client(
    respond: Respond, cache: DecisionCache | None = None, timeout_s: float = 5.0
) -> tuple[ProvisioningClient, FakeService]:
    service = FakeService(respond)
    return (
        ProvisioningClient(
            SERVICE,
            service,
            cache if cache is not None else DecisionCache(None),
            timeout_s=timeout_s,
        ),
        service,
    )


def readout(
    nodes: tuple[NodeRef, ...] = (), fields: tuple[str, ...] = (), **kw: object
) -> ReadoutRequest:
    return ReadoutRequest(seqnr=1, nodes=nodes, field_names=fields, **kw)  # type: ignore[arg-type]


def control(nodes: tuple[NodeRef, ...] = (), *names: str, **kw: object) -> ControlRequest:
    values = tuple(ControlValue(name, ParameterKind.BOOLEAN, "true") for name in names)
    return ControlRequest(nodes=nodes, values=values, **kw)  # type: ignore[arg-type]


# -- DecisionCache ---------------------------------------------------------------------------------


def test_cache_in_memory_is_an_lru() -> None:
    cache = DecisionCache(None, max_entries=3)
    for key in "abc":
        cache.put(key, key.upper())
    assert cache.get("a") == "A"  # now the most recently used
    cache.put("d", "D")
    assert len(cache) == 3
    assert cache.get("b") is None  # the least recently used went
    assert [cache.get(k) for k in "acd"] == ["A", "C", "D"]
    cache.put("a", "A2")  # replacing keeps one entry
    assert len(cache) == 3
    assert cache.get("a") == "A2"


def test_cache_is_persisted_private_and_atomic(tmp_path: Path) -> None:
    path = tmp_path / "provisioning.json"
    cache = DecisionCache(path)
    assert not path.exists()  # nothing written before the first answer
    cache.put("friend a@b", True)
    cache.put("read", {"result": True, "nodes": None, "fields": ["T"]})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {
        "friend a@b": True,
        "read": {"result": True, "nodes": None, "fields": ["T"]},
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["provisioning.json"]  # no temp file
    again = DecisionCache(path)
    assert len(again) == 2
    assert again.get("friend a@b") is True
    assert again.get("read") == {"result": True, "nodes": None, "fields": ["T"]}


def test_cache_file_mode_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text("{}")
    path.chmod(0o644)
    old = os.umask(0)
    try:
        DecisionCache(path).put("k", 1)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_cache_reload_keeps_lru_order_and_bound(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    cache = DecisionCache(path, max_entries=3)
    for key in "abc":
        cache.put(key, 1)
    cache.get("a")
    cache.put("d", 1)  # evicts b; saved order c, a, d
    reloaded = DecisionCache(path, max_entries=3)
    assert [reloaded.get(k) for k in "abcd"] == [1, None, 1, 1]
    smaller = DecisionCache(path, max_entries=2)  # a smaller bound keeps the newest
    assert len(smaller) == 2
    assert smaller.get("c") is None
    assert smaller.get("d") == 1


@pytest.mark.parametrize(
    "content", [b"not json {", b"\xff\xfe\x00garbage", b'{"a": 1', b""], ids=repr
)
def test_corrupted_cache_file_starts_empty_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    path = tmp_path / "c.json"
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="ncap.provisioning"):
        cache = DecisionCache(path)
    assert len(cache) == 0
    assert any("unreadable" in record.getMessage() for record in caplog.records)
    cache.put("k", True)  # and it recovers on the next save
    assert DecisionCache(path).get("k") is True


@pytest.mark.parametrize("content", ["[1, 2]", '"text"', "null", "3"])
def test_cache_file_of_the_wrong_shape_starts_empty(tmp_path: Path, content: str) -> None:
    path = tmp_path / "c.json"
    path.write_text(content)
    assert len(DecisionCache(path)) == 0


def test_unwritable_cache_warns_and_keeps_working(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = DecisionCache(tmp_path / "missing-dir" / "c.json")
    with caplog.at_level(logging.WARNING, logger="ncap.provisioning"):
        cache.put("k", True)
    assert cache.get("k") is True
    assert any("cannot save" in record.getMessage() for record in caplog.records)


def test_clear_is_persisted(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    cache = DecisionCache(path)
    cache.put("k", True)
    cache.clear()
    assert len(cache) == 0
    assert json.loads(path.read_text()) == {}
    assert len(DecisionCache(path)) == 0


# -- ProvisioningClient: answers -------------------------------------------------------------------


@pytest.mark.parametrize("result", [True, False])
async def test_is_friend_asks_the_service_about_the_bare_jid(result: bool) -> None:
    provisioning, service = client(answer(IsFriendResponse(BARE, result)))
    assert await provisioning.is_friend(REQUESTER) is result
    ((to, question, timeout),) = service.asked
    assert (to, question, timeout) == (SERVICE, IsFriend(BARE), 5.0)


async def test_service_address_is_bare() -> None:
    service = FakeService(answer(IsFriendResponse(BARE, True)))
    provisioning = ProvisioningClient("prov@example.org/res", service, DecisionCache(None))
    await provisioning.is_friend(REQUESTER)
    assert service.asked[0][0] == "prov@example.org"


async def test_can_read_asks_with_the_request_flags_nodes_fields_and_tokens() -> None:
    provisioning, service = client(answer(CanReadResponse(BARE, True)))
    request = readout(
        (D2, D3),
        ("Temperature",),
        types=FieldType.MOMENTARY | FieldType.STATUS,
        service_tokens=("S1",),
        device_tokens=("D1",),
        user_tokens=("U1", "U2"),
    )
    assert await provisioning.can_read(REQUESTER, request) is True
    assert service.questions == [
        CanRead(
            BARE,
            FieldType.MOMENTARY | FieldType.STATUS,
            (D2, D3),
            ("Temperature",),
            ("S1",),
            ("D1",),
            ("U1", "U2"),
        )
    ]


@pytest.mark.parametrize(
    ("request_", "response", "expected"),
    [
        (readout((D2, D3)), CanReadResponse(BARE, False), False),
        (readout((D2, D3)), CanReadResponse(BARE, True), True),
        (readout((D2, D3)), CanReadResponse(BARE, True, nodes=(D2,)), readout((D2,))),
        (readout(), CanReadResponse(BARE, True, nodes=(D4,)), readout((D4,))),
        (
            readout((), ("T", "P")),
            CanReadResponse(BARE, True, field_names=("P",)),
            readout((), ("P",)),
        ),
        (
            readout((D2,)),
            CanReadResponse(BARE, True, nodes=(D2,), field_names=("T",)),
            readout((D2,), ("T",)),
        ),
        # The service narrowed to something not asked: nothing is left, so no.
        (readout((D3,)), CanReadResponse(BARE, True, nodes=(D2,)), False),
        (readout((), ("T",)), CanReadResponse(BARE, True, field_names=("P",)), False),
    ],
    ids=[
        "refused",
        "allowed",
        "nodes narrowed",
        "all nodes narrowed",
        "fields narrowed",
        "both narrowed",
        "narrowed to other nodes",
        "narrowed to other fields",
    ],
)
async def test_can_read_answers(
    request_: ReadoutRequest, response: CanReadResponse, expected: bool | ReadoutRequest
) -> None:
    provisioning, _ = client(answer(response))
    assert await provisioning.can_read(REQUESTER, request_) == expected
    # The cached answer gives the same result.
    assert await provisioning.can_read(REQUESTER, request_) == expected
    assert provisioning.questions == 1


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (CanControlResponse(BARE, False), ControlDecision(False)),
        (CanControlResponse(BARE, True), ControlDecision(True)),
        (CanControlResponse(BARE, True, nodes=(D2,)), ControlDecision(True, (D2,), None)),
        (CanControlResponse(BARE, True, parameters=("B",)), ControlDecision(True, None, ("B",))),
        (
            CanControlResponse(BARE, True, (D3,), ("A",)),
            ControlDecision(True, (D3,), ("A",)),
        ),
    ],
)
async def test_can_control_answers(response: CanControlResponse, expected: ControlDecision) -> None:
    provisioning, service = client(answer(response))
    request = control((D2, D3), "A", "B", "A", user_tokens=("U",))
    assert await provisioning.can_control(REQUESTER, request) == expected
    assert await provisioning.can_control(REQUESTER, request) == expected
    assert service.questions == [CanControl(BARE, (D2, D3), ("A", "B"), user_tokens=("U",))]


# -- caching ---------------------------------------------------------------------------------------


async def test_second_question_is_answered_from_the_cache() -> None:
    responses: dict[type, ProvisioningElement] = {
        IsFriend: IsFriendResponse(BARE, True),
        CanRead: CanReadResponse(BARE, True, nodes=(D2,)),
        CanControl: CanControlResponse(BARE, False),
    }
    provisioning, service = client(lambda q: convert.to_xml(responses[type(q)]))
    for _ in range(3):
        assert await provisioning.is_friend(REQUESTER)
        assert await provisioning.is_friend(BARE + "/other")  # resources do not matter
        assert await provisioning.can_read(REQUESTER, readout((D2, D3))) == readout((D2,))
        assert await provisioning.can_control(REQUESTER, control((), "A")) == ControlDecision(False)
    assert len(service.asked) == provisioning.questions == 3
    assert provisioning.failures == 0


async def test_a_different_question_is_asked_again() -> None:
    provisioning, service = client(lambda q: convert.to_xml(CanReadResponse(BARE, True)))
    await provisioning.can_read(REQUESTER, readout((D2,)))
    await provisioning.can_read(REQUESTER, readout((D3,)))
    await provisioning.can_read(REQUESTER, readout((D2,), ("T",)))
    await provisioning.can_read(REQUESTER, readout((D2,), types=FieldType.PEAK))
    await provisioning.can_read("other@example.org", readout((D2,)))
    assert len(service.asked) == 5


async def test_answers_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "provisioning.json"
    first, _ = client(answer(CanReadResponse(BARE, True, nodes=(D2,))), DecisionCache(path))
    assert await first.can_read(REQUESTER, readout((D2, D3))) == readout((D2,))
    # After a power cut: the same answer without asking (a service that would now say no).
    second, service = client(answer(CanReadResponse(BARE, False)), DecisionCache(path))
    assert await second.can_read(REQUESTER, readout((D2, D3))) == readout((D2,))
    assert service.asked == []


async def test_clear_cache_makes_the_client_ask_again(tmp_path: Path) -> None:
    path = tmp_path / "provisioning.json"
    results = iter([True, False])
    provisioning, service = client(
        lambda q: convert.to_xml(IsFriendResponse(BARE, next(results))), DecisionCache(path)
    )
    assert await provisioning.is_friend(REQUESTER) is True
    provisioning.clear_cache()
    assert await provisioning.is_friend(REQUESTER) is False
    assert len(service.asked) == 2
    assert DecisionCache(path).get(f"friend {BARE}") is False


async def test_corrupted_cache_entries_are_asked_again(tmp_path: Path) -> None:
    """A cache file from another version (or bit rot) must not break the decisions."""
    path = tmp_path / "provisioning.json"
    first, _ = client(answer(CanReadResponse(BARE, True)), DecisionCache(path))
    await first.can_read(REQUESTER, readout((D2,)))
    await first.can_control(REQUESTER, control((D2,), "A"))
    await first.is_friend(REQUESTER)
    responses: dict[type, ProvisioningElement] = {
        IsFriend: IsFriendResponse(BARE, False),
        CanRead: CanReadResponse(BARE, False),
        CanControl: CanControlResponse(BARE, False),
    }
    for bad in ["garbage", ["x"], {"result": "yes"}, {"result": True}, {"result": True,
                "nodes": [[1]], "fields": None, "parameters": None}]:  # fmt: skip
        raw = json.loads(path.read_text())
        path.write_text(json.dumps({key: bad for key in raw}))
        provisioning, service = client(
            lambda q: convert.to_xml(responses[type(q)]), DecisionCache(path)
        )
        assert await provisioning.is_friend(REQUESTER) is False
        assert await provisioning.can_read(REQUESTER, readout((D2,))) is False
        decision = await provisioning.can_control(REQUESTER, control((D2,), "A"))
        assert decision == ControlDecision(False)
        assert len(service.asked) == 3, bad


async def test_tokens_are_part_of_the_question() -> None:
    """A user token may be what got the answer: without it, the question is a different one."""
    provisioning, service = client(lambda q: convert.to_xml(CanReadResponse(BARE, True)))
    await provisioning.can_read(REQUESTER, readout((D2,), user_tokens=("U1",)))
    await provisioning.can_read(REQUESTER, readout((D2,)))
    await provisioning.can_control(REQUESTER, control((D2,), "A", user_tokens=("U1",)))
    await provisioning.can_control(REQUESTER, control((D2,), "A"))
    assert len(service.asked) == 4


# -- failing closed --------------------------------------------------------------------------------


def ours(local: str, **attrs: str) -> Element:
    return Element(f"{{{convert.NS}}}{local}", attrs)


FAILURES: list[tuple[str, Callable[[], Element | BaseException]]] = [
    ("stanza error", lambda: iq_error("item-not-found")),
    ("forbidden", lambda: iq_error("forbidden")),
    ("iq timeout", lambda: IqTimeout(Iq())),
    ("timeout error", lambda: TimeoutError()),
    ("not our namespace", lambda: Element("isFriendResponse", {"jid": BARE, "result": "true"})),
    ("malformed", lambda: ours("isFriendResponse", jid=BARE)),
    ("bad boolean", lambda: ours("isFriendResponse", jid=BARE, result="y")),
    ("wrong answer", lambda: convert.to_xml(CanControlResponse(BARE, True))),
    ("question as answer", lambda: convert.to_xml(IsFriend(BARE))),
]  # fmt: skip


async def _ask_all(provisioning: ProvisioningClient) -> list[object]:
    """One question of each kind; the wrong-answer cases need the answer to not fit."""
    return [
        await provisioning.is_friend(REQUESTER),
        await provisioning.can_read(REQUESTER, readout((D2,))),
        await provisioning.can_control(REQUESTER, control((D2,), "A")),
    ]


@pytest.mark.parametrize("make", [make for _, make in FAILURES], ids=[n for n, _ in FAILURES])
async def test_failures_deny_are_counted_and_not_cached(
    make: Callable[[], Element | BaseException], caplog: pytest.LogCaptureFixture
) -> None:
    good: dict[type, ProvisioningElement] = {
        IsFriend: IsFriendResponse(BARE, True),
        CanRead: CanReadResponse(BARE, True),
        CanControl: CanControlResponse(BARE, True),
    }
    failing = True

    def respond(question: ProvisioningElement) -> Element | BaseException:
        if failing:
            bad = make()
            # "wrong answer" fits canControl: answer that one with something else.
            fits = isinstance(bad, Element) and bad.tag.endswith("}canControlResponse")
            if isinstance(question, CanControl) and fits:
                return convert.to_xml(IsFriendResponse(BARE, True))
            return bad
        return convert.to_xml(good[type(question)])

    provisioning, service = client(respond)
    with caplog.at_level(logging.WARNING, logger="ncap.provisioning"):
        assert await _ask_all(provisioning) == [False, False, ControlDecision(False)]
    assert provisioning.failures == 3
    assert any("denying" in record.getMessage() for record in caplog.records)
    failing = False  # the service is back: nothing was cached, so it is asked again
    assert await _ask_all(provisioning) == [True, True, ControlDecision(True)]
    assert len(service.asked) == 6
    assert provisioning.failures == 3


async def test_a_silent_service_times_out_to_no() -> None:
    answered = False

    def respond(question: ProvisioningElement) -> Element | None:
        return convert.to_xml(IsFriendResponse(BARE, True)) if answered else None

    provisioning, service = client(respond, timeout_s=0.05)
    async with asyncio.timeout(5):
        assert await provisioning.is_friend(REQUESTER) is False
        assert await provisioning.can_read(REQUESTER, readout()) is False
        assert await provisioning.can_control(REQUESTER, control()) == ControlDecision(False)
    assert provisioning.failures == 3
    assert service.asked[0][2] == 0.05  # the IQ timeout given to ask
    answered = True
    async with asyncio.timeout(5):
        assert await provisioning.is_friend(REQUESTER) is True
    assert provisioning.questions == 4


async def test_other_errors_of_ask_are_not_swallowed() -> None:
    """Only the failures of a question are "no"; a bug in ask stays visible."""
    provisioning, _ = client(lambda q: RuntimeError("bug"))
    with pytest.raises(RuntimeError):
        await provisioning.is_friend(REQUESTER)
