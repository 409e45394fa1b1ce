"""Exception hierarchy of the ``xep`` package.

Every error raised on purpose by ``xep`` derives from :class:`XepError`:

* :class:`StanzaError` (also a :class:`ValueError`): a payload from the wire is malformed.
* :class:`ReadoutError`: the peer refused or failed a read-out with an XMPP stanza error.
* :class:`ReadoutTimeout` (also a :class:`TimeoutError`): a read-out did not finish in time.
"""

from __future__ import annotations

__all__ = ["ReadoutError", "ReadoutTimeout", "StanzaError", "XepError"]


class XepError(Exception):
    """Base class of every error raised by ``xep``."""


class StanzaError(XepError, ValueError):
    """A received payload is malformed (bad attribute, unknown element, limit exceeded...)."""


class ReadoutError(XepError):
    """The device answered a read-out request with an error.

    ``condition`` is the RFC 6120 stanza error condition (``"forbidden"``, ``"item-not-found"``,
    ``"bad-request"``, ...), or ``"undefined-condition"`` when the peer sent none (legacy
    ``<rejected>`` replies). ``text`` is the human-readable explanation, possibly empty.
    """

    def __init__(self, condition: str, text: str = "") -> None:
        super().__init__(condition, text)
        self.condition = condition
        self.text = text

    def __str__(self) -> str:
        return f"{self.condition}: {self.text}" if self.text else self.condition


class ReadoutTimeout(XepError, TimeoutError):
    """A read-out did not complete (no ``done``) within the requested time."""


class SubscriptionError(XepError):
    """The device refused an IoT-Events subscription, or the subscription is gone.

    ``condition`` is the RFC 6120 stanza error condition (``"forbidden"``, ``"item-not-found"``,
    ``"resource-constraint"``, ...); ``"gone"`` when the subscription ended on our side (cancelled,
    plugin unloaded, session ended, device went offline). ``text`` may be empty.
    """

    def __init__(self, condition: str, text: str = "") -> None:
        super().__init__(condition, text)
        self.condition = condition
        self.text = text

    def __str__(self) -> str:
        return f"{self.condition}: {self.text}" if self.text else self.condition


class SubscriptionTimeout(XepError, TimeoutError):
    """A subscription request was not answered, or no event arrived, within the given time."""


__all__ += ["SubscriptionError", "SubscriptionTimeout"]


import typing  # noqa: E402 (appended section)

if typing.TYPE_CHECKING:
    from xep.xep_0326.model import ResultCode


class ConcentratorError(XepError):
    """A XEP-0326 concentrator answered a request with a result code other than ``OK``.

    ``result_code`` is a :class:`xep.xep_0326.model.ResultCode`; for plain RFC 6120 stanza errors
    it is mapped from the condition (``item-not-found`` -> ``NOT_FOUND``, ``forbidden`` ->
    ``INSUFFICIENT_PRIVILEGES``...), which is kept in ``condition`` (empty when the peer sent only
    a ``…Response``). ``text`` is the stanza error text, possibly empty.
    """

    def __init__(self, result_code: ResultCode, text: str = "", condition: str = "") -> None:
        super().__init__(result_code, text)
        self.result_code = result_code
        self.text = text
        self.condition = condition

    def __str__(self) -> str:
        code = self.result_code.value
        return f"{code}: {self.text}" if self.text else code


class ConcentratorTimeout(XepError, TimeoutError):
    """A XEP-0326 request was not answered within the given time."""


__all__ += ["ConcentratorError", "ConcentratorTimeout"]


# -- XEP-0325 control ----------------------------------------------------------------------------

__all__ += ["ControlError", "ControlFailed", "ControlLocked", "ControlTimeout"]


class ControlError(XepError):
    """The device answered a control request (``set``/``getForm``) with a stanza error.

    ``condition`` is the RFC 6120 condition (``"forbidden"``, ``"item-not-found"``,
    ``"bad-request"``, ``"conflict"``...), ``error_type`` the error type (``"cancel"``,
    ``"modify"``, ``"wait"``...), ``text`` the human-readable explanation (possibly empty) and
    ``param_errors`` maps each offending parameter to the device's ``paramError`` text.
    """

    def __init__(
        self,
        condition: str,
        text: str = "",
        param_errors: dict[str, str] | None = None,
        error_type: str = "cancel",
    ) -> None:
        super().__init__(condition, text)
        self.condition = condition
        self.text = text
        self.param_errors: dict[str, str] = dict(param_errors or {})
        self.error_type = error_type

    def __str__(self) -> str:
        details = "; ".join(f"{var}: {text}" for var, text in self.param_errors.items())
        parts = [part for part in (self.text, details) if part]
        return f"{self.condition}: {' '.join(parts)}" if parts else self.condition


class ControlTimeout(XepError, TimeoutError):
    """A control request got no answer in time."""


class ControlFailed(XepError):
    """Raised by a control target when applying values failed on the device.

    The plugin answers ``cancel/internal-server-error`` with ``message`` as the stanza text and,
    when ``parameter`` is given, a ``paramError`` for it.
    """

    def __init__(self, message: str, parameter: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.parameter = parameter


class ControlLocked(ControlFailed):
    """The device (or the parameter) is locked by another user or process; retry later.

    The plugin answers ``wait/conflict`` (XEP-0325's "Locked").
    """
