"""Configuration loading: good files load, bad ones name the key and exit 78."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ncap.cli import EX_CONFIG, main
from ncap.config import load_config, parse_config, read_secret, write_secret
from ncap.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

GOOD = """
schema_version = 1
[gateway]
name = "gw-1"
[xmpp]
jid = "thing@example.org"
password_file = "secret"
server = "127.0.0.1"
port = 5222
[[tim]]
name = "env"
port = "/dev/ttyUSB0"
"""


def _write(tmp_path: Path, text: str, *, secret_mode: int = 0o600) -> Path:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    secret.chmod(secret_mode)
    path = tmp_path / "ncap.toml"
    path.write_text(text)
    return path


def test_good_config_loads_and_resolves_relative_paths(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, GOOD))
    assert config.xmpp.jid == "thing@example.org"
    assert config.xmpp.password_file == tmp_path / "secret"
    assert config.xmpp.domain == "example.org"
    assert [tim.name for tim in config.tim] == ["env"]
    assert config.tim[0].baudrate == 115200


def test_example_config_in_hardware_is_valid() -> None:
    raw = __import__("tomllib").loads((REPO / "hardware" / "ncap.example.toml").read_text())
    config = parse_config(raw)
    assert config.tim


@pytest.mark.parametrize(
    ("replace", "by", "key", "problem"),
    [
        ('jid = "thing@example.org"', 'jid = "no-at-sign"', "xmpp.jid", "pattern"),
        ("port = 5222", "port = 70000", "xmpp.port", "less than or equal"),
        ("port = 5222", 'port = "x"', "xmpp.port", "integer"),
        ('name = "env"', 'name = "env"\nbaud = 9600', "tim[0].baud", "unknown key"),
        ('password_file = "secret"\n', "", "xmpp.password_file", "required key is missing"),
        ("schema_version = 1", "schema_version = 2", "schema_version", "1"),
        ('port = "/dev/ttyUSB0"', 'port = "/dev/ttyUSB0"\nparity = "X"', "tim[0].parity", "'N'"),
    ],
)
def test_bad_value_names_the_key(
    tmp_path: Path, replace: str, by: str, key: str, problem: str
) -> None:
    assert replace in GOOD
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, GOOD.replace(replace, by, 1)))
    assert caught.value.key == key
    assert problem in caught.value.problem


def test_duplicate_tim_names_are_rejected(tmp_path: Path) -> None:
    text = GOOD + '[[tim]]\nname = "env"\nport = "/dev/ttyUSB1"\n'
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, text))
    assert caught.value.key == "tim[1].name"


def test_tim_named_like_the_gateway_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, GOOD.replace('name = "env"', 'name = "gw-1"')))
    assert caught.value.key == "tim[0].name"
    assert caught.value.problem == "must differ from gateway.name"


MODBUS = """
[[modbus]]
name = "bus-a"
kind = "rtu"
port = "/dev/ttyUSB1"
[[modbus.device]]
name = "meter"
profile = "eastron-sdm120"
slave_id = 2
"""


def test_modbus_buses_and_devices(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, GOOD + MODBUS))
    (bus,) = config.modbus
    assert (bus.kind, bus.baudrate, bus.device[0].slave_id) == ("rtu", 9600, 2)


@pytest.mark.parametrize(
    ("replace", "by", "key", "problem"),
    [
        ('port = "/dev/ttyUSB1"\n', "", "modbus[0].port", "required when"),
        ('name = "meter"', 'name = "env"', "modbus[0].device[0].name", "duplicate node"),
        ("slave_id = 2", "slave_id = 300", "modbus[0].device[0].slave_id", "less than"),
        ('port = "/dev/ttyUSB1"', 'port = "/dev/ttyUSB0"', "modbus[0].port", "used twice"),
    ],
)
def test_bad_modbus_sections_name_the_key(
    tmp_path: Path, replace: str, by: str, key: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, GOOD + MODBUS.replace(replace, by, 1)))
    assert caught.value.key == key
    assert problem in caught.value.problem


def test_secret_readable_by_others_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, GOOD, secret_mode=0o644))
    assert caught.value.key == "xmpp.password_file"
    assert "chmod 600" in caught.value.problem


def test_missing_file_and_broken_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(_write(tmp_path, "[xmpp\njid="))


@given(st.text(max_size=200))
def test_garbage_toml_only_raises_config_error(text: str) -> None:
    try:
        raw = __import__("tomllib").loads(text)
    except ValueError:
        return
    with pytest.raises(ConfigError):
        parse_config(raw)


def test_check_config_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _write(tmp_path, GOOD)
    assert main(["run", "--config", str(good), "--check-config"]) == 0
    bad = _write(tmp_path, GOOD.replace("port = 5222", "port = 0"))
    assert main(["run", "--config", str(bad), "--check-config"]) == EX_CONFIG
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["ncap: bad configuration: xmpp.port: Input should be greater than or equal to 1"]


def test_bad_config_exits_78_from_the_installed_command(tmp_path: Path) -> None:
    bad = _write(tmp_path, GOOD.replace('jid = "thing@example.org"', "jid = 42"))
    result = subprocess.run(
        [sys.executable, "-m", "ncap", "run", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert result.returncode == EX_CONFIG
    assert result.stdout == ""
    assert (
        result.stderr.strip() == "ncap: bad configuration: xmpp.jid: Input should be a valid string"
    )


def test_write_secret_tightens_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("old\n")
    path.chmod(0o644)
    write_secret(path, "new")
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_secret(path) == "new"


def test_read_secret_skips_leading_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    write_secret(path, "\n\n  pw  ")
    assert read_secret(path) == "pw"
