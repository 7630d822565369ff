"""Group operations: the records of a group's membership log and their
canonical signed encoding (protocol-spec/groups.md §3).

An operation is a msgpack array whose first eight fields the author signs
with its Ed25519 identity key, after a domain-separation prefix::

    op      = [1, group_id, seq, parents, author, time_ms, kind, args, signature]
    signed  = b"onionpost group op v1\x00" || msgpack(op[:8])
    hash    = SHA-256(b"onionpost group op hash v1\x00" || msgpack(op[:8]))
    head    = SHA-256(b"onionpost group head v1\x00" || the sorted heads)

:meth:`Operation.decode` is strict: every field's type and length, the
shape each kind requires, the canonical encoding (nothing else re-encodes
to the bytes given), MAX_GROUP_OP_BYTES. What a log does with operations is
:mod:`onionpost.proto.groups`.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Final

from onionpost.errors import AuthenticationError, GroupDecodeError, GroupSignatureError
from onionpost.limits import MAX_GROUP_NAME, MAX_GROUP_OP_BYTES, MAX_GROUP_PARENTS
from onionpost.names import contact_name_problem
from onionpost.proto._crypto import ed25519_verify
from onionpost.proto._msgpack import NotMsgpack, pack, unpack
from onionpost.proto.address import OnionAddress
from onionpost.proto.identity import Identity

__all__ = [
    "ADMIN_KINDS",
    "GROUP_ID_LEN",
    "HASH_CONTEXT",
    "HASH_LEN",
    "HEAD_CONTEXT",
    "SIGN_CONTEXT",
    "MemberCard",
    "OpKind",
    "Operation",
    "head_hash",
    "sign_operation",
]

VERSION: Final = 1
SIGN_CONTEXT: Final = b"onionpost group op v1\x00"
HASH_CONTEXT: Final = b"onionpost group op hash v1\x00"
HEAD_CONTEXT: Final = b"onionpost group head v1\x00"
GROUP_ID_LEN: Final = 16
HASH_LEN: Final = 32
KEY_LEN: Final = 32
SIGNATURE_LEN: Final = 64
_MAX_U64: Final = 2**64 - 1


class OpKind(enum.IntEnum):
    """An operation's ``kind`` on the wire, and what its ``args`` are."""

    CREATE = 0  # [name, card]: the author's own card
    ADD = 1  # [card]
    REMOVE = 2  # [member key]
    LEAVE = 3  # []
    RENAME = 4  # [name]
    PROMOTE = 5  # [member key]
    DEMOTE = 6  # [member key]


#: What each kind requires of its author at the point it applies.
ADMIN_KINDS: Final = frozenset(
    {OpKind.ADD, OpKind.REMOVE, OpKind.RENAME, OpKind.PROMOTE, OpKind.DEMOTE}
)


def _name_problem(name: object) -> str | None:
    problem = contact_name_problem(name)
    if problem is None and isinstance(name, str) and len(name) > MAX_GROUP_NAME:
        problem = f"is at most {MAX_GROUP_NAME} characters"
    return problem


def _bad(what: str) -> GroupDecodeError:
    return GroupDecodeError(f"not a group operation: {what}")


@dataclass(frozen=True, slots=True)
class MemberCard:
    """What a member is known by: its identity key (its onion address is made
    of it, rend-spec-v3 §6), the client-authorization key other members
    authorize at their onion services, and a display name."""

    identity_key: bytes
    client_auth_public: bytes
    name: str

    @property
    def address(self) -> OnionAddress:
        return OnionAddress.from_public_key(self.identity_key)

    def to_wire(self) -> list[Any]:
        return [self.identity_key, self.client_auth_public, self.name]

    @classmethod
    def from_wire(cls, value: object) -> MemberCard:
        if not isinstance(value, list | tuple) or len(value) != 3:
            raise _bad("a card is [identity key, client-auth key, name]")
        key, auth, name = value
        if not _is_bytes(key, KEY_LEN) or not _is_bytes(auth, KEY_LEN):
            raise _bad("a card's keys are 32 bytes")
        problem = _name_problem(name)
        if problem is not None:
            raise _bad(f"a member's name {problem}")
        return cls(key, auth, name)


def _is_bytes(value: object, size: int) -> bool:
    return isinstance(value, bytes) and len(value) == size


@dataclass(frozen=True, slots=True)
class Operation:
    """One signed change of a group. Build with :func:`sign_operation`; read
    with :meth:`decode`. ``name``, ``card`` and ``target`` are set as the
    kind's ``args`` say (the others are None)."""

    group_id: bytes
    seq: int
    parents: tuple[bytes, ...]
    author: bytes
    time_ms: int
    kind: OpKind
    name: str | None
    card: MemberCard | None
    target: bytes | None
    signature: bytes
    hash: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hash", _sha256(HASH_CONTEXT, self._unsigned()))

    def __repr__(self) -> str:
        return f"Operation({self.kind.name} seq={self.seq} hash={self.hash.hex()[:16]})"

    def args(self) -> list[Any]:
        kind = self.kind
        if kind is OpKind.CREATE:
            assert self.card is not None
            return [self.name, self.card.to_wire()]
        if kind is OpKind.ADD:
            assert self.card is not None
            return [self.card.to_wire()]
        if kind is OpKind.RENAME:
            return [self.name]
        if kind is OpKind.LEAVE:
            return []
        return [self.target]

    def _fields(self) -> list[Any]:
        return [
            VERSION,
            self.group_id,
            self.seq,
            list(self.parents),
            self.author,
            self.time_ms,
            int(self.kind),
            self.args(),
        ]

    def _unsigned(self) -> bytes:
        return pack(self._fields())

    def signed_message(self) -> bytes:
        """What the author signs (groups.md §3.2)."""
        return SIGN_CONTEXT + self._unsigned()

    def encode(self) -> bytes:
        return pack([*self._fields(), self.signature])

    def verify(self) -> None:
        """:class:`GroupSignatureError` unless the author signed it."""
        try:
            ed25519_verify(self.author, self.signature, self.signed_message())
        except AuthenticationError:
            raise GroupSignatureError(
                "the operation's signature does not verify", op=self.hash
            ) from None

    @classmethod
    def decode(cls, data: bytes) -> Operation:
        """Strictly decode :meth:`encode`'s output: every field's type and
        length, the canonical encoding (nothing else re-encodes to it), at
        most MAX_GROUP_OP_BYTES. :class:`GroupDecodeError`. The signature is
        not checked here (:meth:`verify`)."""
        if not isinstance(data, bytes) or len(data) > MAX_GROUP_OP_BYTES:
            raise _bad(f"an operation is at most {MAX_GROUP_OP_BYTES} bytes")
        try:
            value = unpack(data, max_len=MAX_GROUP_OP_BYTES, max_items=MAX_GROUP_PARENTS + 1)
        except NotMsgpack:
            raise _bad("not msgpack") from None
        if not isinstance(value, tuple) or len(value) != 9:
            raise _bad("an operation is an array of 9")
        version, group_id, seq, parents, author, time_ms, kind, args, signature = value
        if version != VERSION or type(version) is not int:
            raise _bad(f"version {version!r}")
        if not _is_bytes(group_id, GROUP_ID_LEN) or not _is_bytes(author, KEY_LEN):
            raise _bad("a group id is 16 bytes, an author 32")
        for number in (seq, time_ms):
            if type(number) is not int or not 0 <= number <= _MAX_U64:
                raise _bad("seq and time are unsigned 64-bit integers")
        if not isinstance(parents, tuple) or not all(_is_bytes(p, HASH_LEN) for p in parents):
            raise _bad("parents are 32-byte hashes")
        if not _is_bytes(signature, SIGNATURE_LEN):
            raise _bad("a signature is 64 bytes")
        if type(kind) is not int or not 0 <= kind < len(OpKind):
            raise _bad(f"unknown kind {kind!r}")
        op = cls(
            group_id,
            seq,
            parents,
            author,
            time_ms,
            OpKind(kind),
            *_args(OpKind(kind), args),
            signature,
        )
        _check_shape(op)
        if op.encode() != data:
            raise _bad("not in its canonical encoding")
        return op


def _args(kind: OpKind, args: object) -> tuple[str | None, MemberCard | None, bytes | None]:
    """(name, card, target) out of a kind's ``args``."""
    if not isinstance(args, tuple):
        raise _bad("args are an array")
    expected = {OpKind.CREATE: 2, OpKind.LEAVE: 0}.get(kind, 1)
    if len(args) != expected:
        raise _bad(f"{kind.name.lower()} takes {expected} args")
    if kind is OpKind.CREATE:
        return _group_name(args[0]), MemberCard.from_wire(args[1]), None
    if kind is OpKind.ADD:
        return None, MemberCard.from_wire(args[0]), None
    if kind is OpKind.RENAME:
        return _group_name(args[0]), None, None
    if kind is OpKind.LEAVE:
        return None, None, None
    if not _is_bytes(args[0], KEY_LEN):
        raise _bad("a member key is 32 bytes")
    return None, None, args[0]


def _group_name(name: object) -> str:
    problem = _name_problem(name)
    if problem is not None:
        raise _bad(f"a group name {problem}")
    assert isinstance(name, str)
    return name


def _check_shape(op: Operation) -> None:
    """What holds of any operation whatever the log: the create starts the
    author's sequence with no parents; every other names 1 to
    MAX_GROUP_PARENTS parents, sorted, once each."""
    if op.seq < 1:
        raise _bad("seq starts at 1")
    if op.kind is OpKind.CREATE:
        assert op.card is not None
        if op.parents or op.seq != 1 or op.card.identity_key != op.author:
            raise _bad("a create has no parents, seq 1, and its author's own card")
    elif not 1 <= len(op.parents) <= MAX_GROUP_PARENTS or list(op.parents) != sorted(
        set(op.parents)
    ):
        raise _bad(f"1 to {MAX_GROUP_PARENTS} parents, sorted, each once")
    if len(op.encode()) > MAX_GROUP_OP_BYTES:
        raise _bad(f"an operation is at most {MAX_GROUP_OP_BYTES} bytes")


def _sha256(context: bytes, data: bytes) -> bytes:
    return hashlib.sha256(context + data).digest()


def head_hash(heads: Iterable[bytes]) -> bytes:
    """The log head hash of a set of heads (groups.md §3.3)."""
    return _sha256(HEAD_CONTEXT, b"".join(sorted(heads)))


def sign_operation(  # noqa: PLR0917 - one per field of the record
    author: Identity,
    group_id: bytes,
    seq: int,
    parents: Iterable[bytes],
    time_ms: int,
    kind: OpKind,
    *,
    name: str | None = None,
    card: MemberCard | None = None,
    target: bytes | None = None,
) -> Operation:
    """A new operation signed by ``author``; :class:`GroupDecodeError` when it
    would not decode (a bad name, too many parents, ...)."""
    unsigned = Operation(
        group_id,
        seq,
        tuple(sorted(set(parents))),
        author.public_key,
        time_ms,
        kind,
        name,
        card,
        target,
        b"\x00" * SIGNATURE_LEN,
    )
    op = replace(unsigned, signature=author.sign(unsigned.signed_message()))
    return Operation.decode(op.encode())
