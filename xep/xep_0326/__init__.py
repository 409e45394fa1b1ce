"""XEP-0326 IoT Concentrators (``urn:xmpp:iot:concentrators``): our own asyncio slixmpp plugin.

Lets a client browse the NCAP's node tree: data source ``MeteringTopology``, root node = the
gateway, children = TIMs (later Modbus devices), grandchildren = channels. Read-only commands
only (capabilities, data sources, node lookups, root/child/ancestor navigation); see
:data:`CAPABILITIES`.

Loading (slixmpp 1.17), exactly like ``xep_0323_ncap``::

    import xep.xep_0326
    xmpp.register_plugin("xep_0326_ncap", module=xep.xep_0326)
    concentrator = xmpp.plugin["xep_0326_ncap"]

Importing this package registers :class:`XEP_0326` in slixmpp's global plugin registry (see
:mod:`xep.xep_0323` for why that is what makes ``register_plugin(..., module=...)`` work). The
dependency ``xep_0030`` is enabled automatically and the feature ``urn:xmpp:iot:concentrators``
is advertised.

Layout: :mod:`.model` (typed dataclasses, pure), :mod:`.convert` (pure XML <-> model),
:mod:`.stanza` (slixmpp ``ElementBase`` classes), :mod:`.concentrator` (the plugin).
"""

from __future__ import annotations

from slixmpp.plugins.base import register_plugin

from xep.xep_0326.concentrator import CAPABILITIES, XEP_0326, Authorizer, deny_all
from xep.xep_0326.model import (
    Command,
    ConcentratorRequest,
    ConcentratorResponse,
    ConcentratorSource,
    DataSource,
    MessageType,
    NodeInfo,
    NodeMessage,
    NodeParameter,
    NodeRef,
    NodeState,
    ParameterKind,
    ResultCode,
    SortOrder,
)

register_plugin(XEP_0326)

__all__ = [
    "CAPABILITIES",
    "XEP_0326",
    "Authorizer",
    "Command",
    "ConcentratorRequest",
    "ConcentratorResponse",
    "ConcentratorSource",
    "DataSource",
    "MessageType",
    "NodeInfo",
    "NodeMessage",
    "NodeParameter",
    "NodeRef",
    "NodeState",
    "ParameterKind",
    "ResultCode",
    "SortOrder",
    "deny_all",
]
