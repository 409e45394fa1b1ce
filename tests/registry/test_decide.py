"""The registry's XEP-0324 decisions (``Decider``) over a real ``RegistryStore`` file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ncap.registry.decide import Decider, Verdict
from ncap.registry.store import Kind, RegistryStore, Rule
from xep.xep_0323.model import NodeRef
from xep.xep_0347.model import KEY, MetaTag

THING = "gw@example.org"
OWNER = "alice@example.org"
BOB = "bob@example.org"
CAROL = "carol@example.org"
UNCLAIMED = "fresh@example.org"
D2, D3, D4 = NodeRef("D2"), NodeRef("D3"), NodeRef("D4")
D2_S = NodeRef("D2", "S")


def tags(key: str) -> list[MetaTag]:
    return [MetaTag.text("SN", key.upper()), MetaTag.text(KEY, key)]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RegistryStore]:
    with RegistryStore(tmp_path / "registry.db") as opened:
        assert opened.register(THING, None, tags("k1")) is None
        assert opened.claim(OWNER, tags("k1")) is not None
        assert opened.register(UNCLAIMED, None, tags("k2")) is None
        yield opened


@pytest.fixture
def decider(store: RegistryStore) -> Decider:
    return Decider(store)


def ask(decider: Decider, kind: Kind, requester: str = BOB, nodes=(), names=()) -> Verdict:  # type: ignore[no-untyped-def]
    if kind == "friend":
        return decider.is_friend(THING, requester)
    if kind == "read":
        return decider.can_read(THING, requester, nodes, names)
    return decider.can_control(THING, requester, nodes, names)


KINDS: list[Kind] = ["friend", "read", "control"]


# -- who is always or never allowed ---------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_the_owner_is_always_allowed(decider: Decider, store: RegistryStore, kind: Kind) -> None:
    store.set_rule(Rule(THING, OWNER, kind, False))  # not even a rule stops the owner
    assert ask(decider, kind, OWNER, (D2,), ("T",)) == Verdict(True)
    assert store.open_questions(OWNER) == []


def test_the_thing_is_its_own_friend(decider: Decider) -> None:
    assert decider.is_friend(THING, THING) == Verdict(True)


@pytest.mark.parametrize("kind", KINDS)
def test_an_unclaimed_or_unknown_thing_gets_no(decider: Decider, kind: Kind) -> None:
    for thing in (UNCLAIMED, "nobody@example.org"):
        if kind == "friend":
            verdict = decider.is_friend(thing, BOB)
        elif kind == "read":
            verdict = decider.can_read(thing, BOB, (), ())
        else:
            verdict = decider.can_control(thing, BOB, (), ())
        assert verdict == Verdict(False)


# -- unknown requesters: no, and the owner is asked once ------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_an_unknown_requester_gets_no_and_one_question(
    decider: Decider, store: RegistryStore, kind: Kind
) -> None:
    first = ask(decider, kind, BOB, (D2, D2_S), ("T",))
    assert first.allowed is False
    question = first.question
    assert question is not None
    assert (question.thing_jid, question.owner_jid, question.requester_jid, question.kind) == (
        THING,
        OWNER,
        BOB,
        kind,
    )
    assert not question.answered
    if kind != "friend":
        assert question.nodes == ("D2", "D2")
        assert question.names == ("T",)
    # Asking again (even about something else) creates no new question.
    again = ask(decider, kind, BOB, (D3,), ("P",))
    assert again == Verdict(False)
    assert store.open_questions(OWNER) == [question]


def test_each_kind_and_requester_gets_its_own_question(
    decider: Decider, store: RegistryStore
) -> None:
    for requester in (BOB, CAROL):
        for kind in KINDS:
            assert ask(decider, kind, requester).question is not None
    assert len(store.open_questions(OWNER)) == 6


def test_a_question_for_everything_has_no_nodes_or_names(decider: Decider) -> None:
    question = decider.can_read(THING, BOB, (), ()).question
    assert question is not None
    assert (question.nodes, question.names) == (None, None)


def test_is_friend_notes_who_was_asked_about(decider: Decider, store: RegistryStore) -> None:
    assert not store.has_asked(THING, BOB)
    decider.is_friend(THING, BOB)
    assert store.has_asked(THING, BOB)


# -- the owner's answers become rules -------------------------------------------------------------


def test_allowing_a_read_writes_a_narrowed_read_rule_and_friendship(
    decider: Decider, store: RegistryStore
) -> None:
    question = decider.can_read(THING, BOB, (D2,), ("T", "P")).question
    assert question is not None
    rules = decider.answer(question, True)
    assert rules == [
        Rule(THING, BOB, "read", True, ("D2",), ("T", "P")),
        Rule(THING, BOB, "friend", True),
    ]
    assert store.rules_for(THING) == [
        Rule(THING, BOB, "friend", True),
        Rule(THING, BOB, "read", True, ("D2",), ("T", "P")),
    ]
    assert store.open_questions(OWNER) == []
    closed = store.question(question.id)
    assert closed is not None
    assert closed.answered
    assert decider.can_read(THING, BOB, (D2,), ("T", "P")) == Verdict(True, (D2,), ("T", "P"))
    assert decider.can_read(THING, BOB, (), ()) == Verdict(True, (D2,), ("T", "P"))
    assert decider.is_friend(THING, BOB) == Verdict(True)


def test_the_owner_may_narrow_the_names_when_allowing(decider: Decider) -> None:
    question = decider.can_control(THING, BOB, (D2,), ("A", "B")).question
    assert question is not None
    rules = decider.answer(question, True, ("B",))
    assert rules[0] == Rule(THING, BOB, "control", True, ("D2",), ("B",))
    assert decider.can_control(THING, BOB, (D2,), ("A", "B")) == Verdict(True, (D2,), ("B",))
    assert decider.can_control(THING, BOB, (D2,), ("A",)) == Verdict(False)


@pytest.mark.parametrize("kind", KINDS)
def test_denying_writes_a_deny_rule_and_asks_no_more(
    decider: Decider, store: RegistryStore, kind: Kind
) -> None:
    question = ask(decider, kind).question
    assert question is not None
    assert decider.answer(question, False) == [Rule(THING, BOB, kind, False)]
    assert ask(decider, kind) == Verdict(False)
    assert store.open_questions(OWNER) == []


def test_allowing_a_friendship_with_names_adds_a_read_rule(
    decider: Decider, store: RegistryStore
) -> None:
    question = decider.is_friend(THING, BOB).question
    assert question is not None
    assert decider.answer(question, True, ("T",)) == [
        Rule(THING, BOB, "friend", True),
        Rule(THING, BOB, "read", True, None, ("T",)),
    ]
    assert decider.is_friend(THING, BOB) == Verdict(True)
    assert decider.can_read(THING, BOB, (D2,), ()) == Verdict(True, None, ("T",))
    # Control was never allowed: that is a new question.
    assert decider.can_control(THING, BOB, (), ()).question is not None


def test_allowing_a_plain_friendship_writes_only_the_friend_rule(decider: Decider) -> None:
    question = decider.is_friend(THING, BOB).question
    assert question is not None
    assert decider.answer(question, True) == [Rule(THING, BOB, "friend", True)]
    read = decider.can_read(THING, BOB, (), ())
    assert read.allowed is False
    assert read.question is not None


# -- standing rules: narrowing ---------------------------------------------------------------------

READ_RULE = Rule(THING, BOB, "read", True, ("D2", "D3"), ("T", "P"))

NARROWING: list[tuple[str, tuple[NodeRef, ...], tuple[str, ...], Verdict]] = [
    ("everything becomes the rule", (), (), Verdict(True, (D2, D3), ("T", "P"))),
    ("asked nodes and fields are cut", (D2, D4), ("T", "Q"), Verdict(True, (D2,), ("T",))),
    ("a node id covers every source", (D2_S, D4), ("P",), Verdict(True, (D2_S,), ("P",))),
    ("only allowed ones asked", (D3,), ("P", "T"), Verdict(True, (D3,), ("P", "T"))),
    ("no allowed node left", (D4,), ("T",), Verdict(False)),
    ("no allowed field left", (D2,), ("Q",), Verdict(False)),
]


@pytest.mark.parametrize(
    ("nodes", "fields", "expected"),
    [case[1:] for case in NARROWING],
    ids=[case[0] for case in NARROWING],
)
def test_read_rule_narrowing(
    decider: Decider,
    store: RegistryStore,
    nodes: tuple[NodeRef, ...],
    fields: tuple[str, ...],
    expected: Verdict,
) -> None:
    store.set_rule(READ_RULE)
    assert decider.can_read(THING, BOB, nodes, fields) == expected
    assert store.open_questions(OWNER) == []  # a standing rule never asks


def test_control_rule_narrowing(decider: Decider, store: RegistryStore) -> None:
    store.set_rule(Rule(THING, BOB, "control", True, None, ("Output",)))
    assert decider.can_control(THING, BOB, (D2,), ("Output", "Mode")) == Verdict(
        True, None, ("Output",)
    )
    assert decider.can_control(THING, BOB, (D2,), ("Mode",)) == Verdict(False)
    store.set_rule(Rule(THING, BOB, "control", True, ("D3",), None))
    assert decider.can_control(THING, BOB, (D2, D3), ("Mode",)) == Verdict(True, (D3,), None)
    assert decider.can_control(THING, BOB, (D2,), ("Mode",)) == Verdict(False)


def test_an_unnarrowed_rule_allows_everything_asked(decider: Decider, store: RegistryStore) -> None:
    store.set_rule(Rule(THING, BOB, "read", True))
    assert decider.can_read(THING, BOB, (D2,), ("T",)) == Verdict(True, None, None)


def test_rules_are_per_requester_and_kind(decider: Decider, store: RegistryStore) -> None:
    store.set_rule(Rule(THING, BOB, "read", True))
    assert decider.can_read(THING, CAROL, (), ()).question is not None
    assert decider.can_control(THING, BOB, (), ()).question is not None


# -- friendship implied by granting rules ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["read", "control"])
def test_an_allowing_rule_implies_friendship(
    decider: Decider, store: RegistryStore, kind: Kind
) -> None:
    store.set_rule(Rule(THING, BOB, kind, True, ("D2",), ("T",)))
    assert decider.is_friend(THING, BOB) == Verdict(True)
    assert store.open_questions(OWNER) == []


def test_a_denying_rule_implies_nothing(decider: Decider, store: RegistryStore) -> None:
    store.set_rule(Rule(THING, BOB, "read", False))
    verdict = decider.is_friend(THING, BOB)
    assert verdict.allowed is False
    assert verdict.question is not None


def test_an_explicit_friend_rule_wins(decider: Decider, store: RegistryStore) -> None:
    store.set_rule(Rule(THING, BOB, "read", True))
    store.set_rule(Rule(THING, BOB, "friend", False))
    assert decider.is_friend(THING, BOB) == Verdict(False)
    assert store.open_questions(OWNER) == []


def test_decisions_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    with RegistryStore(path) as store:
        store.register(THING, None, tags("k1"))
        store.claim(OWNER, tags("k1"))
        question = Decider(store).can_read(THING, BOB, (D2,), ()).question
        assert question is not None
        Decider(store).answer(question, True)
    with RegistryStore(path) as store:
        assert Decider(store).can_read(THING, BOB, (D2, D3), ()) == Verdict(True, (D2,), None)
        assert Decider(store).is_friend(THING, BOB) == Verdict(True)
