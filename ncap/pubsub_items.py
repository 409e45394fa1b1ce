"""The payload of the thing's PubSub items: journal entries as XEP-0323 fields (pure, no I/O).

One item carries a batch of journal entries, in sequence order::

    <batch xmlns='urn:xmpp:ncap:journal:0' thing='gw@example.org' seqs='101-180,182-250'>
      <fields xmlns='urn:xmpp:iot:sensordata' seqnr='101' done='true'>
        <node nodeId='env-sensor'><timestamp value='…'><numeric name='temperature' …/>…
        …
      </fields>
      <alarm id='7' seq='181' state='raised' node='env-sensor' field='temperature' value='31.2'>
        env-sensor temperature 31.2 °C above 30</alarm>
    </batch>

``seqs`` lists every journal sequence number the item carries (ranges), so a subscriber can tell
what arrived, what is a duplicate and what never came. The item id is ``first-last``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from xml.etree.ElementTree import Element, SubElement

from xep.errors import StanzaError, XepError
from xep.xep_0323 import convert as sd
from xep.xep_0323.model import Field, FieldKind, FieldsMessage, NodeFields, NodeRef

NS = "urn:xmpp:ncap:journal:0"
MAX_RANGES = 4096


class EntryLike(Protocol):
    """What a journal entry offers (see ``ncap.journal.Entry``)."""

    @property
    def seq(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def node(self) -> str: ...
    @property
    def field(self) -> str: ...
    @property
    def value(self) -> str: ...
    @property
    def unit(self) -> str | None: ...
    @property
    def timestamp(self) -> datetime: ...
    @property
    def extra(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Batch:
    """A received item: the sequence numbers it carries and its fields."""

    thing: str
    seqs: tuple[int, ...]
    fields: tuple[NodeFields, ...]
    alarms: tuple[dict[str, str], ...]


def format_ranges(seqs: Sequence[int]) -> str:
    """``[1, 2, 3, 7]`` → ``'1-3,7'`` (``seqs`` ascending)."""
    parts: list[str] = []
    start = prev = None
    for seq in seqs:
        if prev is not None and seq == prev + 1:
            prev = seq
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = seq
    if start is not None:
        parts.append(str(start) if start == prev else f"{start}-{prev}")
    return ",".join(parts)


def parse_ranges(text: str) -> tuple[int, ...]:
    seqs: list[int] = []
    parts = text.split(",") if text else []
    if len(parts) > MAX_RANGES:
        raise StanzaError("too many sequence ranges")
    for part in parts:
        first, _, last = part.partition("-")
        if not first.isdigit() or (last and not last.isdigit()):
            raise StanzaError(f"bad sequence range {part!r}")
        low, high = int(first), int(last or first)
        if high < low or high - low > 1_000_000:
            raise StanzaError(f"bad sequence range {part!r}")
        seqs.extend(range(low, high + 1))
    return tuple(seqs)


def _reading_field(entry: EntryLike) -> Field:
    """Journal values are lexical XEP-0323 numbers (kept with their precision); anything
    else travels as a string field."""
    try:
        return Field(entry.field, FieldKind.NUMERIC, entry.value, entry.unit or "")
    except ValueError:
        return Field(entry.field, FieldKind.STRING, entry.value)


def batch_to_xml(thing: str, entries: Iterable[EntryLike]) -> tuple[str, Element]:
    """The item id and payload for ``entries`` (ascending seq)."""
    entries = list(entries)
    if not entries:
        raise ValueError("an item needs at least one entry")
    seqs = [entry.seq for entry in entries]
    root = Element(f"{{{NS}}}batch", {"thing": thing, "seqs": format_ranges(seqs)})
    nodes: list[NodeFields] = []
    for entry in entries:
        if entry.kind == "alarm":
            extra = json.loads(entry.extra or "{}")
            alarm = SubElement(
                root,
                f"{{{NS}}}alarm",
                {
                    "seq": str(entry.seq),
                    "node": entry.node,
                    "field": entry.field,
                    "value": entry.value,
                    "id": str(extra.get("id", "")),
                    "state": str(extra.get("state", "")),
                    "timestamp": sd.format_datetime(entry.timestamp),
                },
            )
            alarm.text = str(extra.get("text", ""))
            continue
        reading = _reading_field(entry)
        last = nodes[-1] if nodes else None
        if (
            last is not None
            and last.node.node_id == entry.node
            and last.timestamp == entry.timestamp
        ):
            nodes[-1] = NodeFields(last.node, last.timestamp, (*last.fields, reading))
        else:
            nodes.append(NodeFields(NodeRef(entry.node), entry.timestamp, (reading,)))
    if nodes:
        message = FieldsMessage(seqs[0] % 2**31, tuple(nodes), True)
        root.insert(0, sd.fields_to_xml(message))
    return f"{seqs[0]}-{seqs[-1]}", root


def batch_from_xml(elem: Element) -> Batch:
    """Parse a received item payload; :class:`~xep.errors.StanzaError` if it is not one."""
    if elem.tag != f"{{{NS}}}batch":
        raise StanzaError(f"not a journal batch: {elem.tag!r}")
    seqs = parse_ranges(elem.get("seqs", ""))
    fields: list[NodeFields] = []
    alarms: list[dict[str, str]] = []
    for child in elem:
        if child.tag == f"{{{sd.NS}}}fields":
            try:
                parsed = sd.fields_from_xml(child)
            except XepError as err:
                raise StanzaError(f"bad fields in batch: {err}") from None
            fields.extend(item for item in parsed.items if isinstance(item, NodeFields))
        elif child.tag == f"{{{NS}}}alarm":
            alarms.append({**child.attrib, "text": child.text or ""})
    return Batch(elem.get("thing", ""), seqs, tuple(fields), tuple(alarms))


def format_batch(batch: Batch) -> list[str]:
    """One line per reading and alarm, for ``ncap follow``: ``seq node field value unit time``.

    Readings are matched to their sequence numbers in order (alarms carry their own).
    """
    alarm_seqs = {int(a.get("seq", "0") or 0) for a in batch.alarms}
    reading_seqs = iter(seq for seq in batch.seqs if seq not in alarm_seqs)
    lines = []
    for node in batch.fields:
        stamp = node.timestamp.strftime("%Y-%m-%dT%H:%M:%SZ")
        for fld in node.fields:
            seq = next(reading_seqs, 0)
            unit = f" {fld.unit}" if fld.unit else ""
            lines.append(f"#{seq} {stamp} {node.node.node_id} {fld.name} {fld.value}{unit}")
    lines.extend(f"#{a.get('seq')} ALARM {a.get('state')}: {a.get('text')}" for a in batch.alarms)
    return lines
