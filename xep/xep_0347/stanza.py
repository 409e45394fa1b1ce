"""slixmpp ``ElementBase`` views of the XEP-0347 elements (names only, for routing).

``plugin_attrib`` is ``disco_`` + the element name, e.g. ``iq["disco_isFriend"]``; the payload's
meaning is parsed by :mod:`.convert` from ``stanza.xml``.
"""

from __future__ import annotations

from slixmpp import Iq, Message
from slixmpp.xmlstream import ElementBase, register_stanza_plugin

from xep.xep_0347.model import NS

__all__ = ["IQ_ELEMENTS", "MESSAGE_ELEMENTS", "register_stanzas"]

IQ_ELEMENTS = (
    "register", "mine", "claimed", "update", "remove", "disown", "unregister", "removed",
    "disowned", "search", "found",
)  # fmt: skip
MESSAGE_ELEMENTS: tuple[str, ...] = ()


def _payload(local: str) -> type[ElementBase]:
    attrs: dict[str, object] = {
        "name": local,
        "namespace": NS,
        "plugin_attrib": f"disco_{local}",
        "interfaces": set(),
    }
    return type(f"Disco_{local}", (ElementBase,), attrs)


_IQ_CLASSES = tuple(_payload(local) for local in IQ_ELEMENTS)
_MESSAGE_CLASSES = tuple(_payload(local) for local in MESSAGE_ELEMENTS)


def register_stanzas() -> None:
    """Attach the payload classes to ``Iq``/``Message`` (idempotent)."""
    for cls in _IQ_CLASSES:
        register_stanza_plugin(Iq, cls)
    for cls in _MESSAGE_CLASSES:
        register_stanza_plugin(Message, cls)
