"""TIM firmware core: TLF-1 link + IEEE 1451.0-2007 command subset, I/O-free.

Runs unchanged under MicroPython (RP2040, ESP32) and CPython 3.11 (the tests load it
by path).  Spec: ieee1451.md §2 (messages), §3.7 (command subset), §4-§7 (TEDS) and
§12.2 (TLF-1 framing).

MicroPython rules kept here on purpose: no dataclasses, enum, typing or
``from __future__`` imports; no type annotations (types are given in docstrings); no
keyword arguments to ``int.to_bytes``/``int.from_bytes``; no ``bytes.hex``/``fromhex``;
``bytes.find`` only with a bytes argument; no ``bytearray.clear``; only ``struct``
formats MicroPython has (``>BBIHI``, ``>f``, ``>I``, ``>H``).

Parsers here never raise on bad input: they return ``None`` (or an error code), and
:meth:`TimCore.feed` turns every malformed frame into a NAK or silence.
"""

import struct

# --- TLF-1 constants (§12.2) ---------------------------------------------------------

VERSION = 1
KIND_COMMAND = 1
KIND_REPLY = 2
KIND_TIM_INITIATED = 3
KIND_ACK = 4
KIND_NAK = 5

NAK_CRC = 1
NAK_LENGTH = 2
NAK_BUSY = 3
NAK_UNKNOWN = 4

MAX_PAYLOAD = 1024
MAX_PACKET = 2 + MAX_PAYLOAD + 2
MAX_ENCODED = MAX_PACKET + MAX_PACKET // 254 + 1
# Largest TEDS / data-set chunk in one reply: payload - reply header (3) - offset (4).
MAX_SEGMENT = MAX_PAYLOAD - 3 - 4

PARSE_OK = 0
PARSE_IGNORE = -1  # not ours (wrong version) or too short to say anything: stay silent

# --- IEEE 1451.0 constants (§3, §4.3, §4.4, §6.1) -----------------------------------

TIM_CHANNEL = 0
GLOBAL_CHANNEL = 0xFFFF
UNSUPPORTED_OFFSET = 0xFFFFFFFF

TEDS_META = 1
TEDS_CHANNEL = 3
TEDS_USER_NAME = 12
TEDS_PHY = 13

ATTR_READ_ONLY = 0x01
ATTR_NOT_AVAILABLE = 0x02

CHAN_SENSOR = 0
CHAN_ACTUATOR = 1

CAL_NONE = 0
DATMODEL_FLOAT32 = 1

# UNITS exponent order (§6.2); sub-field TLV types are 51.. in this order.
UNIT_NAMES = (
    "radians",
    "steradians",
    "meters",
    "kilograms",
    "seconds",
    "amperes",
    "kelvins",
    "moles",
    "candelas",
)

# --- CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, xorout 0 ------------

_CRC_NIBBLE = (
    0x0000,
    0x1021,
    0x2042,
    0x3063,
    0x4084,
    0x50A5,
    0x60C6,
    0x70E7,
    0x8108,
    0x9129,
    0xA14A,
    0xB16B,
    0xC18C,
    0xD1AD,
    0xE1CE,
    0xF1EF,
)


def crc16(data, crc=0xFFFF):
    """CRC-16/CCITT-FALSE of ``data`` (bytes-like) -> int; 16-entry table, 32 octets."""
    table = _CRC_NIBBLE
    for octet in data:
        crc = ((crc << 4) & 0xFFFF) ^ table[(crc >> 12) ^ (octet >> 4)]
        crc = ((crc << 4) & 0xFFFF) ^ table[(crc >> 12) ^ (octet & 0x0F)]
    return crc


# --- COBS ------------------------------------------------------------------------------


def cobs_encode(data):
    """COBS-encode ``data`` -> bytes without 0x00 (the delimiter is not added)."""
    out = bytearray()
    code_pos = 0
    out.append(0)
    code = 1
    for octet in data:
        if octet == 0:
            out[code_pos] = code
            code_pos = len(out)
            out.append(0)
            code = 1
            continue
        out.append(octet)
        code += 1
        if code == 0xFF:
            out[code_pos] = code
            code_pos = len(out)
            out.append(0)
            code = 1
    out[code_pos] = code
    return bytes(out)


def cobs_decode(data):
    """Invert :func:`cobs_encode`; ``None`` for anything it cannot have produced."""
    end = len(data)
    if end == 0:
        return None
    out = bytearray()
    pos = 0
    while pos < end:
        code = data[pos]
        if code == 0:
            return None
        block_end = pos + code
        if block_end > end:
            return None
        for index in range(pos + 1, block_end):
            octet = data[index]
            if octet == 0:
                return None
            out.append(octet)
        pos = block_end
        if code != 0xFF and pos < end:
            out.append(0)
    return bytes(out)


# --- TLF-1 packets ---------------------------------------------------------------------


def build_packet(kind, seq, payload=b""):
    """``ver_type | seq | payload | CRC`` (not COBS-encoded)."""
    body = bytes(((VERSION << 4) | kind, seq & 0xFF)) + bytes(payload)
    return body + crc16(body).to_bytes(2, "big")


def build_frame(kind, seq, payload=b""):
    """One wire frame: COBS(packet) followed by the 0x00 delimiter."""
    return cobs_encode(build_packet(kind, seq, payload)) + b"\x00"


def parse_packet(packet):
    """Check an un-stuffed packet -> ``(status, kind, seq, payload)``.

    ``status`` is :data:`PARSE_OK`, :data:`NAK_CRC`, :data:`NAK_LENGTH` or
    :data:`PARSE_IGNORE`; ``kind``/``seq`` are ``-1`` when they cannot be read.
    """
    size = len(packet)
    if size < 4:
        return (PARSE_IGNORE, -1, -1, b"")
    ver_type = packet[0]
    seq = packet[1]
    if ver_type >> 4 != VERSION:
        return (PARSE_IGNORE, -1, seq, b"")
    kind = ver_type & 0x0F
    if size > MAX_PACKET:
        return (NAK_LENGTH, kind, seq, b"")
    found = (packet[size - 2] << 8) | packet[size - 1]
    if crc16(packet[: size - 2]) != found:
        return (NAK_CRC, kind, seq, b"")
    return (PARSE_OK, kind, seq, bytes(packet[2 : size - 2]))


# --- IEEE 1451.0 messages (§2) ---------------------------------------------------------


def parse_command(payload):
    """Command message (Table 12) -> ``(channel, class, function, args)`` or ``None``."""
    if len(payload) < 6:
        return None
    channel = (payload[0] << 8) | payload[1]
    length = (payload[4] << 8) | payload[5]
    if length != len(payload) - 6:
        return None
    return (channel, payload[2], payload[3], bytes(payload[6:]))


def build_command(channel, cmd_class, function, args=b""):
    """Command message (Table 12); the TIM does not send these, tests and tools do."""
    head = channel.to_bytes(2, "big") + bytes((cmd_class, function))
    return head + len(args).to_bytes(2, "big") + bytes(args)


def build_reply(success, data=b""):
    """Reply message (Table 13)."""
    return bytes((1 if success else 0,)) + len(data).to_bytes(2, "big") + bytes(data)


# --- TEDS builder (§4-§7) --------------------------------------------------------------


def f32(value):
    """Float32, big-endian."""
    return struct.pack(">f", value)


def tlv(tlv_type, value):
    """One TEDS tuple with a 1-octet length field."""
    value = bytes(value)
    if len(value) > 255:
        raise ValueError("TEDS tuple value longer than 255 octets")
    return bytes((tlv_type, len(value))) + value


def teds_checksum(data):
    """One's complement of the 16-bit sum of ``data`` (length field + data block)."""
    total = 0
    for octet in data:
        total += octet
    return (~total) & 0xFFFF


def teds_block(tuples):
    """Whole TEDS image: UInt32 length, the tuples, UInt16 checksum."""
    body = b"".join(tuples)
    head = (len(body) + 2).to_bytes(4, "big") + body
    return head + teds_checksum(head).to_bytes(2, "big")


def teds_id(access_code, family=0, version=1):
    """TEDS identifier tuple (type 3), 2007 form, tuple length 1."""
    return tlv(3, bytes((family, access_code, version, 1)))


def make_uuid(latitude_arcsec, longitude_arcsec, manufacturer, year, serial):
    """80-bit TIM UUID (Table 4): location, manufacturer, year, time/serial -> 10 octets.

    North and East are positive arc-seconds.
    """
    north = 1 if latitude_arcsec >= 0 else 0
    east = 1 if longitude_arcsec >= 0 else 0
    lat = abs(int(latitude_arcsec)) & 0xFFFFF
    lon = abs(int(longitude_arcsec)) & 0xFFFFF
    location = (north << 41) | (lat << 21) | (east << 20) | lon
    value = (location << 38) | ((manufacturer & 0xF) << 34)
    value |= ((year & 0xFFF) << 22) | (serial & 0x3FFFFF)
    return value.to_bytes(10, "big")


def units_value(interpretation=0, exponents=None, extension_code=0):
    """PhyUnits (type 12) value as nested TLV, sub-fields 50-60 (§6.2).

    ``exponents`` maps names from :data:`UNIT_NAMES` to (half-)integer exponents; each
    is stored as ``2 * exponent + 128``.
    """
    exponents = exponents or {}
    for name in exponents:
        if name not in UNIT_NAMES:
            raise ValueError("unknown unit " + str(name))
    out = tlv(50, bytes((interpretation,)))
    for index, name in enumerate(UNIT_NAMES):
        octet = round(2 * exponents.get(name, 0)) + 128
        if not 0 <= octet <= 255:
            raise ValueError("unit exponent out of range for " + name)
        out += tlv(51 + index, bytes((octet,)))
    return out + tlv(60, bytes((extension_code,)))


def meta_teds(uuid, max_chan, ohold_off=0.5, shold_off=2.0, test_time=0.0):
    """Meta-TEDS (access code 1, Table 43)."""
    if len(uuid) != 10:
        raise ValueError("UUID must be 10 octets")
    return teds_block(
        (
            teds_id(TEDS_META),
            tlv(4, uuid),
            tlv(10, f32(ohold_off)),
            tlv(11, f32(shold_off)),
            tlv(12, f32(test_time)),
            tlv(13, max_chan.to_bytes(2, "big")),
        )
    )


def channel_teds(
    chan_type=CHAN_SENSOR,
    units=None,
    low=None,
    high=None,
    error=None,
    update_time=None,
    read_delay=None,
    interpretation=0,
):
    """TransducerChannel TEDS (access code 3, Table 48); samples are one Float32.

    ``units`` maps :data:`UNIT_NAMES` to exponents (kelvin: ``{"kelvins": 1}``);
    limits and ``error`` are in those units, times in seconds.  ``None`` omits a field.
    """
    sample = tlv(40, bytes((DATMODEL_FLOAT32,))) + tlv(41, b"\x04") + tlv(42, b"\x00\x20")
    tuples = [
        teds_id(TEDS_CHANNEL),
        tlv(10, bytes((CAL_NONE,))),
        tlv(11, bytes((chan_type,))),
        tlv(12, units_value(interpretation, units)),
    ]
    for tlv_type, value in ((13, low), (14, high), (15, error)):
        if value is not None:
            tuples.append(tlv(tlv_type, f32(value)))
    tuples.append(tlv(18, sample))
    for tlv_type, value in ((20, update_time), (25, read_delay)):
        if value is not None:
            tuples.append(tlv(tlv_type, f32(value)))
    return teds_block(tuples)


def name_teds(name):
    """User's transducer name TEDS (access code 12): Format 0, TCName UTF-8 (types 4/5)."""
    return teds_block((teds_id(TEDS_USER_NAME), tlv(4, b"\x00"), tlv(5, name.encode())))


def phy_teds(baudrate=115200, max_payload=MAX_PAYLOAD):
    """Our serial PHY TEDS (§7.2 [O]): family 2, 128 baud, 129 link version, 130 max payload."""
    return teds_block(
        (
            teds_id(TEDS_PHY, family=2),
            tlv(128, baudrate.to_bytes(4, "big")),
            tlv(129, bytes((VERSION,))),
            tlv(130, max_payload.to_bytes(2, "big")),
        )
    )


def build_teds(tim_name, uuid, channels, ohold_off=0.5, baudrate=115200):
    """All TEDS of a TIM from a description -> ``{channel: {access_code: bytes}}``.

    ``channels`` is a sequence of dicts, channel numbers 1, 2, ... in order, with keys
    ``name`` and optionally ``type`` (0 sensor, 1 actuator), ``units``, ``low``,
    ``high``, ``error``, ``update_time``, ``read_delay``, ``interpretation``.
    """
    teds = {
        TIM_CHANNEL: {
            TEDS_META: meta_teds(uuid, len(channels), ohold_off=ohold_off),
            TEDS_USER_NAME: name_teds(tim_name),
            TEDS_PHY: phy_teds(baudrate),
        }
    }
    for number, spec in enumerate(channels, 1):
        teds[number] = {
            TEDS_CHANNEL: channel_teds(
                chan_type=spec.get("type", CHAN_SENSOR),
                units=spec.get("units"),
                low=spec.get("low"),
                high=spec.get("high"),
                error=spec.get("error"),
                update_time=spec.get("update_time"),
                read_delay=spec.get("read_delay"),
                interpretation=spec.get("interpretation", 0),
            ),
            TEDS_USER_NAME: name_teds(spec["name"]),
        }
    return teds


# --- the TIM ---------------------------------------------------------------------------


class TimCore:
    """A 1451.0 TIM on a TLF-1 link, bytes in, bytes out.

    ``teds_by_channel``: ``{channel: {access_code: TEDS image bytes}}``; channel 0 is the
    TIM, every other key is a TransducerChannel.  ``read_hooks``: ``{channel: f()}``
    returning the current value in PhyUnits (a float), or ``None`` when no sample is
    ready yet (the TIM answers NAK busy, the NCAP retries).  ``write_hooks``:
    ``{channel: f(value)}`` for actuator channels.  A hook that raises makes the TIM
    answer a failed reply.  Set :attr:`busy` to NAK every command with reason 3.
    """

    def __init__(self, teds_by_channel, read_hooks=None, write_hooks=None, max_segment=None):
        self.teds = teds_by_channel
        self.read_hooks = read_hooks or {}
        self.write_hooks = write_hooks or {}
        self.max_segment = max_segment or MAX_SEGMENT
        if not 1 <= self.max_segment <= MAX_SEGMENT:
            raise ValueError("max_segment out of range")
        self.channels = sorted(ch for ch in teds_by_channel if ch != TIM_CHANNEL)
        self.busy = False
        self.errors = 0  # frames dropped: noise, bad COBS, CRC, too long
        self.replays = 0  # duplicate frames answered from the replay cache
        self._rx = bytearray()
        self._overflow = False
        self._last = None  # (seq, payload, wire answer)
        self.reset()

    def reset(self):
        """Power-on state: every channel Idle, no latched samples (1451.0 Reset)."""
        self.operating = {}
        self.latched = {}
        self.written = {}

    def drop_partial(self):
        """Forget a partial frame (call after >100 ms of line silence, §12.2)."""
        self._rx = bytearray()
        self._overflow = False

    # --- link layer ------------------------------------------------------------------

    def feed(self, data):
        """Take received octets, return the octets to send back (maybe ``b""``)."""
        answers = []
        for encoded in self._split(bytes(data)):
            answer = self._on_encoded(encoded)
            if answer:
                answers.append(answer)
        return b"".join(answers)

    def _split(self, data):
        frames = []
        start = 0
        size = len(data)
        while start <= size:
            end = data.find(b"\x00", start)
            piece = data[start:] if end < 0 else data[start:end]
            if not self._overflow:
                self._rx.extend(piece)
                if len(self._rx) > MAX_ENCODED:
                    self.errors += 1
                    self._rx = bytearray()
                    self._overflow = True
            if end < 0:
                break
            if self._overflow:
                self._overflow = False
            elif self._rx:
                frames.append(bytes(self._rx))
            self._rx = bytearray()
            start = end + 1
        return frames

    def _on_encoded(self, encoded):
        packet = cobs_decode(encoded)
        if packet is None:
            self.errors += 1
            return b""
        status, kind, seq, payload = parse_packet(packet)
        if status != PARSE_OK:
            self.errors += 1
            if status == PARSE_IGNORE or kind != KIND_COMMAND:
                return b""
            return build_frame(KIND_NAK, seq, bytes((status,)))
        if kind != KIND_COMMAND:
            return b""
        last = self._last
        if last is not None and last[0] == seq and last[1] == payload:
            self.replays += 1
            return last[2]
        if self.busy:
            return build_frame(KIND_NAK, seq, bytes((NAK_BUSY,)))
        kind, data = self.execute(payload)
        wire = build_frame(kind, seq, data)
        if not (kind == KIND_NAK and data == bytes((NAK_BUSY,))):
            self._last = (seq, payload, wire)
        return wire

    # --- 1451.0 commands --------------------------------------------------------------

    def execute(self, payload):
        """Run one command message -> ``(frame kind, frame payload)``."""
        command = parse_command(payload)
        if command is None:
            return _nak(NAK_LENGTH)
        channel, cmd_class, function, args = command
        if cmd_class == 1 and function == 1:
            return self._query_teds(channel, args)
        if cmd_class == 1 and function == 2:
            return self._read_teds(channel, args)
        if cmd_class == 1 and function == 8:
            if not self._known(channel):
                return _nak(NAK_UNKNOWN)
            return (KIND_REPLY, build_reply(True, b"\x00\x00\x00\x00"))
        if cmd_class == 3 and function == 1:
            return self._read_data_set(channel, args)
        if cmd_class == 3 and function == 2:
            return self._write_data_set(channel, args)
        if cmd_class == 3 and function == 3:
            return self._trigger(channel)
        if cmd_class == 3 and function == 4:
            return self._for_channels(channel, None)
        if cmd_class == 4 and function in (1, 2):
            return self._for_channels(channel, function == 1)
        if cmd_class == 7 and function == 1:
            self.reset()
            return (KIND_ACK, b"")
        return _nak(NAK_UNKNOWN)

    def _known(self, channel):
        return channel == TIM_CHANNEL or channel in self.teds

    def _targets(self, channel):
        if channel == GLOBAL_CHANNEL:
            return self.channels
        if channel != TIM_CHANNEL and channel in self.teds:
            return [channel]
        return None

    def _for_channels(self, channel, operating):
        targets = self._targets(channel)
        if targets is None:
            return _nak(NAK_UNKNOWN)
        if operating is not None:
            for number in targets:
                self.operating[number] = operating
        return (KIND_ACK, b"")

    def _query_teds(self, channel, args):
        if len(args) != 1:
            return _nak(NAK_LENGTH)
        if not self._known(channel):
            return _nak(NAK_UNKNOWN)
        image = self.teds.get(channel, {}).get(args[0])
        if not image:
            info = struct.pack(">BBIHI", ATTR_NOT_AVAILABLE, 0, 0, 0, 0)
        else:
            size = len(image)
            check = (image[size - 2] << 8) | image[size - 1]
            info = struct.pack(">BBIHI", ATTR_READ_ONLY, 0, size, check, size)
        return (KIND_REPLY, build_reply(True, info))

    def _read_teds(self, channel, args):
        if len(args) != 5:
            return _nak(NAK_LENGTH)
        if not self._known(channel):
            return _nak(NAK_UNKNOWN)
        image = self.teds.get(channel, {}).get(args[0])
        offset = int.from_bytes(args[1:5], "big")
        if not image:
            return (KIND_REPLY, build_reply(True, UNSUPPORTED_OFFSET.to_bytes(4, "big")))
        if offset >= len(image):
            return (KIND_REPLY, build_reply(True, len(image).to_bytes(4, "big")))
        chunk = image[offset : offset + self.max_segment]
        return (KIND_REPLY, build_reply(True, offset.to_bytes(4, "big") + chunk))

    def _sample(self, channel):
        hook = self.read_hooks.get(channel)
        if hook is not None:
            value = hook()
            return None if value is None else float(value)
        return self.written.get(channel)

    def _trigger(self, channel):
        targets = self._targets(channel)
        if targets is None:
            return _nak(NAK_UNKNOWN)
        for number in targets:
            if not self.operating.get(number):
                if channel == GLOBAL_CHANNEL:
                    continue
                return _nak(NAK_UNKNOWN)
            try:
                value = self._sample(number)
            except Exception:  # a broken sensor must not take the link down
                return (KIND_REPLY, build_reply(False))
            if value is None and number in self.read_hooks:
                return _nak(NAK_BUSY)
            if value is not None:
                self.latched[number] = value
        return (KIND_ACK, b"")

    def _read_data_set(self, channel, args):
        if len(args) != 4:
            return _nak(NAK_LENGTH)
        if channel not in self.channels or not self.operating.get(channel):
            return _nak(NAK_UNKNOWN)
        value = self.latched.get(channel)
        if value is None:
            try:
                value = self._sample(channel)
            except Exception:  # see _trigger
                return (KIND_REPLY, build_reply(False))
            if value is None:
                return _nak(NAK_BUSY) if channel in self.read_hooks else _nak(NAK_UNKNOWN)
        data = f32(value)
        offset = int.from_bytes(args, "big")
        if offset >= len(data):
            return (KIND_REPLY, build_reply(True, len(data).to_bytes(4, "big")))
        return (KIND_REPLY, build_reply(True, args + data[offset:]))

    def _write_data_set(self, channel, args):
        if len(args) < 8 or (len(args) - 4) % 4:
            return _nak(NAK_LENGTH)
        hook = self.write_hooks.get(channel)
        if hook is None or channel not in self.channels or not self.operating.get(channel):
            return _nak(NAK_UNKNOWN)
        if int.from_bytes(args[:4], "big") != 0:
            return _nak(NAK_LENGTH)
        value = struct.unpack(">f", args[4:8])[0]
        try:
            hook(value)
        except Exception:  # see _trigger
            return (KIND_REPLY, build_reply(False))
        self.written[channel] = value
        self.latched.pop(channel, None)
        return (KIND_ACK, b"")


def _nak(reason):
    return (KIND_NAK, bytes((reason,)))
