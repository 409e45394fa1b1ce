"""slixmpp ``ElementBase`` views of the XEP-0326 request elements (thin: names only).

The ``plugin_attrib`` names are prefixed with ``concentrators_`` so they never collide with other
plugins. The plugin itself dispatches on any IQ get/set payload in ``urn:xmpp:iot:concentrators``
(so that unknown commands can be answered ``NotImplemented``); these classes exist so that
application code and tests can address implemented requests as ``iq["concentrators_getNode"]``.

Semantics (types, limits, validation) live in :mod:`.convert`, which works on ``stanza.xml``.
"""

from __future__ import annotations

from typing import ClassVar

from slixmpp import Iq
from slixmpp.xmlstream import ElementBase, register_stanza_plugin

NS = "urn:xmpp:iot:concentrators"


class _Request(ElementBase):
    namespace = NS
    interfaces: ClassVar[set[str]] = set()


class GetCapabilities(_Request):
    name = "getCapabilities"
    plugin_attrib = "concentrators_getCapabilities"


class GetAllDataSources(_Request):
    name = "getAllDataSources"
    plugin_attrib = "concentrators_getAllDataSources"


class GetRootDataSources(_Request):
    name = "getRootDataSources"
    plugin_attrib = "concentrators_getRootDataSources"


class GetChildDataSources(_Request):
    name = "getChildDataSources"
    plugin_attrib = "concentrators_getChildDataSources"


class ContainsNode(_Request):
    name = "containsNode"
    plugin_attrib = "concentrators_containsNode"


class ContainsNodes(_Request):
    name = "containsNodes"
    plugin_attrib = "concentrators_containsNodes"


class GetNode(_Request):
    name = "getNode"
    plugin_attrib = "concentrators_getNode"


class GetNodes(_Request):
    name = "getNodes"
    plugin_attrib = "concentrators_getNodes"


class GetAllNodes(_Request):
    name = "getAllNodes"
    plugin_attrib = "concentrators_getAllNodes"


class GetRootNodes(_Request):
    name = "getRootNodes"
    plugin_attrib = "concentrators_getRootNodes"


class GetChildNodes(_Request):
    name = "getChildNodes"
    plugin_attrib = "concentrators_getChildNodes"


class GetAncestors(_Request):
    name = "getAncestors"
    plugin_attrib = "concentrators_getAncestors"


IQ_PAYLOADS: tuple[type[ElementBase], ...] = (
    GetCapabilities,
    GetAllDataSources,
    GetRootDataSources,
    GetChildDataSources,
    ContainsNode,
    ContainsNodes,
    GetNode,
    GetNodes,
    GetAllNodes,
    GetRootNodes,
    GetChildNodes,
    GetAncestors,
)


def register_stanzas() -> None:
    """Attach the request classes to ``Iq`` (idempotent)."""
    for iq_payload in IQ_PAYLOADS:
        register_stanza_plugin(Iq, iq_payload)
