"""The evidence log as the local API shows it: ``log show``, ``log verify``
and ``export`` (``protocol-spec/evidence.md`` §4, §6).

:class:`EvidenceHandlers` serves them; what they do is synchronous store
work, run in the daemon's worker (an export in a thread of its own). An export writes a zip
bundle (:mod:`onionpost.proto.bundle`) beside its destination and renames it
into place, so a bundle is whole or absent. ``bundle.json`` is signed as a
whole (``bundle.sig``) with the key that signs our checkpoints, so that no
part of it can be left out afterwards (evidence.md §6.1); the export is then
recorded in the log itself (an ``exported`` entry naming the SHA-256 of its
``bundle.json``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Final

import trio

from onionpost import __version__, api
from onionpost.daemon._common import now_ms, parse_id
from onionpost.daemon._labels import check_export
from onionpost.daemon.delivery import Witness
from onionpost.errors import ConfigError, NotFoundError, VerificationError
from onionpost.host import StoreWorker
from onionpost.limits import MAX_EXPORT_MESSAGES
from onionpost.proto import bundle, merkle, note
from onionpost.proto.evidence import Entry, Event
from onionpost.proto.labels import LabelPolicy
from onionpost.store import Direction, Kind, Store, Stored

__all__ = ["EvidenceHandlers", "export", "show", "verify_log"]

_ZIP_CHUNK: Final = 1 << 20
# Stored messages read per query when checking them against the log.
_VERIFY_BATCH: Final = 1000


class EvidenceHandlers:
    """``log_show``, ``log_verify`` and ``evidence_export``; ``contact_id``
    finds a contact's id by its name (as a send does)."""

    def __init__(
        self,
        store: Store,
        worker: StoreWorker,
        witness: Witness,
        labels: LabelPolicy,
        *,
        contact_id: Callable[[str], Awaitable[int]],
    ) -> None:
        self._store = store
        self._worker = worker
        self._witness = witness
        self._labels = labels
        self._contact_id = contact_id

    async def log_show(self, request: api.LogShow) -> api.LogEntries:
        return await self._worker(show, self._store, request.start, request.limit)

    async def log_verify(self, request: api.LogVerify) -> api.LogReport:
        return await self._worker(verify_log, self._store, self._witness)

    async def evidence_export(self, request: api.EvidenceExport) -> api.EvidenceExported:
        contact_id = None if request.contact is None else await self._contact_id(request.contact)
        ids = [parse_id(i) for i in request.ids]
        if request.group is not None:
            if ids:
                raise ConfigError("select by group or by ids, not both")
            ids = await self._worker(self._store.groups.message_ids, request.group)
            if not ids:
                raise ConfigError(f"no messages in the group {request.group!r} to export")
        # Files are copied out: a thread of its own, as for export_file.
        return await trio.to_thread.run_sync(
            partial(
                export,
                self._store,
                self._witness,
                self._labels,
                request,
                contact_id,
                ids,
                now_ms(),
            )
        )


def show(store: Store, start: int, limit: int) -> api.LogEntries:
    rows = store.evidence.entries(start, limit)
    entries = []
    for idx, data in rows:
        entry = Entry.decode(data)
        view = entry.to_json()
        entries.append(
            api.LogEntry(
                index=idx,
                event=str(view["event"]),
                time_ms=entry.time_ms,
                counterparty=entry.counterparty,
                message_id=entry.message_id.hex(),
                kind=entry.kind,
                content_blake2b=entry.content.hex(),
                record_sha256=entry.record.hex(),
                detail=entry.detail,
            )
        )
    return api.LogEntries(store.evidence.size(), tuple(entries))


def _name_of(store: Store, contact_id: int | None) -> str:
    if contact_id is None:
        return ""
    contact = store.contacts.contact_by_id(contact_id)
    return "" if contact is None else contact.name


def verify_log(store: Store, witness: Witness) -> api.LogReport:
    """Re-read every entry, recompute the tree, and check every checkpoint we
    signed and every cosignature we hold against it."""
    problems: list[str] = []
    leaves = merkle.TreeHashes()
    # The entry that recorded each message as queued or received, by
    # (message, counterparty, direction): the stored row must still match it.
    firsts: dict[tuple[bytes, str, str], Entry] = {}
    start = 0
    while True:
        batch = store.evidence.entries(start, 4096)
        if not batch:
            break
        for idx, data in batch:
            if idx != len(leaves):
                problems.append(f"entry {len(leaves)} is missing")
                leaves.append(merkle.leaf_hash(b""))
            try:
                entry = Entry.decode(data)
            except VerificationError as exc:
                problems.append(f"entry {idx}: {exc}")
            else:
                side = {Event.QUEUED: "out", Event.RECEIVED: "in"}.get(entry.event)
                if side is not None:
                    firsts.setdefault((entry.message_id, entry.counterparty, side), entry)
            leaves.append(merkle.leaf_hash(data))
        start = batch[-1][0] + 1
    hasher = leaves.hasher(len(leaves))

    def root_at(size: int) -> bytes:
        return merkle.EMPTY_ROOT if size == 0 else hasher(0, size)

    ours = note.Verifier(witness.name, note.ED25519, witness.identity.public_key)

    def check(signed: note.Note, what: str) -> note.Checkpoint | None:
        try:
            note.open_note(signed, [ours])
            checkpoint = note.Checkpoint.from_text(signed.text)
        except VerificationError as exc:
            problems.append(f"{what}: {exc}")
            return None
        if checkpoint.origin != witness.origin:
            problems.append(f"{what}: a checkpoint of another log")
        elif checkpoint.size > len(leaves):
            problems.append(
                f"{what}: signed for {checkpoint.size} entries, the log has {len(leaves)}"
            )
        elif root_at(checkpoint.size) != checkpoint.root:
            problems.append(f"{what}: the log's first {checkpoint.size} entries differ from it")
        return checkpoint

    problems += _stored_against_entries(store, firsts)
    checkpoints = store.evidence.checkpoints()
    for signed in checkpoints:
        check(signed, "checkpoint")
    witnesses = []
    for contact_id, signed in store.evidence.witnesses():
        contact = store.contacts.contact_by_id(contact_id)
        if contact is None:
            continue
        checkpoint = check(signed, f"the cosignature of {contact.name}")
        verifier = note.Verifier(str(contact.address), note.COSIGNATURE, contact.address.public_key)
        try:
            stamp = note.verified_cosignature(signed, verifier).timestamp()
        except VerificationError as exc:
            problems.append(f"the cosignature of {contact.name}: {exc}")
            continue
        if checkpoint is not None:
            witnesses.append(
                api.LogWitness(contact.name, str(contact.address), checkpoint.size, stamp)
            )
    alarms = tuple(
        api.LogAlarm(
            kind=a.kind,
            contact=_name_of(store, a.contact_id),
            made_ms=a.made_ms,
            theirs=a.theirs.decode(),
            ours=a.ours.decode(),
        )
        for a in store.evidence.alarms()
    )
    return api.LogReport(
        ok=not problems and not alarms,
        size=len(leaves),
        root=root_at(len(leaves)).hex(),
        checkpoints=len(checkpoints),
        witnesses=tuple(witnesses),
        alarms=alarms,
        problems=tuple(problems),
    )


def _stored_against_entries(store: Store, firsts: dict[tuple[bytes, str, str], Entry]) -> list[str]:
    """Each stored message whose queueing or receipt the log recorded must be
    what was recorded: its record (label included) and content digests. A
    label, a body or a name changed in the store is reported here."""
    problems: list[str] = []
    after = 0
    while batch := store.messages.selected(limit=_VERIFY_BATCH, after=after):
        for stored in batch:
            after = stored.seq
            message = _bundle_message(store, stored, None)
            entry = firsts.get((stored.id, message.counterparty, message.direction))
            if entry is None:
                continue  # stored before the log began (evidence.md §2)
            expected = message.entry_for(entry.time_ms)
            if (entry.record, entry.content) != (expected.record, expected.content):
                problems.append(
                    f"message {stored.id.hex()}: the store no longer matches its log entry "
                    "(its label or content was changed)"
                )
    return problems


def _bundle_message(store: Store, stored: Stored, member: str | None) -> bundle.BundleMessage:
    counterparty = store.evidence.address(stored.contact_id)
    direction = "out" if stored.direction == Direction.OUT else "in"
    if stored.kind == Kind.TEXT:
        return bundle.BundleMessage(
            stored.id,
            direction,
            counterparty,
            "text",
            stored.created_ms,
            stored.content_type,
            body=stored.body or "",
            label=stored.label,
        )
    assert stored.file is not None
    f = stored.file
    return bundle.BundleMessage(
        stored.id,
        direction,
        counterparty,
        "file",
        stored.created_ms,
        f.content_type,
        name=f.name,
        size=f.size,
        blake2b=f.blake2b,
        member=member,
        label=stored.label,
    )


def export(  # noqa: PLR0917 - a selection, where to, and when
    store: Store,
    witness: Witness,
    labels: LabelPolicy,
    request: api.EvidenceExport,
    contact_id: int | None,
    ids: list[bytes],
    now: int,
) -> api.EvidenceExported:
    """Write the bundle of the selected messages to ``request.dest``."""
    dest = Path(request.dest)
    if os.path.lexists(dest):
        raise ConfigError(f"{dest} already exists")
    if not dest.parent.is_dir():
        raise ConfigError(f"{dest.parent} is not a directory")
    selected = store.messages.selected(
        contact_id=contact_id,
        since_ms=request.since_ms,
        until_ms=request.until_ms,
        ids=ids,
        limit=MAX_EXPORT_MESSAGES + 1,
    )
    if len(selected) > MAX_EXPORT_MESSAGES:
        raise ConfigError(
            f"more than {MAX_EXPORT_MESSAGES} messages selected: narrow the selection"
        )
    # Labels are kept in the bundle, and what policy forbids is not exported
    # at all (spec.md §5.10): refused before anything is written or logged.
    check_export(labels, selected)
    checkpoint = store.evidence.checkpoint(witness.origin, witness.sign, now)
    size = note.Checkpoint.from_text(checkpoint.text).size
    hasher = store.evidence.hasher(size)
    entries = [
        (idx, data, merkle.inclusion_proof(idx, size, hasher))
        for idx, data in store.evidence.of_messages({s.id for s in selected}, size)
    ]
    witnesses = []
    for _contact, cosigned in store.evidence.witnesses():
        seen = note.Checkpoint.from_text(cosigned.text).size
        if seen <= size:
            witnesses.append((cosigned, merkle.consistency_proof(seen, size, hasher)))
    try:
        scratch = Path(tempfile.mkdtemp(prefix=".onionpost-export-", dir=dest.parent))
    except OSError as exc:
        raise ConfigError(f"cannot write in {dest.parent}: {exc.strerror}") from exc
    part = scratch / "bundle.zip"
    try:
        messages, sha256 = _write(store, part, scratch, selected)
        document = bundle.bundle_json(
            endpoint=witness.name,
            checkpoint=checkpoint,
            witnesses=witnesses,
            entries=entries,
            messages=messages,
            selection={
                "contact": request.contact,
                "since_ms": request.since_ms,
                "until_ms": request.until_ms,
                "ids": list(request.ids),
                "group": request.group,
            },
        )
        manifest = bundle.case_manifest(
            endpoint=witness.name,
            messages=messages,
            file_sha256=sha256,
            made_ms=now,
            version=__version__,
            bundle_id=hashlib.sha256(document).hexdigest()[:32],
        )
        # The whole of bundle.json, signed as an export (its own origin, not
        # a checkpoint's): evidence.md §6.1.
        signed = witness.sign(bundle.export_statement(witness.name, document))
        with zipfile.ZipFile(part, "a", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(bundle.BUNDLE_NAME, document)
            archive.writestr(bundle.SIGNATURE_NAME, signed.to_bytes())
            archive.writestr(bundle.MANIFEST_NAME, manifest)
        with open(part, "rb") as f:
            os.fsync(f.fileno())
        os.link(part, dest)  # never over an existing file
    except OSError as exc:
        raise ConfigError(f"cannot write {dest}: {exc.strerror}") from exc
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    detail = json.dumps(
        {"messages": len(messages), "bundle_sha256": hashlib.sha256(document).hexdigest()},
        sort_keys=True,
    )
    with store.transaction():
        store.evidence.append((Entry(Event.EXPORTED, now, "", detail=detail),))
    files = sum(1 for m in messages if m.kind == "file")
    return api.EvidenceExported(str(dest), len(messages), files, len(entries), size)


def _write(
    store: Store, part: Path, scratch: Path, selected: list[Stored]
) -> tuple[list[bundle.BundleMessage], dict[bytes, str]]:
    """The files' bytes into the archive; the messages as the bundle lists them."""
    messages: list[bundle.BundleMessage] = []
    sha256: dict[bytes, str] = {}
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    with zipfile.ZipFile(part, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for stored in selected:
            member = None
            if stored.kind == Kind.FILE:
                plain: Path | None = scratch / stored.id.hex()
                assert plain is not None
                try:
                    store.transfers.export_file(stored.id, plain, contact_id=stored.contact_id)
                except NotFoundError:
                    plain = None  # a sent copy dropped after delivery: its entry still proves it
                if plain is not None:
                    member = bundle.file_member(stored.id)
                    hasher = hashlib.sha256()
                    with open(plain, "rb") as source, archive.open(member, "w") as out:
                        while piece := source.read(_ZIP_CHUNK):
                            hasher.update(piece)
                            out.write(piece)
                    with contextlib.suppress(OSError):
                        plain.unlink()
                    sha256[stored.id] = hasher.hexdigest()
            messages.append(_bundle_message(store, stored, member))
    return messages, sha256
