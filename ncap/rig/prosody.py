"""A private Prosody 0.12 server on 127.0.0.1, for integration tests and ``ncap demo``.

Everything lives in one work directory: the generated PKI (``tls/``), the config file, the data
directory (accounts, rosters, the admin socket), the pid file and the logs. Ports are picked
free at :meth:`PrivateProsody.start`, and the server is stopped by the PID we started, never by
name.

Running as root: Prosody must not run as root, and ``prosodyctl`` switches to the ``prosody``
user on its own. We therefore hand the work directory to ``prosody`` and start both programs
through ``setpriv --reuid prosody --regid prosody --init-groups``. ``setpriv`` and the ``env``
of Prosody's ``#!/usr/bin/env lua5.4`` line both ``exec``, so the PID of our child *is*
Prosody's PID. As an ordinary user, both run as that user.

Roster friendships are made inside the running server through its admin shell
(``prosodyctl shell`` with a ``>`` Lua line calling ``core.rostermanager``), so Prosody's own
code writes the storage, its roster cache stays coherent and online sessions get a roster
push. Friendships asked for before :meth:`PrivateProsody.start` are queued and applied as soon
as the server is up.

Federation (opt-in, :meth:`PrivateProsody.federate_with`): server-to-server on 127.0.0.1 over
STARTTLS, each side authenticating the other by its certificate (``s2s_secure_auth``, SASL
EXTERNAL; dialback is not loaded, plaintext is refused). Prosody 0.12 finds a remote domain by DNS
(SRV ``_xmpp-server._tcp``, then A/AAAA on port 5269) and has no option for static routes, so the
rig adds a small plugin of its own (``mod_ncap_s2s_routes``, written into the work directory) that
answers that lookup from a routes file instead: each federated peer's domain, and its subdomains,
at ``127.0.0.1`` and the peer's s2s port; any other domain is unreachable. No DNS query is made,
no file outside the work directory is touched, and ports stay free-picked. The routes file is
re-read for every new outgoing connection, so a peer that restarts on new ports is found again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from ncap.errors import RigError
from ncap.rig.pki import TlsFiles, make_test_pki
from ncap.rig.runas import drop_to, hand_over

__all__ = ["Account", "PrivateProsody", "S2sSession"]

_LOGGER = logging.getLogger(__name__)

_PROSODY_USER = "prosody"
_POLL_INTERVAL = 0.05  # seconds between readiness probes; every wait has its own deadline
_CTL_TIMEOUT = 30.0  # prosodyctl is a fresh Lua process each time; it needs well under 1 s
_UNIX_PATH_MAX = 107  # sun_path is 108 bytes including the NUL
# The pubsub service keeps up to this many items per node (a node's own max_items must still
# ask for them). mod_storage_internal refuses to append to an archive that already holds
# storage_archive_item_limit items, *before* mod_pubsub trims it, so that limit must be higher.
PUBSUB_MAX_ITEMS = 10000
_PUBSUB_ARCHIVE_LIMIT = PUBSUB_MAX_ITEMS + 1000
_ROUTES_PLUGIN = "ncap_s2s_routes"
# Lua, run inside Prosody: replace DNS-based s2s target lookup by the rig's routes file.
_ROUTES_PLUGIN_SOURCE = """\
-- Written by ncap.rig.prosody: static server-to-server routes for a private test server.
-- mod_s2s (0.12) asks net.resolvers.service for where a remote domain lives (DNS SRV, then
-- A/AAAA). This answers from the routes file instead, read afresh for each new outgoing
-- connection: "<domain> <ip> <port>" per line; a subdomain follows its parent's route. A
-- domain without a route is unreachable, and the rig offers no direct-TLS s2s port.
module:set_global();

local service = require "net.resolvers.service";
local basic = require "net.resolvers.basic";
local manual = require "net.resolvers.manual";

local routes_file = assert(module:get_option_string("ncap_s2s_routes_file"), "no routes file");
local dns_service_new = service.new;

local function read_routes()
	local routes = {};
	local file, err = io.open(routes_file);
	if not file then
		module:log("warn", "no s2s routes: %s", err);
		return routes;
	end
	for line in file:lines() do
		local domain, ip, port = line:match("^(%S+)%s+(%S+)%s+(%d+)$");
		if domain then
			routes[domain] = { ip = ip; port = tonumber(port) };
		end
	end
	file:close();
	return routes;
end

local function route_for(domain)
	local routes = read_routes();
	while domain do
		if routes[domain] then
			return routes[domain];
		end
		domain = domain:match("^[^.]+%.(.+)$");
	end
end

function service.new(hostname, service_name, conn_type, extra)
	local route = service_name == "xmpp-server" and route_for(hostname);
	if route then
		module:log("debug", "s2s to %s: static route %s:%d", hostname, route.ip, route.port);
		return basic.new(route.ip, route.port, conn_type, extra);
	end
	local nowhere = manual.new({}, conn_type, extra);
	nowhere.last_error = "no route to " .. hostname .. " in " .. routes_file;
	return nowhere;
end

function module.unload()
	service.new = dns_service_new;
end
"""


@dataclass(frozen=True)
class Account:
    """An XMPP account on the private server."""

    jid: str
    password: str

    @property
    def user(self) -> str:
        """The local part of :attr:`jid`."""
        return self.jid.partition("@")[0]


def _lua_str(value: str) -> str:
    """Quote ``value`` as a Lua string literal (every non-alphanumeric byte as a ``\\ddd``)."""
    return (
        '"'
        + "".join(
            chr(b) if chr(b).isascii() and chr(b).isalnum() else f"\\{b:03d}"
            for b in value.encode()
        )
        + '"'
    )


def _free_ports(count: int) -> list[int]:
    """Ask the kernel for ``count`` distinct free TCP ports on 127.0.0.1.

    All sockets stay bound until every port is known, so the ports differ from each other.
    Another process could still take one before Prosody binds it; :meth:`PrivateProsody.start`
    detects that from Prosody's log.
    """
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


@dataclass(frozen=True)
class S2sSession:
    """A server-to-server stream as the running Prosody sees it (``PrivateProsody.s2s_sessions``).

    ``direction`` is ``"outgoing"`` or ``"incoming"``; ``tls`` the protocol (``"TLSv1.3"``) or
    ``None`` when the stream is not encrypted; ``sasl`` the SASL EXTERNAL state (``"succeeded"``
    once the peer was authenticated by its certificate); ``cert_chain``/``cert_identity`` are
    ``"valid"``/``"invalid"`` as Prosody checked the peer's certificate (``None`` if it did not);
    ``dialback`` tells whether server dialback was used at all.
    """

    direction: str
    local: str
    remote: str
    authenticated: bool
    tls: str | None
    sasl: str | None
    cert_chain: str | None
    cert_identity: str | None
    dialback: bool


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as err:
        return f"<{path}: {err.strerror}>"
    return "\n".join(text.splitlines()[-lines:]) or f"<{path} is empty>"


class PrivateProsody:
    """A Prosody instance of our own on 127.0.0.1 (see the module docstring).

    ``workdir`` must be usable by the ``prosody`` user when running as root: every directory
    above it must be searchable by that user (``tempfile.mkdtemp()`` under ``/tmp`` is; pytest's
    ``tmp_path`` under ``/tmp/pytest-of-root`` is not). As root, everything in ``workdir`` is
    chowned to ``prosody``, so give it a directory of its own.

    The PKI and the config are written at construction time, so :meth:`register` and
    :meth:`make_friends` work before :meth:`start`; ports are chosen by :meth:`start`.

    The pubsub component (:attr:`pubsub_domain`) keeps items in the data directory (Prosody's
    internal storage), so they survive :meth:`stop` and a later :meth:`start`; a node may keep up
    to :data:`PUBSUB_MAX_ITEMS` items if its ``max_items`` asks for that many.
    """

    host: str = "127.0.0.1"

    def __init__(
        self,
        workdir: Path,
        domain: str = "ncap.test",
        *,
        log_level: str = "info",
        plaintext_only: bool = False,
        admins: Sequence[str] = (),
    ) -> None:
        """``plaintext_only``: a server offering no TLS at all, to prove clients refuse it.

        ``admins``: bare JIDs of server administrators. Prosody 0.12's pubsub service lets only
        them create nodes (everyone else gets ``forbidden``).
        """
        self.workdir = workdir.resolve()
        self.plaintext_only = plaintext_only
        self.admins = tuple(admins)
        self.domain = domain
        self.pubsub_domain = f"pubsub.{domain}"
        self.registry_domain = f"registry.{domain}"
        self.component_secret = secrets.token_urlsafe(24)
        self.log_level = log_level
        self.c2s_port = 0
        self.component_port = 0
        self.s2s_port = 0  # only federated servers listen for s2s
        self.config_file = self.workdir / "prosody.cfg.lua"
        self.data_dir = self.workdir / "data"
        self.log_file = self.workdir / "prosody.log"
        self.console_file = self.workdir / "prosody.console"
        self.pid_file = self.workdir / "prosody.pid"
        self.admin_socket = self.data_dir / "prosody.sock"
        self.routes_file = self.workdir / "s2s-routes"
        self.plugin_dir = self.workdir / "plugins"
        self._proc: subprocess.Popen[bytes] | None = None
        self._pending_friends: list[tuple[Account, Account]] = []
        self._peers: list[PrivateProsody] = []
        self._trusted_peers: list[PrivateProsody] = []

        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)
        self.tls: TlsFiles = make_test_pki(self.workdir / "tls", domain)
        self.ca_file: Path = self.tls.ca_cert
        self.trust_file = self.tls.ca_cert.parent / "s2s-trust.pem"
        self._no_capath = self.tls.ca_cert.parent / "no-capath"
        self._write_config()

    # ---------------------------------------------------------------- properties

    @property
    def pid(self) -> int | None:
        """PID of the running Prosody, or ``None`` when it is not running."""
        if self._proc is None or self._proc.poll() is not None:
            return None
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self.pid is not None

    @property
    def federated(self) -> bool:
        """Whether this server speaks server-to-server (see :meth:`federate_with`)."""
        return bool(self._peers)

    @property
    def peers(self) -> tuple[PrivateProsody, ...]:
        return tuple(self._peers)

    # ---------------------------------------------------------------- federation

    def federate_with(self, other: PrivateProsody, *, trust: bool = True) -> None:
        """Let this server and ``other`` exchange stanzas server-to-server, both ways.

        Both must be stopped (the s2s listener and the trusted CAs are in the config written by
        :meth:`start`); start them in either order. Each server trusts its own CA and, with
        ``trust``, the CA of every peer it federates with; ``trust=False`` routes to ``other``
        without trusting its CA on either side, so that a test can see ``s2s_secure_auth``
        refuse the connection.
        """
        if other is self:
            raise RigError("a server cannot federate with itself")
        if self.plaintext_only or other.plaintext_only:
            raise RigError("federation needs TLS; a plaintext_only server cannot federate")
        if (
            self.domain == other.domain
            or self.domain.endswith(f".{other.domain}")
            or (other.domain.endswith(f".{self.domain}"))
        ):
            raise RigError(f"domains {self.domain} and {other.domain} overlap")
        for server in (self, other):
            if server.running:
                raise RigError(f"federate before starting: {server.domain} is running")
        for server, peer in ((self, other), (other, self)):
            if peer not in server._peers:
                server._peers.append(peer)
            if trust and peer not in server._trusted_peers:
                server._trusted_peers.append(peer)
            server._write_config()

    def s2s_sessions(self, timeout: float = _CTL_TIMEOUT) -> list[S2sSession]:
        """The server-to-server streams of the running server, from its admin shell."""
        if not self.running:
            raise RigError("s2s_sessions needs a running server")
        # Runs inside Prosody: incoming streams are keys of prosody.incoming_s2s, outgoing
        # ones values of each host's s2sout table.
        lua = (
            '>local json = require "util.json"; local out = {}; '
            "local function add(s) "
            "local sock = s.conn and s.conn:socket(); "
            "local info = s.secure and sock and sock.info and sock:info(); "
            "local out_dir = s.direction == 'outgoing'; "
            "out[#out + 1] = { direction = s.direction or '?', "
            "localhost = (out_dir and s.from_host or s.to_host) or '?', "
            "remote = (out_dir and s.to_host or s.from_host) or '?', "
            "authenticated = s.type == 's2sin' or s.type == 's2sout', "
            "tls = info and info.protocol or (s.secure and 'secure') or json.null, "
            "sasl = s.external_auth or json.null, "
            "chain = s.cert_chain_status or json.null, "
            "identity = s.cert_identity_status or json.null, "
            "dialback = s.dialback_key ~= nil or s.dialback_verifying ~= nil }; "
            "end; "
            "for s in pairs(prosody.incoming_s2s) do add(s) end; "
            "for _, h in pairs(prosody.hosts) do "
            "for _, s in pairs(h.s2sout or {}) do add(s) end end; "
            'return "s2s=" .. json.encode_array(out)'
        )
        done = self._prosodyctl("shell", lua, timeout=timeout)
        _, marker, encoded = done.stdout.partition("s2s=")
        if not marker:
            raise RigError(f"unexpected admin shell answer: {done.stdout.strip()!r}")
        rows = json.loads(encoded.strip())
        return [
            S2sSession(
                direction=row["direction"],
                local=row["localhost"],
                remote=row["remote"],
                authenticated=row["authenticated"],
                tls=row["tls"],
                sasl=row["sasl"],
                cert_chain=row["chain"],
                cert_identity=row["identity"],
                dialback=row["dialback"],
            )
            for row in rows
        ]

    # ---------------------------------------------------------------- lifecycle

    def start(self, timeout: float = 20.0, *, keep_ports: bool = False) -> None:
        """Pick free ports, write the config, start Prosody, wait until c2s accepts TCP.

        ``keep_ports`` restarts on the ports of the previous run, as a server coming back does.
        """
        if self.running:
            raise RigError(f"prosody in {self.workdir} is already running (pid {self.pid})")
        if len(os.fsencode(self.admin_socket)) > _UNIX_PATH_MAX:
            raise RigError(f"work directory path too long for a unix socket: {self.admin_socket}")
        self._pick_ports(keep_ports)
        self._write_config()
        if self.federated:
            # Peers learn our (possibly new) s2s port; ours are read when we connect out.
            for server in (self, *self._peers):
                server._write_routes()
        for stale in (self.log_file, self.console_file):
            stale.unlink(missing_ok=True)

        deadline = time.monotonic() + timeout
        with self.console_file.open("wb") as console:
            self._proc = subprocess.Popen(
                # -F: stay in the foreground (0.12's replacement for daemonize = false)
                [*self._privileges(), "prosody", "--config", str(self.config_file), "-F"],
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,  # a Ctrl-C in the terminal is ours to handle, not its
            )
        _LOGGER.debug("started prosody pid=%d c2s=%d", self._proc.pid, self.c2s_port)
        try:
            self._wait_for_port(self.c2s_port, deadline)
            self._check_log_for_bind_errors()
            if self._pending_friends:
                pending, self._pending_friends = self._pending_friends, []
                self._befriend(pending, deadline)
        except BaseException:
            self.stop()
            raise
        _LOGGER.info(
            "prosody pid=%d up on %s c2s=%d component=%d s2s=%d",
            self._proc.pid,
            self.host,
            self.c2s_port,
            self.component_port,
            self.s2s_port,
        )

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL the Prosody we started (a crash: no goodbye to anyone), and wait for it."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.kill()
        proc.wait(timeout)
        _LOGGER.debug("prosody pid=%d killed", proc.pid)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the Prosody we started, wait, SIGKILL after ``timeout``. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _LOGGER.warning(
                    "prosody pid=%d ignored SIGTERM for %.1f s; killing", proc.pid, timeout
                )
                proc.kill()
                proc.wait(timeout)
        _LOGGER.debug("prosody pid=%d exited with %s", proc.pid, proc.returncode)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---------------------------------------------------------------- accounts

    def register(self, user: str, password: str | None = None) -> Account:
        """Create ``user@domain`` (works whether or not the server runs)."""
        if password is None:
            password = secrets.token_urlsafe(16)
        self._prosodyctl("register", user, self.domain, password)
        return Account(jid=f"{user}@{self.domain}", password=password)

    def make_friends(self, a: Account, b: Account) -> None:
        """Give ``a`` and ``b`` mutual ``both`` subscriptions in both rosters.

        Takes effect for the next login (online sessions also get a roster push, but no
        presence). Before :meth:`start` the request is queued and applied during ``start``.
        Both accounts must be registered by then.
        """
        for account in (a, b):
            if account.jid.partition("@")[2] != self.domain:
                raise RigError(f"{account.jid} is not an account on {self.domain}")
        if self.running:
            self._befriend([(a, b)], time.monotonic() + _CTL_TIMEOUT)
        else:
            self._pending_friends.append((a, b))

    def end_friendship(self, a: Account, b: Account) -> None:
        """Remove ``a`` and ``b`` from each other's rosters (the server must be running)."""
        if not self.running:
            raise RigError("end_friendship needs a running server")
        self._befriend([(a, b)], time.monotonic() + _CTL_TIMEOUT, friends=False)

    # ---------------------------------------------------------------- internals

    def _pick_ports(self, keep_ports: bool) -> None:
        needed = 3 if self.federated else 2
        if keep_ports and self.c2s_port and (self.s2s_port or not self.federated):
            return
        ports = _free_ports(needed)
        self.c2s_port, self.component_port = ports[0], ports[1]
        self.s2s_port = ports[2] if self.federated else 0

    def _write_routes(self) -> None:
        """Tell our Prosody where each peer listens (replaced atomically: it may be reading)."""
        lines = "".join(
            f"{peer.domain} {peer.host} {peer.s2s_port}\n" for peer in self._peers if peer.s2s_port
        )
        partial = self.routes_file.with_name(self.routes_file.name + ".new")
        partial.write_text(lines, encoding="ascii")
        partial.chmod(0o644)
        os.replace(partial, self.routes_file)

    def _write_federation_files(self) -> None:
        self.plugin_dir.mkdir(exist_ok=True)
        (self.plugin_dir / f"mod_{_ROUTES_PLUGIN}.lua").write_text(_ROUTES_PLUGIN_SOURCE)
        # Trust exactly our CA and the trusted peers' CAs: an empty capath keeps the system
        # CAs (the default capath /etc/ssl/certs) out of it.
        self._no_capath.mkdir(exist_ok=True)
        bundle = b"".join(
            server.tls.ca_cert.read_bytes() for server in (self, *self._trusted_peers)
        )
        self.trust_file.write_bytes(bundle)
        if not self.routes_file.exists():
            self._write_routes()

    def _privileges(self) -> list[str]:
        return drop_to(_PROSODY_USER)

    def _hand_over(self) -> None:
        hand_over(self.workdir, _PROSODY_USER)

    def _write_config(self) -> None:
        quoted = {
            "workdir": self.workdir,
            "data": self.data_dir,
            "pid": self.pid_file,
            "log": self.log_file,
            "key": self.tls.server_key,
            "cert": self.tls.server_cert,
            "socket": self.admin_socket,
            "certs": self.tls.ca_cert.parent,
            "trust": self.trust_file,
            "no_capath": self._no_capath,
            "plugins": self.plugin_dir,
            "routes": self.routes_file,
        }
        q = {name: _lua_str(str(path)) for name, path in quoted.items()}
        level = _lua_str(self.log_level)
        ssl = f"key = {q['key']}; certificate = {q['cert']}"
        s2s = (
            '-- No server-to-server: not federated.\ns2s_ports = { }\nmodules_disabled = { "s2s" }'
        )
        if self.federated:
            self._write_federation_files()
            ssl += f"; cafile = {q['trust']}; capath = {q['no_capath']}"
            s2s = f"""\
-- Federated (see ncap.rig.prosody): STARTTLS required, peers authenticated by certificate
-- (SASL EXTERNAL); without mod_dialback there is no weaker way in.
s2s_ports = {{ {self.s2s_port} }}
s2s_interfaces = {{ "127.0.0.1" }}
s2s_require_encryption = true
s2s_secure_auth = true
plugin_paths = {{ {q["plugins"]} }}
ncap_s2s_routes_file = {q["routes"]}
modules_disabled = {{ "dialback" }}"""
        modules = (
            "roster",
            "saslauth",
            *(() if self.plaintext_only else ("tls",)),
            "disco",
            "ping",
            "presence",
            "posix",
            "smacks",
            "offline",
            "pep",
            "admin_shell",
            *((_ROUTES_PLUGIN,) if self.federated else ()),
        )
        # Port 0 placeholders are only seen by prosodyctl before start(), which binds nothing.
        text = f"""\
-- Written by ncap.rig.prosody for a private test server; rewritten on every start().
pidfile = {q["pid"]}
data_path = {q["data"]}
admin_socket = {q["socket"]}
certificates = {q["certs"]}
log = {{ {{ levels = {{ min = {level} }}, to = "file", filename = {q["log"]} }} }}

interfaces = {{ "127.0.0.1" }}
-- Deliver small stanzas at once rather than waiting for the peer's delayed ACK.
network_settings = {{ nagle = false }}
-- Read client streams 64 KiB at a time: a journal backlog arrives in 25 kB items, and 4 KiB
-- reads (the default) cost a 1 ms pause each (docs/benchmarks.md).
network_default_read_size = 65536
local_interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {self.c2s_port} }}
c2s_direct_tls_ports = {{ }}
s2s_direct_tls_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
component_ports = {{ {self.component_port} }}
component_interfaces = {{ "127.0.0.1" }}

c2s_require_encryption = {"false" if self.plaintext_only else "true"}
allow_unencrypted_plain_auth = {"true" if self.plaintext_only else "false"}
allow_registration = false
admins = {{ {"; ".join(_lua_str(jid) for jid in self.admins)} }}
authentication = "internal_hashed"
-- PubSub and PEP items in SQLite (lua-dbi-sqlite3): the file store rewrites a node's whole
-- item list on every publish, which a gateway draining its journal cannot live with.
default_storage = "internal"
storage = {{ pep_data = "sql"; pubsub_data = "sql" }}
sql = {{ driver = "SQLite3"; database = "pubsub.sqlite" }}
modules_enabled = {{ {"; ".join(_lua_str(m) for m in modules)} }}
{s2s}
ssl = {{ {ssl} }}

VirtualHost {_lua_str(self.domain)}
    ssl = {{ {ssl} }}
    -- Each thing publishes its journal to a node of its own account (PEP).
    pep_max_items = {PUBSUB_MAX_ITEMS}
    storage_archive_item_limit = {_PUBSUB_ARCHIVE_LIMIT}

-- Items persist in data_path (nodes default to persist_items = true).
Component {_lua_str(self.pubsub_domain)} "pubsub"
    pubsub_max_items = {PUBSUB_MAX_ITEMS}
    storage_archive_item_limit = {_PUBSUB_ARCHIVE_LIMIT}

Component {_lua_str(self.registry_domain)}
    component_secret = {_lua_str(self.component_secret)}
"""
        fd = os.open(self.config_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        self._hand_over()

    def _wait_for_port(self, port: int, deadline: float) -> None:
        proc = self._proc
        assert proc is not None
        while True:
            if proc.poll() is not None:
                raise RigError(
                    f"prosody exited with status {proc.returncode} during start\n"
                    + self._diagnostics()
                )
            try:
                with socket.create_connection((self.host, port), timeout=1.0):
                    return
            except OSError:
                pass
            if time.monotonic() >= deadline:
                raise RigError(
                    f"prosody (pid {proc.pid}) did not accept connections on {self.host}:{port} "
                    "in time\n" + self._diagnostics()
                )
            time.sleep(_POLL_INTERVAL)

    def _check_log_for_bind_errors(self) -> None:
        # Prosody keeps running when a port cannot be bound, and someone else may then be
        # answering on that port: treat it as a failed start.
        with contextlib.suppress(OSError):
            if "Failed to open server port" in self.log_file.read_text(errors="replace"):
                raise RigError("prosody could not bind its ports\n" + self._diagnostics())

    def _diagnostics(self) -> str:
        return (
            f"--- {self.log_file} (tail) ---\n{_tail(self.log_file)}\n"
            f"--- {self.console_file} (tail) ---\n{_tail(self.console_file)}"
        )

    def _prosodyctl(
        self, *args: str, timeout: float = _CTL_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        argv = [*self._privileges(), "prosodyctl", "--config", str(self.config_file), *args]
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=self.workdir,
                check=False,
            )
        except subprocess.TimeoutExpired as err:
            raise RigError(f"prosodyctl {args[0]} timed out after {timeout:.0f} s") from err
        if done.returncode != 0:
            raise RigError(
                f"prosodyctl {args[0]} failed with status {done.returncode}: "
                f"{(done.stdout + done.stderr).strip()}"
            )
        return done

    def _befriend(
        self, pairs: Sequence[tuple[Account, Account]], deadline: float, *, friends: bool = True
    ) -> None:
        """Make every pair mutual ``both`` contacts (or strangers), in one admin-shell call."""
        item = '{ subscription = "both", groups = {} }' if friends else "nil"
        calls = " ".join(
            f"f({_lua_str(x.user)}, {_lua_str(y.jid)}); f({_lua_str(y.user)}, {_lua_str(x.jid)});"
            for x, y in pairs
        )
        # Runs inside Prosody. load_roster() returns the live roster of an online user or the
        # cached/stored one of an offline user; save_roster() writes it back through storage.
        lua = (
            '>local rm = require "core.rostermanager"; '
            f"local host = {_lua_str(self.domain)}; "
            "local function f(user, peer) "
            "local roster = assert(rm.load_roster(user, host)); "
            f"roster[peer] = {item}; "
            "local meta = roster[false]; "
            "if meta and meta.pending then meta.pending[peer] = nil end; "
            'assert(rm.save_roster(user, host, roster), "cannot save roster of " .. user); '
            "rm.roster_push(user, host, peer); "
            "end; "
            f'{calls} return "befriended"'
        )
        while True:
            try:
                done = self._prosodyctl("shell", lua, timeout=max(1.0, deadline - time.monotonic()))
                break
            except RigError as err:
                # The admin socket comes up with the modules, possibly just after c2s.
                if "Unable to connect" not in str(err) or time.monotonic() >= deadline:
                    raise
            time.sleep(_POLL_INTERVAL)
        if "befriended" not in done.stdout:
            raise RigError(f"unexpected admin shell answer: {done.stdout.strip()!r}")
