"""The engine's records: its policy, what it reports, and the seams it is built on."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from onionpost.home import Config
from onionpost.proto.address import OnionAddress
from onionpost.store import Contact
from onionpost.transport import SecureChannel

__all__ = [
    "DeliveryPolicy",
    "DeliveryStatistics",
    "Dial",
    "LinkStatus",
    "MailboxAccess",
]

# dial(contact) -> an authenticated session with it (the engine sets the deadline).
Dial = Callable[[Contact], Awaitable[SecureChannel]]


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """The engine's timers and bounds (from ``config.toml``, see :class:`Config`)."""

    retry_initial: float = 5.0
    retry_max: float = 900.0
    connect_timeout: float = 60.0
    ping_interval: float = 60.0
    # A session whose peer sent nothing (not even a Pong) for this long is
    # dead, whatever the stream says.
    silence_timeout: float = 150.0
    # Texts sent and nothing at all heard since for this long (a Ping sent
    # halfway): the contact is gone though the stream did not say so (its
    # daemon stopped and its tor's close never reached us). What waits for it
    # may then go to its mailbox without waiting out silence_timeout.
    answer_timeout: float = 30.0
    max_file_size: int = 1 << 30
    max_disk_use: int = 10 << 30
    message_expiry: float | None = None
    max_unread_per_contact: int = 10_000
    max_transfers_per_contact: int = 4
    transfer_idle_timeout: float = 7 * 24 * 3600.0
    # A sent file's sealed copy is deleted this long after it was delivered
    # (refused, expired): the disk a home holds stays bounded.
    keep_sent_files: float = 0.0
    # Records per second one contact may make us decrypt, across its sessions.
    peer_records_per_second: float = 5000.0
    # A session we opened closes after this many seconds with nothing sent or
    # received but keepalives (the contact dials us when it has something).
    idle_close: float = 30.0
    # Dials at once that only tell a contact we are back (announcements), and
    # how many times each is tried before giving up.
    announce_concurrency: int = 4
    announce_attempts: int = 5
    # A contact unreachable this long (seconds) gets what waits for it in its
    # mailbox, when it has one (mailbox.md §Sender).
    mailbox_after: float = 60.0
    # Sessions only with contacts whose agency endorsement is valid now
    # (trust.md §7.4); a revoked contact is refused whatever this says.
    require_endorsement: bool = False
    # Envelopes one deposit session takes at most before it ends.
    max_envelopes_per_deposit: int = 256
    # After a deposit session that sealed everything waiting, the next one
    # waits this long: texts queued one by one meanwhile share an envelope
    # (and a one-time prekey) instead of taking one each.
    deposit_gather: float = 2.0
    # The highest handling labels we accept, one per scheme (config
    # labels.accept): told to each contact in a LabelLimit (spec.md §5.10).
    label_accept: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: Config) -> DeliveryPolicy:
        return cls(
            retry_initial=config.retry_initial,
            retry_max=config.retry_max,
            connect_timeout=config.connect_timeout,
            max_file_size=config.max_file_size,
            max_disk_use=config.max_disk_use,
            message_expiry=config.message_expiry,
            max_unread_per_contact=config.max_unread_per_contact,
            max_transfers_per_contact=config.max_transfers_per_contact,
            transfer_idle_timeout=config.transfer_idle_timeout,
            keep_sent_files=config.keep_sent_files,
            peer_records_per_second=float(config.peer_records_per_second),
            mailbox_after=config.mailbox_after,
            require_endorsement=config.require_endorsement,
            label_accept=tuple(label.text for label in config.labels.accept),
        )


@dataclass(frozen=True, slots=True)
class LinkStatus:
    """One contact's delivery state, for ``status`` and the ``peer`` events."""

    contact_id: int
    name: str
    reachable: bool
    since_ms: int | None  # when it became reachable or unreachable
    failures: int  # failed attempts since the contact last accepted a session
    last_error: str  # why the last dial or session failed, in words; "" if none
    retry_in: float | None  # seconds until the next dial, when one is scheduled
    dialing_for: float | None = None  # seconds the dial under way has taken; None: none
    mailbox_error: str = ""  # why the last deposit failed; "" once one succeeded
    refused: str = ""  # why sessions are refused and the outbox held (trust.md §7.4)


@dataclass(frozen=True, slots=True)
class DeliveryStatistics:
    """Counters since the engine started."""

    links: int
    sessions: int  # up now
    dials: int
    dial_failures: int
    sessions_ended_by_failure: int
    texts_received: int  # newly stored (not repeats)
    texts_acked: int  # acknowledged by contacts
    envelopes_deposited: int = 0  # into contacts' mailboxes
    sessions_superseded: int = 0  # closed because another session with the contact won


class MailboxAccess(Protocol):
    """What the engine needs of the mailbox machinery (``daemon/_mailbox.py``)."""

    async def dial(self, mailbox: OnionAddress) -> SecureChannel:
        """An authenticated session with a mailbox (the engine sets the deadline)."""

    def seal(
        self, recipient: OnionAddress, prekey: bytes, records: Sequence[bytes], sealed_ms: int
    ) -> bytes:
        """An envelope of ``records`` to ``recipient``, sealed to ``prekey``
        (its signed bytes, verified first: AuthenticationError)."""

    def fits(self, records: Sequence[bytes]) -> bool:
        """Whether ``records`` fit in one envelope."""

    def announcement(self) -> tuple[int, bytes] | None:
        """Our current signed mailbox announcement: (version, bytes), or None."""

    def read_announcement(
        self, owner: OnionAddress, data: bytes
    ) -> tuple[OnionAddress | None, int]:
        """A contact's announcement, verified: (its mailbox or None, version)."""
