"""The onionpost daemon: wires tor, the listener, the delivery engine and the local API.

Theory of operation
-------------------
::

    run()
    └── host.running         the OnionHost (onionpost.host): the local control
        │                    socket, our tor supervised, the static key renewed
        ├── host.serve       inbound onion streams -> responder handshakes
        │                    -> engine.run_inbound
        ├── host.publish     the onion service; our contacts (and the members our
        │                    groups introduced, groups.md §9) as its authorized clients
        ├── engine.run       delivery: a link per contact, a session per channel
        │                    (``delivery/``: the failure domains live there)
        └── owner.run        the link to our own mailbox (``_mailbox.py``)

This module is the local API's backend: its handlers (one per request type
an endpoint serves, :attr:`Daemon.handlers`) turn requests into store reads
and engine calls, and shape the records; their store calls run in the
engine's worker, off the event loop. Those of distribution lists are in
:mod:`onionpost.daemon._lists`.

Sends are idempotent on their id: the client chooses a message's id, and
the same ``send_text``/``send_file`` again (its answer was lost: the daemon
was slow, the connection cut) finds the message queued under that id and
answers as the first did; the store refuses the id for another contact or
another content. Two sends of one id run one after the other. Delivery
itself (dialing, sessions, exactly once, quotas) is the engine's.

Logs carry ids, contact handles (``contact=#3``, :mod:`onionpost._logs`)
and states, never message contents or keys; names and onion addresses only
at DEBUG, so the journal does not hold the contact graph.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import os
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, Final

import trio

from onionpost import api
from onionpost._logs import contact_ref, safe
from onionpost.daemon import _evidence, _labels
from onionpost.daemon._contacts import (
    contact_record,
    contact_status,
    endorsement_detail,
    gather,
)
from onionpost.daemon._groups import GroupHandlers
from onionpost.daemon._lists import ListHandlers
from onionpost.daemon._mailbox import MailboxDial, Mailboxes, OwnerLink
from onionpost.daemon._registrar import RegistrarLink
from onionpost.daemon.delivery import (
    DeliveryEngine,
    DeliveryPolicy,
    Dial,
    Imported,
    Reconciled,
    Witness,
    announce_rotation,
    import_revocations,
    install_own,
    message_record,
    moved_refusal,
    own_in_detail,
    receive_staple,
    recheck_contacts,
    refusals,
    rotation_progress,
    unfit_mailbox,
)
from onionpost.errors import ConfigError, NotFoundError, UnknownContactError
from onionpost.home import (
    Config,
    ContactCard,
    Paths,
    Secrets,
    endorsement_line,
    parse_endorsement_line,
    safety_number,
    write_card_file,
)
from onionpost.host import EventHub, Handlers, OnionHost, StoreWorker, ThreadWorker
from onionpost.proto import messages as m
from onionpost.proto.address import OnionAddress
from onionpost.proto.groups import MemberCard
from onionpost.proto.pairing import MailboxAnnouncement
from onionpost.proto.trust import (
    Anchor,
    Verdict,
    confirm_anchor,
    stored_checkpoint,
    stored_revocations,
)
from onionpost.store import Contact, Direction, Store, Stored
from onionpost.transport import SecureChannel

__all__ = ["Daemon"]

log = logging.getLogger("onionpost.daemon")


def _trust_anchor(
    anchor: Anchor, added_ms: int | None, held: tuple[bytes | None, bytes | None] = (None, None)
) -> api.TrustAnchor:
    revocations, checkpoint = held
    listed = None if revocations is None else stored_revocations(revocations).value
    return api.TrustAnchor(
        anchor.agency,
        anchor.fingerprint.hex(),
        anchor.safety_number,
        bool(anchor.mldsa65),
        added_ms,
        revocations_serial=None if listed is None else listed.serial,
        revocations_issued_at=None if listed is None else listed.issued_at,
        checkpoint_size=None
        if checkpoint is None
        else stored_checkpoint(checkpoint).checkpoint.size,
    )


def _now_ms() -> int:
    return int(time.time() * 1000)


class Daemon:
    """Implements the local API's :class:`~onionpost.host.Backend` on an :class:`OnionHost`."""

    unserved: Final = (
        "this home runs an endpoint, not a mailbox or a registrar ('mailbox code' "
        "runs on the mailbox's host, 'registrar code', 'revoke' and 'list' with the "
        "registrar's home)"
    )

    def __init__(
        self,
        paths: Paths,
        secrets: Secrets,
        config: Config,
        store: Store,
        *,
        dial: Dial | None = None,
        policy: DeliveryPolicy | None = None,
        mailbox_dial: MailboxDial | None = None,
        worker: StoreWorker | None = None,
    ) -> None:
        """``dial`` reaches a contact; the default goes through our tor. Tests and
        benchmarks without tor give their own and run :attr:`engine` themselves.
        ``policy`` defaults to the one ``config`` gives; ``worker`` runs store
        calls (a worker thread by default)."""
        self._paths = paths
        self._secrets = secrets
        self._config = config
        self._store = store
        self._hub = EventHub()
        self.host = OnionHost(
            paths,
            secrets,
            config,
            clients=self.authorized_clients,
            hub=self._hub,
            log=log,
            tor_back=self._tor_back,
        )
        policy = policy or DeliveryPolicy.from_config(config)
        registrar_dial = mailbox_dial or self._dial_registrar
        mailbox_dial = mailbox_dial or self._dial_mailbox
        self.mailboxes = Mailboxes(secrets, store, mailbox_dial, self._write_card)
        self._worker = worker or ThreadWorker()
        self._witness = Witness(secrets.identity)
        self.engine = DeliveryEngine(
            store,
            self._hub,
            dial or self._dial,
            policy,
            address=secrets.identity.address,
            mailbox=self.mailboxes,
            worker=self._worker,
            identity=secrets.identity,
            peers_changed=self._peers_changed,
        )
        self.owner = OwnerLink(
            secrets, store, self.engine, self.mailboxes, mailbox_dial, policy, self._worker
        )
        # Our agency's registrar (trust.md §8), reached as a mailbox is.
        self.registrar = RegistrarLink(
            secrets,
            store,
            paths.home / "registrar.txt",
            registrar_dial,
            self._worker,
            config.trust_refresh,
            held=self._list_held,
            installed=self.engine.restaple,
        )
        self._sending: dict[bytes, trio.Event] = {}  # id -> set when its send ends
        # Whether this home announces a move (trust.md §6): read once, set by
        # trust_rotate, so that a send asks the store about it only then.
        self._moving: bool | None = None
        self.lists = lists = ListHandlers(
            store, self.engine, self._worker, config.max_file_size, config.labels
        )
        self._labels = config.labels
        self.groups = groups = GroupHandlers(
            store,
            self.engine,
            self._worker,
            secrets.identity,
            MemberCard(
                secrets.identity.public_key, secrets.client_auth_public, secrets.display_name
            ),
            config.labels,
            max_file_size=config.max_file_size,
        )
        self.handlers: Handlers = {
            api.Whoami: self.whoami,
            api.GetStatus: self.status,
            api.ContactAdd: self.contact_add,
            api.ContactList: self.contact_list,
            api.ContactShow: self.contact_show,
            api.ContactRemove: self.contact_remove,
            api.ContactRename: self.contact_rename,
            api.TrustAdd: self.trust_add,
            api.TrustList: self.trust_list,
            api.TrustRemove: self.trust_remove,
            api.TrustEndorsementInstall: self.trust_endorsement_install,
            api.TrustRotate: self.trust_rotate,
            api.ContactRequireEndorsement: self.contact_require_endorsement,
            api.TrustRevocationsImport: self.trust_revocations_import,
            api.TrustEnrol: self.trust_enrol,
            api.ContactVerify: self.contact_verify,
            api.ContactSetMaxLabel: self.contact_set_max_label,
            api.SendText: self.send_text,
            api.SendTexts: self.send_texts,
            api.SendFile: self.send_file,
            api.Forward: self.forward,
            api.Inbox: self.inbox,
            api.Outbox: self.outbox,
            api.GetMessage: self.message,
            api.MarkRead: self.mark_read,
            api.ExportFile: self.export_file,
            api.LogShow: self.log_show,
            api.LogVerify: self.log_verify,
            api.EvidenceExport: self.evidence_export,
            api.Retry: self.retry,
            api.MailboxPair: self.mailbox_pair,
            api.GetMailboxStatus: self.mailbox_status,
            api.MailboxWipe: self.mailbox_wipe,
            api.ListCreate: lists.list_create,
            api.ListAdd: lists.list_add,
            api.ListRemove: lists.list_remove,
            api.ListDelete: lists.list_delete,
            api.ListShow: lists.list_show,
            api.ListList: lists.list_list,
            api.ListSendText: lists.list_send_text,
            api.ListSendFile: lists.list_send_file,
            api.GroupCreate: groups.group_create,
            api.GroupAdd: groups.group_add,
            api.GroupRemove: groups.group_remove,
            api.GroupLeave: groups.group_leave,
            api.GroupRename: groups.group_rename,
            api.GroupPromote: groups.group_promote,
            api.GroupDemote: groups.group_demote,
            api.GroupShow: groups.group_show,
            api.GroupList: groups.group_list,
            api.GroupSendText: groups.group_send_text,
            api.GroupSendFile: groups.group_send_file,
        }

    # -- lifecycle -----------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[OnionAddress] = trio.TASK_STATUS_IGNORED
    ) -> None:
        address = self._secrets.identity.address
        async with self.host.running(self) as nursery:
            await self.host.serve(nursery, self.engine.run_inbound, self.engine.decide)
            await self.host.publish()
            contacts = self._store.contacts.peers()
            for contact in contacts:
                await self.host.add_client_auth(contact.address, self._secrets.client_auth_private)
            await nursery.start(self.engine.run)
            nursery.start_soon(self.owner.run)
            nursery.start_soon(self.registrar.run)
            self.host.ready()
            log.info("event=ready contacts=%d", len(contacts))
            log.debug("event=ready address=%s", address)
            task_status.started(address)
            await trio.sleep_forever()

    def authorized_clients(self) -> list[bytes]:
        """Our onion service's authorized clients: our contacts, and the
        members of our groups introduced to us (groups.md §9)."""
        return [c.client_auth_public for c in self._store.contacts.peers()]

    async def _peers_changed(self, done: Reconciled) -> None:
        """Members were introduced or dropped (the engine's links are): our
        onion service lets in exactly our peers now, our tor reaches the new
        ones' services with our client key, and our mailbox learns who may
        deposit for us."""
        # Registered at our mailbox (or no more), as contacts are; whatever tor says.
        self.owner.changed()
        await self._authorize()
        for peer in done.dropped:
            await self.host.remove_client_auth(peer.address)
        for peer in done.added:
            await self.host.add_client_auth(peer.address, self._secrets.client_auth_private)

    def _tor_back(self) -> None:
        if self.engine.running:
            # Tor is back (relaunched, service republished): our contacts
            # learn it at once, and every link redials now.
            self.engine.kick(retry_now=True)
            self.engine.announce()

    def renew_static_key(self, now: int) -> bool:
        """See :meth:`OnionHost.renew_static_key`."""
        return self.host.renew_static_key(now)

    async def _dial(self, contact: Contact) -> SecureChannel:
        """Reach ``contact`` through tor. The engine sets the deadline."""
        return await self.host.dial(contact.address, handle=f"contact={contact_ref(contact.id)}")

    async def _dial_mailbox(
        self, mailbox: OnionAddress, client_auth_private: bytes
    ) -> SecureChannel:
        """Reach a mailbox (ours, or a contact's) through tor, authorized with
        ``client_auth_private`` (ours; a setup code's while pairing)."""
        return await self.host.dial(mailbox, client_auth_private, handle="peer=mailbox")

    async def _dial_registrar(
        self, registrar: OnionAddress, client_auth_private: bytes
    ) -> SecureChannel:
        """Reach our agency's registrar, as a mailbox is reached (its own
        handle in the log: a registrar is no mailbox)."""
        return await self.host.dial(registrar, client_auth_private, handle="peer=registrar")

    # -- the local API (Backend) -----------------------------------------------------
    #
    # Every store call runs through the engine's worker, off the event loop:
    # an fsync in the store never stalls the loop (nor the sessions on it).

    def subscribe(self, topics: tuple[str, ...]) -> trio.MemoryReceiveChannel[dict[str, Any]]:
        return self._hub.subscribe(list(topics))

    def _write_card(self, announcement: MailboxAnnouncement | None) -> None:
        """Our card file names our current mailbox (or none): ``onionpost
        whoami`` reads it without a daemon (storage.md §Contact card)."""
        card = ContactCard.issue(self._secrets, mailbox=announcement)
        try:
            if write_card_file(self._paths.card, card):
                log.info("event=card_written mailbox=%s", "none" if announcement is None else "set")
        except OSError as exc:
            log.warning("event=card_write_failed error=%s", safe(exc.strerror or ""))

    async def whoami(self, request: api.Whoami) -> api.Identity:
        card = ContactCard.issue(self._secrets, mailbox=self.mailboxes.signed())
        own = await self._worker(self._store.trust.own)
        now = _now_ms()
        address = str(self._secrets.identity.address)
        judged = await self._worker(own_in_detail, self._store, address, now)
        return api.Identity(
            self._secrets.display_name,
            address,
            card.to_line(),
            "" if own is None else endorsement_line(own[1]),
            endorsed=None
            if judged is None
            else endorsement_detail(judged.status, judged.describe(), now, judged),
        )

    def _status_rows(self) -> tuple[list[tuple[Contact, int, int]], int, int | None]:
        store = self._store
        rows = [
            (c, store.outbox.outbox_depth(c.id), store.mailbox.deposited_count(c.id))
            for c in store.contacts.all()
        ]
        return rows, store.outbox.outbox_depth(), store.outbox.last_delivery()

    def _alarm_count(self) -> int:
        return len(self._store.evidence.alarms())

    async def status(self, request: api.GetStatus) -> api.Status:
        rows, depth, last_delivery = await self._worker(self._status_rows)
        contacts = []
        for contact, queued, deposited in rows:
            contacts.append(
                contact_status(contact, self.engine.status(contact.id), queued, deposited)
            )
        return api.Status(
            address=str(self._secrets.identity.address),
            tor=self.host.tor_status,
            outbox_depth=depth,
            last_delivery_ms=last_delivery,
            contacts=tuple(contacts),
            evidence_alarms=await self._worker(self._alarm_count),
            trust_alarms=len(await self._worker(self._store.trust.alarms)),
            registrar=await self.registrar.status(),
            delegation_ends=await self.registrar.delegation_ends(),
            rotation=None
            if (moving := await self._worker(rotation_progress, self._store)) is None
            else api.RotationStatus(*moving),
        )

    def _add_contact(self, name: str, card: ContactCard) -> Contact:
        store = self._store
        if card.mailbox is not None:
            unfit = unfit_mailbox(
                card.mailbox.mailbox,
                self._secrets.identity.address,
                lambda a: a == card.address or store.contacts.contact_by_address(a) is not None,
            )
            if unfit is not None:
                # Dialing it as a mailbox would tell that endpoint whose
                # contact we are (mailbox.md §Announcement).
                raise ConfigError(
                    "that card names as its mailbox this endpoint, the card's own "
                    "address or one of our contacts: refused"
                )
        with store.transaction():
            contact = store.contacts.add_contact(
                name, card.address, card.client_auth_public, _now_ms()
            )
            if card.mailbox is not None:
                store.mailbox.set_contact_mailbox(
                    contact.id, card.mailbox.mailbox, card.mailbox.version
                )
        return store.contacts.contact(contact.name)

    async def contact_add(self, request: api.ContactAdd) -> api.ContactRef:
        parsed = ContactCard.parse(request.card)
        if parsed.address == self._secrets.identity.address:
            raise ConfigError("that card is this endpoint's own")
        # A card bundle's endorsement (trust.md §7.5): read before anything is
        # added, judged as a staple once the contact exists.
        proof = None if not request.endorsement else parse_endorsement_line(request.endorsement)
        name = parsed.name if request.name is None else request.name  # "" is refused
        contact = await self._worker(self._add_contact, name, parsed)
        if proof is not None:
            await self._worker(
                receive_staple,
                self._store,
                contact,
                m.TrustStaple(proof, b"", b""),
                _now_ms(),
                required=self.engine.policy.require_endorsement,
            )
        await self._authorize()
        await self.host.add_client_auth(contact.address, self._secrets.client_auth_private)
        if self.engine.running:
            # Judged before its link starts: with require_endorsement, a new
            # contact has presented nothing, and nothing may go to it yet.
            await self._refusals_changed()
            self.engine.add_contact(contact)
        self.owner.changed()
        log.info("event=contact_added contact=%s", contact_ref(contact.id))
        log.debug(
            "event=contact_added contact=%s name=%s address=%s",
            contact_ref(contact.id),
            safe(contact.name),
            contact.address,
        )
        return api.ContactRef(contact.name, str(contact.address))

    async def _authorize(self) -> None:
        if self.host.published:
            await self.host.authorize()

    def _contacts_with_limits(self) -> list[tuple[Contact, tuple[str, ...], tuple[str, ...]]]:
        store = self._store
        return [(c, *store.contacts.label_limits(c.id)) for c in store.contacts.all()]

    async def contact_list(self, request: api.ContactList) -> tuple[api.Contact, ...]:
        verified = await self._worker(self._store.contacts.verified)
        endorsed = await self._worker(self._store.trust.endorsements)
        required = await self._worker(self._store.trust.required)
        rotated = await self._worker(self._store.trust.rotations)
        return tuple(
            contact_record(
                c,
                self.engine.status(c.id),
                verified_ms=verified.get(c.id),
                endorsement=endorsed.get(c.id),
                required=required.get(c.id),
                rotation=rotated.get(c.id),
                max_labels=local,
                accepts=advertised,
            )
            for c, local, advertised in await self._worker(self._contacts_with_limits)
        )

    def _contact_shown(self, name: str) -> Contact:
        """A contact by name, else by its address; else a member a group
        introduced, by its address or card name (as contact_verify finds it)."""
        try:
            return self._contact_or_introduced(name)
        except UnknownContactError:
            try:
                address = OnionAddress.parse(name.strip())
            except ConfigError:
                raise UnknownContactError(name) from None
            found = self._store.contacts.contact_by_address(address)
            if found is None:
                raise
            return found

    async def contact_show(self, request: api.ContactShow) -> api.ContactDetail:
        """Everything about one contact (trust.md §7: its endorsement in
        detail, and why it is refused)."""
        contact = await self._worker(self._contact_shown, request.name)
        got = await self._worker(gather, self._store, contact, _now_ms())
        link = self.engine.status(contact.id)
        stored, rotation = got.endorsement, got.rotation
        configured = self.engine.policy.require_endorsement
        return api.ContactDetail(
            contact=contact_record(
                contact,
                link,
                verified_ms=got.verified_ms,
                endorsement=stored,
                required=got.required,
                rotation=rotation,
                max_labels=got.max_labels,
                accepts=got.accepts,
            ),
            delivery=contact_status(contact, link, got.queued, got.deposited),
            endorsement=None
            if stored is None
            else endorsement_detail(stored.status, stored.describe, stored.checked_ms, got.judged),
            require_endorsement=configured if got.required is None else got.required,
            require_endorsement_from="config.toml" if got.required is None else "contact",
            rotated_from=None
            if rotation is None
            else str(OnionAddress.from_public_key(rotation.old_address)),
            introduced=contact.introduced,
            groups=got.groups,
        )

    async def contact_set_max_label(self, request: api.ContactSetMaxLabel) -> api.ContactLabels:
        name, local, advertised = await self._worker(
            _labels.set_max_label, self._store, self._labels, request.name, request.labels
        )
        return api.ContactLabels(name, local, advertised)

    def _remove_contact(self, name: str) -> tuple[Contact, list[bytes]]:
        """The contact removed and what waited for it expired, in one transaction."""
        with self._store.transaction():
            contact = self._store.contacts.remove_contact(name)
            return contact, self._store.outbox.expire_contact(contact.id)

    async def contact_remove(self, request: api.ContactRemove) -> api.ContactRef:
        contact, expired = await self._worker(self._remove_contact, request.name)
        for message_id in expired:
            self._hub.publish(api.StateChange(message_id.hex(), api.MessageState.EXPIRED))
        self.engine.remove_contact(contact.id)
        await self._authorize()
        await self.host.remove_client_auth(contact.address)
        self.owner.changed()
        # Still a member of a group we share: introduced now (groups.md §9).
        self.engine.reconcile_introductions()
        log.info("event=contact_removed contact=%s", contact_ref(contact.id))
        return api.ContactRef(contact.name, str(contact.address))

    async def contact_rename(self, request: api.ContactRename) -> api.ContactRef:
        contact = await self._worker(
            self._store.contacts.rename_contact, request.name, request.new_name, _now_ms()
        )
        self.engine.contact_changed(contact)
        log.info("event=contact_renamed contact=%s", contact_ref(contact.id))
        return api.ContactRef(contact.name, str(contact.address))

    def _contact_or_introduced(self, name: str) -> Contact:
        """A contact by name, else a member a group introduced, by its
        address or its (unique) card name: whose safety number we compare."""
        try:
            return self._store.contacts.contact(name)
        except UnknownContactError:
            found = self._introduced(name)
            if found is None:
                raise
            return found

    def _introduced(self, name: str) -> Contact | None:
        """A member a group introduced, by its address or its card's name;
        ConfigError when several have that name."""
        introduced = self._store.contacts.introduced()
        by_name = [p for p in introduced if p.name.casefold() == name.casefold()]
        by_address = [
            p
            for p in introduced
            if str(p.address) == name.lower().removesuffix(".onion") + ".onion"
        ]
        if by_address:
            return by_address[0]
        if len(by_name) > 1:
            raise ConfigError(
                f"several members introduced to us are named {name!r}: give its address"
            )
        return by_name[0] if by_name else None

    async def contact_verify(self, request: api.ContactVerify) -> api.SafetyNumber:
        contact = await self._worker(self._contact_or_introduced, request.name)
        number = safety_number(self._secrets.identity.public_key, contact.address.public_key)
        if request.confirm is not None:
            heard = "".join(str(request.confirm).split()).encode()
            digits = "".join(number.split()).encode()
            if len(heard) != len(digits) or not heard.isdigit():
                # A slip of the keyboard, not a different number: the length
                # and the alphabet are the same for every safety number.
                raise ConfigError(
                    f"a safety number is {len(digits)} digits (spaces aside); "
                    f"that was {len(heard)} characters"
                    + ("" if not heard or heard.isdigit() else ", not all digits")
                )
            if not hmac.compare_digest(heard, digits):
                raise ConfigError(
                    f"that is not the safety number with {contact.name!r}: someone may be "
                    "between you; do not trust this contact until the numbers match"
                )
            now = int(time.time() * 1000)
            await self._worker(
                self._store.contacts.mark_verified,
                str(contact.address) if contact.introduced else contact.name,
                number,
                now,
            )
            log.info("event=contact_verified contact=%s", contact_ref(contact.id))
            return api.SafetyNumber(contact.name, number, now)
        verified = await self._worker(self._store.contacts.verified)
        return api.SafetyNumber(contact.name, number, verified.get(contact.id))

    async def contact_require_endorsement(
        self, request: api.ContactRequireEndorsement
    ) -> api.ContactRef:
        """Set one contact's require_endorsement apart from the config's (trust.md §7.4)."""
        if request.required not in (True, False, None):
            raise ConfigError("required is true, false or null")
        contact = await self._worker(self._store.contacts.contact, request.name)
        await self._worker(self._store.trust.set_required, contact.id, request.required)
        log.info(
            "event=contact_trust_policy contact=%s required=%s",
            contact_ref(contact.id),
            request.required,
        )
        await self._refusals_changed()
        return api.ContactRef(contact.name, str(contact.address))

    async def _refusals_changed(self) -> None:
        required = self.engine.policy.require_endorsement
        self.engine.apply_refusals(await self._worker(refusals, self._store, required=required))

    async def trust_add(self, request: api.TrustAdd) -> api.TrustAnchor:
        """Install an anchor once the user typed its safety number (trust.md §1)."""
        anchor = confirm_anchor(request.anchor, request.safety_number)
        stored = await self._worker(self._store.trust.add, anchor, _now_ms())
        log.info("event=trust_anchor_added agency=%s", safe(anchor.agency))
        # Contacts whose endorsement by this agency waited for its anchor
        # (a card bundle added first, a session before) are judged now, not
        # at the next housekeeping round.
        if await self._worker(recheck_contacts, self._store, stored.anchor, _now_ms()):
            await self._refusals_changed()
        return _trust_anchor(stored.anchor, stored.added_ms)

    async def trust_list(self, request: api.TrustList) -> tuple[api.TrustAnchor, ...]:
        stored = await self._worker(self._store.trust.all)
        held = await self._worker(self._store.trust.held)
        return tuple(
            _trust_anchor(s.anchor, s.added_ms, held.get(s.anchor.fingerprint, (None, None)))
            for s in stored
        )

    async def trust_endorsement_install(
        self, request: api.TrustEndorsementInstall
    ) -> api.Endorsement:
        """Keep our own endorsement, presented in every session (trust.md §7.1)."""
        try:
            proof = base64.b64decode(request.proof, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ConfigError("an endorsement proof is sent as base64") from exc
        address = str(self._secrets.identity.address)
        verdict = await self._worker(install_own, self._store, address, proof, _now_ms())
        self.engine.restaple()  # contacts with a session up learn it now
        return _installed(verdict)

    async def trust_rotate(self, request: api.TrustRotate) -> api.RotationAnnounced:
        """Announce our move to the new address of ``request.card`` (trust.md
        §6): told to every contact in its next session or through its mailbox."""
        try:
            proof = base64.b64decode(request.proof, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ConfigError("an endorsement proof is sent as base64") from exc
        card = ContactCard.parse(request.card)
        address = self._secrets.identity.address
        if card.address == address:
            raise ConfigError("that card is this endpoint's own: a move needs a new address")
        rotation, verdict = await self._worker(
            partial(
                announce_rotation,
                self._store,
                str(address),
                new=str(card.address),
                client_auth_public=card.client_auth_public,
                proof=proof,
                now_ms=_now_ms(),
            )
        )
        self._moving = True
        if self.engine.running:
            self.engine.rotation_announced()
        progress = await self._worker(rotation_progress, self._store)
        contacts = 0 if progress is None else progress[2]
        return api.RotationAnnounced(
            rotation.new_address,
            rotation.old_address,
            rotation.agency,
            rotation.proof.value,
            verdict.status.value,
            contacts,
        )

    async def trust_revocations_import(
        self, request: api.TrustRevocationsImport
    ) -> api.RevocationsImported:
        """Hold an agency's newer revocation list and act on it at once: a
        contact it revokes is refused (trust.md §7.3)."""
        try:
            bundle = base64.b64decode(request.bundle, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ConfigError("a revocation list is sent as base64") from exc
        done = await self._worker(import_revocations, self._store, bundle, _now_ms())
        await self._list_held(done)
        return api.RevocationsImported(
            done.agency, done.serial, done.issued_at, done.revoked, done.changed
        )

    async def _list_held(self, done: Imported) -> None:
        """A newer list is held (imported, or from our registrar): act on it at once."""
        await self._refusals_changed()
        self.engine.restaple()
        if not done.stapled:
            self.engine.regossip()  # another agency's: passed on (§7.2)
        if done.stapled:
            # Our own agency's list: contacts with no session up are dialled
            # once (paced, as an announcement) to be handed it, so that a
            # revocation reaches them now, not at their next text (§7.2).
            self.engine.announce()

    async def trust_enrol(self, request: api.TrustEnrol) -> api.Endorsement:
        """Enrol with our agency's registrar (trust.md §8)."""
        verdict = await self.registrar.enrol(request.code)
        return _installed(verdict)

    async def trust_remove(self, request: api.TrustRemove) -> api.TrustAnchor:
        found = await self._worker(self._store.trust.find, request.anchor)
        if found is None:
            raise NotFoundError(f"no trust anchor is {request.anchor!r}")
        await self._worker(self._store.trust.remove, found.anchor)
        log.info("event=trust_anchor_removed agency=%s", safe(found.anchor.agency))
        return _trust_anchor(found.anchor, found.added_ms)

    async def _contact_id(self, name: str) -> int:
        """A contact's id by name: from the engine's memory when it runs (the
        send path asks for it on every text), else the store (which raises
        UnknownContactError)."""
        known = self.engine.contact_id(name)
        if known is not None:
            return known
        try:
            contact: Contact = await self._worker(self._store.contacts.contact, name)
        except UnknownContactError:
            refusal = await self._worker(self._not_a_contact, name)
            if refusal is not None:
                raise ConfigError(refusal) from None
            raise
        return contact.id

    def _not_a_contact(self, name: str) -> str | None:
        """Why ``name``, a member a group introduced, cannot be written to
        directly (groups.md §9); None if it is none."""
        peer = self._introduced(name)
        if peer is None or peer.introduced_group is None:
            return None
        groups = self._store.groups
        group = (
            groups.log(peer.introduced_group).state.name
            if groups.known(peer.introduced_group)
            else peer.introduced_group.hex()
        )
        return (
            f"{peer.name!r} was introduced by the group {group!r}, not a contact: "
            "add its card to write to it directly"
        )

    @asynccontextmanager
    async def _one_send(self, message_id: bytes) -> AsyncIterator[None]:
        """Sends of one id, one at a time: a resent request that arrives while
        the first still runs waits for it, then finds its message."""
        # No lock: the usual send, of an id nobody else sends, takes no
        # scheduling pass here.
        while (running := self._sending.get(message_id)) is not None:
            await running.wait()
        done = self._sending[message_id] = trio.Event()
        try:
            yield
        finally:
            del self._sending[message_id]
            done.set()

    async def _check_not_moved(self, contact_id: int, name: str) -> None:
        """ConfigError if this home has moved and ``contact_id`` was told of it:
        the contact takes nothing from this address now (trust.md §6.5)."""
        if self._moving is None:
            self._moving = await self._worker(lambda: self._store.trust.own_rotation() is not None)
        if not self._moving:
            return
        refusal = await self._worker(moved_refusal, self._store, contact_id, name)
        if refusal is not None:
            raise ConfigError(refusal)

    async def _label_for(self, contact_id: int, name: str, text: str | None) -> str:
        """The label a send to ``contact_id`` carries (``text`` or the default),
        checked against what the contact accepts: LabelError (spec.md §5.10).
        Every send asks it first, so a send to a contact told of our move
        (trust.md §6) is refused here: it could never reach it from this home."""
        await self._check_not_moved(contact_id, name)
        label = self._labels.label(text)
        # Every send asks: the limits are read from memory when they can be.
        limits = self._store.contacts.cached_label_limits(contact_id)
        if limits is None:
            limits = await self._worker(self._store.contacts.label_limits, contact_id)
        _labels.check_limits(self._labels, limits, name, label)
        return label.text

    async def send_text(self, request: api.SendText) -> api.Queued:
        contact_id = await self._contact_id(request.contact)
        label = await self._label_for(contact_id, request.contact, request.label)
        message_id = os.urandom(16) if request.id is None else _parse_id(request.id)
        text = m.Text(message_id, _now_ms(), request.body, request.content_type, label)
        async with self._one_send(message_id):
            await self.engine.queue_text(contact_id, text)
        return api.Queued(message_id.hex(), api.MessageState.QUEUED, label=label)

    async def send_texts(self, request: api.SendTexts) -> tuple[api.Queued, ...]:
        contact_id = await self._contact_id(request.contact)
        label = await self._label_for(contact_id, request.contact, request.label)
        now = _now_ms()
        texts = [
            m.Text(
                os.urandom(16) if item.id is None else _parse_id(item.id),
                now,
                item.body,
                item.content_type,
                label,
            )
            for item in request.texts
        ]
        await self.engine.queue_texts(contact_id, texts)
        return tuple(api.Queued(t.id.hex(), api.MessageState.QUEUED, label=label) for t in texts)

    async def forward(self, request: api.Forward) -> api.Queued:
        """A stored message sent on to ``to`` under a new id; see _labels.forward_label."""
        source = await self._worker(self._find, _parse_id(request.id), request.contact)
        contact_id = await self._contact_id(request.to)
        await self._check_not_moved(contact_id, request.to)
        label = await self._worker(
            _labels.forward_label,
            self._store,
            self._labels,
            source,
            (contact_id, request.to),
            request.label,
        )
        message_id = os.urandom(16)
        if source.file is None:
            assert source.body is not None
            text = m.Text(message_id, _now_ms(), source.body, source.content_type, label.text)
            await self.engine.queue_text(contact_id, text)
            return api.Queued(message_id.hex(), api.MessageState.QUEUED, label=label.text)
        queued = await trio.to_thread.run_sync(
            partial(
                self._store.outbox.forward_file,
                source,
                contact_id,
                message_id,
                _now_ms(),
                label.text,
            )
        )
        self.engine.kick(contact_id)
        return api.Queued(
            message_id.hex(), api.MessageState.QUEUED, queued.name, queued.size, label.text
        )

    async def send_file(self, request: api.SendFile) -> api.Queued:
        contact_id = await self._contact_id(request.contact)
        label = await self._label_for(contact_id, request.contact, request.label)
        source = Path(request.path)
        if not source.is_absolute():
            raise ConfigError("give the file's absolute path")
        file_id = os.urandom(16) if request.id is None else _parse_id(request.id)
        async with self._one_send(file_id):
            # Its own thread, not the store worker: copying a large file
            # in must not hold up every other store call.
            queued = await trio.to_thread.run_sync(
                partial(
                    self._store.outbox.queue_file,
                    contact_id,
                    file_id,
                    _now_ms(),
                    source.name,
                    source,
                    self._config.max_file_size,
                    label=label,
                )
            )
        self.engine.kick(contact_id)
        return api.Queued(file_id.hex(), api.MessageState.QUEUED, queued.name, queued.size, label)

    async def inbox(self, request: api.Inbox) -> tuple[api.Message, ...]:
        page = await self._worker(
            partial(
                self._store.messages.inbox,
                after=request.after,
                limit=request.limit,
                unread=request.unread,
            )
        )
        return await self._worker(self._records, page, sends=False)

    def _records(self, page: Sequence[Stored], *, sends: bool) -> tuple[api.Message, ...]:
        """In the worker: messages as the local API shows them, each with its
        group (and, with ``sends``, every copy of our group sends)."""
        return tuple(self.groups.annotate(message_record(s), s, sends=sends) for s in page)

    def _outbox(self, contact: str | None, limit: int) -> list[Stored]:
        contact_id = None if contact is None else self._store.contacts.contact(contact).id
        return self._store.outbox.listing(contact_id=contact_id, limit=limit)

    async def outbox(self, request: api.Outbox) -> tuple[api.Message, ...]:
        page = await self._worker(self._outbox, request.contact, request.limit)
        return await self._worker(self._records, page, sends=False)

    def _find(self, message_id: bytes, contact: str | None) -> Stored:
        """In the worker: the one message with this id (of this contact, when named).

        Two contacts may send records with the same id; without a contact such
        an id is refused as ambiguous rather than resolved to either. A name
        is first a current contact's; failing that (the contact was removed,
        its messages kept, perhaps its name given to another since) the name
        the messages with this id show, when that is one contact's."""
        found = self._store.messages.messages_with_id(message_id)
        if contact is not None:
            try:
                current: int | None = self._store.contacts.contact(contact).id
            except UnknownContactError:
                current = None
            mine = [s for s in found if s.contact_id == current]
            if not mine:
                mine = [s for s in found if s.contact.casefold() == contact.casefold()]
            if len({s.contact_id for s in mine}) > 1:
                raise ConfigError(
                    f"messages from several contacts named {contact!r} have the id "
                    f"{message_id.hex()}"
                )
            if mine:
                return mine[0]
            if current is None:
                raise UnknownContactError(contact)
            # Not stored whole: a file still arriving, or nothing (NotFoundError).
            return self._store.messages.message(message_id, contact_id=current)
        if not found:
            # Not stored whole: a file still arriving, or nothing (NotFoundError).
            return self._store.messages.message(message_id)
        if len({s.contact_id for s in found}) > 1:
            raise ConfigError(
                f"messages from several contacts have the id {message_id.hex()}: name the contact"
            )
        return found[0]

    async def message(self, request: api.GetMessage) -> api.Message:
        found = await self._worker(self._find, _parse_id(request.id), request.contact)
        (record,) = await self._worker(self._records, [found], sends=True)
        return record

    def _mark_read(self, ids: Sequence[bytes], contact: str | None) -> dict[int, list[bytes]]:
        """In the worker: mark what was received read; what changed, by contact."""
        by_contact: dict[int, list[bytes]] = {}
        for stored in [self._find(i, contact) for i in ids]:
            if stored.direction == Direction.IN:
                by_contact.setdefault(stored.contact_id, []).append(stored.id)
        now = _now_ms()
        return {
            contact_id: self._store.messages.mark_read(
                message_ids, now, contact_id=contact_id, direction=Direction.IN
            )
            for contact_id, message_ids in by_contact.items()
        }

    async def mark_read(self, request: api.MarkRead) -> api.Marked:
        ids = [_parse_id(i) for i in request.ids]
        changed = await self._worker(self._mark_read, ids, request.contact)
        for contact_id, message_ids in changed.items():
            # Tell the sender, and only it: the receipts are owed durably until
            # a session or the contact's mailbox carried them. A contact removed
            # since is told nothing.
            if await self._worker(self._store.contacts.contact_by_id, contact_id) is not None:
                await self.engine.owe_receipts(contact_id, message_ids)
        return api.Marked(sum(len(v) for v in changed.values()))

    async def export_file(self, request: api.ExportFile) -> api.Exported:
        target = Path(request.dest)
        if not target.is_absolute():
            raise ConfigError("give an absolute destination path")
        stored = await self._worker(self._find, _parse_id(request.id), request.contact)
        written = await trio.to_thread.run_sync(
            partial(
                self._store.transfers.export_file, stored.id, target, contact_id=stored.contact_id
            )
        )
        size = await trio.to_thread.run_sync(lambda: written.stat().st_size)
        return api.Exported(str(written), size)

    async def log_show(self, request: api.LogShow) -> api.LogEntries:
        return await self._worker(_evidence.show, self._store, request.start, request.limit)

    async def log_verify(self, request: api.LogVerify) -> api.LogReport:
        return await self._worker(_evidence.verify_log, self._store, self._witness)

    async def evidence_export(self, request: api.EvidenceExport) -> api.EvidenceExported:
        contact_id = None if request.contact is None else await self._contact_id(request.contact)
        ids = [_parse_id(i) for i in request.ids]
        if request.group is not None:
            if ids:
                raise ConfigError("select by group or by ids, not both")
            ids = await self._worker(self._store.groups.message_ids, request.group)
            if not ids:
                raise ConfigError(f"no messages in the group {request.group!r} to export")
        # Files are copied out: a thread of its own, as for export_file.
        return await trio.to_thread.run_sync(
            partial(
                _evidence.export,
                self._store,
                self._witness,
                self._labels,
                request,
                contact_id,
                ids,
                int(time.time() * 1000),
            )
        )

    async def retry(self, request: api.Retry) -> api.Retried:
        if request.contact is None:
            return api.Retried(self.engine.kick(retry_now=True))
        # UnknownContactError for a bad name
        return api.Retried(
            self.engine.kick(await self._contact_id(request.contact), retry_now=True)
        )

    async def mailbox_pair(self, request: api.MailboxPair) -> api.MailboxRef:
        return await self.owner.pair(request.code)

    async def mailbox_status(self, request: api.GetMailboxStatus) -> api.MailboxStatus:
        return await self.owner.status()

    async def mailbox_wipe(self, request: api.MailboxWipe) -> api.Wiped:
        if request.owner is not None:
            raise ConfigError("an endpoint wipes its own space at its mailbox: leave out 'owner'")
        return await self.owner.wipe()

    def close(self) -> None:
        self._hub.close()


def _parse_id(text: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except (ValueError, TypeError):
        raw = b""
    if len(raw) != 16:
        raise ConfigError("a message id is 32 hex digits")
    return raw


def _installed(verdict: Verdict) -> api.Endorsement:
    """Our own endorsement as installed (``trust_endorsement_install``,
    ``trust_enrol``): the verdict on it is endorsed or unverified, never refused."""
    e = verdict.endorsement
    assert e is not None
    assert verdict.until is not None
    return api.Endorsement(
        e.agency, e.address, e.endpoint, e.unit, verdict.until, verdict.status.value, e.replaces
    )
