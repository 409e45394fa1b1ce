"""Pure conversion between XEP-0347 XML (``xml.etree`` elements) and :mod:`.model`.

:func:`to_xml` builds the element of any model object; :func:`from_xml` parses any element of
the namespace and raises :class:`~xep.errors.StanzaError` -- and nothing else -- on malformed
input. Wire rules (``xmpp-iot-xeps.md`` §6):

* tags are ``<str name value>`` / ``<num name value>`` (xs:double) children, at most
  :data:`~.model.MAX_TAGS`, a name at most once (case-insensitive);
* node references are the ``nodeId``/``sourceId``/``cacheType`` attributes of the element;
* ``mine/@public`` defaults to true, ``claimed/@public`` to false (the schema's defaults);
* ``search`` operators are ``str``/``num`` + ``Eq NEq Gt GtEq Lt LtEq Range NRange`` and
  ``strMask``; ``offset`` and ``maxCount`` are non-negative xs:int.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from xml.etree.ElementTree import Element, SubElement

from xep.errors import StanzaError
from xep.xep_0323.model import NodeRef
from xep.xep_0347.model import (
    MAX_TAGS,
    NS,
    Claimed,
    DiscoveryElement,
    Disown,
    Disowned,
    Found,
    MetaTag,
    Mine,
    Register,
    Remove,
    Removed,
    Search,
    SearchOperator,
    SearchTerm,
    Thing,
    Unregister,
    Update,
    canonical_tags,
)
from xep.xmlutil import bool_attr, is_xml_text, local_name, qname

__all__ = ["MAX_FOUND", "MAX_TERMS", "NS", "from_xml", "to_xml"]

MAX_TERMS = 32
MAX_FOUND = 100
_INT32_MAX = 2**31 - 1


# -- building ------------------------------------------------------------------------------------


def _element(local: str, node: NodeRef | None = None, **attrs: str | None) -> Element:
    elem = Element(qname(NS, local))
    for name, value in attrs.items():
        if value is not None:
            elem.set(name, value)
    if node is not None:
        elem.set("nodeId", node.node_id)
        if node.source_id is not None:
            elem.set("sourceId", node.source_id)
        if node.cache_type is not None:
            elem.set("cacheType", node.cache_type)
    return elem


def _number(value: str | float) -> str:
    return repr(float(value))


def _add_tags(parent: Element, tags: Iterable[MetaTag]) -> None:
    for tag in tags:
        child = SubElement(parent, qname(NS, "num" if tag.numeric else "str"))
        child.set("name", tag.name)
        child.set("value", _number(tag.value) if tag.numeric else str(tag.value))


def _operand(term: SearchTerm, value: str | float | None) -> str:
    assert value is not None
    return _number(value) if term.numeric else str(value)


def _term_to_xml(parent: Element, term: SearchTerm) -> None:
    kind = "num" if term.numeric else "str"
    child = SubElement(parent, qname(NS, kind + term.operator.value))
    child.set("name", term.name)
    if term.operator in (SearchOperator.RANGE, SearchOperator.NRANGE):
        child.set("min", _operand(term, term.low))
        child.set("minIncluded", "true" if term.low_included else "false")
        child.set("max", _operand(term, term.high))
        child.set("maxIncluded", "true" if term.high_included else "false")
    else:
        child.set("value", _operand(term, term.value))
    if term.operator is SearchOperator.MASK:
        child.set("wildcard", term.wildcard)


def to_xml(item: DiscoveryElement) -> Element:
    """The element for ``item``."""
    if isinstance(item, Register):
        elem = _element("register", item.node, selfOwned="true" if item.self_owned else None)
        _add_tags(elem, item.tags)
    elif isinstance(item, Mine):
        elem = _element("mine", public=None if item.public else "false")
        _add_tags(elem, item.tags)
    elif isinstance(item, Claimed):
        elem = _element("claimed", item.node, jid=item.jid, public="true" if item.public else None)
    elif isinstance(item, Update):
        elem = _element("update", item.node, jid=item.jid)
        _add_tags(elem, item.tags)
    elif isinstance(item, Remove):
        elem = _element("remove", item.node, jid=item.jid)
    elif isinstance(item, Disown):
        elem = _element("disown", item.node, jid=item.jid)
    elif isinstance(item, Unregister):
        elem = _element("unregister", item.node)
    elif isinstance(item, Removed):
        elem = _element("removed", item.node)
    elif isinstance(item, Disowned):
        elem = _element("disowned", item.node)
    elif isinstance(item, Search):
        elem = _element("search", offset=str(item.offset), maxCount=str(item.max_count))
        for term in item.terms:
            _term_to_xml(elem, term)
    else:
        elem = _element("found", more="true" if item.more else "false")
        for thing in item.things:
            child = SubElement(elem, qname(NS, "thing"))
            if thing.owner is not None:
                child.set("owner", thing.owner)
            child.set("jid", thing.jid)
            if thing.node is not None:
                for name, value in (
                    ("nodeId", thing.node.node_id),
                    ("sourceId", thing.node.source_id),
                    ("cacheType", thing.node.cache_type),
                ):
                    if value is not None:
                        child.set(name, value)
            _add_tags(child, thing.tags)
    return elem


# -- parsing -------------------------------------------------------------------------------------


def _attr(elem: Element, name: str, *, required: bool = False) -> str | None:
    value = elem.get(name)
    if value is None:
        if required:
            raise StanzaError(f"<{_local(elem)}> lacks attribute {name!r}")
        return None
    if not is_xml_text(value):
        raise StanzaError(f"attribute {name!r} carries characters XML cannot")
    return value


def _jid(elem: Element, *, required: bool) -> str | None:
    value = _attr(elem, "jid", required=required)
    if value is not None and (not value or any(c.isspace() for c in value) or len(value) > 3071):
        raise StanzaError(f"attribute 'jid' is not a JID: {value!r}")
    return value


def _local(elem: Element) -> str:
    return local_name(elem, NS) or str(elem.tag)


def _node(elem: Element) -> NodeRef | None:
    node_id = _attr(elem, "nodeId")
    source_id = _attr(elem, "sourceId")
    cache_type = _attr(elem, "cacheType")
    if node_id is None:
        if source_id is not None or cache_type is not None:
            raise StanzaError("sourceId/cacheType given without nodeId")
        return None
    if not node_id:
        raise StanzaError("empty nodeId")
    return NodeRef(node_id, source_id, cache_type)


def _double(text: str, what: str) -> float:
    try:
        value = float(text.strip(" \t\r\n"))
    except ValueError:
        raise StanzaError(f"{what}: {text!r} is not an xs:double") from None
    if not math.isfinite(value):
        raise StanzaError(f"{what}: {text!r} is not a finite number")
    return value


def _tags(elem: Element) -> tuple[MetaTag, ...]:
    tags: list[MetaTag] = []
    for child in elem:
        local = local_name(child, NS)
        if local is None:
            continue  # foreign extension elements are ignored
        if local not in ("str", "num"):
            raise StanzaError(f"unexpected <{local}> among tags")
        if len(tags) >= MAX_TAGS:
            raise StanzaError(f"more than {MAX_TAGS} tags")
        name = _attr(child, "name", required=True)
        text = _attr(child, "value", required=True)
        assert name is not None
        assert text is not None
        value: str | float = text if local == "str" else _double(text, f"tag {name}")
        tags.append(MetaTag(name, value))
    canonical_tags(tags)
    return tuple(tags)


def _count(elem: Element, name: str, default: int) -> int:
    text = elem.get(name)
    if text is None:
        return default
    stripped = text.strip(" \t\r\n")
    if not stripped.isascii() or not stripped.isdigit() or int(stripped) > _INT32_MAX:
        raise StanzaError(f"attribute {name!r}: {text!r} is not a non-negative xs:int")
    return int(stripped)


def _term(child: Element, local: str) -> SearchTerm:
    if local.startswith("str"):
        numeric, op_name = False, local[3:]
    elif local.startswith("num"):
        numeric, op_name = True, local[3:]
    else:
        raise StanzaError(f"unknown search operator <{local}>")
    try:
        operator = SearchOperator(op_name)
    except ValueError:
        raise StanzaError(f"unknown search operator <{local}>") from None
    name = _attr(child, "name", required=True)
    assert name is not None

    def operand(attr: str) -> str | float:
        text = _attr(child, attr, required=True)
        assert text is not None
        return _double(text, f"{local}/@{attr}") if numeric else text

    if operator in (SearchOperator.RANGE, SearchOperator.NRANGE):
        return SearchTerm(
            operator,
            name,
            numeric,
            low=operand("min"),
            high=operand("max"),
            low_included=bool_attr(child, "minIncluded", True),
            high_included=bool_attr(child, "maxIncluded", True),
        )
    wildcard = _attr(child, "wildcard") if operator is SearchOperator.MASK else None
    return SearchTerm(operator, name, numeric, value=operand("value"), wildcard=wildcard or "*")


def _search(elem: Element) -> Search:
    terms: list[SearchTerm] = []
    for child in elem:
        local = local_name(child, NS)
        if local is None:
            continue
        if len(terms) >= MAX_TERMS:
            raise StanzaError(f"more than {MAX_TERMS} search operators")
        terms.append(_term(child, local))
    return Search(tuple(terms), _count(elem, "offset", 0), _count(elem, "maxCount", 20))


def _found(elem: Element) -> Found:
    things: list[Thing] = []
    for child in elem:
        local = local_name(child, NS)
        if local is None:
            continue
        if local != "thing":
            raise StanzaError(f"unexpected <{local}> in <found>")
        if len(things) >= MAX_FOUND:
            raise StanzaError(f"more than {MAX_FOUND} things found")
        jid = _jid(child, required=True)
        assert jid is not None
        owner = _attr(child, "owner")
        things.append(Thing(jid, _tags(child), owner, _node(child)))
    return Found(tuple(things), bool_attr(elem, "more", False))


def from_xml(elem: Element) -> DiscoveryElement:
    """Parse any element of the XEP-0347 namespace."""
    local = local_name(elem, NS)
    try:
        if local == "register":
            return Register(_tags(elem), _node(elem), bool_attr(elem, "selfOwned", False))
        if local == "mine":
            return Mine(_tags(elem), bool_attr(elem, "public", True))
        if local == "claimed":
            jid = _jid(elem, required=True)
            assert jid is not None
            return Claimed(jid, _node(elem), bool_attr(elem, "public", False))
        if local == "update":
            return Update(_tags(elem), _jid(elem, required=False), _node(elem))
        if local in ("remove", "disown"):
            jid = _jid(elem, required=True)
            assert jid is not None
            return (Remove if local == "remove" else Disown)(jid, _node(elem))
        if local == "unregister":
            return Unregister(_node(elem))
        if local == "removed":
            return Removed(_node(elem))
        if local == "disowned":
            return Disowned(_node(elem))
        if local == "search":
            return _search(elem)
        if local == "found":
            return _found(elem)
    except ValueError as err:  # model checks (NodeRef text) raise ValueError
        if isinstance(err, StanzaError):
            raise
        raise StanzaError(str(err)) from None
    raise StanzaError(f"not an XEP-0347 element: {elem.tag!r}")
