"""Pure trigger evaluation for one IoT-Events subscription: no I/O, no clock.

Time is passed in as monotonic seconds (``now``); the plugin owns the clock and the timers.

Rules (the protoXEP is terse; these are our readings of ``xmpp-iot-xeps.md`` §2.5):

* **Scope.** Only fields of addressed nodes (``<node>`` children; none = every node) whose type
  flags pass the type filter are considered. When the subscription has field triggers, fields not
  named by one are ignored entirely: they neither trigger nor are sent.
* **Reference.** Changes are measured against the *last value sent* to this subscriber (per node
  and field name), not against the previous report: slow drifts add up and are reported once they
  cross the threshold. Before anything was sent, a trigger's ``current_value`` is the reference.
* **Thresholds.** For numeric fields (``numeric``/``int``/``long``) with ``changed_by``: fire when
  ``|new - ref| >= changed_by``. With ``changed_up`` and/or ``changed_down``: fire on a rise of at
  least ``changed_up`` or a fall of at least ``changed_down``; a direction without threshold never
  fires. ``changed_by`` overrides the other two.
* **Any change.** A field without threshold (named without one, or every field when the
  subscription names none), and any non-numeric field, fires on any change of its value, unit or
  kind. Numbers compare by value (``10`` equals ``10.0``); ``NaN``/``INF`` compare lexically.
* **Always news.** A field never sent before and without ``current_value`` fires (the subscriber
  has no value for it). A change of the QoS flags always fires (a value turning ``error`` or
  ``missing`` matters even within the threshold).
* **What is sent.** When a report fires, all in-scope fields of that report are sent (a consistent
  snapshot of the node), and all of them become the new reference.
* **Rate limit** (``min_interval``). Two sends are never closer than ``min_interval``. A report
  that fires too early is held back; later reports for the same node update the held-back values
  (latest value per field wins, even if it no longer crosses the threshold: a trigger happened),
  and everything held back is sent once the interval has passed (:meth:`poll`).
* **Heartbeat** (``max_interval``, not below ``min_heartbeat``). When nothing was sent for that
  long, :meth:`poll` asks for a full read-out (``Decision.heartbeat``). Read-outs (heartbeat or
  the initial ``req='true'`` one) count as sends: announce them with :meth:`begin_readout` and
  report what went out with :meth:`note_sent`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from xep.iot_events.model import SubscribeRequest
from xep.xep_0323.model import Field, FieldKind, NodeFields, NodeRef

__all__ = ["Decision", "TriggerEvaluator", "field_fires"]

_NUMERIC = (FieldKind.NUMERIC, FieldKind.INT, FieldKind.LONG)


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do now: send ``items`` as one event, and/or run a heartbeat read-out."""

    items: tuple[NodeFields, ...] = ()
    heartbeat: bool = False

    def __bool__(self) -> bool:
        return bool(self.items) or self.heartbeat


def _number(fld: Field) -> float | None:
    """Finite numeric value of a numeric field, else None."""
    if fld.kind not in _NUMERIC:
        return None
    number = fld.as_float()
    return number if math.isfinite(number) else None


def _same_value(old: Field, new: Field) -> bool:
    old_number, new_number = _number(old), _number(new)
    if old_number is not None and new_number is not None:
        return old_number == new_number and old.unit == new.unit
    return (old.kind, old.value, old.unit, old.data_type) == (
        new.kind,
        new.value,
        new.unit,
        new.data_type,
    )


def field_fires(request: SubscribeRequest, reference: Field | None, new: Field) -> bool:
    """True if ``new`` is worth an event given the ``reference`` value last sent (None: never)."""
    trigger = request.trigger(new.name)
    new_number = _number(new)
    if reference is None:
        if trigger is None or trigger.current_value is None or new_number is None:
            return True
        ref_number: float | None = trigger.current_value
    else:
        if reference.qos != new.qos:
            return True
        ref_number = _number(reference)
        if ref_number is None or new_number is None or reference.unit != new.unit:
            return not _same_value(reference, new)
    assert ref_number is not None  # both numeric and finite from here on
    if trigger is None or not trigger.has_threshold:
        return new_number != ref_number
    delta = new_number - ref_number
    up, down = trigger.up, trigger.down
    return (up is not None and delta >= up) or (down is not None and -delta >= down)


class TriggerEvaluator:
    """Decides when and what to send for one subscription (see the module docstring)."""

    def __init__(
        self, request: SubscribeRequest, now: float, *, min_heartbeat: float = 0.0
    ) -> None:
        self.request = request
        self.min_interval = (
            request.min_interval.total_seconds() if request.min_interval is not None else 0.0
        )
        self.heartbeat_interval: float | None = (
            max(request.max_interval.total_seconds(), min_heartbeat)
            if request.max_interval is not None
            else None
        )
        #: Time of the last send (event or read-out); None before the first one.
        self.last_sent: float | None = None
        self._anchor = now  # heartbeat timing starts at creation
        self._sent: dict[tuple[NodeRef, str], Field] = {}
        self._pending: dict[NodeRef, dict[str, tuple[datetime, Field]]] = {}

    # -- queries ----------------------------------------------------------------------------

    @property
    def pending(self) -> tuple[NodeFields, ...]:
        """Values held back by the rate limit, grouped per node and timestamp."""
        items: list[NodeFields] = []
        for node, by_name in self._pending.items():
            stamps: dict[datetime, list[Field]] = {}
            for stamp, fld in by_name.values():
                stamps.setdefault(stamp, []).append(fld)
            items.extend(NodeFields(node, stamp, tuple(stamps[stamp])) for stamp in sorted(stamps))
        return tuple(items)

    def reference(self, node: NodeRef, name: str) -> Field | None:
        """The value of field ``name`` of ``node`` last sent to the subscriber."""
        return self._sent.get((node, name))

    def scope(self, fields: NodeFields) -> NodeFields | None:
        """The part of ``fields`` this subscription covers, or None if nothing."""
        if not self.request.wants_node(fields.node):
            return None
        kept = tuple(
            fld
            for fld in fields.fields
            if self.request.wants_field(fld.name) and self.request.wants_types(fld.types)
        )
        return NodeFields(fields.node, fields.timestamp, kept) if kept else None

    def next_deadline(self) -> float | None:
        """When :meth:`poll` has something to do next (None: only a new report can change it)."""
        deadlines: list[float] = []
        if self._pending:
            assert self.last_sent is not None  # pending only exists because of a recent send
            deadlines.append(self.last_sent + self.min_interval)
        elif self.heartbeat_interval is not None:
            deadlines.append(self._anchor + self.heartbeat_interval)
        return min(deadlines, default=None)

    # -- inputs -----------------------------------------------------------------------------

    def offer(self, fields: NodeFields, now: float) -> Decision:
        """A fresh report: returns the event to send now (possibly nothing; may be held back)."""
        scoped = self.scope(fields)
        if scoped is None:
            return Decision()
        held = self._pending.get(scoped.node)
        if held is None:
            if not any(
                field_fires(self.request, self._sent.get((scoped.node, fld.name)), fld)
                for fld in scoped.fields
            ):
                return Decision()
            held = self._pending[scoped.node] = {}
        for fld in scoped.fields:
            held[fld.name] = (scoped.timestamp, fld)
        return self._flush_if_allowed(now)

    def poll(self, now: float) -> Decision:
        """Timer tick: send what the rate limit held back, or ask for a heartbeat read-out."""
        decision = self._flush_if_allowed(now)
        if decision or self._pending:
            return decision
        if self.heartbeat_interval is not None and now >= self._anchor + self.heartbeat_interval:
            self._mark(now)
            return Decision(heartbeat=True)
        return Decision()

    def begin_readout(self, now: float) -> None:
        """A read-out is being sent now: it counts as a send and supersedes held-back values."""
        self._pending.clear()
        self._mark(now)

    def note_sent(self, fields: NodeFields) -> None:
        """``fields`` went out to the subscriber (e.g. in a read-out): they become the reference."""
        scoped = self.scope(fields)
        if scoped is not None:
            for fld in scoped.fields:
                self._sent[(scoped.node, fld.name)] = fld

    # -- internals --------------------------------------------------------------------------

    def _mark(self, now: float) -> None:
        self.last_sent = now
        self._anchor = now

    def _flush_if_allowed(self, now: float) -> Decision:
        if not self._pending:
            return Decision()
        # Same expression as in next_deadline(): a poll at the deadline always makes progress.
        if self.last_sent is not None and now < self.last_sent + self.min_interval:
            return Decision()
        items = self.pending
        self._pending.clear()
        for item in items:
            self.note_sent(item)
        self._mark(now)
        return Decision(items)
