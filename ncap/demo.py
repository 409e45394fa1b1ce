"""`ncap demo`: a private Prosody, a simulated TIM on a pseudo-terminal and the NCAP.

Everything runs on 127.0.0.1 and is stopped (by PID) when the demo ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ncap.app import Gateway
from ncap.config import load_config, write_secret
from ncap.errors import RigError
from ncap.hardware import hardware_file
from ncap.registry.cli import start_registry, stop_registry
from ncap.registry.service import RegistryComponent
from ncap.rig.modbus import DemoModbusDevice
from ncap.rig.prosody import Account, PrivateProsody
from ncap.rig.pty import PtyPair

_LOGGER = logging.getLogger(__name__)

DEMO_DOMAIN = "ncap.test"
DEMO_TIMS = {"env-sensor": "env-sensor.toml", "relay": "relay.toml"}
READY_TIMEOUT_S = 60.0


def find_profile(name: str) -> Path:
    """A TIM simulator profile from hardware/tims/."""
    return hardware_file("tims", name)


async def start_simulator(
    port: Path, profile: Path, timeout: float = 20.0
) -> asyncio.subprocess.Process:
    """Start the TIM simulator on *port*; return once it says it is ready."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tim_drivers.sim",
        "--port",
        str(port),
        "--profile",
        str(profile),
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(timeout):
            while True:
                line = await process.stdout.readline()
                if not line:
                    raise RigError(f"TIM simulator exited with status {await process.wait()}")
                if line.strip() == b"ready":
                    return process
    except BaseException:
        await stop_process(process)
        raise


async def stop_process(process: asyncio.subprocess.Process, timeout: float = 5.0) -> None:
    if process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()


def write_config(
    workdir: Path,
    prosody: PrivateProsody,
    thing: Account,
    tims: Mapping[str, Path],
    *,
    poll_interval_s: float = 1.0,
    modbus_port: int | None = None,
    registry: str | None = None,
    extra: str = "",
) -> Path:
    """An ncap.toml for *thing* on *prosody* with the TIMs (name -> serial port) given, the
    demo's Modbus TCP climate sensor when *modbus_port* is given, and *extra* TOML tables."""
    secrets = workdir / "secrets"
    secrets.mkdir(mode=0o700, exist_ok=True)
    password_file = secrets / "xmpp"
    write_secret(password_file, thing.password)
    tim_tables = "".join(
        f'\n[[tim]]\nname = "{name}"\nport = "{port}"\npoll_interval_s = {poll_interval_s}\n'
        for name, port in tims.items()
    )
    if modbus_port is not None:
        tim_tables += (
            f'\n[[modbus]]\nname = "demo-modbus"\nkind = "tcp"\ntcp_port = {modbus_port}\n'
            '\n[[modbus.device]]\nname = "climate"\nprofile = "xy-md02"\nslave_id = 1\n'
        )
    if registry is not None:
        tim_tables = (
            f'\n[registry]\naddress = "{registry}"\n'
            '\n[registry.tags]\nMAN = "ncap.invalid"\nMODEL = "NCAP demo"\nSN = "demo-0001"\n'
            + tim_tables
        )
    config = workdir / "ncap.toml"
    config.write_text(
        f"""# Written by `ncap demo`.
schema_version = 1

[gateway]
name = "demo"
state_dir = "{workdir / "state"}"

[metrics]
port = 0

[xmpp]
jid = "{thing.jid}"
password_file = "{password_file}"
resource = "ncap"
server = "{prosody.host}"
port = {prosody.c2s_port}
ca_file = "{prosody.ca_file}"
{tim_tables}{extra}""",
        encoding="utf-8",
    )
    return config


async def simulated_tims(
    stack: contextlib.AsyncExitStack, workdir: Path, profiles: Mapping[str, str]
) -> dict[str, Path]:
    """One pty pair and one simulator per TIM (name -> profile file); the NCAP-side ports.

    Everything started is stopped when *stack* closes.
    """
    ports = {}
    for name, profile in profiles.items():
        pty = PtyPair(workdir / f"pty-{name}")
        await asyncio.to_thread(pty.start)
        stack.callback(pty.stop)
        simulator = await start_simulator(pty.a_path, find_profile(profile))
        stack.push_async_callback(stop_process, simulator)
        ports[name] = pty.b_path
    return ports


DEMO_SIP_USER = "owner"


def demo_sip_config(root: Path, owner: Account, password: str) -> str:
    """The ``[sip]`` tables of the demo: the bridge on loopback, the owner's SIP identity."""
    secret = root / "secrets" / "sip-owner"
    secret.parent.mkdir(mode=0o700, exist_ok=True)
    write_secret(secret, password)
    return (
        f'\n[sip]\nenabled = true\nhost = "127.0.0.1"\nudp_port = 0\ndomain = "{DEMO_DOMAIN}"\n'
        f'thing_user = "thing"\nowner_user = "{DEMO_SIP_USER}"\n'
        f'\n[sip.users.{DEMO_SIP_USER}]\npassword_file = "{secret}"\njid = "{owner.jid}"\n'
    )


def demo_summary(
    prosody: PrivateProsody,
    thing_jid: str,
    owner: Account,
    stranger: Account,
    claim_uri: str | None = None,
) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "xmpp": {
            "host": prosody.host,
            "port": prosody.c2s_port,
            "domain": prosody.domain,
            "ca": str(prosody.ca_file),
        },
        "thing": thing_jid,
        "owner": {"jid": owner.jid, "password": owner.password},
        "stranger": {"jid": stranger.jid, "password": stranger.password},
        "registry": prosody.registry_domain,
    }
    if claim_uri is not None:
        summary["claim_uri"] = claim_uri
    return summary


def _human_summary(summary: dict[str, Any]) -> str:
    xmpp, owner, stranger = summary["xmpp"], summary["owner"], summary["stranger"]
    uri = summary.get("claim_uri")
    owner_role = "(not yet the owner: claim the thing)" if uri else "(owner and friend)"
    claim = f"Unclaimed. Claim it as the owner: ncap claim ... '{uri}'\n" if uri else ""
    return f"""NCAP demo is running. Connect a chat client (Gajim, Conversations, profanity):
  server   {xmpp["host"]} port {xmpp["port"]} (STARTTLS; trust the CA in {xmpp["ca"]})
  owner    {owner["jid"]}  password {owner["password"]}  {owner_role}
  stranger {stranger["jid"]}  password {stranger["password"]}  (neither owner nor friend)
  thing    {summary["thing"]}
  registry {summary["registry"]}  (thing registry and provisioning; chat 'help' to it)
{claim}Send the thing 'help' or 'read' as the owner. Or from another shell:
  NCAP_PASSWORD={summary["owner"]["password"]} ncap read --jid {summary["owner"]["jid"]} \\
    --ca {xmpp["ca"]} --server {xmpp["host"]} --port {xmpp["port"]} {summary["thing"]}
Press Ctrl+C to stop."""


async def claim_as(owner: Account, prosody: PrivateProsody, uri: str, timeout: float) -> str:
    """Claim the thing as *owner* through the registry, as ``ncap claim URI`` does."""
    from ncap.claim import claim, claim_uri_from, registry_session

    parsed = claim_uri_from(uri)
    session = registry_session(
        owner.jid,
        owner.password,
        parsed.registry,
        ca_file=prosody.ca_file,
        server=prosody.host,
        port=prosody.c2s_port,
        timeout=timeout,
    )
    async with session as (client, registry):
        return await claim(client, registry, parsed, public=False, timeout=timeout)


async def start_demo_registry(
    stack: contextlib.AsyncExitStack, prosody: PrivateProsody, root: Path
) -> RegistryComponent:
    """The thing registry and provisioning service, attached to the demo's Prosody."""
    registry = await start_registry(
        prosody.registry_domain,
        prosody.component_secret,
        root / "registry.sqlite",
        server=prosody.host,
        port=prosody.component_port,
        timeout=READY_TIMEOUT_S,
    )
    stack.push_async_callback(stop_registry, registry)
    return registry


async def wait_registered(gateway: Gateway, timeout: float) -> str | None:
    """Once the thing has registered (or learnt its owner): its claim URI, None if claimed."""
    lifecycle = gateway.client.lifecycle
    assert lifecycle is not None
    async with asyncio.timeout(timeout):
        await lifecycle.registered.wait()
    return lifecycle.claim_uri


async def run_demo(
    stop: asyncio.Event, *, as_json: bool, workdir: Path | None, unclaimed: bool = False
) -> None:
    own_workdir = workdir is None
    root = Path(tempfile.mkdtemp(prefix="ncap-demo-")) if workdir is None else workdir
    root.mkdir(parents=True, exist_ok=True)
    # The private Prosody runs as its own user and must reach its files.
    os.chmod(root, 0o755)  # noqa: S103
    try:
        async with contextlib.AsyncExitStack() as stack:
            prosody = PrivateProsody(root / "prosody", domain=DEMO_DOMAIN)
            thing = prosody.register("thing")
            owner = prosody.register("owner")
            stranger = prosody.register("stranger")
            if not unclaimed:
                prosody.make_friends(thing, owner)
            await asyncio.to_thread(prosody.start)
            stack.callback(prosody.stop)

            ports = await simulated_tims(stack, root, DEMO_TIMS)
            modbus = DemoModbusDevice()
            await modbus.start()
            stack.push_async_callback(modbus.stop)
            await start_demo_registry(stack, prosody, root)
            sip_password = secrets.token_urlsafe(12)
            config_file = write_config(
                root,
                prosody,
                thing,
                ports,
                modbus_port=modbus.port,
                registry=prosody.registry_domain,
                extra=demo_sip_config(root, owner, sip_password),
            )
            config = load_config(config_file)
            gateway = Gateway(config)
            await gateway.start()
            stack.push_async_callback(gateway.stop)
            await gateway.wait_ready(READY_TIMEOUT_S)
            claim_uri = await wait_registered(gateway, READY_TIMEOUT_S)
            if claim_uri is not None and not unclaimed:
                await claim_as(owner, prosody, claim_uri, READY_TIMEOUT_S)
                await gateway.client.wait_owner(owner.jid, READY_TIMEOUT_S)
                claim_uri = None

            summary = demo_summary(
                prosody, gateway.client.boundjid.full, owner, stranger, claim_uri
            )
            if gateway.sip is not None:
                summary["sip"] = {
                    "host": gateway.sip.ua.host,
                    "port": gateway.sip.port(),
                    "user": DEMO_SIP_USER,
                    "password": sip_password,
                    "things": [gateway.sip.thing_uri],
                }
            print(json.dumps(summary) if as_json else _human_summary(summary), flush=True)
            await stop.wait()
    finally:
        if own_workdir:
            shutil.rmtree(root, ignore_errors=True)
