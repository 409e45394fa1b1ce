"""iotdisco: claim/search/direct URIs (xmpp-iot-xeps.md §6.4): exact vectors and properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xep.errors import StanzaError
from xep.xep_0347.model import KEY, MetaTag, SearchOperator, SearchTerm
from xep.xep_0347.uri import (
    MAX_URI_LENGTH,
    RESERVED_NAMES,
    DiscoUri,
    claim_uri,
    format_disco_uri,
    parse_claim_uri,
    parse_disco_uri,
)

SPEC_CLAIM = (
    "iotdisco:SN=98734238472634;MAN=www.example.org;MODEL=Device;#V=1.0;"
    "KEY=3453485763440213840928;R=discovery.example.org"
)
SPEC_SEARCH = "iotdisco:MAN=www.example.org;MODEL=Device;SN~*9873*;#V>=1.0;#V<2;#LON>=-72;#LON<=-70"
SPEC_LEGACY = "IoTDisco;SN:394872348732948723;MAN:www.ktc.se;MODEL:IMC;#V:1.2;KEY:4857402340298342"


def s(name: str, value: str) -> MetaTag:
    return MetaTag(name, value)


def n(name: str, value: float) -> MetaTag:
    return MetaTag(name, float(value))


def eq(name: str, value: str | float) -> SearchTerm:
    return SearchTerm(SearchOperator.EQ, name, not isinstance(value, str), value=value)


def mask(name: str, pattern: str, wildcard: str) -> SearchTerm:
    return SearchTerm(SearchOperator.MASK, name, False, value=pattern, wildcard=wildcard)


def rng(
    name: str,
    low: str | float,
    high: str | float,
    low_included: bool = True,
    high_included: bool = True,
    *,
    negated: bool = False,
) -> SearchTerm:
    return SearchTerm(
        SearchOperator.NRANGE if negated else SearchOperator.RANGE,
        name,
        not isinstance(low, str),
        low=low,
        high=high,
        low_included=low_included,
        high_included=high_included,
    )


# -- exact vectors --------------------------------------------------------------------------------


def test_spec_claim_example() -> None:
    uri = parse_disco_uri(SPEC_CLAIM)
    assert uri.is_claim
    assert not uri.is_search
    assert not uri.is_direct
    assert uri.tags == (
        s("SN", "98734238472634"),
        s("MAN", "www.example.org"),
        s("MODEL", "Device"),
        n("V", 1.0),
        s("KEY", "3453485763440213840928"),
    )
    assert uri.registry == "discovery.example.org"
    assert uri.key == "3453485763440213840928"
    assert uri.tags[3].numeric


def test_spec_claim_example_is_reproduced_byte_for_byte() -> None:
    uri = parse_disco_uri(SPEC_CLAIM)
    assert claim_uri(uri.tags, uri.registry) == SPEC_CLAIM


def test_spec_search_example() -> None:
    uri = parse_disco_uri(SPEC_SEARCH)
    assert uri.is_search
    assert uri.registry is None
    assert uri.terms == (
        eq("MAN", "www.example.org"),
        eq("MODEL", "Device"),
        mask("SN", "9873*", "*"),
        rng("V", 1.0, 2.0, True, False),
        rng("LON", -72.0, -70.0),
    )
    assert format_disco_uri(uri) == (
        "iotdisco:MAN=www.example.org;MODEL=Device;SN~*9873*;#V>=1.0;#V<2.0;#LON>=-72.0;#LON<=-70.0"
    )


def test_legacy_example() -> None:
    uri = parse_disco_uri(SPEC_LEGACY)
    assert uri.is_claim
    assert uri.registry is None
    assert uri.tags == (
        s("SN", "394872348732948723"),
        s("MAN", "www.ktc.se"),
        s("MODEL", "IMC"),
        n("V", 1.2),
        s("KEY", "4857402340298342"),
    )
    assert format_disco_uri(uri) == (
        "iotdisco:SN=394872348732948723;MAN=www.ktc.se;MODEL=IMC;#V=1.2;KEY=4857402340298342"
    )


@pytest.mark.parametrize(
    ("text", "terms"),
    [
        ("iotdisco:#A=1", (eq("A", 1.0),)),
        ("iotdisco:B>1", (SearchTerm(SearchOperator.GT, "B", False, value="1"),)),
        ("iotdisco:#C<1", (SearchTerm(SearchOperator.LT, "C", True, value=1.0),)),
        ("iotdisco:D>=x", (SearchTerm(SearchOperator.GTEQ, "D", False, value="x"),)),
        ("iotdisco:E<=x", (SearchTerm(SearchOperator.LTEQ, "E", False, value="x"),)),
        ("iotdisco:#F<>1e3", (SearchTerm(SearchOperator.NEQ, "F", True, value=1000.0),)),
        ("iotdisco:#G>1;#G<2", (rng("G", 1.0, 2.0, False, False),)),
        ("iotdisco:#G<2;#G>1", (rng("G", 1.0, 2.0, False, False),)),
        ("iotdisco:H>=1;H<2", (rng("H", "1", "2", True, False),)),
        ("iotdisco:#I>1;#I<=2", (rng("I", 1.0, 2.0, False, True),)),
        ("iotdisco:#X>=2;#X<=2", (rng("X", 2.0, 2.0),)),
        # Waher's reading of crossed bounds: the complement of the range between them.
        ("iotdisco:#K>3;#K<2", (rng("K", 2.0, 3.0, True, True, negated=True),)),
        ("iotdisco:#L>=3;#L<2", (rng("L", 2.0, 3.0, True, False, negated=True),)),
        ("iotdisco:M<=2;M>3", (rng("M", "2", "3", False, True, negated=True),)),
        ("iotdisco:#N>=3;#N<=2", (rng("N", 2.0, 3.0, False, False, negated=True),)),
        (
            "iotdisco:O~+1+2",
            (mask("O", "1+2", "+"),),
        ),
        ("iotdisco:O~*", (mask("O", "", "*"),)),
        ("iotdisco:P=", (eq("P", ""),)),
        ("iotdisco:ROOM=K%C3%B6k%3B1", (eq("ROOM", "Kök;1"),)),
        ("iotdisco:ROOM=K\\;\\\\x", (eq("ROOM", "K;\\x"),)),
        ("iotdisco:ROOM=Kök", (eq("ROOM", "Kök"),)),
        ("iotdisco:ROOM=100\\%", (eq("ROOM", "100%"),)),
        ("iotdisco:N%41ME=a+b", (eq("NAME", "a+b"),)),
        ("iotdisco:#V=-.5E-2", (eq("V", -0.005),)),
        ("IOTDISCO:a=1;;b=2;", (eq("a", "1"), eq("b", "2"))),
        ("  iotdisco:a=1\r\n", (eq("a", "1"),)),
        ("iotdisco:a=1;R=reg.example", (eq("a", "1"),)),
    ],
)
def test_search_vectors(text: str, terms: tuple[SearchTerm, ...]) -> None:
    uri = parse_disco_uri(text)
    assert uri.is_search
    assert uri.tags == ()
    assert uri.terms == terms
    assert parse_disco_uri(format_disco_uri(uri)) == uri


def test_backslash_escapes_like_waher() -> None:
    # Waher's test: "R=\discovery\.example\;.org" is "discovery.example;.org".
    uri = parse_claim_uri("iotdisco:KEY=k;R=\\discovery\\.example\\;.org")
    assert uri.registry == "discovery.example;.org"
    assert format_disco_uri(uri) == "iotdisco:KEY=k;R=discovery.example%3B.org"


def test_escapes_do_not_compound() -> None:
    # One pass: an escaped '%' stays a percent sign, a decoded '%5C' stays a backslash.
    assert parse_disco_uri("iotdisco:KEY=\\%41%5C%3B").key == "%41\\;"


def test_tag_names_are_case_insensitive_but_kept() -> None:
    uri = parse_disco_uri("iotdisco:Key=1;sn=2;r=reg")
    assert uri.is_claim
    assert uri.tags == (s("Key", "1"), s("sn", "2"))
    assert uri.key == "1"
    assert uri.registry == "reg"


def test_legacy_escapes_and_no_percent_decoding() -> None:
    # ':' in a name is forbidden by the tag rules even when escaped.
    with pytest.raises(StanzaError, match="forbidden"):
        parse_disco_uri("IoTDisco;KEY:a;NA\\:ME:x")
    uri = parse_disco_uri("iotdisco;KEY:a\\;b\\\\c%41;NOTE:x:y")
    assert uri.tags == (s("KEY", "a;b\\c%41"), s("NOTE", "x:y"))


def test_direct_uri() -> None:
    uri = parse_disco_uri(
        "iotdisco:JID=rack%40example.org;NID=imc1;SID=MeteringTopology;PT=p;CLASS=meter"
    )
    assert uri.is_direct
    assert not uri.is_claim
    assert not uri.is_search
    assert uri.jid == "rack@example.org"
    assert (uri.node_id, uri.source_id, uri.partition) == ("imc1", "MeteringTopology", "p")
    assert uri.node is not None
    assert uri.node.node_id == "imc1"
    assert uri.node.cache_type == "p"
    assert uri.tags == (s("CLASS", "meter"),)
    assert format_disco_uri(uri) == (
        "iotdisco:CLASS=meter;JID=rack%40example.org;NID=imc1;SID=MeteringTopology;PT=p"
    )
    assert parse_disco_uri("iotdisco:JID=a@b").node is None


def test_claim_uri_encodes_everything_but_unreserved() -> None:
    text = claim_uri(
        [s("ROOM", "Kök 1;2\\3~"), s("A~B", "x"), n("LAT", -33.5), s("KEY", "k=1&2")],
        "reg@example.org",
    )
    assert text == (
        "iotdisco:ROOM=K%C3%B6k%201%3B2%5C3%7E;A%7EB=x;#LAT=-33.5;KEY=k%3D1%262;R=reg%40example.org"
    )
    uri = parse_claim_uri(text)
    assert uri.tags[1] == s("A~B", "x")
    assert uri.registry == "reg@example.org"


@pytest.mark.parametrize(
    ("value", "text"),
    [(1.0, "1.0"), (-72, "-72.0"), (0.1, "0.1"), (1e16, "1e+16"), (1.5e-7, "1.5e-07")],
)
def test_numbers_are_shortest_repr(value: float, text: str) -> None:
    assert claim_uri([n("V", value), s("KEY", "k")], None) == f"iotdisco:#V={text};KEY=k"


def test_claim_uri_without_registry_and_key_order_free() -> None:
    assert claim_uri([s("KEY", "k"), s("SN", "1")], None) == "iotdisco:KEY=k;SN=1"


@pytest.mark.parametrize(
    ("tags", "registry", "problem"),
    [
        ([s("SN", "1")], "reg", "KEY"),
        ([s("SN", "1"), s("KEY", "")], "reg", "non-empty KEY"),
        ([n("KEY", 1.0)], "reg", "KEY must be a string"),
        ([s("KEY", "k"), s("key", "j")], "reg", "twice"),
        ([s("KEY", "k"), s("R", "x")], None, "reserved"),
        ([s("KEY", "k"), s("jid", "x")], None, "reserved"),
        ([s("KEY", "k")], "", "empty"),
        ([s("KEY", "k")], "a\x00b", "XML"),
    ],
)
def test_claim_uri_refuses(tags: list[MetaTag], registry: str | None, problem: str) -> None:
    with pytest.raises(StanzaError, match=problem):
        claim_uri(tags, registry)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("http://example.org/", "scheme"),
        ("iotdiscox:KEY=1", "scheme"),
        ("iotdisco:", "empty"),
        ("IoTDisco", "empty"),
        ("iotdisco:R=reg", "empty"),
        ("iotdisco:" + "A=1;" * 1100, "longer"),
        ("iotdisco:SN", "no operator"),
        ("iotdisco:=1", "1 to 32"),
        ("iotdisco:#=1", "1 to 32"),
        ("iotdisco:" + "N" * 33 + "=1", "1 to 32"),
        ("iotdisco:A B=1", "forbidden"),
        ("iotdisco:A%23B=1", "forbidden"),
        ("iotdisco:KEY=1;SN=1;sn=2", "twice"),
        ("iotdisco:SN=1;SN=2", "twice"),
        ("iotdisco:#V>1;#V>2", "twice"),
        ("iotdisco:#V>1;#V<2;#V<3", "twice"),
        ("iotdisco:#V>1;V<2", "mixes"),
        ("iotdisco:SN~*1;SN~*2", "twice"),
        ("iotdisco:KEY=1;R=a;R=b", "R given twice"),
        ("iotdisco:KEY=1;#R=1", "R takes a string"),
        ("iotdisco:KEY=1;R>a", "R takes a string"),
        ("iotdisco:#V=abc", "not a number"),
        ("iotdisco:#V=nan", "not a number"),
        ("iotdisco:#V=inf", "not a number"),
        ("iotdisco:#V=1_000", "not a number"),
        ("iotdisco:#V=1e999", "out of range"),
        ("iotdisco:#V=", "not a number"),
        ("iotdisco:#V=\u0661", "not a number"),
        ("iotdisco:KEY=1;#V>1", "claim URI takes only"),
        ("iotdisco:KEY=1;SN~*1", "claim URI takes only"),
        ("iotdisco:#KEY=1", "KEY must be a string"),
        ("iotdisco:KEY>1", "claim URI takes only"),
        ("iotdisco:JID=a@b;KEY=1", "direct URI"),
        ("iotdisco:JID=a@b;V>1", "direct URI takes only"),
        ("iotdisco:NID=n;SN=1", "need a JID"),
        ("iotdisco:JID=", "JID is empty"),
        ("iotdisco:SN~", "no wildcard"),
        ("iotdisco:#SN~*1", "mask applies to string"),
        ("iotdisco:SN=%4", "percent"),
        ("iotdisco:SN=%G1", "percent"),
        ("iotdisco:SN=%FF", "UTF-8"),
        ("iotdisco:SN=\ud800", "UTF-8"),
        ("iotdisco:SN=a\\", "backslash"),
        ("iotdisco:SN=%00", "XML"),
        ("iotdisco:SN=" + "x" * 129, "longer than 128"),
        ("iotdisco:" + ";".join(f"T{i}=1" for i in range(65)) + ";KEY=k", "more than 64"),
        ("IoTDisco;SN", "no ':'"),
        ("IoTDisco;SN:1;SN:2", "twice"),
    ],
)
def test_rejects(text: str, problem: str) -> None:
    with pytest.raises(StanzaError, match=problem):
        parse_disco_uri(text)


def test_parse_claim_uri_wants_a_claim() -> None:
    with pytest.raises(StanzaError, match="no KEY"):
        parse_claim_uri("iotdisco:SN=1;R=reg")
    with pytest.raises(StanzaError, match="direct"):
        parse_claim_uri("iotdisco:JID=a@b")
    assert parse_claim_uri(SPEC_CLAIM).registry == "discovery.example.org"


def test_length_cap_applies_after_stripping() -> None:
    body = "iotdisco:KEY=" + "k" * 100
    padded = " " * MAX_URI_LENGTH + body + "\n" * MAX_URI_LENGTH
    assert parse_disco_uri(padded).key == "k" * 100


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        (DiscoUri(terms=(rng("V", 3.0, 2.0),)), "min above max"),
        (DiscoUri(terms=(rng("V", 2.0, 2.0, negated=True),)), "below max"),
        (DiscoUri(terms=(rng("V", "b", "a", negated=True),)), "below max"),
    ],
)
def test_format_refuses_what_a_uri_cannot_say(uri: DiscoUri, problem: str) -> None:
    with pytest.raises(StanzaError, match=problem):
        format_disco_uri(uri)


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({}, "empty"),
        ({"tags": (s("SN", "1"),)}, "empty"),
        ({"tags": (s("KEY", "k"),), "terms": (eq("SN", "1"),)}, "mixed"),
        ({"jid": "a@b", "terms": (eq("SN", "1"),)}, "mixed"),
        ({"terms": (eq("SN", "1"), eq("sn", "2"))}, "twice"),
        ({"terms": (eq("KEY", "1"),)}, "never searchable"),
        ({"terms": (eq("R", "1"),)}, "reserved"),
        ({"terms": (eq("SN", "\x01"),)}, "XML"),
        ({"tags": (s("KEY", "k"),), "node_id": "n"}, "need a JID"),
        ({"jid": "x" * 1025}, "longer"),
    ],
)
def test_disco_uri_invariants(kwargs: dict[str, object], problem: str) -> None:
    with pytest.raises(StanzaError, match=problem):
        DiscoUri(**kwargs)  # type: ignore[arg-type]


# -- properties -----------------------------------------------------------------------------------

_NAME_CHARS = st.characters(
    exclude_categories=["Cs", "Cc", "Zs", "Zl", "Zp"], exclude_characters=":#=<>;"
)
_TEXT_CHARS = st.characters(exclude_categories=["Cs"])


def _valid_name(name: str) -> bool:
    if name.upper() in RESERVED_NAMES | {KEY}:
        return False
    try:
        MetaTag(name, "")
    except StanzaError:
        return False
    return True


names = st.text(_NAME_CHARS, min_size=1, max_size=32).filter(_valid_name)


def _xml_ok(text: str) -> bool:
    try:
        MetaTag("X", text)
    except StanzaError:
        return False
    return True


string_values = st.text(_TEXT_CHARS, max_size=128).filter(_xml_ok)
numbers = st.floats(allow_nan=False, allow_infinity=False)
references = st.text(_TEXT_CHARS, min_size=1, max_size=60).filter(_xml_ok)


@st.composite
def tag_sets(draw: st.DrawFn) -> list[MetaTag]:
    others = draw(
        st.lists(
            st.builds(MetaTag, names, st.one_of(string_values, numbers)),
            max_size=8,
            unique_by=lambda tag: tag.key,
        )
    )
    key = MetaTag(draw(st.sampled_from(["KEY", "key", "Key"])), draw(string_values.filter(bool)))
    others.insert(draw(st.integers(0, len(others))), key)
    return others


@given(tags=tag_sets(), registry=st.none() | references)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_claim_round_trip(tags: list[MetaTag], registry: str | None) -> None:
    text = claim_uri(tags, registry)
    assert text.isascii()
    uri = parse_disco_uri(text)
    assert uri.is_claim
    assert uri.tags == tuple(tags)
    assert [tag.numeric for tag in uri.tags] == [tag.numeric for tag in tags]
    for got, want in zip(uri.tags, tags, strict=True):
        assert got.name == want.name
        if want.numeric:
            # Exact: same double, same sign of zero.
            assert math.copysign(1.0, float(got.value)) == math.copysign(1.0, float(want.value))
    assert uri.registry == registry
    assert claim_uri(uri.tags, uri.registry) == text


@st.composite
def search_terms(draw: st.DrawFn) -> SearchTerm:
    name = draw(names)
    numeric = draw(st.booleans())
    operand: st.SearchStrategy[str | float] = numbers if numeric else string_values
    kind = draw(st.sampled_from(["simple", "mask", "range", "nrange"]))
    if kind == "mask" and not numeric:
        wildcard = draw(st.sampled_from(["*", "+", "?", "%", ";", "\\", "é", " "]))
        return SearchTerm(
            SearchOperator.MASK, name, False, value=draw(string_values), wildcard=wildcard
        )
    if kind in ("range", "nrange"):
        low: str | float
        high: str | float
        if numeric:
            low, high = sorted([draw(numbers), draw(numbers)])
            ordered = low < high
        else:
            low, high = sorted([draw(string_values), draw(string_values)])
            ordered = low < high
        if kind == "nrange" and not ordered:
            return SearchTerm(SearchOperator.NEQ, name, numeric, value=low)
        return SearchTerm(
            SearchOperator.RANGE if kind == "range" else SearchOperator.NRANGE,
            name,
            numeric,
            low=low,
            high=high,
            low_included=draw(st.booleans()),
            high_included=draw(st.booleans()),
        )
    operator = draw(
        st.sampled_from(
            [
                SearchOperator.EQ,
                SearchOperator.NEQ,
                SearchOperator.GT,
                SearchOperator.GTEQ,
                SearchOperator.LT,
                SearchOperator.LTEQ,
            ]
        )
    )
    return SearchTerm(operator, name, numeric, value=draw(operand))


@given(
    terms=st.lists(search_terms(), min_size=1, max_size=6, unique_by=lambda term: term.key),
    registry=st.none() | references,
)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_search_round_trip(terms: list[SearchTerm], registry: str | None) -> None:
    uri = DiscoUri(terms=tuple(terms), registry=registry)
    text = format_disco_uri(uri)
    assert parse_disco_uri(text) == uri


@given(
    jid=references,
    node=st.none() | st.tuples(references, st.none() | references, st.none() | references),
    tags=st.lists(
        st.builds(MetaTag, names, st.one_of(string_values, numbers)),
        max_size=4,
        unique_by=lambda tag: tag.key,
    ),
)
def test_direct_round_trip(
    jid: str, node: tuple[str, str | None, str | None] | None, tags: list[MetaTag]
) -> None:
    node_id, source_id, partition = node or (None, None, None)
    uri = DiscoUri(
        tags=tuple(tags), jid=jid, node_id=node_id, source_id=source_id, partition=partition
    )
    assert parse_disco_uri(format_disco_uri(uri)) == uri


def _check_parse(text: str) -> None:
    try:
        uri = parse_disco_uri(text)
    except StanzaError:
        return
    assert [uri.is_claim, uri.is_search, uri.is_direct].count(True) == 1
    # Anything accepted can be written and reads back the same.
    assert parse_disco_uri(format_disco_uri(uri)) == uri


@given(st.text(max_size=200))
@settings(max_examples=500)
def test_random_text_only_raises_stanza_error(text: str) -> None:
    _check_parse(text)


_GRAMMAR = st.sampled_from(
    [
        "KEY", "key", "R", "JID", "NID", "SID", "PT", "SN", "V", "#", "=", "<", ">", "~", ";",
        "\\", "%", "%4", "%C3", "%B6", "%3B", "%5C", "%00", "*", "1", "-", ".", "e", "+", "0",
        "2e9", "x", ":", " ", "é", "\x00", "\ud800",
    ]
)  # fmt: skip


@given(
    st.sampled_from(["iotdisco:", "IoTDisco;", "IOTDISCO:"]),
    st.lists(_GRAMMAR, max_size=40).map("".join),
)
@settings(max_examples=1500)
def test_grammar_fuzz_only_raises_stanza_error(prefix: str, body: str) -> None:
    _check_parse(prefix + body)
