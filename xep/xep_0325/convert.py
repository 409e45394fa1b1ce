"""Pure conversion between XEP-0325 XML (``xml.etree`` elements) and :mod:`.model`.

``*_to_xml`` functions build elements from model objects (they trust the model, which validates
itself). ``*_from_xml`` functions parse received elements and raise
:class:`~xep.errors.StanzaError` -- and nothing else -- on malformed input.

Wire rules applied here (``xmpp-iot-xeps.md`` §4):

* ``<set>`` holds ``<node>`` references and either typed parameters (kept in document order) or
  one submitted data form ``<x type='submit' xmlns='jabber:x:data'>``; mixing both in one
  ``<set>`` is refused (the schema allows it, but the order between them would be ambiguous);
* values of every kind but ``string`` are whitespace-collapsed, never otherwise reformatted;
* ``setResponse`` is empty when everything was applied; when provisioning narrowed the request
  it lists every applied ``<node>`` and ``<parameter name>``. The pre-0.3 ``responseCode``
  attribute is never sent and is only reported by :func:`legacy_response_code`;
* control forms (``getForm`` results) mark *every* parameter field ``<xdd:notSame/>`` (XEP-0325
  §3.5: "the device MUST mark all control parameters in the form as notSame", for one node as
  for several), carry an XEP-0122 ``<xdv:validate datatype>`` (with ``<xdv:range>`` when
  bounded), ``<xdd:readOnly/>`` for read-only parameters and the XEP-0325 ``<parameterGroup>``;
* unknown elements in our namespace are errors; foreign elements are ignored (extensibility).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from xml.etree.ElementTree import Element, SubElement

from xep.errors import StanzaError
from xep.xep_0323.model import NodeRef
from xep.xep_0325.model import (
    ControlForm,
    ControlParameter,
    ControlRequest,
    ControlValue,
    FormValue,
    ParameterKind,
    SetResult,
)
from xep.xmlutil import (
    WS,
    XML_LANG,
    expect,
    local_name,
    parse_bool,
    parse_tokens,
    qname,
    set_tokens,
)

__all__ = [
    "DATATYPES",
    "LEGACY_CONDITIONS",
    "MAX_FORM_FIELDS",
    "MAX_NODES",
    "MAX_OPTIONS",
    "MAX_PARAMETERS",
    "MAX_PARAM_ERRORS",
    "MAX_TOKENS",
    "NS",
    "SESSION_VAR",
    "XDATA_NS",
    "XDD_NS",
    "XDV_NS",
    "form_from_xml",
    "form_to_xml",
    "get_form_from_xml",
    "get_form_to_xml",
    "legacy_response_code",
    "node_ref_from_xml",
    "node_ref_to_xml",
    "param_error_to_xml",
    "param_errors_from_xml",
    "parse_bool",
    "set_from_xml",
    "set_response_from_xml",
    "set_response_to_xml",
    "set_to_xml",
    "value_from_xml",
    "value_to_xml",
]

NS = "urn:xmpp:iot:control"
XDATA_NS = "jabber:x:data"
XDV_NS = "http://jabber.org/protocol/xdata-validate"
XDD_NS = "urn:xmpp:xdata:dynamic"
#: Hidden XEP-0336 form field carrying a form session id.
SESSION_VAR = "xdd session"

#: Most ``<node>`` children accepted in one ``<set>``/``<getForm>``/``<setResponse>``.
MAX_NODES = 256
#: Most parameters accepted in one ``<set>`` (typed elements or form fields) or ``setResponse``.
MAX_PARAMETERS = 256
#: Most fields accepted in one control form (client side).
MAX_FORM_FIELDS = 1024
#: Most ``<option>`` elements accepted in one form field.
MAX_OPTIONS = 256
#: Most ``<paramError>`` elements read from one error.
MAX_PARAM_ERRORS = 256
#: Most tokens of one kind (service/device/user) accepted in one request.
MAX_TOKENS = 16

#: XEP-0122 ``datatype`` per kind. Colors use XEP-0331's ``xdc:Color``.
DATATYPES: dict[ParameterKind, str] = {
    ParameterKind.BOOLEAN: "xs:boolean",
    ParameterKind.COLOR: "xdc:Color",
    ParameterKind.DATE: "xs:date",
    ParameterKind.DATETIME: "xs:dateTime",
    ParameterKind.DOUBLE: "xs:double",
    ParameterKind.DURATION: "xs:duration",
    ParameterKind.INT: "xs:int",
    ParameterKind.LONG: "xs:long",
    ParameterKind.STRING: "xs:string",
    ParameterKind.TIME: "xs:time",
}
# Accepted on input (lower-cased): ours plus XEP-0331's alpha variant.
_KIND_BY_DATATYPE: dict[str, ParameterKind] = {
    datatype.lower(): kind for kind, datatype in DATATYPES.items()
}
_KIND_BY_DATATYPE["xdc:coloralpha"] = ParameterKind.COLOR

#: Pre-0.3 ``setResponse@responseCode`` values → RFC 6120 condition (XEP-0325 0.3 remark).
LEGACY_CONDITIONS: dict[str, str] = {
    "InsufficientPrivileges": "forbidden",
    "NotFound": "item-not-found",
    "OtherError": "bad-request",
    "FormError": "bad-request",
    "NotImplemented": "feature-not-implemented",
    "Locked": "conflict",
}

_KIND_BY_TAG: dict[str, ParameterKind] = {kind.value: kind for kind in ParameterKind}
_CONTROL_FIELD_TYPES = ("boolean", "text-single", "list-single", "text-private")


def _q(local: str) -> str:
    return qname(NS, local)


def _x(local: str) -> str:
    return qname(XDATA_NS, local)


def _local(elem: Element) -> str | None:
    """Local name of ``elem`` if it is in our namespace, else None."""
    return local_name(elem, NS)


# -- node references and tokens ----------------------------------------------------------------


def node_ref_to_xml(ref: NodeRef) -> Element:
    """``<node nodeId [sourceId] [cacheType]/>``."""
    elem = Element(_q("node"), {"nodeId": ref.node_id})
    if ref.source_id is not None:
        elem.set("sourceId", ref.source_id)
    if ref.cache_type is not None:
        elem.set("cacheType", ref.cache_type)
    return elem


def node_ref_from_xml(elem: Element) -> NodeRef:
    """Parse ``<node>``: ``nodeId`` (required), ``sourceId``, ``cacheType``."""
    node_id = elem.get("nodeId")
    if node_id is None:
        raise StanzaError("<node> lacks the required 'nodeId' attribute")
    try:
        return NodeRef(node_id, elem.get("sourceId"), elem.get("cacheType"))
    except ValueError as err:
        raise StanzaError(str(err)) from err


def _request_attrs(elem: Element, request: ControlRequest) -> None:
    set_tokens(elem, request)
    if request.lang is not None:
        elem.set(XML_LANG, request.lang)


def _add_node(nodes: list[NodeRef], elem: Element, where: str) -> None:
    if len(nodes) >= MAX_NODES:
        raise StanzaError(f"too many <node> elements in <{where}> (limit {MAX_NODES})")
    nodes.append(node_ref_from_xml(elem))


# -- typed values ----------------------------------------------------------------------------------


def value_to_xml(value: ControlValue) -> Element:
    """One typed parameter element, e.g. ``<int name='Output' value='50000'/>``."""
    return Element(_q(value.kind.value), {"name": value.name, "value": value.value})


def value_from_xml(elem: Element) -> ControlValue:
    """Parse one typed parameter element."""
    local = _local(elem)
    kind = _KIND_BY_TAG.get(local or "")
    if kind is None:
        raise StanzaError(f"unknown parameter element {elem.tag!r}")
    name = elem.get("name")
    if name is None:
        raise StanzaError(f"<{local}> lacks the required 'name' attribute")
    value = elem.get("value")
    if value is None:
        raise StanzaError(f"parameter {name!r} lacks the required 'value' attribute")
    if kind is not ParameterKind.STRING:
        value = value.strip(WS)  # xs whiteSpace=collapse; never reformat otherwise
    try:
        return ControlValue(name, kind, value)
    except ValueError as err:
        raise StanzaError(str(err)) from err


# -- submitted forms -------------------------------------------------------------------------------


def _submitted_form_to_xml(fields: Sequence[FormValue], session: str | None) -> Element:
    form = Element(_x("x"), {"type": "submit"})
    if session is not None:
        hidden = SubElement(form, _x("field"), {"var": SESSION_VAR, "type": "hidden"})
        SubElement(hidden, _x("value")).text = session
    for item in fields:
        field = SubElement(form, _x("field"), {"var": item.name})
        SubElement(field, _x("value")).text = item.value
    return form


def _single_value(field: Element, var: str) -> str:
    values = field.findall(_x("value"))
    if len(values) > 1:
        raise StanzaError(f"form field {var!r} has {len(values)} values; expected one")
    return (values[0].text or "") if values else ""


def _submitted_form_from_xml(form: Element) -> tuple[tuple[FormValue, ...], str | None]:
    if form.get("type") != "submit":
        raise StanzaError(f"a data form in <set> must have type='submit', not {form.get('type')!r}")
    fields: list[FormValue] = []
    session: str | None = None
    for field in form.findall(_x("field")):
        var = field.get("var")
        if var is None:
            raise StanzaError("submitted form field lacks the required 'var' attribute")
        value = _single_value(field, var)
        if var == SESSION_VAR:
            session = value
            continue
        if var == "FORM_TYPE":
            continue
        if len(fields) >= MAX_PARAMETERS:
            raise StanzaError(f"too many fields in the submitted form (limit {MAX_PARAMETERS})")
        try:
            fields.append(FormValue(var, value))
        except ValueError as err:
            raise StanzaError(str(err)) from err
    return tuple(fields), session


# -- set / getForm -----------------------------------------------------------------------------


def set_to_xml(request: ControlRequest) -> Element:
    """``<set>``: nodes first, then the typed values (in order) or the submitted form."""
    elem = Element(_q("set"))
    _request_attrs(elem, request)
    elem.extend(node_ref_to_xml(ref) for ref in request.nodes)
    elem.extend(value_to_xml(value) for value in request.values)
    if request.form or request.session is not None:
        elem.append(_submitted_form_to_xml(request.form, request.session))
    return elem


def set_from_xml(elem: Element) -> ControlRequest:
    """Parse ``<set>`` (from an IQ or a message)."""
    expect(elem, NS, "set")
    nodes: list[NodeRef] = []
    values: list[ControlValue] = []
    forms: list[Element] = []
    for child in elem:
        if child.tag == _x("x"):
            forms.append(child)
            continue
        local = _local(child)
        if local is None:
            continue
        if local == "node":
            _add_node(nodes, child, "set")
        elif local in _KIND_BY_TAG:
            if len(values) >= MAX_PARAMETERS:
                raise StanzaError(f"too many parameters in <set> (limit {MAX_PARAMETERS})")
            values.append(value_from_xml(child))
        else:
            raise StanzaError(f"unexpected element <{local}> in <set>")
    if len(forms) > 1:
        raise StanzaError("more than one data form in <set>")
    if forms and values:
        raise StanzaError("<set> mixes typed parameters and a data form")
    fields, session = _submitted_form_from_xml(forms[0]) if forms else ((), None)
    try:
        return ControlRequest(
            nodes=tuple(nodes),
            values=tuple(values),
            form=fields,
            session=session,
            service_tokens=parse_tokens(elem, "serviceToken", MAX_TOKENS),
            device_tokens=parse_tokens(elem, "deviceToken", MAX_TOKENS),
            user_tokens=parse_tokens(elem, "userToken", MAX_TOKENS),
            lang=elem.get(XML_LANG),
        )
    except ValueError as err:  # model invariants (StanzaError is a ValueError too)
        raise StanzaError(str(err)) from err


def get_form_to_xml(request: ControlRequest) -> Element:
    """``<getForm>`` with the request's nodes, tokens and language (values are ignored)."""
    elem = Element(_q("getForm"))
    _request_attrs(elem, request)
    elem.extend(node_ref_to_xml(ref) for ref in request.nodes)
    return elem


def get_form_from_xml(elem: Element) -> ControlRequest:
    """Parse ``<getForm>`` into a request without values."""
    expect(elem, NS, "getForm")
    nodes: list[NodeRef] = []
    for child in elem:
        local = _local(child)
        if local is None:
            continue
        if local != "node":
            raise StanzaError(f"unexpected element <{local}> in <getForm>")
        _add_node(nodes, child, "getForm")
    try:
        return ControlRequest(
            nodes=tuple(nodes),
            service_tokens=parse_tokens(elem, "serviceToken", MAX_TOKENS),
            device_tokens=parse_tokens(elem, "deviceToken", MAX_TOKENS),
            user_tokens=parse_tokens(elem, "userToken", MAX_TOKENS),
            lang=elem.get(XML_LANG),
        )
    except ValueError as err:
        raise StanzaError(str(err)) from err


# -- setResponse / paramError --------------------------------------------------------------------


def set_response_to_xml(result: SetResult) -> Element:
    """``<setResponse/>``; lists the applied nodes and parameters only when ``narrowed``."""
    elem = Element(_q("setResponse"))
    if result.narrowed:
        elem.extend(node_ref_to_xml(ref) for ref in result.nodes)
        for name in result.parameters:
            SubElement(elem, _q("parameter"), {"name": name})
    return elem


def set_response_from_xml(
    elem: Element, *, nodes: Iterable[NodeRef] = (), parameters: Iterable[str] = ()
) -> SetResult:
    """Parse ``<setResponse>``; ``nodes``/``parameters`` are what was requested.

    An empty response means everything requested was applied. A non-empty one is a narrowing:
    a dimension it does not list (no ``<node>``, or no ``<parameter>``) stays as requested.
    """
    expect(elem, NS, "setResponse")
    listed_nodes: list[NodeRef] = []
    listed_names: list[str] = []
    for child in elem:
        local = _local(child)
        if local is None:
            continue
        if local == "node":
            _add_node(listed_nodes, child, "setResponse")
        elif local == "parameter":
            if len(listed_names) >= MAX_PARAMETERS:
                raise StanzaError(f"too many <parameter> elements (limit {MAX_PARAMETERS})")
            name = child.get("name")
            if name is None:
                raise StanzaError("<parameter> lacks the required 'name' attribute")
            listed_names.append(name)
        else:
            raise StanzaError(f"unexpected element <{local}> in <setResponse>")
    narrowed = bool(listed_nodes or listed_names)
    try:
        return SetResult(
            tuple(listed_nodes) if listed_nodes else tuple(nodes),
            tuple(listed_names) if listed_names else tuple(parameters),
            narrowed,
        )
    except ValueError as err:
        raise StanzaError(str(err)) from err


def legacy_response_code(elem: Element) -> str | None:
    """The pre-0.3 ``responseCode`` of a ``<setResponse>`` (None if absent)."""
    return elem.get("responseCode") if _local(elem) == "setResponse" else None


def param_error_to_xml(var: str, text: str) -> Element:
    """``<paramError xmlns='urn:xmpp:iot:control' var='Name'>text</paramError>``."""
    elem = Element(_q("paramError"), {"var": var})
    elem.text = text
    return elem


def param_errors_from_xml(error: Element) -> dict[str, str]:
    """``{var: text}`` of the ``<paramError>`` children of a stanza ``<error>``.

    Lenient (used on error paths): elements without ``var`` are skipped; the first text per
    ``var`` wins; at most :data:`MAX_PARAM_ERRORS` are read.
    """
    found: dict[str, str] = {}
    for child in error:
        if _local(child) != "paramError":
            continue
        var = child.get("var")
        if var is not None and var not in found:
            found[var] = (child.text or "").strip(WS)
            if len(found) >= MAX_PARAM_ERRORS:
                break
    return found


# -- control forms ---------------------------------------------------------------------------------


def form_to_xml(
    parameters: Sequence[ControlParameter], *, title: str = "", session: str | None = None
) -> Element:
    """The XEP-0004 control form (``type='form'``) for ``parameters``, in order.

    Every parameter becomes one field marked ``<xdd:notSame/>`` with an XEP-0122 validation;
    parameters with options become ``list-single``, booleans ``boolean``, the rest
    ``text-single``. ``session`` adds the hidden ``xdd session`` field.
    """
    form = Element(_x("x"), {"type": "form"})
    if title:
        SubElement(form, _x("title")).text = title
    if session is not None:
        hidden = SubElement(form, _x("field"), {"var": SESSION_VAR, "type": "hidden"})
        SubElement(hidden, _x("value")).text = session
    for param in parameters:
        form.append(_field_to_xml(param))
    return form


def _field_to_xml(param: ControlParameter) -> Element:
    if param.kind is ParameterKind.BOOLEAN:
        field_type = "boolean"
    elif param.options:
        field_type = "list-single"
    else:
        field_type = "text-single"
    field = Element(_x("field"), {"var": param.name, "type": field_type})
    if param.label:
        field.set("label", param.label)
    if param.description:
        SubElement(field, _x("desc")).text = param.description
    if param.value:
        SubElement(field, _x("value")).text = param.value
    for option in param.options:
        SubElement(SubElement(field, _x("option"), {"label": option}), _x("value")).text = option
    validate = SubElement(field, f"{{{XDV_NS}}}validate", {"datatype": DATATYPES[param.kind]})
    if param.minimum is not None or param.maximum is not None:
        bounds = SubElement(validate, f"{{{XDV_NS}}}range")
        if param.minimum is not None:
            bounds.set("min", param.minimum)
        if param.maximum is not None:
            bounds.set("max", param.maximum)
    SubElement(field, f"{{{XDD_NS}}}notSame")
    if param.read_only:
        SubElement(field, f"{{{XDD_NS}}}readOnly")
    if param.group:
        SubElement(field, _q("parameterGroup"), {"name": param.group})
    return field


def form_from_xml(form: Element) -> ControlForm:
    """Parse a control form (``<x type='form' xmlns='jabber:x:data'>``) into parameters.

    Control fields are ``boolean``, ``text-single``, ``text-private`` and ``list-single``; other
    field types (``fixed``, ``*-multi``, ``jid-*``) and unknown hidden fields are skipped. The
    kind comes from the XEP-0122 ``datatype`` (``boolean`` fields are always boolean; an absent
    or unknown datatype means string). Ranges are kept for numeric kinds only.
    """
    if form.tag != _x("x"):
        raise StanzaError(f"expected <x xmlns='{XDATA_NS}'>, got {form.tag!r}")
    if form.get("type") != "form":
        raise StanzaError(f"expected a data form of type 'form', got {form.get('type')!r}")
    title = form.findtext(_x("title")) or ""
    session: str | None = None
    parameters: list[ControlParameter] = []
    fields = form.findall(_x("field"))
    if len(fields) > MAX_FORM_FIELDS:
        raise StanzaError(f"too many fields in the control form (limit {MAX_FORM_FIELDS})")
    for field in fields:
        field_type = field.get("type", "text-single")
        var = field.get("var")
        if field_type == "hidden" and var == SESSION_VAR:
            session = _single_value(field, var)
            continue
        if field_type not in _CONTROL_FIELD_TYPES:
            continue
        if var is None:
            raise StanzaError(f"{field_type} form field lacks the required 'var' attribute")
        parameters.append(_field_from_xml(field, field_type, var))
    try:
        return ControlForm(tuple(parameters), title, session)
    except ValueError as err:
        raise StanzaError(str(err)) from err


def _field_from_xml(field: Element, field_type: str, var: str) -> ControlParameter:
    validate = field.find(f"{{{XDV_NS}}}validate")
    datatype = (validate.get("datatype") or "") if validate is not None else ""
    if field_type == "boolean":
        kind = ParameterKind.BOOLEAN
    else:
        kind = _KIND_BY_DATATYPE.get(datatype.strip(WS).lower(), ParameterKind.STRING)
    minimum = maximum = None
    if validate is not None and kind.numeric:
        bounds = validate.find(f"{{{XDV_NS}}}range")
        if bounds is not None:
            minimum, maximum = bounds.get("min"), bounds.get("max")
            minimum = None if minimum is None else minimum.strip(WS)
            maximum = None if maximum is None else maximum.strip(WS)
    options: list[str] = []
    if field_type == "list-single" and kind is not ParameterKind.BOOLEAN:
        for option in field.findall(_x("option")):
            if len(options) >= MAX_OPTIONS:
                raise StanzaError(f"too many options in field {var!r} (limit {MAX_OPTIONS})")
            text = option.findtext(_x("value")) or ""
            options.append(text if kind is ParameterKind.STRING else text.strip(WS))
    group_elem = field.find(_q("parameterGroup"))
    group = ""
    if group_elem is not None:
        name = group_elem.get("name")
        if name is None:
            raise StanzaError("<parameterGroup> lacks the required 'name' attribute")
        group = name
    value = _single_value(field, var)
    if kind is not ParameterKind.STRING:
        value = value.strip(WS)
    try:
        return ControlParameter(
            name=var,
            kind=kind,
            value=value,
            label=field.get("label", ""),
            description=field.findtext(_x("desc")) or "",
            minimum=minimum,
            maximum=maximum,
            options=tuple(dict.fromkeys(options)),
            group=group,
            read_only=field.find(f"{{{XDD_NS}}}readOnly") is not None,
        )
    except ValueError as err:
        raise StanzaError(f"form field {var!r}: {err}") from err
