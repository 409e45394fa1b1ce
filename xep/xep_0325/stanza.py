"""slixmpp ``ElementBase`` views of the XEP-0325 elements (thin: names and attributes only).

The ``plugin_attrib`` names are prefixed with ``control_`` so they never collide with slixmpp's
built-in ``xep_0325`` plugin (which uses ``set`` and ``setResponse``). Do not enable both plugins
on one stream: they would still fight over the element tags.

Semantics (types, limits, validation) live in :mod:`.convert`, which works on ``stanza.xml``.
"""

from __future__ import annotations

from typing import ClassVar

from slixmpp import Iq, Message
from slixmpp.xmlstream import ElementBase, register_stanza_plugin

NS = "urn:xmpp:iot:control"


class ControlSet(ElementBase):
    name = "set"
    namespace = NS
    plugin_attrib = "control_set"
    interfaces: ClassVar[set[str]] = set()


class SetResponse(ElementBase):
    name = "setResponse"
    namespace = NS
    plugin_attrib = "control_setResponse"
    interfaces: ClassVar[set[str]] = set()


class GetForm(ElementBase):
    name = "getForm"
    namespace = NS
    plugin_attrib = "control_getForm"
    interfaces: ClassVar[set[str]] = set()


def register_stanzas() -> None:
    """Attach the payload classes to ``Iq``/``Message`` (idempotent)."""
    for iq_payload in (ControlSet, SetResponse, GetForm):
        register_stanza_plugin(Iq, iq_payload)
    register_stanza_plugin(Message, ControlSet)
