"""`ncap read`: a one-shot XEP-0323 momentary readout from the command line."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ncap.errors import NcapError
from ncap.xmpp.connection import SecureClient
from xep.errors import ReadoutError, ReadoutTimeout
from xep.xep_0323.model import FieldType, NodeRef, Readout

_LOGGER = logging.getLogger(__name__)


class ReadoutFailed(NcapError):
    """The thing refused the readout or did not finish it in time."""


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
    client = SecureClient(jid, password, ca_file=ca_file, server=server, port=port)
    await client.start(timeout)
    try:
        client.send_presence()
        return await client.sensordata.request_readout(
            thing,
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
    finally:
        await client.disconnect(wait=1.0)


def readout_as_json(readout: Readout) -> dict[str, Any]:
    return {
        "seqnr": readout.seqnr,
        "nodes": [
            {
                "node": node.node.node_id,
                "timestamp": node.timestamp.isoformat(),
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
        (node.node.node_id, field.name, field.value, field.unit, f"{node.timestamp:%H:%M:%S}")
        for node in readout.fields
        for field in node.fields
    ]
    lines = []
    if rows:
        header = ("NODE", "FIELD", "VALUE", "UNIT", "TIME")
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            cells = [
                cell.rjust(width) if column == 2 else cell.ljust(width)
                for column, (cell, width) in enumerate(zip(row, widths, strict=True))
            ]
            lines.append("  ".join(cells).rstrip())
    lines.extend(f"{f.node.node_id}: FAILED: {f.message}" for f in readout.failures)
    return "\n".join(lines) if lines else "(no fields)"
