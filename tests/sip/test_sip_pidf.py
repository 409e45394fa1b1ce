"""PIDF + data model + RPID (sipstack.pidf): exact documents, tolerant parsing, XML safety."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipstack.errors import SipBodyError, SipParseError, SipValueError
from sipstack.pidf import (
    MAX_PIDF_BYTES,
    Note,
    PresenceDocument,
    PresenceTuple,
    build_pidf,
    parse_pidf,
)

ALARM_DOCUMENT = b"""<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" \
xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:smoke-hall@things.example.org">
  <tuple id="svc-smoke-hall">
    <status><basic>open</basic></status>
    <contact>sip:smoke-hall@things.example.org</contact>
    <note xml:lang="en">ALARM: smoke detected (since 15:41:07Z)</note>
    <timestamp>2026-11-21T15:41:07Z</timestamp>
  </tuple>
  <dm:person id="p-smoke-hall">
    <rpid:activities><rpid:busy/></rpid:activities>
    <dm:note xml:lang="en">ALARM: smoke detected (since 15:41:07Z)</dm:note>
  </dm:person>
</presence>
"""

OFFLINE_DOCUMENT = b"""<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:boiler-temp@things.example.org">
  <tuple id="svc-boiler-temp">
    <status><basic>closed</basic></status>
    <contact>sip:boiler-temp@things.example.org</contact>
    <note xml:lang="en">offline: no data from unit 7 for 120 s</note>
  </tuple>
</presence>
"""


def test_alarm_document_is_exact() -> None:
    document = build_pidf(
        "sip:smoke-hall@things.example.org",
        basic="open",
        note="ALARM: smoke detected (since 15:41:07Z)",
        activities=("busy",),
        timestamp=datetime(2026, 11, 21, 16, 41, 7, tzinfo=timezone(timedelta(hours=1))),
    )
    assert document == ALARM_DOCUMENT


def test_offline_document_is_exact() -> None:
    document = build_pidf(
        "sip:boiler-temp@things.example.org",
        basic="closed",
        note="offline: no data from unit 7 for 120 s",
        person_note=False,
    )
    assert document == OFFLINE_DOCUMENT


def test_maintenance_and_other_activity() -> None:
    document = build_pidf(
        "sips:pump-3@things.example.org;transport=tls",
        basic="open",
        note="maintenance & <calibration>",
        lang="de-CH",
        activities=("away",),
        other_activity="calibrating",
        tuple_id="svc-custom",
    )
    text = document.decode()
    assert 'entity="sips:pump-3@things.example.org;transport=tls"' in text
    assert "<contact>sips:pump-3@things.example.org;transport=tls</contact>" in text
    assert '<note xml:lang="de-CH">maintenance &amp; &lt;calibration&gt;</note>' in text
    assert (
        "<rpid:activities><rpid:away/><rpid:other>calibrating</rpid:other></rpid:activities>"
        in text
    )
    assert '<tuple id="svc-custom">' in text
    assert '<dm:person id="p-pump-3">' in text
    parsed = parse_pidf(document)
    assert parsed is not None
    assert parsed.activities == ("away", "other")
    assert parsed.other_activity == "calibrating"
    assert parsed.note == "maintenance & <calibration>"


def test_minimal_document_has_no_extension_namespaces() -> None:
    text = build_pidf("sip:a@b.test", basic="open", lang=None).decode()
    assert "xmlns:dm" not in text
    assert "xmlns:rpid" not in text
    assert "<note" not in text
    assert "dm:person" not in text


@pytest.mark.parametrize(
    "kwargs",
    [
        {"activities": ("sleepwalking",)},
        {"activities": ("unknown", "busy")},
        {"activities": ("unknown",), "other_activity": "x"},
        {"timestamp": datetime(2026, 1, 1)},
        {"tuple_id": "1-boiler"},
        {"tuple_id": "a:b"},
        {"lang": "not a tag"},
        {"basic": "half-open"},
    ],
)
def test_builder_rejects_bad_input(kwargs: dict[str, object]) -> None:
    arguments: dict[str, object] = {"basic": "open", **kwargs}
    with pytest.raises(SipValueError):
        build_pidf("sip:a@b.test", **arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize("entity", ["", "sip:a b@c.test", "sip:a\x00@b.test"])
def test_builder_rejects_bad_entities(entity: str) -> None:
    with pytest.raises(SipValueError):
        build_pidf(entity, basic="open")


def test_note_with_characters_xml_cannot_carry() -> None:
    document = build_pidf("sip:a@b.test", basic="open", note="bad\x00byte\x1b[0m")
    parsed = parse_pidf(document)
    assert parsed is not None
    assert parsed.note == "bad\ufffdbyte\ufffd[0m"


def test_unknown_activity_is_allowed_alone() -> None:
    parsed = parse_pidf(build_pidf("sip:a@b.test", basic="open", activities=("unknown",)))
    assert parsed is not None
    assert parsed.activities == ("unknown",)


# -- parsing -------------------------------------------------------------------------------------

# The first example of the SIP presence digest §2.4 (validated against the RFC schemas there).
FULL_EXAMPLE = b"""<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf"
          xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
          xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid"
          entity="sip:boiler-temp@things.example.org">
  <tuple id="svc-boiler-temp">
    <status><basic>open</basic></status>
    <dm:deviceID>urn:uuid:6f1c2a8e-3b7d-4c1e-9a55-0d2f4e8b7c11</dm:deviceID>
    <rpid:class>sensor</rpid:class>
    <contact priority="0.8">sip:boiler-temp@things.example.org</contact>
    <note xml:lang="en">71.5 C (high alarm at 85 C)</note>
    <timestamp>2026-11-21T15:40:00Z</timestamp>
  </tuple>
  <dm:person id="p-boiler-temp">
    <rpid:activities><rpid:other>normal</rpid:other></rpid:activities>
    <dm:note xml:lang="en">Boiler room temperature</dm:note>
  </dm:person>
  <dm:device id="d-boiler-temp">
    <rpid:user-input idle-threshold="300" last-input="2026-11-21T15:40:00Z">active</rpid:user-input>
    <dm:deviceID>urn:uuid:6f1c2a8e-3b7d-4c1e-9a55-0d2f4e8b7c11</dm:deviceID>
    <dm:note xml:lang="en">Modbus RTU unit 7 on gateway gw1</dm:note>
    <dm:timestamp>2026-11-21T15:40:00Z</dm:timestamp>
  </dm:device>
</presence>
"""

# What Asterisk emits: pre-RFC RPID namespaces, a person outside the data model, odd order.
ASTERISK_LEGACY = b"""<?xml version="1.0" encoding="ISO-8859-1"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf"
 xmlns:pp="urn:ietf:params:xml:ns:pidf:person"
 xmlns:es="urn:ietf:params:xml:ns:pidf:rpid:status:rpid-status"
 xmlns:ep="urn:ietf:params:xml:ns:pidf:rpid:rpid-person"
 entity="sip:1000@pbx.example.test">
<pp:person><status><ep:activities><ep:busy/></ep:activities></status></pp:person>
<note>On the phone</note>
<tuple id="1000"><contact priority="1">sip:1000@pbx.example.test</contact>
<status><basic>open</basic></status></tuple>
</presence>
"""

CPIM_ERA = b"""<?xml version="1.0"?>
<presence xmlns="urn:ietf:params:xml:ns:cpim-pidf" entity="pres:bob@example.test">
<tuple id="a"><status><basic>closed</basic></status></tuple>
</presence>
"""

PUBLISHED_BY_SIPP = b"""<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" \
xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:sensor1@example.test">
  <tuple id="t1"><status><basic>open</basic></status><note>temp=21.5C</note></tuple>
  <dm:person id="p1"><rpid:activities><rpid:unknown/></rpid:activities></dm:person>
</presence>
"""


def test_parse_full_example() -> None:
    parsed = parse_pidf(FULL_EXAMPLE)
    assert parsed == PresenceDocument(
        entity="sip:boiler-temp@things.example.org",
        tuples=(
            PresenceTuple(
                id="svc-boiler-temp",
                basic="open",
                contact="sip:boiler-temp@things.example.org",
                contact_priority=0.8,
                notes=(Note("71.5 C (high alarm at 85 C)", "en"),),
                timestamp="2026-11-21T15:40:00Z",
            ),
        ),
        person_notes=(Note("Boiler room temperature", "en"),),
        activities=("other",),
        other_activity="normal",
    )
    assert parsed.basic == "open"
    assert parsed.note == "71.5 C (high alarm at 85 C)"


def test_parse_legacy_asterisk_document() -> None:
    parsed = parse_pidf(ASTERISK_LEGACY)
    assert parsed is not None
    assert parsed.entity == "sip:1000@pbx.example.test"
    assert parsed.basic == "open"
    assert parsed.activities == ("busy",)
    assert parsed.notes == (Note("On the phone"),)
    assert parsed.note == "On the phone"
    assert parsed.tuples[0].contact_priority == 1.0


def test_parse_cpim_era_and_sipp_documents() -> None:
    cpim = parse_pidf(CPIM_ERA)
    assert cpim is not None
    assert (cpim.entity, cpim.basic) == ("pres:bob@example.test", "closed")
    sipp = parse_pidf(PUBLISHED_BY_SIPP)
    assert sipp is not None
    assert (sipp.basic, sipp.note, sipp.activities) == ("open", "temp=21.5C", ("unknown",))


def test_empty_body_means_no_state() -> None:
    assert parse_pidf(b"") is None
    assert parse_pidf(b" \r\n") is None


def test_tolerates_unknown_content() -> None:
    document = b"""<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:x="urn:example:x"
      entity="sip:a@b.test">
    <x:whatever><x:deep/></x:whatever>
    <tuple id="t"><status><basic>Maybe</basic><x:ext/></status>
      <contact priority="high">sip:a@b.test</contact></tuple>
    <tuple id="u"/>
    </presence>"""
    parsed = parse_pidf(document)
    assert parsed is not None
    assert [t.basic for t in parsed.tuples] == [None, None]
    assert parsed.basic is None
    assert parsed.note is None
    assert parsed.tuples[0].contact_priority is None


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b.test"><note>&lol3;</note></presence>
"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE presence [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b.test"><note>&xxe;</note></presence>
"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE presence SYSTEM "http://example.test/pidf.dtd">
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b.test"/>
"""


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (BILLION_LAUGHS, 400),
        (EXTERNAL_ENTITY, 400),
        (EXTERNAL_DTD, 400),
        (b"<presence", 400),
        (b"not xml at all", 400),
        (b'<presence entity="sip:a@b.test"/>', 400),  # no namespace
        (b'<other xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b.test"/>', 400),
        (b'<presence xmlns="urn:ietf:params:xml:ns:pidf"/>', 400),  # no entity
        (b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="x"><u:x/></presence>', 400),
        (
            b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="x">'
            + b"<a>" * 40
            + b"</a>" * 40
            + b"</presence>",
            400,
        ),
        (
            b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="x">'
            + b"<a/>" * 3000
            + b"</presence>",
            400,
        ),
        (b" " * (MAX_PIDF_BYTES + 1), 413),
    ],
    ids=[
        "billion-laughs",
        "external-entity",
        "external-dtd",
        "truncated",
        "text",
        "no-namespace",
        "wrong-root",
        "no-entity",
        "unbound-prefix",
        "too-deep",
        "too-many-elements",
        "too-large",
    ],
)
def test_rejects_unsafe_or_invalid_documents(body: bytes, status: int) -> None:
    with pytest.raises(SipBodyError) as caught:
        parse_pidf(body)
    assert caught.value.status == status
    assert isinstance(caught.value, SipParseError)


NOTES = st.text(alphabet=st.characters(codec="utf-8"), max_size=60)


@settings(max_examples=200, deadline=None)
@given(
    user=st.from_regex(r"[a-z0-9._-]{1,20}", fullmatch=True),
    basic=st.sampled_from(["open", "closed"]),
    note=st.none() | NOTES,
    activities=st.lists(
        st.sampled_from(["busy", "away", "meeting", "working"]), unique=True, max_size=3
    ),
    seconds=st.none() | st.integers(min_value=0, max_value=4_000_000_000),
)
def test_build_parse_round_trip(
    user: str, basic: str, note: str | None, activities: list[str], seconds: int | None
) -> None:
    entity = f"sip:{user}@things.example.org"
    timestamp = None if seconds is None else datetime.fromtimestamp(seconds, UTC)
    document = build_pidf(
        entity,
        basic=basic,  # type: ignore[arg-type]
        note=note,
        activities=activities,
        timestamp=timestamp,
    )
    parsed = parse_pidf(document)
    assert parsed is not None
    assert parsed.entity == entity
    assert parsed.basic == basic
    (presence_tuple,) = parsed.tuples
    assert presence_tuple.contact == entity
    assert presence_tuple.id == f"svc-{user}"
    assert parsed.activities == tuple(activities)
    if note is not None:
        # XML normalises line ends; characters XML cannot carry became U+FFFD; notes are stripped.
        expected = note.replace("\r\n", "\n").replace("\r", "\n")
        expected = "".join(
            c if c in "\t\n" or (c >= " " and c not in "\ufffe\uffff") else "\ufffd"
            for c in expected
        ).strip()
        assert presence_tuple.notes == (Note(expected, "en"),)
        assert parsed.person_notes == (Note(expected, "en"),)
    if timestamp is not None:
        assert presence_tuple.timestamp == timestamp.strftime("%Y-%m-%dT%H:%M:%SZ")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bodies_only_raise_body_errors(body: bytes) -> None:
    with contextlib.suppress(SipBodyError):
        parse_pidf(body)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=len(FULL_EXAMPLE) - 1), st.binary(min_size=1, max_size=6))
def test_mutated_documents_only_raise_body_errors(at: int, junk: bytes) -> None:
    for body in (
        FULL_EXAMPLE[:at] + junk + FULL_EXAMPLE[at:],
        FULL_EXAMPLE[:at] + FULL_EXAMPLE[at + 1 :],
    ):
        with contextlib.suppress(SipBodyError):
            parse_pidf(body)
