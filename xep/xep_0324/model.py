"""Typed, I/O-free model of XEP-0324 IoT Provisioning (``urn:xmpp:iot:provisioning``).

Questions go from the thing to its provisioning service (``isFriend``, ``canRead``,
``canControl``); answers come back as ``*Response`` elements that may narrow the request to some
nodes and fields (read) or parameters (control). The service steers the thing with ``friend`` /
``unfriend`` messages and ``clearCache`` (``xmpp-iot-xeps.md`` §3).
"""

from __future__ import annotations

from dataclasses import dataclass

from xep.xep_0323.model import FieldType, NodeRef

__all__ = [
    "NS",
    "CanControl",
    "CanControlResponse",
    "CanRead",
    "CanReadResponse",
    "ClearCache",
    "ClearCacheResponse",
    "Friend",
    "IsFriend",
    "IsFriendResponse",
    "ProvisioningElement",
    "Unfriend",
]

NS = "urn:xmpp:iot:provisioning"


@dataclass(frozen=True, slots=True)
class IsFriend:
    jid: str


@dataclass(frozen=True, slots=True)
class IsFriendResponse:
    jid: str
    result: bool
    secondary_trust_allowed: bool = False


@dataclass(frozen=True, slots=True)
class CanRead:
    """``jid`` (the requester's bare JID) asks to read ``types`` of ``nodes`` (empty: all) and
    ``field_names`` (empty: all); tokens are passed through from the read-out request."""

    jid: str
    types: FieldType = FieldType.ALL
    nodes: tuple[NodeRef, ...] = ()
    field_names: tuple[str, ...] = ()
    service_tokens: tuple[str, ...] = ()
    device_tokens: tuple[str, ...] = ()
    user_tokens: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CanReadResponse:
    """``result`` false: refused. True with no nodes/fields: everything asked is allowed; with
    ``nodes`` and/or ``field_names``: only those."""

    jid: str
    result: bool
    types: FieldType = FieldType.ALL
    nodes: tuple[NodeRef, ...] = ()
    field_names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CanControl:
    jid: str
    nodes: tuple[NodeRef, ...] = ()
    parameters: tuple[str, ...] = ()
    service_tokens: tuple[str, ...] = ()
    device_tokens: tuple[str, ...] = ()
    user_tokens: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CanControlResponse:
    jid: str
    result: bool
    nodes: tuple[NodeRef, ...] = ()
    parameters: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ClearCache:
    pass


@dataclass(frozen=True, slots=True)
class ClearCacheResponse:
    pass


@dataclass(frozen=True, slots=True)
class Friend:
    """Message from the service: befriend ``jid``."""

    jid: str


@dataclass(frozen=True, slots=True)
class Unfriend:
    """Message from the service: end the friendship with ``jid``."""

    jid: str


ProvisioningElement = (
    IsFriend | IsFriendResponse | CanRead | CanReadResponse | CanControl | CanControlResponse
    | ClearCache | ClearCacheResponse | Friend | Unfriend
)  # fmt: skip
