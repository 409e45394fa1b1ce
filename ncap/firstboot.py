"""First boot without a keyboard: configuration and secrets dropped on the boot partition.

Whoever flashes a card puts, in ``ncap/`` on its FAT boot partition (``/boot/firmware/ncap``
on Raspberry Pi OS)::

    ncap.toml                 the gateway configuration (paths relative to it)
    secrets/xmpp-password     the XMPP password; leave it out to have the account created
                              in-band (XEP-0077), which works when the server allows it
    *.pem, *.crt              e.g. the CA the XMPP server's certificate is checked against

`import_from_boot` runs once (``ncap-firstboot.service``): it copies these files into the
configuration directory, secrets private to root, validates the result as ``ncap run`` would,
and only then installs it, deletes the secrets from the partition (FAT cannot keep them
private) and leaves a stamp in the state directory. A bad configuration installs nothing and
is explained in ``import-error.txt`` beside it, where the person at the card reader looks.

`publish_claim` shows the thing's claim URI (written by the gateway to ``claim.uri`` in its
state directory while unclaimed) as a QR code on the console and saves it as PNG and SVG on
the boot partition; once claimed, it removes those copies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import tempfile
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from slixmpp.exceptions import IqError, IqTimeout

from ncap.config import Config, load_config, parse_config, write_secret
from ncap.errors import ConfigError, NcapError, XmppConnectError
from ncap.xmpp.connection import SecureClient
from ncap.xmpp.registration import CLAIM_URI_FILE

__all__ = [
    "BOOT_DIR",
    "PASSWORD_FILE",
    "ImportResult",
    "RegistrationRefused",
    "import_from_boot",
    "publish_claim",
    "register_account",
]

_LOGGER = logging.getLogger(__name__)

BOOT_DIR = Path("/boot/firmware/ncap")
CONFIG_DIR = Path("/etc/ncap")
STATE_DIR = Path("/var/lib/ncap")
CONFIG_NAME = "ncap.toml"
SECRETS = "secrets"
# The unit hands this file to the service as a systemd credential of the same name.
PASSWORD_FILE = Path(SECRETS) / "xmpp-password"
STAMP = "firstboot.done"
ERROR_FILE = "import-error.txt"
PUBLIC_SUFFIXES = (".pem", ".crt")
CLAIM_FILES = ("claim.png", "claim.svg", "claim.txt")
REGISTER_TIMEOUT_S = 30.0


class RegistrationRefused(NcapError):
    """The XMPP server did not create the account in-band."""


@dataclass(frozen=True)
class ImportResult:
    imported: bool
    """False when there was nothing to do (already imported, or nothing on the partition)."""
    installed: tuple[Path, ...] = ()
    registered: str | None = None
    """The JID whose account was created in-band, if one was."""


def import_from_boot(
    boot_dir: Path = BOOT_DIR,
    config_dir: Path = CONFIG_DIR,
    state_dir: Path = STATE_DIR,
    *,
    register_timeout_s: float = REGISTER_TIMEOUT_S,
) -> ImportResult:
    """Import ``boot_dir/ncap.toml`` and its secrets into *config_dir*, once.

    Raises ConfigError (nothing installed, ``import-error.txt`` written on the partition) or
    RegistrationRefused / XmppConnectError when the account could not be created in-band.
    """
    stamp = state_dir / STAMP
    source = boot_dir / CONFIG_NAME
    if stamp.exists() or not source.is_file():
        return ImportResult(imported=False)
    config_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".firstboot-", dir=config_dir))
    try:
        try:
            staged = _stage(boot_dir, staging)
            config = _parse(staging / CONFIG_NAME)
            registered = None
            password = staging / PASSWORD_FILE
            if not password.exists():
                password.parent.mkdir(mode=0o700, exist_ok=True)
                secret = secrets.token_urlsafe(24)
                _register(config, staging, secret, register_timeout_s)
                write_secret(password, secret)
                staged.append(PASSWORD_FILE)
                registered = config.xmpp.jid
            load_config(staging / CONFIG_NAME)  # exactly what `ncap run` will check
        except NcapError as err:
            _explain(boot_dir, err)
            raise
        installed = _install(staging, staged, config_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _clear_boot_copies(boot_dir, staged)
    state_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(f"imported {source} at {datetime.now(UTC).isoformat()}\n", encoding="utf-8")
    _LOGGER.info("first boot: installed %s", ", ".join(str(p) for p in installed))
    return ImportResult(imported=True, installed=tuple(installed), registered=registered)


def _stage(boot_dir: Path, staging: Path) -> list[Path]:
    """Copy what we take from the partition into *staging*, with the modes it will have."""
    taken = [Path(CONFIG_NAME)]
    taken += [Path(p.name) for p in sorted(boot_dir.iterdir()) if _is_public(p)]
    secret_dir = boot_dir / SECRETS
    if secret_dir.is_dir():
        taken += [Path(SECRETS) / p.name for p in sorted(secret_dir.iterdir()) if p.is_file()]
    (staging / SECRETS).mkdir(mode=0o700)
    for relative in taken:
        data = (boot_dir / relative).read_bytes()
        private = relative.parts[0] == SECRETS
        fd = os.open(staging / relative, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            # A secret edited on Windows may end in CRLF; read_secret strips it anyway.
            handle.write(data)
            os.fchmod(fd, 0o600 if private else 0o644)
    return taken


def _is_public(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in PUBLIC_SUFFIXES


def _parse(path: Path) -> Config:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(CONFIG_NAME, f"not valid TOML: {err}") from None
    config = parse_config(raw)
    if config.xmpp.password_file != PASSWORD_FILE:
        raise ConfigError(
            "xmpp.password_file",
            f'must be "{PASSWORD_FILE}": systemd hands that file to the service as a credential',
        )
    return config


def _register(config: Config, staging: Path, password: str, timeout: float) -> None:
    xmpp = config.xmpp
    ca_file = None if xmpp.ca_file is None else staging / xmpp.ca_file
    asyncio.run(
        register_account(
            xmpp.jid,
            password,
            ca_file=ca_file,
            server=xmpp.server,
            port=xmpp.port,
            timeout=timeout,
        )
    )


class _Registrar(SecureClient):
    """Creates its own account during stream negotiation, then logs in with it."""

    def __init__(
        self, jid: str, password: str, *, ca_file: Path | None, server: str | None, port: int
    ) -> None:
        super().__init__(jid, password, ca_file=ca_file, server=server, port=port)
        self.register_plugin("xep_0004")
        self.register_plugin("xep_0066")
        self.register_plugin("xep_0077")
        self.offered = False
        self.refusal: str | None = None
        self.add_event_handler("register", self._register)

    async def _register(self, _form: object) -> None:
        # Only called when the server offers in-band registration in its stream features.
        self.offered = True
        iq = self.Iq()
        iq["type"] = "set"
        iq["register"]["username"] = self.boundjid.user
        iq["register"]["password"] = self.password
        try:
            await iq.send(timeout=REGISTER_TIMEOUT_S)  # type: ignore[no-untyped-call]
        except IqError as err:
            condition = err.iq["error"]["condition"]
            text = err.iq["error"]["text"]
            self.refusal = f"{condition}: {text}" if text else condition
            self.abort()
        except IqTimeout:
            self.refusal = "no answer to the registration request"
            self.abort()


async def register_account(
    jid: str,
    password: str,
    *,
    ca_file: Path | None,
    server: str | None,
    port: int,
    timeout: float = REGISTER_TIMEOUT_S,
) -> None:
    """Create the account *jid* with *password* in-band (XEP-0077), over verified TLS, and
    prove it by logging in. RegistrationRefused when the server does not allow it."""
    client = _Registrar(jid, password, ca_file=ca_file, server=server, port=port)
    try:
        await client.start(timeout)
    except XmppConnectError as err:
        if client.refusal is not None:
            raise RegistrationRefused(
                f"{jid}: the server refused the account: {client.refusal}"
            ) from None
        if not client.offered and "login refused" in str(err):
            raise RegistrationRefused(
                f"{jid}: the server does not offer in-band registration; create the account "
                f"and put its password in {PASSWORD_FILE}"
            ) from None
        raise
    finally:
        with contextlib.suppress(Exception):
            await client.disconnect(wait=2.0)
    _LOGGER.info("first boot: created XMPP account %s in-band", jid)


def _install(staging: Path, staged: list[Path], config_dir: Path) -> list[Path]:
    secret_dir = config_dir / SECRETS
    secret_dir.mkdir(mode=0o700, exist_ok=True)
    secret_dir.chmod(0o700)
    installed = []
    for relative in staged:
        target = config_dir / relative
        os.replace(staging / relative, target)  # same file system: atomic
        installed.append(target)
    return installed


def _clear_boot_copies(boot_dir: Path, staged: list[Path]) -> None:
    """Secrets leave the partition; the configuration stays as a record, renamed."""
    for relative in staged:
        if relative.parts[0] == SECRETS:
            (boot_dir / relative).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        (boot_dir / CONFIG_NAME).replace(boot_dir / f"{CONFIG_NAME}.imported")
    (boot_dir / ERROR_FILE).unlink(missing_ok=True)


def _explain(boot_dir: Path, err: NcapError) -> None:
    """Tell the person at the card reader what went wrong, where they will look."""
    with contextlib.suppress(OSError):
        (boot_dir / ERROR_FILE).write_text(
            f"{datetime.now(UTC).isoformat()}: nothing was imported: {err}\n"
            f"Fix {CONFIG_NAME} (or the secrets) here and boot again.\n",
            encoding="utf-8",
        )


def publish_claim(state_dir: Path, boot_dir: Path, console: TextIO) -> list[Path]:
    """Show and save the claim QR while the thing is unclaimed; remove the copies once not.

    Returns the files written on the boot partition (none when claimed, or when the boot
    partition has no ``ncap/`` directory: then the code is only shown).
    """
    from ncap.qr import save_qr, terminal_qr

    uri_file = state_dir / CLAIM_URI_FILE
    try:
        uri = uri_file.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        uri = ""
    if not uri:
        for name in CLAIM_FILES:
            (boot_dir / name).unlink(missing_ok=True)
        return []
    console.write(
        "\nScan to claim this NCAP gateway (or run `ncap claim URI`):\n\n"
        f"{terminal_qr(uri)}\n\n{uri}\n\n"
    )
    console.flush()
    if not boot_dir.is_dir():
        return []
    png, svg = save_qr(uri, boot_dir, stem="claim")
    text = boot_dir / "claim.txt"
    text.write_text(uri + "\n", encoding="utf-8")
    return [png, svg, text]
