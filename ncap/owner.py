"""Owner tools on the command line: browse a thing's nodes, set a control parameter, watch
events. Each is one short XMPP session (see `ncap.reader.session_with`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

from slixmpp import JID

from ncap.errors import NcapError
from ncap.xmpp.connection import SecureClient
from ncap.xmpp.services import SOURCE_ID
from xep.errors import XepError
from xep.iot_events.model import FieldTrigger
from xep.xep_0323.model import NodeFields, NodeRef
from xep.xep_0325.model import SetResult
from xep.xep_0326.model import NodeInfo

MAX_DEPTH = 8


class OwnerToolError(NcapError):
    """The thing refused, or answered nonsense."""


async def node_tree(client: SecureClient, thing: JID, timeout: float) -> list[tuple[int, NodeInfo]]:
    """Every node of the thing's metering topology, depth first, with its depth."""
    concentrator = client.concentrator
    try:
        roots = await concentrator.get_root_nodes(thing, SOURCE_ID, timeout=timeout)
        found: list[tuple[int, NodeInfo]] = []

        async def visit(nodes: Sequence[NodeInfo], depth: int) -> None:
            for node in nodes:
                found.append((depth, node))
                if node.has_children and depth < MAX_DEPTH:
                    children = await concentrator.get_child_nodes(thing, node.ref, timeout=timeout)
                    await visit(children, depth + 1)

        await visit(roots, 0)
    except XepError as err:
        raise OwnerToolError(f"{thing}: {err}") from err
    return found


def format_tree(nodes: Sequence[tuple[int, NodeInfo]]) -> str:
    lines = []
    for depth, node in nodes:
        traits = [
            trait
            for trait, present in (
                ("readable", node.is_readable),
                ("controllable", node.is_controllable),
            )
            if present
        ]
        state = "" if node.state.value == "None" else f" [{node.state.value}]"
        # A display name that only repeats the end of the node id says nothing new.
        label = "" if node.node_id.endswith(node.display_name) else f" ({node.display_name})"
        lines.append(
            f"{'  ' * depth}{node.node_id}{label}  {node.node_type}{state}  {', '.join(traits)}"
        )
    return "\n".join(lines)


async def set_parameter(
    client: SecureClient, thing: JID, node: str, parameter: str, text: str, timeout: float
) -> SetResult:
    """Set *parameter* of *node* to *text*, typed as the thing's control form declares it."""
    ref = NodeRef(node, SOURCE_ID)
    try:
        form = await client.control.get_form(thing, nodes=[ref], timeout=timeout)
        declared = form.find(parameter)
        if declared is None:
            names = ", ".join(p.name for p in form.parameters) or "none"
            raise OwnerToolError(f"{node} has no parameter {parameter!r} (it has: {names})")
        try:
            value = declared.value_of(text)
        except ValueError as err:
            raise OwnerToolError(f"{parameter}: {err}") from None
        return await client.control.set(thing, [value], nodes=[ref], timeout=timeout)
    except XepError as err:
        raise OwnerToolError(f"{thing}: {err}") from err


async def watch(
    client: SecureClient,
    thing: JID,
    node: str | None,
    fields: Sequence[str],
    *,
    min_interval: float | None,
    max_interval: float | None,
    timeout: float,
) -> AsyncIterator[NodeFields]:
    """The thing's event pushes, until the caller stops iterating."""
    try:
        subscription = await client.events.subscribe(
            thing,
            nodes=[NodeRef(node, SOURCE_ID)] if node else (),
            fields=[FieldTrigger(name) for name in fields],
            min_interval=min_interval,
            max_interval=max_interval,
            timeout=timeout,
        )
    except XepError as err:
        raise OwnerToolError(f"{thing}: {err}") from err
    try:
        async for pushed in subscription:
            yield pushed
    finally:
        with contextlib.suppress(XepError):  # the session is ending anyway
            await subscription.cancel(timeout)


def format_push(pushed: NodeFields) -> str:
    values = ", ".join(f"{f.name}={f.value}{' ' + f.unit if f.unit else ''}" for f in pushed.fields)
    return f"{pushed.timestamp:%H:%M:%S}Z {pushed.node.node_id}: {values}"
