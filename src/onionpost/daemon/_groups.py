"""The local API's team channels: their handlers (groups.md).

Every change of a group (create, add, remove, leave, rename, promote,
demote) is an operation we sign with our identity key at our log's heads
(:func:`~onionpost.proto.groups.sign_operation`) and add through
``store.groups``, which checks it with :class:`~onionpost.proto.groups.GroupLog`
like any operation received and stores it all or nothing. Changes are made
one at a time (a lock), so two of ours never claim one ``seq``.

A send to a group is one ordinary outgoing message per other member at the
log's present head, queued in one transaction (``store.groups.queue_text``,
``queue_file``: a file is one encrypted copy and one offer per member) and
delivered pairwise over each member's link, as a list send is. A member
the log says was removed (or that left) sends nothing more to the group.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Final

import trio

from onionpost import api
from onionpost.daemon import _labels
from onionpost.daemon._common import new_send_id, now_ms
from onionpost.daemon.delivery import DeliveryEngine
from onionpost.errors import ConfigError, GroupNotAllowedError, GroupRule, UnknownContactError
from onionpost.host import StoreWorker
from onionpost.limits import MAX_FILE_SIZE
from onionpost.names import contact_name_problem
from onionpost.proto import messages as m
from onionpost.proto.address import OnionAddress
from onionpost.proto.groups import (
    GroupLog,
    GroupState,
    MemberCard,
    Operation,
    OpKind,
    sign_operation,
)
from onionpost.proto.identity import Identity
from onionpost.proto.labels import Label, LabelPolicy, Via
from onionpost.store import Audience, Contact, Direction, GroupSend, Store, Stored

__all__ = ["GroupHandlers", "group_sent_record"]

log = logging.getLogger("onionpost.daemon")

_ID_LEN: Final = 16
_DONE: Final = frozenset({api.MessageState.DELIVERED, api.MessageState.READ})


def group_sent_record(send: GroupSend, unreachable: Sequence[str] = ()) -> api.GroupSent:
    """A group send as the local API shows it, with each member's copy."""
    copies = tuple(
        api.GroupCopy(
            contact=c.contact,
            id=c.message_id.hex(),
            state=api.MessageState.DEPOSITED
            if c.deposited and c.state in ("queued", "sent")
            else api.MessageState(c.state.value),
        )
        for c in send.copies
    )
    return api.GroupSent(
        id=send.id.hex(),
        group=send.group,
        group_id=send.group_id.hex(),
        head=send.head.hex(),
        created_ms=send.created_ms,
        copies=copies,
        delivered=sum(1 for c in copies if c.state in _DONE),
        read=sum(1 for c in copies if c.state is api.MessageState.READ),
        unreachable=tuple(unreachable),
        kind=api.Kind(send.kind.value),
    )


def card_of(contact: Contact) -> MemberCard:
    """A contact as a member's card: its identity key (its address's), its
    client-authorization key and its name here."""
    return MemberCard(contact.address.public_key, contact.client_auth_public, contact.name)


#: Builds the operations of one change, given the log and a signer of the next.
Change = Callable[[GroupLog, Callable[..., Operation]], list[Operation]]


class GroupHandlers:
    """The handlers of the ``group_*`` requests, over the store and the engine."""

    def __init__(  # noqa: PLR0917 - the parts it works with
        self,
        store: Store,
        engine: DeliveryEngine,
        worker: StoreWorker,
        identity: Identity,
        card: MemberCard,
        labels: LabelPolicy | None = None,
        *,
        max_file_size: int = MAX_FILE_SIZE,
    ) -> None:
        self._store = store
        self._max_file_size = max_file_size
        self._labels = labels or LabelPolicy.build()
        self._engine = engine
        self._worker = worker
        self._identity = identity
        self._card = card
        self._changing = trio.Lock()
        # Members' addresses to our contacts' ids, as the last record saw them.
        self._contact_ids: dict[str, int] = {}

    def __repr__(self) -> str:
        return "GroupHandlers()"

    @property
    def _me(self) -> bytes:
        return self._identity.public_key

    # -- records (in the worker) ------------------------------------------------------

    def _introducer(self, peer: Contact) -> str | None:
        """The name of whoever introduced ``peer`` (groups.md §9): our
        contact's name for that key, else its card's in that group."""
        if peer.introduced_group is None or peer.introduced_by is None:
            return None
        by = OnionAddress.from_public_key(peer.introduced_by)
        contact = self._store.contacts.contact_by_address(by)
        if contact is not None:
            return contact.name
        groups = self._store.groups
        if groups.known(peer.introduced_group):
            member = groups.log(peer.introduced_group).state.members.get(peer.introduced_by)
            if member is not None:
                return member.card.name
        return str(by)

    def _record(self, found: GroupLog, sends: Sequence[GroupSend] = ()) -> api.Group:
        state = found.state
        members = []
        verified = self._store.contacts.verified()
        for key, member in state.members.items():
            address = OnionAddress.from_public_key(key)
            peer = self._store.contacts.peer_by_address(address)
            if peer is not None:
                self._contact_ids[str(address)] = peer.id
            members.append(
                api.GroupMember(
                    name=member.card.name,
                    address=str(address),
                    admin=member.admin,
                    contact=None if peer is None or peer.introduced else peer.name,
                    introduced_by=None if peer is None else self._introducer(peer),
                    verified=None if peer is None else peer.id in verified,
                )
            )
        members.sort(key=lambda g: (g.name.casefold(), g.address))
        return api.Group(
            id=found.group_id.hex(),
            name=state.name,
            head=found.head.hex(),
            member=state.is_member(self._me),
            admin=state.is_admin(self._me),
            members=tuple(members),
            operations=len(found),
            sends=tuple(group_sent_record(s) for s in sends),
        )

    def _key_of(self, found: GroupLog, name: str) -> bytes:
        """A member's identity key by our contact's name, else by its card's."""
        contact = None
        with contextlib.suppress(UnknownContactError):
            contact = self._store.contacts.contact(name)
        if contact is not None and found.state.is_member(contact.address.public_key):
            return contact.address.public_key
        matches = [
            k for k, g in found.state.members.items() if g.card.name.casefold() == name.casefold()
        ]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise ConfigError(f"several members are named {name!r}")
        raise ConfigError(f"{name!r} is not a member of {found.state.name!r}")

    def _cards(self, names: Sequence[str]) -> list[MemberCard]:
        seen: set[str] = set()
        cards = []
        for name in names:
            if name.casefold() in seen:
                raise ConfigError(f"{name!r} is named twice")
            seen.add(name.casefold())
            try:
                cards.append(card_of(self._store.contacts.contact(name)))
            except UnknownContactError:
                mine = OnionAddress.in_text(name) == self._card.address
                if mine or name.casefold() == self._card.name.casefold():
                    raise ConfigError(
                        f"{name!r} is this endpoint: whoever makes a group is its first "
                        "member, and adds contacts"
                    ) from None
                raise
        return cards

    def _signer(self, found: GroupLog) -> Callable[..., Operation]:
        """Signs our operations one after another on ``found``'s heads."""
        seq = sum(1 for op in found.ordered() if op.author == self._me)
        heads = list(found.heads)

        def sign(kind: OpKind, **args: object) -> Operation:
            nonlocal seq, heads
            seq += 1
            op = sign_operation(
                self._identity,
                found.group_id,
                seq,
                heads,
                now_ms(),
                kind,
                **args,  # type: ignore[arg-type]
            )
            heads = [op.hash]
            return op

        return sign

    def _name_free(self, name: str, group_id: bytes | None = None) -> None:
        """Refuse a name another group kept here has (any letter case): every
        command that names a group by it would then need its id. (A member's
        rename elsewhere can still make two; ids tell them apart.)"""
        problem = contact_name_problem(name)
        if problem is not None:
            raise ConfigError(f"a group name {problem}")
        taken = [g for g in self._store.groups.named(name) if g != group_id]
        if taken:
            # Its own name, which may differ from ``name`` in letter case.
            held = self._store.groups.log(taken[0]).state.name
            raise ConfigError(
                f"a group named {held!r} already exists here (id {taken[0].hex()}): "
                "choose another name"
            )

    def _create(self, name: str, members: Sequence[str]) -> api.Group:
        self._name_free(name)
        cards = self._cards(members)
        group_id = os.urandom(_ID_LEN)
        create = sign_operation(
            self._identity, group_id, 1, (), now_ms(), OpKind.CREATE, name=name, card=self._card
        )
        adds, heads = [], [create.hash]
        for seq, card in enumerate(cards, start=2):
            op = sign_operation(
                self._identity, group_id, seq, heads, now_ms(), OpKind.ADD, card=card
            )
            adds.append(op)
            heads = [op.hash]
        made = self._store.groups.start(create, now_ms(), adds)
        return self._record(made)

    def _change(self, group: str, change: Change) -> api.Group:
        found = self._store.groups.find(group)
        ops = change(found, self._signer(found))
        try:
            self._store.groups.apply(found.group_id, ops, now_ms())
        except GroupNotAllowedError as exc:
            raise _in_our_words(exc, found.state, ops) from None
        return self._record(self._store.groups.log(found.group_id))

    async def _changed(self, group: str, change: Change) -> api.Group:
        async with self._changing:
            made = await self._worker(self._change, group, change)
        log.info("event=group_changed operations=%d", made.operations)
        self._engine.group_changed(bytes.fromhex(made.id))
        await self._engine.publish_group(bytes.fromhex(made.id))
        return made

    # -- handlers ------------------------------------------------------------------------

    async def group_create(self, request: api.GroupCreate) -> api.Group:
        async with self._changing:
            made = await self._worker(self._create, request.name, request.members)
        log.info("event=group_created members=%d", len(made.members))
        self._engine.group_changed(bytes.fromhex(made.id))
        await self._engine.publish_group(bytes.fromhex(made.id))
        return made

    async def group_add(self, request: api.GroupAdd) -> api.Group:
        def change(found: GroupLog, sign: Callable[..., Operation]) -> list[Operation]:
            return [sign(OpKind.ADD, card=c) for c in self._cards(request.members)]

        return await self._changed(request.group, change)

    async def group_remove(self, request: api.GroupRemove) -> api.Group:
        def change(found: GroupLog, sign: Callable[..., Operation]) -> list[Operation]:
            keys = [self._key_of(found, n) for n in request.members]
            if len(set(keys)) != len(keys):
                raise ConfigError("a member is named twice")
            if self._me in keys:
                raise ConfigError("to take yourself out of a group, leave it")
            return [sign(OpKind.REMOVE, target=k) for k in keys]

        return await self._changed(request.group, change)

    async def group_leave(self, request: api.GroupLeave) -> api.Group:
        def change(found: GroupLog, sign: Callable[..., Operation]) -> list[Operation]:
            if not found.state.is_member(self._me):
                raise GroupNotAllowedError("we are no longer a member of this group")
            return [sign(OpKind.LEAVE)]

        return await self._changed(request.group, change)

    async def group_rename(self, request: api.GroupRename) -> api.Group:
        def change(found: GroupLog, sign: Callable[..., Operation]) -> list[Operation]:
            self._name_free(request.name, found.group_id)
            return [sign(OpKind.RENAME, name=request.name)]

        return await self._changed(request.group, change)

    async def group_promote(self, request: api.GroupPromote) -> api.Group:
        def change(found: GroupLog, sign: Callable[..., Operation]) -> list[Operation]:
            return [sign(OpKind.PROMOTE, target=self._key_of(found, request.member))]

        return await self._changed(request.group, change)

    async def group_demote(self, request: api.GroupDemote) -> api.Group:
        def change(found: GroupLog, sign: Callable[..., Operation]) -> list[Operation]:
            return [sign(OpKind.DEMOTE, target=self._key_of(found, request.member))]

        return await self._changed(request.group, change)

    def _show(self, group: str) -> api.Group:
        found = self._store.groups.find(group)
        return self._record(found, self._store.groups.sends(found.group_id))

    async def group_show(self, request: api.GroupShow) -> api.Group:
        found = await self._worker(self._show, request.group)
        me = str(self._identity.address)
        members = tuple(
            m
            if m.address == me
            else replace(
                m,
                reachable=m.address in self._contact_ids
                and self._engine.reachable(self._contact_ids[m.address]),
            )
            for m in found.members
        )
        return replace(found, members=members)

    def _all(self) -> tuple[api.Group, ...]:
        return tuple(self._record(g) for g in self._store.groups.all())

    async def group_list(self, request: api.GroupList) -> tuple[api.Group, ...]:
        return await self._worker(self._all)

    def _audience(self, label: Label) -> Audience:
        """The handling label's rules for a group (spec.md §5.10: no new
        TLP:RED to a group, each member's limits), checked with the members
        the send goes to, in its transaction: one refusal queues nothing."""

        def check(members: Sequence[Contact]) -> None:
            _labels.check_list_send(
                self._store,
                self._labels,
                label,
                [(c.id, c.name) for c in members],
                via=Via.GROUP,
            )

        return check

    async def group_send_text(self, request: api.GroupSendText) -> api.GroupSent:
        found = await self._worker(self._store.groups.find, request.group)
        send_id = new_send_id(request.id)
        label = self._labels.label(request.label)
        text = m.Text(send_id, now_ms(), request.body, request.content_type, label.text)
        queued = await self._engine.queue_group_text(
            found.group_id, send_id, text, sender=self._me, audience=self._audience(label)
        )
        log.info("event=group_send copies=%d", len(queued.send.copies))
        return group_sent_record(queued.send, queued.unreachable)

    async def group_send_file(self, request: api.GroupSendFile) -> api.GroupSent:
        source = Path(request.path)
        if not source.is_absolute():
            raise ConfigError("give the file's absolute path")
        found = await self._worker(self._store.groups.find, request.group)
        send_id = new_send_id(request.id)
        label = self._labels.label(request.label)
        # Its own thread, not the store worker: copying a file once per
        # member must not hold up every other store call.
        queued = await trio.to_thread.run_sync(
            partial(
                self._store.groups.queue_file,
                found.group_id,
                send_id,
                now_ms(),
                source,
                self._max_file_size,
                sender=self._me,
                label=label.text,
                audience=self._audience(label),
            )
        )
        for copy in queued.send.copies:
            self._engine.kick(copy.contact_id)
        log.info("event=group_send kind=file copies=%d", len(queued.send.copies))
        return group_sent_record(queued.send, queued.unreachable)

    # -- messages ------------------------------------------------------------------------

    def annotate(self, message: api.Message, stored: Stored, *, sends: bool) -> api.Message:
        """In the worker: ``message`` with the group it belongs to and, for one
        of our group sends when ``sends``, every member's copy."""
        groups = self._store.groups
        found = groups.of_message(stored.direction, stored.contact_id, stored.id)
        if found is None:
            return message
        send = None
        if sends and stored.direction == Direction.OUT:
            of = groups.send_of_message(stored.contact_id, stored.id)
            send = None if of is None else group_sent_record(of)
        return replace(message, group=found.group, group_id=found.group_id.hex(), group_send=send)


def _in_our_words(
    exc: GroupNotAllowedError, state: GroupState, ops: Sequence[Operation]
) -> GroupNotAllowedError:
    """The log's refusal of one of our own operations ('add: already a
    member'), said naming the group and the member; the same kind of error.
    Refusals no user's change makes (a receiver's rules) stay the log's."""
    op = next((o for o in ops if o.hash == exc.op), None)
    if op is None or exc.rule is None:
        return exc
    group = state.name
    if op.card is not None:
        who = op.card.name
    else:
        member = state.members.get(op.target) if op.target is not None else None
        who = "?" if member is None else member.card.name
    words = {
        GroupRule.AUTHOR_NOT_MEMBER: f"we are no longer a member of the group {group!r}",
        GroupRule.AUTHOR_NOT_ADMIN: (
            f"only an admin of the group {group!r} may do that, and we are not one"
        ),
        GroupRule.ALREADY_MEMBER: f"{who!r} is already a member of {group!r}",
        GroupRule.NOT_MEMBER: f"{who!r} is not a member of {group!r}",
        GroupRule.ALREADY_ADMIN: f"{who!r} is already an admin of {group!r}",
        GroupRule.NOT_ADMIN: f"{who!r} is not an admin of {group!r}",
        GroupRule.GROUP_FULL: f"the group {group!r} is full: {exc}",
    }.get(exc.rule)
    if words is None:
        return exc
    return GroupNotAllowedError(words, op=exc.op, rule=exc.rule)
