"""The SIP presence bridge: the gateway's things as SIP presentities (see ``bridge.py``)."""

from ncap.sip.bridge import SipBridge, SipUser, ThingStatus, ThingView
from ncap.sip.publish import PresencePublisher

__all__ = ["PresencePublisher", "SipBridge", "SipUser", "ThingStatus", "ThingView"]
