"""Signed statements: C2SP signed notes, the one form every onionpost statement is signed in.

Theory of operation
-------------------
Checkpoints of an endpoint's evidence log, the cosignatures contacts give
them, and an agency's statements about its endpoints are all *signed notes*
(c2sp.org/signed-note, c2sp.org/tlog-cosignature): a UTF-8 text ending in a
newline, a blank line, then one line per signature::

    <text, one or more lines, each ending in "\\n">
    \\n
    — <key name> base64(key ID (4 bytes, big-endian) || signature)\\n
    ...

A key is known to a verifier as a :class:`Verifier`: a name, a signature type
and an Ed25519 public key; its key ID is ``SHA-256(name || "\\n" || type ||
public key)[:4]``. Two types are used:

- ``0x01`` (:data:`ED25519`): an Ed25519 signature over the note text.
- ``0x04`` (:data:`COSIGNATURE`): a timestamped cosignature of a checkpoint:
  ``u64 BE timestamp || Ed25519 signature`` over ``"cosignature/v1\\n" "time
  <timestamp>\\n"`` followed by the checkpoint's text.
- ``0xff "onionpost/ml-dsa-65"`` (:data:`MLDSA65`): ML-DSA-65 (FIPS 204) over
  the note text with the context ``"onionpost signed note"``, the post-quantum
  half of an agency's hybrid keys (``protocol-spec/trust.md`` §1). signed-note
  allocates no type for it: the escape byte and our identifier stand where
  the type byte stands, in the key ID and in the verifier key.

The text of a note never contains a control character but the newline, and
our other signatures (static-key certificates, cards, announcements,
prekeys) all sign a context string that contains a NUL byte: so a note
signature can never be mistaken for one of them, nor they for a note, although
the same identity key makes both. A note whose text begins like a cosigned
message (``cosignature/v1``) is never signed as a plain note
(:func:`sign`), so the two types stay apart too.

Verification follows the note spec: signatures from keys the verifier does
not know are ignored; a known key's signature that does not verify rejects
the whole note; a note with no verified signature from a known key is
rejected. Every rejection raises :class:`~onionpost.errors.VerificationError`;
nothing here returns a bool. The module is pure: time is passed in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from onionpost.errors import AuthenticationError, ConfigError, VerificationError
from onionpost.limits import MAX_NOTE_BYTES, MAX_NOTE_KEY_NAME, MAX_NOTE_SIGNATURES, MAX_TIME_MS
from onionpost.proto._crypto import MLDSA65_PUBLIC_LEN, ed25519_verify, mldsa65_verify
from onionpost.proto.identity import Identity

__all__ = [
    "COSIGNATURE",
    "COSIGNATURE_HEADER",
    "ED25519",
    "MLDSA65",
    "Checkpoint",
    "Note",
    "NoteSignature",
    "Verifier",
    "cosign",
    "key_id",
    "signature_line",
    "open_note",
    "sign",
    "verified_cosignature",
]

ED25519: Final = 0x01
COSIGNATURE: Final = 0x04
MLDSA65: Final = 0xFF
MLDSA65_CONTEXT: Final = b"onionpost signed note"
# How each type is written where signed-note puts the type byte.
_TYPE_BYTES: Final = {
    ED25519: b"\x01",
    COSIGNATURE: b"\x04",
    MLDSA65: b"\xffonionpost/ml-dsa-65",
}
_PUBLIC_LEN: Final = {ED25519: 32, COSIGNATURE: 32, MLDSA65: MLDSA65_PUBLIC_LEN}
COSIGNATURE_HEADER: Final = "cosignature/v1\n"
_DASH: Final = "\u2014 "
_TYPES: Final = frozenset(_TYPE_BYTES)
_TIMESTAMP: Final = struct.Struct(">Q")
# A cosignature's time, POSIX seconds: at most the last second of year 9999
# (a date shows it; a store keeps it).
_MAX_TIMESTAMP: Final = MAX_TIME_MS // 1000
# A checkpoint's size at most: what SQLite keeps (a witness stores it).
_MAX_SIZE: Final = 2**63 - 1
# A checkpoint's lines: origin, size, root hash, then at most this many extensions.
_MAX_EXTENSIONS: Final = 8
_HASH_LEN: Final = 32
# Every control character but the newline (a regular expression: a statement's
# text is kilobytes, and this runs on every note read).
_CONTROL: Final = re.compile("[\x00-\x09\x0b-\x1f]")


def key_id(name: str, signature_type: int, public_key: bytes) -> bytes:
    """The 4-byte key ID of a key (signed-note §Signatures)."""
    if signature_type not in _TYPE_BYTES:
        raise ConfigError("an unknown signature type")
    digest = hashlib.sha256(
        name.encode() + b"\n" + _TYPE_BYTES[signature_type] + public_key
    ).digest()
    return digest[:4]


def _check_name(name: str) -> None:
    if (
        not name
        or len(name.encode()) > MAX_NOTE_KEY_NAME
        or "+" in name
        or any(ch.isspace() for ch in name)
        or not name.isprintable()
    ):
        raise ConfigError("a key name is non-empty printable text without spaces or '+'")


def _check_text(text: str) -> None:
    """A note text: ends in a newline, no other control character, bounded."""
    if not text.endswith("\n"):
        raise VerificationError("a note's text does not end in a newline", what="note")
    if _CONTROL.search(text):
        raise VerificationError("a note holds a control character", what="note")
    if len(text.encode()) > MAX_NOTE_BYTES:
        raise VerificationError("a note is too long", what="note")


@dataclass(frozen=True, slots=True)
class Verifier:
    """A key a verifier knows: its name, signature type and public key.

    Written as a signed-note *verifier key*: ``<name>+<key ID, 8 hex>+<base64(type
    || public key)>``."""

    name: str
    signature_type: int
    public_key: bytes

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.signature_type not in _TYPES:
            raise ConfigError("an unknown signature type")
        if len(self.public_key) != _PUBLIC_LEN[self.signature_type]:
            raise ConfigError("a public key of the wrong length for its signature type")

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.signature_type, self.public_key)

    def to_text(self) -> str:
        encoded = base64.b64encode(_TYPE_BYTES[self.signature_type] + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    @classmethod
    def from_text(cls, text: str) -> Verifier:
        """Parse a verifier key; a :class:`ConfigError` for anything else."""
        parts = text.strip().split("+", 2)  # the key's base64 may hold "+" itself
        if len(parts) != 3:
            raise ConfigError("a verifier key is NAME+KEYID+KEY")
        name, hex_id, encoded = parts
        try:
            raw = base64.b64decode(encoded, validate=True)
            wanted = bytes.fromhex(hex_id)
        except (binascii.Error, ValueError) as exc:
            raise ConfigError("a verifier key is NAME+KEYID+KEY") from exc
        kind = next((t for t, b in _TYPE_BYTES.items() if raw.startswith(b)), None)
        if kind is None or len(hex_id) != 8:
            raise ConfigError("a verifier key is NAME+KEYID+KEY")
        verifier = cls(name, kind, raw[len(_TYPE_BYTES[kind]) :])
        if verifier.key_id != wanted:
            raise ConfigError("the verifier key's ID does not match its key")
        return verifier


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line: the key's name and ID and the signature bytes."""

    name: str
    key_id: bytes
    signature: bytes = field(repr=False)

    def to_line(self) -> str:
        return f"{_DASH}{self.name} {base64.b64encode(self.key_id + self.signature).decode()}\n"

    def timestamp(self) -> int:
        """A cosignature's time (the first 8 bytes of its signature)."""
        if len(self.signature) != _TIMESTAMP.size + 64:
            raise VerificationError("not a cosignature", what="signature")
        (stamp,) = _TIMESTAMP.unpack_from(self.signature)
        return int(stamp)


@dataclass(frozen=True, slots=True)
class Note:
    """A note: its text (ending in a newline) and its signature lines."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def to_text(self) -> str:
        return self.text + "\n" + "".join(s.to_line() for s in self.signatures)

    def to_bytes(self) -> bytes:
        return self.to_text().encode()

    def with_signatures(self, extra: Iterable[NoteSignature]) -> Note:
        """The note with ``extra`` signature lines added (a line already there is kept once)."""
        lines = list(self.signatures)
        for signature in extra:
            if signature not in lines:
                lines.append(signature)
        if len(lines) > MAX_NOTE_SIGNATURES:
            raise VerificationError("a note has too many signatures", what="note")
        return Note(self.text, tuple(lines))

    @classmethod
    def parse(cls, data: bytes | str) -> Note:
        """Split a signed note into text and signature lines (nothing verified yet)."""
        raw = data.encode() if isinstance(data, str) else data
        if len(raw) > MAX_NOTE_BYTES + MAX_NOTE_SIGNATURES * 256:
            raise VerificationError("a note is too long", what="note")
        try:
            whole = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise VerificationError("a note is not UTF-8", what="note") from exc
        if not whole.endswith("\n"):
            raise VerificationError("a note does not end in a newline", what="note")
        split = whole.rfind("\n\n")
        if split < 0:
            raise VerificationError("a note has no signatures", what="note")
        text, block = whole[: split + 1], whole[split + 2 :]
        _check_text(text)
        lines = block.splitlines(keepends=True)
        if not lines or len(lines) > MAX_NOTE_SIGNATURES:
            raise VerificationError("a note has no signatures or too many", what="note")
        return cls(text, tuple(_parse_line(line) for line in lines))


def _parse_line(line: str) -> NoteSignature:
    if not line.startswith(_DASH) or not line.endswith("\n"):
        raise VerificationError("a malformed signature line", what="note")
    name, sep, encoded = line[len(_DASH) : -1].partition(" ")
    try:
        _check_name(name)
        raw = base64.b64decode(encoded, validate=True)
    except (ConfigError, ValueError) as exc:  # binascii.Error, or a non-ASCII str
        raise VerificationError("a malformed signature line", what="note") from exc
    if not sep or len(raw) < 5:
        raise VerificationError("a malformed signature line", what="note")
    return NoteSignature(name, raw[:4], raw[4:])


def sign(text: str, name: str, identity: Identity) -> Note:
    """A note of ``text`` signed (type 0x01) by ``identity`` under the key name ``name``."""
    _check_name(name)
    _check_text(text)
    if text.startswith(COSIGNATURE_HEADER):
        raise ConfigError("a note may not begin like a cosigned message")
    kid = key_id(name, ED25519, identity.public_key)
    return Note(text, (NoteSignature(name, kid, identity.sign(text.encode())),))


def signature_line(
    text: str, name: str, signature_type: int, public_key: bytes, signature: bytes
) -> NoteSignature:
    """The line of a signature already made over ``text`` (type 0x01 or ML-DSA-65)
    by the key ``public_key``: for signers that are not an :class:`Identity`
    (an agency's keys, a key held elsewhere)."""
    _check_name(name)
    _check_text(text)
    if text.startswith(COSIGNATURE_HEADER) or signature_type == COSIGNATURE:
        raise ConfigError("a cosignature is made with cosign()")
    return NoteSignature(name, key_id(name, signature_type, public_key), signature)


def _cosigned_message(text: str, timestamp: int) -> bytes:
    return f"{COSIGNATURE_HEADER}time {timestamp}\n{text}".encode()


def cosign(checkpoint: Note, name: str, identity: Identity, *, timestamp: int) -> NoteSignature:
    """A cosignature (type 0x04) of ``checkpoint``'s text, made at ``timestamp`` (POSIX seconds)."""
    _check_name(name)
    if not 0 <= timestamp <= _MAX_TIMESTAMP:
        raise ConfigError("a cosignature's time is out of range")
    Checkpoint.from_text(checkpoint.text)
    kid = key_id(name, COSIGNATURE, identity.public_key)
    body = identity.sign(_cosigned_message(checkpoint.text, timestamp))
    return NoteSignature(name, kid, _TIMESTAMP.pack(timestamp) + body)


def _verify_one(verifier: Verifier, text: str, signature: NoteSignature) -> None:
    if verifier.signature_type == MLDSA65:
        try:
            mldsa65_verify(verifier.public_key, signature.signature, text.encode(), MLDSA65_CONTEXT)
        except AuthenticationError as exc:
            raise VerificationError(
                f"the signature of {verifier.name} does not verify", what="signature"
            ) from exc
        return
    if verifier.signature_type == ED25519:
        message, sig = text.encode(), signature.signature
    else:
        stamp = signature.timestamp()
        if stamp > _MAX_TIMESTAMP:
            raise VerificationError("a cosignature's time is out of range", what="signature")
        message, sig = _cosigned_message(text, stamp), signature.signature[_TIMESTAMP.size :]
    try:
        ed25519_verify(verifier.public_key, sig, message)
    except AuthenticationError as exc:
        raise VerificationError(
            f"the signature of {verifier.name} does not verify", what="signature"
        ) from exc


def verified_cosignature(checkpoint: Note, verifier: Verifier) -> NoteSignature:
    """The cosignature of ``verifier`` on ``checkpoint``, verified; raises when absent or bad."""
    if verifier.signature_type != COSIGNATURE:
        raise ConfigError("that key does not cosign")
    return open_note(checkpoint, [verifier])[0]


def open_note(note: Note | bytes | str, verifiers: Sequence[Verifier]) -> tuple[NoteSignature, ...]:
    """Verify ``note`` against the keys in ``verifiers``; the verified signatures.

    Unknown keys' lines are ignored; a known key's line that does not verify,
    or no verified line at all, raises :class:`VerificationError`."""
    parsed = note if isinstance(note, Note) else Note.parse(note)
    _check_text(parsed.text)
    known = {(v.name, v.key_id): v for v in verifiers}
    verified: list[NoteSignature] = []
    for signature in parsed.signatures:
        verifier = known.get((signature.name, signature.key_id))
        if verifier is None:
            continue
        _verify_one(verifier, parsed.text, signature)
        verified.append(signature)
    if not verified:
        raise VerificationError("no signature from a known key", what="signature")
    return tuple(verified)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A log's checkpoint text (c2sp.org/tlog-checkpoint): origin, size, root hash, extensions."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or not self.origin.isprintable() or len(self.origin) > MAX_NOTE_KEY_NAME:
            raise ConfigError("a checkpoint's origin is one non-empty printable line")
        if not 0 <= self.size <= _MAX_SIZE:
            raise ConfigError("a checkpoint's size is out of range")
        if len(self.root) != _HASH_LEN:
            raise ConfigError("a checkpoint's root hash is 32 bytes")
        if len(self.extensions) > _MAX_EXTENSIONS or any(
            not line or not line.isprintable() for line in self.extensions
        ):
            raise ConfigError("a checkpoint's extension lines are non-empty printable lines")

    def to_text(self) -> str:
        lines = [
            self.origin,
            str(self.size),
            base64.b64encode(self.root).decode(),
            *self.extensions,
        ]
        return "".join(f"{line}\n" for line in lines)

    @classmethod
    def from_text(cls, text: str) -> Checkpoint:
        """Parse a checkpoint's text; a :class:`VerificationError` for anything else."""
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise VerificationError("a malformed checkpoint", what="checkpoint")
        origin, size_text, root_text, *extensions = lines[:-1]
        # ASCII digits alone (isdigit takes superscripts and other scripts), 19 at most.
        digits = size_text.isascii() and size_text.isdigit() and len(size_text) <= 19
        if not digits or (size_text != "0" and size_text.startswith("0")):
            raise VerificationError("a malformed checkpoint size", what="checkpoint")
        try:
            root = base64.b64decode(root_text, validate=True)
            if base64.b64encode(root).decode() != root_text:
                raise VerificationError("a malformed checkpoint root", what="checkpoint")
            return cls(origin, int(size_text), root, tuple(extensions))
        except (binascii.Error, ConfigError) as exc:
            raise VerificationError("a malformed checkpoint", what="checkpoint") from exc
