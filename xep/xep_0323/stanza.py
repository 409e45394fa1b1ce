"""slixmpp ``ElementBase`` views of the XEP-0323 elements (thin: names and attributes only).

The ``plugin_attrib`` names are prefixed with ``sensordata_`` so they never collide with
slixmpp's built-in ``xep_0323`` plugin (which uses ``req``, ``accepted``, ``fields``...). Do not
enable both plugins on one stream: they would still fight over the element tags.

Semantics (types, limits, validation) live in :mod:`.convert`, which works on ``stanza.xml``.
"""

from __future__ import annotations

from typing import ClassVar

from slixmpp import Iq, Message
from slixmpp.xmlstream import ElementBase, register_stanza_plugin

NS = "urn:xmpp:iot:sensordata"


class Req(ElementBase):
    name = "req"
    namespace = NS
    plugin_attrib = "sensordata_req"
    interfaces: ClassVar[set[str]] = {"seqnr"}


class Accepted(ElementBase):
    name = "accepted"
    namespace = NS
    plugin_attrib = "sensordata_accepted"
    interfaces: ClassVar[set[str]] = {"seqnr", "queued"}


class Rejected(ElementBase):
    """Pre-0.3 rejection; accepted on input only."""

    name = "rejected"
    namespace = NS
    plugin_attrib = "sensordata_rejected"
    interfaces: ClassVar[set[str]] = {"seqnr"}


class Cancel(ElementBase):
    name = "cancel"
    namespace = NS
    plugin_attrib = "sensordata_cancel"
    interfaces: ClassVar[set[str]] = {"seqnr"}


class Cancelled(ElementBase):
    name = "cancelled"
    namespace = NS
    plugin_attrib = "sensordata_cancelled"
    interfaces: ClassVar[set[str]] = {"seqnr"}


class Started(ElementBase):
    name = "started"
    namespace = NS
    plugin_attrib = "sensordata_started"
    interfaces: ClassVar[set[str]] = {"seqnr"}


class Fields(ElementBase):
    name = "fields"
    namespace = NS
    plugin_attrib = "sensordata_fields"
    interfaces: ClassVar[set[str]] = {"seqnr", "done"}


class Failure(ElementBase):
    name = "failure"
    namespace = NS
    plugin_attrib = "sensordata_failure"
    interfaces: ClassVar[set[str]] = {"seqnr", "done"}


class Done(ElementBase):
    name = "done"
    namespace = NS
    plugin_attrib = "sensordata_done"
    interfaces: ClassVar[set[str]] = {"seqnr"}


IQ_PAYLOADS: tuple[type[ElementBase], ...] = (Req, Accepted, Rejected, Cancel, Cancelled)
MESSAGE_PAYLOADS: tuple[type[ElementBase], ...] = (Started, Fields, Failure, Done)


def register_stanzas() -> None:
    """Attach the payload classes to ``Iq``/``Message`` (idempotent)."""
    for iq_payload in IQ_PAYLOADS:
        register_stanza_plugin(Iq, iq_payload)
    for message_payload in MESSAGE_PAYLOADS:
        register_stanza_plugin(Message, message_payload)
