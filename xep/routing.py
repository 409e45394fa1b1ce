"""Name-only slixmpp stanza classes, so handlers can match payloads with ``StanzaPath``.

For namespaces whose payloads are parsed from ``stanza.xml`` by a pure codec: every element
named gets an ``ElementBase`` with ``plugin_attrib = prefix + name`` and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from slixmpp import Iq, Message
from slixmpp.xmlstream import ElementBase, register_stanza_plugin


def _payload(namespace: str, prefix: str, local: str) -> type[ElementBase]:
    attrs: dict[str, object] = {
        "name": local,
        "namespace": namespace,
        "plugin_attrib": f"{prefix}{local}",
        "interfaces": set(),
    }
    return type(f"{prefix}{local}", (ElementBase,), attrs)


def routing_stanzas(
    namespace: str, prefix: str, iq_elements: Iterable[str], message_elements: Iterable[str] = ()
) -> Callable[[], None]:
    """A function attaching the payload classes to ``Iq``/``Message`` (idempotent)."""
    iq_classes = tuple(_payload(namespace, prefix, local) for local in iq_elements)
    message_classes = tuple(_payload(namespace, prefix, local) for local in message_elements)

    def register() -> None:
        for cls in iq_classes:
            register_stanza_plugin(Iq, cls)
        for cls in message_classes:
            register_stanza_plugin(Message, cls)

    return register
