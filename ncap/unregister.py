"""``ncap unregister``: log in as the gateway and leave its thing registry (XEP-0347).

Meant for uninstalling: the claim state is reset, so the next start registers afresh with a
new claim key.
"""

from __future__ import annotations

from slixmpp.exceptions import IqError, IqTimeout

from ncap.config import Config, read_secret
from ncap.errors import NcapError
from ncap.xmpp.connection import SecureClient
from ncap.xmpp.lifecycle import DISCOVERY_FEATURE, find_service, send_iq
from ncap.xmpp.registration import ClaimState, ClaimStore, forget_claim_files, new_claim_key
from xep.xep_0347 import convert
from xep.xep_0347.model import Unregister


async def unregister_gateway(config: Config, timeout: float) -> str:
    """Unregister; returns the registry's address."""
    xmpp = config.xmpp
    store = ClaimStore(config.gateway.resolved_state_dir())
    state = store.load()
    client = SecureClient(
        f"{xmpp.jid}/{xmpp.resource}-unregister",
        read_secret(xmpp.password_file),
        ca_file=xmpp.ca_file,
        server=xmpp.server,
        port=xmpp.port,
    )
    await client.start(timeout)
    try:
        registry = (
            config.registry.address
            or state.registry
            or await find_service(client, DISCOVERY_FEATURE, timeout)
        )
        if registry is None:
            raise NcapError("no thing registry known or found to unregister from")
        try:
            await send_iq(
                client, registry, convert.to_xml(Unregister()), kind="set", timeout=timeout
            )
        except (IqError, IqTimeout) as err:
            raise NcapError(f"{registry} did not take the unregistration: {err}") from None
    finally:
        await client.disconnect(wait=1.0)
    store.save(ClaimState(new_claim_key()))
    forget_claim_files(store.directory)
    return registry
