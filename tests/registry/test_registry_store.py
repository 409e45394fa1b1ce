"""The registry's SQLite store: XEP-0347 thing lifecycle and XEP-0324 decisions, on real files."""

from __future__ import annotations

import random
import stat
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ncap.errors import NcapError
from ncap.registry.store import (
    MAX_OPEN_QUESTIONS,
    MAX_SEARCH_COUNT,
    SCHEMA_VERSION,
    ClaimResult,
    RegistryError,
    RegistryStore,
    Rule,
    UpdateOutcome,
)
from xep.xep_0323.model import NodeRef
from xep.xep_0347.model import KEY, MetaTag, SearchOperator, SearchTerm, Thing

GATEWAY = "gw@example.org"
OWNER = "alice@example.org"
OTHER = "mallory@example.org"
SOURCE = "MeteringTopology"
TIM = NodeRef("env", SOURCE)
CHANNEL = NodeRef("env/temp", SOURCE)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[RegistryStore]:
    with RegistryStore(tmp_path / "registry.db", clock=clock) as opened:
        yield opened


def s(name: str, value: str) -> MetaTag:
    return MetaTag.text(name, value)


def n(name: str, value: float) -> MetaTag:
    return MetaTag.number(name, value)


def gateway_tags(key: str = "k3y") -> list[MetaTag]:
    return [s("SN", "394872"), s("MAN", "ncap.example"), n("V", 1.2), s(KEY, key)]


def term(op: SearchOperator, name: str, value: str | float, wildcard: str = "*") -> SearchTerm:
    return SearchTerm(op, name, numeric=not isinstance(value, str), value=value, wildcard=wildcard)


def claimed_gateway(store: RegistryStore, jid: str = GATEWAY, **tags: str) -> None:
    """Register and claim ``jid`` (public) with SN/MAN/V plus the given string tags."""
    extra = [s(name, value) for name, value in tags.items()]
    assert store.register(jid, None, [*gateway_tags(), *extra]) is None
    assert store.claim(OWNER, [*gateway_tags(), *extra]) is not None


# -- register ---------------------------------------------------------------------------------


def test_register_stores_an_unclaimed_record_with_the_key_apart(
    store: RegistryStore, clock: FakeClock
) -> None:
    assert store.register("GW@Example.ORG", None, gateway_tags()) is None
    record = store.get(GATEWAY)
    assert record is not None
    assert record.thing_jid == GATEWAY  # normalised
    assert record.node is None
    assert (record.owner, record.public, record.removed, record.claimed) == (
        None,
        False,
        False,
        False,
    )
    assert record.key == "k3y"
    assert KEY not in {tag.key for tag in record.tags}
    assert [tag.name for tag in record.tags] == ["SN", "MAN", "V"]
    assert record.registered_at == record.updated_at == clock.now
    assert store.owner_of(GATEWAY) is None


def test_re_registration_replaces_every_tag_while_unclaimed(
    store: RegistryStore, clock: FakeClock
) -> None:
    store.register(GATEWAY, None, gateway_tags())
    clock.now += 5
    assert store.register(GATEWAY, None, [s("SN", "other"), s(KEY, "new")]) is None
    record = store.get(GATEWAY)
    assert record is not None
    assert record.tags == (s("SN", "other"),)
    assert record.key == "new"
    assert (record.registered_at, record.updated_at) == (1000.0, 1005.0)
    assert store.claim(OWNER, gateway_tags()) is None  # the old tags no longer claim it


def test_registering_a_claimed_thing_answers_the_owner_and_keeps_the_old_data(
    store: RegistryStore,
) -> None:
    claimed_gateway(store)
    before = store.get(GATEWAY)
    assert store.register(GATEWAY, None, [s("SN", "changed")]) == OWNER
    assert store.get(GATEWAY) == before


def test_register_refuses_misuse_with_registry_errors(store: RegistryStore) -> None:
    with pytest.raises(RegistryError):
        store.register("gw@example.org/res", None, gateway_tags())
    with pytest.raises(RegistryError):
        store.register("", None, gateway_tags())
    with pytest.raises(RegistryError):
        store.register(GATEWAY, None, [s("SN", "1"), s("sn", "2")])  # the same name twice
    with pytest.raises(RegistryError):
        store.register(GATEWAY, None, [n(KEY, 42.0)])
    with pytest.raises(RegistryError):
        store.register(GATEWAY, None, [s(KEY, "")])
    with pytest.raises(RegistryError):
        store.register(GATEWAY, NodeRef(""), [s("SN", "1")])
    assert issubclass(RegistryError, NcapError)
    assert store.get(GATEWAY) is None


# -- claim ------------------------------------------------------------------------------------


def test_claim_matches_exact_tags_in_any_order_and_name_case(store: RegistryStore) -> None:
    store.register(GATEWAY, None, gateway_tags())
    shuffled = [s("key", "k3y"), n("v", 1.2), s("man", "ncap.example"), s("Sn", "394872")]
    result = store.claim("Alice@Example.org", shuffled, public=False)
    assert result == ClaimResult(GATEWAY, None, OWNER)
    record = store.get(GATEWAY)
    assert record is not None
    assert (record.owner, record.public) == (OWNER, False)
    assert store.owner_of(GATEWAY) == OWNER


@pytest.mark.parametrize(
    "tags",
    [
        gateway_tags(key="wrong"),
        gateway_tags()[:-1],  # no key
        [*gateway_tags(), s("ROOM", "1")],  # an extra tag
        [s("SN", "394872"), s("MAN", "ncap.example"), s("V", "1.2"), s(KEY, "k3y")],  # V as str
        [s("SN", "394872"), s("MAN", "NCAP.example"), n("V", 1.2), s(KEY, "k3y")],  # value case
        [*gateway_tags()[:-1], n(KEY, 3.0)],
        [*gateway_tags(), s("sn", "394872")],  # a name twice
    ],
)
def test_claim_with_other_tags_finds_nothing(store: RegistryStore, tags: list[MetaTag]) -> None:
    store.register(GATEWAY, None, gateway_tags())
    assert store.claim(OWNER, tags) is None
    assert store.owner_of(GATEWAY) is None


def test_the_claim_key_is_deleted_and_works_once(store: RegistryStore) -> None:
    store.register(GATEWAY, None, gateway_tags())
    assert store.claim(OWNER, gateway_tags()) is not None
    record = store.get(GATEWAY)
    assert record is not None
    assert record.key is None
    assert store.claim(OWNER, gateway_tags()) is None  # the old key is gone, even for the owner
    assert store.claim(OTHER, gateway_tags()) is None
    # The owner's mine with the remaining tags still matches: idempotent and applies public.
    again = store.claim(OWNER, gateway_tags()[:-1], public=False)
    assert again == ClaimResult(GATEWAY, None, OWNER)
    record = store.get(GATEWAY)
    assert record is not None
    assert not record.public
    assert store.claim(OTHER, gateway_tags()[:-1]) is None  # owned by someone else


def test_an_ambiguous_claim_claims_nothing(store: RegistryStore) -> None:
    store.register("a@example.org", None, gateway_tags())
    store.register("b@example.org", None, gateway_tags())
    assert store.claim(OWNER, gateway_tags()) is None
    store.register("b@example.org", None, gateway_tags(key="other"))
    assert store.claim(OWNER, gateway_tags()) == ClaimResult("a@example.org", None, OWNER)


def test_key_less_nodes_follow_their_concentrator(store: RegistryStore) -> None:
    assert store.register(GATEWAY, TIM, [s("NAME", "env")]) is None
    store.register(GATEWAY, None, gateway_tags())
    assert store.claim(OWNER, [s("NAME", "env")]) is None  # children are not claimable alone

    result = store.claim(OWNER, gateway_tags())
    assert result == ClaimResult(GATEWAY, None, OWNER, (TIM,))
    assert store.owner_of(GATEWAY, TIM) == OWNER
    child = store.get(GATEWAY, TIM)
    assert child is not None
    assert child.follows_concentrator
    assert child.public

    # Registered after the claim: claimed at once, and told so.
    assert store.register(GATEWAY, CHANNEL, [s("NAME", "temp")]) == OWNER
    assert store.owner_of(GATEWAY, CHANNEL) == OWNER
    assert store.register(GATEWAY, CHANNEL, [s("NAME", "changed")]) == OWNER
    assert [record.node for record in store.things_of(OWNER)] == [None, TIM, CHANNEL]


def test_a_node_with_its_own_key_is_claimed_on_its_own(store: RegistryStore) -> None:
    meter = NodeRef("meter", SOURCE, "cache")
    store.register(GATEWAY, None, gateway_tags())
    store.register(GATEWAY, meter, [s("SN", "m1"), s(KEY, "meterkey")])
    assert store.claim(OTHER, [s("SN", "m1"), s(KEY, "meterkey")]) == ClaimResult(
        GATEWAY, meter, OTHER
    )
    store.claim(OWNER, gateway_tags())
    assert store.owner_of(GATEWAY, meter) == OTHER  # not taken over by the concentrator's claim
    assert store.owner_of(GATEWAY, NodeRef("meter", SOURCE)) is None  # another record
    assert store.disown(OWNER, GATEWAY, None)
    assert store.owner_of(GATEWAY, meter) == OTHER


def test_a_self_owned_thing_is_public_at_once_and_not_claimable(store: RegistryStore) -> None:
    assert store.register(GATEWAY, None, gateway_tags(), self_owned=True) is None
    record = store.get(GATEWAY)
    assert record is not None
    assert (record.owner, record.public, record.self_owned, record.key) == (
        GATEWAY,
        True,
        True,
        None,
    )
    assert store.claim(OWNER, gateway_tags()) is None
    assert store.claim(OWNER, gateway_tags()[:-1]) is None
    found, more = store.search([term(SearchOperator.EQ, "SN", "394872")], 0, 10)
    assert found == [Thing(GATEWAY, tuple(gateway_tags()[:-1]), GATEWAY, None)]
    assert not more
    assert store.register(GATEWAY, TIM, [s("NAME", "env")]) == GATEWAY


def test_a_concentrator_becoming_self_owned_takes_its_earlier_children(
    store: RegistryStore,
) -> None:
    store.register(GATEWAY, TIM, [s("NAME", "env")])
    store.register(GATEWAY, None, gateway_tags())
    store.register(GATEWAY, None, gateway_tags(), self_owned=True)  # still unclaimed: replaced
    assert store.owner_of(GATEWAY, TIM) == GATEWAY
    assert [thing.node for thing in store.search([], 0, 10)[0]] == [None, TIM]


# -- search -----------------------------------------------------------------------------------


@pytest.fixture
def catalogue(store: RegistryStore) -> RegistryStore:
    for index, (man, version, room) in enumerate(
        [("ncap.example", 1.0, "lab"), ("ncap.example", 1.5, "hall"), ("other.example", 2.0, "lab")]
    ):
        tags = [s("MAN", man), n("V", version), s("ROOM", room), s("SN", f"SN-{index}-77")]
        store.register(f"t{index}@example.org", None, [*tags, s(KEY, f"key{index}")])
        assert store.claim(OWNER, [*tags, s(KEY, f"key{index}")]) is not None
    store.register("unclaimed@example.org", None, [s("MAN", "ncap.example"), s(KEY, "x")])
    store.register("private@example.org", None, [s("MAN", "ncap.example"), s(KEY, "p")])
    store.claim(OWNER, [s("MAN", "ncap.example"), s(KEY, "p")], public=False)
    return store


def found_jids(store: RegistryStore, *terms: SearchTerm) -> list[str]:
    found, _more = store.search(list(terms), 0, 100)
    return [thing.jid for thing in found]


def test_search_finds_only_claimed_public_things_with_the_and_of_terms(
    catalogue: RegistryStore,
) -> None:
    eq = SearchOperator
    assert found_jids(catalogue, term(eq.EQ, "man", "ncap.example")) == [
        "t0@example.org",
        "t1@example.org",
    ]
    assert found_jids(catalogue, term(eq.NEQ, "MAN", "ncap.example")) == ["t2@example.org"]
    assert found_jids(catalogue, term(eq.EQ, "ROOM", "lab"), term(eq.GT, "V", 1.0)) == [
        "t2@example.org"
    ]
    assert found_jids(catalogue, term(eq.GTEQ, "V", 1.5)) == ["t1@example.org", "t2@example.org"]
    assert found_jids(catalogue, term(eq.LT, "V", 1.5)) == ["t0@example.org"]
    assert found_jids(catalogue, term(eq.LTEQ, "ROOM", "hall")) == ["t1@example.org"]
    assert found_jids(catalogue, term(eq.MASK, "SN", "SN-*-7?", wildcard="?")) == []
    assert found_jids(catalogue, term(eq.MASK, "SN", "*1-7*")) == ["t1@example.org"]
    ranged = SearchTerm(eq.RANGE, "V", numeric=True, low=1.0, high=2.0, high_included=False)
    assert found_jids(catalogue, ranged) == ["t0@example.org", "t1@example.org"]
    outside = SearchTerm(eq.NRANGE, "V", numeric=True, low=1.0, high=1.5)
    assert found_jids(catalogue, outside) == ["t2@example.org"]
    assert found_jids(catalogue, term(eq.EQ, "V", "1.0")) == []  # a string term on a number
    assert found_jids(catalogue, term(eq.EQ, "NOSUCH", "x")) == []


def test_search_results_carry_owner_node_and_never_the_key(store: RegistryStore) -> None:
    claimed_gateway(store)
    store.register(GATEWAY, TIM, [s("MAN", "ncap.example"), s("NAME", "env")])
    found, more = store.search([term(SearchOperator.EQ, "MAN", "ncap.example")], 0, 10)
    assert [(thing.jid, thing.node, thing.owner) for thing in found] == [
        (GATEWAY, None, OWNER),
        (GATEWAY, TIM, OWNER),
    ]
    assert all(tag.key != KEY for thing in found for tag in thing.tags)
    assert not more


def test_any_term_on_the_key_finds_nothing(store: RegistryStore) -> None:
    store.register(GATEWAY, None, gateway_tags(), self_owned=False)
    store.claim(OWNER, gateway_tags())
    store.register("self@example.org", None, [s("SN", "1"), s(KEY, "sk")], self_owned=True)
    assert found_jids(store, term(SearchOperator.EQ, "SN", "1")) == ["self@example.org"]
    assert found_jids(store, term(SearchOperator.MASK, "key", "*")) == []
    assert (
        found_jids(store, term(SearchOperator.EQ, "SN", "1"), term(SearchOperator.NEQ, KEY, ""))
        == []
    )


def test_search_pages_with_offset_and_more(store: RegistryStore) -> None:
    for index in range(7):
        store.register(
            f"t{index}@example.org", None, [s("MAN", "m"), s("SN", str(index))], self_owned=True
        )
    anything = [term(SearchOperator.EQ, "MAN", "m")]
    pages = []
    offset = 0
    while True:
        found, more = store.search(anything, offset, 3)
        pages.append([thing.jid[:2] for thing in found])
        offset += len(found)
        if not more:
            break
    assert pages == [["t0", "t1", "t2"], ["t3", "t4", "t5"], ["t6"]]
    assert store.search(anything, 7, 3) == ([], False)
    assert store.search(anything, 6, 1)[1] is False
    assert store.search(anything, 5, 1)[1] is True
    with pytest.raises(RegistryError):
        store.search(anything, -1, 3)
    with pytest.raises(RegistryError):
        store.search(anything, 0, 0)


def test_search_caps_max_count(store: RegistryStore) -> None:
    for index in range(MAX_SEARCH_COUNT + 1):
        store.register(f"t{index:03}@example.org", None, [s("MAN", "m")], self_owned=True)
    found, more = store.search([], 0, 10_000)
    assert len(found) == MAX_SEARCH_COUNT
    assert more


# -- remove, update, unregister, disown -------------------------------------------------------


def test_remove_hides_the_thing_and_its_children_for_the_owner_only(store: RegistryStore) -> None:
    store.register(GATEWAY, TIM, [s("MAN", "ncap.example")])
    claimed_gateway(store)
    assert not store.remove(OTHER, GATEWAY, None)
    assert not store.remove(OWNER, "nobody@example.org", None)
    assert len(found_jids(store, term(SearchOperator.EQ, "MAN", "ncap.example"))) == 2
    assert store.remove(OWNER, GATEWAY, None)
    assert found_jids(store, term(SearchOperator.EQ, "MAN", "ncap.example")) == []
    child = store.get(GATEWAY, TIM)
    assert child is not None
    assert child.removed
    assert store.owner_of(GATEWAY) == OWNER  # still owned
    assert store.update(GATEWAY, None, [s("ROOM", "1")], by=GATEWAY) is UpdateOutcome.NOT_FOUND
    assert store.register(GATEWAY, CHANNEL, [s("MAN", "ncap.example")]) == OWNER
    late_child = store.get(GATEWAY, CHANNEL)
    assert late_child is not None
    assert late_child.removed


def test_update_merges_and_an_empty_string_removes(store: RegistryStore, clock: FakeClock) -> None:
    claimed_gateway(store, ROOM="lab")
    clock.now += 10
    outcome = store.update(
        GATEWAY, None, [s("room", ""), n("V", 2.0), s("NAME", "gw"), s("GONE", "")], by=GATEWAY
    )
    assert outcome is UpdateOutcome.UPDATED
    record = store.get(GATEWAY)
    assert record is not None
    assert record.tags == (
        s("SN", "394872"),
        s("MAN", "ncap.example"),
        n("V", 2.0),
        s("NAME", "gw"),
    )
    assert record.updated_at == 1010.0
    # The owner may update too; a numeric tag may replace a string one.
    assert store.update(GATEWAY, None, [n("SN", 5.0)], by=OWNER) is UpdateOutcome.UPDATED
    record = store.get(GATEWAY)
    assert record is not None
    assert record.tags[0] == n("SN", 5.0)


def test_update_outcomes(store: RegistryStore) -> None:
    tags = [s("ROOM", "1")]
    assert store.update(GATEWAY, None, tags, by=GATEWAY) is UpdateOutcome.NOT_FOUND
    store.register(GATEWAY, None, gateway_tags())
    assert store.update(GATEWAY, None, tags, by=GATEWAY) is UpdateOutcome.DISOWNED
    assert store.update(GATEWAY, None, tags, by=OTHER) is UpdateOutcome.NOT_FOUND
    store.claim(OWNER, gateway_tags())
    assert store.update(GATEWAY, None, tags, by=OTHER) is UpdateOutcome.NOT_FOUND
    assert store.update(GATEWAY, TIM, tags, by=GATEWAY) is UpdateOutcome.NOT_FOUND
    assert store.update(GATEWAY, None, tags, by=GATEWAY) is UpdateOutcome.UPDATED


def test_update_refuses_to_set_a_key_but_accepts_blanking_it(store: RegistryStore) -> None:
    claimed_gateway(store)
    with pytest.raises(RegistryError):
        store.update(GATEWAY, None, [s(KEY, "again")], by=GATEWAY)
    with pytest.raises(RegistryError):
        store.update(GATEWAY, None, [n("key", 1.0)], by=OWNER)
    with pytest.raises(RegistryError):
        store.update(GATEWAY, None, [s("A", "1"), s("a", "2")], by=OWNER)
    assert store.update(GATEWAY, None, [s("key", "")], by=GATEWAY) is UpdateOutcome.UPDATED
    record = store.get(GATEWAY)
    assert record is not None
    assert record.key is None


def test_unregister_deletes_the_concentrator_its_children_and_its_decisions(
    store: RegistryStore,
) -> None:
    meter = NodeRef("meter")
    store.register(GATEWAY, TIM, [s("NAME", "env")])
    store.register(GATEWAY, meter, [s("SN", "m"), s(KEY, "mk")])
    claimed_gateway(store)
    store.set_rule(Rule(GATEWAY, OTHER, "friend", True))
    store.ask(GATEWAY, OWNER, OTHER, "read")
    store.note_asked(GATEWAY, OTHER)

    store.unregister(GATEWAY, TIM)
    assert store.get(GATEWAY, TIM) is None
    assert store.rules_for(GATEWAY) != []  # the concentrator is still owned

    store.register(GATEWAY, TIM, [s("NAME", "env")])
    store.unregister(GATEWAY, None)
    assert store.get(GATEWAY) is None
    assert store.get(GATEWAY, TIM) is None
    assert store.get(GATEWAY, meter) is not None  # independent node
    assert store.rules_for(GATEWAY) == []
    assert store.open_questions(OWNER) == []
    assert not store.has_asked(GATEWAY, OTHER)
    store.unregister("never@example.org", None)  # nothing to do, no error


def test_disown_resets_the_thing_with_a_fresh_key_and_forgets_decisions(
    store: RegistryStore,
) -> None:
    store.register(GATEWAY, TIM, [s("NAME", "env")])
    claimed_gateway(store)
    store.set_rule(Rule(GATEWAY, OTHER, "read", True, nodes=("env",), names=("temp",)))
    store.ask(GATEWAY, OWNER, OTHER, "control")
    store.note_asked(GATEWAY, OTHER)
    assert not store.disown(OTHER, GATEWAY, None)
    assert not store.disown(OWNER, "nobody@example.org", None)

    assert store.disown(OWNER, GATEWAY, None)
    record = store.get(GATEWAY)
    assert record is not None
    assert (record.owner, record.public, record.removed, record.tags) == (None, False, False, ())
    assert record.key is not None
    assert len(record.key) == 32
    int(record.key, 16)
    child = store.get(GATEWAY, TIM)
    assert child is not None
    assert (child.owner, child.tags, child.key) == (None, (), None)
    assert store.rules_for(GATEWAY) == []
    assert store.open_questions(OWNER) == []
    assert store.has_asked(GATEWAY, OTHER)  # what the thing did stays true
    assert store.things_of(OWNER) == []
    assert found_jids(store, term(SearchOperator.EQ, "SN", "394872")) == []
    assert store.claim(OWNER, gateway_tags()[:-1]) is None  # old public data claims nothing
    assert store.update(GATEWAY, None, [s("A", "1")], by=GATEWAY) is UpdateOutcome.DISOWNED

    # Every disown draws a new key; registering again makes the thing claimable again.
    first_key = record.key
    store.register(GATEWAY, None, gateway_tags())
    store.claim(OWNER, gateway_tags())
    store.disown(OWNER, GATEWAY, None)
    again = store.get(GATEWAY)
    assert again is not None
    assert again.key not in (None, first_key)


def test_disowning_one_node_keeps_the_concentrators_decisions(store: RegistryStore) -> None:
    meter = NodeRef("meter")
    store.register(GATEWAY, meter, [s("SN", "m"), s(KEY, "mk")])
    assert store.claim(OTHER, [s("SN", "m"), s(KEY, "mk")]) is not None
    claimed_gateway(store)
    store.set_rule(Rule(GATEWAY, "bob@example.org", "friend", True))
    store.ask(GATEWAY, OTHER, "bob@example.org", "read", nodes=["meter"])
    assert store.disown(OTHER, GATEWAY, meter)
    assert store.rules_for(GATEWAY) != []
    assert store.open_questions(OTHER) == []  # OTHER owns nothing of the JID any more
    record = store.get(GATEWAY, meter)
    assert record is not None
    assert record.key is not None
    assert record.owner is None


# -- provisioning rules and questions ---------------------------------------------------------


def test_rules_are_set_replaced_listed_and_deleted(store: RegistryStore) -> None:
    stored = store.set_rule(Rule("GW@example.org", "Bob@Example.org", "read", True, ("env",)))
    assert stored == Rule(GATEWAY, "bob@example.org", "read", True, ("env",), None)
    assert store.rule(GATEWAY, "bob@example.org", "read") == stored
    replaced = Rule(GATEWAY, "bob@example.org", "read", False)
    store.set_rule(replaced)
    assert store.rule(GATEWAY, "BOB@example.org", "read") == replaced
    store.set_rule(Rule(GATEWAY, "bob@example.org", "control", True, None, ("setpoint",)))
    store.set_rule(Rule(GATEWAY, "amy@example.org", "friend", True))
    assert [(rule.requester_jid, rule.kind) for rule in store.rules_for(GATEWAY)] == [
        ("amy@example.org", "friend"),
        ("bob@example.org", "control"),
        ("bob@example.org", "read"),
    ]
    assert store.rule(GATEWAY, "bob@example.org", "friend") is None
    assert store.delete_rule(GATEWAY, "bob@example.org", "read")
    assert not store.delete_rule(GATEWAY, "bob@example.org", "read")
    assert store.rule(GATEWAY, "bob@example.org", "read") is None
    assert store.rule(GATEWAY, "bob@example.org", "control") == Rule(
        GATEWAY, "bob@example.org", "control", True, None, ("setpoint",)
    )


def test_rules_refuse_misuse(store: RegistryStore) -> None:
    with pytest.raises(RegistryError):
        store.set_rule(Rule(GATEWAY, OTHER, "write", True))  # type: ignore[arg-type]
    with pytest.raises(RegistryError):
        store.set_rule(Rule(GATEWAY, OTHER, "friend", True, nodes=("env",)))
    with pytest.raises(RegistryError):
        store.set_rule(Rule(GATEWAY, OTHER, "read", True, names="temp"))  # type: ignore[arg-type]
    with pytest.raises(RegistryError):
        store.set_rule(Rule(GATEWAY, "bob@example.org/phone", "read", True))
    with pytest.raises(RegistryError):
        store.rule(GATEWAY, OTHER, "bogus")  # type: ignore[arg-type]


def test_asking_again_reuses_the_open_question(store: RegistryStore, clock: FakeClock) -> None:
    question, new = store.ask(GATEWAY, OWNER, "Bob@example.org", "read", ["env"], ["temp"])
    assert new
    assert (question.requester_jid, question.nodes, question.names) == (
        "bob@example.org",
        ("env",),
        ("temp",),
    )
    assert (question.created_at, question.answered) == (clock.now, False)
    clock.now += 1
    again, new = store.ask(GATEWAY, OWNER, "bob@example.org", "read", ["other"])
    assert (again, new) == (question, False)
    other_kind, new = store.ask(GATEWAY, OWNER, "bob@example.org", "control")
    assert new
    assert other_kind.id != question.id
    assert store.open_questions(OWNER) == [question, other_kind]
    assert store.question(question.id) == question

    assert store.close_question(question.id)
    assert not store.close_question(question.id)
    assert not store.close_question(999_999)
    closed = store.question(question.id)
    assert closed is not None
    assert closed.answered
    assert store.open_questions(OWNER) == [other_kind]
    _asked, new = store.ask(GATEWAY, OWNER, "bob@example.org", "read")
    assert new  # once answered, a new request is a new question
    assert store.question(424242) is None


def test_open_questions_per_owner_are_bounded_dropping_the_oldest(store: RegistryStore) -> None:
    first, _ = store.ask(GATEWAY, OWNER, "r0@example.org", "friend")
    for index in range(1, MAX_OPEN_QUESTIONS + 5):
        store.ask(GATEWAY, OWNER, f"r{index}@example.org", "friend")
    store.ask(GATEWAY, OTHER, "x@example.org", "friend")
    open_now = store.open_questions(OWNER)
    assert len(open_now) == MAX_OPEN_QUESTIONS
    assert open_now[0].requester_jid == "r5@example.org"
    assert open_now[-1].requester_jid == f"r{MAX_OPEN_QUESTIONS + 4}@example.org"
    assert store.question(first.id) is None
    assert len(store.open_questions(OTHER)) == 1


def test_is_friend_notes(store: RegistryStore) -> None:
    assert not store.has_asked(GATEWAY, OTHER)
    store.note_asked("GW@example.org", OTHER)
    store.note_asked(GATEWAY, OTHER)
    assert store.has_asked(GATEWAY, "Mallory@example.org")
    assert not store.has_asked(GATEWAY, OWNER)


def test_failed_claims_are_counted_in_a_window_and_pruned(store: RegistryStore) -> None:
    for at in (10.0, 20.0, 30.0, 40.0):
        store.note_failed_claim("Mallory@example.org", at)
    store.note_failed_claim(OWNER, 15.0)
    assert store.failed_claims(OTHER, since=0.0) == 4
    assert store.failed_claims(OTHER, since=25.0) == 2
    assert store.failed_claims(OTHER, since=0.0) == 2  # older rows were pruned
    assert store.failed_claims(OWNER, since=0.0) == 0
    assert store.failed_claims("nobody@example.org", since=0.0) == 0


# -- the file ---------------------------------------------------------------------------------


def test_the_database_and_its_wal_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    with RegistryStore(path) as store:
        claimed_gateway(store)
        files = [path, path.with_name("registry.db-wal"), path.with_name("registry.db-shm")]
        for file in files:
            assert file.exists(), file
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file


def test_an_existing_database_is_tightened_to_0600(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    RegistryStore(path).close()
    path.chmod(0o644)
    RegistryStore(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_reopening_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    with RegistryStore(path) as store:
        store.register(GATEWAY, TIM, [s("NAME", "env")])
        claimed_gateway(store)
        store.set_rule(Rule(GATEWAY, OTHER, "read", False))
        question, _ = store.ask(GATEWAY, OWNER, OTHER, "friend")
        store.note_asked(GATEWAY, OTHER)
        before = [store.get(GATEWAY), store.get(GATEWAY, TIM)]
    with RegistryStore(path) as store:
        assert [store.get(GATEWAY), store.get(GATEWAY, TIM)] == before
        assert store.rule(GATEWAY, OTHER, "read") == Rule(GATEWAY, OTHER, "read", False)
        assert store.open_questions(OWNER) == [question]
        assert store.has_asked(GATEWAY, OTHER)
        assert store._db is not None
        assert store._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_newer_schema_or_a_broken_file_is_a_registry_error(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    with RegistryStore(path) as store:
        assert store._db is not None
        store._db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(RegistryError, match="schema version"):
        RegistryStore(path)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database at all, just text " * 100)
    with pytest.raises(RegistryError):
        RegistryStore(garbage)
    with pytest.raises(RegistryError):
        RegistryStore(tmp_path / "no" / "such" / "dir.db")


def test_calls_from_worker_threads_are_serialised(store: RegistryStore) -> None:
    def register(index: int) -> str | None:
        return store.register(f"t{index}@example.org", None, [s("MAN", "m")], self_owned=True)

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(register, range(40), timeout=30)) == [None] * 40
    assert len(store.search([], 0, 100)[0]) == 40


def test_a_closed_store_refuses_calls(tmp_path: Path) -> None:
    store = RegistryStore(tmp_path / "registry.db")
    store.close()
    store.close()
    with pytest.raises(RegistryError, match="closed"):
        store.register(GATEWAY, None, gateway_tags())
    with pytest.raises(RegistryError, match="closed"):
        store.search([], 0, 10)


# -- property: any registration can be claimed with its own tags -------------------------------

_NAME_CHARS = st.characters(
    codec="utf-8", exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp"), exclude_characters=":#=<>;"
)
_names = st.text(_NAME_CHARS, min_size=1, max_size=32).filter(
    lambda name: name.upper() != KEY and name.strip() == name and not any(c.isspace() for c in name)
)
_values = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=128),
    st.floats(allow_nan=False, allow_infinity=False),
)


def _tag_sets() -> st.SearchStrategy[list[MetaTag]]:
    def build(named: dict[str, str | float]) -> list[MetaTag]:
        tags = []
        for name, value in named.items():
            try:
                tags.append(MetaTag(name, value))
            except ValueError:
                continue  # a name MetaTag refuses (e.g. a character XML cannot carry)
        return tags

    unique = st.dictionaries(_names, _values, max_size=12, dict_class=dict).map(
        lambda named: {
            name: named[name] for name in {name.upper(): name for name in named}.values()
        }
    )
    return unique.map(build)


def _recased(tag: MetaTag) -> str:
    """The name in swapped case when that is the same name to the registry (and as long)."""
    swapped = tag.name.swapcase()
    same = len(swapped) == len(tag.name) and swapped.upper() == tag.key
    return swapped if same else tag.name


_keys = st.text(st.characters(codec="ascii", categories=("L", "N")), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(tags=_tag_sets(), key=_keys, seed=st.integers(0, 2**32))
def test_any_registration_round_trips_through_register_claim_and_search(
    tags: list[MetaTag], key: str, seed: int
) -> None:
    shuffled = [*tags, MetaTag(KEY, key)]
    random.Random(seed).shuffle(shuffled)
    recased = [MetaTag(_recased(tag), tag.value) for tag in shuffled]
    with tempfile.TemporaryDirectory() as workdir, RegistryStore(Path(workdir) / "r.db") as store:
        assert store.register(GATEWAY, TIM, [*tags, MetaTag(KEY, key)]) is None
        record = store.get(GATEWAY, TIM)
        assert record is not None
        assert record.tags == tuple(tags)
        if tags:
            changed = [*recased[1:], MetaTag(recased[0].name, "x" if recased[0].numeric else 1.0)]
            assert store.claim(OWNER, changed) is None
        assert store.claim(OWNER, recased) == ClaimResult(GATEWAY, TIM, OWNER)
        found, more = store.search([], 0, 10)
        assert found == [Thing(GATEWAY, tuple(tags), OWNER, TIM)]
        assert not more
