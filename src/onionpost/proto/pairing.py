"""Pairing an owner with its mailbox, and the owner's signed mailbox announcement.

Theory of operation
-------------------
The operator of a mailbox makes a :class:`SetupCode` and hands it to the
owner out of band (typed, pasted, read aloud). It names the mailbox and
carries a 32-byte secret from which both sides derive what pairing needs:
an X25519 key for tor's client authorization (so that the owner can reach
the mailbox's onion service before the mailbox knows the owner), and a
token the owner presents to prove it holds the code. The mailbox stores
only :func:`token_digest` of the token. Text form (111 base32 characters
after the prefix)::

    onionpost-mailbox1:<base32 of: version u8 = 1 || mailbox identity key (32)
                                   || secret (32) || checksum (4)>
    checksum = BLAKE2b-512(version || identity key || secret)[:4]

Derivations (keyed BLAKE2b-256, the secret as key, one label each)::

    client-auth private = clamp(BLAKE2b(key=secret, "onionpost mailbox client-auth"))
    token               = BLAKE2b(key=secret, "onionpost mailbox token")
    token digest        = BLAKE2b(key=token,  "onionpost mailbox token digest")

A :class:`MailboxAnnouncement` is the owner's signed "my mailbox is M" (or
"I have none"); endpoints send it to their contacts, who keep the one with
the highest ``version`` (138 bytes, big-endian integers)::

    format      u8     = 1
    owner       32     the owner's identity key
    has_mailbox u8     0 or 1
    mailbox     32     the mailbox's identity key, or 32 zero bytes
    version     u64    milliseconds since the epoch when issued
    signature   64     Ed25519 by the owner over ANNOUNCEMENT_CONTEXT || the 74 bytes above
    ANNOUNCEMENT_CONTEXT = b"onionpost mailbox announcement\\x00"
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import ClassVar, Final

from onionpost.errors import AuthenticationError, ConfigError, MessageDecodeError
from onionpost.limits import MAX_TIME_MS
from onionpost.proto import _onetime
from onionpost.proto._crypto import constant_time_equal, ed25519_verify
from onionpost.proto._onetime import CodeKind, OneTimeCode
from onionpost.proto.address import OnionAddress
from onionpost.proto.identity import Identity

__all__ = [
    "ANNOUNCEMENT_CONTEXT",
    "ANNOUNCEMENT_LEN",
    "SETUP_PREFIX",
    "SETUP_TEXT_LEN",
    "MailboxAnnouncement",
    "SetupCode",
    "token_digest",
]

SETUP_PREFIX: Final = "onionpost-mailbox1:"
SECRET_LEN: Final = _onetime.SECRET_LEN
SETUP_TEXT_LEN: Final = _onetime.CODE_TEXT_LEN  # 111
_KEY_LEN: Final = _onetime.KEY_LEN
_SETUP: Final = CodeKind(
    prefix=SETUP_PREFIX,
    labels=b"onionpost mailbox",
    what="mailbox setup code",
    article="a",
    code_noun="a setup code",
    proof_noun="a pairing token",
    own_refusal="that setup code is this endpoint's own address",
    length_hint=": cut short or run together?",
)

ANNOUNCEMENT_FORMAT: Final = 1
ANNOUNCEMENT_CONTEXT: Final = b"onionpost mailbox announcement\x00"
_ANNOUNCEMENT_BODY: Final = struct.Struct(f">B{_KEY_LEN}sB{_KEY_LEN}sQ")
_SIGNATURE_LEN: Final = 64
ANNOUNCEMENT_LEN: Final = _ANNOUNCEMENT_BODY.size + _SIGNATURE_LEN  # 138
_REFUSED: Final = "mailbox announcement refused"


@dataclass(frozen=True, slots=True)
class SetupCode(OneTimeCode):
    """What a mailbox's operator gives an owner to pair with it. The text is a secret.

    Its tor client-authorization key is the owner's at the mailbox during
    pairing; its token proves to the mailbox that the owner holds the code.
    """

    KIND: ClassVar[CodeKind] = _SETUP

    mailbox: OnionAddress
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        self._check_secret()

    @property
    def service(self) -> OnionAddress:
        return self.mailbox


def token_digest(token: bytes) -> bytes:
    """What the mailbox stores in place of a token (32 bytes)."""
    return _SETUP.digest(token)


@dataclass(frozen=True, slots=True)
class MailboxAnnouncement:
    """``owner`` says that its mailbox is ``mailbox`` (None: it has none), signed.

    ``version`` is the time of issue in milliseconds; a receiver keeps the
    announcement with the highest version it has verified.
    """

    owner: OnionAddress
    mailbox: OnionAddress | None
    version: int
    signature: bytes = field(repr=False)

    def _body(self) -> bytes:
        mailbox = self.mailbox.public_key if self.mailbox is not None else bytes(_KEY_LEN)
        return _ANNOUNCEMENT_BODY.pack(
            ANNOUNCEMENT_FORMAT,
            self.owner.public_key,
            int(self.mailbox is not None),
            mailbox,
            self.version,
        )

    @classmethod
    def issue(
        cls, identity: Identity, mailbox: OnionAddress | None, *, version: int
    ) -> MailboxAnnouncement:
        if type(version) is not int or not 0 <= version <= MAX_TIME_MS:
            raise ConfigError(f"an announcement's version is a time in ms, 0 to {MAX_TIME_MS}")
        if mailbox is not None and mailbox == identity.address:
            raise ConfigError("an endpoint cannot be its own mailbox")
        unsigned = cls(identity.address, mailbox, version, b"")
        signature = identity.sign(ANNOUNCEMENT_CONTEXT + unsigned._body())
        return cls(identity.address, mailbox, version, signature)

    def to_bytes(self) -> bytes:
        return self._body() + self.signature

    @classmethod
    def parse(cls, data: bytes, *, owner: OnionAddress) -> MailboxAnnouncement:
        """Parse and verify an announcement that ``owner`` is said to have signed.

        MessageDecodeError if malformed; AuthenticationError (one text) if
        the signature is bad or the announcement is another owner's.
        """
        if not isinstance(data, bytes) or len(data) != ANNOUNCEMENT_LEN:
            raise MessageDecodeError(f"a mailbox announcement is {ANNOUNCEMENT_LEN} bytes")
        fmt, owner_key, has_mailbox, mailbox_key, version = _ANNOUNCEMENT_BODY.unpack_from(data)
        if fmt != ANNOUNCEMENT_FORMAT:
            raise MessageDecodeError(f"unknown mailbox announcement format {fmt}")
        if has_mailbox not in (0, 1) or (not has_mailbox and mailbox_key != bytes(_KEY_LEN)):
            raise MessageDecodeError("malformed mailbox announcement")
        if has_mailbox and mailbox_key == owner_key:
            raise MessageDecodeError("an endpoint cannot be its own mailbox")
        if version > MAX_TIME_MS:
            # A time in ms; past it, no store keeps it (SQLite: 2^63 - 1).
            raise MessageDecodeError(f"an announcement's version is at most {MAX_TIME_MS}")
        signature = data[_ANNOUNCEMENT_BODY.size :]
        body = data[: _ANNOUNCEMENT_BODY.size]
        try:
            ed25519_verify(owner.public_key, signature, ANNOUNCEMENT_CONTEXT + body)
        except AuthenticationError:
            raise AuthenticationError(_REFUSED) from None
        if not constant_time_equal(owner_key, owner.public_key):
            raise AuthenticationError(_REFUSED)
        mailbox = OnionAddress(mailbox_key) if has_mailbox else None
        return cls(owner, mailbox, version, signature)
