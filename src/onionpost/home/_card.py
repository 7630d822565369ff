"""Contact cards: the one line an operator hands to another to become contacts.

Theory of operation
-------------------
A card says "this onion address is me, this is my tor client-authorization
key, call me this", signed by the identity key the address is made of, so a
card cannot be altered without the signature failing. Wire example (the
shape; base64 shortened)::

    onionpost1:lQHEIP3a...xA

    "onionpost1:" + base64url, no padding, of the msgpack array
      [1, identity_pub (bin 32), client_auth_pub (bin 32), name (str), signature (bin 64)
       (, mailbox announcement (bin 138))]
    signature = Ed25519(identity, b"onionpost contact card\\x00" + msgpack([1, id, ca, name]))

The optional sixth element is the endpoint's signed mailbox announcement
(:class:`onionpost.proto.pairing.MailboxAnnouncement`, mailbox.md
§Announcement): signed on its own by the same identity, so a contact added
from the card knows the mailbox from the start.

The encoding is canonical (msgpack's shortest forms, as msgpack-python
writes them); a card that decodes but does not re-encode to the same bytes is
refused, so every card has exactly one line. Byte-by-byte layout:
``protocol-spec/storage.md`` §Contact card.

A :class:`ContactCard` checks its signature when it is made, so no unsigned
or altered card exists as an object. :meth:`ContactCard.parse` raises
:class:`~onionpost.errors.CardError` with one specific reason.

The safety number (:func:`safety_number`) lets two operators compare, over
a channel they trust (in person, by phone), that each holds the other's real
card. It is symmetric: both sides compute the same 60 digits.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

from onionpost._files import read_small_file
from onionpost.errors import AuthenticationError, CardError, ConfigError, MessageDecodeError
from onionpost.home._paths import write_atomic
from onionpost.limits import MAX_CARD_FILE, MAX_TRUST_STAPLE_PART
from onionpost.names import contact_name_problem
from onionpost.proto import NotMsgpack, pack, unpack
from onionpost.proto.address import OnionAddress
from onionpost.proto.identity import Identity, verify_signature
from onionpost.proto.pairing import MailboxAnnouncement

__all__ = [
    "CARD_CONTEXT",
    "CARD_PREFIX",
    "ENDORSEMENT_PREFIX",
    "ContactCard",
    "check_name",
    "endorsement_line",
    "parse_endorsement_line",
    "read_card_file",
    "safety_number",
    "split_card_bundle",
    "write_card_file",
]

CARD_PREFIX: Final = "onionpost1:"
CARD_VERSION: Final = 1
CARD_CONTEXT: Final = b"onionpost contact card\x00"
_KEY_LEN: Final = 32
_SIGNATURE_LEN: Final = 64
# Longest possible card line: prefix + base64 of (array header, version, two
# bin 32, a str of 64 characters of up to 4 UTF-8 bytes, bin 64).
_MAX_CARD_CHARS: Final = 1024
# An endorsement line: base64url of at most MAX_TRUST_STAPLE_PART bytes.
_MAX_ENDORSEMENT_CHARS: Final = -(-MAX_TRUST_STAPLE_PART * 4 // 3)
_BASE64URL: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")

SAFETY_CONTEXT: Final = b"onionpost safety number v1\x00"
_SAFETY_GROUPS: Final = 12
_SAFETY_GROUP_DIGITS: Final = 5
_SAFETY_BYTES_PER_GROUP: Final = 5


class CardHolder(Protocol):
    """What a card is issued from: an endpoint's :class:`~onionpost.home.Secrets`."""

    @property
    def identity(self) -> Identity: ...
    @property
    def client_auth_public(self) -> bytes: ...
    @property
    def display_name(self) -> str: ...


def check_name(name: object, *, what: str = "a name") -> str:
    """``name`` if it is a usable display name, else :class:`ConfigError`.

    The rule is :func:`onionpost.names.contact_name_problem`: 1 to 64
    characters, not only spaces, none of them a control, format or separator
    character (which could hide or reorder text on a terminal).
    """
    problem = contact_name_problem(name)
    if problem is not None:
        raise ConfigError(f"{what} {problem}")
    assert isinstance(name, str)
    return name


def _body(identity_public: bytes, client_auth_public: bytes, name: str) -> list[Any]:
    return [CARD_VERSION, identity_public, client_auth_public, name]


def _pack(obj: list[Any]) -> bytes:
    packed = pack(obj)
    return packed


@dataclass(frozen=True, slots=True)
class ContactCard:
    """A signed, public description of an endpoint. Valid by construction."""

    address: OnionAddress
    client_auth_public: bytes
    name: str
    signature: bytes = field(repr=False)
    # The endpoint's signed mailbox announcement, when the card carries one.
    mailbox: MailboxAnnouncement | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.address, OnionAddress):
            raise CardError("malformed card: the address is not an onion address")
        if not isinstance(self.client_auth_public, bytes) or len(self.client_auth_public) != 32:
            raise CardError("malformed card: the client-authorization key is not 32 bytes")
        try:
            check_name(self.name, what="the card's name")
        except ConfigError as exc:
            raise CardError(f"malformed card: {exc}") from exc
        if not isinstance(self.signature, bytes) or len(self.signature) != _SIGNATURE_LEN:
            raise CardError("malformed card: the signature is not 64 bytes")
        signed = CARD_CONTEXT + _pack(
            _body(self.address.public_key, self.client_auth_public, self.name)
        )
        try:
            verify_signature(self.address.public_key, self.signature, signed)
        except AuthenticationError as exc:
            raise CardError(
                "bad signature: the card was altered or not made by this address"
            ) from exc
        if self.mailbox is not None and self.mailbox.owner != self.address:
            raise CardError("the card's mailbox announcement is another endpoint's")

    @classmethod
    def issue(
        cls, secrets: CardHolder, *, mailbox: MailboxAnnouncement | None = None
    ) -> ContactCard:
        """Our own card, signed with our identity key (with our mailbox's
        announcement, when we have one)."""
        identity = secrets.identity
        body = _body(identity.public_key, secrets.client_auth_public, secrets.display_name)
        signature = identity.sign(CARD_CONTEXT + _pack(body))
        return cls(
            identity.address,
            secrets.client_auth_public,
            secrets.display_name,
            signature,
            mailbox,
        )

    def to_line(self) -> str:
        fields = [
            *_body(self.address.public_key, self.client_auth_public, self.name),
            self.signature,
        ]
        if self.mailbox is not None:
            fields.append(self.mailbox.to_bytes())
        packed = _pack(fields)
        return CARD_PREFIX + base64.urlsafe_b64encode(packed).rstrip(b"=").decode("ascii")

    def __str__(self) -> str:
        return self.to_line()

    @classmethod
    def parse(cls, text: str) -> ContactCard:
        """Parse one card line (surrounding whitespace is ignored).

        Checks, in order: prefix, base64url, msgpack, version, field types and
        lengths, canonical encoding, name, signature. Raises
        :class:`CardError` naming the first that fails.
        """
        if not isinstance(text, str):
            raise CardError("a card must be text")
        line = text.strip()
        if not line.startswith(CARD_PREFIX):
            raise CardError(f"not a contact card: it does not start with {CARD_PREFIX!r}")
        encoded = line[len(CARD_PREFIX) :]
        if len(line) > _MAX_CARD_CHARS:
            raise CardError("malformed card: too long")
        if not encoded or not _BASE64URL.issuperset(encoded) or len(encoded) % 4 == 1:
            raise CardError("malformed card: not base64url without padding")
        try:
            raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except (binascii.Error, ValueError) as exc:
            raise CardError("malformed card: not base64url without padding") from exc
        try:
            obj: Any = unpack(raw, max_len=_MAX_CARD_CHARS, max_items=8, use_list=True)
        except NotMsgpack as exc:
            raise CardError("malformed card: not a single msgpack value") from exc
        if type(obj) is not list or not obj:
            raise CardError("malformed card: not a msgpack array")
        if type(obj[0]) is not int:
            raise CardError("malformed card: the version is not an integer")
        if obj[0] != CARD_VERSION:
            raise CardError(f"unsupported card version {obj[0]} (this onionpost reads version 1)")
        if len(obj) not in (5, 6):
            raise CardError("malformed card: a version 1 card has 5 fields (6 with a mailbox)")
        _, identity_public, client_auth_public, name, signature = obj[:5]
        if type(identity_public) is not bytes or len(identity_public) != _KEY_LEN:
            raise CardError("malformed card: the identity key is not 32 bytes")
        if type(client_auth_public) is not bytes or len(client_auth_public) != _KEY_LEN:
            raise CardError("malformed card: the client-authorization key is not 32 bytes")
        if type(name) is not str:
            raise CardError("malformed card: the name is not text")
        if type(signature) is not bytes or len(signature) != _SIGNATURE_LEN:
            raise CardError("malformed card: the signature is not 64 bytes")
        if _pack(obj) != raw or base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != encoded:
            raise CardError("malformed card: not in canonical form")
        address = OnionAddress.from_public_key(identity_public)
        mailbox = None
        if len(obj) == 6:
            if type(obj[5]) is not bytes:
                raise CardError("malformed card: the mailbox announcement is not bytes")
            try:
                mailbox = MailboxAnnouncement.parse(obj[5], owner=address)
            except (AuthenticationError, MessageDecodeError) as exc:
                raise CardError("the card's mailbox announcement does not verify") from exc
        return cls(address, client_auth_public, name, signature, mailbox)


# -- the card bundle (trust.md §7.5) ------------------------------------------------

#: How the endorsement line of a card bundle begins.
ENDORSEMENT_PREFIX: Final = "onionpost-endorsement1:"


def endorsement_line(proof: bytes) -> str:
    """An endorsement proof (trust.md §4) as the second line of a card bundle."""
    return ENDORSEMENT_PREFIX + base64.urlsafe_b64encode(proof).rstrip(b"=").decode("ascii")


def parse_endorsement_line(text: str) -> bytes:
    """The endorsement proof's bytes of an endorsement line, not yet checked
    (the daemon checks it for the card's address, trust.md §4);
    :class:`CardError` for a line that is not one."""
    if not isinstance(text, str):
        raise CardError("an endorsement line must be text")
    line = text.strip()
    if not line.startswith(ENDORSEMENT_PREFIX):
        raise CardError(f"not an endorsement line: it does not start with {ENDORSEMENT_PREFIX!r}")
    encoded = line[len(ENDORSEMENT_PREFIX) :]
    if len(encoded) > _MAX_ENDORSEMENT_CHARS:
        raise CardError("malformed endorsement line: too long")
    if not encoded or not _BASE64URL.issuperset(encoded) or len(encoded) % 4 == 1:
        raise CardError("malformed endorsement line: not base64url without padding")
    proof = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    if endorsement_line(proof) != line:
        raise CardError("malformed endorsement line: not in canonical form")
    return proof


def split_card_bundle(text: str) -> tuple[str, str | None]:
    """The card line and the endorsement line (None: none) of a card bundle
    or a card file: blank lines and ``#`` comments are ignored, one card
    line, at most one endorsement line, nothing else (trust.md §7.5)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    cards = [ln for ln in lines if ln.startswith(CARD_PREFIX)]
    endorsements = [ln for ln in lines if ln.startswith(ENDORSEMENT_PREFIX)]
    if len(cards) != 1:
        raise CardError(f"a card bundle holds exactly one card line, found {len(cards)}")
    if len(endorsements) > 1:
        raise CardError(
            f"a card bundle holds at most one endorsement line, found {len(endorsements)}"
        )
    if len(lines) != len(cards) + len(endorsements):
        raise CardError("a card bundle holds a card line and an endorsement line, nothing else")
    return cards[0], endorsements[0] if endorsements else None


def read_card_file(path: Path) -> ContactCard:
    """The card in ``path``: one card line; blank lines and ``#`` comments are ignored."""
    data = read_small_file(Path(path), MAX_CARD_FILE, what="card file", error=CardError)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CardError(f"{path} is not UTF-8 text") from exc
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if len(lines) != 1:
        raise CardError(f"{path} must hold exactly one card line, found {len(lines)}")
    return ContactCard.parse(lines[0])


def write_card_file(path: Path, card: ContactCard) -> bool:
    """Our card into ``path`` (0644, atomically), unless it holds that card
    already; whether it was written. The daemon rewrites it whenever its
    mailbox announcement changes, so the card ``whoami`` reads without a
    daemon names the current mailbox."""
    line = card.to_line() + "\n"
    try:
        if path.read_text("ascii") == line:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    write_atomic(path, line.encode("ascii"), mode=0o644)
    return True


def safety_number(a: bytes, b: bytes) -> str:
    """The 60-digit safety number of two identity public keys, as 12 groups of 5.

    ``BLAKE2b-512(SAFETY_CONTEXT || min(a, b) || max(a, b))``; group ``i`` is
    bytes ``5i..5i+4`` of the digest as a big-endian integer mod 100000,
    zero-padded. Sorting the keys makes it the same on both sides.
    """
    for key in (a, b):
        if not isinstance(key, bytes) or len(key) != _KEY_LEN:
            raise ConfigError("a safety number is computed from two 32-byte identity keys")
    low, high = sorted((a, b))
    digest = hashlib.blake2b(SAFETY_CONTEXT + low + high, digest_size=64).digest()
    groups = []
    for i in range(_SAFETY_GROUPS):
        chunk = digest[i * _SAFETY_BYTES_PER_GROUP : (i + 1) * _SAFETY_BYTES_PER_GROUP]
        groups.append(f"{int.from_bytes(chunk, 'big') % 10**_SAFETY_GROUP_DIGITS:05d}")
    return " ".join(groups)
