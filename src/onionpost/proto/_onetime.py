"""One-time codes: what an operator hands a peer to reach a client-authorized
onion service it does not know yet (a mailbox's setup code, a registrar's
enrolment code).

Theory of operation
-------------------
A code names the service and carries a 32-byte secret from which both sides
derive a tor client-authorization key (so that the holder can fetch the
service's descriptor before the service knows it) and a token the holder
presents (the service stores only the token's digest). Every kind of code
has the same text form, after a prefix of its own (111 base32 characters
after the prefix)::

    <prefix><base32 of: version u8 = 1 || service identity key (32)
                        || secret (32) || checksum (4)>
    checksum = BLAKE2b-512(version || identity key || secret)[:4]

and the same derivations (keyed BLAKE2b-256, the secret as key), with labels
of its own, so that no code of one kind works as another::

    client-auth private = clamp(BLAKE2b(key=secret, "<labels> client-auth"))
    token               = BLAKE2b(key=secret, "<labels> token")
    token digest        = BLAKE2b(key=token,  "<labels> token digest")

A :class:`CodeKind` is one kind's prefix, labels and wording; a kind's code
type subclasses :class:`OneTimeCode` and names its service's field itself
(``SetupCode.mailbox``, ``EnrolmentCode.registrar``).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from typing import ClassVar, Final, Self

from onionpost.errors import ConfigError
from onionpost.proto._crypto import KeyPair, constant_time_equal
from onionpost.proto.address import OnionAddress

__all__ = ["CODE_TEXT_LEN", "SECRET_LEN", "CodeKind", "OneTimeCode"]

CODE_VERSION: Final = 1
SECRET_LEN: Final = 32
KEY_LEN: Final = 32
_CHECKSUM_LEN: Final = 4
_CODE_BYTES: Final = 1 + KEY_LEN + SECRET_LEN + _CHECKSUM_LEN  # 69
# base32 of 69 bytes: 13 groups of 8 characters, then 4 bytes in 7 (no padding).
CODE_TEXT_LEN: Final = len(base64.b32encode(bytes(_CODE_BYTES)).rstrip(b"="))  # 111
_BASE32: Final = frozenset("abcdefghijklmnopqrstuvwxyz234567")


def keyed(key: bytes, label: bytes) -> bytes:
    """BLAKE2b-256 of ``label`` keyed with ``key``."""
    return hashlib.blake2b(label, key=key, digest_size=32).digest()


def _checksum(data: bytes) -> bytes:
    return hashlib.blake2b(data).digest()[:_CHECKSUM_LEN]


@dataclass(frozen=True, slots=True)
class CodeKind:
    """One kind of code: its text prefix, its derivations' labels
    (``labels`` + " client-auth", " token", " token digest") and how its
    errors name it."""

    prefix: str  # "onionpost-mailbox1:"
    labels: bytes  # b"onionpost mailbox"
    what: str  # "mailbox setup code": in parse's errors
    article: str  # "a": "a mailbox setup code is text"
    code_noun: str  # "a setup code": "a setup code's secret is 32 bytes"
    proof_noun: str  # "a pairing token": "a pairing token is 32 bytes"
    own_refusal: str  # a code naming the holder itself: "that setup code is ... own address"
    length_hint: str = ""  # after the length error, e.g. ": cut short or run together?"

    def digest(self, token: bytes) -> bytes:
        """What the service stores in place of a token (32 bytes)."""
        if not isinstance(token, bytes) or len(token) != KEY_LEN:
            raise ConfigError(f"{self.proof_noun} is 32 bytes")
        return keyed(token, self.labels + b" token digest")

    def encode(self, address: OnionAddress, secret: bytes) -> str:
        data = bytes([CODE_VERSION]) + address.public_key + secret
        encoded = base64.b32encode(data + _checksum(data)).decode("ascii")
        return self.prefix + encoded.rstrip("=").lower()

    def decode(self, text: str) -> tuple[OnionAddress, bytes]:
        """The address and secret of a typed or pasted code; ConfigError saying
        what is wrong with it. Surrounding whitespace and letter case do not matter."""
        what = self.what
        if not isinstance(text, str):
            raise ConfigError(f"{self.article} {what} is text")
        lowered = text.strip().lower()
        if not lowered.startswith(self.prefix):
            raise ConfigError(f"not {self.article} {what}: it must start with {self.prefix!r}")
        body = lowered[len(self.prefix) :]
        if not _BASE32.issuperset(body):
            raise ConfigError(f"{what} has characters outside base32 (a-z, 2-7): mistyped?")
        if len(body) != CODE_TEXT_LEN:
            raise ConfigError(
                f"{what} has {len(body)} characters after the prefix, "
                f"not {CODE_TEXT_LEN}{self.length_hint}"
            )
        raw = base64.b32decode(body.upper() + "=" * (-len(body) % 8))
        data, checksum = raw[:-_CHECKSUM_LEN], raw[-_CHECKSUM_LEN:]
        # The last character carries 3 unused bits: a code that does not
        # re-encode to itself was mistyped there, whatever the checksum says.
        canonical = base64.b32encode(raw).decode("ascii").rstrip("=").lower() == body
        if not canonical or not constant_time_equal(checksum, _checksum(data)):
            raise ConfigError(f"{what} is mistyped: its checksum does not match")
        if data[0] != CODE_VERSION:
            raise ConfigError(f"{what} of unsupported version {data[0]}")
        return OnionAddress(data[1 : 1 + KEY_LEN]), data[1 + KEY_LEN :]


class OneTimeCode:
    """What a kind's code type shares. A subclass is a frozen dataclass of two
    fields, the service's address then ``secret`` (never in its repr), and
    sets :attr:`KIND`; :attr:`service` reads its first field."""

    __slots__ = ()

    KIND: ClassVar[CodeKind]
    secret: bytes

    @property
    def service(self) -> OnionAddress:
        raise NotImplementedError

    def _check_secret(self) -> None:
        if not isinstance(self.secret, bytes) or len(self.secret) != SECRET_LEN:
            raise ConfigError(f"{self.KIND.code_noun}'s secret is {SECRET_LEN} bytes")

    @classmethod
    def generate(cls, service: OnionAddress) -> Self:
        return cls(service, secrets.token_bytes(SECRET_LEN))  # type: ignore[call-arg]

    @classmethod
    def parse(cls, text: str) -> Self:
        """Read a typed or pasted code; ConfigError saying what is wrong with it.

        Surrounding whitespace and letter case do not matter.
        """
        return cls(*cls.KIND.decode(text))  # type: ignore[call-arg]

    @classmethod
    def parse_for(cls, text: str, holder: OnionAddress) -> Self:
        """:meth:`parse`, for ``holder`` to use: a code naming ``holder`` itself
        (it cannot reach its own onion service) is a ConfigError too."""
        code = cls.parse(text)
        if code.service == holder:
            raise ConfigError(cls.KIND.own_refusal)
        return code

    def to_text(self) -> str:
        return self.KIND.encode(self.service, self.secret)

    def client_auth_private(self) -> bytes:
        """The X25519 private key (clamped, RFC 7748) of the holder's tor client
        authorization at the service until the code is used."""
        key = bytearray(keyed(self.secret, self.KIND.labels + b" client-auth"))
        key[0] &= 248
        key[31] &= 127
        key[31] |= 64
        return bytes(key)

    def client_auth_public(self) -> bytes:
        return KeyPair.from_private(self.client_auth_private()).public

    def token(self) -> bytes:
        """32 bytes that prove to the service that the holder has the code."""
        return keyed(self.secret, self.KIND.labels + b" token")
