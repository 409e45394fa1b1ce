"""SIP requests and responses: parse from a datagram or a stream frame, serialise, frame a byte
stream, and make a response from a request (RFC 3261 §7, §8.2.6, §18.3).

Pure module: bytes in, objects out. On parse:

* leading CRLFs are skipped; lines may end in CRLF or (leniently) LF; folded lines are unfolded;
* header names are canonicalised (compact forms expanded, see :mod:`sipstack.headers`) and
  comma-separated values of list headers (Via, Contact, Route, Allow...) become separate fields;
* ``Content-Length`` frames the body: on a datagram a missing one means "the rest of the
  datagram", extra bytes after the body are discarded, a larger value is an error; on a stream
  frame it is mandatory and exact;
* :data:`DEFAULT_LIMITS` bounds the header part, the number of fields and the body;
* with ``validate=True`` (the default) the mandatory headers are checked as well
  (:func:`check_message`).

Every failure is a :class:`~sipstack.errors.SipParseError` whose ``status`` is the response to
send (400, 413, 505, 513...). Serialising always writes long header names, one field per line,
and a ``Content-Length`` computed from the body.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from sipstack.errors import (
    SipFramingError,
    SipLimitError,
    SipParseError,
    SipUriError,
    SipValueError,
    SipVersionError,
)
from sipstack.fields import (
    CSeq,
    Event,
    NameAddr,
    Via,
    new_tag,
    parse_call_id,
    parse_delta_seconds,
    parse_max_forwards,
)
from sipstack.headers import LIST_HEADERS, Headers, header_key, is_token, split_list
from sipstack.uri import SipUri, is_sip_uri

__all__ = [
    "DEFAULT_LIMITS",
    "REASON_PHRASES",
    "SIP_VERSION",
    "SipLimits",
    "SipMessage",
    "SipRequest",
    "SipResponse",
    "StreamFramer",
    "check_message",
    "error_response",
    "is_keepalive",
    "make_response",
    "parse_message",
]

SIP_VERSION = "SIP/2.0"

#: Default reason phrases (RFC 3261 §21 plus the extensions the bridge uses).
REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    204: "No Notification",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    412: "Conditional Request Failed",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}


@dataclass(frozen=True)
class SipLimits:
    """Bounds on what a peer can make us hold.

    ``max_header_bytes`` covers the start line and all header lines (513 when exceeded),
    ``max_header_fields`` the number of fields after list values are split (513),
    ``max_body_bytes`` the body (413).
    """

    max_header_bytes: int = 16 * 1024
    max_header_fields: int = 150
    max_body_bytes: int = 64 * 1024


DEFAULT_LIMITS = SipLimits()

_HEAD_END = re.compile(rb"\r?\n\r?\n")
_LINE_BREAK = re.compile(r"\r?\n")
_URI_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[\x21-\x7e\x80-\U0010ffff]+")
_VERSION = re.compile(r"SIP/[0-9]+\.[0-9]+", re.IGNORECASE)
_STATUS_LINE = re.compile(r"(?P<version>\S+) (?P<status>[0-9]{3})(?: (?P<reason>.*))?")
_BAD_REASON_CHAR = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_DIGITS = re.compile(rb"[0-9]+")
# Header fields that may appear at most once.
_SINGLE = ("Call-ID", "From", "To", "CSeq", "Max-Forwards", "Content-Type", "Content-Length")


class SipMessage:
    """Shared accessors of :class:`SipRequest` and :class:`SipResponse`.

    Accessors parse on each call and raise :class:`SipParseError` for a missing mandatory header
    or a bad value; optional headers give None when absent.
    """

    headers: Headers
    body: bytes

    def header_value(self, name: str) -> str:
        """The value of header ``name``, which must appear exactly once."""
        values = self.headers.get_all(name)
        if not values:
            raise SipParseError(f"missing {name} header")
        if len(values) > 1:
            raise SipParseError(f"more than one {name} header")
        return values[0]

    @property
    def call_id(self) -> str:
        return parse_call_id(self.header_value("Call-ID"))

    @property
    def cseq(self) -> CSeq:
        return CSeq.parse(self.header_value("CSeq"))

    @property
    def from_addr(self) -> NameAddr:
        return NameAddr.parse(self.header_value("From"))

    @property
    def to_addr(self) -> NameAddr:
        return NameAddr.parse(self.header_value("To"))

    @property
    def vias(self) -> list[Via]:
        return [Via.parse(value) for value in self.headers.get_all("Via")]

    @property
    def top_via(self) -> Via:
        first = self.headers.get("Via")
        if first is None:
            raise SipParseError("missing Via header")
        return Via.parse(first)

    @property
    def contacts(self) -> list[NameAddr]:
        return [
            NameAddr.parse(value, allow_wildcard=True) for value in self.headers.get_all("Contact")
        ]

    @property
    def content_type(self) -> str | None:
        """The media type, lower-cased and without parameters (``application/pidf+xml``)."""
        value = self.headers.get("Content-Type")
        if value is None:
            return None
        return value.split(";", 1)[0].strip(" \t").lower()

    @property
    def expires(self) -> int | None:
        value = self.headers.get("Expires")
        return None if value is None else parse_delta_seconds(value)

    @property
    def event(self) -> Event | None:
        value = self.headers.get("Event")
        return None if value is None else Event.parse(value)

    def _start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """The wire form: one field per line, long names, ``Content-Length`` from the body."""
        lines = [self._start_line()]
        lines.extend(
            f"{name}: {value}"
            for name, value in self.headers
            if header_key(name) != "content-length"
        )
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body


@dataclass(eq=True)
class SipRequest(SipMessage):
    method: str
    uri: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    @property
    def max_forwards(self) -> int | None:
        value = self.headers.get("Max-Forwards")
        return None if value is None else parse_max_forwards(value)

    def sip_uri(self) -> SipUri:
        """The Request-URI parsed (:class:`SipUriError` with 416 for another scheme)."""
        return SipUri.parse(self.uri)

    def _start_line(self) -> str:
        if not is_token(self.method):
            raise SipValueError(f"bad method {self.method!r}")
        if _URI_TEXT.fullmatch(self.uri) is None:
            raise SipValueError(f"bad Request-URI {self.uri!r}")
        return f"{self.method} {self.uri} {SIP_VERSION}"


@dataclass(eq=True)
class SipResponse(SipMessage):
    status: int
    reason: str = ""
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    def _start_line(self) -> str:
        if not 100 <= self.status <= 699:
            raise SipValueError(f"status code out of range: {self.status}")
        if _BAD_REASON_CHAR.search(self.reason):
            raise SipValueError(f"bad reason phrase {self.reason!r}")
        return f"{SIP_VERSION} {self.status} {self.reason}"


# -- parsing ---------------------------------------------------------------------------------------


def is_keepalive(data: bytes) -> bool:
    """True for a datagram made only of CR/LF (an RFC 5626 ping or pong); ignore it."""
    return data.strip(b"\r\n") == b""


def _skip_crlf(data: bytes | bytearray) -> int:
    index = 0
    while index < len(data) and data[index] in (0x0D, 0x0A):
        index += 1
    return index


def _locate_head(data: bytes, start: int, limits: SipLimits) -> re.Match[bytes]:
    window = start + limits.max_header_bytes + 4
    end = _HEAD_END.search(data, start, window)
    if end is None:
        if len(data) >= window:
            raise SipLimitError("header part too large")
        raise SipParseError("no empty line after the headers")
    if end.start() - start > limits.max_header_bytes:
        raise SipLimitError("header part too large")
    return end


def _parse_start_line(line: str, *, any_version: bool = False) -> SipRequest | SipResponse:
    if line[:4].upper() == "SIP/":
        match = _STATUS_LINE.fullmatch(line)
        if match is None:
            raise SipParseError(f"bad status line {line!r}")
        if not any_version:
            _check_version(match["version"])
        status = int(match["status"])
        reason = match["reason"] or ""
        if status < 100 or _BAD_REASON_CHAR.search(reason):
            raise SipParseError(f"bad status line {line!r}")
        return SipResponse(status, reason)
    parts = line.split(" ")
    if len(parts) != 3:
        raise SipParseError(f"bad request line {line!r}")
    method, uri, version = parts
    if not is_token(method):
        raise SipParseError(f"bad method in {line!r}")
    if _URI_TEXT.fullmatch(uri) is None:
        raise SipParseError(f"bad Request-URI in {line!r}")
    if not any_version:
        _check_version(version)
    return SipRequest(method, uri)


def _check_version(version: str) -> None:
    if version.upper() == SIP_VERSION:
        return
    if _VERSION.fullmatch(version):
        raise SipVersionError(f"unsupported version {version!r}")
    raise SipParseError(f"bad protocol version {version!r}")


def _unfold(lines: list[str]) -> list[str]:
    fields: list[str] = []
    for line in lines:
        if line[:1] in (" ", "\t"):
            if not fields:
                raise SipParseError("continuation line before the first header")
            fields[-1] = fields[-1].rstrip(" \t") + " " + line.strip(" \t")
        else:
            fields.append(line)
    return fields


def _parse_fields(lines: list[str], limits: SipLimits) -> Headers:
    headers = Headers()
    count = 0
    for line in _unfold(lines):
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if not colon or not is_token(name):
            raise SipParseError(f"bad header line {line[:80]!r}")
        value = value.strip(" \t")
        values = split_list(value) if header_key(name) in LIST_HEADERS else [value]
        count += len(values)
        if count > limits.max_header_fields:
            raise SipLimitError("too many header fields")
        for item in values:
            headers.add(name, item)
    return headers


def _content_length(values: list[str], limits: SipLimits) -> int | None:
    if not values:
        return None
    if len(values) > 1:
        raise SipParseError("more than one Content-Length header")
    raw = values[0].strip(" \t").encode("ascii", "replace")
    if _DIGITS.fullmatch(raw) is None:
        raise SipParseError(f"bad Content-Length {values[0]!r}")
    digits = raw.lstrip(b"0") or b"0"
    if len(digits) > 12 or int(digits) > limits.max_body_bytes:
        raise SipLimitError(f"body too large (Content-Length {values[0].strip()})", status=413)
    return int(digits)


def _parse_head(
    data: bytes, limits: SipLimits, *, any_version: bool = False
) -> tuple[SipRequest | SipResponse, int]:
    """The start line and headers of ``data``, and where the body starts."""
    start = _skip_crlf(data)
    if start == len(data):
        raise SipParseError("empty message")
    head_end = _locate_head(data, start, limits)
    try:
        head = data[start : head_end.start()].decode("utf-8")
    except UnicodeDecodeError:
        raise SipParseError("header part is not UTF-8") from None
    lines = _LINE_BREAK.split(head)
    if any("\r" in line for line in lines):
        raise SipParseError("bare CR in the header part")
    message = _parse_start_line(lines[0], any_version=any_version)
    message.headers = _parse_fields(lines[1:], limits)
    return message, head_end.end()


def parse_message(
    data: bytes,
    *,
    stream: bool = False,
    limits: SipLimits = DEFAULT_LIMITS,
    validate: bool = True,
) -> SipRequest | SipResponse:
    """Parse one SIP message.

    ``data`` is a UDP datagram, or with ``stream=True`` one frame cut by :class:`StreamFramer`
    (then ``Content-Length`` is required and must match exactly). With ``validate`` the
    mandatory headers are checked too (:func:`check_message`).
    """
    message, body_start = _parse_head(data, limits)
    rest = data[body_start:]
    length = _content_length(message.headers.get_all("Content-Length"), limits)
    if length is None:
        if stream:
            raise SipParseError("Content-Length is required on a stream")
        if len(rest) > limits.max_body_bytes:
            raise SipLimitError("body too large", status=413)
        length = len(rest)
    if length > len(rest):
        raise SipParseError(f"body shorter than Content-Length ({len(rest)} < {length})")
    if stream and length != len(rest):
        raise SipParseError("bytes after the body in a stream frame")
    # RFC 3261 §18.3: bytes of a datagram beyond the body are discarded.
    message.body = rest[:length]
    if validate:
        check_message(message)
    return message


def check_message(message: SipRequest | SipResponse) -> None:
    """Check the headers every request and response must carry (RFC 3261 §8.1.1, §20).

    Exactly one Call-ID, From, To and CSeq, all well-formed; at least one Via, all well-formed;
    at most one Max-Forwards/Content-Type; Contacts well-formed; for a request, the CSeq method
    equals the request method and a SIP Request-URI is well-formed and has no headers.
    """
    for name in _SINGLE:
        if message.headers.count(name) > 1:
            raise SipParseError(f"more than one {name} header")
    parse_call_id(message.header_value("Call-ID"))
    NameAddr.parse(message.header_value("From"))
    NameAddr.parse(message.header_value("To"))
    cseq = CSeq.parse(message.header_value("CSeq"))
    vias = message.headers.get_all("Via")
    if not vias:
        raise SipParseError("missing Via header")
    for value in vias:
        Via.parse(value)
    for value in message.headers.get_all("Contact"):
        NameAddr.parse(value, allow_wildcard=True)
    if isinstance(message, SipRequest):
        if cseq.method != message.method:
            raise SipParseError(f"CSeq method {cseq.method} does not match {message.method}")
        max_forwards = message.headers.get("Max-Forwards")
        if max_forwards is not None:
            parse_max_forwards(max_forwards)
        if is_sip_uri(message.uri):
            try:
                uri = message.sip_uri()
            except SipUriError as error:
                raise SipParseError(f"bad Request-URI: {error.message}") from None
            if uri.headers:
                raise SipParseError("headers are not allowed in a Request-URI")


# -- responses -------------------------------------------------------------------------------------


def make_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    dialog: bool = False,
) -> SipResponse:
    """A response to ``request`` (RFC 3261 §8.2.6).

    Copies every Via in order, From, To, Call-ID and CSeq (and Timestamp for a 100). A To-tag is
    added unless the To already has one or ``status`` is 100: ``to_tag`` or a fresh random one.
    With ``dialog`` (a 1xx/2xx that creates a dialog, e.g. to SUBSCRIBE) the Record-Route
    values are copied too, in order (§12.1.1). ``headers`` are appended after the copied ones.
    """
    if not 100 <= status <= 699:
        raise SipValueError(f"status code out of range: {status}")
    response = SipResponse(status, REASON_PHRASES.get(status, "") if reason is None else reason)
    for value in request.headers.get_all("Via"):
        response.headers.add("Via", value)
    response.headers.add("From", request.header_value("From"))
    to_value = request.header_value("To")
    if status > 100 and NameAddr.parse(to_value).tag is None:
        tag = new_tag() if to_tag is None else to_tag
        if not is_token(tag):
            raise SipValueError(f"bad tag {tag!r}")
        to_value = f"{to_value};tag={tag}"
    response.headers.add("To", to_value)
    response.headers.add("Call-ID", request.header_value("Call-ID"))
    response.headers.add("CSeq", request.header_value("CSeq"))
    timestamp = request.headers.get("Timestamp")
    if status == 100 and timestamp is not None:
        response.headers.add("Timestamp", timestamp)
    if dialog and 100 < status < 300:
        for value in request.headers.get_all("Record-Route"):
            response.headers.add("Record-Route", value)
    for name, value in headers:
        response.headers.add(name, value)
    response.body = body
    return response


def error_response(
    data: bytes, error: SipParseError, *, limits: SipLimits = DEFAULT_LIMITS
) -> SipResponse | None:
    """The response to send for a request that failed to parse with ``error``, if any.

    RFC 3261 wants a 400 (or ``error.status``) when the request is readable enough to answer:
    its start line (any SIP version, so that 505 can be sent), headers (the body is ignored),
    one From, To, Call-ID and CSeq (copied as they are), and a top Via saying where the response
    goes. Otherwise, and for responses and ACKs, the answer is None: drop it silently.
    """
    try:
        message, _ = _parse_head(data, limits, any_version=True)
        if not isinstance(message, SipRequest) or message.method == "ACK":
            return None
        for name in ("From", "To", "Call-ID", "CSeq"):
            message.header_value(name)
        top_via = message.headers.get("Via")
        if top_via is None:
            return None
        Via.parse(top_via)  # the response must be routable
        NameAddr.parse(message.header_value("To"))
    except SipParseError:
        return None
    return make_response(message, error.status)


# -- stream framing --------------------------------------------------------------------------------


class StreamFramer:
    """Cuts SIP messages out of a TCP/TLS byte stream by ``Content-Length`` (RFC 3261 §18.3).

    :meth:`feed` returns complete frames (bytes) for :func:`parse_message` with ``stream=True``;
    a frame that then fails to parse can be answered with 400 while the stream goes on. CRLFs
    between messages are skipped; each CRLFCRLF there is an RFC 5626 keep-alive ping, counted
    for :meth:`take_pings` (answer each with a CRLF pong). A stream that cannot be framed (no or
    bad Content-Length, header part or body over the limits) raises :class:`SipFramingError`
    (``status`` 400, 413 or 513) and stays failed: close the connection. Buffered data never
    exceeds the header limit plus the body limit.
    """

    def __init__(self, limits: SipLimits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._buffer = bytearray()
        self._frame_size: int | None = None
        self._scanned = 0  # how far the head search got, so a trickle is not rescanned
        self._pings = 0
        self._failed: SipFramingError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held while waiting for the rest of a message."""
        return len(self._buffer)

    def take_pings(self) -> int:
        """Keep-alive pings seen since the last call."""
        pings, self._pings = self._pings, 0
        return pings

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the messages they complete, in order."""
        if self._failed is not None:
            raise SipFramingError(f"stream already failed: {self._failed.message}")
        self._buffer += data
        frames: list[bytes] = []
        try:
            while True:
                if self._frame_size is None:
                    self._skip_keepalives()
                    self._frame_size = self._measure()
                    if self._frame_size is None:
                        break
                if len(self._buffer) < self._frame_size:
                    break
                frames.append(bytes(self._buffer[: self._frame_size]))
                del self._buffer[: self._frame_size]
                self._frame_size = None
                self._scanned = 0
        except SipFramingError as error:
            self._failed = error
            self._buffer.clear()
            raise
        return frames

    def _skip_keepalives(self) -> None:
        run = _skip_crlf(self._buffer)
        if run == 0:
            return
        blank = bytes(self._buffer[:run])
        self._pings += blank.count(b"\r\n\r\n")
        consumed = run
        if run == len(self._buffer):
            # The run may be half of a ping; keep a tail that could still become one.
            tail = blank[blank.rfind(b"\r\n\r\n") + 4 :] if b"\r\n\r\n" in blank else blank
            if tail in (b"\r", b"\r\n", b"\r\n\r"):
                consumed = run - len(tail)
        if consumed:
            del self._buffer[:consumed]
            self._scanned = 0

    def _measure(self) -> int | None:
        """Total size of the message at the start of the buffer, None if its head is incomplete."""
        limit = self.limits.max_header_bytes
        end = _HEAD_END.search(self._buffer, max(0, self._scanned - 3), limit + 4)
        if end is None:
            if len(self._buffer) >= limit + 4:
                raise SipFramingError("header part too large", status=513)
            self._scanned = len(self._buffer)
            return None
        if end.start() > limit:
            raise SipFramingError("header part too large", status=513)
        # Latin-1 never fails: framing must not depend on the headers being otherwise valid.
        head = bytes(self._buffer[: end.start()]).decode("latin-1")
        values = []
        for line in _unfold_lenient(_LINE_BREAK.split(head)[1:]):
            name, colon, value = line.partition(":")
            if colon and header_key(name.strip(" \t")) == "content-length":
                values.append(value)
        if not values:
            raise SipFramingError("Content-Length is required on a stream")
        try:
            length = _content_length(values, self.limits)
        except SipParseError as error:
            raise SipFramingError(error.message, status=error.status) from None
        assert length is not None
        return end.end() + length


def _unfold_lenient(lines: list[str]) -> list[str]:
    fields: list[str] = []
    for line in lines:
        if line[:1] in (" ", "\t") and fields:
            fields[-1] += " " + line.strip(" \t")
        else:
            fields.append(line)
    return fields
