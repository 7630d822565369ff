"""Evidence bundles: what ``onionpost export`` writes and ``verify-export``
checks, anywhere, offline (``protocol-spec/evidence.md`` §6).

A bundle is a zip archive:

``bundle.json``
    The endpoint's address, its latest checkpoint (a signed note), the
    checkpoints its contacts cosigned with a consistency proof from each to
    it, the log entries of the selected messages with an inclusion proof each,
    and the messages themselves (a text's body; a file's name, size and
    member name).
``bundle.sig``
    A signed note by the endpoint's key of the SHA-256 of ``bundle.json``'s
    bytes, under an origin of its own (``<address>/export``): the export as a
    whole, so that no part of it can be left out or changed (the checkpoint
    and entries alone prove each entry, not that nothing was left out).
``files/<id>``
    The bytes of each file whose copy the endpoint still held.
``manifest.jsonld``
    The same messages and files described in CASE/UCO (JSON-LD), which
    digital-forensics tools read.

:func:`verify` needs nothing but the archive: the endpoint's key *is* its
address (as is each witness's), so every signature can be checked without
any other input. It returns a :class:`Report` that says what held and what
failed; it never raises on bad content (only :class:`VerificationError`
when the archive itself cannot be read as one), and every field of
``bundle.json`` is read through a helper that names what is wrong with it,
so a malformed bundle gives a sentence, never a ``KeyError``'s text.

Sans-I/O apart from reading the members of a :class:`zipfile.ZipFile` the
caller opened.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import uuid
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

from onionpost.errors import ConfigError, VerificationError
from onionpost.limits import (
    MAX_EXPORT_MESSAGES,
    MAX_NOTE_BYTES,
    MAX_NOTE_SIGNATURES,
    MAX_PROOF_HASHES,
    MAX_TIME_MS,
)
from onionpost.proto import merkle, note
from onionpost.proto.address import OnionAddress
from onionpost.proto.evidence import Entry, Event, file_entry, origin, text_entry

__all__ = [
    "BUNDLE_NAME",
    "FORMAT",
    "MANIFEST_NAME",
    "SIGNATURE_NAME",
    "UNSIGNED_FORMAT",
    "BundleMessage",
    "Report",
    "WitnessSeen",
    "bundle_json",
    "case_manifest",
    "export_origin",
    "export_statement",
    "file_member",
    "verify",
]

FORMAT: Final = "onionpost-evidence/2"
# Bundles written before bundle.sig: checked as before, and reported as not
# signed as a whole (evidence.md §6.2 step 3).
UNSIGNED_FORMAT: Final = "onionpost-evidence/1"
BUNDLE_NAME: Final = "bundle.json"
SIGNATURE_NAME: Final = "bundle.sig"
MANIFEST_NAME: Final = "manifest.jsonld"
_EXPORT_SUFFIX: Final = "/export"
# bundle.sig is one note: its text (three short lines) and the endpoint's signature.
_MAX_SIGNATURE: Final = MAX_NOTE_BYTES + MAX_NOTE_SIGNATURES * 256
# A bundle.json of the most messages and entries, with proofs, stays well under this.
_MAX_BUNDLE_JSON: Final = 512 * 1024 * 1024
_CASE_CONTEXT: Final = {
    "case-investigation": "https://ontology.caseontology.org/case/investigation/",
    "kb": "urn:onionpost:",
    "uco-action": "https://ontology.unifiedcyberontology.org/uco/action/",
    "uco-core": "https://ontology.unifiedcyberontology.org/uco/core/",
    "uco-observable": "https://ontology.unifiedcyberontology.org/uco/observable/",
    "uco-tool": "https://ontology.unifiedcyberontology.org/uco/tool/",
    "uco-types": "https://ontology.unifiedcyberontology.org/uco/types/",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
}
_UUID_NAMESPACE: Final = uuid.UUID("6f6e696f-6e70-4f73-b465-766964656e63")


def file_member(message_id: bytes) -> str:
    return f"files/{message_id.hex()}"


def export_origin(address: str) -> str:
    """The origin line of an export's signature: not a checkpoint's
    (``<address>/evidence``), so neither signature can pass for the other."""
    return address + _EXPORT_SUFFIX


def export_statement(endpoint: str, document: bytes) -> str:
    """The text ``bundle.sig`` signs for the ``bundle.json`` bytes ``document``
    (evidence.md §6.1), e.g.::

        abcd...xyz.onion/export
        onionpost-evidence/2
        sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08

    The exporter signs it with :func:`onionpost.proto.note.sign` (the key and
    key name of its checkpoints); its second line is not a number, so it is
    never read as a checkpoint either."""
    digest = hashlib.sha256(document).hexdigest()
    return f"{export_origin(endpoint)}\n{FORMAT}\nsha256 {digest}\n"


@dataclass(frozen=True, slots=True)
class BundleMessage:
    """A message as a bundle carries it (texts: ``body``; files: name, size, member)."""

    id: bytes
    direction: str  # "in" or "out"
    counterparty: str
    kind: str  # "text" or "file"
    created_ms: int
    content_type: str
    body: str | None = None
    name: str | None = None
    size: int | None = None
    blake2b: bytes | None = None
    member: str | None = None  # where the file's bytes are, if they were kept
    label: str = ""  # its handling label (spec.md §5.10); "" an earlier sender's, unlabelled

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id.hex(),
            "direction": self.direction,
            "counterparty": self.counterparty,
            "kind": self.kind,
            "created_ms": self.created_ms,
            "content_type": self.content_type,
            "label": self.label,
        }
        if self.kind == "text":
            out["body"] = self.body
        else:
            out |= {
                "name": self.name,
                "size": self.size,
                "blake2b": (self.blake2b or b"").hex(),
                "member": self.member,
            }
        return out

    @classmethod
    def from_json(cls, value: object) -> BundleMessage:
        """A message of ``bundle.json``; a :class:`VerificationError` naming
        what is wrong for anything else."""
        item = _object(value, "a message", _MESSAGE_FIELDS)
        kind = _str(item, "kind")
        if kind not in _KIND_FIELDS:
            raise VerificationError("not a message: 'kind' is not 'text' or 'file'", what="bundle")
        item = _object(item, "a message", _KIND_FIELDS[kind])
        direction = _str(item, "direction")
        if direction not in {"in", "out"}:
            raise VerificationError(
                "not a message: 'direction' is not 'in' or 'out'", what="bundle"
            )
        message_id = _hex(item, "id")
        # What a text and a file share, read in the order the fields are checked.
        shared = partial(
            cls,
            id=message_id,
            direction=direction,
            counterparty=_str(item, "counterparty"),
            kind=kind,
            created_ms=_time_ms(item, "created_ms"),
            content_type=_str(item, "content_type"),
        )
        label = _str(item, "label") if "label" in item else ""
        if kind == "text":
            return shared(body=_str(item, "body"), label=label)
        member = item["member"]
        if member is not None and member != file_member(message_id):
            raise VerificationError(
                f"its file's member is not {file_member(message_id)!r}", what="bundle"
            )
        return shared(
            name=_str(item, "name"),
            size=_int(item, "size"),
            blake2b=_hex(item, "blake2b") or None,
            member=member,
            label=label,
        )

    def entry_for(self, index_time: int) -> Entry:
        """The QUEUED or RECEIVED entry this message must have (its time aside)."""
        event = Event.QUEUED if self.direction == "out" else Event.RECEIVED
        if self.kind == "text":
            return text_entry(
                event,
                index_time,
                self.counterparty,
                self.id,
                self.created_ms,
                self.body or "",
                self.content_type,
                self.label,
            )
        return file_entry(
            event,
            index_time,
            self.counterparty,
            self.id,
            self.created_ms,
            self.name or "",
            self.size or 0,
            self.blake2b or b"",
            self.content_type,
            self.label,
        )


# The fields each object of bundle.json has (a message's: and those of its kind).
_MESSAGE_FIELDS: Final = ("id", "direction", "counterparty", "kind", "created_ms", "content_type")
_KIND_FIELDS: Final = {"text": ("body",), "file": ("name", "size", "blake2b", "member")}
_ENTRY_FIELDS: Final = ("index", "entry", "proof")
_WITNESS_FIELDS: Final = ("checkpoint", "proof")


def _object(value: object, what: str, fields: Iterable[str]) -> dict[str, Any]:
    """``value`` as a JSON object with ``fields``; else "not <what>: no 'field'"."""
    if not isinstance(value, dict):
        raise VerificationError(f"not {what}: not a JSON object", what="bundle")
    for key in fields:
        if key not in value:
            raise VerificationError(f"not {what}: no {key!r}", what="bundle")
    return value


def _field(item: Mapping[str, Any], key: str) -> object:
    if key not in item:
        raise VerificationError(f"no {key!r}", what="bundle")
    return item[key]


def _str(item: Mapping[str, Any], key: str) -> str:
    value = _field(item, key)
    if not isinstance(value, str):
        raise VerificationError(f"{key!r} is not a string", what="bundle")
    try:
        value.encode()
    except UnicodeEncodeError as exc:  # JSON allows "\ud800"; UTF-8 (and msgpack) does not
        raise VerificationError(f"{key!r} is not UTF-8 text", what="bundle") from exc
    return value


def _int(item: Mapping[str, Any], key: str) -> int:
    """A uint 64, as the records and entries hold their integers."""
    value = _field(item, key)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**64:
        raise VerificationError(f"{key!r} is not a whole number", what="bundle")
    return value


def _time_ms(item: Mapping[str, Any], key: str) -> int:
    """A time in ms that a date can show (the manifest shows it): 0 to the last
    ms of year 9999, as a record's created_ms is bounded (evidence.md §6.2)."""
    value = _int(item, key)
    if value > MAX_TIME_MS:
        raise VerificationError(
            f"{key!r} is not a time in ms from 1970 to the end of year 9999 (0 to {MAX_TIME_MS})",
            what="bundle",
        )
    return value


def _hex(item: Mapping[str, Any], key: str) -> bytes:
    try:
        return bytes.fromhex(_str(item, key))
    except ValueError as exc:
        raise VerificationError(f"{key!r} is not hex", what="bundle") from exc


def _hexes(proof: Sequence[bytes]) -> list[str]:
    return [h.hex() for h in proof]


def bundle_json(
    *,
    endpoint: str,
    checkpoint: note.Note,
    witnesses: Iterable[tuple[note.Note, Sequence[bytes]]],
    entries: Iterable[tuple[int, bytes, Sequence[bytes]]],
    messages: Iterable[BundleMessage],
    selection: Mapping[str, Any],
) -> bytes:
    """The bytes of ``bundle.json``."""
    document = {
        "format": FORMAT,
        "endpoint": endpoint,
        "checkpoint": checkpoint.to_text(),
        "witnesses": [{"checkpoint": n.to_text(), "proof": _hexes(p)} for n, p in witnesses],
        "entries": [
            {"index": i, "entry": base64.b64encode(data).decode(), "proof": _hexes(proof)}
            for i, data, proof in entries
        ],
        "messages": [m.to_json() for m in messages],
        "selection": dict(selection),
    }
    return json.dumps(document, indent=1, sort_keys=True).encode()


def _iso(ms: int) -> dict[str, str]:
    # ms is 0..MAX_TIME_MS: a message's created_ms as BundleMessage.from_json
    # reads it, the export's time as _manifest_problem reads it.
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return {"@type": "xsd:dateTime", "@value": moment.isoformat().replace("+00:00", "Z")}


def _kb(kind: str, key: str) -> str:
    return f"kb:{kind}-{uuid.uuid5(_UUID_NAMESPACE, f'{kind}/{key}')}"


def case_manifest(
    *,
    endpoint: str,
    messages: Sequence[BundleMessage],
    file_sha256: Mapping[bytes, str],
    made_ms: int,
    version: str,
    bundle_id: str,
) -> bytes:
    """``manifest.jsonld``: the messages and files in CASE/UCO 1.x JSON-LD."""
    graph: list[dict[str, Any]] = []
    tool = _kb("tool", f"onionpost/{version}")
    graph.append(
        {
            "@id": tool,
            "@type": "uco-tool:Tool",
            "uco-core:name": "onionpost",
            "uco-tool:version": version,
        }
    )
    accounts: dict[str, str] = {}

    def account(address: str) -> str:
        if address not in accounts:
            accounts[address] = node = _kb("account", address)
            graph.append(
                {
                    "@id": node,
                    "@type": "uco-observable:ObservableObject",
                    "uco-core:hasFacet": [
                        {
                            "@id": _kb("account-facet", address),
                            "@type": "uco-observable:AccountFacet",
                            "uco-observable:accountIdentifier": address,
                        }
                    ],
                }
            )
        return accounts[address]

    me = account(endpoint)
    objects: list[dict[str, Any]] = []
    for m in messages:
        key = f"{m.direction}/{m.counterparty}/{m.id.hex()}"
        them = account(m.counterparty)
        sender, recipient = (me, them) if m.direction == "out" else (them, me)
        facet: dict[str, Any] = {
            "@id": _kb("message-facet", key),
            "@type": "uco-observable:MessageFacet",
            "uco-observable:messageID": m.id.hex(),
            "uco-observable:sentTime": _iso(m.created_ms),
            "uco-observable:from": {"@id": sender},
            "uco-observable:to": [{"@id": recipient}],
        }
        if m.kind == "text":
            facet["uco-observable:messageText"] = m.body or ""
        node: dict[str, Any] = {
            "@id": _kb("message", key),
            "@type": "uco-observable:Message",
            "uco-core:hasFacet": [facet],
        }
        if m.label:
            # Its handling label, as its canonical text (spec.md §5.10).
            node["uco-core:tag"] = [m.label]
        graph.append(node)
        objects.append({"@id": node["@id"]})
        if m.kind == "file":
            file_facets: list[dict[str, Any]] = [
                {
                    "@id": _kb("file-facet", key),
                    "@type": "uco-observable:FileFacet",
                    "uco-observable:fileName": m.name or "",
                    "uco-observable:sizeInBytes": {"@type": "xsd:integer", "@value": str(m.size)},
                }
            ]
            sha = file_sha256.get(m.id)
            if sha is not None:
                file_facets.append(
                    {
                        "@id": _kb("content-facet", key),
                        "@type": "uco-observable:ContentDataFacet",
                        "uco-observable:hash": [
                            {
                                "@id": _kb("hash", key),
                                "@type": "uco-types:Hash",
                                "uco-types:hashMethod": "SHA256",
                                "uco-types:hashValue": {
                                    "@type": "xsd:hexBinary",
                                    "@value": sha.upper(),
                                },
                            }
                        ],
                    }
                )
            graph.append(
                {
                    "@id": _kb("file", key),
                    "@type": "uco-observable:File",
                    "uco-core:hasFacet": file_facets,
                }
            )
            objects.append({"@id": _kb("file", key)})
    provenance = _kb("provenance", bundle_id)
    record: dict[str, Any] = {
        "@id": provenance,
        "@type": "case-investigation:ProvenanceRecord",
        "case-investigation:exhibitNumber": f"onionpost-export-{bundle_id}",
    }
    if objects:
        record["uco-core:object"] = objects
    graph.append(record)
    graph.append(
        {
            "@id": _kb("action", bundle_id),
            "@type": "case-investigation:InvestigativeAction",
            "uco-core:name": "onionpost export",
            "uco-action:startTime": _iso(made_ms),
            "uco-action:instrument": {"@id": tool},
            "uco-action:result": [{"@id": provenance}],
        }
    )
    return json.dumps({"@context": _CASE_CONTEXT, "@graph": graph}, indent=1).encode()


# -- verifying -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WitnessSeen:
    """A contact that cosigned the endpoint's log up to ``size`` at ``time_s``."""

    address: str
    size: int
    time_s: int


@dataclass(slots=True)
class Report:
    """What :func:`verify` found: ``ok`` only when ``problems`` is empty."""

    endpoint: str = ""
    size: int = 0
    entries: int = 0
    messages: int = 0
    files_checked: int = 0
    files_absent: int = 0
    witnesses: list[WitnessSeen] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # The SHA-256 of bundle.json when bundle.sig signs it (the log's
    # ``exported`` entry names the same); "" when it does not.
    bundle_sha256: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    def witnessed_at(self, index: int) -> list[WitnessSeen]:
        """The witnesses whose cosigned checkpoint already held leaf ``index``."""
        return [w for w in self.witnesses if index < w.size]


def _read(archive: zipfile.ZipFile, name: str, limit: int) -> bytes:
    try:
        info = archive.getinfo(name)
    except KeyError as exc:
        raise VerificationError(f"the bundle has no {name}", what="bundle") from exc
    if info.file_size > limit:
        raise VerificationError(f"{name} is too large", what="bundle")
    try:
        with archive.open(info) as member:
            data = member.read(limit + 1)
    except (OSError, zipfile.BadZipFile, RuntimeError) as exc:
        raise VerificationError(f"{name} cannot be read: {exc}", what="bundle") from exc
    if len(data) > limit:
        raise VerificationError(f"{name} is too large", what="bundle")
    return data


def _member_digests(archive: zipfile.ZipFile, name: str) -> tuple[bytes, str]:
    """BLAKE2b-512 (what its entry holds) and SHA-256 hex (what the manifest
    names) of a member, read once, a piece at a time."""
    blake = hashlib.blake2b(digest_size=64)
    sha = hashlib.sha256()
    try:
        with archive.open(name) as member:
            while piece := member.read(1 << 20):
                blake.update(piece)
                sha.update(piece)
    except KeyError as exc:
        raise VerificationError(f"the bundle has no {name}", what="bundle") from exc
    except (OSError, zipfile.BadZipFile, RuntimeError) as exc:
        raise VerificationError(f"{name} cannot be read: {exc}", what="bundle") from exc
    return blake.digest(), sha.hexdigest()


def _proof(item: Mapping[str, Any]) -> tuple[bytes, ...]:
    value = _field(item, "proof")
    if not isinstance(value, list) or len(value) > MAX_PROOF_HASHES:
        raise VerificationError("'proof' is not a list of hashes", what="bundle")
    try:
        return tuple(bytes.fromhex(h) for h in value)
    except (TypeError, ValueError) as exc:
        raise VerificationError("'proof' is not a list of hashes", what="bundle") from exc


def _same_log(checkpoint: note.Checkpoint, log_origin: str) -> note.Checkpoint:
    if checkpoint.origin != log_origin:
        raise VerificationError("a checkpoint of another log", what="checkpoint")
    return checkpoint


def _witness(item: Any, signer: note.Verifier, checkpoint: note.Checkpoint) -> list[WitnessSeen]:
    """A contact's cosigned checkpoint and the proof that the exported one continues it."""
    item = _object(item, "a witness", _WITNESS_FIELDS)
    cosigned = note.Note.parse(_str(item, "checkpoint"))
    note.open_note(cosigned, [signer])
    seen = _same_log(note.Checkpoint.from_text(cosigned.text), checkpoint.origin)
    merkle.verify_consistency(seen.size, checkpoint.size, seen.root, checkpoint.root, _proof(item))
    found: list[WitnessSeen] = []
    for signature in cosigned.signatures:
        if signature.name == signer.name:
            continue
        key = OnionAddress.parse(signature.name).public_key
        verifier = note.Verifier(signature.name, note.COSIGNATURE, key)
        stamp = note.verified_cosignature(cosigned, verifier).timestamp()
        found.append(WitnessSeen(signature.name, seen.size, stamp))
    if not found:
        raise VerificationError("no cosignature", what="signature")
    return found


def _entry(item: object, checkpoint: note.Checkpoint) -> tuple[int, Entry]:
    item = _object(item, "an entry", _ENTRY_FIELDS)
    index = _int(item, "index")
    try:
        data = base64.b64decode(_str(item, "entry"), validate=True)
    except ValueError as exc:  # binascii.Error, or text that is not ASCII
        raise VerificationError("'entry' is not base64", what="bundle") from exc
    entry = Entry.decode(data)
    proof = _proof(item)
    merkle.verify_inclusion(merkle.leaf_hash(data), index, checkpoint.size, proof, checkpoint.root)
    return index, entry


def _message(
    archive: zipfile.ZipFile,
    message: BundleMessage,
    entries: Mapping[bytes, list[Entry]],
    sha256: dict[bytes, str],
) -> bool | None:
    """Check a message against its entry (and a file's bytes, whose SHA-256
    goes in ``sha256``): True when its bytes were checked too, None when the
    file's bytes are not in the bundle."""
    first = Event.QUEUED if message.direction == "out" else Event.RECEIVED
    found = [e for e in entries.get(message.id, []) if e.event is first]
    if not found:
        raise VerificationError(f"no {first.name.lower()} entry in the log", what="entry")
    entry = found[0]
    expected = message.entry_for(entry.time_ms)
    if entry.counterparty != message.counterparty or entry.kind != message.kind:
        raise VerificationError("its entry names another contact or kind", what="entry")
    if entry.record != expected.record or entry.content != expected.content:
        raise VerificationError(
            "it does not match its entry: changed after it was logged", what="entry"
        )
    if message.kind != "file":
        return True
    if message.member is None:
        return None
    blake, sha = _member_digests(archive, message.member)
    if blake != message.blake2b:
        raise VerificationError("the file's bytes do not match its entry", what="file")
    sha256[message.id] = sha
    return True


def _document(archive: zipfile.ZipFile) -> tuple[dict[str, Any], bytes]:
    """``bundle.json``, parsed and as its bytes."""
    raw = _read(archive, BUNDLE_NAME, _MAX_BUNDLE_JSON)
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise VerificationError("bundle.json is not JSON", what="bundle") from exc
    if not isinstance(document, dict) or document.get("format") not in (FORMAT, UNSIGNED_FORMAT):
        raise VerificationError(
            f"not an evidence bundle ({FORMAT} or {UNSIGNED_FORMAT})", what="bundle"
        )
    return document, raw


def _signature_problem(
    archive: zipfile.ZipFile, document: bytes, endpoint: str, signer: note.Verifier
) -> str | None:
    """Whether ``bundle.sig`` fails to sign exactly these ``bundle.json`` bytes
    by the endpoint's key, as an export (evidence.md §6.2 step 3); None when
    it signs them."""
    try:
        signed = note.Note.parse(_read(archive, SIGNATURE_NAME, _MAX_SIGNATURE))
        note.open_note(signed, [signer])
    except VerificationError as exc:
        return str(exc)
    if signed.text.split("\n", 1)[0] != export_origin(endpoint):
        return f"not the signature of an export (its origin is not {export_origin(endpoint)})"
    if signed.text != export_statement(endpoint, document):
        return (
            "bundle.json is not the one the endpoint signed: "
            "part of the export was left out or changed"
        )
    return None


def _list(document: Mapping[str, Any], key: str, bound: int, report: Report) -> list[Any]:
    value = document.get(key)
    if not isinstance(value, list) or len(value) > bound:
        report.problems.append(f"bundle: no list of {key} (at most {bound})")
        return []
    return value


def verify(archive: zipfile.ZipFile) -> Report:
    """Check a bundle (evidence.md §6.2): the checkpoint's signature, the
    endpoint's signature of the whole of ``bundle.json``, each witness's
    cosignature and consistency proof, each entry's inclusion proof, each
    message and file against its entry, the manifest and the members. Raises
    :class:`VerificationError` only when the archive is not a bundle at all."""
    report = Report()
    document, raw = _document(archive)
    try:
        endpoint = OnionAddress.parse(_str(document, "endpoint"))
        checkpoint_note = note.Note.parse(_str(document, "checkpoint"))
    except (ConfigError, VerificationError) as exc:
        raise VerificationError(f"{BUNDLE_NAME}: {exc}", what="bundle") from exc
    report.endpoint = name = str(endpoint)
    signer = note.Verifier(name, note.ED25519, endpoint.public_key)
    try:
        note.open_note(checkpoint_note, [signer])
        checkpoint = _same_log(note.Checkpoint.from_text(checkpoint_note.text), origin(name))
    except VerificationError as exc:
        report.problems.append(f"checkpoint: {exc}")
        return report
    report.size = checkpoint.size
    allowed = {BUNDLE_NAME, MANIFEST_NAME}
    if document["format"] == UNSIGNED_FORMAT:
        report.problems.append(
            f"bundle: {UNSIGNED_FORMAT} is not signed as a whole, "
            "so a subset of an export verifies as well"
        )
    else:
        allowed.add(SIGNATURE_NAME)
        problem = _signature_problem(archive, raw, name, signer)
        if problem is None:
            report.bundle_sha256 = hashlib.sha256(raw).hexdigest()
        else:
            report.problems.append(f"{SIGNATURE_NAME}: {problem}")
    # What the manifest is checked after: nothing failed but that one step.
    unsigned = len(report.problems)
    for n, item in enumerate(_list(document, "witnesses", MAX_NOTE_SIGNATURES * 64, report)):
        try:
            report.witnesses += _witness(item, signer, checkpoint)
        except (ConfigError, VerificationError) as exc:
            report.problems.append(f"witness {n}: {exc}")
    entries: dict[bytes, list[Entry]] = {}
    for n, item in enumerate(_list(document, "entries", 16 * MAX_EXPORT_MESSAGES, report)):
        try:
            _index, entry = _entry(item, checkpoint)
        except VerificationError as exc:
            report.problems.append(f"entry {n}: {exc}")
            continue
        report.entries += 1
        entries.setdefault(entry.message_id, []).append(entry)
    messages: list[BundleMessage] = []
    sha256: dict[bytes, str] = {}
    for n, item in enumerate(_list(document, "messages", MAX_EXPORT_MESSAGES, report)):
        try:
            message = BundleMessage.from_json(item)
        except VerificationError as exc:
            report.problems.append(f"message {_where(item, n)}: {exc}")
            continue
        if message.member is not None:
            # Named by its message: a file whose bytes fail is that message's
            # problem, not a member that is no part of a bundle.
            allowed.add(message.member)
        try:
            checked = _message(archive, message, entries, sha256)
        except VerificationError as exc:
            report.problems.append(f"message {message.id.hex()}: {exc}")
            continue
        messages.append(message)
        report.messages += 1
        if checked is None:
            report.files_absent += 1
        elif message.kind == "file":
            report.files_checked += 1
    if len(report.problems) == unsigned:
        problem = _manifest_problem(archive, raw, name, messages, sha256)
        if problem is not None:
            report.problems.append(f"manifest: {problem}")
    for info in archive.infolist():
        if info.filename not in allowed:
            report.problems.append(f"bundle: {info.filename!r} is no part of a bundle")
    return report


def _where(item: object, n: int) -> str:
    """How a problem names a message: its id, or its place when it has none."""
    if isinstance(item, dict) and isinstance(item.get("id"), str):
        return str(item["id"])[:32]
    return f"#{n}"


def _text(value: object) -> str:
    """A string of the manifest (anything else: not the manifest an export writes)."""
    if not isinstance(value, str):
        raise TypeError
    return value


def _manifest_problem(
    archive: zipfile.ZipFile,
    document: bytes,
    endpoint: str,
    messages: Sequence[BundleMessage],
    sha256: Mapping[bytes, str],
) -> str | None:
    """Whether ``manifest.jsonld`` is exactly what the export makes of the
    checked ``bundle.json``: the same messages and files (their SHA-256 as
    the members hold them), under the id derived from ``bundle.json``. Only
    its own claims, the export's time and onionpost's version, are taken from
    it; None when it matches."""
    try:
        data = _read(archive, MANIFEST_NAME, 2 * _MAX_BUNDLE_JSON)
        graph = json.loads(data)["@graph"]
        tool = next(n for n in graph if n.get("@type") == "uco-tool:Tool")
        action = next(
            n for n in graph if n.get("@type") == "case-investigation:InvestigativeAction"
        )
        version = _text(tool["uco-tool:version"])
        started = _text(action["uco-action:startTime"]["@value"]).replace("Z", "+00:00")
        moment = datetime.datetime.fromisoformat(started)
    except VerificationError as exc:
        return str(exc)
    except (
        UnicodeDecodeError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        StopIteration,
        RecursionError,
    ):
        return "it is not the manifest an export writes"
    # An export writes a UTC time that a date shows: 1970 to the end of year
    # 9999 (anything else would raise out of _iso below); a time without an
    # offset would be read in this computer's zone.
    made_ms = round(moment.timestamp() * 1000) if moment.tzinfo is not None else -1
    if not 0 <= made_ms <= MAX_TIME_MS:
        return "it is not the manifest an export writes"
    expected = case_manifest(
        endpoint=endpoint,
        messages=messages,
        file_sha256=sha256,
        made_ms=made_ms,
        version=version,
        bundle_id=hashlib.sha256(document).hexdigest()[:32],
    )
    if expected != data:
        return "it does not match bundle.json (changed after the export)"
    return None
