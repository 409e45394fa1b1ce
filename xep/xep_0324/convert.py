"""Pure conversion between XEP-0324 XML (``xml.etree`` elements) and :mod:`.model`.

:func:`to_xml` builds any model element; :func:`from_xml` parses any element of the namespace
and raises :class:`~xep.errors.StanzaError` -- and nothing else -- on malformed input.

* ``canRead``/``canReadResponse`` carry the XEP-0323 request flags (``momentary``, ``all``...)
  and ``<node nodeId sourceId cacheType/>`` / ``<field name/>`` children;
* ``canControl``/``canControlResponse`` carry ``<node/>`` and ``<parameter name/>`` children;
* tokens are space-separated lists in ``serviceToken``/``deviceToken``/``userToken``;
* ``jid`` is required on the questions, their answers and ``friend``/``unfriend``.
"""

from __future__ import annotations

from collections.abc import Iterable
from xml.etree.ElementTree import Element, SubElement

from xep.errors import StanzaError
from xep.xep_0323.convert import request_types_from, set_request_types
from xep.xep_0323.model import NodeRef
from xep.xep_0324.model import (
    NS,
    CanControl,
    CanControlResponse,
    CanRead,
    CanReadResponse,
    ClearCache,
    ClearCacheResponse,
    Friend,
    IsFriend,
    IsFriendResponse,
    ProvisioningElement,
    Unfriend,
)
from xep.xmlutil import TOKEN_ATTRS, bool_attr, is_xml_text, local_name, parse_tokens, qname

__all__ = ["MAX_NAMES", "MAX_NODES", "MAX_TOKENS", "NS", "from_xml", "to_xml"]

MAX_NODES = 256
MAX_NAMES = 256
MAX_TOKENS = 16


def _element(local: str, jid: str | None = None) -> Element:
    elem = Element(qname(NS, local))
    if jid is not None:
        elem.set("jid", jid)
    return elem


def _add_nodes(elem: Element, nodes: Iterable[NodeRef]) -> None:
    for node in nodes:
        child = SubElement(elem, qname(NS, "node"), {"nodeId": node.node_id})
        if node.source_id is not None:
            child.set("sourceId", node.source_id)
        if node.cache_type is not None:
            child.set("cacheType", node.cache_type)


def _add_names(elem: Element, local: str, names: Iterable[str]) -> None:
    for name in names:
        SubElement(elem, qname(NS, local), {"name": name})


def _add_tokens(
    elem: Element, service: tuple[str, ...], device: tuple[str, ...], user: tuple[str, ...]
) -> None:
    for attr, tokens in zip(TOKEN_ATTRS, (service, device, user), strict=True):
        if tokens:
            elem.set(attr, " ".join(tokens))


def to_xml(item: ProvisioningElement) -> Element:
    """The element for ``item``."""
    if isinstance(item, IsFriend):
        return _element("isFriend", item.jid)
    if isinstance(item, IsFriendResponse):
        elem = _element("isFriendResponse", item.jid)
        elem.set("result", "true" if item.result else "false")
        if item.secondary_trust_allowed:
            elem.set("secondaryTrustAllowed", "true")
        return elem
    if isinstance(item, CanRead | CanReadResponse):
        elem = _element("canRead" if isinstance(item, CanRead) else "canReadResponse", item.jid)
        if isinstance(item, CanReadResponse):
            elem.set("result", "true" if item.result else "false")
        else:
            _add_tokens(elem, item.service_tokens, item.device_tokens, item.user_tokens)
        set_request_types(elem, item.types)
        _add_nodes(elem, item.nodes)
        _add_names(elem, "field", item.field_names)
        return elem
    if isinstance(item, CanControl | CanControlResponse):
        local = "canControl" if isinstance(item, CanControl) else "canControlResponse"
        elem = _element(local, item.jid)
        if isinstance(item, CanControlResponse):
            elem.set("result", "true" if item.result else "false")
        else:
            _add_tokens(elem, item.service_tokens, item.device_tokens, item.user_tokens)
        _add_nodes(elem, item.nodes)
        _add_names(elem, "parameter", item.parameters)
        return elem
    if isinstance(item, ClearCache):
        return _element("clearCache")
    if isinstance(item, ClearCacheResponse):
        return _element("clearCacheResponse")
    if isinstance(item, Friend):
        return _element("friend", item.jid)
    return _element("unfriend", item.jid)


# -- parsing -------------------------------------------------------------------------------------


def _text_attr(elem: Element, name: str) -> str:
    value = elem.get(name)
    if value is None:
        raise StanzaError(f"<{local_name(elem, NS)}> lacks attribute {name!r}")
    if not is_xml_text(value):
        raise StanzaError(f"attribute {name!r} carries characters XML cannot")
    return value


def _jid(elem: Element) -> str:
    value = _text_attr(elem, "jid").strip(" \t\r\n")
    if not value or any(c.isspace() for c in value) or len(value) > 3071:
        raise StanzaError(f"attribute 'jid' is not a JID: {value!r}")
    return value


def _children(elem: Element, name_local: str) -> tuple[tuple[NodeRef, ...], tuple[str, ...]]:
    nodes: list[NodeRef] = []
    names: list[str] = []
    for child in elem:
        local = local_name(child, NS)
        if local is None:
            continue  # foreign extensions
        if local == "node":
            if len(nodes) >= MAX_NODES:
                raise StanzaError(f"more than {MAX_NODES} <node> elements")
            source = child.get("sourceId")
            cache = child.get("cacheType")
            node_id = _text_attr(child, "nodeId")
            if not node_id:
                raise StanzaError("empty nodeId")
            for value in (source, cache):
                if value is not None and not is_xml_text(value):
                    raise StanzaError("node attribute carries characters XML cannot")
            nodes.append(NodeRef(node_id, source, cache))
        elif local == name_local:
            if len(names) >= MAX_NAMES:
                raise StanzaError(f"more than {MAX_NAMES} <{name_local}> elements")
            name = _text_attr(child, "name")
            if not name:
                raise StanzaError(f"empty <{name_local}> name")
            names.append(name)
        else:
            raise StanzaError(f"unexpected <{local}> in <{local_name(elem, NS)}>")
    return tuple(nodes), tuple(names)


def _tokens(elem: Element) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    service, device, user = (parse_tokens(elem, attr, MAX_TOKENS) for attr in TOKEN_ATTRS)
    # Tokens are passed on verbatim: one XML cannot carry would break the next stanza.
    if not all(is_xml_text(token) for token in (*service, *device, *user)):
        raise StanzaError("a token carries characters XML cannot")
    return service, device, user


def _result(elem: Element) -> bool:
    if elem.get("result") is None:
        raise StanzaError(f"<{local_name(elem, NS)}> lacks attribute 'result'")
    return bool_attr(elem, "result")


def from_xml(elem: Element) -> ProvisioningElement:
    """Parse any element of the XEP-0324 namespace (the token/privilege elements excepted)."""
    local = local_name(elem, NS)
    if local == "isFriend":
        return IsFriend(_jid(elem))
    if local == "isFriendResponse":
        return IsFriendResponse(
            _jid(elem), _result(elem), bool_attr(elem, "secondaryTrustAllowed", False)
        )
    if local == "canRead":
        nodes, names = _children(elem, "field")
        service, device, user = _tokens(elem)
        return CanRead(_jid(elem), request_types_from(elem), nodes, names, service, device, user)
    if local == "canReadResponse":
        nodes, names = _children(elem, "field")
        return CanReadResponse(_jid(elem), _result(elem), request_types_from(elem), nodes, names)
    if local == "canControl":
        nodes, names = _children(elem, "parameter")
        service, device, user = _tokens(elem)
        return CanControl(_jid(elem), nodes, names, service, device, user)
    if local == "canControlResponse":
        nodes, names = _children(elem, "parameter")
        return CanControlResponse(_jid(elem), _result(elem), nodes, names)
    if local == "clearCache":
        return ClearCache()
    if local == "clearCacheResponse":
        return ClearCacheResponse()
    if local == "friend":
        return Friend(_jid(elem))
    if local == "unfriend":
        return Unfriend(_jid(elem))
    raise StanzaError(f"not an XEP-0324 element: {elem.tag!r}")
