"""XEP-0325 IoT Control (``urn:xmpp:iot:control``): our own asyncio slixmpp plugin.

Not slixmpp's built-in ``xep_0325`` (threads, pre-0.3 wire format, no forms, no stanza errors);
the plugin is registered under the name ``"xep_0325_ncap"`` so both can coexist in slixmpp's
global plugin registry. Never *enable* both on one stream: they claim the same element tags.

Loading (slixmpp 1.17)::

    import xep.xep_0325
    xmpp.register_plugin("xep_0325_ncap", module=xep.xep_0325)
    control = xmpp.plugin["xep_0325_ncap"]

Importing this package registers :class:`XEP_0325` in slixmpp's global plugin registry (see
:mod:`xep.xep_0323` for why that is what makes ``register_plugin(..., module=...)`` work). The
dependency ``xep_0030`` is enabled automatically.

Layout: :mod:`.model` (typed dataclasses, pure), :mod:`.convert` (pure XML <-> model),
:mod:`.stanza` (slixmpp ``ElementBase`` classes), :mod:`.control` (the plugin).
"""

from __future__ import annotations

from slixmpp.plugins.base import register_plugin

from xep.xep_0323.model import NodeRef
from xep.xep_0325.control import XEP_0325, Authorizer, ControlTarget, deny_all
from xep.xep_0325.model import (
    ControlDecision,
    ControlForm,
    ControlParameter,
    ControlRequest,
    ControlValue,
    FormValue,
    ParameterKind,
    SetResult,
)

register_plugin(XEP_0325)

__all__ = [
    "XEP_0325",
    "Authorizer",
    "ControlDecision",
    "ControlForm",
    "ControlParameter",
    "ControlRequest",
    "ControlTarget",
    "ControlValue",
    "FormValue",
    "NodeRef",
    "ParameterKind",
    "SetResult",
    "deny_all",
]
