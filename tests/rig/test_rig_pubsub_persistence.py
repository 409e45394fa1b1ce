"""The private Prosody's pubsub service: large nodes allowed, items kept across a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest
from slixmpp.exceptions import IqError

from ncap.rig import Account, PrivateProsody
from ncap.rig.prosody import PUBSUB_MAX_ITEMS
from ncap.xmpp.connection import SecureClient

pytestmark = pytest.mark.integration

TIMEOUT = 10.0
NODE = "readings"


def _client(server: PrivateProsody, who: Account) -> SecureClient:
    return SecureClient(
        who.jid, who.password, ca_file=server.ca_file, server=server.host, port=server.c2s_port
    )


def _node_config(client: SecureClient, max_items: int) -> Any:
    forms: Any = client.plugin["xep_0004"]  # slixmpp's plugins are untyped
    form = forms.make_form("submit")
    form.add_field(
        var="FORM_TYPE", ftype="hidden", value="http://jabber.org/protocol/pubsub#node_config"
    )
    form.add_field(var="pubsub#max_items", value=str(max_items))
    return form


def _payload(text: str) -> ET.Element:
    element = ET.Element("{urn:example:reading}r")
    element.text = text
    return element


async def _item_ids(server: PrivateProsody, who: Account) -> list[str]:
    client = _client(server, who)
    await client.start(TIMEOUT)
    try:
        pubsub: Any = client.plugin["xep_0060"]
        result = await pubsub.get_items(server.pubsub_domain, NODE, timeout=TIMEOUT)
        return [str(item["id"]) for item in result["pubsub"]["items"]]
    finally:
        await client.disconnect(wait=1.0)


async def test_items_survive_a_restart_on_the_same_ports(prosody_workdir: Path) -> None:
    server = PrivateProsody(prosody_workdir, admins=["alice@ncap.test"])
    alice = server.register("alice")
    with server:
        client = _client(server, alice)
        await client.start(TIMEOUT)
        try:
            pubsub: Any = client.plugin["xep_0060"]
            too_many = _node_config(client, PUBSUB_MAX_ITEMS + 1)
            with pytest.raises(IqError):
                await pubsub.create_node(
                    server.pubsub_domain, NODE, config=too_many, timeout=TIMEOUT
                )
            config = _node_config(client, PUBSUB_MAX_ITEMS)
            await pubsub.create_node(server.pubsub_domain, NODE, config=config, timeout=TIMEOUT)
            for n in range(3):
                await pubsub.publish(
                    server.pubsub_domain,
                    NODE,
                    id=f"r{n}",
                    payload=_payload(str(n)),
                    timeout=TIMEOUT,
                )
        finally:
            await client.disconnect(wait=1.0)
        ports = (server.c2s_port, server.component_port)
        server.stop()
        server.start(keep_ports=True)
        assert (server.c2s_port, server.component_port) == ports
        assert await _item_ids(server, alice) == ["r0", "r1", "r2"]


async def test_only_admins_create_nodes(prosody: PrivateProsody) -> None:
    bob = prosody.register("bob")
    client = _client(prosody, bob)
    await client.start(TIMEOUT)
    try:
        config = _node_config(client, 10)
        pubsub: Any = client.plugin["xep_0060"]
        with pytest.raises(IqError) as refused:
            await pubsub.create_node(prosody.pubsub_domain, NODE, config=config, timeout=TIMEOUT)
        assert refused.value.condition == "forbidden"
    finally:
        await client.disconnect(wait=1.0)
