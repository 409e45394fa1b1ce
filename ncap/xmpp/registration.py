"""The thing's side of XEP-0347: register with the thing registry, be claimed, removed, disowned.

State kept in ``claim.json`` (mode 0600) in the gateway's state directory: the claim key (128
random bits, made once), the owner once claimed, whether the owner made the thing public or
removed it, and the registry and provisioning addresses last used. The claim URI and its QR
code (``claim.uri``, ``claim.png``, ``claim.svg``, all 0600: they carry the key) are written
there while the thing is unclaimed, and deleted once it is claimed.

The gateway registers itself with the configured meta tags plus ``KEY``, then each TIM and
channel node (``nodeId``/``sourceId``, tags ``NAME`` and ``CLASS``, no key): our registry
treats key-less nodes as parts of their concentrator, claimed with it. Only the registry's
address is trusted for ``claimed``/``removed``/``disowned``.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from ncap.errors import NcapError
from ncap.files import write_private
from xep.xep_0323.model import NodeRef
from xep.xep_0347.model import KEY, MetaTag, Register

_LOGGER = logging.getLogger(__name__)

CLAIM_FILE = "claim.json"
#: What a thing that can be claimed shows beside its state: the URI and its QR code.
CLAIM_URI_FILE = "claim.uri"
CLAIM_CODE_FILES = (CLAIM_URI_FILE, "claim.png", "claim.svg")
CLAIM_KEY_BYTES = 16  # 128 bits


class ClaimStateError(NcapError):
    """The claim state file exists but cannot be read or written."""


@dataclass(slots=True)
class ClaimState:
    key: str
    owner: str | None = None
    public: bool = False
    removed: bool = False
    registry: str | None = None
    provisioning: str | None = None

    @property
    def claimed(self) -> bool:
        return self.owner is not None


def new_claim_key() -> str:
    return secrets.token_hex(CLAIM_KEY_BYTES)


def forget_claim_files(directory: Path) -> None:
    """Delete the claim URI and QR code (the key in them is spent or about to change)."""
    for name in CLAIM_CODE_FILES:
        (directory / name).unlink(missing_ok=True)


class ClaimStore:
    """``claim.json`` in the state directory (created 0700 when missing)."""

    def __init__(self, state_dir: Path) -> None:
        self.directory = state_dir
        self.path = state_dir / CLAIM_FILE

    def load(self) -> ClaimState:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            state = ClaimState(new_claim_key())
            self.save(state)
            return state
        except (OSError, ValueError) as err:
            raise ClaimStateError(f"cannot read {self.path}: {err}") from None
        try:
            state = ClaimState(**raw)
        except TypeError as err:
            raise ClaimStateError(f"{self.path}: unexpected content ({err})") from None
        if not isinstance(state.key, str) or len(state.key) < 2 * CLAIM_KEY_BYTES:
            raise ClaimStateError(f"{self.path}: claim key missing or too short")
        return state

    def save(self, state: ClaimState) -> None:
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_private(self.path, json.dumps(asdict(state), indent=1).encode())
        except OSError as err:
            raise ClaimStateError(f"cannot write {self.path}: {err}") from None


def registration_tags(tags: dict[str, str | float], key: str | None) -> tuple[MetaTag, ...]:
    """The gateway's own registration: configured tags plus the claim key."""
    result = [MetaTag(name, value) for name, value in tags.items()]
    if key is not None:
        result.append(MetaTag(KEY, key))
    return tuple(result)


def node_registrations(nodes: Iterable[tuple[NodeRef, str]]) -> list[Register]:
    """One key-less registration per concentrator node: ``(ref, class)`` pairs."""
    return [
        Register((MetaTag("NAME", ref.node_id), MetaTag("CLASS", kind)), ref) for ref, kind in nodes
    ]


#: Writes the claim QR files for a claim URI into a directory; returns the paths written.
QrWriter = Callable[[str, Path], list[Path]]
