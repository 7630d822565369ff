"""A double of the endpoint daemon for the local API: the Backend's handlers over dicts.

:class:`MemoryBackend` serves an endpoint's requests (the mailbox ones left
out) from plain dicts, raises the same :class:`~onionpost.errors.OnionpostError`
subclasses the daemon does, and fans events out exactly as the daemon's hub
does: bounded channels, a subscriber that falls behind is dropped, never
waited for. :class:`ServerThread` serves it with
:func:`~onionpost.host.serve_api` on a Unix socket from a thread of its own,
for synchronous callers (the CLI's tests, the examples);
:func:`short_tmpdir` gives a directory whose socket path fits.

For the client library, the CLI and the API server without a daemon: the
real end-to-end tests run the daemon itself (:mod:`onionpost.testing.memory`,
:mod:`onionpost.testing.endpoint`).
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import trio

from onionpost import api
from onionpost.errors import (
    CardError,
    ConfigError,
    LabelError,
    LabelReason,
    NotFoundError,
    RemoteProtocolError,
    StoreError,
    TorError,
    TrustError,
    UnknownContactError,
)
from onionpost.home import ContactCard
from onionpost.host import Handlers, serve_api
from onionpost.proto import trust
from onionpost.proto.labels import (
    LabelPolicy,
    check_audience,
    forward_via,
    may_forward,
    may_send,
)
from onionpost.proto.registrar import EnrolmentCode
from onionpost.proto.trust import confirm_anchor
from onionpost.proto.trust_session import RevocationBundle

__all__ = [
    "ALICE",
    "ERRORS_BY_CODE",
    "SAFETY",
    "MemoryBackend",
    "ServerThread",
    "address_for",
    "card_for",
    "short_tmpdir",
]

JSON = dict[str, Any]

ALICE = "alice2345alice2345alice2345alice2345alice2345alice2345.onion"
SAFETY = " ".join(f"{i:05d}" for i in range(12))


def card_for(name: str) -> str:
    """A card this double accepts: ``onionpost1:`` and the contact's name."""
    return f"onionpost1:{name}"


def address_for(name: str) -> str:
    return (name * 56)[:56] + ".onion"


class MemoryBackend:
    """The Backend protocol over dicts (host/_backend.py): an endpoint's
    requests, the mailbox ones left out. Sends are idempotent on their id, as
    the daemon's are."""

    unserved = "this double serves no mailbox requests"

    def __init__(self, *, subscriber_buffer: int = 64) -> None:
        self.contacts: dict[str, JSON] = {}
        self.anchors: dict[str, api.TrustAnchor] = {}
        self.enrolled_with = ""
        #: What ``status`` says of our registrar (api.RegistrarStatus), once set.
        self.registrar_status: JSON | None = None
        #: What ``status`` says of our endorsement's delegation ending (POSIX seconds).
        self.delegation_ends: int | None = None
        # The verdict contact_add records for a card bundle's endorsement
        # (None: "judged: ..." and the line's start).
        self.endorsement_verdict: str | None = None
        # The address trust_enrol's endorsement replaces (a move's code).
        self.enrol_replaces = ""
        # Whether the last trust_enrol said ``again``.
        self.enrol_again: bool | None = None
        self.anchor_keys: dict[str, trust.Anchor] = {}
        self.endorsement: trust.EndorsementProof | None = None
        self.rotation: trust.EndorsementProof | None = None
        self.revocations: dict[str, trust.RevocationList] = {}
        self.verified: dict[str, int] = {}
        self.messages: dict[str, JSON] = {}
        self.files: dict[str, bytes] = {}
        self.seq = 0
        self.next_id = 0
        self.subscriber_buffer = subscriber_buffer
        self.subscribers: list[tuple[frozenset[str], trio.MemorySendChannel[JSON]]] = []
        self.dropped = 0
        self.calls: list[str] = []
        self.active = 0
        self.max_active = 0
        # A test sets these to steer the next calls.
        self.hold: trio.Event | None = None  # send_text waits for it
        self.fail: BaseException | None = None  # status raises it
        self.whoami_result: Any = None  # whoami returns it instead
        self.retried: list[str | None] = []
        self.marked: list[str] = []
        self.nursery: trio.Nursery | None = None  # for file progress events
        self.deliver_files = True
        self.file_refusal = 3  # the reason a file is refused with when not delivered
        self.deliver_texts = True
        # A text's delivery waits for this many status calls after it was
        # queued (0: it does not wait): a client that asks while it waits.
        self.deliver_after_statuses = 0
        self.statuses = 0
        self._status_asked = trio.Event()
        # Handling labels, by the real rules (proto.labels): the default
        # policy, and the highest labels set per contact.
        self.labels = LabelPolicy.build()
        self.max_labels: dict[str, tuple[str, ...]] = {}
        self.handlers: Handlers = {
            api.Whoami: self.whoami,
            api.GetStatus: self.status,
            api.ContactAdd: self.contact_add,
            api.ContactList: self.contact_list,
            api.ContactShow: self.contact_show,
            api.ContactRemove: self.contact_remove,
            api.ContactRename: self.contact_rename,
            api.ContactVerify: self.contact_verify,
            api.ContactSetMaxLabel: self.contact_set_max_label,
            api.TrustAdd: self.trust_add,
            api.TrustList: self.trust_list,
            api.TrustRemove: self.trust_remove,
            api.TrustEndorsementInstall: self.trust_endorsement_install,
            api.TrustRotate: self.trust_rotate,
            api.ContactRequireEndorsement: self.contact_require_endorsement,
            api.TrustRevocationsImport: self.trust_revocations_import,
            api.TrustEnrol: self.trust_enrol,
            api.SendText: self.send_text,
            api.SendFile: self.send_file,
            api.Forward: self.forward,
            api.Inbox: self.inbox,
            api.Outbox: self.outbox,
            api.GetMessage: self.message,
            api.MarkRead: self.mark_read,
            api.ExportFile: self.export_file,
            api.Retry: self.retry,
        }

    # -- helpers for tests ----------------------------------------------------------

    def _new_id(self) -> str:
        self.next_id += 1
        return f"{self.next_id:032x}"

    def _contact(self, name: str) -> JSON:
        try:
            return self.contacts[name]
        except KeyError:
            raise UnknownContactError(name) from None

    def add(self, name: str) -> None:
        self.contacts[name] = {
            "name": name,
            "address": address_for(name),
            "added_ms": 1_700_000_000_000,
            "last_seen_ms": None,
            "reachable": False,
        }

    def _label(self, contact: str, text: str | None) -> str:
        """The label a send to ``contact`` carries, checked as the daemon does."""
        label = self.labels.label(text)
        ours = self.labels.limits(self.max_labels.get(contact, ()))
        may_send(label, (), ours=ours, recipient=contact)
        return label.text

    def receive_text(self, contact: str, body: str, label: str = "TLP:AMBER") -> JSON:
        self.seq += 1
        message: JSON = {
            "seq": self.seq,
            "id": self._new_id(),
            "contact": contact,
            "direction": "in",
            "kind": "text",
            "created_ms": 1_700_000_000_000 + self.seq,
            "received_ms": 1_700_000_000_500 + self.seq,
            "state": "received",
            "body": body,
            "content_type": "text/plain",
            "label": label,
        }
        self.messages[message["id"]] = message
        self.publish("message", message)
        return message

    def receive_file(self, contact: str, name: str, data: bytes) -> JSON:
        self.seq += 1
        message: JSON = {
            "seq": self.seq,
            "id": self._new_id(),
            "contact": contact,
            "direction": "in",
            "kind": "file",
            "created_ms": 1_700_000_000_000 + self.seq,
            "received_ms": 1_700_000_000_500 + self.seq,
            "state": "received",
            "file": {"name": name, "size": len(data), "complete": True},
        }
        self.messages[message["id"]] = message
        self.files[message["id"]] = data
        self.publish("message", message)
        return message

    def publish(self, topic: str, data: JSON) -> None:
        """Never blocks: a subscriber whose channel is full is dropped."""
        alive = []
        for topics, channel in self.subscribers:
            if topic in topics:
                try:
                    channel.send_nowait({"event": topic, "data": data})
                except trio.WouldBlock:
                    self.dropped += 1
                    channel.close()
                    continue
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    channel.close()
                    continue
            alive.append((topics, channel))
        self.subscribers = alive

    def live_subscribers(self) -> int:
        return sum(
            1 for _, channel in self.subscribers if channel.statistics().open_receive_channels
        )

    async def _enter(self, name: str) -> None:
        self.calls.append(name)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        await trio.lowlevel.checkpoint()

    # -- the Backend protocol -------------------------------------------------------

    async def whoami(self, request: api.Whoami) -> JSON:
        await self._enter("whoami")
        self.active -= 1
        if self.whoami_result is not None:
            return self.whoami_result  # type: ignore[no-any-return]
        return {"name": "alice", "address": ALICE, "card": card_for("alice")}

    async def status(self, request: api.GetStatus) -> JSON:
        await self._enter("status")
        self.active -= 1
        self.statuses += 1
        self._status_asked.set()
        self._status_asked = trio.Event()
        if self.fail is not None:
            raise self.fail
        return {
            "address": ALICE,
            "tor": {"state": "ok", "detail": "published"},
            "outbox_depth": sum(
                1
                for m in self.messages.values()
                if m["direction"] == "out" and m["state"] == "queued"
            ),
            "last_delivery_ms": None,
            "contacts": [
                {
                    "name": c["name"],
                    "address": c["address"],
                    "reachable": c["reachable"],
                    "last_seen_ms": c["last_seen_ms"],
                    "queued": 0,
                    "last_error": c.get("last_error", "" if c["reachable"] else "timeout"),
                    "since_ms": c["last_seen_ms"],
                    "failures": 0 if c["reachable"] else 2,
                    "retry_in": None if c["reachable"] else c.get("retry_in", 12.0),
                    "dialing_for": c.get("dialing_for"),
                    "refused": c.get("refused", ""),
                }
                for c in self.contacts.values()
            ],
            "registrar": self.registrar_status,
            "delegation_ends": self.delegation_ends,
        }

    async def contact_add(self, request: api.ContactAdd) -> JSON:
        card, name = request.card, request.name
        await self._enter("contact_add")
        self.active -= 1
        if not card.startswith("onionpost1:") or len(card) <= len("onionpost1:"):
            raise CardError("not a contact card: it does not start with 'onionpost1:'")
        chosen = name or card.split(":", 1)[1]
        if chosen in self.contacts:
            raise ConfigError(f"a contact named {chosen!r} exists already")
        self.add(chosen)
        if request.endorsement:
            # As the daemon records a card bundle's endorsement (trust.md §7.5).
            self.contacts[chosen]["endorsement"] = (
                self.endorsement_verdict or f"judged: {request.endorsement[:30]}"
            )
        return {"name": chosen, "address": address_for(chosen)}

    async def contact_list(self, request: api.ContactList) -> list[JSON]:
        await self._enter("contact_list")
        self.active -= 1
        return list(self.contacts.values())

    async def contact_show(self, request: api.ContactShow) -> JSON:
        """The contact by name or address; a test sets the rest of what the
        daemon would say in its ``show`` (an ``api.ContactDetail``'s fields)."""
        await self._enter("contact_show")
        self.active -= 1
        found = next(
            (c for c in self.contacts.values() if request.name in (c["name"], c["address"])),
            None,
        )
        if found is None:
            raise UnknownContactError(request.name)
        contact = {k: v for k, v in found.items() if k != "show"}
        delivery = {
            "name": contact["name"],
            "address": contact["address"],
            "reachable": contact["reachable"],
            "queued": 0,
            "refused": contact.get("refused", ""),
        }
        return {"contact": contact, "delivery": delivery, **found.get("show", {})}

    async def contact_remove(self, request: api.ContactRemove) -> JSON:
        name = request.name
        await self._enter("contact_remove")
        self.active -= 1
        contact = self._contact(name)
        del self.contacts[name]
        return {"name": name, "address": contact["address"], "groups": [], "lists": []}

    async def contact_rename(self, request: api.ContactRename) -> JSON:
        await self._enter("contact_rename")
        self.active -= 1
        contact = self._contact(request.name)
        if request.new_name != request.name and request.new_name in self.contacts:
            raise ConfigError(f"a contact named {request.new_name!r} already exists")
        del self.contacts[request.name]
        contact["name"] = request.new_name
        self.contacts[request.new_name] = contact
        return {"name": request.new_name, "address": contact["address"]}

    async def contact_verify(self, request: api.ContactVerify) -> JSON:
        name = request.name
        await self._enter("contact_verify")
        self.active -= 1
        self._contact(name)
        if request.confirm is not None:
            if "".join(request.confirm.split()) != "".join(SAFETY.split()):
                raise ConfigError(f"that is not the safety number with {name!r}")
            self.verified[name] = 1_700_000_000_000
        return {"name": name, "safety_number": SAFETY, "verified_ms": self.verified.get(name)}

    async def trust_add(self, request: api.TrustAdd) -> api.TrustAnchor:
        # The daemon's own rule: the anchor only with its safety number.
        anchor = confirm_anchor(request.anchor, request.safety_number)
        if anchor.agency in self.anchors:
            raise ConfigError(f"that anchor is installed already ({anchor.agency})")
        added = api.TrustAnchor(
            anchor.agency, anchor.fingerprint.hex(), anchor.safety_number, bool(anchor.mldsa65), 1
        )
        self.anchors[anchor.agency] = added
        self.anchor_keys[anchor.agency] = anchor
        return added

    async def contact_require_endorsement(
        self, request: api.ContactRequireEndorsement
    ) -> api.ContactRef:
        contact = self._contact(request.name)
        contact["require_endorsement"] = request.required
        return api.ContactRef(request.name, contact["address"])

    async def trust_endorsement_install(
        self, request: api.TrustEndorsementInstall
    ) -> api.Endorsement:
        # The daemon's rule, but for the endorsed address (this double has no key).
        try:
            proof = trust.EndorsementProof.decode(base64.b64decode(request.proof, validate=True))
            agency = trust.claimed_agency(proof.delegation)
        except (ValueError, TrustError) as exc:
            raise ConfigError("not an endorsement proof") from exc
        anchor = self.anchor_keys.get(agency)
        if anchor is None:
            raise ConfigError(f"no anchor of agency {agency!r} is installed")
        delegation = trust.open_delegation(anchor, proof.delegation).value
        e = trust.open_endorsement(delegation, proof.endorsement).value
        self.endorsement = proof
        # The daemon's verdict without a list of the agency held: unverified-stale.
        status = "endorsed" if agency in self.revocations else "unverified-stale"
        return api.Endorsement(
            e.agency, e.address, e.endpoint, e.unit, e.valid_until, status, replaces=e.replaces
        )

    async def trust_rotate(self, request: api.TrustRotate) -> api.RotationAnnounced:
        # The daemon's parse of the card and the proof; this double holds no
        # endorsement of its own to check the move against.
        card = ContactCard.parse(request.card)
        try:
            proof = trust.EndorsementProof.decode(base64.b64decode(request.proof, validate=True))
            agency = trust.claimed_agency(proof.delegation)
            e = trust.stored_endorsement(proof.endorsement)
        except (ValueError, TrustError) as exc:
            raise ConfigError("not an endorsement proof") from exc
        if e.address != str(card.address) or not e.replaces:
            raise ConfigError("that endorsement cannot move this endpoint: wrong-address")
        self.rotation = proof
        return api.RotationAnnounced(
            e.address, e.replaces, agency, "agency", "endorsed", len(self.contacts)
        )

    async def trust_enrol(self, request: api.TrustEnrol) -> api.Endorsement:
        # The daemon's parse of the code; this double reaches no registrar and
        # answers as one that endorsed us as "Desk" for a week would.
        code = EnrolmentCode.parse(request.code)
        self.enrolled_with = str(code.registrar)
        self.enrol_again = request.again
        until = int(time.time()) + 7 * 86_400
        return api.Endorsement(
            "acme", "", "Desk", "", until, "unverified-stale", replaces=self.enrol_replaces
        )

    async def trust_revocations_import(
        self, request: api.TrustRevocationsImport
    ) -> api.RevocationsImported:
        # The daemon's rules: its anchor installed, signed, newer than the one held.
        try:
            bundle = RevocationBundle.decode(base64.b64decode(request.bundle, validate=True))
            agency = trust.claimed_agency(bundle.delegation)
        except (ValueError, TrustError) as exc:
            raise ConfigError("not a revocation list file") from exc
        anchor = self.anchor_keys.get(agency)
        if anchor is None:
            raise ConfigError(f"no anchor of agency {agency!r} is installed")
        offered = trust.open_revocations(
            anchor, bundle.delegation, bundle.revocations, now=int(time.time())
        ).value
        held = self.revocations.get(agency)
        if held is not None and offered.serial <= held.serial:
            raise ConfigError("a list older than the one held")
        self.revocations[agency] = offered
        return api.RevocationsImported(
            agency, offered.serial, offered.issued_at, len(offered.revoked), 0
        )

    async def trust_list(self, request: api.TrustList) -> tuple[api.TrustAnchor, ...]:
        return tuple(self.anchors[k] for k in sorted(self.anchors))

    async def trust_remove(self, request: api.TrustRemove) -> api.TrustAnchor:
        for agency, anchor in self.anchors.items():
            if request.anchor in {agency, anchor.fingerprint}:
                return self.anchors.pop(agency)
        raise NotFoundError(f"no trust anchor is {request.anchor!r}")

    def _sent_before(self, message_id: str | None, contact: str, content: JSON) -> bool:
        """Whether this send was made before under its id (as the store decides)."""
        if message_id is None or message_id not in self.messages:
            return False
        before = self.messages[message_id]
        if before["contact"] != contact or any(before.get(k) != v for k, v in content.items()):
            raise ConfigError(f"message id {message_id} is already another message's")
        return True

    async def send_text(self, request: api.SendText) -> JSON:
        contact, body, content_type = request.contact, request.body, request.content_type
        await self._enter("send_text")
        try:
            moved = self._contact(contact).get("moved")
            if moved:
                # As a home that has moved refuses a contact told of it.
                raise ConfigError(
                    f"this home has moved to {moved}: {contact!r} now accepts only the new "
                    "address; send from the new home"
                )
            label = self._label(contact, request.label)
            content = {"kind": "text", "body": body, "content_type": content_type, "label": label}
            if self._sent_before(request.id, contact, content):
                return {"id": request.id, "state": "queued", "label": label}
            message_id = request.id or self._new_id()
            # Queued first, answered after: a hold is a daemon slow to answer.
            self.messages[message_id] = {
                "id": message_id,
                "contact": contact,
                "direction": "out",
                "kind": "text",
                "created_ms": 1_700_000_000_000,
                "received_ms": None,
                "state": "queued",
                "body": body,
                "content_type": content_type,
                "label": label,
            }
            if self.nursery is not None:
                self.nursery.start_soon(self._deliver_text, message_id)
            if self.hold is not None:
                await self.hold.wait()
            return {"id": message_id, "state": "queued", "label": label}
        finally:
            self.active -= 1

    async def send_file(self, request: api.SendFile) -> JSON:
        contact, path = request.contact, request.path
        await self._enter("send_file")
        self.active -= 1
        self._contact(contact)
        try:
            # On the loop, not in a thread: tests on virtual time use this double.
            size = os.path.getsize(path)  # noqa: ASYNC240
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
        name = os.path.basename(path)
        file = {"name": name, "size": size, "complete": True}
        label = self._label(contact, request.label)
        if self._sent_before(request.id, contact, {"kind": "file", "file": file, "label": label}):
            return {"id": request.id, "name": name, "size": size, "state": "queued", "label": label}
        message_id = request.id or self._new_id()
        self.messages[message_id] = {
            "id": message_id,
            "contact": contact,
            "direction": "out",
            "kind": "file",
            "created_ms": 1_700_000_000_000,
            "received_ms": None,
            "state": "queued",
            "file": {"name": name, "size": size, "complete": True},
            "label": label,
        }
        if self.nursery is not None:
            self.nursery.start_soon(self._deliver_file, message_id, size)
        return {"id": message_id, "name": name, "size": size, "state": "queued", "label": label}

    async def forward(self, request: api.Forward) -> JSON:
        """As the daemon forwards a text: the label kept or raised, RED kept
        in its audience, the recipient's limit holding."""
        await self._enter("forward")
        self.active -= 1
        self._contact(request.to)
        try:
            source = self.messages[request.id]
        except KeyError:
            raise NotFoundError(f"no message {request.id}") from None
        original = self.labels.known(source.get("label", ""))
        new = original if request.label is None else self.labels.labels.parse(request.label)
        may_forward(original, new)
        check_audience(new, [request.to], via=forward_via(original), audience=[source["contact"]])
        self._label(request.to, new.text)
        message_id = self._new_id()
        self.messages[message_id] = {
            **source,
            "id": message_id,
            "contact": request.to,
            "direction": "out",
            "state": "queued",
            "label": new.text,
            "seq": None,
        }
        return {"id": message_id, "state": "queued", "label": new.text}

    async def contact_set_max_label(self, request: api.ContactSetMaxLabel) -> JSON:
        await self._enter("contact_set_max_label")
        self.active -= 1
        self._contact(request.name)
        self.max_labels[request.name] = tuple(
            self.labels.labels.parse(text).text for text in request.labels
        )
        return {"name": request.name, "max_labels": self.max_labels[request.name], "accepts": []}

    async def _deliver_text(self, message_id: str) -> None:
        after = self.statuses + self.deliver_after_statuses
        with trio.move_on_after(10):  # then delivered anyway: a test fails, never hangs
            while self.statuses < after:
                await self._status_asked.wait()
        await trio.sleep(0.05)
        self.publish("state", {"id": message_id, "state": "sent"})
        await trio.sleep(0.01)
        final = "delivered" if self.deliver_texts else "expired"
        self.messages[message_id]["state"] = final
        self.publish("state", {"id": message_id, "state": final})

    async def _deliver_file(self, message_id: str, size: int) -> None:
        await trio.sleep(0.05)
        self.publish("state", {"id": message_id, "state": "sent"})
        step = max(1, size // 4)
        for sent in range(step, size + step, step):
            await trio.sleep(0.01)
            self.publish(
                "state",
                {"id": message_id, "state": "sending", "bytes": min(sent, size), "size": size},
            )
        if self.deliver_files:
            self.messages[message_id]["state"] = "delivered"
            self.publish("state", {"id": message_id, "state": "delivered"})
        else:
            self.publish(
                "state", {"id": message_id, "state": "refused", "reason": self.file_refusal}
            )

    async def inbox(self, request: api.Inbox) -> list[JSON]:
        after, limit, unread = request.after, request.limit, request.unread
        await self._enter("inbox")
        self.active -= 1
        incoming = sorted(
            (
                m
                for m in self.messages.values()
                if m["direction"] == "in"
                and m["seq"] > after
                and (not unread or m["state"] == "received")
            ),
            key=lambda m: m["seq"],
        )
        return incoming[:limit]

    async def outbox(self, request: api.Outbox) -> list[JSON]:
        contact, limit = request.contact, request.limit
        await self._enter("outbox")
        self.active -= 1
        if contact is not None:
            self._contact(contact)
        waiting = [
            m
            for m in self.messages.values()
            if m["direction"] == "out"
            and m["state"] in ("queued", "sent")
            and contact in (None, m["contact"])
        ]
        return waiting[:limit]

    async def message(self, request: api.GetMessage) -> JSON:
        await self._enter("message")
        self.active -= 1
        try:
            return self.messages[request.id]
        except KeyError:
            raise NotFoundError(f"no message {request.id}") from None

    async def mark_read(self, request: api.MarkRead) -> JSON:
        ids = request.ids
        await self._enter("mark_read")
        self.active -= 1
        self.marked.extend(ids)
        for message_id in ids:
            if message_id in self.messages and self.messages[message_id]["direction"] == "in":
                self.messages[message_id]["state"] = "read"
        return {"marked": len(ids)}

    async def export_file(self, request: api.ExportFile) -> JSON:
        file_id, dest = request.id, request.dest
        await self._enter("export_file")
        self.active -= 1
        if file_id not in self.files:
            raise NotFoundError(f"no file {file_id}")
        Path(dest).write_bytes(self.files[file_id])  # noqa: ASYNC240 (as send_file)
        return {"path": dest, "size": len(self.files[file_id])}

    async def retry(self, request: api.Retry) -> JSON:
        contact = request.contact
        await self._enter("retry")
        self.active -= 1
        if contact is not None:
            self._contact(contact)
        self.retried.append(contact)
        return {"contacts": 1 if contact is not None else len(self.contacts)}

    def subscribe(self, topics: tuple[str, ...]) -> trio.MemoryReceiveChannel[JSON]:
        self.calls.append("subscribe")
        send, receive = trio.open_memory_channel[JSON](self.subscriber_buffer)
        self.subscribers.append((frozenset(topics), send))
        return receive


# Errors the double raises from ``status`` when a test sets ``fail``, by expected code.
ERRORS_BY_CODE: dict[str, BaseException] = {
    "unknown-contact": UnknownContactError("zed"),
    "bad-card": CardError("malformed card: bad signature"),
    "not-found": NotFoundError("no message 00"),
    "label": LabelError("bob accepts up to TLP:AMBER", reason=LabelReason.ABOVE_LIMIT),
    "config": ConfigError("bad setting"),
    "store": StoreError("the store is locked"),
    "tor": TorError("tor is not running"),
    "protocol": RemoteProtocolError("peer misbehaved"),
}


@contextmanager
def short_tmpdir() -> Iterator[Path]:
    """A directory whose socket paths fit AF_UNIX's 107 bytes (pytest's tmp_path may not)."""
    directory = Path(tempfile.mkdtemp(prefix="op-", dir="/tmp"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class ServerThread:
    """serve_api over a MemoryBackend in its own thread and trio run (for sync tests)."""

    def __init__(self, backend: MemoryBackend, socket_path: Path) -> None:
        self.backend = backend
        self.socket_path = socket_path
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported by __exit__
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as self._scope:
            async with trio.open_nursery() as nursery:
                self.backend.nursery = nursery
                await nursery.start(serve_api, self.backend, self.socket_path)
                self._ready.set()
                await trio.sleep_forever()

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a sync function in the server's trio thread (e.g. ``backend.publish``)."""
        assert self._token is not None
        return trio.from_thread.run_sync(fn, *args, trio_token=self._token)

    def __enter__(self) -> ServerThread:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None and self._scope is not None:
            with suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._scope.cancel, trio_token=self._token)
        self._thread.join(10)
        if self._error is not None:
            raise self._error
