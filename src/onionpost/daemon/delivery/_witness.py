"""Witnessing evidence logs over a session (``protocol-spec/evidence.md`` §5).

At the start of every session each side sends a ``LogCosign``: its evidence
log's latest checkpoint, signed, and the consistency proof from the checkpoint
the contact last cosigned for it. The contact judges it
(:func:`onionpost.proto.evidence.judge`) against the checkpoint of ours it
holds: if the log only grew it cosigns and keeps the new one; otherwise it
answers with the one it holds (cosigned, so that it is proof) and, if ours
went back or forked, raises an alarm about us. We keep each contact's latest
cosignature; a checkpoint of our own we are shown that our log does not
contain is an alarm about our own store (it was put back or rewritten).

Everything here is synchronous store work, run in the engine's worker. A
contact is authenticated, not trusted: a session answers at most
``MAX_COSIGN_PER_SESSION`` requests (each costs a signature check, at most
``MAX_PROOF_HASHES`` hashes, a signature and a write), and anything malformed
or wrongly signed is a :class:`VerificationError` the session logs and drops.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

from onionpost._logs import contact_ref
from onionpost.errors import VerificationError
from onionpost.proto import evidence, merkle, note
from onionpost.proto.evidence import Verdict
from onionpost.proto.identity import Identity
from onionpost.proto.messages import LogCosign, LogCosigned, LogStatus
from onionpost.store import Contact, Store

__all__ = ["MAX_COSIGN_PER_SESSION", "Witness"]

log = logging.getLogger("onionpost.daemon")

#: LogCosign requests a contact may make in one session; more are ignored.
MAX_COSIGN_PER_SESSION: Final = 4


@dataclass(frozen=True, slots=True)
class Witness:
    """Our evidence log's key, and the witnessing of logs with contacts."""

    identity: Identity

    def __repr__(self) -> str:
        return f"Witness({self.name})"

    @property
    def name(self) -> str:
        return str(self.identity.address)

    @property
    def origin(self) -> str:
        return evidence.origin(self.name)

    def sign(self, text: str) -> note.Note:
        return note.sign(text, self.name, self.identity)

    def _ours(self) -> note.Verifier:
        return note.Verifier(self.name, note.ED25519, self.identity.public_key)

    # -- asking a contact to witness our log -----------------------------------

    def request(self, store: Store, contact_id: int, now: int) -> LogCosign | None:
        """Our checkpoint (a new one if the log grew) for ``contact_id`` to cosign,
        with the proof from the one it last cosigned; None while the log is empty."""
        if store.evidence.size() == 0:
            return None
        checkpoint = store.evidence.checkpoint(self.origin, self.sign, now)
        held = store.evidence.witness(contact_id)
        old = 0 if held is None else note.Checkpoint.from_text(held.text).size
        return self._cosign_request(store, checkpoint, old)

    def _cosign_request(self, store: Store, checkpoint: note.Note, old: int) -> LogCosign:
        size = note.Checkpoint.from_text(checkpoint.text).size
        old = min(old, size)
        proof = store.evidence.consistency(old, size) if 0 < old < size else ()
        return LogCosign(checkpoint.to_bytes(), old, b"".join(proof))

    def settle(
        self, store: Store, contact: Contact, reply: LogCosigned, sent: LogCosign, now: int
    ) -> LogCosign | None:
        """A contact's answer to ``sent``. Keeps its cosignature; on a checkpoint
        it holds instead, either asks again from there (returned) or, when that
        checkpoint is not of our log as it is now, raises the alarm."""
        theirs = note.Verifier(str(contact.address), note.COSIGNATURE, contact.address.public_key)
        answer = note.Note.parse(reply.checkpoint)
        note.open_note(answer, [self._ours()])
        note.verified_cosignature(answer, theirs)
        held = note.Checkpoint.from_text(answer.text)
        ours = note.Note.parse(sent.checkpoint)
        size = note.Checkpoint.from_text(ours.text).size
        if reply.status == LogStatus.COSIGNED:
            if answer.text != ours.text:
                raise VerificationError("a cosignature of another checkpoint", what="checkpoint")
            store.evidence.set_witness(contact.id, answer, size, now)
            return None
        hasher = store.evidence.hasher(size) if size else None

        def root_at(n: int) -> bytes:
            return merkle.EMPTY_ROOT if n == 0 or hasher is None else hasher(0, n)

        verdict = evidence.judge_own(held, size, root_at)
        if verdict is Verdict.RESYNC:
            if held.size == sent.old_size:
                return None  # asked from there already: nothing more to do
            return self._cosign_request(store, ours, held.size)
        if store.evidence.raise_alarm(verdict.value, contact.id, answer, ours, now):
            log.warning(
                "event=evidence_alarm kind=%s contact=%s held_size=%d our_size=%d",
                verdict.value,
                contact_ref(contact.id),
                held.size,
                size,
            )
        return None

    # -- witnessing a contact's log ----------------------------------------------

    def answer(self, store: Store, contact: Contact, request: LogCosign, now: int) -> LogCosigned:
        """Judge ``contact``'s checkpoint against the one of its log we hold."""
        address = str(contact.address)
        signer = note.Verifier(address, note.ED25519, contact.address.public_key)
        presented = note.Note.parse(request.checkpoint)
        signed = note.open_note(presented, [signer])
        new = note.Checkpoint.from_text(presented.text)
        if new.origin != evidence.origin(address):
            raise VerificationError("a checkpoint of another log", what="checkpoint")
        theirs = note.Note(presented.text, signed)  # only its own signature kept
        held_note = store.evidence.witnessed(contact.id)
        held = None if held_note is None else note.Checkpoint.from_text(held_note.text)
        if held is not None and held.origin != new.origin:
            # The contact moved (trust.md §6): what we hold is of the log at
            # the address it left, and the new address keeps a log of its own,
            # witnessed from its first checkpoint (no fork of the old one).
            held_note = held = None
        verdict = evidence.judge(held, new, request.old_size, request.hashes())
        stamp = now // 1000
        if verdict is Verdict.COSIGN or held_note is None:
            store.evidence.set_witnessed(contact.id, theirs, new.size, now)
            cosig = note.cosign(theirs, self.name, self.identity, timestamp=stamp)
            return LogCosigned(LogStatus.COSIGNED, theirs.with_signatures([cosig]).to_bytes())
        if verdict is not Verdict.RESYNC:
            kind = f"contact-{verdict.value}"
            if store.evidence.raise_alarm(kind, contact.id, held_note, theirs, now):
                log.warning(
                    "event=evidence_alarm kind=%s contact=%s held_size=%d presented_size=%d",
                    kind,
                    contact_ref(contact.id),
                    0 if held is None else held.size,
                    new.size,
                )
        cosig = note.cosign(held_note, self.name, self.identity, timestamp=stamp)
        return LogCosigned(LogStatus.HELD, held_note.with_signatures([cosig]).to_bytes())
