"""The thing's XEP-0347 claim state file and registration tags (``ncap.xmpp.registration``)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from ncap.errors import NcapError
from ncap.xmpp.registration import (
    CLAIM_FILE,
    CLAIM_KEY_BYTES,
    ClaimState,
    ClaimStateError,
    ClaimStore,
    new_claim_key,
    node_registrations,
    registration_tags,
    write_private,
)
from xep.errors import StanzaError
from xep.xep_0323.model import NodeRef
from xep.xep_0347.model import KEY, MetaTag, Register

GOOD_KEY = "0123456789abcdef" * 2


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_first_load_makes_a_128_bit_key_in_a_private_file(tmp_path: Path) -> None:
    directory = tmp_path / "state" / "ncap"
    store = ClaimStore(directory)
    state = store.load()
    assert len(state.key) == 2 * CLAIM_KEY_BYTES == 32
    int(state.key, 16)  # hex
    assert state == ClaimState(state.key)
    assert not state.claimed
    assert mode(directory) == 0o700
    assert store.path == directory / CLAIM_FILE
    assert mode(store.path) == 0o600
    assert json.loads(store.path.read_text())["key"] == state.key
    assert [p.name for p in directory.iterdir()] == [CLAIM_FILE]  # no temp file left
    assert store.load() == state  # the key is made once


def test_keys_are_random() -> None:
    keys = {new_claim_key() for _ in range(64)}
    assert len(keys) == 64
    assert all(len(key) == 32 for key in keys)


def test_private_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        store = ClaimStore(tmp_path / "state")
        store.load()
    finally:
        os.umask(old)
    assert mode(tmp_path / "state") == 0o700
    assert mode(store.path) == 0o600


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    store = ClaimStore(tmp_path)
    state = store.load()
    state.owner = "alice@example.org"
    state.public = True
    state.registry = "registry.example.org"
    state.provisioning = "provisioning.example.org"
    store.save(state)
    loaded = ClaimStore(tmp_path).load()
    assert loaded == state
    assert loaded.claimed
    loaded.removed = True
    store.save(loaded)
    assert store.load().removed
    assert mode(store.path) == 0o600


def test_save_replaces_a_world_readable_file(tmp_path: Path) -> None:
    store = ClaimStore(tmp_path)
    store.path.write_text(json.dumps({"key": GOOD_KEY}))
    store.path.chmod(0o644)
    store.save(store.load())
    assert mode(store.path) == 0o600


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"\xff\xfe",
        b"",
        b"[]",
        b'"key"',
        b"null",
        b'{"key": "short"}',
        b'{"key": 12345678901234567890123456789012}',
        b"{}",
        b'{"key": "' + GOOD_KEY.encode() + b'", "colour": "blue"}',
    ],
    ids=repr,
)
def test_a_corrupt_file_is_a_claim_state_error(tmp_path: Path, content: bytes) -> None:
    store = ClaimStore(tmp_path)
    store.path.write_bytes(content)
    with pytest.raises(ClaimStateError) as raised:
        store.load()
    assert isinstance(raised.value, NcapError)
    assert store.path.read_bytes() == content  # never overwritten: the key may be in there


def test_an_unreadable_file_is_a_claim_state_error(tmp_path: Path) -> None:
    (tmp_path / CLAIM_FILE).mkdir()  # a directory where the file should be
    with pytest.raises(ClaimStateError):
        ClaimStore(tmp_path).load()


def test_an_unwritable_directory_is_a_claim_state_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ClaimStateError):
        ClaimStore(blocker / "state").load()


def test_write_private_leaves_no_temp_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "a-directory"
    target.mkdir()
    with pytest.raises(OSError, match="directory"):
        write_private(target, b"x")  # cannot replace a directory with a file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-directory"]


# -- registration tags -----------------------------------------------------------------------------


def test_registration_tags_add_the_key() -> None:
    tags = registration_tags({"MAN": "ncap.example", "MODEL": "NCAP", "V": 1.0}, GOOD_KEY)
    assert tags == (
        MetaTag("MAN", "ncap.example"),
        MetaTag("MODEL", "NCAP"),
        MetaTag.number("V", 1.0),
        MetaTag(KEY, GOOD_KEY),
    )
    assert tags[2].numeric
    assert not tags[3].numeric


def test_registration_tags_without_a_key() -> None:
    assert registration_tags({"SN": "1"}, None) == (MetaTag("SN", "1"),)
    assert registration_tags({}, None) == ()


def test_registration_tags_refuse_bad_names() -> None:
    with pytest.raises(StanzaError):
        registration_tags({"bad name": "x"}, None)


def test_node_registrations_are_keyless_per_node() -> None:
    env = NodeRef("env", "MeteringTopology")
    temp = NodeRef("env/temp", "MeteringTopology")
    registrations = node_registrations([(env, "TIM"), (temp, "Channel")])
    assert registrations == [
        Register((MetaTag("NAME", "env"), MetaTag("CLASS", "TIM")), env),
        Register((MetaTag("NAME", "env/temp"), MetaTag("CLASS", "Channel")), temp),
    ]
    assert all(KEY not in {tag.key for tag in reg.tags} for reg in registrations)
    assert all(not reg.self_owned for reg in registrations)
    assert node_registrations([]) == []
