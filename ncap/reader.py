"""`ncap read`: a one-shot XEP-0323 momentary readout from the command line."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC
from pathlib import Path
from typing import Any

from slixmpp import JID, Presence

from ncap.errors import NcapError
from ncap.xmpp.connection import SecureClient
from xep.errors import ReadoutError, ReadoutTimeout
from xep.xep_0323.model import FieldType, NodeRef, Readout

_LOGGER = logging.getLogger(__name__)


class ReadoutFailed(NcapError):
    """The thing refused the readout or did not finish it in time."""


@contextlib.asynccontextmanager
async def session_with(
    jid: str,
    password: str,
    thing: str,
    *,
    ca_file: Path | None = None,
    server: str | None = None,
    port: int = 5222,
    timeout: float = 15.0,
) -> AsyncIterator[tuple[SecureClient, JID]]:
    """A logged-in client and the thing's full JID.

    A bare JID cannot answer an IQ, but friends see the thing's presence: a bare *thing*
    is resolved to the full JID of its first available resource.
    """
    client = SecureClient(jid, password, ca_file=ca_file, server=server, port=port)
    target = JID(thing)
    online: asyncio.Future[JID] = asyncio.get_running_loop().create_future()

    def on_presence(presence: Presence) -> None:
        sender = presence["from"]
        if sender.bare == target.bare and sender.resource and not online.done():
            online.set_result(sender)

    client.add_event_handler("presence_available", on_presence)
    await client.start(timeout)
    try:
        client.send_presence()
        if not target.resource:
            try:
                target = await asyncio.wait_for(online, timeout)
            except TimeoutError:
                raise ReadoutFailed(
                    f"{thing} sent no presence within {timeout:g} s: it is offline, or "
                    f"{jid} is not its friend; give its full JID to ask anyway"
                ) from None
        yield client, target
    finally:
        await client.disconnect(wait=1.0)


async def read_thing(
    jid: str,
    password: str,
    thing: str,
    *,
    node: str | None = None,
    fields: tuple[str, ...] = (),
    ca_file: Path | None = None,
    server: str | None = None,
    port: int = 5222,
    timeout: float = 15.0,
) -> Readout:
    """One XEP-0323 momentary readout of *thing* (bare or full JID) as *jid*."""
    connection = session_with(
        jid, password, thing, ca_file=ca_file, server=server, port=port, timeout=timeout
    )
    async with connection as (client, target):
        try:
            return await client.sensordata.request_readout(
                target,
                nodes=(NodeRef(node),) if node else (),
                field_names=fields,
                types=FieldType.MOMENTARY,
                timeout=timeout,
            )
        except ReadoutError as err:
            text = f": {err.text}" if err.text else ""
            raise ReadoutFailed(f"{thing} refused the readout ({err.condition}){text}") from err
        except ReadoutTimeout as err:
            raise ReadoutFailed(f"{thing} did not finish the readout within {timeout:g} s") from err


def readout_as_json(readout: Readout) -> dict[str, Any]:
    return {
        "seqnr": readout.seqnr,
        "nodes": [
            {
                "node": node.node.node_id,
                "timestamp": node.timestamp.astimezone(UTC).isoformat(),
                "fields": [
                    {"name": field.name, "value": field.value, "unit": field.unit}
                    for field in node.fields
                ],
            }
            for node in readout.fields
        ],
        "failures": [
            {"node": failure.node.node_id, "message": failure.message}
            for failure in readout.failures
        ],
    }


def format_readout(readout: Readout) -> str:
    rows = [
        (
            node.node.node_id,
            field.name,
            field.value,
            field.unit,
            f"{node.timestamp.astimezone(UTC):%H:%M:%SZ}",
        )
        for node in readout.fields
        for field in node.fields
    ]
    lines = []
    if rows:
        header = ("NODE", "FIELD", "VALUE", "UNIT", "TIME (UTC)")
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            cells = [
                cell.rjust(width) if column == 2 else cell.ljust(width)
                for column, (cell, width) in enumerate(zip(row, widths, strict=True))
            ]
            lines.append("  ".join(cells).rstrip())
    lines.extend(f"{f.node.node_id}: FAILED: {f.message}" for f in readout.failures)
    return "\n".join(lines) if lines else "(no fields)"
