"""Provisioning decisions of the registry (XEP-0324), from the owners' rules; no I/O.

The owner of a thing may do everything. Anyone else gets what the owner's standing rule for
them says; without a rule the answer is *no* and the owner is asked (once per requester, thing
and kind: see :meth:`RegistryStore.ask`). A rule may narrow reading to some nodes and fields and
control to some nodes and parameters; a narrowing that leaves nothing of the request is a no.
A read rule that allows anything also makes the requester a friend (reading without being able
to see the thing online would be odd), and so does a control rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ncap.registry.store import Kind, Question, RegistryStore, Rule
from xep.xep_0323.model import NodeRef


@dataclass(frozen=True, slots=True)
class Verdict:
    """``allowed`` plus the narrowing to report (None: everything asked). ``question`` is the
    owner question created for this request, when one was newly created."""

    allowed: bool
    nodes: tuple[NodeRef, ...] | None = None
    names: tuple[str, ...] | None = None
    question: Question | None = None


def _narrow_nodes(
    asked: Sequence[NodeRef], allowed: tuple[str, ...] | None
) -> tuple[NodeRef, ...] | None:
    """The nodes to report: None (all asked), or the allowed subset (possibly empty)."""
    if allowed is None:
        return None
    if not asked:
        return tuple(NodeRef(node_id) for node_id in allowed)
    return tuple(ref for ref in asked if ref.node_id in allowed)


def _narrow_names(asked: Sequence[str], allowed: tuple[str, ...] | None) -> tuple[str, ...] | None:
    if allowed is None:
        return None
    if not asked:
        return allowed
    return tuple(name for name in asked if name in allowed)


_GRANTING: tuple[Kind, ...] = ("read", "control")


class Decider:
    def __init__(self, store: RegistryStore) -> None:
        self._store = store

    def is_friend(self, thing: str, requester: str) -> Verdict:
        owner = self._store.owner_of(thing)
        if owner is None:
            return Verdict(False)
        if requester in (owner, thing):
            return Verdict(True)
        self._store.note_asked(thing, requester)
        friend = self._store.rule(thing, requester, "friend")
        if friend is not None:
            return Verdict(friend.allowed)
        for kind in _GRANTING:
            rule = self._store.rule(thing, requester, kind)
            if rule is not None and rule.allowed:
                return Verdict(True)
        return self._ask(thing, owner, requester, "friend", None, None)

    def can_read(
        self, thing: str, requester: str, nodes: Sequence[NodeRef], fields: Sequence[str]
    ) -> Verdict:
        return self._can("read", thing, requester, nodes, fields)

    def can_control(
        self, thing: str, requester: str, nodes: Sequence[NodeRef], parameters: Sequence[str]
    ) -> Verdict:
        return self._can("control", thing, requester, nodes, parameters)

    def _can(
        self,
        kind: Kind,
        thing: str,
        requester: str,
        nodes: Sequence[NodeRef],
        names: Sequence[str],
    ) -> Verdict:
        owner = self._store.owner_of(thing)
        if owner is None:
            return Verdict(False)
        if requester == owner:
            return Verdict(True)
        rule = self._store.rule(thing, requester, kind)
        if rule is None:
            asked_nodes = tuple(ref.node_id for ref in nodes) or None
            return self._ask(thing, owner, requester, kind, asked_nodes, tuple(names) or None)
        if not rule.allowed:
            return Verdict(False)
        kept_nodes = _narrow_nodes(nodes, rule.nodes)
        kept_names = _narrow_names(names, rule.names)
        if kept_nodes == () or kept_names == ():
            return Verdict(False)
        return Verdict(True, kept_nodes, kept_names)

    def _ask(
        self,
        thing: str,
        owner: str,
        requester: str,
        kind: Kind,
        nodes: tuple[str, ...] | None,
        names: tuple[str, ...] | None,
    ) -> Verdict:
        question, new = self._store.ask(thing, owner, requester, kind, nodes, names)
        return Verdict(False, question=question if new else None)

    def answer(
        self, question: Question, allow: bool, names: tuple[str, ...] | None = None
    ) -> list[Rule]:
        """Turn the owner's answer into standing rules; returns the rules written.

        ``names`` narrows an allowed read (fields) or control (parameters) answer; for an allowed
        friendship it adds a read rule for just those fields.
        """
        store = self._store
        thing, requester = question.thing_jid, question.requester_jid
        rules: list[Rule] = []
        if not allow:
            rules.append(Rule(thing, requester, question.kind, False))
        elif question.kind == "friend":
            rules.append(Rule(thing, requester, "friend", True))
            if names:
                rules.append(Rule(thing, requester, "read", True, None, names))
        else:
            rules.append(
                Rule(thing, requester, question.kind, True, question.nodes, names or question.names)
            )
            rules.append(Rule(thing, requester, "friend", True))
        for rule in rules:
            store.set_rule(rule)
        store.close_question(question.id)
        return rules
