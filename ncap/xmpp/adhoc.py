"""The chat commands as XEP-0050 ad-hoc commands with data forms (Gajim: "Execute command").

Each command is one form; submitting it runs the same operation as the chat command line it
stands for, with the same rights (``run`` decides per requester), and shows the answer as the
command's note. Forms offer the thing's nodes and open alarms as choices.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from slixmpp import JID, Iq

_LOGGER = logging.getLogger(__name__)

#: ``async (requester, command line) -> answer text``.
Runner = Callable[[JID, str], Awaitable[str]]
#: ``(requester, choice list name) -> [(value, label)]``: "nodes", "alarms".
Choices = Callable[[JID, str], Sequence[tuple[str, str]]]


@dataclass(frozen=True, slots=True)
class FormField:
    var: str
    label: str
    choices: str | None = None  # a list from Choices; else free text
    required: bool = True
    default: str = ""


@dataclass(frozen=True, slots=True)
class Command:
    node: str
    name: str
    verb: str
    fields: tuple[FormField, ...] = ()


COMMANDS = (
    Command(
        "read",
        "Read sensors",
        "read",
        (
            FormField("node", "Node", "nodes", required=False),
            FormField("field", "Field (empty: all)", required=False),
        ),
    ),
    Command(
        "history",
        "Show history",
        "history",
        (
            FormField("node", "Node", "nodes"),
            FormField("field", "Field"),
            FormField("period", "Period (e.g. 30m, 1h, 2d)", default="1h"),
        ),
    ),
    Command(
        "set",
        "Set a control parameter",
        "set",
        (
            FormField("node", "Node", "nodes"),
            FormField("parameter", "Parameter"),
            FormField("value", "Value"),
        ),
    ),
    Command("alarms", "List alarms", "alarms"),
    Command("ack", "Acknowledge an alarm", "ack", (FormField("alarm", "Alarm", "alarms"),)),
)


def command_line(command: Command, values: dict[str, Any]) -> str:
    """The chat command a submitted form stands for (values quoted as the chat parser wants)."""
    words = [command.verb]
    for spec in command.fields:
        value = values.get(spec.var)
        text = "" if value is None else str(value).strip()
        if text:
            words.append(shlex.quote(text))
    return " ".join(words)


def register_commands(client: Any, run: Runner, choices: Choices) -> None:
    adhoc = client.plugin["xep_0050"]
    forms = client.plugin["xep_0004"]
    for command in COMMANDS:
        adhoc.add_command(
            node=command.node,
            name=command.name,
            handler=_starter(command, forms, run, choices),
        )


def _starter(command: Command, forms: Any, run: Runner, choices: Choices) -> Any:
    async def finish(payload: Any, session: dict[str, Any]) -> dict[str, Any]:
        values = payload["values"] if payload is not None else {}
        requester = JID(session["from"])
        try:
            text = await run(requester, command_line(command, values))
        except Exception:
            _LOGGER.exception("ad-hoc command %s from %s failed", command.node, requester)
            text = "That command failed inside the gateway; its log says why."
        session["payload"] = None
        session["next"] = None
        session["has_next"] = False
        session["notes"] = [("info", text)]
        return session

    async def start(iq: Iq, session: dict[str, Any]) -> dict[str, Any]:
        if not command.fields:
            return await finish(None, session)
        requester = JID(iq["from"])
        form = forms.make_form("form", command.name)
        for spec in command.fields:
            options = choices(requester, spec.choices) if spec.choices else ()
            if spec.choices and options:
                form.add_field(
                    var=spec.var,
                    ftype="list-single",
                    label=spec.label,
                    required=spec.required,
                    options=[{"value": value, "label": label} for value, label in options],
                )
            else:
                form.add_field(
                    var=spec.var,
                    ftype="text-single",
                    label=spec.label,
                    required=spec.required,
                    value=spec.default,
                )
        session["payload"] = form
        session["next"] = finish
        session["has_next"] = False
        return session

    return start
