"""The NCAP configuration: one TOML file, validated at load.

`load_config` reads the file and validates it; it does nothing else. Every
problem becomes a `ConfigError` naming the offending key, which the command
line turns into one message and exit status 78 (EX_CONFIG).
"""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ncap.errors import ConfigError

Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GatewaySection(_Section):
    name: Name = "ncap"


class XmppSection(_Section):
    jid: Annotated[str, Field(pattern=r"^[^@/\s]+@[^@/\s]+$")]
    password_file: Path
    resource: Name = "ncap"
    server: str | None = None
    """Host to connect to; the JID's domain (with DNS SRV) when not set."""
    port: Annotated[int, Field(ge=1, le=65535)] = 5222
    ca_file: Path | None = None
    """CA bundle the server certificate is verified against; system CAs when not set."""
    reconnect_max_s: Annotated[float, Field(gt=0, le=3600)] = 60.0

    @property
    def domain(self) -> str:
        return self.jid.split("@", 1)[1]


class TimSection(_Section):
    name: Name
    port: Annotated[str, Field(min_length=1)]
    baudrate: Annotated[int, Field(ge=300, le=4_000_000)] = 115200
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    rs485: bool = False
    poll_interval_s: Annotated[float, Field(gt=0, le=86400)] = 10.0
    """How often the TIM's sensors are read for event subscribers."""


class ModbusDeviceSection(_Section):
    name: Name
    """Node id of the device (a virtual TIM)."""
    profile: Annotated[str, Field(min_length=1)]
    """A register map: a file name in hardware/devices/ (without .toml) or a path."""
    slave_id: Annotated[int, Field(ge=1, le=247)] | None = None
    """Unit id on the bus; the profile's default when not set."""


class ModbusSection(_Section):
    """One Modbus bus: a serial line (RTU) or a TCP endpoint (Modbus TCP, RTU over TCP)."""

    name: Name
    kind: Literal["rtu", "tcp", "rtu-over-tcp"]
    port: str = ""
    """Serial device, for kind = "rtu"."""
    host: str = "127.0.0.1"
    tcp_port: Annotated[int, Field(ge=1, le=65535)] = 502
    baudrate: Annotated[int, Field(ge=300, le=4_000_000)] = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    rs485: bool = False
    timeout_s: Annotated[float, Field(gt=0, le=30)] | None = None
    """Reply timeout; by default derived from the baud rate (RTU) or 1 s (TCP)."""
    device: tuple[ModbusDeviceSection, ...] = ()

    @model_validator(mode="after")
    def _port_for_serial(self) -> ModbusSection:
        if self.kind == "rtu" and not self.port:
            raise _KeyedProblem("port", 'required when kind = "rtu"')
        return self


class Config(_Section):
    schema_version: Literal[1] = 1
    gateway: GatewaySection = GatewaySection()
    xmpp: XmppSection
    tim: tuple[TimSection, ...] = ()
    modbus: tuple[ModbusSection, ...] = ()

    @model_validator(mode="after")
    def _unique_nodes_and_ports(self) -> Config:
        # TIMs and Modbus devices are node ids in one data source, beside the gateway's.
        names = [(f"tim[{i}].name", tim.name) for i, tim in enumerate(self.tim)]
        ports = [(f"tim[{i}].port", tim.port) for i, tim in enumerate(self.tim)]
        for i, bus in enumerate(self.modbus):
            names.extend(
                (f"modbus[{i}].device[{j}].name", d.name) for j, d in enumerate(bus.device)
            )
            if bus.kind == "rtu":
                ports.append((f"modbus[{i}].port", bus.port))
        seen_names = {self.gateway.name}
        for key, name in names:
            if name == self.gateway.name:
                raise _KeyedProblem(key, "must differ from gateway.name")
            if name in seen_names:
                raise _KeyedProblem(key, f"duplicate node name {name!r}")
            seen_names.add(name)
        seen_ports: set[str] = set()
        for key, port in ports:
            if port in seen_ports:
                raise _KeyedProblem(key, f"port {port!r} used twice")
            seen_ports.add(port)
        return self


class _KeyedProblem(ValueError):
    """A cross-field problem that knows which key it is about."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(problem)
        self.key = key
        self.problem = problem


def load_config(path: Path) -> Config:
    """Read and validate the TOML file at *path*; raise ConfigError on any problem."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(path), "no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(str(path), f"cannot read: {err}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(str(path), f"not valid TOML: {err}") from None
    config = parse_config(raw)
    _check_secret_file("xmpp.password_file", _relative_to(path, config.xmpp.password_file))
    if config.xmpp.ca_file is not None:
        ca = _relative_to(path, config.xmpp.ca_file)
        if not ca.is_file():
            raise ConfigError("xmpp.ca_file", f"no such file: {ca}")
    return config.model_copy(
        update={
            "xmpp": config.xmpp.model_copy(
                update={
                    "password_file": _relative_to(path, config.xmpp.password_file),
                    "ca_file": (
                        None
                        if config.xmpp.ca_file is None
                        else _relative_to(path, config.xmpp.ca_file)
                    ),
                }
            )
        }
    )


def parse_config(raw: dict[str, object]) -> Config:
    """Validate an already-decoded TOML document."""
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        cause = first.get("ctx", {}).get("error")
        if isinstance(cause, _KeyedProblem):
            # A nested section's check names its key relative to that section.
            where = _key(first["loc"]) if first["loc"] else ""
            key = f"{where}.{cause.key}" if where else cause.key
            raise ConfigError(key, cause.problem) from None
        key = _key(first["loc"])
        problem = _describe(first["type"], first["msg"])
        raise ConfigError(key, problem) from None


def read_secret(path: Path) -> str:
    """The first non-blank line of a secret file, which must be private to its owner."""
    _check_secret_file(str(path), path)
    return path.read_text(encoding="utf-8").strip().splitlines()[0].strip()


def write_secret(path: Path, secret: str) -> None:
    """Write *secret* to a file only its owner can read, even if the file existed before."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(fd, 0o600)
        handle.write(secret + "\n")


def _key(location: tuple[int | str, ...]) -> str:
    key = ""
    for part in location:
        key += f"[{part}]" if isinstance(part, int) else f".{part}" if key else part
    return key or "(top level)"


def _describe(error_type: str, message: str) -> str:
    if error_type == "missing":
        return "required key is missing"
    if error_type == "extra_forbidden":
        return "unknown key"
    return message


def _relative_to(config_path: Path, path: Path) -> Path:
    return path if path.is_absolute() else config_path.parent / path


def _check_secret_file(key: str, path: Path) -> None:
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(key, f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(key, f"cannot read {path}: {err}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            key, f"{path} is readable by group or others (mode {mode & 0o777:o}); chmod 600 it"
        )
    if not text.strip():
        raise ConfigError(key, f"{path} is empty")
