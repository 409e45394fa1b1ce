"""IoT - Events (protoXEP ``urn:xmpp:iot:events``): sensor-data subscriptions over XEP-0323.

A subscriber sends ``<iq type='get'><subscribe xmlns='urn:xmpp:iot:events' seqnr='N' .../>``
with the same filters as a XEP-0323 ``<req>`` plus change triggers, a rate limit and a heartbeat
(``xmpp-iot-xeps.md`` §2.5). The thing accepts with the XEP-0323 ``<accepted seqnr='N'/>`` and
pushes ordinary XEP-0323 ``<fields seqnr='N' done='true'>`` messages whenever a trigger fires;
``<unsubscribe seqnr='N'/>`` ends it.

Loading (slixmpp 1.17), exactly like :mod:`xep.xep_0323`::

    import xep.iot_events
    xmpp.register_plugin("iot_events_ncap", module=xep.iot_events)
    events = xmpp.plugin["iot_events_ncap"]

Importing this package registers :class:`IoTEvents` in slixmpp's global plugin registry under
``"iot_events_ncap"``, which is what makes ``register_plugin(..., module=...)`` work. It can run
next to ``xep_0323_ncap`` on one stream: both ignore ``<fields>`` messages whose seqnr they do not
know, and client-side subscription seqnrs come from a range the read-out counter never reaches.

Layout: :mod:`.model` (typed dataclasses, pure), :mod:`.convert` (pure XML <-> model),
:mod:`.trigger` (pure trigger evaluation, time passed in), :mod:`.stanza` (slixmpp
``ElementBase`` classes), :mod:`.events` (the plugin).
"""

from __future__ import annotations

from slixmpp.plugins.base import register_plugin

from xep.iot_events.events import Authorizer, IoTEvents, Subscription, deny_all
from xep.iot_events.model import FieldTrigger, SubscribeRequest
from xep.iot_events.trigger import Decision, TriggerEvaluator, field_fires

register_plugin(IoTEvents)

__all__ = [
    "Authorizer",
    "Decision",
    "FieldTrigger",
    "IoTEvents",
    "SubscribeRequest",
    "Subscription",
    "TriggerEvaluator",
    "deny_all",
    "field_fires",
]
