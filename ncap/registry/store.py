"""SQLite state of the ``ncap-registry`` component: XEP-0347 things and XEP-0324 decisions.

Pure storage and registry rules, no XMPP: the component parses stanzas, calls one method per
request and turns the answer into a reply. Every call is one short transaction, so calling it
straight from the asyncio loop is fine; a lock also allows calls from worker threads.

Durability: the database runs in WAL mode with ``synchronous=NORMAL``. A committed call
survives a crash of the process; after a power cut or OS crash the last few commits may be
lost (rolled back as a whole), but the file is never corrupted.

Permissions: the database holds claim keys, so it is created with mode 0600 and tightened to
0600 when it already exists. SQLite gives its ``-wal`` and ``-shm`` files the permission bits of
the database file; they are also chmodded after opening. The process umask is left alone (it is
process-wide, and other threads may be creating files).

Things (XEP-0347). One record per (thing bare JID, node); the node is a
:class:`~xep.xep_0323.model.NodeRef` or None for the thing (concentrator) itself. Absent
``sourceId``/``cacheType`` are stored as ``""``, so ``NodeRef("n", "")`` and ``NodeRef("n")``
are the same record. The ``KEY`` tag is kept apart from the searchable tags.

*Concentrator children.* A node registered without a ``KEY`` (and not self-owned) follows its
concentrator, the record of the same JID with no node: when the concentrator is claimed,
removed, re-claimed or disowned, the child takes over its owner, ``public`` and ``removed``
state, and a child registered while its concentrator is claimed is claimed at once. Our gateway
registers itself with a ``KEY`` and its TIM and channel nodes without one, so one ``mine`` covers
the whole tree. A node registered with a ``KEY`` is claimed on its own (possibly by another
owner) and stays independent even after the claim deletes its key. Children are never
claimable on their own; deleting the concentrator (``unregister``) deletes its children but
not the independent nodes.

Provisioning (XEP-0324): the owners' standing decisions (:class:`Rule`), the questions put to
owners (:class:`Question`), which things asked ``isFriend`` about whom (only those are sent
``unfriend``), and failed claims for rate limiting. Rules are kept per thing JID: the owner of
the concentrator decides; independently claimed nodes of the same JID share them.

Search evaluates :meth:`SearchTerm.accepts` in Python over the claimed, public, not removed
records in key order: a full scan, fine at our scale (hundreds of records).
"""

# SQL is assembled only from the constant fragments below; values are always bound parameters.
# ruff: noqa: S608

from __future__ import annotations

import enum
import json
import re
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast, get_args

from ncap.errors import NcapError
from ncap.files import PrivateDatabase
from xep.errors import StanzaError
from xep.xep_0323.model import NodeRef
from xep.xep_0347.model import KEY, MAX_TAGS, MetaTag, SearchTerm, Thing, canonical_tags, tags_match

__all__ = [
    "MAX_ANSWERED_QUESTIONS",
    "MAX_OPEN_QUESTIONS",
    "MAX_SEARCH_COUNT",
    "SCHEMA_VERSION",
    "ClaimResult",
    "Kind",
    "Question",
    "RegistryError",
    "RegistryStore",
    "Rule",
    "ThingRecord",
    "UpdateOutcome",
]

SCHEMA_VERSION = 1
MAX_SEARCH_COUNT = 100
# Beyond this many open questions per owner the oldest open one is dropped: a requester that
# still cares retries and asks again, while one that gave up should not block newer questions.
MAX_OPEN_QUESTIONS = 100
# Answered questions kept per owner (for late look-ups by id); older ones are deleted.
MAX_ANSWERED_QUESTIONS = 100
_MAX_JID = 3071

Kind = Literal["friend", "read", "control"]
_KINDS: tuple[str, ...] = get_args(Kind)
_WHITESPACE = re.compile(r"\s")


class RegistryError(NcapError):
    """The registry store was misused (bad argument, closed store) or its database failed."""


class UpdateOutcome(enum.Enum):
    """The answer to an XEP-0347 ``update``."""

    UPDATED = "updated"
    NOT_FOUND = "not-found"  # missing, removed, or the sender may not update it
    DISOWNED = "disowned"  # registered but unclaimed: the thing should register again


@dataclass(frozen=True, slots=True)
class ThingRecord:
    """A stored thing or node, ``KEY`` included (for the component, never for searchers)."""

    thing_jid: str
    node: NodeRef | None
    owner: str | None
    public: bool
    removed: bool
    self_owned: bool
    follows_concentrator: bool
    tags: tuple[MetaTag, ...]
    key: str | None
    registered_at: float
    updated_at: float

    @property
    def claimed(self) -> bool:
        return self.owner is not None

    def as_thing(self) -> Thing:
        """The record as a search returns it (no ``KEY``)."""
        return Thing(jid=self.thing_jid, tags=self.tags, owner=self.owner, node=self.node)


@dataclass(frozen=True, slots=True)
class ClaimResult:
    """A successful ``mine``: the claimed record and the children that followed it."""

    thing_jid: str
    node: NodeRef | None
    owner: str
    children: tuple[NodeRef, ...] = ()


@dataclass(frozen=True, slots=True)
class Rule:
    """An owner's standing decision on ``requester_jid`` for ``thing_jid``.

    ``nodes`` (node ids) and ``names`` (field names for ``read``, parameter names for
    ``control``) narrow an allowing rule; None means all. ``friend`` rules take neither.
    """

    thing_jid: str
    requester_jid: str
    kind: Kind
    allowed: bool
    nodes: tuple[str, ...] | None = None
    names: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Question:
    """A request the owner has been asked to decide on (``answered`` once decided)."""

    id: int
    thing_jid: str
    owner_jid: str
    requester_jid: str
    kind: Kind
    nodes: tuple[str, ...] | None
    names: tuple[str, ...] | None
    created_at: float
    answered: bool


_SCHEMA = """
CREATE TABLE things (
    thing_jid TEXT NOT NULL,
    node_id TEXT NOT NULL,          -- '' = the thing (concentrator) itself
    source_id TEXT NOT NULL,        -- '' = none
    cache_type TEXT NOT NULL,       -- '' = none
    owner TEXT,
    public INTEGER NOT NULL CHECK (public IN (0, 1)),
    removed INTEGER NOT NULL CHECK (removed IN (0, 1)),
    self_owned INTEGER NOT NULL CHECK (self_owned IN (0, 1)),
    follows_parent INTEGER NOT NULL CHECK (follows_parent IN (0, 1)),
    tags TEXT NOT NULL,             -- JSON [{"name", "value", "numeric"}], never KEY
    key TEXT,
    registered_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (thing_jid, node_id, source_id, cache_type)
);
CREATE INDEX things_by_owner ON things (owner);
CREATE INDEX things_by_key ON things (key);
CREATE TABLE rules (
    thing_jid TEXT NOT NULL,
    requester_jid TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('friend', 'read', 'control')),
    allowed INTEGER NOT NULL CHECK (allowed IN (0, 1)),
    nodes TEXT,                     -- JSON list, NULL = all
    names TEXT,                     -- JSON list, NULL = all
    PRIMARY KEY (thing_jid, requester_jid, kind)
);
CREATE TABLE questions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    thing_jid TEXT NOT NULL,
    owner_jid TEXT NOT NULL,
    requester_jid TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('friend', 'read', 'control')),
    nodes TEXT,
    names TEXT,
    created_at REAL NOT NULL,
    answered INTEGER NOT NULL CHECK (answered IN (0, 1))
);
CREATE INDEX questions_by_owner ON questions (owner_jid, answered, id);
CREATE INDEX questions_by_thing ON questions (thing_jid, requester_jid, kind, answered);
CREATE TABLE asked (
    thing_jid TEXT NOT NULL,
    requester_jid TEXT NOT NULL,
    asked_at REAL NOT NULL,
    PRIMARY KEY (thing_jid, requester_jid)
);
CREATE TABLE failed_claims (
    requester_jid TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX failed_claims_by_requester ON failed_claims (requester_jid, at);
CREATE INDEX failed_claims_by_time ON failed_claims (at);
"""

_THING_COLUMNS = (
    "thing_jid, node_id, source_id, cache_type, owner, public, removed, self_owned,"
    " follows_parent, tags, key, registered_at, updated_at"
)
_THE_RECORD = "thing_jid = ? AND node_id = ? AND source_id = ? AND cache_type = ?"
_CHILDREN = "thing_jid = ? AND node_id <> '' AND follows_parent = 1"
_KEY_ORDER = "thing_jid, node_id, source_id, cache_type"
_QUESTION_COLUMNS = (
    "id, thing_jid, owner_jid, requester_jid, kind, nodes, names, created_at, answered"
)
_RULE_COLUMNS = "thing_jid, requester_jid, kind, allowed, nodes, names"
_DISOWNED = "owner = NULL, public = 0, removed = 0, self_owned = 0, tags = '[]'"

_NodeKey = tuple[str, str, str]
_CONCENTRATOR: _NodeKey = ("", "", "")


class RegistryStore(PrivateDatabase):
    """The registry's state in one SQLite file; see the module docstring for the rules."""

    error = RegistryError
    what = "registry store"

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        super().__init__(
            path,
            schema=_SCHEMA,
            version=SCHEMA_VERSION,
            synchronous="NORMAL",
            check_same_thread=False,
        )

    # -- things (XEP-0347) ------------------------------------------------------------------

    def register(
        self,
        thing_jid: str,
        node: NodeRef | None,
        tags: Iterable[MetaTag],
        *,
        self_owned: bool = False,
    ) -> str | None:
        """Register (or re-register) a thing or node; answer its owner if it has one.

        An unclaimed record gets all its tags replaced. A claimed one is left as it is and its
        owner returned (XEP-0347: the thing then knows it is claimed; it changes tags with
        ``update``, self-owned things too). A child registered while its concentrator is
        claimed is stored and claimed at once, and that owner returned. ``self_owned`` makes
        the record claimed by itself and public (returns None: nobody else owns it); it keeps
        no ``KEY``, since nobody can claim it. An empty or numeric ``KEY`` is refused.
        """
        jid = _bare(thing_jid)
        where = _node_key(node)
        plain, key = _split_key(tags)
        if key == "":
            raise RegistryError("an empty KEY protects nothing")
        if self_owned:
            key = None
        follows = node is not None and key is None and not self_owned
        now = self._clock()
        with self._write() as db:
            owner = self._owner(db, jid, where)
            if owner is not None:
                return owner
            db.execute(
                f"INSERT INTO things ({_THING_COLUMNS}) VALUES (?,?,?,?,?,?,0,?,?,?,?,?,?)"
                f" ON CONFLICT ({_KEY_ORDER}) DO UPDATE SET"
                " owner = excluded.owner, public = excluded.public, removed = 0,"
                " self_owned = excluded.self_owned, follows_parent = excluded.follows_parent,"
                " tags = excluded.tags, key = excluded.key, updated_at = excluded.updated_at",
                (
                    jid,
                    *where,
                    jid if self_owned else None,
                    int(self_owned),
                    int(self_owned),
                    int(follows),
                    _tags_json(plain),
                    key,
                    now,
                    now,
                ),
            )
            if node is None and self_owned:
                self._copy_to_children(db, jid, now)
            if follows:
                parent = db.execute(
                    f"SELECT owner, public, removed FROM things WHERE {_THE_RECORD}",
                    (jid, *_CONCENTRATOR),
                ).fetchone()
                if parent is not None and parent[0] is not None:
                    db.execute(
                        f"UPDATE things SET owner = ?, public = ?, removed = ? WHERE {_THE_RECORD}",
                        (*parent, jid, *where),
                    )
                    return str(parent[0])
        return None

    def claim(
        self, owner_jid: str, tags: Iterable[MetaTag], *, public: bool = True
    ) -> ClaimResult | None:
        """XEP-0347 ``mine``: claim the unclaimed record whose tags and ``KEY`` equal ``tags``.

        Tag names compare case-insensitively, order is irrelevant, types and values exactly.
        On success the record (and the children following it) get the owner and ``public``,
        and the ``KEY`` is deleted: a claim key works once. Claiming again by the same owner
        succeeds (and applies ``public`` again) only while the tags still match, i.e. without
        the deleted ``KEY``: a second ``mine`` with the old key gets None. Self-owned records
        and children are never claimable. None when nothing matches, when the match is owned
        by someone else, or when several unclaimed records match (which to give is a guess).
        """
        owner = _bare(owner_jid)
        try:
            given = canonical_tags(tags)
        except StanzaError:
            return None
        key_tag = given.get(KEY)
        if key_tag is not None and (key_tag.numeric or key_tag.value == ""):
            return None  # only non-empty string keys are ever stored
        key = None if key_tag is None else str(key_tag.value)
        now = self._clock()
        with self._write() as db:
            candidates = [
                _record(row)
                for row in db.execute(
                    f"SELECT {_THING_COLUMNS} FROM things WHERE key IS ? AND self_owned = 0"
                    " AND (node_id = '' OR follows_parent = 0) AND (owner IS NULL OR owner = ?)"
                    f" ORDER BY {_KEY_ORDER}",
                    (key, owner),
                )
            ]
            matches = [rec for rec in candidates if tags_match(given.values(), _with_key(rec))]
            already_mine = [rec for rec in matches if rec.owner == owner]
            unclaimed = [rec for rec in matches if rec.owner is None]
            if already_mine:
                target = already_mine[0]
            elif len(unclaimed) == 1:
                target = unclaimed[0]
            else:
                return None
            jid = target.thing_jid
            db.execute(
                f"UPDATE things SET owner = ?, public = ?, key = NULL, updated_at = ?"
                f" WHERE {_THE_RECORD}",
                (owner, int(public), now, jid, *_node_key(target.node)),
            )
            children: tuple[NodeRef, ...] = ()
            if target.node is None:
                self._copy_to_children(db, jid, now)
                rows = db.execute(
                    f"SELECT node_id, source_id, cache_type FROM things WHERE {_CHILDREN}"
                    f" ORDER BY {_KEY_ORDER}",
                    (jid,),
                )
                children = tuple(
                    NodeRef(node_id, src or None, cache or None) for node_id, src, cache in rows
                )
        return ClaimResult(jid, target.node, owner, children)

    def update(
        self, thing_jid: str, node: NodeRef | None, tags: Iterable[MetaTag], *, by: str
    ) -> UpdateOutcome:
        """XEP-0347 ``update``: merge ``tags`` into a claimed record, sent by itself or its owner.

        Only the listed tags change; a string tag with an empty value removes that tag. A
        ``KEY`` with a value is refused (:class:`RegistryError`): keys are set only by
        ``register`` and ``disown``. ``KEY=""`` is accepted and clears the key, which is how
        XEP-0347 things blank their key after a claim (ours is already deleted by then).
        """
        jid, sender = _bare(thing_jid), _bare(by)
        where = _node_key(node)
        changes = _canonical(tags)
        key_tag = changes.pop(KEY, None)
        if key_tag is not None and (key_tag.numeric or key_tag.value != ""):
            raise RegistryError("a KEY is set only by register and disown, not by update")
        now = self._clock()
        with self._write() as db:
            row = db.execute(
                f"SELECT {_THING_COLUMNS} FROM things WHERE {_THE_RECORD}", (jid, *where)
            ).fetchone()
            if row is None:
                return UpdateOutcome.NOT_FOUND
            record = _record(row)
            if record.owner is None:
                return UpdateOutcome.DISOWNED if sender == jid else UpdateOutcome.NOT_FOUND
            if record.removed or sender not in (jid, record.owner):
                return UpdateOutcome.NOT_FOUND
            merged = canonical_tags(record.tags)
            for name, tag in changes.items():
                if not tag.numeric and tag.value == "":
                    merged.pop(name, None)
                else:
                    merged[name] = tag
            key = None if key_tag is not None else record.key
            if len(merged) + (key is not None) > MAX_TAGS:
                raise RegistryError(f"an update may not leave more than {MAX_TAGS} tags")
            db.execute(
                f"UPDATE things SET tags = ?, key = ?, updated_at = ? WHERE {_THE_RECORD}",
                (_tags_json(merged.values()), key, now, jid, *where),
            )
        return UpdateOutcome.UPDATED

    def remove(self, owner_jid: str, thing_jid: str, node: NodeRef | None) -> bool:
        """XEP-0347 ``remove``: hide the record (and its children) from searches; owner only."""
        owner, jid = _bare(owner_jid), _bare(thing_jid)
        where = _node_key(node)
        now = self._clock()
        with self._write() as db:
            if self._owner(db, jid, where) != owner:
                return False
            db.execute(
                f"UPDATE things SET removed = 1, updated_at = ? WHERE {_THE_RECORD}",
                (now, jid, *where),
            )
            if node is None:
                self._copy_to_children(db, jid, now)
        return True

    def unregister(self, thing_jid: str, node: NodeRef | None) -> None:
        """XEP-0347 ``unregister``: delete the record.

        The concentrator takes its children, the provisioning rules, questions and
        ``isFriend`` notes of its JID with it (its ownership ends); independent nodes stay.
        """
        jid = _bare(thing_jid)
        where = _node_key(node)
        with self._write() as db:
            db.execute(f"DELETE FROM things WHERE {_THE_RECORD}", (jid, *where))
            if node is None:
                db.execute(f"DELETE FROM things WHERE {_CHILDREN}", (jid,))
                db.execute("DELETE FROM asked WHERE thing_jid = ?", (jid,))
                self._forget_decisions(db, jid)
            elif not self._still_claimed(db, jid):
                self._forget_decisions(db, jid)

    def disown(self, owner_jid: str, thing_jid: str, node: NodeRef | None) -> bool:
        """XEP-0347 ``disown`` (the last step, after the thing acknowledged ``disowned``).

        Owner only. The record is unclaimed, all its tags deleted and a fresh random 128-bit
        ``KEY`` set, so nobody can claim it with old data until the thing registers again.
        Children of a concentrator are unclaimed and emptied too, but get no key: they are
        never claimable on their own. Disowning the concentrator deletes every provisioning
        rule and question of the JID; disowning a node deletes them once no record of the JID
        stays claimed (else only the questions put to this owner, once they own none of it).
        ``isFriend`` notes stay: they record what the thing did.
        """
        owner, jid = _bare(owner_jid), _bare(thing_jid)
        where = _node_key(node)
        now = self._clock()
        with self._write() as db:
            row = db.execute(
                f"SELECT owner, follows_parent FROM things WHERE {_THE_RECORD}", (jid, *where)
            ).fetchone()
            if row is None or row[0] != owner:
                return False
            fresh_key = None if row[1] else secrets.token_hex(16)
            db.execute(
                f"UPDATE things SET {_DISOWNED}, key = ?, updated_at = ? WHERE {_THE_RECORD}",
                (fresh_key, now, jid, *where),
            )
            if node is None:
                db.execute(
                    f"UPDATE things SET {_DISOWNED}, key = NULL, updated_at = ? WHERE {_CHILDREN}",
                    (now, jid),
                )
            if node is None or not self._still_claimed(db, jid):
                self._forget_decisions(db, jid)
            elif not db.execute(
                "SELECT 1 FROM things WHERE thing_jid = ? AND owner = ? LIMIT 1", (jid, owner)
            ).fetchone():
                db.execute(
                    "DELETE FROM questions WHERE thing_jid = ? AND owner_jid = ?", (jid, owner)
                )
        return True

    def search(
        self, terms: Sequence[SearchTerm], offset: int, max_count: int
    ) -> tuple[list[Thing], bool]:
        """XEP-0347 ``search``: claimed, public, not removed records accepted by every term.

        Ordered by JID then node; ``max_count`` is capped at :data:`MAX_SEARCH_COUNT`. Returns
        the page and whether more matches follow it. A term on ``KEY`` finds nothing.
        """
        if offset < 0 or max_count < 1:
            raise RegistryError(f"bad search page: offset {offset}, maxCount {max_count}")
        if any(term.key == KEY for term in terms):
            return [], False
        count = min(max_count, MAX_SEARCH_COUNT)
        found: list[Thing] = []
        skipped = 0
        with self._read() as db:
            rows = db.execute(
                "SELECT thing_jid, node_id, source_id, cache_type, owner, tags FROM things"
                f" WHERE owner IS NOT NULL AND public = 1 AND removed = 0 ORDER BY {_KEY_ORDER}"
            )
            try:
                for jid, node_id, source_id, cache_type, owner, tags_text in rows:
                    tags = _tags_from_json(tags_text)
                    by_name = {tag.key: tag for tag in tags}
                    if not all(term.accepts(by_name) for term in terms):
                        continue
                    if skipped < offset:
                        skipped += 1
                        continue
                    if len(found) == count:
                        return found, True
                    node = _node_of(node_id, source_id, cache_type)
                    found.append(Thing(jid, tags, owner, node))
            finally:
                rows.close()  # ends the read snapshot even when the page ends early
        return found, False

    def owner_of(self, thing_jid: str, node: NodeRef | None = None) -> str | None:
        jid = _bare(thing_jid)
        with self._read() as db:
            return self._owner(db, jid, _node_key(node))

    def get(self, thing_jid: str, node: NodeRef | None = None) -> ThingRecord | None:
        jid = _bare(thing_jid)
        with self._read() as db:
            row = db.execute(
                f"SELECT {_THING_COLUMNS} FROM things WHERE {_THE_RECORD}",
                (jid, *_node_key(node)),
            ).fetchone()
        return None if row is None else _record(row)

    def things_of(self, owner_jid: str) -> list[ThingRecord]:
        """Every record the owner holds (removed ones and children included), by JID and node."""
        owner = _bare(owner_jid)
        with self._read() as db:
            rows = db.execute(
                f"SELECT {_THING_COLUMNS} FROM things WHERE owner = ? ORDER BY {_KEY_ORDER}",
                (owner,),
            ).fetchall()
        return [_record(row) for row in rows]

    @staticmethod
    def _owner(db: sqlite3.Connection, jid: str, where: _NodeKey) -> str | None:
        row = db.execute(f"SELECT owner FROM things WHERE {_THE_RECORD}", (jid, *where)).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    @staticmethod
    def _copy_to_children(db: sqlite3.Connection, jid: str, now: float) -> None:
        """Give the concentrator's owner, ``public`` and ``removed`` state to its children."""
        db.execute(
            "UPDATE things SET (owner, public, removed) = (SELECT owner, public, removed"
            f" FROM things WHERE {_THE_RECORD}), updated_at = ? WHERE {_CHILDREN}",
            (jid, *_CONCENTRATOR, now, jid),
        )

    @staticmethod
    def _still_claimed(db: sqlite3.Connection, jid: str) -> bool:
        row = db.execute(
            "SELECT 1 FROM things WHERE thing_jid = ? AND owner IS NOT NULL LIMIT 1", (jid,)
        ).fetchone()
        return row is not None

    @staticmethod
    def _forget_decisions(db: sqlite3.Connection, jid: str) -> None:
        db.execute("DELETE FROM rules WHERE thing_jid = ?", (jid,))
        db.execute("DELETE FROM questions WHERE thing_jid = ?", (jid,))

    # -- provisioning rules (XEP-0324) ------------------------------------------------------

    def set_rule(self, rule: Rule) -> Rule:
        """Store the rule, replacing the one for the same (thing, requester, kind); returns it
        as stored (JIDs normalised)."""
        stored = Rule(
            _bare(rule.thing_jid),
            _bare(rule.requester_jid),
            _kind(rule.kind),
            bool(rule.allowed),
            _names("nodes", rule.nodes),
            _names("names", rule.names),
        )
        if stored.kind == "friend" and (stored.nodes is not None or stored.names is not None):
            raise RegistryError("a friend rule has no nodes or names")
        with self._write() as db:
            db.execute(
                f"INSERT OR REPLACE INTO rules ({_RULE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    stored.thing_jid,
                    stored.requester_jid,
                    stored.kind,
                    int(stored.allowed),
                    _list_json(stored.nodes),
                    _list_json(stored.names),
                ),
            )
        return stored

    def rule(self, thing_jid: str, requester_jid: str, kind: Kind) -> Rule | None:
        key = (_bare(thing_jid), _bare(requester_jid), _kind(kind))
        with self._read() as db:
            row = db.execute(
                f"SELECT {_RULE_COLUMNS} FROM rules"
                " WHERE thing_jid = ? AND requester_jid = ? AND kind = ?",
                key,
            ).fetchone()
        return None if row is None else _rule(row)

    def rules_for(self, thing_jid: str) -> list[Rule]:
        """Every rule of the thing, by requester then kind."""
        with self._read() as db:
            rows = db.execute(
                f"SELECT {_RULE_COLUMNS} FROM rules WHERE thing_jid = ?"
                " ORDER BY requester_jid, kind",
                (_bare(thing_jid),),
            ).fetchall()
        return [_rule(row) for row in rows]

    def delete_rule(self, thing_jid: str, requester_jid: str, kind: Kind) -> bool:
        """Delete one rule; False if there was none."""
        key = (_bare(thing_jid), _bare(requester_jid), _kind(kind))
        with self._write() as db:
            cursor = db.execute(
                "DELETE FROM rules WHERE thing_jid = ? AND requester_jid = ? AND kind = ?", key
            )
            return cursor.rowcount > 0

    # -- questions to owners ----------------------------------------------------------------

    def ask(
        self,
        thing_jid: str,
        owner_jid: str,
        requester_jid: str,
        kind: Kind,
        nodes: Sequence[str] | None = None,
        names: Sequence[str] | None = None,
    ) -> tuple[Question, bool]:
        """The open question for (thing, owner, requester, kind), created if there is none.

        The bool says whether it is new (so the owner is asked once, however often the
        requester retries); a reused question keeps its first nodes and names. An owner holds
        at most :data:`MAX_OPEN_QUESTIONS` open questions: the oldest ones are dropped.
        """
        thing, owner, requester = _bare(thing_jid), _bare(owner_jid), _bare(requester_jid)
        checked = _kind(kind)
        node_list, name_list = _names("nodes", nodes), _names("names", names)
        now = self._clock()
        with self._write() as db:
            row = db.execute(
                f"SELECT {_QUESTION_COLUMNS} FROM questions WHERE thing_jid = ? AND owner_jid = ?"
                " AND requester_jid = ? AND kind = ? AND answered = 0 ORDER BY id LIMIT 1",
                (thing, owner, requester, checked),
            ).fetchone()
            if row is not None:
                return _question(row), False
            db.execute(
                "DELETE FROM questions WHERE id IN (SELECT id FROM questions"
                " WHERE owner_jid = ? AND answered = 0 ORDER BY id DESC LIMIT -1 OFFSET ?)",
                (owner, MAX_OPEN_QUESTIONS - 1),
            )
            cursor = db.execute(
                f"INSERT INTO questions ({_QUESTION_COLUMNS})"
                " VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, 0)",
                (
                    thing,
                    owner,
                    requester,
                    checked,
                    _list_json(node_list),
                    _list_json(name_list),
                    now,
                ),
            )
            question_id = cursor.lastrowid
        assert question_id is not None
        question = Question(
            question_id, thing, owner, requester, checked, node_list, name_list, now, False
        )
        return question, True

    def open_questions(self, owner_jid: str) -> list[Question]:
        """The owner's unanswered questions, oldest first."""
        with self._read() as db:
            rows = db.execute(
                f"SELECT {_QUESTION_COLUMNS} FROM questions WHERE owner_jid = ? AND answered = 0"
                " ORDER BY id",
                (_bare(owner_jid),),
            ).fetchall()
        return [_question(row) for row in rows]

    def question(self, question_id: int) -> Question | None:
        with self._read() as db:
            row = db.execute(
                f"SELECT {_QUESTION_COLUMNS} FROM questions WHERE id = ?", (question_id,)
            ).fetchone()
        return None if row is None else _question(row)

    def close_question(self, question_id: int) -> bool:
        """Mark the question answered; False if it is unknown or closed already. Of an owner's
        answered questions the newest :data:`MAX_ANSWERED_QUESTIONS` are kept."""
        with self._write() as db:
            row = db.execute(
                "SELECT owner_jid FROM questions WHERE id = ? AND answered = 0", (question_id,)
            ).fetchone()
            if row is None:
                return False
            db.execute("UPDATE questions SET answered = 1 WHERE id = ?", (question_id,))
            db.execute(
                "DELETE FROM questions WHERE id IN (SELECT id FROM questions"
                " WHERE owner_jid = ? AND answered = 1 ORDER BY id DESC LIMIT -1 OFFSET ?)",
                (row[0], MAX_ANSWERED_QUESTIONS),
            )
        return True

    # -- isFriend notes and claim rate limiting ---------------------------------------------

    def note_asked(self, thing_jid: str, requester_jid: str) -> None:
        """Remember that the thing asked ``isFriend`` about the requester."""
        key = (_bare(thing_jid), _bare(requester_jid))
        now = self._clock()
        with self._write() as db:
            db.execute(
                "INSERT INTO asked (thing_jid, requester_jid, asked_at) VALUES (?, ?, ?)"
                " ON CONFLICT (thing_jid, requester_jid) DO UPDATE SET asked_at = ?",
                (*key, now, now),
            )

    def has_asked(self, thing_jid: str, requester_jid: str) -> bool:
        key = (_bare(thing_jid), _bare(requester_jid))
        with self._read() as db:
            row = db.execute(
                "SELECT 1 FROM asked WHERE thing_jid = ? AND requester_jid = ?", key
            ).fetchone()
        return row is not None

    def note_failed_claim(self, requester_jid: str, at: float) -> None:
        """Record a ``mine`` of the requester that matched nothing."""
        requester = _bare(requester_jid)
        with self._write() as db:
            db.execute(
                "INSERT INTO failed_claims (requester_jid, at) VALUES (?, ?)", (requester, at)
            )

    def failed_claims(self, requester_jid: str, since: float) -> int:
        """Failed claims of the requester at or after ``since``. Rows of every requester older
        than ``since`` are deleted, so always call it with the same window."""
        requester = _bare(requester_jid)
        with self._write() as db:
            db.execute("DELETE FROM failed_claims WHERE at < ?", (since,))
            row = db.execute(
                "SELECT COUNT(*) FROM failed_claims WHERE requester_jid = ?", (requester,)
            ).fetchone()
        return int(row[0])


# -- helpers ----------------------------------------------------------------------------------


def _bare(jid: str) -> str:
    """A bare JID, lower-cased; anything else is misuse."""
    if not isinstance(jid, str) or not jid or len(jid) > _MAX_JID:
        raise RegistryError(f"not a bare JID: {jid!r}")
    local, at, domain = jid.rpartition("@")
    if "/" in jid or _WHITESPACE.search(jid) or "@" in local or (at and not local) or not domain:
        raise RegistryError(f"not a bare JID: {jid!r}")
    return jid.lower()


def _node_key(node: NodeRef | None) -> _NodeKey:
    if node is None:
        return _CONCENTRATOR
    if not isinstance(node, NodeRef) or not node.node_id:
        raise RegistryError(f"not a node reference: {node!r}")
    return node.node_id, node.source_id or "", node.cache_type or ""


def _node_of(node_id: str, source_id: str, cache_type: str) -> NodeRef | None:
    if not node_id:
        return None
    return NodeRef(node_id, source_id or None, cache_type or None)


def _canonical(tags: Iterable[MetaTag]) -> dict[str, MetaTag]:
    try:
        return canonical_tags(tags)
    except StanzaError as err:
        raise RegistryError(str(err)) from err
    except (AttributeError, TypeError) as err:
        raise RegistryError(f"tags must be MetaTag objects: {err}") from err


def _split_key(tags: Iterable[MetaTag]) -> tuple[list[MetaTag], str | None]:
    """The searchable tags and the ``KEY`` value (refused unless a string)."""
    by_name = _canonical(tags)
    key_tag = by_name.pop(KEY, None)
    if key_tag is not None and key_tag.numeric:
        raise RegistryError("KEY must be a string tag")
    return list(by_name.values()), None if key_tag is None else str(key_tag.value)


def _with_key(record: ThingRecord) -> list[MetaTag]:
    tags = list(record.tags)
    if record.key is not None:
        tags.append(MetaTag(KEY, record.key))
    return tags


def _tags_json(tags: Iterable[MetaTag]) -> str:
    return json.dumps(
        [{"name": tag.name, "value": tag.value, "numeric": tag.numeric} for tag in tags],
        ensure_ascii=False,
        allow_nan=False,
    )


def _tags_from_json(text: str) -> tuple[MetaTag, ...]:
    try:
        return tuple(
            MetaTag(item["name"], float(item["value"]) if item["numeric"] else str(item["value"]))
            for item in json.loads(text)
        )
    except (ValueError, TypeError, KeyError) as err:
        raise RegistryError(f"corrupt tags in the registry database: {err}") from err


def _record(row: Sequence[Any]) -> ThingRecord:
    jid, node_id, source_id, cache_type, owner, public, removed, self_owned, follows = row[:9]
    tags, key, registered_at, updated_at = row[9:]
    return ThingRecord(
        thing_jid=jid,
        node=_node_of(node_id, source_id, cache_type),
        owner=owner,
        public=bool(public),
        removed=bool(removed),
        self_owned=bool(self_owned),
        follows_concentrator=bool(follows),
        tags=_tags_from_json(tags),
        key=key,
        registered_at=float(registered_at),
        updated_at=float(updated_at),
    )


def _kind(kind: str) -> Kind:
    if kind not in _KINDS:
        raise RegistryError(f"unknown decision kind {kind!r} (one of {', '.join(_KINDS)})")
    return cast(Kind, kind)


def _names(what: str, names: Iterable[str] | None) -> tuple[str, ...] | None:
    if names is None:
        return None
    if isinstance(names, str):
        raise RegistryError(f"{what} must be a sequence of names, not one string")
    result = tuple(names)
    if not all(isinstance(name, str) and name for name in result):
        raise RegistryError(f"{what} must be non-empty strings: {result!r}")
    return result


def _list_json(names: tuple[str, ...] | None) -> str | None:
    return None if names is None else json.dumps(list(names), ensure_ascii=False)


def _list_from_json(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    try:
        items = json.loads(text)
    except ValueError as err:
        raise RegistryError(f"corrupt name list in the registry database: {err}") from err
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise RegistryError(f"corrupt name list in the registry database: {text!r}")
    return tuple(items)


def _rule(row: Sequence[Any]) -> Rule:
    thing, requester, kind, allowed, nodes, names = row
    return Rule(
        thing, requester, _kind(kind), bool(allowed), _list_from_json(nodes), _list_from_json(names)
    )


def _question(row: Sequence[Any]) -> Question:
    question_id, thing, owner, requester, kind, nodes, names, created_at, answered = row
    return Question(
        int(question_id),
        thing,
        owner,
        requester,
        _kind(kind),
        _list_from_json(nodes),
        _list_from_json(names),
        float(created_at),
        bool(answered),
    )
