"""A private Kamailio 5.6 presence server on 127.0.0.1, for the SIP bridge's integration tests.

It is the presence server (ESC) the bridge PUBLISHes to and that SIP watchers SUBSCRIBE at, built
from the verified configuration in ``shared/specs/sip-presence.md`` §5.3: ``presence`` +
``presence_xml`` (PIDF, no XCAP rules: every watcher is allowed) + ``presence_mwi``
(``message-summary``), subscriptions in memory, publications in a ``db_text`` database that is a
fresh copy of Debian's templates on every :meth:`PrivateKamailio.start` (db_text writes the
``presentity`` table on shutdown, and a row it wrote may fail to load again). ``pua`` is not
loaded: Kamailio only receives PUBLISH here, it never originates one.

Options:

- ``users``: digest authentication (``auth`` + ``auth_db`` against a ``subscriber`` table written
  from the mapping) on every out-of-dialog PUBLISH, SUBSCRIBE and MESSAGE. Kamailio answers 407
  with ``qop="auth"``. Kamailio 5.6 offers one algorithm per instance (``MD5`` or ``SHA-256``);
  the table holds HA1 for that algorithm, because auth_db's own HA1 calculation is MD5 only.
  With ``check_identity`` the authenticated user must be the From user (for PUBLISH also the To
  and Request-URI user); a mismatch is answered 403.
- ``tls``: a ``tls:`` listener with a server certificate from :func:`ncap.rig.pki.make_test_pki`
  (names the domain and 127.0.0.1); clients verify it against :attr:`PrivateKamailio.ca_file`.
- ``message_target``: relay out-of-dialog MESSAGE requests to that ``(host, port)`` over UDP
  (after authentication), as a proxy would route them to a gateway.

OPTIONS outside a dialog is always answered 200 without authentication; :meth:`start` uses that
as its readiness probe.

Running as root: Kamailio is started as the ``kamailio`` user of the Debian package through
``setpriv`` (which ``exec``s, so our child's PID is Kamailio's main process), and the work
directory is handed to that user. ``-DD`` keeps the main process in the foreground; its worker
children share its process group, which :meth:`PrivateKamailio.stop` cleans up after the main
process has gone.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from ncap.errors import RigError
from ncap.rig.pki import TlsFiles, make_test_pki
from ncap.rig.runas import drop_to, hand_over

__all__ = ["DigestAlgorithm", "PrivateKamailio", "free_sip_ports"]

_LOGGER = logging.getLogger(__name__)

DigestAlgorithm = Literal["MD5", "SHA-256"]

_KAMAILIO_USER = "kamailio"
_DBTEXT_TEMPLATES = Path("/usr/share/kamailio/dbtext/kamailio")
# Only these tables are read by the modules we load; db_text opens every file it finds.
_DBTEXT_TABLES = ("version", "presentity", "active_watchers", "watchers", "xcap", "subscriber")
_POLL_INTERVAL = 0.05  # seconds between readiness probes; every wait has its own deadline
_HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


def free_sip_ports(count: int, *, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports that are free on ``host`` for both UDP and TCP.

    SIP listens on the same number for both transports. All sockets stay bound until every port
    is known; another process could still take one before the server binds it, which the server
    then reports as a failed start.
    """
    ports: list[int] = []
    with contextlib.ExitStack() as stack:
        while len(ports) < count:
            tcp = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            tcp.bind((host, 0))
            port = int(tcp.getsockname()[1])
            udp = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            try:
                udp.bind((host, port))
            except OSError:
                continue  # taken for UDP only; the bound TCP socket keeps us from retrying it
            ports.append(port)
    return ports


def _dbtext_escape(value: str) -> str:
    """Escape a db_text column value (``:`` separates columns; backslash escapes)."""
    if any(ch in value for ch in "\r\n\0"):
        raise RigError(f"db_text cannot store {value!r}")
    return value.replace("\\", "\\\\").replace(":", "\\:")


def _cfg_string(value: str) -> str:
    """Quote ``value`` for a Kamailio cfg string literal (refuse what would need escapes)."""
    if any(ch in value for ch in '"\\\r\n$'):
        raise RigError(f"value not allowed in the kamailio config: {value!r}")
    return f'"{value}"'


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as err:
        return f"<{path}: {err.strerror}>"
    return "\n".join(text.splitlines()[-lines:]) or f"<{path} is empty>"


class PrivateKamailio:
    """A Kamailio presence server of our own on 127.0.0.1 (see the module docstring).

    ``workdir`` must be reachable by the ``kamailio`` user when running as root (a
    ``tempfile.mkdtemp()`` directory is; pytest's ``tmp_path`` is not) and is handed to that
    user, so give it a directory of its own. The config, the db_text database, the TLS files, the
    pid file and the log (``kamailio.log``) all live in it. Ports are picked free by
    :meth:`start`; UDP and TCP share one port number.
    """

    host: str = "127.0.0.1"

    def __init__(
        self,
        workdir: Path,
        domain: str = "example.test",
        *,
        users: Mapping[str, str] | None = None,
        auth_algorithm: DigestAlgorithm = "MD5",
        check_identity: bool = True,
        tls: bool = False,
        message_target: tuple[str, int] | None = None,
        min_expires: int = 30,
        max_expires: int = 3600,
        debug: int = 2,
    ) -> None:
        """``users``: user name → password; ``None`` means no authentication at all.

        ``min_expires``/``max_expires`` bound PUBLISH and SUBSCRIBE expiry (shorter is answered
        423 with ``Min-Expires``). ``debug`` is Kamailio's log level (2 = info, 3 = debug).
        """
        if auth_algorithm not in _HASHES:
            raise RigError(f"unsupported digest algorithm {auth_algorithm!r}")
        self.workdir = workdir.resolve()
        self.domain = domain
        self.users = None if users is None else dict(users)
        self.auth_algorithm: DigestAlgorithm = auth_algorithm
        self.check_identity = check_identity
        self.message_target = message_target
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.debug = debug
        self.udp_port = 0
        self.tcp_port = 0
        self.tls_port = 0  # 0 unless tls=True
        self.config_file = self.workdir / "kamailio.cfg"
        self.db_dir = self.workdir / "db"
        self.run_dir = self.workdir / "run"
        self.pid_file = self.run_dir / "kamailio.pid"
        self.log_file = self.workdir / "kamailio.log"
        self.tls_config_file = self.workdir / "tls.cfg"
        self._proc: subprocess.Popen[bytes] | None = None
        self._want_tls = tls

        self.workdir.mkdir(parents=True, exist_ok=True)
        self.tls: TlsFiles | None = make_test_pki(self.workdir / "tls", domain) if tls else None

    # ---------------------------------------------------------------- properties

    @property
    def pid(self) -> int | None:
        """PID of the running Kamailio main process, or ``None`` when it is not running."""
        if self._proc is None or self._proc.poll() is not None:
            return None
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self.pid is not None

    @property
    def auth_required(self) -> bool:
        return self.users is not None

    @property
    def ca_file(self) -> Path:
        """The CA that signed the TLS server certificate (only with ``tls=True``)."""
        if self.tls is None:
            raise RigError("this kamailio was made without tls")
        return self.tls.ca_cert

    @property
    def server_uri(self) -> str:
        """Kamailio's own URI over UDP, e.g. ``sip:127.0.0.1:40123`` (a Route/outbound proxy)."""
        return f"sip:{self.host}:{self.udp_port}"

    def aor(self, user: str) -> str:
        """The address of record ``sip:user@domain`` served by this instance."""
        return f"sip:{user}@{self.domain}"

    # ---------------------------------------------------------------- lifecycle

    def start(self, timeout: float = 20.0, *, keep_ports: bool = False) -> None:
        """Pick free ports, write config and a fresh database, start, wait for OPTIONS → 200.

        ``keep_ports`` restarts on the previous ports with an empty database, as a presence
        server that crashed and came back does (the bridge must then recover with 412).
        """
        if self.running:
            raise RigError(f"kamailio in {self.workdir} is already running (pid {self.pid})")
        if shutil.which("kamailio") is None:
            raise RigError(
                "kamailio is not installed (Debian packages kamailio, "
                "kamailio-presence-modules; see scripts/setup.sh)"
            )
        if not (keep_ports and self.udp_port):
            ports = free_sip_ports(2 if self._want_tls else 1, host=self.host)
            self.udp_port = self.tcp_port = ports[0]
            self.tls_port = ports[1] if self._want_tls else 0
        self._write_database()
        self._write_config()
        self.run_dir.mkdir(exist_ok=True)
        self.pid_file.unlink(missing_ok=True)
        self._hand_over()

        deadline = time.monotonic() + timeout
        argv = [
            *self._privileges(),
            "kamailio",
            "-f", str(self.config_file),
            "-DD",  # main process in the foreground: our child's PID is Kamailio's
            "-E",  # log to stderr, i.e. into kamailio.log
            "-m", "32",  # shared memory, MB
            "-M", "8",  # private memory per process, MB
            "-Y", str(self.run_dir),
            "-P", str(self.pid_file),
            "-w", str(self.run_dir),
        ]  # fmt: skip
        with self.log_file.open("wb") as log:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,  # its own process group: the workers can be found
            )
        _LOGGER.debug("started kamailio pid=%d port=%d", self._proc.pid, self.udp_port)
        try:
            self._wait_until_ready(deadline)
        except BaseException:
            self.stop()
            raise
        _LOGGER.info(
            "kamailio pid=%d up on %s udp/tcp=%d tls=%d auth=%s",
            self._proc.pid,
            self.host,
            self.udp_port,
            self.tls_port,
            self.auth_algorithm if self.auth_required else "off",
        )

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the Kamailio we started, wait, SIGKILL after ``timeout``. Idempotent.

        Kamailio's main process stops its workers itself on SIGTERM. Anything left over in its
        process group (the group we created for it) is killed afterwards, so no worker keeps
        the ports.
        """
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _LOGGER.warning(
                    "kamailio pid=%d ignored SIGTERM for %.1f s; killing", proc.pid, timeout
                )
                proc.kill()
                proc.wait(timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
            _LOGGER.warning("kamailio pid=%d left workers behind; killed them", proc.pid)
        _LOGGER.debug("kamailio pid=%d exited with %s", proc.pid, proc.returncode)

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

    # ---------------------------------------------------------------- probes

    def options(self, timeout: float = 2.0) -> int:
        """Send one OPTIONS over UDP and return the response's status code.

        Retransmits every 200 ms (it is UDP) until ``timeout``; raises :class:`RigError` if
        nothing came back.
        """
        if not self.udp_port:
            raise RigError("kamailio has no port yet; start() it first")
        deadline = time.monotonic() + timeout
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((self.host, 0))
            call_id = secrets.token_hex(8)
            request = self._options_request(sock.getsockname()[1], call_id)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RigError(
                        f"no answer to OPTIONS from {self.host}:{self.udp_port} in {timeout} s"
                    )
                sock.sendto(request, (self.host, self.udp_port))
                sock.settimeout(min(0.2, remaining))
                try:
                    data = sock.recv(65535)
                except TimeoutError:
                    continue
                status = self._status_for(data, call_id)
                if status is not None and status >= 200:
                    return status

    # ---------------------------------------------------------------- internals

    def _options_request(self, local_port: int, call_id: str) -> bytes:
        lines = [
            f"OPTIONS sip:{self.host}:{self.udp_port} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.host}:{local_port};branch=z9hG4bK{secrets.token_hex(8)};rport",
            "Max-Forwards: 70",
            f"From: <sip:rig@{self.domain}>;tag={secrets.token_hex(4)}",
            f"To: <sip:{self.host}:{self.udp_port}>",
            f"Call-ID: {call_id}",
            "CSeq: 1 OPTIONS",
            "Content-Length: 0",
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")

    @staticmethod
    def _status_for(data: bytes, call_id: str) -> int | None:
        """The status code of ``data`` if it is a response in our Call-ID, else ``None``."""
        head = data.decode("utf-8", "replace").split("\r\n\r\n", 1)[0].split("\r\n")
        parts = head[0].split(" ", 2)
        if len(parts) < 2 or parts[0] != "SIP/2.0" or not parts[1].isdigit():
            return None
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() in ("call-id", "i") and value.strip() == call_id:
                return int(parts[1])
        return None

    def _wait_until_ready(self, deadline: float) -> None:
        proc = self._proc
        assert proc is not None
        while True:
            if proc.poll() is not None:
                raise RigError(
                    f"kamailio exited with status {proc.returncode} during start\n"
                    + self._diagnostics()
                )
            status: int | None = None
            with contextlib.suppress(RigError):
                status = self.options(timeout=min(0.5, max(0.05, deadline - time.monotonic())))
            if status == 200:
                break
            if status is not None:
                raise RigError(f"kamailio answered OPTIONS with {status}\n" + self._diagnostics())
            if time.monotonic() >= deadline:
                raise RigError(
                    f"kamailio (pid {proc.pid}) did not answer OPTIONS on "
                    f"{self.host}:{self.udp_port} in time\n" + self._diagnostics()
                )
        # The main process binds every listener before it forks the workers that answer UDP,
        # so these only fail if someone else's socket was answering in Kamailio's place.
        for port in (self.tcp_port, self.tls_port):
            if port:
                try:
                    with socket.create_connection((self.host, port), timeout=1.0):
                        pass
                except OSError as err:
                    raise RigError(
                        f"kamailio answers UDP but not TCP port {port}: {err}\n"
                        + self._diagnostics()
                    ) from err

    def _diagnostics(self) -> str:
        return f"--- {self.log_file} (tail) ---\n{_tail(self.log_file)}"

    def _privileges(self) -> list[str]:
        return drop_to(_KAMAILIO_USER)

    def _hand_over(self) -> None:
        hand_over(self.workdir, _KAMAILIO_USER, hint=" (it comes with the kamailio package)")

    def _write_database(self) -> None:
        """A fresh db_text directory: the package's empty tables plus our subscribers."""
        if not _DBTEXT_TEMPLATES.is_dir():
            raise RigError(f"db_text templates missing: {_DBTEXT_TEMPLATES} (package kamailio)")
        shutil.rmtree(self.db_dir, ignore_errors=True)
        self.db_dir.mkdir()
        for table in _DBTEXT_TABLES:
            shutil.copyfile(_DBTEXT_TEMPLATES / table, self.db_dir / table)
        if not self.users:
            return
        digest = _HASHES[self.auth_algorithm]
        rows = []
        for row_id, (user, password) in enumerate(sorted(self.users.items()), start=1):
            # ha1 for "user", ha1b for "user@domain" usernames (auth_db picks by the username).
            ha1 = digest(f"{user}:{self.domain}:{password}".encode()).hexdigest()
            ha1b = digest(f"{user}@{self.domain}:{self.domain}:{password}".encode()).hexdigest()
            columns = (str(row_id), user, self.domain, password, ha1, ha1b)
            rows.append(":".join(_dbtext_escape(c) for c in columns) + "\n")
        with (self.db_dir / "subscriber").open("a", encoding="utf-8") as table_file:
            table_file.writelines(rows)

    def _write_config(self) -> None:
        domain = _cfg_string(self.domain)
        db_url = _cfg_string(f"text://{self.db_dir}")
        listen = [
            f"listen=udp:{self.host}:{self.udp_port}",
            f"listen=tcp:{self.host}:{self.tcp_port}",
            f'alias="{self.host}:{self.udp_port}"',
            f"alias={domain}",
        ]
        modules = [
            "db_text", "tm", "sl", "rr", "pv", "maxfwd", "textops", "siputils", "xlog",
            "sanity", "presence", "presence_xml", "presence_mwi",
        ]  # fmt: skip
        params = [
            f'modparam("presence", "db_url", {db_url})',
            f'modparam("presence", "server_address", "sip:{self.host}:{self.udp_port}")',
            'modparam("presence", "subs_db_mode", 0)  # subscriptions in memory only',
            'modparam("presence", "publ_cache", 1)',
            f'modparam("presence", "min_expires", {self.min_expires})',
            f'modparam("presence", "max_expires", {self.max_expires})',
            f'modparam("presence_xml", "db_url", {db_url})',
            'modparam("presence_xml", "force_active", 1)  # no XCAP rules: all watchers allowed',
            'modparam("presence_xml", "integrated_xcap_server", 0)',
        ]
        auth_block = ""
        if self.users is not None:
            modules += ["auth", "auth_db"]
            params += [
                f'modparam("auth", "algorithm", "{self.auth_algorithm}")',
                f'modparam("auth", "secret", "{secrets.token_hex(16)}")',
                f'modparam("auth_db", "db_url", {db_url})',
                'modparam("auth_db", "calculate_ha1", 0)  # HA1 precomputed per algorithm',
                'modparam("auth_db", "use_domain", 0)',
                'modparam("auth_db", "load_credentials", "")',
            ]
            checks = 1 if self.check_identity else 0
            auth_block = f"""
    # Digest on every request that starts something; in-dialog requests ride on it.
    if (is_method("PUBLISH|SUBSCRIBE|MESSAGE") && !has_totag()) {{
        auth_check({domain}, "subscriber", "{checks}");
        $var(auth) = $rc;
        if ($var(auth) == -8) {{
            sl_send_reply("403", "Forbidden: authenticated user is not the From user");
            exit;
        }}
        if ($var(auth) < 0) {{
            auth_challenge({domain}, "1");  # 407, qop=auth
            exit;
        }}
        consume_credentials();
    }}
"""
        message_block = ""
        if self.message_target is not None:
            target_host, target_port = self.message_target
            message_block = f"""
    if (is_method("MESSAGE") && !has_totag()) {{
        $du = "sip:{target_host}:{int(target_port)};transport=udp";
        if (!t_relay()) {{ sl_reply_error(); }}
        exit;
    }}
"""
        if self.tls is not None:
            modules.append("tls")
            listen += [
                "enable_tls=yes",
                f"listen=tls:{self.host}:{self.tls_port}",
                f'alias="{self.host}:{self.tls_port}"',
            ]
            params.append(f'modparam("tls", "config", {_cfg_string(str(self.tls_config_file))})')
            self.tls_config_file.write_text(
                "# Written by ncap.rig.kamailio.\n"
                "[server:default]\n"
                "method = TLSv1.2+\n"
                "verify_certificate = no\n"
                "require_certificate = no\n"
                f"private_key = {self.tls.server_key}\n"
                f"certificate = {self.tls.server_cert}\n"
                "\n[client:default]\n"
                "method = TLSv1.2+\n"
                "verify_certificate = no\n"
                "require_certificate = no\n",
                encoding="utf-8",
            )
        loads = "\n".join(f'loadmodule "{name}.so"' for name in modules)
        text = f"""\
#!KAMAILIO
# Written by ncap.rig.kamailio for a private presence server; rewritten on every start().
debug={int(self.debug)}
log_stderror=yes
fork=yes
children=2
tcp_children=2
auto_aliases=no
dns=no
rev_dns=no
{chr(10).join(listen)}

{loads}

{chr(10).join(params)}

request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (!sanity_check()) {{ exit; }}
    # Readiness probe and keepalive: no credentials needed.
    if (is_method("OPTIONS") && !has_totag()) {{ sl_send_reply("200", "OK"); exit; }}
{auth_block}
    if (is_method("PUBLISH|SUBSCRIBE")) {{
        if (!t_newtran()) {{ sl_reply_error(); exit; }}
        if (is_method("PUBLISH")) {{ handle_publish(); }} else {{ handle_subscribe(); }}
        t_release();
        exit;
    }}
{message_block}
    if (has_totag()) {{
        if (loose_route()) {{ t_relay(); exit; }}
        if (is_method("ACK")) {{ exit; }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    sl_send_reply("405", "Method Not Allowed");
    exit;
}}
"""
        self.config_file.write_text(text, encoding="utf-8")
