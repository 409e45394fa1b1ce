"""slixmpp ``ElementBase`` views of the IoT-Events elements (thin: names and attributes only).

The ``plugin_attrib`` names are prefixed with ``iot_events_``. Semantics live in :mod:`.convert`,
which works on ``stanza.xml``. Acceptance and event data are XEP-0323 elements
(:mod:`xep.xep_0323.stanza`).
"""

from __future__ import annotations

from typing import ClassVar

from slixmpp import Iq
from slixmpp.xmlstream import ElementBase, register_stanza_plugin

NS = "urn:xmpp:iot:events"


class Subscribe(ElementBase):
    name = "subscribe"
    namespace = NS
    plugin_attrib = "iot_events_subscribe"
    interfaces: ClassVar[set[str]] = {"seqnr"}


class Unsubscribe(ElementBase):
    name = "unsubscribe"
    namespace = NS
    plugin_attrib = "iot_events_unsubscribe"
    interfaces: ClassVar[set[str]] = {"seqnr"}


IQ_PAYLOADS: tuple[type[ElementBase], ...] = (Subscribe, Unsubscribe)


def register_stanzas() -> None:
    """Attach the payload classes to ``Iq`` (idempotent)."""
    for iq_payload in IQ_PAYLOADS:
        register_stanza_plugin(Iq, iq_payload)
