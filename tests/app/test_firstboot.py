"""First boot from a fake boot partition: config and secrets imported once, with private modes;
a bad configuration installs nothing and says why on the partition; the claim QR shown and
saved there; the XMPP account created in-band (XEP-0077) against a real Prosody that allows it,
and a clear refusal from one that does not."""

from __future__ import annotations

import asyncio
import io
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ncap.cli import main
from ncap.config import load_config
from ncap.errors import ConfigError
from ncap.firstboot import RegistrationRefused, import_from_boot, publish_claim
from ncap.qr import decode_qr_image
from ncap.rig.prosody import PrivateProsody
from ncap.xmpp.connection import SecureClient

TIMEOUT = 20.0
CONFIG = """\
[gateway]
name = "gw"

[xmpp]
jid = "thing@ncap.test"
password_file = "secrets/xmpp-password"
{extra}

[[tim]]
name = "env"
port = "/dev/ncap/rs485-a"
"""


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A boot partition's ncap/ directory (files 0644 as on FAT), /etc/ncap, /var/lib/ncap."""
    boot, etc, state = tmp_path / "boot" / "ncap", tmp_path / "etc" / "ncap", tmp_path / "state"
    boot.mkdir(parents=True)
    return boot, etc, state


def _drop(boot: Path, config: str, password: str | None = "s3cret\r\n") -> None:  # noqa: S107
    (boot / "ncap.toml").write_text(config)
    (boot / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    if password is not None:
        (boot / "secrets").mkdir()
        (boot / "secrets" / "xmpp-password").write_text(password)
    for path in [*boot.iterdir(), *boot.glob("secrets/*")]:
        if path.is_file():
            path.chmod(0o644)  # what a FAT mount shows


def test_the_boot_partition_is_imported_once_with_private_secrets(
    dirs: tuple[Path, Path, Path],
) -> None:
    boot, etc, state = dirs
    _drop(boot, CONFIG.format(extra='ca_file = "ca.pem"'))

    result = import_from_boot(boot, etc, state)

    assert result.imported
    assert result.registered is None
    assert _mode(etc / "ncap.toml") == 0o644
    assert _mode(etc / "ca.pem") == 0o644
    assert _mode(etc / "secrets") == 0o700
    assert _mode(etc / "secrets" / "xmpp-password") == 0o600
    config = load_config(etc / "ncap.toml")
    assert config.xmpp.password_file == etc / "secrets" / "xmpp-password"
    assert config.xmpp.ca_file == etc / "ca.pem"
    # The secret leaves the FAT partition; the configuration stays as a record.
    assert not (boot / "secrets" / "xmpp-password").exists()
    assert not (boot / "ncap.toml").exists()
    assert (boot / "ncap.toml.imported").is_file()
    assert (state / "firstboot.done").is_file()
    assert not [p for p in etc.iterdir() if p.name.startswith(".firstboot-")]

    # Once: a configuration dropped later is not imported over the installed one.
    (boot / "ncap.toml").write_text(CONFIG.format(extra="port = 5223"))
    assert not import_from_boot(boot, etc, state).imported
    assert load_config(etc / "ncap.toml").xmpp.port == 5222


def test_a_bad_configuration_installs_nothing_and_says_why_on_the_partition(
    dirs: tuple[Path, Path, Path],
) -> None:
    boot, etc, state = dirs
    _drop(boot, CONFIG.format(extra="port = 70000"))

    with pytest.raises(ConfigError, match=r"xmpp\.port"):
        import_from_boot(boot, etc, state)

    assert "xmpp.port" in (boot / "import-error.txt").read_text()
    assert not (etc / "ncap.toml").exists()
    assert not (state / "firstboot.done").exists()
    assert (boot / "secrets" / "xmpp-password").exists()
    assert not [p for p in etc.iterdir() if p.name.startswith(".firstboot-")]

    (boot / "ncap.toml").write_text(CONFIG.format(extra=""))
    assert import_from_boot(boot, etc, state).imported
    assert not (boot / "import-error.txt").exists()


def test_the_password_must_be_where_systemd_hands_it_over(dirs: tuple[Path, Path, Path]) -> None:
    boot, etc, state = dirs
    _drop(boot, CONFIG.format(extra="").replace("secrets/xmpp-password", "secrets/other"))
    with pytest.raises(ConfigError, match="credential"):
        import_from_boot(boot, etc, state)


def test_nothing_on_the_partition_is_nothing_to_do(dirs: tuple[Path, Path, Path]) -> None:
    boot, etc, state = dirs
    assert not import_from_boot(boot, etc, state).imported
    assert not import_from_boot(boot.parent / "absent", etc, state).imported
    assert not (state / "firstboot.done").exists()


def test_the_command_line_imports_and_the_result_passes_check_config(
    dirs: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    boot, etc, state = dirs
    _drop(boot, CONFIG.format(extra=""))
    where = ["--boot-dir", str(boot), "--config-dir", str(etc), "--state-dir", str(state)]
    assert main(["firstboot", *where]) == 0
    assert "imported" in capsys.readouterr().out
    assert main(["run", "--check-config", "--config", str(etc / "ncap.toml")]) == 0
    assert main(["firstboot", *where]) == 0  # again: nothing to do, no error


def test_a_systemd_credential_stands_in_for_the_secret_file(
    dirs: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _boot, etc, _state = dirs
    etc.mkdir(parents=True)
    (etc / "ncap.toml").write_text(CONFIG.format(extra=""))
    credentials = etc.parent / "credentials"
    credentials.mkdir()
    (credentials / "xmpp-password").write_text("from-systemd\n")
    (credentials / "xmpp-password").chmod(0o400)
    with pytest.raises(ConfigError, match="no such file"):
        load_config(etc / "ncap.toml")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    assert load_config(etc / "ncap.toml").xmpp.password_file == credentials / "xmpp-password"


def test_the_claim_qr_is_shown_and_saved_while_unclaimed(dirs: tuple[Path, Path, Path]) -> None:
    boot, _etc, state = dirs
    state.mkdir()
    uri = "iotdisco:MAN=example.org;MODEL=NCAP;KEY=00112233445566778899aabbccddeeff;R=registry"
    (state / "claim.uri").write_text(uri + "\n")
    console = io.StringIO()

    written = publish_claim(state, boot, console)

    assert [p.name for p in written] == ["claim.png", "claim.svg", "claim.txt"]
    assert decode_qr_image(boot / "claim.png") == uri
    assert (boot / "claim.txt").read_text().strip() == uri
    assert uri in console.getvalue()
    assert "\u2580" in console.getvalue() or "\u2584" in console.getvalue()  # half blocks

    (state / "claim.uri").unlink()  # claimed: the key is void, the copies go
    assert publish_claim(state, boot, io.StringIO()) == []
    assert not any((boot / name).exists() for name in ("claim.png", "claim.svg", "claim.txt"))


# ------------------------------------------------------------------ in-band registration


class OpenProsody(PrivateProsody):
    """A private Prosody that lets clients create accounts in-band (XEP-0077)."""

    def _write_config(self) -> None:
        super()._write_config()
        text = self.config_file.read_text()
        text = text.replace("allow_registration = false", "allow_registration = true")
        text = text.replace(
            'modules_enabled = { "roster";', 'modules_enabled = { "register"; "roster";'
        )
        assert '"register";' in text
        self.config_file.write_text(text)


@pytest.fixture
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="ncap-firstboot-") as tmp:
        path = Path(tmp)
        path.chmod(0o755)  # Prosody runs as its own user below it
        yield path


def _server_config(prosody: PrivateProsody) -> str:
    extra = (
        f'server = "{prosody.host}"\nport = {prosody.c2s_port}\nca_file = "ca.pem"\n'
        "[registry]\nenabled = false"
    )
    return CONFIG.format(extra=extra)


@pytest.mark.integration
async def test_the_account_is_created_in_band_when_the_server_allows_it(workdir: Path) -> None:
    boot, etc, state = workdir / "boot", workdir / "etc", workdir / "state"
    boot.mkdir()
    with OpenProsody(workdir / "prosody") as prosody:
        _drop(boot, _server_config(prosody), password=None)
        (boot / "ca.pem").write_bytes(prosody.ca_file.read_bytes())

        # In a thread: the import runs its own event loop, as `ncap firstboot` does.
        result = await asyncio.to_thread(import_from_boot, boot, etc, state)

        assert result.registered == "thing@ncap.test"
        assert _mode(etc / "secrets" / "xmpp-password") == 0o600
        config = load_config(etc / "ncap.toml")
        password = config.xmpp.password_file.read_text().strip()
        client = SecureClient(
            "thing@ncap.test/check",
            password,
            ca_file=config.xmpp.ca_file,
            server=prosody.host,
            port=prosody.c2s_port,
        )
        await client.start(TIMEOUT)  # the imported password logs in
        await client.disconnect(wait=2.0)


@pytest.mark.integration
async def test_a_server_without_in_band_registration_is_a_clear_refusal(workdir: Path) -> None:
    boot, etc, state = workdir / "boot", workdir / "etc", workdir / "state"
    boot.mkdir()
    with PrivateProsody(workdir / "prosody") as prosody:
        _drop(boot, _server_config(prosody), password=None)
        (boot / "ca.pem").write_bytes(prosody.ca_file.read_bytes())

        with pytest.raises(RegistrationRefused, match="in-band registration"):
            await asyncio.to_thread(import_from_boot, boot, etc, state)

    assert "in-band registration" in (boot / "import-error.txt").read_text()
    assert not (etc / "ncap.toml").exists()
    assert not (state / "firstboot.done").exists()


def test_no_file_on_the_partition_is_left_world_readable_by_us(
    dirs: tuple[Path, Path, Path],
) -> None:
    boot, etc, state = dirs
    _drop(boot, CONFIG.format(extra=""))
    import_from_boot(boot, etc, state)
    for path in etc.rglob("*"):
        if "secrets" in path.parts:
            assert _mode(path) & 0o077 == 0, path
    assert os.listdir(boot / "secrets") == []
