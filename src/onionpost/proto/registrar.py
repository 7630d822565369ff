"""The registrar's enrolment code and the pure decisions of enrolment, renewal
and refresh (``protocol-spec/trust.md`` §8).

Theory of operation
-------------------
The agency's registrar (a home run as a service, like a mailbox) hands an
operator an :class:`EnrolmentCode` for one endpoint; the endpoint's operator
types it into ``onionpost trust enrol``. Like a mailbox's setup code it names
the registrar and carries a 32-byte secret from which both sides derive a tor
client-authorization key (so that the endpoint can reach the registrar's
client-authorized onion service before the registrar knows it) and a token
the endpoint presents (the registrar stores only its digest). Text form
(111 base32 characters after the prefix)::

    onionpost-registrar1:<base32 of: version u8 = 1 || registrar identity key (32)
                                     || secret (32) || checksum (4)>
    checksum = BLAKE2b-512(version || identity key || secret)[:4]

Derivations (keyed BLAKE2b-256, the secret as key, one label each, none a
mailbox's label, so no code of one kind works as the other)::

    client-auth private = clamp(BLAKE2b(key=secret, "onionpost registrar client-auth"))
    token               = BLAKE2b(key=secret, "onionpost registrar token")
    token digest        = BLAKE2b(key=token,  "onionpost registrar token digest")

The endpoint enrols over a session whose handshake proved its identity key
(the address it is endorsed at is the session's peer, never a field of the
request), so possession of the key is proven by the handshake itself.

The decisions here are plain functions of state and ``now`` (POSIX seconds):
:func:`renewal_due` (less than a third of an endorsement's lifetime left,
trust.md §5) and :func:`list_due` (a new list when the last was issued a
refresh interval ago).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Final

from onionpost.errors import ConfigError
from onionpost.limits import MAX_REGISTRAR_REFRESH, MIN_REGISTRAR_REFRESH
from onionpost.proto._onetime import CODE_TEXT_LEN, CodeKind, OneTimeCode
from onionpost.proto.address import OnionAddress

__all__ = [
    "ENROL_PREFIX",
    "ENROL_TEXT_LEN",
    "EnrolmentCode",
    "check_refresh",
    "enrol_digest",
    "list_due",
    "renewal_due",
]

ENROL_PREFIX: Final = "onionpost-registrar1:"
ENROL_TEXT_LEN: Final = CODE_TEXT_LEN  # 111
_ENROL: Final = CodeKind(
    prefix=ENROL_PREFIX,
    labels=b"onionpost registrar",
    what="registrar enrolment code",
    article="a",
    code_noun="an enrolment code",
    proof_noun="an enrolment token",
    own_refusal="that enrolment code names this endpoint's own address",
)


@dataclass(frozen=True, slots=True)
class EnrolmentCode(OneTimeCode):
    """What a registrar's operator hands an endpoint to enrol. The text is a secret.

    Its tor client-authorization key is the endpoint's at the registrar while
    it enrols; its token proves to the registrar that the endpoint holds the code.
    """

    KIND: ClassVar[CodeKind] = _ENROL

    registrar: OnionAddress
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        self._check_secret()

    @property
    def service(self) -> OnionAddress:
        return self.registrar


def enrol_digest(token: bytes) -> bytes:
    """What the registrar keeps in place of a token (32 bytes)."""
    return _ENROL.digest(token)


def renewal_due(valid_from: int, valid_until: int, now: int) -> bool:
    """An endorsement is renewed when less than a third of its lifetime is left
    (trust.md §5), or once it has ended."""
    return 3 * (valid_until - now) < valid_until - valid_from


def list_due(issued_at: int | None, now: int, refresh: int) -> bool:
    """The registrar signs a new list when it has none, or when the last was
    issued ``refresh`` seconds ago or more (or in the future: a clock set back)."""
    return issued_at is None or not 0 <= now - issued_at < refresh


def check_refresh(seconds: float) -> int:
    """A refresh interval (``trust_refresh``, ``registrar_refresh``): whole
    seconds, from :data:`MIN_REGISTRAR_REFRESH` to :data:`MAX_REGISTRAR_REFRESH`."""
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not MIN_REGISTRAR_REFRESH <= seconds <= MAX_REGISTRAR_REFRESH
    ):
        raise ConfigError(
            f"a refresh interval is {MIN_REGISTRAR_REFRESH} to {MAX_REGISTRAR_REFRESH} seconds"
        )
    return int(seconds)
