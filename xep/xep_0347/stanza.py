"""slixmpp routing names of the XEP-0347 elements: ``iq["disco_register"]`` and so on; the
payload's meaning is parsed by :mod:`.convert` from ``stanza.xml``."""

from __future__ import annotations

from xep.routing import routing_stanzas
from xep.xep_0347.model import NS

__all__ = ["IQ_ELEMENTS", "register_stanzas"]

IQ_ELEMENTS = (
    "register", "mine", "claimed", "update", "remove", "disown", "unregister", "removed",
    "disowned", "search", "found",
)  # fmt: skip

register_stanzas = routing_stanzas(NS, "disco_", IQ_ELEMENTS)
