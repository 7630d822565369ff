"""Delivery to and from contacts: the engine and the pieces it is made of.

::

    _engine     the façade (DeliveryEngine) and the per-contact loops
    _link       PURE: what a contact's delivery does next (LinkState), one Backoff
    _session    one session: sender, receiver, handler table, one per contact
    _files      files in a live session
    _deposit    deposits into a contact's mailbox
    _mbclient   the one request/answer client for mailboxes (owner and sender)
    _intake     SYNC: what a contact's records do to our store, live or enveloped
    _writer     group commit (over the host's StoreWorker)
    _records    per-link and per-session records, shared by the above
    _views      messages as the local API shows them
    _witness    SYNC: witnessing evidence logs with contacts
    _trust      SYNC: agency endorsements and revocation lists with contacts
    _gossip     SYNC: passing on what we hold of other agencies (trust.md §7.2)
    _policy     the policy, reports, and the seams (Dial, MailboxAccess)
"""

from onionpost.daemon.delivery._engine import DeliveryEngine
from onionpost.daemon.delivery._intake import EnvelopeReceipt, admit, unfit_mailbox
from onionpost.daemon.delivery._introductions import (
    Introduction,
    IntroductionPlan,
    Reconciled,
    RecordVerdict,
    introduced_record,
    plan_introductions,
    shown_name,
)
from onionpost.daemon.delivery._link import Backoff, LinkState, Step, StepKind, Work
from onionpost.daemon.delivery._mbclient import MailboxClient, mailbox_refusal
from onionpost.daemon.delivery._policy import (
    DeliveryPolicy,
    DeliveryStatistics,
    Dial,
    LinkStatus,
    MailboxAccess,
)
from onionpost.daemon.delivery._trust import (
    Imported,
    Judged,
    announce_rotation,
    import_revocations,
    install_own,
    judge_in_detail,
    moved_refusal,
    own_in_detail,
    receive_staple,
    recheck_contacts,
    refusals,
    rejudge,
    rotation_progress,
)
from onionpost.daemon.delivery._views import message_record
from onionpost.daemon.delivery._witness import Witness
from onionpost.host import InlineWorker, StoreWorker, ThreadWorker

__all__ = [
    "Imported",
    "Judged",
    "admit",
    "announce_rotation",
    "import_revocations",
    "install_own",
    "judge_in_detail",
    "own_in_detail",
    "receive_staple",
    "recheck_contacts",
    "refusals",
    "rejudge",
    "rotation_progress",
    "Backoff",
    "DeliveryEngine",
    "DeliveryPolicy",
    "DeliveryStatistics",
    "Dial",
    "EnvelopeReceipt",
    "InlineWorker",
    "Introduction",
    "IntroductionPlan",
    "LinkState",
    "LinkStatus",
    "MailboxAccess",
    "MailboxClient",
    "Reconciled",
    "RecordVerdict",
    "Step",
    "StepKind",
    "StoreWorker",
    "ThreadWorker",
    "Witness",
    "Work",
    "introduced_record",
    "mailbox_refusal",
    "message_record",
    "moved_refusal",
    "plan_introductions",
    "shown_name",
    "unfit_mailbox",
]
