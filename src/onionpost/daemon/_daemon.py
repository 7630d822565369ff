"""The onionpost daemon: one nursery owns tor, the listener, delivery and the local API.

Theory of operation
-------------------
::

    run()
    ├── serve_api            local control socket (the CLI and client library)
    └── open_tor             our tor (or an attached one), supervised
        ├── tor.supervise    relaunch / republish on failure
        ├── serve            inbound onion streams -> responder handshakes
        ├── link(contact)    one task per contact: dial when there is something
        │                    to deliver, with capped exponential backoff + jitter
        └── channel(...)     per live session: a receiver and a sender task

Delivery is exactly once: a message is durably queued before ``send_text``
returns; the receiver stores it (idempotent on its id) and only then acks;
the sender marks it delivered on the ack. A message sent but not acked is
sent again on the next session, and the receiver's de-duplication makes the
repeat harmless. Files travel the same way: offer, accept from the offset
already stored, chunks, and a FileComplete once the receiver has checked the
hash.

Logs carry ids, addresses and states, never message contents or keys.
"""

from __future__ import annotations

import logging
import os
import random
import secrets as _secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Final

import trio

from onionpost.daemon._events import EventHub
from onionpost.errors import ConfigError, OnionpostError, StoreError, TorError
from onionpost.home import Config, ContactCard, Paths, Secrets, safety_number
from onionpost.limits import FILE_CHUNK_SIZE, MAX_ACK_IDS
from onionpost.proto import messages as m
from onionpost.proto.address import OnionAddress
from onionpost.proto.session import PeerDecision
from onionpost.store import Contact, Direction, Store
from onionpost.tor import DialScheduler, OnionService, Tor, TorConfig, open_tor
from onionpost.transport import SecureChannel, connect, serve

__all__ = ["Daemon"]

log = logging.getLogger("onionpost.daemon")

PING_INTERVAL: Final = 60.0
SEND_BATCH: Final = 256
# Records a peer may send per second (with a burst of twice that) before we
# stop reading from it; tor's flow control then slows the peer down.
PEER_RECORDS_PER_SECOND: Final = 5000.0
PROGRESS_EVERY_BYTES: Final = 1 << 20
# Received texts are stored in groups: one commit (one fsync) for what arrives
# within this window, up to this many, then one Ack for the group.
TEXT_GROUP_SECONDS: Final = 0.003
TEXT_GROUP_MAX: Final = MAX_ACK_IDS


def _now_ms() -> int:
    return int(time.time() * 1000)


class _Kick:
    """Wake every waiter once; later waiters wait for the next kick."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def fire(self) -> None:
        self._event.set()
        self._event = trio.Event()

    async def wait(self) -> None:
        await self._event.wait()


@dataclass
class _Link:
    """Everything the daemon keeps per contact while it runs."""

    contact: Contact
    kick: _Kick = field(default_factory=_Kick)
    channels: list[SecureChannel] = field(default_factory=list)
    failures: int = 0
    last_error: str = ""
    acks: list[bytes] = field(default_factory=list)
    receipts: list[bytes] = field(default_factory=list)  # read receipts owed (in memory)
    # Every task working for this contact runs in one of these scopes, so that
    # removing the contact stops them all.
    scopes: set[trio.CancelScope] = field(default_factory=set)
    removed: bool = False

    def stop(self) -> None:
        self.removed = True
        for scope in self.scopes:
            scope.cancel()

    @property
    def channel(self) -> SecureChannel | None:
        return self.channels[-1] if self.channels else None


class _TokenBucket:
    def __init__(self, rate: float) -> None:
        self._rate = rate
        self._tokens = 2 * rate
        self._stamp = trio.current_time()

    async def take(self) -> None:
        now = trio.current_time()
        self._tokens = min(2 * self._rate, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens < 1:
            await trio.sleep((1 - self._tokens) / self._rate)
            self._tokens = 1
        self._tokens -= 1


class Daemon:
    """Implements the local API's :class:`~onionpost.daemon._backend.Backend`."""

    def __init__(self, paths: Paths, secrets: Secrets, config: Config, store: Store) -> None:
        self._paths = paths
        self._secrets = secrets
        self._config = config
        self._store = store
        self._hub = EventHub()
        self._links: dict[int, _Link] = {}
        self._tor: Tor | None = None
        self._service: OnionService | None = None
        self._tor_state = {"state": "starting", "detail": "launching tor"}
        self._nursery: trio.Nursery | None = None
        self._scheduler = DialScheduler()

    # -- lifecycle -----------------------------------------------------------------

    def _tor_config(self) -> TorConfig:
        c = self._config
        if c.tor_mode == "attach":
            return TorConfig(
                tor_binary=c.tor_binary,
                control_port=c.tor_control_port,
                control_socket=c.tor_control_socket,
                password=c.tor_password,
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
            log.info("event=starting address=%s", address)
            async with open_tor(self._tor_config()) as tor, trio.open_nursery() as nursery:
                self._tor = tor
                self._nursery = nursery
                nursery.start_soon(self._forward_tor_events, tor)
                await nursery.start(tor.supervise)
                listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
                port = listeners[0].socket.getsockname()[1]
                await nursery.start(
                    partial(
                        serve,
                        self._on_inbound,
                        listeners,
                        identity=self._secrets.identity,
                        static=self._secrets.static,
                        decide=self._decide,
                    )
                )
                contacts = self._store.contacts()
                self._service = await tor.publish(
                    self._secrets.identity.seed,
                    virtual_port=self._config.onion_port,
                    target=("127.0.0.1", port),
                    authorized_clients=[c.client_auth_public for c in contacts],
                )
                for contact in contacts:
                    await tor.add_client_auth(contact.address, self._secrets.client_auth_private)
                    self._start_link(contact)
                nursery.start_soon(self._expiry_loop)
                self._tor_state = {"state": "ok", "detail": "published"}
                log.info("event=ready address=%s contacts=%d", address, len(contacts))
                task_status.started(address)
                await trio.sleep_forever()

    async def _forward_tor_events(self, tor: Tor) -> None:
        async for status in tor.events():
            self._tor_state = {"state": status.state.value, "detail": status.detail}
            self._hub.publish("tor", dict(self._tor_state))
            log.info("event=tor state=%s detail=%s", status.state.value, status.detail)

    def _start_link(self, contact: Contact) -> None:
        assert self._nursery is not None
        link = _Link(contact)
        self._links[contact.id] = link
        self._nursery.start_soon(self._link_loop, link)

    async def _expiry_loop(self) -> None:
        while True:
            expired = self._store.expire(_now_ms())
            for message_id in expired:
                log.info("event=expired id=%s", message_id.hex())
                self._hub.publish("state", {"id": message_id.hex(), "state": "expired"})
            await trio.sleep(30)

    # -- delivery -----------------------------------------------------------------

    def _backoff(self, link: _Link) -> float:
        c = self._config
        ceiling = min(c.retry_max, c.retry_initial * 2 ** min(link.failures - 1, 30))
        return float(ceiling * random.uniform(0.5, 1.0))  # noqa: S311 - jitter, not a secret

    async def _link_loop(self, link: _Link) -> None:
        """Dial the contact whenever something waits for it and no session is up."""
        with trio.CancelScope() as scope:
            link.scopes.add(scope)
            while not link.removed:
                if link.channel is not None or not self._store.pending(link.contact.id, 1):
                    await link.kick.wait()
                    continue
                try:
                    channel = await self._dial(link.contact)
                except (OnionpostError, trio.TooSlowError) as exc:
                    link.failures += 1
                    link.last_error = getattr(exc, "reason", type(exc).__name__)
                    delay = self._backoff(link)
                    log.info(
                        "event=dial_failed contact=%s reason=%s retry_in=%.1f",
                        link.contact.name,
                        link.last_error,
                        delay,
                    )
                    self._publish_peer(link, reachable=False)
                    with trio.move_on_after(delay):
                        await link.kick.wait()
                    continue
                link.failures = 0
                await self._run_channel(link, channel)

    async def _dial(self, contact: Contact) -> SecureChannel:
        tor = self._tor
        if tor is None:
            raise TorError("tor is not running")
        with trio.fail_after(self._config.connect_timeout):
            async with self._scheduler.slot(contact.address):
                stream = await tor.dial(contact.address, self._config.onion_port)
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

    def _decide(self, peer: OnionAddress) -> PeerDecision:
        contact = self._store.contact_by_address(peer)
        return PeerDecision.ACCEPT if contact is not None else PeerDecision.REFUSE

    async def _on_inbound(self, channel: SecureChannel) -> None:
        contact = self._store.contact_by_address(channel.peer)
        link = self._links.get(contact.id) if contact is not None else None
        if link is None or link.removed:
            await channel.aclose()
            return
        with trio.CancelScope() as scope:
            link.scopes.add(scope)
            try:
                await self._run_channel(link, channel)
            finally:
                link.scopes.discard(scope)

    def _publish_peer(self, link: _Link, *, reachable: bool) -> None:
        self._hub.publish(
            "peer",
            {
                "contact": link.contact.name,
                "address": str(link.contact.address),
                "reachable": reachable,
            },
        )

    async def _run_channel(self, link: _Link, channel: SecureChannel) -> None:
        link.channels.append(channel)
        self._store.note_contact_seen(link.contact.id, _now_ms(), success=True)
        self._publish_peer(link, reachable=True)
        log.info("event=session_up contact=%s", link.contact.name)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._sender, link, channel)
                await self._receiver(link, channel, nursery)
                nursery.cancel_scope.cancel()
        except (OnionpostError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.info(
                "event=session_down contact=%s error=%s", link.contact.name, type(exc).__name__
            )
        finally:
            link.channels.remove(channel)
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await channel.aclose()
            if not link.channels:
                self._publish_peer(link, reachable=False)
            link.kick.fire()

    async def _sender(self, link: _Link, channel: SecureChannel) -> None:
        """Send what waits in the outbox, acks owed to the peer, and keepalives."""
        contact_id = link.contact.id
        # Everything unacked goes out once on a new session; after that only
        # what was queued since, so a wake-up reads no row twice.
        sent_up_to = 0
        while True:
            if link.acks:
                ids, link.acks = link.acks[:MAX_ACK_IDS], link.acks[MAX_ACK_IDS:]
                await channel.send(m.Ack(tuple(ids)))
                continue
            if link.receipts:
                ids, link.receipts = link.receipts[:MAX_ACK_IDS], link.receipts[MAX_ACK_IDS:]
                await channel.send(m.Read(tuple(ids)))
                continue
            batch = self._store.pending(contact_id, SEND_BATCH, after=sent_up_to)
            if batch:
                for outgoing in batch:
                    await channel.send(outgoing.to_message())
                    sent_up_to = max(sent_up_to, outgoing.seq)
                ids = [o.id for o in batch]
                self._store.mark_sent(ids, _now_ms())
                for message_id in ids:
                    self._hub.publish("state", {"id": message_id.hex(), "state": "sent"})
                continue
            with trio.move_on_after(PING_INTERVAL) as idle:
                await link.kick.wait()
            if idle.cancelled_caught:
                await channel.send(m.Ping(_secrets.randbits(63)))

    async def _store_texts(
        self, link: _Link, texts: trio.MemoryReceiveChannel[m.Text], drained: trio.Event
    ) -> None:
        """Store received texts a group at a time, then ack the group.

        Acks go out only after the group's commit, so exactly-once holds; the
        commit holds no await, so a cancellation cannot split a group.
        """
        contact_id = link.contact.id
        async for first in texts:
            await trio.sleep(TEXT_GROUP_SECONDS)  # let the rest of a burst arrive
            group = [first]
            while len(group) < TEXT_GROUP_MAX:
                try:
                    group.append(texts.receive_nowait())
                except trio.WouldBlock:
                    break
            now = _now_ms()
            with self._store.transaction():
                new = [
                    t.id
                    for t in group
                    if self._store.store_text(
                        contact_id, t.id, t.created_ms, t.body, t.content_type, now
                    )
                ]
            link.acks.extend(t.id for t in group)
            link.kick.fire()
            if self._hub.wants("message"):
                for message_id in new:
                    self._hub.publish("message", self._incoming_event(message_id))
        drained.set()

    async def _receiver(self, link: _Link, channel: SecureChannel, nursery: trio.Nursery) -> None:
        bucket = _TokenBucket(PEER_RECORDS_PER_SECOND)
        contact = link.contact
        send_texts, receive_texts = trio.open_memory_channel[m.Text](TEXT_GROUP_MAX)
        drained = trio.Event()
        nursery.start_soon(self._store_texts, link, receive_texts, drained)
        while True:
            try:
                record = await channel.receive()
            except trio.EndOfChannel:
                # Let the texts already received be stored and acked.
                send_texts.close()
                with trio.move_on_after(5):
                    await drained.wait()
                return
            await bucket.take()
            if isinstance(record, m.Text):
                await send_texts.send(record)
            elif isinstance(record, m.Ack):
                self._delivered(contact, record.ids)
            elif isinstance(record, m.Read):
                # A contact can only mark read what we sent to it.
                changed = self._store.mark_read(
                    record.ids, _now_ms(), contact_id=contact.id, direction=Direction.OUT
                )
                for message_id in changed:
                    self._hub.publish("state", {"id": message_id.hex(), "state": "read"})
            elif isinstance(record, m.FileOffer):
                await self._on_offer(link, channel, record)
            elif isinstance(record, m.FileAccept):
                nursery.start_soon(self._send_file, contact, channel, record.id, record.offset)
            elif isinstance(record, m.FileChunk):
                await self._on_chunk(link, channel, record)
            elif isinstance(record, m.FileComplete):
                self._delivered(contact, (record.id,))
            elif isinstance(record, m.FileReject | m.FileCancel):
                log.info("event=file_refused id=%s reason=%d", record.id.hex(), record.reason)
                self._hub.publish(
                    "state", {"id": record.id.hex(), "state": "refused", "reason": record.reason}
                )

    def _delivered(self, contact: Contact, ids: Sequence[bytes]) -> None:
        # Scoped to the contact: a contact can only acknowledge what was sent to it.
        changed = self._store.mark_delivered(list(ids), _now_ms(), contact_id=contact.id)
        # The sender keeps at most SEND_BATCH in flight: acks open the window again.
        self._kick(contact.id)
        for message_id in changed:
            self._hub.publish("state", {"id": message_id.hex(), "state": "delivered"})

    def _incoming_event(self, message_id: bytes) -> dict[str, Any]:
        return self._stored_json(self._store.message(message_id))

    async def _on_offer(self, link: _Link, channel: SecureChannel, offer: m.FileOffer) -> None:
        try:
            offset = self._store.begin_file(
                link.contact.id,
                offer,
                _now_ms(),
                self._config.max_file_size,
                self._config.max_disk_use,
            )
        except StoreError as exc:
            reason = _reject_reason(exc)
            log.info("event=file_rejected id=%s reason=%s", offer.id.hex(), type(exc).__name__)
            await channel.send(m.FileReject(offer.id, reason))
            return
        if offset >= offer.size:
            # Already complete (the sender missed our FileComplete): say so again.
            try:
                self._store.finish_file(offer.id, _now_ms())
            except StoreError as exc:
                await channel.send(m.FileReject(offer.id, _reject_reason(exc)))
                return
            await channel.send(m.FileComplete(offer.id))
            return
        await channel.send(m.FileAccept(offer.id, offset))

    async def _on_chunk(self, link: _Link, channel: SecureChannel, chunk: m.FileChunk) -> None:
        contact_id = link.contact.id
        try:
            stored = self._store.message(chunk.id, contact_id=contact_id)
        except ConfigError:
            stored = None
        file_info = stored.file if stored is not None and stored.direction == "in" else None
        if file_info is None:
            await channel.send(m.FileCancel(chunk.id, m.FileRejectReason.UNKNOWN_FILE))
            return
        try:
            self._store.write_file_chunk(chunk.id, chunk.offset, chunk.data, contact_id=contact_id)
        except StoreError as exc:
            # Disk full or out of order: keep nothing of this chunk, ack nothing;
            # the sender keeps the file and offers it again later.
            log.warning("event=chunk_not_stored id=%s error=%s", chunk.id.hex(), type(exc).__name__)
            await channel.send(m.FileCancel(chunk.id, _reject_reason(exc)))
            return
        end = chunk.offset + len(chunk.data)
        if (
            end // PROGRESS_EVERY_BYTES != chunk.offset // PROGRESS_EVERY_BYTES
            or end >= file_info.size
        ):
            self._hub.publish(
                "state",
                {"id": chunk.id.hex(), "state": "receiving", "bytes": end, "size": file_info.size},
            )
        if end >= file_info.size:
            try:
                self._store.finish_file(chunk.id, _now_ms(), contact_id=contact_id)
            except StoreError as exc:
                await channel.send(m.FileReject(chunk.id, _reject_reason(exc)))
                return
            await channel.send(m.FileComplete(chunk.id))
            self._hub.publish("message", self._incoming_event(chunk.id))

    async def _send_file(
        self, contact: Contact, channel: SecureChannel, file_id: bytes, offset: int
    ) -> None:
        # Only a file we offered to this very contact may be asked for.
        try:
            stored = self._store.message(file_id, contact_id=contact.id)
        except ConfigError:
            stored = None
        if stored is None or stored.direction != "out" or stored.file is None:
            await channel.send(m.FileCancel(file_id, m.FileRejectReason.UNKNOWN_FILE))
            return
        size = stored.file.size
        if offset % FILE_CHUNK_SIZE or offset > size:
            await channel.send(m.FileCancel(file_id, m.FileRejectReason.UNKNOWN_FILE))
            return
        while offset < size:
            data = self._store.read_file_chunk(file_id, offset, min(FILE_CHUNK_SIZE, size - offset))
            await channel.send(m.FileChunk(file_id, offset, data))
            next_offset = offset + len(data)
            if (
                next_offset // PROGRESS_EVERY_BYTES != offset // PROGRESS_EVERY_BYTES
                or next_offset >= size
            ):
                self._hub.publish(
                    "state",
                    {"id": file_id.hex(), "state": "sending", "bytes": next_offset, "size": size},
                )
            offset = next_offset

    # -- the local API (Backend) -----------------------------------------------------

    def subscribe(self, topics: list[str]) -> trio.MemoryReceiveChannel[dict[str, Any]]:
        return self._hub.subscribe(topics)

    async def whoami(self) -> dict[str, Any]:
        card = ContactCard.issue(self._secrets)
        return {
            "name": self._secrets.display_name,
            "address": str(self._secrets.identity.address),
            "card": card.to_line(),
        }

    async def status(self) -> dict[str, Any]:
        contacts = []
        for contact in self._store.contacts():
            link = self._links.get(contact.id)
            contacts.append(
                {
                    "name": contact.name,
                    "address": str(contact.address),
                    "reachable": bool(link and link.channels),
                    "last_seen_ms": contact.last_seen_ms,
                    "queued": self._store.outbox_depth(contact.id),
                    "last_error": link.last_error if link else "",
                }
            )
        return {
            "address": str(self._secrets.identity.address),
            "tor": dict(self._tor_state),
            "outbox_depth": self._store.outbox_depth(),
            "last_delivery_ms": self._store.last_delivery(),
            "contacts": contacts,
        }

    async def contact_add(self, card: str, name: str | None = None) -> dict[str, Any]:
        parsed = ContactCard.parse(card)
        if parsed.address == self._secrets.identity.address:
            raise ConfigError("that card is this endpoint's own")
        contact = self._store.add_contact(
            name or parsed.name, parsed.address, parsed.client_auth_public, _now_ms()
        )
        await self._authorize()
        if self._tor is not None:
            await self._tor.add_client_auth(contact.address, self._secrets.client_auth_private)
        if self._nursery is not None:
            self._start_link(contact)
        log.info("event=contact_added contact=%s", contact.name)
        return {"name": contact.name, "address": str(contact.address)}

    async def _authorize(self) -> None:
        if self._tor is not None and self._service is not None:
            keys = [c.client_auth_public for c in self._store.contacts()]
            await self._tor.set_authorized_clients(self._service, keys)

    async def contact_list(self) -> list[dict[str, Any]]:
        return [
            {
                "name": c.name,
                "address": str(c.address),
                "added_ms": c.added_ms,
                "last_seen_ms": c.last_seen_ms,
                "reachable": bool((link := self._links.get(c.id)) and link.channels),
            }
            for c in self._store.contacts()
        ]

    async def contact_remove(self, name: str) -> dict[str, Any]:
        contact = self._store.remove_contact(name)
        link = self._links.pop(contact.id, None)
        if link is not None:
            link.stop()
        await self._authorize()
        if self._tor is not None:
            await self._tor.remove_client_auth(contact.address)
        log.info("event=contact_removed contact=%s", contact.name)
        return {"name": contact.name, "address": str(contact.address)}

    async def contact_verify(self, name: str) -> dict[str, Any]:
        contact = self._store.contact(name)
        number = safety_number(self._secrets.identity.public_key, contact.address.public_key)
        return {"name": contact.name, "safety_number": number}

    def _kick(self, contact_id: int) -> None:
        link = self._links.get(contact_id)
        if link is not None:
            link.kick.fire()

    def _expiry(self) -> int | None:
        ttl = self._config.message_expiry
        return None if ttl is None else _now_ms() + int(ttl * 1000)

    async def send_text(
        self, contact: str, body: str, content_type: str = "text/plain"
    ) -> dict[str, Any]:
        target = self._store.contact(contact)
        message_id = os.urandom(16)
        record = m.Text(message_id, _now_ms(), body, content_type)
        m.encode(record)  # refuse what could never be sent, before queueing it
        self._store.queue_text(
            target.id, message_id, record.created_ms, body, content_type, self._expiry()
        )
        self._kick(target.id)
        return {"id": message_id.hex(), "state": "queued"}

    async def send_file(self, contact: str, path: str) -> dict[str, Any]:
        target = self._store.contact(contact)
        source = Path(path)
        if not source.is_absolute():
            raise ConfigError("give the file's absolute path")
        file_id = os.urandom(16)
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
        self._kick(target.id)
        return {"id": file_id.hex(), "name": queued.name, "size": queued.size, "state": "queued"}

    def _stored_json(self, stored: Any) -> dict[str, Any]:
        data: dict[str, Any] = {
            "seq": stored.seq,
            "id": stored.id.hex(),
            "contact": stored.contact,
            "direction": stored.direction,
            "kind": stored.kind,
            "created_ms": stored.created_ms,
            "received_ms": stored.received_ms,
            "state": stored.state,
        }
        if stored.kind == "text":
            data["body"] = stored.body
            data["content_type"] = stored.content_type
        elif stored.file is not None:
            data["file"] = {
                "name": stored.file.name,
                "size": stored.file.size,
                "complete": stored.file.complete,
            }
        return data

    async def inbox(self, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        return [self._stored_json(s) for s in self._store.inbox(after=after, limit=limit)]

    async def message(self, id: str) -> dict[str, Any]:
        return self._stored_json(self._store.message(_parse_id(id)))

    async def mark_read(self, ids: list[str]) -> dict[str, Any]:
        parsed = [_parse_id(i) for i in ids]
        changed = self._store.mark_read(parsed, _now_ms(), direction=Direction.IN)
        # Tell each sender (best effort: receipts owed to an offline contact
        # are kept in memory until the next session, not across restarts).
        for message_id in changed:
            stored = self._store.message(message_id)
            link = self._links.get(stored.contact_id)
            if link is not None:
                link.receipts.append(message_id)
                link.kick.fire()
        return {"marked": len(changed)}

    async def export_file(self, id: str, dest: str) -> dict[str, Any]:
        target = Path(dest)
        if not target.is_absolute():
            raise ConfigError("give an absolute destination path")
        written = await trio.to_thread.run_sync(self._store.export_file, _parse_id(id), target)
        size = await trio.to_thread.run_sync(lambda: written.stat().st_size)
        return {"path": str(written), "size": size}

    async def retry(self, contact: str | None = None) -> dict[str, Any]:
        if contact is None:
            links = list(self._links.values())
        else:
            target = self._store.contact(contact).id  # UnknownContactError for a bad name
            links = [self._links[target]] if target in self._links else []
        for link in links:
            link.failures = 0
            link.kick.fire()
        return {"contacts": len(links)}

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


def _reject_reason(exc: Exception) -> int:
    name = type(exc).__name__
    if "NoSpace" in name:
        return m.FileRejectReason.NO_SPACE
    if "Hash" in name:
        return m.FileRejectReason.HASH_MISMATCH
    if "TooLarge" in name or "too large" in str(exc):
        return m.FileRejectReason.TOO_LARGE
    return m.FileRejectReason.DECLINED
