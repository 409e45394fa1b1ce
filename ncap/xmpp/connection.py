"""A slixmpp client that only ever talks over verified TLS.

Subclasses act on the ``session_secured`` event, fired after ``session_start``
once the stream is known to be encrypted.

The certificate is verified against the configured CA (or the system CAs) with
host-name checking. There is no plaintext fallback: slixmpp refuses every SASL
mechanism on an unencrypted stream, and `session_start` double-checks that the
stream really is encrypted before anything else happens.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from pathlib import Path
from typing import Any, cast

import slixmpp
from slixmpp.xmlstream.stanzabase import StanzaBase

import xep.iot_events
import xep.xep_0323
import xep.xep_0325
import xep.xep_0326
from ncap.errors import XmppConnectError
from xep.iot_events.events import IoTEvents
from xep.xep_0323.sensordata import XEP_0323
from xep.xep_0325.control import XEP_0325
from xep.xep_0326.concentrator import XEP_0326

_LOGGER = logging.getLogger(__name__)

SENSORDATA_PLUGIN = "xep_0323_ncap"
CONTROL_PLUGIN = "xep_0325_ncap"
CONCENTRATOR_PLUGIN = "xep_0326_ncap"
EVENTS_PLUGIN = "iot_events_ncap"


def error_reply(stanza: StanzaBase, etype: str, condition: str, text: str = "") -> StanzaBase:
    """The stanza error answering *stanza* (an IQ or a message), ready to send."""
    reply = stanza.reply(clear=True)
    reply["type"] = "error"
    reply["error"]["type"] = etype
    reply["error"]["condition"] = condition
    if text:
        reply["error"]["text"] = text
    return reply


def make_tls_context(ca_file: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class SecureClient(slixmpp.ClientXMPP):
    """ClientXMPP with verified TLS, clear failure reasons and our XEP plugins."""

    def __init__(
        self,
        jid: str,
        password: str,
        *,
        ca_file: Path | None,
        server: str | None,
        port: int,
        reconnect_max_s: float = 60.0,
        keepalive_s: float | None = None,
    ) -> None:
        super().__init__(jid, password, sasl_mech=None)
        self.reconnect_max_s = reconnect_max_s
        self.ssl_context = make_tls_context(ca_file)
        self.enable_plaintext = False
        self.enable_direct_tls = False
        self._server = server
        self._port = port
        self._ca_file = ca_file
        self.failure: str | None = None
        self.tls_version: str | None = None
        self._credentials_rejected = False
        self._started: asyncio.Future[None] | None = None
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0004")
        self.register_plugin("xep_0060")
        # Pings find a half-open connection long before TCP gives up on it.
        ping = {"keepalive": keepalive_s is not None, "interval": keepalive_s or 300, "timeout": 10}
        self.register_plugin("xep_0199", ping)
        self.register_plugin(SENSORDATA_PLUGIN, module=xep.xep_0323)
        self.register_plugin(CONTROL_PLUGIN, module=xep.xep_0325)
        self.register_plugin(CONCENTRATOR_PLUGIN, module=xep.xep_0326)
        self.register_plugin(EVENTS_PLUGIN, module=xep.iot_events)
        self.add_event_handler("connected", self._disable_nagle)
        self.add_event_handler("session_start", self._check_encrypted)
        self.add_event_handler("ssl_invalid_chain", self._on_bad_certificate)
        self.add_event_handler("failed_auth", self._on_credentials_rejected)
        self.add_event_handler("failed_all_auth", self._on_auth_failure)
        self.add_event_handler("connection_failed", self._on_connection_failed)
        self.add_event_handler("disconnected", self._on_disconnected)

    # Our plugins are not in slixmpp's TypedDict of built-in plugin names, hence the casts.
    @property
    def sensordata(self) -> XEP_0323:
        return cast(XEP_0323, self.plugin[SENSORDATA_PLUGIN])  # type: ignore[literal-required]

    @property
    def control(self) -> XEP_0325:
        return cast(XEP_0325, self.plugin[CONTROL_PLUGIN])  # type: ignore[literal-required]

    @property
    def concentrator(self) -> XEP_0326:
        return cast(XEP_0326, self.plugin[CONCENTRATOR_PLUGIN])  # type: ignore[literal-required]

    @property
    def events(self) -> IoTEvents:
        return cast(IoTEvents, self.plugin[EVENTS_PLUGIN])  # type: ignore[literal-required]

    def use_server(self, host: str, port: int) -> None:
        """Connect to *host*:*port* from now on (a server found on the LAN)."""
        self._server = host
        self._port = port

    def open(self) -> asyncio.Future[Any]:
        """Start connecting (and keep retrying) to the configured server."""
        if self._server:
            return self.connect(host=self._server, port=self._port)
        return self.connect()

    async def start(self, timeout: float) -> None:
        """Connect and wait for the session; raise XmppConnectError with the reason."""
        self._started = asyncio.get_running_loop().create_future()
        self.failure = None
        self.open()
        try:
            await asyncio.wait_for(asyncio.shield(self._started), timeout)
        except TimeoutError:
            reason = self.failure or "no session established"
            self.cancel_connection_attempt()
            self.abort()
            raise XmppConnectError(f"{self.boundjid.bare}: {reason} within {timeout:g} s") from None
        finally:
            self._started = None

    def reschedule_connection_attempt(self) -> asyncio.Future[Any] | None:
        # slixmpp lets its wait between failed connection attempts grow to 300 s; the
        # new attempt reads the wait only once it runs, so capping it here takes effect.
        attempt = super().reschedule_connection_attempt()
        self._connect_loop_wait = min(self._connect_loop_wait, self.reconnect_max_s)
        return attempt

    def _settle(self, failure: str | None) -> None:
        started = self._started
        if failure is not None:
            self.failure = failure
            # A caller waiting in start() gets the reason as an exception; say it once.
            level = logging.DEBUG if started is not None else logging.ERROR
            _LOGGER.log(level, "xmpp %s: %s", self.boundjid.bare, failure)
        if started is None or started.done():
            return
        if failure is None:
            started.set_result(None)
        else:
            started.set_exception(XmppConnectError(f"{self.boundjid.bare}: {failure}"))

    def _disable_nagle(self, _event: object) -> None:
        # An IQ result followed at once by a <fields> message is two small writes; with
        # Nagle's algorithm the second waits for the peer's delayed ACK (~40 ms).
        sock = self.transport.get_extra_info("socket") if self.transport else None
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _check_encrypted(self, _event: object) -> None:
        ssl_object = self.transport.get_extra_info("ssl_object") if self.transport else None
        if ssl_object is None:
            self._settle("the stream is not encrypted; refusing to continue")
            self.abort()
            return
        self.tls_version = ssl_object.version()
        self.failure = None
        _LOGGER.info("xmpp %s: session started over %s", self.boundjid.full, self.tls_version)
        self._settle(None)
        self.event("session_secured")

    def _on_bad_certificate(self, error: object) -> None:
        trust = f"the CA in {self._ca_file}" if self._ca_file else "the system CAs"
        self._settle(f"TLS certificate of {self.boundjid.domain} not trusted by {trust}: {error}")
        self.cancel_connection_attempt()
        self.abort()

    def _on_credentials_rejected(self, _event: object) -> None:
        self._credentials_rejected = True

    def _on_auth_failure(self, _event: object) -> None:
        # slixmpp offers no SASL mechanism on an unencrypted stream, so a server without
        # TLS ends here without the server ever having rejected anything.
        if self._credentials_rejected:
            self._settle("login refused: wrong JID or password")
        else:
            self._settle("the server offered no way to log in over TLS; refusing to go on")
        self._credentials_rejected = False
        self.cancel_connection_attempt()

    def _on_connection_failed(self, error: object) -> None:
        # Recorded, not settled: slixmpp keeps retrying with backoff.
        self.failure = (
            f"cannot connect to {self._server or self.boundjid.domain}:{self._port}: {error}"
        )
        _LOGGER.warning("xmpp %s: %s", self.boundjid.bare, self.failure)

    def _on_disconnected(self, reason: object) -> None:
        started = self._started
        if started is not None and not started.done() and self.failure is not None:
            self._settle(self.failure)
