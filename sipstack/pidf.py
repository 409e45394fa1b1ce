"""PIDF presence documents (RFC 3863) with the data model (RFC 4479) and RPID (RFC 4480).

Pure module. :func:`build_pidf` writes the document the bridge serves for a thing (one tuple
whose ``contact`` is the thing's URI, ``<note>`` with the reading, RPID ``busy``/``away`` in
``<dm:person>``), in the element order the schemas require. :func:`parse_pidf` reads documents
from presence servers and SIP users tolerantly: unknown elements and namespaces are ignored and
the pre-RFC RPID namespaces (Asterisk) are understood.

XML safety: the parser is expat driven directly; a DOCTYPE (hence any entity declaration) is
rejected outright, and size, element count and depth are bounded.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, NoReturn
from xml.etree.ElementTree import Element, TreeBuilder
from xml.parsers import expat

from sipstack.errors import SipBodyError, SipValueError

__all__ = [
    "ACTIVITIES",
    "CONTENT_TYPE",
    "DM_NS",
    "MAX_PIDF_BYTES",
    "PIDF_NS",
    "RPID_NS",
    "Note",
    "PresenceDocument",
    "PresenceTuple",
    "build_pidf",
    "parse_pidf",
    "parse_xml_safely",
]

CONTENT_TYPE = "application/pidf+xml"
PIDF_NS = "urn:ietf:params:xml:ns:pidf"
DM_NS = "urn:ietf:params:xml:ns:pidf:data-model"
RPID_NS = "urn:ietf:params:xml:ns:pidf:rpid"
# Pre-RFC documents: the CPIM-era PIDF namespace and the person namespace Asterisk still uses.
_PIDF_NAMESPACES = frozenset({PIDF_NS, "urn:ietf:params:xml:ns:cpim-pidf"})
_PERSON_NAMESPACES = frozenset({DM_NS, "urn:ietf:params:xml:ns:pidf:person"})
_RPID_PREFIX = RPID_NS  # covers ...:rpid, ...:rpid:rpid-person, ...:rpid:status:rpid-status
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"

#: RPID activity names (RFC 4480 §3.2) other than ``other`` (free text) and ``unknown``.
ACTIVITIES: frozenset[str] = frozenset(
    {
        "appointment",
        "away",
        "breakfast",
        "busy",
        "dinner",
        "holiday",
        "in-transit",
        "looking-for-work",
        "meal",
        "meeting",
        "on-the-phone",
        "performance",
        "permanent-absence",
        "playing",
        "presentation",
        "shopping",
        "sleeping",
        "spectator",
        "steering",
        "travel",
        "tv",
        "vacation",
        "working",
        "worship",
    }
)

#: Largest PIDF body we parse.
MAX_PIDF_BYTES = 64 * 1024
_MAX_ELEMENTS = 2000
_MAX_DEPTH = 32

_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_NCNAME = re.compile(r"[A-Za-z_][A-Za-z0-9._\-]*")
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._\-]")
_LANG = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")


@dataclass(frozen=True)
class Note:
    text: str
    lang: str | None = None


@dataclass(frozen=True)
class PresenceTuple:
    """One ``<tuple>``: ``basic`` is ``"open"``, ``"closed"`` or None (absent or unknown)."""

    id: str
    basic: str | None = None
    contact: str | None = None
    contact_priority: float | None = None
    notes: tuple[Note, ...] = ()
    timestamp: str | None = None


@dataclass(frozen=True)
class PresenceDocument:
    """What the bridge reads out of a PIDF document."""

    entity: str
    tuples: tuple[PresenceTuple, ...] = ()
    notes: tuple[Note, ...] = ()
    person_notes: tuple[Note, ...] = ()
    activities: tuple[str, ...] = ()
    other_activity: str | None = None

    @property
    def basic(self) -> str | None:
        """``open`` if any tuple is open, else ``closed`` if any is closed, else None."""
        states = {presence_tuple.basic for presence_tuple in self.tuples}
        if "open" in states:
            return "open"
        return "closed" if "closed" in states else None

    @property
    def note(self) -> str | None:
        """The first note found: tuple, then person, then document level."""
        for presence_tuple in self.tuples:
            if presence_tuple.notes:
                return presence_tuple.notes[0].text
        for notes in (self.person_notes, self.notes):
            if notes:
                return notes[0].text
        return None


# -- building --------------------------------------------------------------------------------------


def _text(value: str) -> str:
    safe = _NOT_XML_CHAR.sub("\ufffd", value)
    return safe.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _attr(value: str) -> str:
    escaped = _text(value).replace('"', "&quot;")
    return escaped.replace("\t", "&#9;").replace("\n", "&#10;").replace("\r", "&#13;")


def _derived_id(prefix: str, entity: str) -> str:
    # The thing's user part (sip:boiler-temp@host -> boiler-temp), made NCName-safe.
    local = entity.split(":", 1)[-1].split("@", 1)[0].split(";", 1)[0]
    return prefix + (_ID_UNSAFE.sub("-", local) or "x")


def _lang_attr(lang: str | None) -> str:
    if lang is None:
        return ""
    if _LANG.fullmatch(lang) is None:
        raise SipValueError(f"bad language tag {lang!r}")
    return f' xml:lang="{lang}"'


def build_pidf(
    entity: str,
    *,
    basic: Literal["open", "closed"],
    note: str | None = None,
    lang: str | None = "en",
    activities: Sequence[str] = (),
    other_activity: str | None = None,
    timestamp: datetime | None = None,
    person_note: bool = True,
    tuple_id: str | None = None,
    person_id: str | None = None,
) -> bytes:
    """A PIDF document for presentity ``entity`` (used verbatim as entity and contact).

    ``basic`` is ``"open"`` or ``"closed"``; ``note`` goes into the tuple and, with
    ``person_note``, into ``<dm:person>`` too; ``activities`` are RPID activity names
    (:data:`ACTIVITIES`, or ``("unknown",)``) and ``other_activity`` the text of
    ``<rpid:other>``; ``timestamp`` must be timezone-aware. Characters XML cannot carry are
    replaced by U+FFFD in notes.
    """
    if basic not in ("open", "closed"):
        raise SipValueError(f"basic must be 'open' or 'closed', not {basic!r}")
    if not entity or _NOT_XML_CHAR.search(entity) or any(c.isspace() for c in entity):
        raise SipValueError(f"bad presentity URI {entity!r}")
    for name in activities:
        if name not in ACTIVITIES and name != "unknown":
            raise SipValueError(f"unknown RPID activity {name!r}")
    if "unknown" in activities and (len(activities) > 1 or other_activity is not None):
        raise SipValueError("the 'unknown' activity cannot be combined with others")
    tuple_id = tuple_id or _derived_id("svc-", entity)
    person_id = person_id or _derived_id("p-", entity)
    for value in (tuple_id, person_id):
        if _NCNAME.fullmatch(value) is None:
            raise SipValueError(f"id {value!r} is not an XML NCName")
    if timestamp is not None and timestamp.utcoffset() is None:
        raise SipValueError("the timestamp must be timezone-aware")
    lang_attr = _lang_attr(lang)
    has_activities = bool(activities) or other_activity is not None
    has_person = has_activities or (note is not None and person_note)

    namespaces = f' xmlns="{PIDF_NS}"'
    if has_person:
        namespaces += f' xmlns:dm="{DM_NS}"'
    if has_activities:
        namespaces += f' xmlns:rpid="{RPID_NS}"'
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<presence{namespaces} entity="{_attr(entity)}">',
        f'  <tuple id="{tuple_id}">',
        f"    <status><basic>{basic}</basic></status>",
        f"    <contact>{_text(entity)}</contact>",
    ]
    if note is not None:
        lines.append(f"    <note{lang_attr}>{_text(note)}</note>")
    if timestamp is not None:
        stamp = timestamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(f"    <timestamp>{stamp}</timestamp>")
    lines.append("  </tuple>")
    if has_person:
        lines.append(f'  <dm:person id="{person_id}">')
        if has_activities:
            items = "".join(f"<rpid:{name}/>" for name in activities)
            if other_activity is not None:
                items += f"<rpid:other>{_text(other_activity)}</rpid:other>"
            lines.append(f"    <rpid:activities>{items}</rpid:activities>")
        if note is not None and person_note:
            lines.append(f"    <dm:note{lang_attr}>{_text(note)}</dm:note>")
        lines.append("  </dm:person>")
    lines.append("</presence>")
    return ("\n".join(lines) + "\n").encode("utf-8")


# -- parsing ---------------------------------------------------------------------------------------


def _clark(name: str) -> str:
    namespace, _, local = name.rpartition(" ")
    return f"{{{namespace}}}{local}" if namespace else local


def _reject_declaration(*_: object) -> NoReturn:
    raise SipBodyError("DTDs and entity declarations are not allowed in PIDF")


def parse_xml_safely(data: bytes, max_bytes: int = MAX_PIDF_BYTES) -> Element:
    """Parse ``data`` into an Element tree, refusing DTDs and entities; bounded in size."""
    if len(data) > max_bytes:
        raise SipBodyError(f"XML body too large ({len(data)} bytes)", status=413)
    parser = expat.ParserCreate(namespace_separator=" ")
    builder = TreeBuilder()
    depth = 0
    elements = 0

    def start(name: str, attributes: dict[str, str]) -> None:
        nonlocal depth, elements
        depth += 1
        elements += 1
        if depth > _MAX_DEPTH or elements > _MAX_ELEMENTS:
            raise SipBodyError("XML body nested too deeply or too many elements")
        builder.start(_clark(name), {_clark(key): value for key, value in attributes.items()})

    def end(name: str) -> None:
        nonlocal depth
        depth -= 1
        builder.end(_clark(name))

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = builder.data
    parser.StartDoctypeDeclHandler = _reject_declaration
    parser.EntityDeclHandler = _reject_declaration
    parser.UnparsedEntityDeclHandler = _reject_declaration
    parser.ExternalEntityRefHandler = _reject_declaration
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.buffer_text = True
    try:
        parser.Parse(data, True)
    except SipBodyError:
        raise
    except (expat.ExpatError, LookupError, ValueError) as error:
        # LookupError: an unknown encoding in the XML declaration
        raise SipBodyError(f"malformed XML: {error}") from None
    root = builder.close()
    if not isinstance(root, Element):
        raise SipBodyError("no XML document element")
    return root


def _split(tag: object) -> tuple[str, str]:
    if not isinstance(tag, str):
        return "", ""
    if tag.startswith("{"):
        namespace, _, local = tag[1:].partition("}")
        return namespace, local
    return "", tag


def _is_rpid(namespace: str) -> bool:
    return namespace.startswith(_RPID_PREFIX)


def _note(elem: Element) -> Note:
    return Note((elem.text or "").strip(), elem.get(_XML_LANG))


def _parse_tuple(elem: Element) -> PresenceTuple:
    basic: str | None = None
    contact: str | None = None
    priority: float | None = None
    notes: list[Note] = []
    timestamp: str | None = None
    for child in elem:
        namespace, local = _split(child.tag)
        if namespace not in _PIDF_NAMESPACES:
            continue
        if local == "status":
            for item in child:
                item_ns, item_local = _split(item.tag)
                if item_ns in _PIDF_NAMESPACES and item_local == "basic":
                    value = (item.text or "").strip().lower()
                    basic = value if value in ("open", "closed") else None
        elif local == "contact":
            contact = (child.text or "").strip() or None
            try:
                priority = float(child.get("priority", ""))
            except ValueError:
                priority = None
        elif local == "note":
            notes.append(_note(child))
        elif local == "timestamp":
            timestamp = (child.text or "").strip() or None
    return PresenceTuple(elem.get("id", ""), basic, contact, priority, tuple(notes), timestamp)


def parse_pidf(body: bytes) -> PresenceDocument | None:
    """Read a PIDF body; None for an empty body ("no state known", as Kamailio sends).

    Raises :class:`SipBodyError` for malformed XML, a DTD, a document element other than
    ``<presence>`` or a missing ``entity``.
    """
    if len(body) > MAX_PIDF_BYTES:
        raise SipBodyError(f"PIDF body too large ({len(body)} bytes)", status=413)
    if not body.strip():
        return None
    root = parse_xml_safely(body)
    namespace, local = _split(root.tag)
    if namespace not in _PIDF_NAMESPACES or local != "presence":
        raise SipBodyError(f"not a PIDF document: <{local}> in {namespace!r}")
    entity = root.get("entity")
    if not entity:
        raise SipBodyError("PIDF document without entity")
    tuples: list[PresenceTuple] = []
    notes: list[Note] = []
    person_notes: list[Note] = []
    for child in root:
        child_ns, child_local = _split(child.tag)
        if child_ns in _PIDF_NAMESPACES and child_local == "tuple":
            tuples.append(_parse_tuple(child))
        elif child_ns in _PIDF_NAMESPACES and child_local == "note":
            notes.append(_note(child))
        elif child_local == "person" and (child_ns in _PERSON_NAMESPACES or _is_rpid(child_ns)):
            for item in child:
                item_ns, item_local = _split(item.tag)
                if item_local == "note" and (
                    item_ns in _PERSON_NAMESPACES or item_ns in _PIDF_NAMESPACES
                ):
                    person_notes.append(_note(item))
    activities: list[str] = []
    other: str | None = None
    for elem in root.iter():
        elem_ns, elem_local = _split(elem.tag)
        if elem_local != "activities" or not _is_rpid(elem_ns):
            continue
        for item in elem:
            _, name = _split(item.tag)
            if not name or name == "note":
                continue
            if name == "other":
                other = (item.text or "").strip() or other
            if name not in activities:
                activities.append(name)
    return PresenceDocument(
        entity=entity,
        tuples=tuple(tuples),
        notes=tuple(notes),
        person_notes=tuple(person_notes),
        activities=tuple(activities),
        other_activity=other,
    )
