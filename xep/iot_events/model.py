"""Typed, immutable model of IoT-Events subscriptions (protoXEP ``urn:xmpp:iot:events``).

Pure module: no XML, no I/O, no clock. :mod:`xep.iot_events.convert` maps it to and from the wire.
Event data itself is ordinary XEP-0323 data, so the field/node types come from
:mod:`xep.xep_0323.model`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from xep.xep_0323.model import (
    INT32_MAX,
    INT32_MIN,
    FieldType,
    NodeRef,
    ReadoutRequest,
    is_xml_text,
)

__all__ = ["FieldTrigger", "SubscribeRequest"]


def _check_positive(what: str, value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise ValueError(f"{what} must be a positive finite number, got {value!r}")


@dataclass(frozen=True, slots=True)
class FieldTrigger:
    """A ``<field>`` child of ``<subscribe>``: a change trigger for the field called ``name``.

    ``changed_by`` fires on a change of at least that much in either direction and overrides
    ``changed_up``/``changed_down`` (which fire on a rise / fall of at least that much). All three
    are positive. ``current_value`` is the subscriber's idea of the current value: the reference
    changes are measured from until the first event is sent. A trigger without any threshold fires
    on any change of the field (see :mod:`xep.iot_events.trigger`).
    """

    name: str
    current_value: float | None = None
    changed_by: float | None = None
    changed_up: float | None = None
    changed_down: float | None = None

    def __post_init__(self) -> None:
        if not is_xml_text(self.name):
            raise ValueError(f"field name contains characters XML cannot carry: {self.name!r}")
        if self.current_value is not None and not math.isfinite(self.current_value):
            raise ValueError(f"current_value must be finite, got {self.current_value!r}")
        _check_positive("changed_by", self.changed_by)
        _check_positive("changed_up", self.changed_up)
        _check_positive("changed_down", self.changed_down)

    @property
    def up(self) -> float | None:
        """Effective rise threshold (``changed_by`` overrides ``changed_up``)."""
        return self.changed_by if self.changed_by is not None else self.changed_up

    @property
    def down(self) -> float | None:
        """Effective fall threshold (``changed_by`` overrides ``changed_down``)."""
        return self.changed_by if self.changed_by is not None else self.changed_down

    @property
    def has_threshold(self) -> bool:
        """True if any of ``changed_by``/``changed_up``/``changed_down`` is set."""
        return self.up is not None or self.down is not None


def _check_duration(what: str, value: timedelta | None, *, positive: bool = False) -> None:
    if value is None:
        return
    if value < timedelta(0) or (positive and value == timedelta(0)):
        raise ValueError(f"{what} must be {'positive' if positive else '>= 0'}, got {value}")


@dataclass(frozen=True, slots=True)
class SubscribeRequest:
    """A parsed ``<subscribe>``.

    ``types`` is never empty after parsing (no type flags asks for ``ALL``, as in ``<req>``).
    ``max_age``: how old (historical) values may be; ``min_interval``: rate limit between two
    events; ``max_interval``: heartbeat, an event at least this often (> 0, >= ``min_interval``);
    ``initial_readout`` (wire ``req``): send a read-out at once. Field-trigger names are unique.
    """

    seqnr: int
    types: FieldType = FieldType.ALL
    nodes: tuple[NodeRef, ...] = ()
    fields: tuple[FieldTrigger, ...] = ()
    max_age: timedelta | None = None
    min_interval: timedelta | None = None
    max_interval: timedelta | None = None
    initial_readout: bool = False
    service_tokens: tuple[str, ...] = ()
    device_tokens: tuple[str, ...] = ()
    user_tokens: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not INT32_MIN <= self.seqnr <= INT32_MAX:
            raise ValueError(f"seqnr {self.seqnr} does not fit xs:int")
        for attr in ("nodes", "fields", "service_tokens", "device_tokens", "user_tokens"):
            object.__setattr__(self, attr, tuple(getattr(self, attr)))
        names = [trigger.name for trigger in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"field triggers must have unique names, got {names}")
        _check_duration("max_age", self.max_age)
        _check_duration("min_interval", self.min_interval)
        _check_duration("max_interval", self.max_interval, positive=True)
        if (
            self.min_interval is not None
            and self.max_interval is not None
            and self.min_interval > self.max_interval
        ):
            raise ValueError(
                f"min_interval {self.min_interval} is longer than max_interval {self.max_interval}"
            )
        # Token and field-name validity: the equivalent read-out request checks them.
        self.to_readout_request()

    @property
    def field_names(self) -> tuple[str, ...]:
        """Names of the field triggers (empty: every field)."""
        return tuple(trigger.name for trigger in self.fields)

    def trigger(self, name: str) -> FieldTrigger | None:
        """The trigger for field ``name``, or None."""
        for trigger in self.fields:
            if trigger.name == name:
                return trigger
        return None

    def to_readout_request(self, now: datetime | None = None) -> ReadoutRequest:
        """The equivalent XEP-0323 request (used for authorization and for read-outs).

        With ``max_age`` and an aware ``now``, ``from_time`` is ``now - max_age``.
        """
        from_time = None if now is None or self.max_age is None else now - self.max_age
        return ReadoutRequest(
            seqnr=self.seqnr,
            types=self.types,
            nodes=self.nodes,
            field_names=self.field_names,
            from_time=from_time,
            service_tokens=self.service_tokens,
            device_tokens=self.device_tokens,
            user_tokens=self.user_tokens,
        )

    def wants_node(self, node: NodeRef) -> bool:
        """True if ``node`` is addressed (no ``node`` children means every node)."""
        return not self.nodes or any(ref.matches(node) for ref in self.nodes)

    def wants_types(self, types: FieldType) -> bool:
        """True if a field with these type flags passes the type filter (no flags: yes)."""
        return not types or bool(types & self.types)

    def wants_field(self, name: str) -> bool:
        """True if the field name is covered (no field triggers means every field)."""
        return not self.fields or any(trigger.name == name for trigger in self.fields)
