"""``ncap-registry``: the thing registry (XEP-0347) and provisioning service (XEP-0324) as an
XMPP external component (XEP-0114) of the user's own server.

State lives in :class:`~ncap.registry.store.RegistryStore` (SQLite); decisions come from
:class:`~ncap.registry.decide.Decider`. Owners talk to the component in plain chat
(``help``, ``pending``, ``allow N [names]``, ``deny N``, ``things``, ``rules``, ``forget JID``,
``claim URI``) or through the ad-hoc commands "Decide a pending request" and "Claim a thing".

XEP-0114 itself is not encrypted: attach the component over loopback only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast
from xml.etree.ElementTree import Element

import slixmpp
from slixmpp import JID, Iq, Message
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream.handler import CoroutineCallback
from slixmpp.xmlstream.matcher import StanzaPath
from slixmpp.xmlstream.stanzabase import StanzaBase

from ncap.errors import NcapError
from ncap.registry.decide import Decider, Verdict
from ncap.registry.store import (
    ClaimResult,
    Kind,
    Question,
    RegistryError,
    RegistryStore,
    UpdateOutcome,
)
from ncap.xmpp.connection import error_reply
from xep.errors import StanzaError
from xep.xep_0324 import convert as prov_convert
from xep.xep_0324 import stanza as prov_stanza
from xep.xep_0324.model import (
    CanControl,
    CanControlResponse,
    CanRead,
    CanReadResponse,
    ClearCache,
    Friend,
    IsFriend,
    IsFriendResponse,
    Unfriend,
)
from xep.xep_0347 import convert as disco_convert
from xep.xep_0347 import stanza as disco_stanza
from xep.xep_0347.model import (
    Claimed,
    Disown,
    Disowned,
    Found,
    MetaTag,
    Mine,
    Register,
    Remove,
    Removed,
    Search,
    Unregister,
    Update,
)
from xep.xep_0347.uri import parse_disco_uri

_LOGGER = logging.getLogger(__name__)

#: Failed claims per requester within CLAIM_WINDOW_S before further claims are refused.
CLAIM_ATTEMPTS = 5
CLAIM_WINDOW_S = 60.0
NOTIFY_TIMEOUT_S = 10.0
_KINDS: tuple[Kind, ...] = ("friend", "read", "control")

HELP = """I am the thing registry and provisioning service. Commands:
  pending              requests waiting for your decision
  allow N [names...]   allow request N (optionally only these fields or parameters)
  deny N               deny request N
  things               the things you own
  rules                your standing decisions
  forget JID           drop every decision about JID (and end its friendships)
  claim URI            claim a thing by its iotdisco: URI (from its QR code)"""


class _Refusal(Exception):
    def __init__(self, etype: str, condition: str, text: str = "") -> None:
        super().__init__(condition)
        self.etype, self.condition, self.text = etype, condition, text


def _bare(jid: JID | str) -> str:
    return str(JID(jid).bare).lower()


def _describe(question: Question) -> str:
    what = {"friend": "befriend", "read": "read", "control": "control"}[question.kind]
    scope = []
    if question.nodes:
        scope.append("nodes " + ", ".join(question.nodes))
    if question.names:
        label = "parameters" if question.kind == "control" else "fields"
        scope.append(f"{label} " + ", ".join(question.names))
    suffix = f" ({'; '.join(scope)})" if scope else ""
    return f"#{question.id}: {question.requester_jid} wants to {what} {question.thing_jid}{suffix}"


class RegistryComponent(slixmpp.ComponentXMPP):
    def __init__(
        self,
        jid: str,
        secret: str,
        host: str,
        port: int,
        store: RegistryStore,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(jid, secret, host, port)  # type: ignore[no-untyped-call]
        self.store = store
        self.decider = Decider(store)
        self._clock = clock
        self._things: dict[str, JID] = {}  # thing bare JID -> last full JID seen
        self.ready = asyncio.Event()
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0004")
        self.register_plugin("xep_0050")
        self.register_plugin("xep_0199")
        disco_stanza.register_stanzas()
        prov_stanza.register_stanzas()
        routes: dict[str, Callable[[Iq, Element], Awaitable[Element | None]]] = {
            "set/disco_register": self._register,
            "set/disco_mine": self._mine,
            "set/disco_update": self._update,
            "set/disco_remove": self._remove,
            "set/disco_disown": self._disown,
            "set/disco_unregister": self._unregister,
            "get/disco_search": self._search,
            "get/prov_isFriend": self._is_friend,
            "get/prov_canRead": self._can_read,
            "get/prov_canControl": self._can_control,
        }
        for path, handler in routes.items():
            kind, payload = path.split("/")
            self.register_handler(
                CoroutineCallback(
                    f"registry {payload}",
                    StanzaPath(f"iq@type={kind}/{payload}"),
                    self._serving(handler),
                )
            )
        self.add_event_handler("session_start", self._on_start)
        self.add_event_handler("message", self._on_message)

    # -- plumbing ---------------------------------------------------------------------------

    async def _on_start(self, _event: object) -> None:
        disco = self.plugin["xep_0030"]
        disco.add_feature(disco_convert.NS)
        disco.add_feature(prov_convert.NS)
        disco.add_identity("component", "generic", "Thing registry and provisioning")
        adhoc = self.plugin["xep_0050"]
        adhoc.add_command(node="decide", name="Decide a pending request", handler=self._cmd_decide)
        adhoc.add_command(node="claim", name="Claim a thing", handler=self._cmd_claim)
        self.ready.set()
        _LOGGER.info("registry %s attached", self.boundjid)

    def _serving(
        self, handler: Callable[[Iq, Element], Awaitable[Element | None]]
    ) -> Callable[[StanzaBase], Awaitable[None]]:
        async def serve(stanza: StanzaBase) -> None:
            iq = cast(Iq, stanza)
            payload = next(iter(iq.xml), None)
            try:
                assert payload is not None  # the matcher found it
                answer = await handler(iq, payload)
            except StanzaError as err:
                error_reply(iq, "modify", "bad-request", str(err)).send()
            except _Refusal as err:
                error_reply(iq, err.etype, err.condition, err.text).send()
            except RegistryError as err:  # what the store refuses came from the wire
                error_reply(iq, "modify", "bad-request", str(err)).send()
            except NcapError as err:
                _LOGGER.warning("request from %s failed: %s", iq["from"], err)
                error_reply(iq, "cancel", "internal-server-error").send()
            except Exception:
                _LOGGER.exception("request from %s failed", iq["from"])
                error_reply(iq, "cancel", "internal-server-error").send()
            else:
                reply = iq.reply(clear=True)  # type: ignore[no-untyped-call]
                if answer is not None:
                    reply.append(answer)
                reply.send()

        return serve

    def _seen(self, iq: Iq) -> str:
        sender = JID(iq["from"])
        bare = _bare(sender)
        if sender.resource:
            self._things[bare] = sender
        return bare

    def _say(self, to: str, text: str) -> None:
        self.send_message(mto=JID(to), mbody=text, mtype="chat", mfrom=self.boundjid)

    async def _notify(self, thing: str, payload: Element) -> bool:
        """An IQ set to the thing's last known full JID; True once it acknowledged."""
        full = self._things.get(thing)
        if full is None:
            return False
        iq = self.make_iq(ito=full, itype="set", ifrom=self.boundjid)
        iq.append(payload)
        try:
            await iq.send(timeout=NOTIFY_TIMEOUT_S)  # type: ignore[no-untyped-call]
        except (IqError, IqTimeout) as err:
            _LOGGER.info("thing %s did not take %s: %s", full, payload.tag, err)
            return False
        return True

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    # -- XEP-0347 ---------------------------------------------------------------------------

    async def _register(self, iq: Iq, payload: Element) -> Element | None:
        request = disco_convert.from_xml(payload)
        assert isinstance(request, Register)
        thing = self._seen(iq)
        owner = self.store.register(
            thing, request.node, request.tags, self_owned=request.self_owned
        )
        if owner is None or request.self_owned:
            return None
        record = self.store.get(thing, request.node)
        public = record.public if record is not None else False
        return disco_convert.to_xml(Claimed(owner, request.node, public))

    async def _mine(self, iq: Iq, payload: Element) -> Element | None:
        request = disco_convert.from_xml(payload)
        assert isinstance(request, Mine)
        claimed = await self.claim(_bare(iq["from"]), request.tags, request.public)
        return disco_convert.to_xml(Claimed(claimed.thing_jid, claimed.node, request.public))

    async def claim(self, owner: str, tags: tuple[MetaTag, ...], public: bool) -> ClaimResult:
        """Claim for ``owner``; rate-limited per requester. Raises :class:`_Refusal`."""
        now = self._clock()
        if self.store.failed_claims(owner, now - CLAIM_WINDOW_S) >= CLAIM_ATTEMPTS:
            _LOGGER.warning("claim by %s refused: too many failed attempts", owner)
            raise _Refusal("wait", "resource-constraint", "Too many failed claims; wait a minute.")
        result = self.store.claim(owner, tags, public=public)
        if result is None:
            self.store.note_failed_claim(owner, now)
            raise _Refusal("cancel", "item-not-found")
        _LOGGER.info("%s claimed %s", owner, result.thing_jid)
        # Tell the thing before the owner hears of it, so the owner's first request finds a
        # thing that knows its owner. An offline thing learns it when it registers again.
        note = disco_convert.to_xml(Claimed(owner, result.node, public))
        await self._notify(result.thing_jid, note)
        return result

    async def _update(self, iq: Iq, payload: Element) -> Element | None:
        request = disco_convert.from_xml(payload)
        assert isinstance(request, Update)
        sender = self._seen(iq) if request.jid is None else _bare(iq["from"])
        thing = _bare(request.jid) if request.jid is not None else sender
        outcome = self.store.update(thing, request.node, request.tags, by=sender)
        if outcome is UpdateOutcome.NOT_FOUND:
            raise _Refusal("cancel", "item-not-found")
        if outcome is UpdateOutcome.DISOWNED:
            return disco_convert.to_xml(Disowned(request.node))
        return None

    async def _remove(self, iq: Iq, payload: Element) -> Element | None:
        request = disco_convert.from_xml(payload)
        assert isinstance(request, Remove)
        thing = _bare(request.jid)
        if not self.store.remove(_bare(iq["from"]), thing, request.node):
            raise _Refusal("cancel", "item-not-found")
        self._spawn(self._notify(thing, disco_convert.to_xml(Removed(request.node))))
        return None

    async def _disown(self, iq: Iq, payload: Element) -> Element | None:
        request = disco_convert.from_xml(payload)
        assert isinstance(request, Disown)
        owner, thing = _bare(iq["from"]), _bare(request.jid)
        record = self.store.get(thing, request.node)
        if record is None or record.owner != owner:
            raise _Refusal("cancel", "item-not-found")
        # The thing must hear it first (XEP-0347); an unreachable thing cannot be disowned.
        if not await self._notify(thing, disco_convert.to_xml(Disowned(request.node))):
            raise _Refusal("cancel", "not-allowed", "The thing is not online.")
        self.store.disown(owner, thing, request.node)
        return None

    async def _unregister(self, iq: Iq, payload: Element) -> Element | None:
        request = disco_convert.from_xml(payload)
        assert isinstance(request, Unregister)
        self.store.unregister(self._seen(iq), request.node)
        return None

    async def _search(self, iq: Iq, payload: Element) -> Element | None:
        request = disco_convert.from_xml(payload)
        assert isinstance(request, Search)
        found, more = self.store.search(request.terms, request.offset, max(1, request.max_count))
        return disco_convert.to_xml(Found(tuple(found), more))

    # -- XEP-0324 ---------------------------------------------------------------------------

    async def _is_friend(self, iq: Iq, payload: Element) -> Element | None:
        request = prov_convert.from_xml(payload)
        assert isinstance(request, IsFriend)
        verdict = self.decider.is_friend(self._seen(iq), _bare(request.jid))
        self._tell_owner(verdict)
        return prov_convert.to_xml(IsFriendResponse(request.jid, verdict.allowed))

    async def _can_read(self, iq: Iq, payload: Element) -> Element | None:
        request = prov_convert.from_xml(payload)
        assert isinstance(request, CanRead)
        thing = self._seen(iq)
        verdict = self.decider.can_read(
            thing, _bare(request.jid), request.nodes, request.field_names
        )
        self._tell_owner(verdict)
        return prov_convert.to_xml(
            CanReadResponse(
                request.jid,
                verdict.allowed,
                request.types,
                verdict.nodes or () if verdict.allowed else (),
                verdict.names or () if verdict.allowed else (),
            )
        )

    async def _can_control(self, iq: Iq, payload: Element) -> Element | None:
        request = prov_convert.from_xml(payload)
        assert isinstance(request, CanControl)
        verdict = self.decider.can_control(
            self._seen(iq), _bare(request.jid), request.nodes, request.parameters
        )
        self._tell_owner(verdict)
        return prov_convert.to_xml(
            CanControlResponse(
                request.jid,
                verdict.allowed,
                verdict.nodes or () if verdict.allowed else (),
                verdict.names or () if verdict.allowed else (),
            )
        )

    def _tell_owner(self, verdict: Verdict) -> None:
        question = verdict.question
        if question is None:
            return
        self._say(
            question.owner_jid,
            f"{_describe(question)}.\nAnswer 'allow {question.id}', "
            f"'allow {question.id} NAME...' (only those fields or parameters) "
            f"or 'deny {question.id}'.",
        )

    async def decide(
        self, owner: str, question_id: int, allow: bool, names: tuple[str, ...] | None
    ) -> str:
        """Apply an owner's answer; tell the thing. Returns the text for the owner."""
        question = self.store.question(question_id)
        if question is None or question.owner_jid != owner or question.answered:
            return f"There is no open request #{question_id} for you."
        self.decider.answer(question, allow, names)
        thing, requester = question.thing_jid, question.requester_jid
        if self.store.has_asked(thing, requester) or question.kind == "friend":
            advice = Friend(requester) if allow else Unfriend(requester)
            message = self.make_message(mto=thing, mfrom=self.boundjid)
            message.append(prov_convert.to_xml(advice))
            message.send()
        await self._notify(thing, prov_convert.to_xml(ClearCache()))
        verb = "allowed" if allow else "denied"
        only = f" (only {', '.join(names)})" if names and allow else ""
        return f"Request #{question_id} {verb}{only}: {requester} on {thing}."

    async def forget(self, owner: str, requester: str) -> str:
        touched = []
        for record in self.store.things_of(owner):
            if record.node is not None:
                continue
            changed = False
            for kind in _KINDS:
                changed |= self.store.delete_rule(record.thing_jid, requester, kind)
            if changed:
                touched.append(record.thing_jid)
                message = self.make_message(mto=record.thing_jid, mfrom=self.boundjid)
                message.append(prov_convert.to_xml(Unfriend(requester)))
                message.send()
                await self._notify(record.thing_jid, prov_convert.to_xml(ClearCache()))
        if not touched:
            return f"No decisions about {requester}."
        return f"Forgot every decision about {requester} on {', '.join(touched)}."

    # -- chat -------------------------------------------------------------------------------

    async def _on_message(self, msg: Message) -> None:
        if msg["type"] not in ("chat", "normal") or not msg["body"]:
            return
        owner = _bare(msg["from"])
        try:
            answer = await self.chat(owner, msg["body"])
        except Exception:
            _LOGGER.exception("chat command from %s failed", owner)
            answer = "Sorry, that failed inside the registry."
        reply = msg.reply(answer)  # type: ignore[no-untyped-call]
        reply["from"] = self.boundjid
        reply.send()

    async def chat(self, owner: str, text: str) -> str:
        words = text.split()
        if not words:
            return HELP
        command, args = words[0].lower(), words[1:]
        if command in ("allow", "deny") and args and args[0].lstrip("#").isdigit():
            names = tuple(args[1:]) or None
            return await self.decide(owner, int(args[0].lstrip("#")), command == "allow", names)
        if command == "pending":
            questions = self.store.open_questions(owner)
            return "\n".join(map(_describe, questions)) or "Nothing is waiting for you."
        if command == "things":
            records = [r for r in self.store.things_of(owner) if r.node is None]
            lines = [
                f"{r.thing_jid}{' (public)' if r.public else ''}{' (removed)' if r.removed else ''}"
                for r in records
            ]
            return "\n".join(lines) or "You own no things."
        if command == "rules":
            lines = []
            for record in self.store.things_of(owner):
                if record.node is not None:
                    continue
                for rule in self.store.rules_for(record.thing_jid):
                    verb = "may" if rule.allowed else "may not"
                    only = f" (only {', '.join(rule.names)})" if rule.names else ""
                    lines.append(f"{rule.requester_jid} {verb} {rule.kind} {rule.thing_jid}{only}")
            return "\n".join(lines) or "No decisions yet."
        if command == "forget" and len(args) == 1:
            return await self.forget(owner, _bare(args[0]))
        if command == "claim" and len(args) == 1:
            return await self._chat_claim(owner, args[0])
        return HELP

    async def _chat_claim(self, owner: str, uri: str) -> str:
        try:
            parsed = parse_disco_uri(uri)
        except StanzaError as err:
            return f"That is not a claim URI: {err}"
        try:
            result = await self.claim(owner, parsed.tags, True)
        except _Refusal as err:
            if err.condition == "resource-constraint":
                return err.text
            return "No unclaimed thing matches that URI."
        return f"You now own {result.thing_jid}."

    # -- ad-hoc commands --------------------------------------------------------------------

    def _cmd_decide(self, iq: Iq, session: dict[str, Any]) -> dict[str, Any]:
        owner = _bare(iq["from"])
        questions = self.store.open_questions(owner)
        if not questions:
            session["notes"] = [("info", "Nothing is waiting for you.")]
            session["has_next"] = False
            session["next"] = None
            return session
        form = self.plugin["xep_0004"].make_form(  # type: ignore[no-untyped-call]
            "form", "Decide a pending request"
        )
        form.add_field(
            var="question",
            ftype="list-single",
            label="Request",
            required=True,
            options=[{"label": _describe(q), "value": str(q.id)} for q in questions],
        )
        form.add_field(
            var="decision",
            ftype="list-single",
            label="Decision",
            required=True,
            value="allow",
            options=[{"label": "Allow", "value": "allow"}, {"label": "Deny", "value": "deny"}],
        )
        form.add_field(
            var="names",
            ftype="text-single",
            label="Only these fields or parameters (space separated; empty: all asked)",
        )
        session["payload"] = form
        session["next"] = self._cmd_decide_done
        session["has_next"] = False
        return session

    async def _cmd_decide_done(self, payload: Any, session: dict[str, Any]) -> dict[str, Any]:
        values = payload["values"]
        owner = _bare(session["from"])
        try:
            question_id = int(values.get("question") or "")
        except ValueError:
            question_id = -1
        names = tuple(str(values.get("names") or "").split()) or None
        text = await self.decide(owner, question_id, values.get("decision") == "allow", names)
        session["payload"] = None
        session["next"] = None
        session["notes"] = [("info", text)]
        return session

    def _cmd_claim(self, iq: Iq, session: dict[str, Any]) -> dict[str, Any]:
        form = self.plugin["xep_0004"].make_form(  # type: ignore[no-untyped-call]
            "form", "Claim a thing"
        )
        form.add_field(
            var="uri", ftype="text-single", label="Claim URI (iotdisco:...)", required=True
        )
        form.add_field(
            var="public", ftype="boolean", label="List it in public searches", value=False
        )
        session["payload"] = form
        session["next"] = self._cmd_claim_done
        session["has_next"] = False
        return session

    async def _cmd_claim_done(self, payload: Any, session: dict[str, Any]) -> dict[str, Any]:
        values = payload["values"]
        owner = _bare(session["from"])
        public = str(values.get("public")).lower() in ("1", "true")
        try:
            parsed = parse_disco_uri(str(values.get("uri") or ""))
            result = await self.claim(owner, parsed.tags, public)
            text, level = f"You now own {result.thing_jid}.", "info"
        except StanzaError as err:
            text, level = f"That is not a claim URI: {err}", "error"
        except _Refusal as err:
            text, level = (err.text or "No unclaimed thing matches that URI."), "error"
        session["payload"] = None
        session["next"] = None
        session["notes"] = [(level, text)]
        return session
