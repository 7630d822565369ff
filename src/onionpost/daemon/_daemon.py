"""The onionpost daemon: wires tor, the listener, the delivery engine and the local API.

Theory of operation
-------------------
::

    run()
    ├── serve_api            local control socket (the CLI and client library)
    └── open_tor             our tor (or an attached one), supervised
        ├── tor.supervise    relaunch / republish on failure
        ├── serve            inbound onion streams -> responder handshakes
        │                    -> engine.run_inbound
        ├── engine.run       delivery: a link per contact, a session per channel
        │                    (``_delivery.py``: the failure domains live there)
        └── renew            the Noise static key, renewed while running

This module is the local API's backend: its handlers (one per request type
an endpoint serves, :attr:`Daemon.handlers`) turn requests into store reads
and engine calls, and shape the records.

Sends are idempotent on their id: the client chooses a message's id, and
the same ``send_text``/``send_file`` again (its answer was lost: the daemon
was slow, the connection cut) finds the message queued under that id and
answers as the first did; the store refuses the id for another contact or
another content. Two sends of one id run one after the other. Delivery itself (dialing, sessions,
exactly once, quotas) is the engine's.

Logs carry ids, contact handles (``contact=#3``, :mod:`onionpost._logs`)
and states, never message contents or keys; names and onion addresses only
at DEBUG, so the journal does not hold the contact graph.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, Final

import trio

from onionpost import api
from onionpost._logs import contact_ref, safe
from onionpost.daemon._backend import Handlers
from onionpost.daemon._delivery import DeliveryEngine, DeliveryPolicy, Dial, message_record
from onionpost.daemon._events import EventHub
from onionpost.daemon._mailbox import MailboxDial, Mailboxes, OwnerLink
from onionpost.errors import ConfigError, DialError, TorError
from onionpost.home import Config, ContactCard, Paths, Secrets, safety_number
from onionpost.proto import messages as m
from onionpost.proto.address import OnionAddress
from onionpost.proto.identity import StaticKey
from onionpost.store import Contact, Direction, Store, Stored
from onionpost.tor import DialScheduler, OnionService, Tor, TorConfig, TorState, open_tor
from onionpost.transport import SecureChannel, connect, serve

__all__ = ["Daemon"]

log = logging.getLogger("onionpost.daemon")

# How often the daemon checks whether its static key needs renewal.
RENEW_CHECK_SECONDS: Final = 3600.0
# Dial failures after which our tor may hold a stale descriptor of the
# contact (its tor restarted with new introduction points): ask for a fresh one.
STALE_DESCRIPTOR_REASONS: Final = frozenset(
    {"introduction-failed", "introduction-timed-out", "rendezvous-failed", "descriptor-not-found"}
)
REFETCH_SECONDS: Final = 5.0
# The onion service's Unix socket: sun_path's size, and the accept backlog.
MAX_UNIX_PATH: Final = 107
MAX_UNIX_BACKLOG: Final = 128


def _now_ms() -> int:
    return int(time.time() * 1000)


class Daemon:
    """Implements the local API's :class:`~onionpost.daemon._backend.Backend`."""

    unserved: Final = (
        "this home runs an endpoint, not a mailbox (setup codes come from "
        "'onionpost mailbox code' on the mailbox's host)"
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
    ) -> None:
        """``dial`` reaches a contact; the default goes through our tor. Tests and
        benchmarks without tor give their own and run :attr:`engine` themselves.
        ``policy`` defaults to the one ``config`` gives."""
        self._paths = paths
        self._secrets = secrets
        self._config = config
        self._store = store
        self._hub = EventHub()
        self._tor: Tor | None = None
        self._service: OnionService | None = None
        self._tor_state = api.TorStatus(api.TorState.STARTING, "launching tor")
        self._scheduler = DialScheduler()
        self._sending: dict[bytes, trio.Lock] = {}
        self._client_auth_added: dict[OnionAddress, bytes] = {}
        policy = policy or DeliveryPolicy.from_config(config)
        mailbox_dial = mailbox_dial or self._dial_mailbox
        self.mailboxes = Mailboxes(secrets, store, mailbox_dial)
        self.engine = DeliveryEngine(
            store, self._hub, dial or self._dial, policy, mailbox=self.mailboxes
        )
        self.owner = OwnerLink(secrets, store, self.engine, self.mailboxes, mailbox_dial, policy)
        self.handlers: Handlers = {
            api.Whoami: self.whoami,
            api.GetStatus: self.status,
            api.ContactAdd: self.contact_add,
            api.ContactList: self.contact_list,
            api.ContactRemove: self.contact_remove,
            api.ContactVerify: self.contact_verify,
            api.SendText: self.send_text,
            api.SendFile: self.send_file,
            api.Inbox: self.inbox,
            api.Outbox: self.outbox,
            api.GetMessage: self.message,
            api.MarkRead: self.mark_read,
            api.ExportFile: self.export_file,
            api.Retry: self.retry,
            api.MailboxPair: self.mailbox_pair,
            api.GetMailboxStatus: self.mailbox_status,
            api.MailboxWipe: self.mailbox_wipe,
        }

    # -- lifecycle -----------------------------------------------------------------

    def _tor_config(self) -> TorConfig:
        c = self._config
        if c.tor_mode == "attach":
            return TorConfig(
                tor_binary=c.tor_binary,
                control_port=c.tor_control_port,
                control_socket=c.tor_control_socket,
                password=c.tor_password,
                allow_unauthenticated=c.tor_allow_unauthenticated_control,
            )
        return TorConfig(
            tor_binary=c.tor_binary, data_dir=self._paths.tor, extra_options=c.tor_extra_options
        )

    async def run(
        self, *, task_status: trio.TaskStatus[OnionAddress] = trio.TASK_STATUS_IGNORED
    ) -> None:
        from onionpost.daemon._api import serve_api

        address = self._secrets.identity.address
        async with trio.open_nursery() as outer:
            await outer.start(serve_api, self, self._paths.socket)
            log.info("event=starting")
            log.debug("event=starting address=%s", address)
            async with open_tor(self._tor_config()) as tor, trio.open_nursery() as nursery:
                self._tor = tor
                await self._report_hardening(tor)
                nursery.start_soon(self._forward_tor_events, tor)
                nursery.start_soon(self._renew_loop)
                await nursery.start(tor.supervise)
                # tor forwards the service's streams to a Unix socket in our
                # 0700 run directory: no TCP port another local account could
                # reach to hold our handshake slots (spec §1.2).
                listeners = [await trio.to_thread.run_sync(open_unix_listener, self._paths)]
                await nursery.start(
                    partial(
                        serve,
                        self.engine.run_inbound,
                        listeners,
                        identity=self._secrets.identity,
                        static=self._current_static,
                        decide=self.engine.decide,
                    )
                )
                contacts = self._store.contacts()
                self._service = await tor.publish(
                    self._secrets.identity.seed,
                    virtual_port=self._config.onion_port,
                    target=self._paths.onion_socket,
                    authorized_clients=[c.client_auth_public for c in contacts],
                )
                for contact in contacts:
                    await tor.add_client_auth(contact.address, self._secrets.client_auth_private)
                await nursery.start(self.engine.run)
                nursery.start_soon(self.owner.run)
                self._tor_state = api.TorStatus(api.TorState.OK, "published")
                log.info("event=ready contacts=%d", len(contacts))
                log.debug("event=ready address=%s", address)
                task_status.started(address)
                await trio.sleep_forever()

    async def _report_hardening(self, tor: Tor) -> None:
        """Log the tor's hardening profile (spec §1.3); warn about what is off.

        The tor we launch has it by construction; an attached one is only checked.
        """
        profile = await tor.hardening()
        log.info(
            "event=tor_profile version=%s vanguards_lite=%s pow=%s max_streams=%d",
            safe(profile.version),
            "on" if profile.vanguards_lite else "off",
            "on" if profile.pow else "off",
            profile.max_streams,
        )
        if not profile.vanguards_lite:
            log.warning("event=tor_profile_weak reason=vanguards_lite_off")
        if not profile.pow:
            log.warning("event=tor_profile_weak reason=no_pow_defenses")

    async def _forward_tor_events(self, tor: Tor) -> None:
        async for status in tor.events():
            was_ok = self._tor_state.state is api.TorState.OK
            self._tor_state = api.TorStatus(api.TorState(status.state.value), status.detail)
            self._hub.publish(self._tor_state)
            log.info("event=tor state=%s detail=%s", status.state.value, safe(status.detail))
            if status.state is TorState.OK and not was_ok and self.engine.running:
                # Tor is back (relaunched, service republished): our contacts
                # learn it at once, and every link redials now.
                self.engine.kick(retry_now=True)
                self.engine.announce()

    def _current_static(self) -> StaticKey:
        return self._secrets.static

    def renew_static_key(self, now: int) -> bool:
        """Replace the Noise static key when its certificate is due for renewal
        (spec §2.3). Handshakes from then on, ours and our listener's, use the
        new one. It lives in memory: the secrets file keeps the old one, which
        the next start renews again (no passphrase is kept to re-seal it)."""
        if not self._secrets.static.certificate.needs_renewal(now):
            return False
        self._secrets.static = StaticKey.generate(self._secrets.identity, now=now)
        log.info("event=static_key_rotated")
        return True

    async def _renew_loop(self) -> None:
        while True:
            self.renew_static_key(int(time.time()))
            await trio.sleep(RENEW_CHECK_SECONDS)

    async def _refetch(self, tor: Tor, contact: Contact) -> None:
        """Best effort: a dial failed the way a stale descriptor fails."""
        with trio.move_on_after(REFETCH_SECONDS):
            try:
                await tor.refetch_descriptor(contact.address)
                log.info("event=descriptor_refetch contact=%s", contact_ref(contact.id))
            except TorError as exc:
                log.info("event=descriptor_refetch_failed error=%s", type(exc).__name__)

    async def _dial(self, contact: Contact) -> SecureChannel:
        """Reach ``contact`` through tor and run our side of the handshake.
        The engine sets the deadline."""
        tor = self._tor
        if tor is None:
            raise TorError("tor is not running")
        async with self._scheduler.slot(contact.address):
            try:
                # Half the deadline for tor to connect: what is left lets us ask
                # for a fresh descriptor when it did not (a stale one hangs).
                with trio.move_on_after(self._config.connect_timeout / 2) as waited:
                    stream = await tor.dial(contact.address, self._config.onion_port)
            except DialError as exc:
                if exc.reason in STALE_DESCRIPTOR_REASONS:
                    await self._refetch(tor, contact)
                raise
            if waited.cancelled_caught:
                await self._refetch(tor, contact)
                raise DialError("the onion service did not answer", reason="timeout")
        try:
            channel = await connect(
                stream,
                identity=self._secrets.identity,
                static=self._secrets.static,
                peer=contact.address,
            )
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        self._scheduler.record_success(contact.address)
        return channel

    async def _dial_mailbox(
        self, mailbox: OnionAddress, client_auth_private: bytes
    ) -> SecureChannel:
        """Reach a mailbox (ours, or a contact's) through tor, authorized with
        ``client_auth_private`` (ours; a setup code's while pairing)."""
        tor = self._tor
        if tor is None:
            raise TorError("tor is not running")
        if self._client_auth_added.get(mailbox) != client_auth_private:
            await tor.add_client_auth(mailbox, client_auth_private)
            self._client_auth_added[mailbox] = client_auth_private
        async with self._scheduler.slot(mailbox):
            try:
                with trio.move_on_after(self._config.connect_timeout / 2) as waited:
                    stream = await tor.dial(mailbox, self._config.onion_port)
            except DialError as exc:
                # A mailbox's descriptor changes with its authorized clients
                # (a new setup code, a contact registered): ours may be old.
                if exc.reason in STALE_DESCRIPTOR_REASONS | {"client-auth-wrong"}:
                    with trio.move_on_after(REFETCH_SECONDS), contextlib.suppress(TorError):
                        await tor.refetch_descriptor(mailbox)
                raise
            if waited.cancelled_caught:
                raise DialError("the mailbox did not answer", reason="timeout")
        try:
            channel = await connect(
                stream,
                identity=self._secrets.identity,
                static=self._secrets.static,
                peer=mailbox,
            )
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        self._scheduler.record_success(mailbox)
        return channel

    # -- the local API (Backend) -----------------------------------------------------

    def subscribe(self, topics: tuple[str, ...]) -> trio.MemoryReceiveChannel[dict[str, Any]]:
        return self._hub.subscribe(list(topics))

    async def whoami(self, request: api.Whoami) -> api.Identity:
        card = ContactCard.issue(self._secrets, mailbox=self.mailboxes.signed())
        return api.Identity(
            self._secrets.display_name, str(self._secrets.identity.address), card.to_line()
        )

    async def status(self, request: api.GetStatus) -> api.Status:
        contacts = []
        for contact in self._store.contacts():
            link = self.engine.status(contact.id)
            contacts.append(
                api.ContactStatus(
                    name=contact.name,
                    address=str(contact.address),
                    reachable=bool(link and link.reachable),
                    queued=self._store.outbox_depth(contact.id),
                    last_error=link.last_error if link else "",
                    since_ms=link.since_ms if link else None,
                    last_seen_ms=contact.last_seen_ms,
                    failures=link.failures if link else 0,
                    retry_in=link.retry_in if link else None,
                    mailbox=None if contact.mailbox is None else str(contact.mailbox),
                    deposited=self._store.deposited_count(contact.id),
                    mailbox_error=link.mailbox_error if link else "",
                )
            )
        return api.Status(
            address=str(self._secrets.identity.address),
            tor=self._tor_state,
            outbox_depth=self._store.outbox_depth(),
            last_delivery_ms=self._store.last_delivery(),
            contacts=tuple(contacts),
        )

    async def contact_add(self, request: api.ContactAdd) -> api.ContactRef:
        parsed = ContactCard.parse(request.card)
        if parsed.address == self._secrets.identity.address:
            raise ConfigError("that card is this endpoint's own")
        contact = self._store.add_contact(
            request.name or parsed.name, parsed.address, parsed.client_auth_public, _now_ms()
        )
        if parsed.mailbox is not None:
            self._store.set_contact_mailbox(
                contact.id, parsed.mailbox.mailbox, parsed.mailbox.version
            )
            contact = self._store.contact(contact.name)
        await self._authorize()
        if self._tor is not None:
            await self._tor.add_client_auth(contact.address, self._secrets.client_auth_private)
        if self.engine.running:
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
        if self._tor is not None and self._service is not None:
            keys = [c.client_auth_public for c in self._store.contacts()]
            await self._tor.set_authorized_clients(self._service, keys)

    async def contact_list(self, request: api.ContactList) -> tuple[api.Contact, ...]:
        return tuple(
            api.Contact(
                name=c.name,
                address=str(c.address),
                added_ms=c.added_ms,
                last_seen_ms=c.last_seen_ms,
                reachable=bool((link := self.engine.status(c.id)) and link.reachable),
            )
            for c in self._store.contacts()
        )

    async def contact_remove(self, request: api.ContactRemove) -> api.ContactRef:
        contact = self._store.remove_contact(request.name)
        self.engine.remove_contact(contact.id)
        await self._authorize()
        if self._tor is not None:
            await self._tor.remove_client_auth(contact.address)
        self.owner.changed()
        log.info("event=contact_removed contact=%s", contact_ref(contact.id))
        return api.ContactRef(contact.name, str(contact.address))

    async def contact_verify(self, request: api.ContactVerify) -> api.SafetyNumber:
        contact = self._store.contact(request.name)
        number = safety_number(self._secrets.identity.public_key, contact.address.public_key)
        return api.SafetyNumber(contact.name, number)

    @asynccontextmanager
    async def _one_send(self, message_id: bytes) -> AsyncIterator[None]:
        """Sends of one id, one at a time: a resent request that arrives while
        the first still runs waits for it, then finds its message."""
        lock = self._sending.setdefault(message_id, trio.Lock())
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and not lock.statistics().tasks_waiting:
                self._sending.pop(message_id, None)

    async def send_text(self, request: api.SendText) -> api.Queued:
        target = self._store.contact(request.contact)
        message_id = os.urandom(16) if request.id is None else _parse_id(request.id)
        text = m.Text(message_id, _now_ms(), request.body, request.content_type)
        async with self._one_send(message_id):
            await self.engine.queue_text(target.id, text)
        return api.Queued(message_id.hex(), api.MessageState.QUEUED)

    async def send_file(self, request: api.SendFile) -> api.Queued:
        target = self._store.contact(request.contact)
        source = Path(request.path)
        if not source.is_absolute():
            raise ConfigError("give the file's absolute path")
        file_id = os.urandom(16) if request.id is None else _parse_id(request.id)
        async with self._one_send(file_id):
            queued = await trio.to_thread.run_sync(
                partial(
                    self._store.queue_file,
                    target.id,
                    file_id,
                    _now_ms(),
                    source.name,
                    source,
                    self._config.max_file_size,
                )
            )
        self.engine.kick(target.id)
        return api.Queued(file_id.hex(), api.MessageState.QUEUED, queued.name, queued.size)

    async def inbox(self, request: api.Inbox) -> tuple[api.Message, ...]:
        page = self._store.inbox(after=request.after, limit=request.limit, unread=request.unread)
        return tuple(message_record(s) for s in page)

    async def outbox(self, request: api.Outbox) -> tuple[api.Message, ...]:
        contact = request.contact
        contact_id = None if contact is None else self._store.contact(contact).id
        page = self._store.outbox(contact_id=contact_id, limit=request.limit)
        return tuple(message_record(s) for s in page)

    def _find(self, message_id: bytes, contact: str | None) -> Stored:
        """The one message with this id (of this contact, when named).

        Two contacts may send records with the same id; without a contact such
        an id is refused as ambiguous rather than resolved to either."""
        if contact is not None:
            return self._store.message(message_id, contact_id=self._store.contact(contact).id)
        found = self._store.messages_with_id(message_id)
        if not found:
            # Not stored whole: a file still arriving, or nothing (NotFoundError).
            return self._store.message(message_id)
        if len({s.contact_id for s in found}) > 1:
            raise ConfigError(
                f"messages from several contacts have the id {message_id.hex()}: name the contact"
            )
        return found[0]

    async def message(self, request: api.GetMessage) -> api.Message:
        return message_record(self._find(_parse_id(request.id), request.contact))

    async def mark_read(self, request: api.MarkRead) -> api.Marked:
        targets = [self._find(_parse_id(i), request.contact) for i in request.ids]
        by_contact: dict[int, list[bytes]] = {}
        for stored in targets:
            if stored.direction == Direction.IN:
                by_contact.setdefault(stored.contact_id, []).append(stored.id)
        marked = 0
        for contact_id, message_ids in by_contact.items():
            changed = self._store.mark_read(
                message_ids, _now_ms(), contact_id=contact_id, direction=Direction.IN
            )
            marked += len(changed)
            # Tell the sender, and only it (best effort: receipts owed to an
            # offline contact are kept in memory until the next session).
            await self.engine.owe_receipts(contact_id, changed)
        return api.Marked(marked)

    async def export_file(self, request: api.ExportFile) -> api.Exported:
        target = Path(request.dest)
        if not target.is_absolute():
            raise ConfigError("give an absolute destination path")
        stored = self._find(_parse_id(request.id), request.contact)
        written = await trio.to_thread.run_sync(
            partial(self._store.export_file, stored.id, target, contact_id=stored.contact_id)
        )
        size = await trio.to_thread.run_sync(lambda: written.stat().st_size)
        return api.Exported(str(written), size)

    async def retry(self, request: api.Retry) -> api.Retried:
        if request.contact is None:
            return api.Retried(self.engine.kick(retry_now=True))
        target = self._store.contact(request.contact).id  # UnknownContactError for a bad name
        return api.Retried(self.engine.kick(target, retry_now=True))

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


def open_unix_listener(paths: Paths) -> trio.SocketListener:
    """A listener on ``paths.onion_socket``, 0600 in the 0700 run directory.

    A socket file left by a daemon that died is removed first (the home's
    lock, held by this process, says no other daemon uses it).
    """
    path = paths.onion_socket
    if len(os.fsencode(path)) > MAX_UNIX_PATH:
        raise ConfigError(f"{path} is too long for a Unix socket: use a shorter home directory")
    paths.run.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(paths.run, 0o700)  # the directory is what keeps others out
    path.unlink(missing_ok=True)
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        raw.bind(str(path))
        os.chmod(path, 0o600)
        raw.listen(MAX_UNIX_BACKLOG)
    except BaseException:
        raw.close()
        raise
    sock = trio.socket.from_stdlib_socket(raw)
    return trio.SocketListener(sock)


def _parse_id(text: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except (ValueError, TypeError):
        raw = b""
    if len(raw) != 16:
        raise ConfigError("a message id is 32 hex digits")
    return raw
