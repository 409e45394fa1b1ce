"""XEP-0323 IoT Sensor Data (``urn:xmpp:iot:sensordata``): our own asyncio slixmpp plugin.

Not slixmpp's built-in ``xep_0323`` (threads, pre-0.3 wire format); the plugin is registered under
the name ``"xep_0323_ncap"`` so both can coexist in slixmpp's global plugin registry. Never
*enable* both on one stream: they claim the same element tags.

Loading (slixmpp 1.17)::

    import xep.xep_0323
    xmpp.register_plugin("xep_0323_ncap", module=xep.xep_0323)
    sensordata = xmpp.plugin["xep_0323_ncap"]

How that works: importing this package calls ``slixmpp.plugins.base.register_plugin(XEP_0323)``,
which puts the class into slixmpp's global registry under ``XEP_0323.name``. ``register_plugin``
on the stream only calls ``load_plugin(name, module)`` when the name is *not* registered yet, and
``load_plugin`` merely imports ``module`` (a module object or a dotted string) and looks for a
module attribute named like the plugin -- which is why the import-time registration below is what
makes the call work. Without ``module=`` (and without a prior import) slixmpp would try
``slixmpp.plugins.xep_0323_ncap``, log "Unable to load plugin" and raise ``PluginNotFound``.
``module="xep.xep_0323"`` works too. The dependency ``xep_0030`` is enabled automatically.

Layout: :mod:`.model` (typed dataclasses, pure), :mod:`.convert` (pure XML <-> model),
:mod:`.stanza` (slixmpp ``ElementBase`` classes), :mod:`.sensordata` (the plugin).
"""

from __future__ import annotations

from slixmpp.plugins.base import register_plugin

from xep.xep_0323.model import (
    Accepted,
    FailureMessage,
    Field,
    FieldKind,
    FieldsMessage,
    FieldType,
    NodeFailure,
    NodeFields,
    NodeRef,
    QoS,
    Readout,
    ReadoutRequest,
    SensorDataSource,
)
from xep.xep_0323.sensordata import XEP_0323, Authorizer, deny_all

register_plugin(XEP_0323)

__all__ = [
    "XEP_0323",
    "Accepted",
    "Authorizer",
    "FailureMessage",
    "Field",
    "FieldKind",
    "FieldType",
    "FieldsMessage",
    "NodeFailure",
    "NodeFields",
    "NodeRef",
    "QoS",
    "Readout",
    "ReadoutRequest",
    "SensorDataSource",
    "deny_all",
]
