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
trust.md §5), :func:`list_due` (a new list when the last was issued a
refresh interval ago), :func:`endorsement_until` (never past the delegation's
end), :func:`delegation_notice` (how near that end is) and
:func:`check_new_delegation` (whether a delegation the root signed anew may
replace the one held, trust.md §8.1).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import ClassVar, Final

from onionpost.errors import (
    ConfigError,
    ForgedStatementError,
    MalformedStatementError,
)
from onionpost.limits import (
    DELEGATION_WARNING,
    MAX_REGISTRAR_REFRESH,
    MIN_REGISTRAR_REFRESH,
    TRUST_CLOCK_SKEW,
)
from onionpost.proto._onetime import CODE_TEXT_LEN, CodeKind, OneTimeCode
from onionpost.proto.address import OnionAddress
from onionpost.proto.trust import (
    Anchor,
    Delegation,
    Signed,
    claimed_delegation,
    open_delegation,
)

__all__ = [
    "ENROL_PREFIX",
    "ENROL_TEXT_LEN",
    "DelegationNotice",
    "EnrolmentCode",
    "check_new_delegation",
    "check_refresh",
    "delegation_notice",
    "endorsement_until",
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


def endorsement_until(now: int, lifetime: int, delegation: Delegation) -> int:
    """When an endorsement signed at ``now`` for ``lifetime`` seconds ends: never
    after its issuing key's delegation (an endpoint would refuse the rest,
    trust.md §4 step 4); ``now`` or earlier when the delegation has ended."""
    return min(now + lifetime, delegation.not_after)


class DelegationNotice(enum.Enum):
    """How near the end of the registrar's delegation is (trust.md §8.1)."""

    FAR = "far"
    ENDING = "ending"  # within DELEGATION_WARNING
    ENDED = "ended"


def delegation_notice(
    not_after: int, now: int, *, ahead: int = DELEGATION_WARNING
) -> DelegationNotice:
    if now >= not_after:
        return DelegationNotice.ENDED
    if not_after - now <= ahead:
        return DelegationNotice.ENDING
    return DelegationNotice.FAR


def _when(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def check_new_delegation(
    anchor: Anchor, held: Delegation, data: bytes, *, now: int
) -> Signed[Delegation]:
    """A delegation the agency's root signed anew (``trust delegate``), checked
    before it replaces ``held`` (trust.md §8.1): signed by ``anchor``'s root,
    of its agency, for the same issuing key, ending later than ``held`` and
    valid at ``now``. Every refusal is a :class:`ConfigError` saying why."""
    try:
        claimed_delegation(data)  # what it is, before whose
        signed = open_delegation(anchor, data)
    except ForgedStatementError as exc:
        raise ConfigError(
            f"that delegation is not signed by the root of {anchor.agency} "
            "(the anchor this registrar holds): another agency's, or altered"
        ) from exc
    except MalformedStatementError as exc:
        raise ConfigError(f"not a delegation ('trust delegate' writes one): {exc}") from exc
    new = signed.value
    if new.agency != anchor.agency:
        raise ConfigError(f"that delegation names agency {new.agency!r}, not {anchor.agency!r}")
    if new.key != held.key:
        raise ConfigError(
            "that delegation is of another issuing key, not the one this registrar holds "
            f"({held.key.name}): sign it with 'trust delegate' on the agency directory "
            "this registrar was made from"
        )
    if new.not_after <= held.not_after:
        raise ConfigError(
            f"that delegation ends {_when(new.not_after)}, not after the one held "
            f"(ends {_when(held.not_after)}): nothing to renew"
        )
    if now < new.not_before - TRUST_CLOCK_SKEW:
        raise ConfigError(
            f"that delegation is valid only from {_when(new.not_before)}: check the clocks"
        )
    if now >= new.not_after:
        raise ConfigError(f"that delegation ended {_when(new.not_after)}")
    return signed
