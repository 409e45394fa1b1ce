"""Typed, immutable model of XEP-0325 (IoT Control).

Pure module: no XML, no I/O, no slixmpp. :mod:`xep.xep_0325.convert` maps it to and from the wire.

Values are kept *lexically*, exactly as they appear on the wire (``"08:00:00"``, ``"3399FF"``,
``"8.192"``), and validated against the lexical space of their :class:`ParameterKind`. Build them
from Python objects with the ``ControlValue.boolean``/``integer``/``long``/``double``/``string``/
``color``/``date``/``date_time``/``time``/``duration`` constructors; read them back with
``as_bool``/``as_int``/``as_float``/``as_color``.

What the device declares is a :class:`ControlParameter`; :meth:`ControlParameter.problem` is the
single place where a requested value is checked against a declaration (type, read-only, options,
range). Node references are XEP-0323's :class:`~xep.xep_0323.model.NodeRef`.
"""

from __future__ import annotations

import calendar
import enum
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from xep.xep_0323.model import INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN, NodeRef
from xep.xmlutil import check_text, check_tokens, is_xml_text

__all__ = [
    "RESERVED_NAMES",
    "ControlDecision",
    "ControlForm",
    "ControlParameter",
    "ControlRequest",
    "ControlValue",
    "FormValue",
    "ParameterKind",
    "SetResult",
    "common_parameters",
    "lexical_problem",
]

#: Form field names that can never be control parameters (hidden fields of XEP-0004/0336).
RESERVED_NAMES = frozenset({"xdd session", "FORM_TYPE"})


class ParameterKind(enum.Enum):
    """Type of a control parameter; the enum value is the XML element name inside ``<set>``."""

    BOOLEAN = "boolean"
    COLOR = "color"
    DATE = "date"
    DATETIME = "dateTime"
    DOUBLE = "double"
    DURATION = "duration"
    INT = "int"
    LONG = "long"
    STRING = "string"
    TIME = "time"

    @property
    def numeric(self) -> bool:
        """True for the kinds that have an order (``minimum``/``maximum`` are allowed)."""
        return self in (ParameterKind.INT, ParameterKind.LONG, ParameterKind.DOUBLE)


# Lexical spaces (XML Schema part 2), surrounding whitespace already removed by the parser.
_ZONE = r"(?:Z|[+-](?:(?:0\d|1[0-3]):[0-5]\d|14:00))"
_DATE = r"(?P<year>-?\d{4,})-(?P<month>0[1-9]|1[0-2])-(?P<day>0[1-9]|[12]\d|3[01])"
_TIME = r"(?:(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d+)?|24:00:00(?:\.0+)?)"
_LEXICAL: dict[ParameterKind, re.Pattern[str]] = {
    ParameterKind.BOOLEAN: re.compile(r"true|false|1|0"),
    ParameterKind.COLOR: re.compile(r"[0-9A-Fa-f]{6}(?:[0-9A-Fa-f]{2})?", re.ASCII),
    ParameterKind.DATE: re.compile(_DATE + _ZONE + "?", re.ASCII),
    ParameterKind.DATETIME: re.compile(_DATE + "T" + _TIME + _ZONE + "?", re.ASCII),
    ParameterKind.DOUBLE: re.compile(
        r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?INF|NaN", re.ASCII
    ),
    ParameterKind.DURATION: re.compile(
        r"-?P(?=\d|T\d)(?:\d+Y)?(?:\d+M)?(?:\d+D)?(?:T(?=\d)(?:\d+H)?(?:\d+M)?(?:\d+(?:\.\d+)?S)?)?",
        re.ASCII,
    ),
    ParameterKind.INT: re.compile(r"[+-]?\d{1,20}", re.ASCII),
    ParameterKind.LONG: re.compile(r"[+-]?\d{1,30}", re.ASCII),
    ParameterKind.TIME: re.compile(_TIME + _ZONE + "?", re.ASCII),
}
_INT_BOUNDS: dict[ParameterKind, tuple[int, int]] = {
    ParameterKind.INT: (INT32_MIN, INT32_MAX),
    ParameterKind.LONG: (INT64_MIN, INT64_MAX),
}
_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _check_name(what: str, name: str) -> None:
    check_text(what, name)
    if not name:
        raise ValueError(f"{what} must not be empty")


def lexical_problem(kind: ParameterKind, text: str) -> str | None:
    """Why ``text`` is not in the lexical space of ``kind`` (None if it is)."""
    if kind is ParameterKind.STRING:
        return None if is_xml_text(text) else "contains characters XML cannot carry"
    match = _LEXICAL[kind].fullmatch(text)
    if match is None:
        return f"{text!r} is not a valid {kind.value} value"
    bounds = _INT_BOUNDS.get(kind)
    if bounds is not None and not bounds[0] <= int(text) <= bounds[1]:
        return f"{text} is out of range for {kind.value}"
    if kind in (ParameterKind.DATE, ParameterKind.DATETIME):
        year, month, day = int(match["year"]), int(match["month"]), int(match["day"])
        length = _MONTH_DAYS[month - 1] + (month == 2 and calendar.isleap(year))
        if day > length:
            return f"{text!r} is not a valid {kind.value} value (no such day)"
    return None


def _number(kind: ParameterKind, text: str) -> float | int:
    if kind is ParameterKind.DOUBLE:
        return float(text.replace("INF", "inf"))
    return int(text)


def _format_double(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "INF" if value > 0 else "-INF"
    return repr(float(value))


def _format_duration(value: timedelta) -> str:
    sign = "-" if value < timedelta(0) else ""
    value = abs(value)
    days, seconds, micro = value.days, value.seconds, value.microseconds
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{sign}P"
    if days:
        text += f"{days}D"
    clock = ""
    if hours:
        clock += f"{hours}H"
    if minutes:
        clock += f"{minutes}M"
    if secs or micro or not (days or hours or minutes):
        clock += f"{secs}.{micro:06d}".rstrip("0").rstrip(".") + "S"
    return text + ("T" + clock if clock else "")


@dataclass(frozen=True, slots=True)
class ControlValue:
    """A value to write: parameter ``name``, its ``kind`` and the lexical ``value``."""

    name: str
    kind: ParameterKind
    value: str

    def __post_init__(self) -> None:
        _check_name("parameter name", self.name)
        problem = lexical_problem(self.kind, self.value)
        if problem is not None:
            raise ValueError(f"parameter {self.name!r}: {problem}")

    # -- constructors -----------------------------------------------------------------------

    @classmethod
    def boolean(cls, name: str, value: bool) -> ControlValue:
        return cls(name, ParameterKind.BOOLEAN, "true" if value else "false")

    @classmethod
    def integer(cls, name: str, value: int) -> ControlValue:
        """An ``int`` (32-bit) value; ValueError when it does not fit."""
        return cls(name, ParameterKind.INT, str(int(value)))

    @classmethod
    def long(cls, name: str, value: int) -> ControlValue:
        """A ``long`` (64-bit) value; ValueError when it does not fit."""
        return cls(name, ParameterKind.LONG, str(int(value)))

    @classmethod
    def double(cls, name: str, value: float, decimals: int | None = None) -> ControlValue:
        """A ``double``; with ``decimals`` formatted with exactly that many decimals."""
        number = float(value)
        if decimals is not None and math.isfinite(number):
            if decimals < 0:
                raise ValueError(f"decimals must be >= 0, got {decimals}")
            return cls(name, ParameterKind.DOUBLE, f"{number:.{decimals}f}")
        return cls(name, ParameterKind.DOUBLE, _format_double(number))

    @classmethod
    def string(cls, name: str, value: str) -> ControlValue:
        return cls(name, ParameterKind.STRING, value)

    @classmethod
    def color(
        cls, name: str, red: int, green: int, blue: int, alpha: int | None = None
    ) -> ControlValue:
        """A ``color`` value ``RRGGBB`` (or ``RRGGBBAA`` with ``alpha``), components 0..255."""
        parts = (red, green, blue) if alpha is None else (red, green, blue, alpha)
        if any(not 0 <= part <= 255 for part in parts):
            raise ValueError(f"color components must be 0..255, got {parts}")
        return cls(name, ParameterKind.COLOR, "".join(f"{part:02X}" for part in parts))

    @classmethod
    def date(cls, name: str, value: date) -> ControlValue:
        return cls(name, ParameterKind.DATE, f"{value.year:04d}-{value.month:02d}-{value.day:02d}")

    @classmethod
    def date_time(cls, name: str, value: datetime) -> ControlValue:
        """A ``dateTime`` in UTC with ``Z``; ``value`` must be timezone-aware."""
        if value.utcoffset() is None:
            raise ValueError(f"refusing a naive datetime: {value.isoformat()}")
        utc = value.astimezone(UTC)
        text = f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc:%H:%M:%S}"
        if utc.microsecond:
            text += f".{utc.microsecond:06d}".rstrip("0")
        return cls(name, ParameterKind.DATETIME, text + "Z")

    @classmethod
    def time(cls, name: str, value: time) -> ControlValue:
        """A ``time``; an aware ``value`` keeps its offset (``Z`` for UTC)."""
        text = value.replace(tzinfo=None).isoformat()
        offset = value.utcoffset()
        if offset is not None:
            minutes = int(offset.total_seconds()) // 60
            sign = "-" if minutes < 0 else "+"
            hours, mins = divmod(abs(minutes), 60)
            text += "Z" if minutes == 0 else f"{sign}{hours:02d}:{mins:02d}"
        return cls(name, ParameterKind.TIME, text)

    @classmethod
    def duration(cls, name: str, value: timedelta) -> ControlValue:
        """A ``duration`` (days, hours, minutes, seconds; never years or months)."""
        return cls(name, ParameterKind.DURATION, _format_duration(value))

    # -- accessors --------------------------------------------------------------------------

    def as_bool(self) -> bool:
        if self.kind is not ParameterKind.BOOLEAN:
            raise TypeError(f"parameter {self.name!r} is {self.kind.value}, not boolean")
        return self.value in ("true", "1")

    def as_int(self) -> int:
        if self.kind not in (ParameterKind.INT, ParameterKind.LONG):
            raise TypeError(f"parameter {self.name!r} is {self.kind.value}, not an integer")
        return int(self.value)

    def as_float(self) -> float:
        if not self.kind.numeric:
            raise TypeError(f"parameter {self.name!r} is {self.kind.value}, not a number")
        return float(_number(self.kind, self.value))

    def as_color(self) -> tuple[int, ...]:
        """(red, green, blue) or (red, green, blue, alpha)."""
        if self.kind is not ParameterKind.COLOR:
            raise TypeError(f"parameter {self.name!r} is {self.kind.value}, not a color")
        return tuple(int(self.value[i : i + 2], 16) for i in range(0, len(self.value), 2))


@dataclass(frozen=True, slots=True)
class FormValue:
    """An untyped field of a submitted control form (XEP-0004 ``type='submit'``).

    Its kind comes from the device's declaration; see :meth:`ControlParameter.value_of`.
    """

    name: str
    value: str

    def __post_init__(self) -> None:
        _check_name("field name", self.name)
        check_text("field value", self.value)


@dataclass(frozen=True, slots=True)
class ControlParameter:
    """A control parameter as a node (or the thing itself) declares it.

    ``value`` is the current value, lexical, or ``""`` when unknown. ``minimum``/``maximum`` are
    lexical bounds and only allowed for ``int``/``long``/``double``. ``options`` (not for
    ``boolean``) are the allowed values; a form shows them as a ``list-single``. ``group`` is the
    XEP-0325 ``parameterGroup`` name (parameters that must be written together).
    """

    name: str
    kind: ParameterKind
    value: str = ""
    label: str = ""
    description: str = ""
    minimum: str | None = None
    maximum: str | None = None
    options: tuple[str, ...] = ()
    group: str = ""
    read_only: bool = False

    def __post_init__(self) -> None:
        _check_name("parameter name", self.name)
        if self.name in RESERVED_NAMES:
            raise ValueError(f"{self.name!r} is reserved for form machinery")
        for what, text in (
            ("label", self.label),
            ("description", self.description),
            ("group", self.group),
        ):
            check_text(what, text)
        object.__setattr__(self, "options", tuple(self.options))
        if self.value:
            self._check_lexical("value", self.value)
        for what, bound in (("minimum", self.minimum), ("maximum", self.maximum)):
            if bound is None:
                continue
            if not self.kind.numeric:
                raise ValueError(f"parameter {self.name!r}: {what} needs int, long or double")
            self._check_lexical(what, bound)
            if self.kind is ParameterKind.DOUBLE and math.isnan(_number(self.kind, bound)):
                raise ValueError(f"parameter {self.name!r}: {what} must not be NaN")
        if (
            self.minimum is not None
            and self.maximum is not None
            and _number(self.kind, self.minimum) > _number(self.kind, self.maximum)
        ):
            raise ValueError(f"parameter {self.name!r}: minimum is above maximum")
        if self.options:
            if self.kind is ParameterKind.BOOLEAN:
                raise ValueError(f"parameter {self.name!r}: boolean parameters take no options")
            for option in self.options:
                self._check_lexical("option", option)
            if len(set(self.options)) != len(self.options):
                raise ValueError(f"parameter {self.name!r}: duplicate options")

    def _check_lexical(self, what: str, text: str) -> None:
        problem = lexical_problem(self.kind, text)
        if problem is not None:
            raise ValueError(f"parameter {self.name!r}: {what} {problem}")

    def value_of(self, text: str) -> ControlValue:
        """A :class:`ControlValue` of this parameter's kind (ValueError if ``text`` is invalid)."""
        if self.kind is not ParameterKind.STRING:
            text = text.strip(" \t\r\n")
        return ControlValue(self.name, self.kind, text)

    def problem(self, value: ControlValue) -> str | None:
        """Why ``value`` cannot be written to this parameter (None if it can).

        Checks, in order: kind, read-only, options, range. Texts follow the XEP's examples.
        """
        if value.kind is not self.kind:
            return "Invalid parameter type."
        if self.read_only:
            return "Parameter is read-only."
        if self.options:
            if self.kind.numeric:
                allowed = any(
                    _number(self.kind, opt) == _number(self.kind, value.value)
                    for opt in self.options
                )
            else:
                allowed = value.value in self.options
            if not allowed:
                return "Value is not one of the allowed options."
        if self.kind.numeric and (self.minimum is not None or self.maximum is not None):
            number = _number(self.kind, value.value)
            low = -math.inf if self.minimum is None else _number(self.kind, self.minimum)
            high = math.inf if self.maximum is None else _number(self.kind, self.maximum)
            if not low <= number <= high:  # NaN fails too
                return "Value out of range."
        return None


def common_parameters(
    declared: Sequence[Sequence[ControlParameter]],
) -> tuple[ControlParameter, ...]:
    """Parameters common to several nodes (XEP-0325 multi-node ``getForm``).

    A parameter is common when every node declares one with the same name *and* kind. The merged
    declaration is the first node's, restricted so a value valid for it is valid on every node:
    the intersection of ranges and options, read-only if any node says so, the group only if all
    agree. Parameters whose merged range or options become empty are left out. Order is the first
    node's order.
    """
    if not declared:
        return ()
    by_name = [{param.name: param for param in params} for params in declared]
    merged: list[ControlParameter] = []
    for first in declared[0]:
        others = [names.get(first.name) for names in by_name[1:]]
        if any(other is None or other.kind is not first.kind for other in others):
            continue
        params = [first, *(other for other in others if other is not None)]
        try:
            merged.append(_merge(params))
        except ValueError:
            continue  # empty intersection: cannot be written to all nodes
    return tuple(merged)


def _merge(params: list[ControlParameter]) -> ControlParameter:
    first = params[0]
    kind = first.kind
    minimum, maximum = first.minimum, first.maximum
    options = first.options
    for other in params[1:]:
        if other.minimum is not None and (
            minimum is None or _number(kind, other.minimum) > _number(kind, minimum)
        ):
            minimum = other.minimum
        if other.maximum is not None and (
            maximum is None or _number(kind, other.maximum) < _number(kind, maximum)
        ):
            maximum = other.maximum
        if other.options:
            options = (
                tuple(opt for opt in options if opt in other.options) if options else other.options
            )
            if not options:
                raise ValueError("no common options")
    groups = {param.group for param in params}
    return ControlParameter(
        name=first.name,
        kind=kind,
        value=first.value,
        label=first.label,
        description=first.description,
        minimum=minimum,
        maximum=maximum,
        options=options,
        group=first.group if len(groups) == 1 else "",
        read_only=any(param.read_only for param in params),
    )


@dataclass(frozen=True, slots=True)
class ControlRequest:
    """A parsed ``<set>`` (or ``<getForm>``, which has no values).

    ``nodes`` empty means the thing itself. ``values`` are typed parameters in document order;
    ``form`` holds the fields of a submitted data form (untyped; the device's declarations give
    their kinds). A ``<set>`` carries one or the other. ``session`` is the form's hidden
    ``xdd session`` field, if any. ``lang`` is the ``xml:lang`` of the request element.
    """

    nodes: tuple[NodeRef, ...] = ()
    values: tuple[ControlValue, ...] = ()
    form: tuple[FormValue, ...] = ()
    session: str | None = None
    service_tokens: tuple[str, ...] = ()
    device_tokens: tuple[str, ...] = ()
    user_tokens: tuple[str, ...] = ()
    lang: str | None = None

    def __post_init__(self) -> None:
        for attr in ("nodes", "values", "form", "service_tokens", "device_tokens", "user_tokens"):
            object.__setattr__(self, attr, tuple(getattr(self, attr)))
        if self.values and self.form:
            raise ValueError("a request carries typed values or a form, not both")
        check_tokens((*self.service_tokens, *self.device_tokens, *self.user_tokens))
        if self.session is not None:
            check_text("session", self.session)
        if self.lang is not None:
            check_text("lang", self.lang)

    @property
    def parameter_names(self) -> tuple[str, ...]:
        """Names of the parameters to write, in document order, each once."""
        names = [value.name for value in self.values] or [field.name for field in self.form]
        return tuple(dict.fromkeys(names))


@dataclass(frozen=True, slots=True)
class ControlDecision:
    """The authorizer's answer (XEP-0324 ``canControl``).

    ``nodes``/``parameters`` None mean "everything requested"; a tuple narrows the request to
    those nodes/parameters (never widens it). ``allowed=False`` rejects the request.
    """

    allowed: bool
    nodes: tuple[NodeRef, ...] | None = None
    parameters: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.nodes is not None:
            object.__setattr__(self, "nodes", tuple(self.nodes))
        if self.parameters is not None:
            object.__setattr__(self, "parameters", tuple(self.parameters))


@dataclass(frozen=True, slots=True)
class SetResult:
    """What a ``<set>`` actually did: nodes and parameter names applied.

    ``narrowed`` is True when provisioning restricted the request (``setResponse`` lists them).
    """

    nodes: tuple[NodeRef, ...] = ()
    parameters: tuple[str, ...] = ()
    narrowed: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(self, "parameters", tuple(self.parameters))
        for name in self.parameters:
            _check_name("parameter name", name)


@dataclass(frozen=True, slots=True)
class ControlForm:
    """A control form as read by the client side (``getForm``)."""

    parameters: tuple[ControlParameter, ...] = ()
    title: str = ""
    session: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "parameters", tuple(self.parameters))
        check_text("title", self.title)
        if self.session is not None:
            check_text("session", self.session)

    def find(self, name: str) -> ControlParameter | None:
        """The parameter called ``name``, or None."""
        return next((param for param in self.parameters if param.name == name), None)
