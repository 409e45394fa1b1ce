"""slixmpp routing names of the XEP-0324 elements: ``iq["prov_isFriend"]`` and so on; the
payload's meaning is parsed by :mod:`.convert` from ``stanza.xml``."""

from __future__ import annotations

from xep.routing import routing_stanzas
from xep.xep_0324.model import NS

__all__ = ["IQ_ELEMENTS", "MESSAGE_ELEMENTS", "register_stanzas"]

IQ_ELEMENTS = (
    "isFriend", "isFriendResponse", "canRead", "canReadResponse", "canControl",
    "canControlResponse", "clearCache", "clearCacheResponse",
)  # fmt: skip
MESSAGE_ELEMENTS = ("friend", "unfriend")

register_stanzas = routing_stanzas(NS, "prov_", IQ_ELEMENTS, MESSAGE_ELEMENTS)
