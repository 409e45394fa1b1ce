"""Self-monitoring: the gateway's counters and gauges, a Prometheus text endpoint, ``ncap status``.

Three parts, kept apart:

* `Metrics`: a registry of named counters and gauges with help text, one per gateway. Values
  are plain numbers updated from the event loop; gauges may instead be callbacks read at scrape
  time. `prometheus_client` renders and parses the text format, through a `CollectorRegistry`
  owned by this object, so nothing is shared between gateways (or tests) in one process.
* `MetricsServer`: ``GET /metrics`` over HTTP/1.1 on asyncio streams, loopback only unless told
  otherwise. One request per connection, bounded in size and time; a slow or garbage client is
  dropped and never reaches the event loop's exception handler. The request parsing
  (`parse_request_head`, `respond`) is pure, so it is fuzzed without sockets.
* `fetch_status`, `parse_status`, `format_status`: what ``ncap status`` shows.

Updates are not thread-safe: call ``inc``/``set`` from the event loop's thread (from another
thread, go through ``loop.call_soon_threadsafe``). Gauge callbacks run in the event loop at
every scrape, so they must be cheap (an in-memory count, not a ``SELECT COUNT(*)``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from ncap.errors import NcapError

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

# prometheus_client is imported on the first scrape, not at start: it is 2 MiB of a gateway's
# resident memory that a gateway nobody scrapes does not need.

_LOGGER = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9108
DEFAULT_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}/metrics"
METRICS_PATH = "/metrics"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "ncap_"

# The whole exchange (request in, response out) must finish within this; then the client is cut.
REQUEST_TIMEOUT_S = 5.0
# A scrape's request head is a few hundred bytes; anything near this is not a scraper.
MAX_REQUEST_BYTES = 8192
# Connections served at once; more are closed at once, so a flood cannot pile up tasks.
MAX_CLIENTS = 16
STATUS_TIMEOUT_S = 5.0


class MetricsError(NcapError):
    """The metrics endpoint cannot be served, or a gateway's endpoint cannot be read."""


# --- the registry --------------------------------------------------------------------------------


class Counter:
    """A count that only goes up (a Prometheus counter, exposed as ``<name>_total``)."""

    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value = 0

    def inc(self, amount: int = 1) -> None:
        if amount < 0:
            raise ValueError(f"a counter cannot go down (inc by {amount})")
        self._value += amount

    @property
    def value(self) -> int:
        return self._value


class LabelledCounter:
    """A family of counters told apart by one label, e.g. one per bus."""

    def __init__(self, name: str, help_text: str, label: str) -> None:
        self.name = name
        self.help = help_text
        self.label = label
        self._children: dict[str, Counter] = {}

    def labels(self, value: str) -> Counter:
        """The counter for *value*, created at zero on first use (so it shows before it counts)."""
        child = self._children.get(value)
        if child is None:
            child = self._children[value] = Counter()
        return child

    def values(self) -> dict[str, int]:
        return {value: child.value for value, child in self._children.items()}


class NamedCounter(Counter):
    __slots__ = ("help", "name")

    def __init__(self, name: str, help_text: str) -> None:
        super().__init__()
        self.name = name
        self.help = help_text


class Gauge:
    """A value that goes up and down: set by the code, or read from a callback at scrape time.

    A gauge that was never set and has no callback has no sample: "not measured" is not 0.
    """

    def __init__(self, name: str, help_text: str) -> None:
        self.name = name
        self.help = help_text
        self._value: float | None = None
        self._function: Callable[[], float] | None = None

    def set(self, value: float) -> None:
        self._value = float(value)
        self._function = None

    def inc(self, amount: float = 1.0) -> None:
        self.set((self._value or 0.0) + amount)

    def dec(self, amount: float = 1.0) -> None:
        self.set((self._value or 0.0) - amount)

    def set_function(self, function: Callable[[], float]) -> None:
        self._function = function

    @property
    def value(self) -> float | None:
        """The current value; calls the callback, whose errors propagate."""
        if self._function is not None:
            return float(self._function())
        return self._value


_M = TypeVar("_M", NamedCounter, LabelledCounter, Gauge)


class Metrics:
    """The gateway's metrics. Attributes are the metrics themselves::

    metrics.readings_in.inc(len(batch))
    metrics.bus_errors.labels("rs485-a").inc()
    metrics.gauge_callback("journal_depth", journal.depth)
    """

    def __init__(self) -> None:
        self._metrics: dict[str, NamedCounter | LabelledCounter | Gauge] = {}
        self.readings_in = self._counter(
            "readings_in", "Readings taken from TIMs and Modbus devices."
        )
        self.readings_published = self._counter(
            "readings_published", "Readings published to the XMPP server (sent, not yet acked)."
        )
        self.readings_acked = self._counter(
            "readings_acknowledged",
            "Readings the XMPP server acknowledged; they have left the journal.",
        )
        self.events_sent = self._counter("events_sent", "Event messages sent to subscribers.")
        self.alarms_raised = self._counter("alarms_raised", "Threshold alarms raised.")
        self.readings_dropped = self._counter(
            "readings_dropped",
            "Readings dropped from the full journal, oldest first (alarms are never dropped).",
        )
        self.reconnects = self._counter(
            "reconnects", "Reconnections to the XMPP server after the uplink was lost."
        )
        self.bus_reads = self._labelled(
            "bus_reads", "Reads attempted on each bus (TIM or Modbus).", "bus"
        )
        self.bus_errors = self._labelled(
            "bus_errors", "Failed reads on each bus (timeouts, CRC and protocol errors).", "bus"
        )
        self.journal_depth = self._gauge(
            "journal_depth", "Journal entries waiting for the server's acknowledgement."
        )
        self.journal_bytes = self._gauge("journal_bytes", "Size of the journal on disk, in bytes.")
        self.uplink_online = self._gauge("uplink_online", "1 while the XMPP session is up, else 0.")
        self.subscribers = self._gauge("subscribers", "Event subscriptions currently active.")
        self._registry: CollectorRegistry | None = None

    def _counter(self, name: str, help_text: str) -> NamedCounter:
        return self._add(NamedCounter(PREFIX + name, help_text))

    def _labelled(self, name: str, help_text: str, label: str) -> LabelledCounter:
        return self._add(LabelledCounter(PREFIX + name, help_text, label))

    def _gauge(self, name: str, help_text: str) -> Gauge:
        return self._add(Gauge(PREFIX + name, help_text))

    def _add(self, metric: _M) -> _M:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} is already defined")
        self._metrics[metric.name] = metric
        return metric

    def gauge_callback(
        self, name: str, function: Callable[[], float], help_text: str | None = None
    ) -> Gauge:
        """Read gauge *name* (``journal_depth`` or ``ncap_journal_depth``) from *function* at
        every scrape. An unknown name makes a new gauge, which needs *help_text*."""
        full_name = name if name.startswith(PREFIX) else PREFIX + name
        metric = self._metrics.get(full_name)
        if metric is None:
            if not help_text:
                raise ValueError(f"{full_name} is a new gauge: give its help text")
            metric = self._gauge(full_name.removeprefix(PREFIX), help_text)
        if not isinstance(metric, Gauge):
            raise ValueError(f"{full_name} is a counter, not a gauge")
        metric.set_function(function)
        return metric

    def __iter__(self) -> Iterator[NamedCounter | LabelledCounter | Gauge]:
        return iter(self._metrics.values())

    @property
    def registry(self) -> CollectorRegistry:
        """This gateway's own prometheus_client registry (never the global one)."""
        if self._registry is None:
            from prometheus_client.registry import CollectorRegistry

            registry = CollectorRegistry(auto_describe=False)
            registry.register(_collector(self))
            self._registry = registry
        return self._registry

    def render(self) -> bytes:
        """Every metric in the Prometheus text format (version 0.0.4)."""
        from prometheus_client.exposition import generate_latest

        return generate_latest(self.registry)


def _collector(metrics: Metrics) -> Any:
    """A prometheus_client collector handing our values over at scrape time.

    Its own Counter/Gauge classes are not used: they add ``_created`` series (switched off only
    process-wide) and take a thread lock per update, which a single event loop does not need.
    """
    from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.registry import Collector

    class MetricsCollector(Collector):
        def collect(self) -> Iterator[Metric]:
            for metric in metrics:
                if isinstance(metric, NamedCounter):
                    yield CounterMetricFamily(metric.name, metric.help, value=metric.value)
                elif isinstance(metric, LabelledCounter):
                    family = CounterMetricFamily(metric.name, metric.help, labels=[metric.label])
                    for value, count in metric.values().items():
                        family.add_metric([value], count)
                    yield family
                else:
                    gauge = GaugeMetricFamily(metric.name, metric.help)
                    gauge_value = _read_gauge(metric)
                    if gauge_value is not None:
                        gauge.add_metric([], gauge_value)
                    yield gauge

    return MetricsCollector()


def _read_gauge(gauge: Gauge) -> float | None:
    # A broken callback loses its own sample, not the whole scrape.
    try:
        return gauge.value
    except Exception:
        _LOGGER.warning("metrics: cannot read %s", gauge.name, exc_info=True)
        return None


# --- HTTP: pure request handling -----------------------------------------------------------------


class BadRequest(MetricsError):
    """The request head is not a well-formed HTTP/1.x request."""


@dataclass(frozen=True, slots=True)
class RequestHead:
    method: str
    path: str
    query: str
    version: str


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(r"/[\x21-\x7e]*")
_VERSION = re.compile(r"HTTP/1\.[01]")
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e]*")


def parse_request_head(head: bytes) -> RequestHead:
    """Parse a request line and header fields ending in a blank line (CRLF CRLF).

    Only origin-form targets (``/path?query``) are accepted. Header fields are checked for form
    and then ignored: the endpoint answers the same whatever they say. Raises `BadRequest`.
    """
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        raise BadRequest("request head is not ASCII") from None
    if not text.endswith("\r\n\r\n"):
        raise BadRequest("request head does not end with a blank line")
    request_line, *fields = text[:-4].split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3:
        raise BadRequest("request line is not METHOD TARGET VERSION")
    method, target, version = parts
    if not _TOKEN.fullmatch(method):
        raise BadRequest("bad method")
    if not _TARGET.fullmatch(target):
        raise BadRequest("bad request target")
    if not _VERSION.fullmatch(version):
        raise BadRequest("not HTTP/1.0 or HTTP/1.1")
    for line in fields:
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.fullmatch(name) or not _FIELD_VALUE.fullmatch(value):
            raise BadRequest("bad header field")
    path, _, query = target.partition("?")
    return RequestHead(method, path, query, version)


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
}


def response(
    status: int,
    body: bytes = b"",
    *,
    content_type: str = "text/plain; charset=utf-8",
    extra_headers: tuple[tuple[str, str], ...] = (),
    include_body: bool = True,
) -> bytes:
    """A complete HTTP/1.1 response; every connection is closed after one exchange."""
    lines = [
        f"HTTP/1.1 {status} {_REASONS[status]}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Cache-Control: no-store",
        "Connection: close",
        *(f"{name}: {value}" for name, value in extra_headers),
    ]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
    return head + body if include_body else head


def respond(head: bytes, render: Callable[[], bytes]) -> bytes:
    """The response to one request head; never raises (a failing *render* is a 500)."""
    try:
        request = parse_request_head(head)
    except BadRequest as err:
        return response(400, f"bad request: {err}\n".encode())
    if request.path != METRICS_PATH:
        return response(404, b"not found; try /metrics\n")
    if request.method not in ("GET", "HEAD"):
        return response(405, b"method not allowed\n", extra_headers=(("Allow", "GET, HEAD"),))
    try:
        body = render()
    except Exception:
        _LOGGER.exception("metrics: cannot render the metrics")
        return response(500, b"cannot render the metrics\n")
    return response(200, body, content_type=CONTENT_TYPE, include_body=request.method == "GET")


# --- HTTP: the server ----------------------------------------------------------------------------


class MetricsServer:
    """Serves ``GET /metrics`` for *metrics* on *host*:*port* (``port=0``: any free port).

    Only loopback addresses are bound unless *allow_remote* is true: the endpoint has no
    authentication, and the readings' rates and error counts are nobody else's business.
    """

    def __init__(
        self,
        metrics: Metrics,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        allow_remote: bool = False,
        timeout: float = REQUEST_TIMEOUT_S,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.metrics = metrics
        self.host = host
        self._requested_port = port
        self.allow_remote = allow_remote
        self.timeout = timeout
        self.max_request_bytes = max_request_bytes
        self.max_clients = max_clients
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        """Bind and start serving. Raises `MetricsError` for a non-loopback address (unless
        allowed) and when the address cannot be bound."""
        if self._server is not None:
            return
        hosts: str | list[str] = self.host
        if not self.allow_remote:
            hosts = await _loopback_addresses(self.host, self._requested_port)
        try:
            self._server = await asyncio.start_server(
                self._serve_client,
                host=hosts,
                port=self._requested_port,
                limit=self.max_request_bytes,
                reuse_address=True,
            )
        except OSError as err:
            raise MetricsError(
                f"cannot serve metrics on {self.host}:{self._requested_port}: {err.strerror or err}"
            ) from err
        _LOGGER.info("metrics: serving http://%s%s", _authority(self.host, self.port), METRICS_PATH)

    @property
    def port(self) -> int:
        """The bound port (the first socket's when *host* resolved to several addresses)."""
        if self._server is None or not self._server.sockets:
            return self._requested_port
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{_authority(self.host, self.port)}{METRICS_PATH}"

    async def aclose(self) -> None:
        """Stop listening and cut the connections being served."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        clients = list(self._clients)
        for task in clients:
            task.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
        await server.wait_closed()

    async def __aenter__(self) -> MetricsServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        # Runs as the task asyncio.start_server makes per connection: nothing may escape from here,
        # or asyncio logs it as unhandled (and Python 3.11 logs a cancelled one too).
        task = asyncio.current_task()
        if task is None or len(self._clients) >= self.max_clients:
            writer.transport.abort()
            return
        self._clients.add(task)
        try:
            async with asyncio.timeout(self.timeout):
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    writer.transport.abort()  # gone before finishing its request
                    return
                except asyncio.LimitOverrunError:
                    reply = response(431, b"request head too large\n")
                else:
                    reply = respond(head, self.metrics.render)
                writer.write(reply)
                await writer.drain()
                writer.close()
                await writer.wait_closed()
        except asyncio.CancelledError:
            writer.transport.abort()  # aclose() ends this connection; the task ends with it
        except (TimeoutError, OSError):
            writer.transport.abort()  # too slow, or gone: nothing to tell it
        except Exception:
            _LOGGER.exception("metrics: error serving a client")
            writer.transport.abort()
        finally:
            self._clients.discard(task)


async def _loopback_addresses(host: str, port: int) -> list[str]:
    """The addresses *host* names, all of which must be loopback ones."""
    if not host:
        raise MetricsError("metrics: an empty host means every address; it is not loopback")
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except OSError as err:
        raise MetricsError(f"metrics: cannot resolve {host!r}: {err}") from err
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    remote = [a for a in addresses if not ipaddress.ip_address(a.split("%")[0]).is_loopback]
    if remote or not addresses:
        raise MetricsError(
            f"metrics: {host} is not a loopback address ({', '.join(remote)}); "
            "the endpoint has no authentication, so binding it elsewhere must be allowed explicitly"
        )
    return addresses


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --- ncap status ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BusStatus:
    reads: int | None = None
    errors: int | None = None


@dataclass(frozen=True, slots=True)
class GatewayStatus:
    """What a gateway's metrics say; None where the gateway does not report it."""

    readings_in: int | None = None
    readings_published: int | None = None
    readings_acknowledged: int | None = None
    readings_dropped: int | None = None
    events_sent: int | None = None
    alarms_raised: int | None = None
    reconnects: int | None = None
    journal_depth: int | None = None
    journal_bytes: int | None = None
    uplink_online: bool | None = None
    subscribers: int | None = None
    buses: dict[str, BusStatus] = field(default_factory=dict)


def fetch_status(url: str = DEFAULT_URL, timeout: float = STATUS_TIMEOUT_S) -> GatewayStatus:
    """Read and parse a gateway's metrics endpoint. Raises `MetricsError` when it cannot."""
    import urllib.error
    import urllib.request

    if not url.startswith(("http://", "https://")):
        raise MetricsError(f"{url}: not an http:// or https:// URL")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:  # noqa: S310 (scheme checked)
            text = reply.read().decode("utf-8")
    except urllib.error.HTTPError as err:
        raise MetricsError(f"the gateway at {url} answered {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise MetricsError(
            f"the gateway is not reachable at {url} ({reason}); is it running, with its "
            "metrics endpoint on that address?"
        ) from None
    except UnicodeDecodeError:
        raise MetricsError(f"{url} does not serve Prometheus metrics (not UTF-8)") from None
    try:
        return parse_status(text)
    except ValueError as err:
        raise MetricsError(f"{url} does not serve NCAP metrics: {err}") from None


def parse_status(text: str) -> GatewayStatus:
    """The status in a Prometheus text exposition. Raises ValueError if it is not one, or has
    no NCAP metrics."""
    plain: dict[str, float] = {}
    per_bus: dict[str, dict[str, float]] = {}
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.startswith(PREFIX):
                continue
            name = sample.name.removeprefix(PREFIX).removesuffix("_total")
            if "bus" in sample.labels:
                per_bus.setdefault(sample.labels["bus"], {})[name] = sample.value
            elif not sample.labels:
                plain[name] = sample.value
    if not plain and not per_bus:
        raise ValueError("no ncap_ metrics in it")

    def count(values: dict[str, float], name: str) -> int | None:
        value = values.get(name)
        return None if value is None or not math.isfinite(value) else int(value)

    online = plain.get("uplink_online")
    return GatewayStatus(
        readings_in=count(plain, "readings_in"),
        readings_published=count(plain, "readings_published"),
        readings_acknowledged=count(plain, "readings_acknowledged"),
        readings_dropped=count(plain, "readings_dropped"),
        events_sent=count(plain, "events_sent"),
        alarms_raised=count(plain, "alarms_raised"),
        reconnects=count(plain, "reconnects"),
        journal_depth=count(plain, "journal_depth"),
        journal_bytes=count(plain, "journal_bytes"),
        uplink_online=None if online is None or math.isnan(online) else online > 0,
        subscribers=count(plain, "subscribers"),
        buses={
            bus: BusStatus(reads=count(values, "bus_reads"), errors=count(values, "bus_errors"))
            for bus, values in sorted(per_bus.items())
        },
    )


def status_as_json(status: GatewayStatus) -> dict[str, Any]:
    return asdict(status)


def format_status(status: GatewayStatus, url: str) -> str:
    """A few aligned lines for a person; "?" where the gateway does not report a value."""

    def n(value: int | None) -> str:
        return "?" if value is None else str(value)

    uplink = {None: "unknown", True: "online", False: "OFFLINE"}[status.uplink_online]
    journal = f"{n(status.journal_depth)} waiting"
    if status.journal_bytes is not None:
        journal += f", {_size(status.journal_bytes)} on disk"
    rows = [
        ("gateway", url),
        ("uplink", f"{uplink}, {n(status.reconnects)} reconnects"),
        (
            "readings",
            f"{n(status.readings_in)} in, {n(status.readings_published)} published, "
            f"{n(status.readings_acknowledged)} acknowledged",
        ),
        ("journal", journal),
        ("dropped", f"{n(status.readings_dropped)} readings"),
        (
            "events",
            f"{n(status.events_sent)} sent to {n(status.subscribers)} subscribers, "
            f"{n(status.alarms_raised)} alarms",
        ),
    ]
    lines = [f"{label:<10}{text}" for label, text in rows]
    if status.buses:
        width = max(len(bus) for bus in status.buses)
        lines.append("buses")
        for bus, counts in status.buses.items():
            lines.append(f"  {bus:<{width}}  {n(counts.reads)} reads, {n(counts.errors)} errors")
    return "\n".join(lines)


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"
